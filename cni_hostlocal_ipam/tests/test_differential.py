"""Ours against the reference host-local: same calls, same answers, interchangeable state.

Each scenario is a sequence of ADD/DEL calls.  It runs three times on fresh
data directories: with the reference alone, with ours alone, and alternating
between the two on one directory.  All three must give the same addresses,
gateways, routes and DNS, and fail at the same steps with the same message.
Error codes may differ: the reference reports most failures as 999, ours use
the documented codes (README, "Error codes").
"""

import json
import os

import pytest

from conformance.netenv import run_plugin

pytestmark = pytest.mark.root


def v(ipam, version="1.0.0", **top):
    return {"cniVersion": version, "name": "diffnet", "ipam": {"type": "host-local", **ipam}, **top}


ADD, DEL = "ADD", "DEL"
SCENARIOS = {
    "v4": (v({"subnet": "10.10.0.0/24"}), [(ADD, "a"), (ADD, "b"), (DEL, "a"), (ADD, "c"), (ADD, "a")]),
    "v6": (v({"subnet": "2001:db8:10::/64"}), [(ADD, "a"), (ADD, "b"), (DEL, "b"), (ADD, "c")]),
    "dual-stack": (
        v({"ranges": [[{"subnet": "10.11.0.0/24"}], [{"subnet": "2001:db8:11::/64"}]]}),
        [(ADD, "a"), (ADD, "b"), (DEL, "a"), (ADD, "a")],
    ),
    "multi-range pool": (
        v({"ranges": [[{"subnet": "10.12.0.0/30"}, {"subnet": "10.12.1.0/30"}]]}),
        [(ADD, "a"), (ADD, "b"), (ADD, "c"), (DEL, "a"), (ADD, "d")],
    ),
    "rangeStart/rangeEnd": (
        v({"subnet": "10.13.0.0/24", "rangeStart": "10.13.0.100", "rangeEnd": "10.13.0.102"}),
        [(ADD, "a"), (ADD, "b"), (ADD, "c"), (ADD, "d"), (DEL, "b"), (ADD, "e")],
    ),
    "custom gateway": (v({"subnet": "10.14.0.0/29", "gateway": "10.14.0.4"}), [(ADD, c) for c in "abcdef"]),
    "routes": (
        v({"subnet": "10.15.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": "10.15.0.254"}]}),
        [(ADD, "a"), (DEL, "a")],
    ),
    "requested via CNI_ARGS": (v({"subnet": "10.16.0.0/24"}), [(ADD, "a", "IgnoreUnknown=1;IP=10.16.0.77"), (ADD, "b")]),
    "requested via args": (
        v({"subnet": "10.17.0.0/24"}, args={"cni": {"ips": ["10.17.0.50"]}}),
        [(ADD, "a"), (ADD, "b"), (DEL, "a"), (ADD, "c")],
    ),
    "requested via runtimeConfig": (
        v({"subnet": "10.18.0.0/24"}, runtimeConfig={"ips": ["10.18.0.9/24"]}),
        [(ADD, "a"), (ADD, "b")],
    ),
    "requested gateway": (v({"subnet": "10.19.0.0/24"}), [(ADD, "a", "IP=10.19.0.1")]),
    # no ADD follows the refusal: the reference reserves and releases an address first, moving its
    # round-robin cursor; ours refuses before anything (README, "Deliberate differences")
    "requested outside the range": (
        v({"subnet": "10.20.0.0/24", "rangeEnd": "10.20.0.50"}),
        [(ADD, "a", "IP=10.20.0.60")],
    ),
    "exhaustion": (v({"subnet": "10.21.0.0/29"}), [(ADD, c) for c in "abcdefg"] + [(DEL, "c"), (ADD, "h"), (ADD, "i")]),
    "v6 exhaustion and wrap": (
        v({"subnet": "2001:db8:22::/125"}),
        [(ADD, c) for c in "abcdefgh"] + [(DEL, "b"), (DEL, "e"), (ADD, "x"), (ADD, "y")],
    ),
    "two v4 range sets": (
        v({"ranges": [[{"subnet": "10.23.0.0/24"}], [{"subnet": "10.24.0.0/24"}]]}),
        [(ADD, "a"), (ADD, "b"), (DEL, "a"), (ADD, "c")],
    ),
    "second range set exhausted": (
        v({"ranges": [[{"subnet": "10.25.0.0/24"}], [{"subnet": "10.26.0.0/30"}]]}),
        [(ADD, "a"), (ADD, "b"), (ADD, "c"), (DEL, "a"), (ADD, "d")],
    ),
    "duplicate ADD": (v({"subnet": "10.27.0.0/24"}), [(ADD, "a"), (ADD, "a"), (DEL, "a"), (ADD, "a")]),
    "legacy result 0.2.0": (v({"subnet": "10.28.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]}, "0.2.0"), [(ADD, "a"), (ADD, "b")]),
    "result 0.3.1": (v({"ranges": [[{"subnet": "10.29.0.0/24"}], [{"subnet": "2001:db8:29::/64"}]]}, "0.3.1"), [(ADD, "a")]),
    "runtime ipRanges": (
        v({"subnet": "10.30.0.0/24"}, runtimeConfig={"ipRanges": [[{"subnet": "10.31.0.0/24"}]]}),
        [(ADD, "a"), (ADD, "b"), (DEL, "a")],
    ),
    "resolvConf": (v({"subnet": "10.32.0.0/24", "resolvConf": "@RESOLV@"}), [(ADD, "a")]),
    "DEL of unknown container": (v({"subnet": "10.33.0.0/24"}), [(DEL, "nobody"), (ADD, "a"), (DEL, "a"), (DEL, "a")]),
}


def normalize(outcome) -> tuple:
    """What must agree: success and the result, or failure and its message."""
    if not outcome.ok:
        return ("error", outcome.json["msg"])
    data = outcome.json
    if data is None:
        return ("ok",)
    data.pop("cniVersion", None)
    if not data.get("dns"):
        data.pop("dns", None)  # the reference omits an empty dns in some versions; runtimes don't care
    return ("ok", json.dumps(data, sort_keys=True))


def run_sequence(config, steps, runners, data_dir, netns_path) -> list:
    config = json.loads(json.dumps(config).replace("@RESOLV@", os.path.join(data_dir, "resolv.conf")))
    config["ipam"]["dataDir"] = data_dir
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "resolv.conf"), "w") as f:
        f.write("nameserver 192.0.2.53\nsearch example.org\noptions ndots:2\n")
    results = []
    for i, step in enumerate(steps):
        command, cid = step[0], step[1]
        cni_args = step[2] if len(step) > 2 else ""
        binary = runners[i % len(runners)]
        outcome = run_plugin(binary, command, config, netns=netns_path, container_id=cid, args=cni_args)
        results.append((command, cid, normalize(outcome)))
    return results


