"""Ours against the reference loopback (Debian's containernetworking-plugins 1.1.1, /usr/lib/cni/loopback).

Each scenario runs the same calls twice, once per implementation, each in
fresh node and pod namespaces: ADD, CHECK (0.4.0 and later), DEL, DEL again,
DEL without CNI_NETNS, CHECK after the DEL, and DEL once the namespace is gone.
Every call must succeed or fail alike, and the pod's namespace (links, flags,
addresses, routes, sysctls, firewall) must be the same after each.

The results must carry the same interface and addresses.  Where the forms
differ, the reference departs from the spec and ours follows it (README,
"Deliberate differences"): the reference labels its 1.x-shaped result with
any older cniVersion (for 0.1.0 and 0.2.0 a runtime reads no address in it;
for 0.3.x and 0.4.0 its ips lack "version"), and prints an empty "dns" in
1.0.0 results (cni 1.1's library; later ones omit it, as we do).  It knows
no CNI 1.1.0: our 1.1.0 result is compared with its 1.0.0 one.
Refusals differ in two places, both deliberate: a non-loopback address on lo
fails both ADDs, and ours leaves lo down where the reference has brought it
up; a namespace whose lo was renamed fails the reference's DEL (999) and
not ours.
"""

import json
import os

import pytest

from cni_loopback.tests.loenv import LEGACY, config, disable_ipv6, run
from conformance.helpers import SPEC_VERSIONS, vkey
from conformance.netenv import ns_state

pytestmark = pytest.mark.root

REFERENCE = "/usr/lib/cni/loopback"
PREV = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "mac": "0a:58:0a:4d:00:02", "sandbox": "/run/netns/elsewhere"}],
    "ips": [{"address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}],
    "dns": {"nameservers": ["192.0.2.53"]},
}


def chained(version: str) -> dict:
    prev = dict(PREV, cniVersion=version)
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        prev["ips"] = [dict(ip, version="4") for ip in PREV["ips"]]
    return config(version, prevResult=prev)


def lo_up(c) -> None:
    c.ip("link", "set", "lo", "up")


def extra_loopback_address(c) -> None:
    c.ip("addr", "add", "127.0.0.2/8", "dev", "lo")


# scenario -> (config, what is done to the pod before the ADD)
SCENARIOS = {f"new pod, {v}": (config(v), None) for v in SPEC_VERSIONS}
SCENARIOS.update(
    {
        "IPv6 disabled on lo, 1.0.0": (config("1.0.0"), disable_ipv6),
        "IPv6 disabled on lo, 0.2.0": (config("0.2.0"), disable_ipv6),
        "lo already up, 1.0.0": (config("1.0.0"), lo_up),
        "a second loopback address, 1.0.0": (config("1.0.0"), extra_loopback_address),
        "a second loopback address, 0.4.0": (config("0.4.0"), extra_loopback_address),
        "chained, 1.0.0": (chained("1.0.0"), None),
        "chained, 0.4.0": (chained("0.4.0"), None),
        "chained, 0.3.1": (chained("0.3.1"), None),
        "chained, empty prevResult, 1.0.0": (config("1.0.0", prevResult={}), None),
        "unknown keys and args, 1.0.0": (config("1.0.0", frobnicate={"x": 1}, args={"cni": {"ips": ["10.1.1.1"]}}), None),
    }
)


def reference_version(conf: dict) -> dict:
    """The reference advertises up to 1.0.0: our 1.1.0 run is compared with its 1.0.0 one."""
    return dict(conf, cniVersion="1.0.0") if conf["cniVersion"] == "1.1.0" else conf


def session(binary: str, conf: dict, node, c) -> tuple[dict | None, list]:
    """The ADD's result, and (step, succeeded, pod state) for every call of the sequence."""
    steps = []
    add = run(binary, "ADD", conf, node, c.path)
    steps.append(("ADD", add.ok, ns_state(c)))
    result = add.json if add.ok else None
    checked = dict(conf, prevResult=result) if result is not None and vkey(conf["cniVersion"]) >= (0, 4, 0) else conf
    if checked is not conf:
        steps.append(("CHECK", run(binary, "CHECK", checked, node, c.path).ok, ns_state(c)))
    for step, netns in (("DEL", c.path), ("DEL again", c.path), ("DEL without CNI_NETNS", "")):
        steps.append((step, run(binary, "DEL", checked, node, netns).ok, ns_state(c)))
    if checked is not conf:
        steps.append(("CHECK after DEL", run(binary, "CHECK", checked, node, c.path).ok, ns_state(c)))
    path = c.path
    c.close()
    steps.append(("DEL with the namespace gone", run(binary, "DEL", checked, node, path).ok, None))
    return result, steps


def addresses(result: dict) -> list[str]:
    if "ips" in result:
        return [ip["address"] for ip in result["ips"]]
    return [result[family]["ip"] for family in ("ip4", "ip6") if family in result]


def without_empty_dns(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "dns" or value}


def comparable(result: dict, sandbox: str) -> dict:
    """A result without what only the form differs in: cniVersion, ips[].version, an empty dns; the sandbox path neutral."""
    out = json.loads(json.dumps(result).replace(json.dumps(sandbox)[1:-1], "SANDBOX"))
    out.pop("cniVersion", None)
    if not out.get("dns"):
        out.pop("dns", None)
    for ip in out.get("ips", []):
        ip.pop("version", None)
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_answers_and_same_state(scenario, bin_dir, netns, pods):
    conf, prepare = SCENARIOS[scenario]
    runs = {}
    for who, binary, their_conf in (("reference", REFERENCE, reference_version(conf)), ("ours", os.path.join(bin_dir, "loopback"), conf)):
        node, c = netns("n"), pods()
        if prepare is not None:
            prepare(c)
        path = c.path
        result, steps = session(binary, their_conf, node, c)
        runs[who] = (result, steps, path)
    (theirs, their_steps, their_path), (ours, our_steps, our_path) = runs["reference"], runs["ours"]
    assert [(s, ok) for s, ok, _ in our_steps] == [(s, ok) for s, ok, _ in their_steps]
    for (step, _, our_state), (_, _, their_state) in zip(our_steps, their_steps, strict=True):
        assert our_state == their_state, f"the pod differs after {step}"
    assert ours is not None and theirs is not None
    assert ours["cniVersion"] == conf["cniVersion"]
    if "prevResult" in conf:
        # both answer with the prevResult they were given, in the config's version
        assert without_empty_dns(ours) == without_empty_dns(theirs) == without_empty_dns(dict(conf["prevResult"], cniVersion=conf["cniVersion"]))
    elif conf["cniVersion"] in LEGACY:
        # the reference's result has the 1.x form under this label: the same addresses, first per family
        assert addresses(ours) == addresses(theirs) and "ip4" in ours and "ips" not in ours
    else:
        assert comparable(ours, our_path) == comparable(theirs, their_path)


def test_a_non_loopback_address_fails_both_adds(bin_dir, netns, pods):
    """Both refuse it; ours before bringing lo up (README, "Deliberate differences"), the reference after."""
    outcomes = {}
    for who, binary in (("reference", REFERENCE), ("ours", os.path.join(bin_dir, "loopback"))):
        node, c = netns("n"), pods()
        c.ip("addr", "add", "10.9.8.7/24", "dev", "lo")
        before = ns_state(c)
        out = run(binary, "ADD", config("1.0.0"), node, c.path)
        outcomes[who] = (out.ok, "non-loopback address" in out.stdout.decode(), ns_state(c) == before)
        assert run(binary, "DEL", config("1.0.0"), node, c.path).ok
    assert outcomes == {"reference": (False, True, False), "ours": (False, True, True)}


def test_a_renamed_lo_fails_both_adds_and_only_the_references_del(bin_dir, netns, pods):
    outcomes = {}
    for who, binary in (("reference", REFERENCE), ("ours", os.path.join(bin_dir, "loopback"))):
        node, c = netns("n"), pods()
        c.ip("link", "set", "lo", "name", "lo9")
        before = ns_state(c)
        add = run(binary, "ADD", config("1.0.0"), node, c.path)
        delete = run(binary, "DEL", config("1.0.0"), node, c.path)
        outcomes[who] = (add.ok, delete.ok, ns_state(c) == before)
    assert outcomes == {"reference": (False, False, True), "ours": (False, True, True)}