def allocations(data_dir) -> dict:
    d = os.path.join(data_dir, "diffnet")
    if not os.path.isdir(d):  # a refused first ADD: ours creates nothing
        return {}
    return {f: open(os.path.join(d, f), "rb").read() for f in os.listdir(d) if f[0].isdigit()}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_results_and_interchangeable_state(name, bin_dir, reference_dir, container, tmp_path):
    config, steps = SCENARIOS[name]
    ours, ref = os.path.join(bin_dir, "host-local"), os.path.join(reference_dir, "host-local")
    expected = run_sequence(config, steps, [ref], str(tmp_path / "ref"), container)
    assert run_sequence(config, steps, [ours], str(tmp_path / "ours"), container) == expected
    # each continues from the other's state: alternate on one directory, starting with either
    assert run_sequence(config, steps, [ours, ref], str(tmp_path / "mixed1"), container) == expected
    assert run_sequence(config, steps, [ref, ours], str(tmp_path / "mixed2"), container) == expected
    # and the records left behind are byte-identical
    assert allocations(str(tmp_path / "ours")) == allocations(str(tmp_path / "ref"))
    assert allocations(str(tmp_path / "mixed1")) == allocations(str(tmp_path / "ref"))


def test_every_scenario_exercises_something(reference_dir, container, tmp_path):
    """Guard against vacuous scenarios: at least one allocation or failure each."""
    ref = os.path.join(reference_dir, "host-local")
    for name, (config, steps) in SCENARIOS.items():
        results = run_sequence(config, steps, [ref], str(tmp_path / name.replace(" ", "_").replace("/", "_")), container)
        assert any(r[2][0] == "error" or len(r[2]) > 1 for r in results), name
