"""ADD is a transaction: whatever step fails, the node and the pod are left as they were.

Failures are induced from outside only: fake IPAM plugins in a temporary
CNI_PATH, conflicting objects and firewall state prepared in the node, a
signal sent to the running plugin.  A witness pod of the same network is
attached first, so the shared objects a first ADD creates and never undoes
(the bridge, its gateway address, forwarding, the firewall tables) already
exist, and the failed ADD must leave the node byte-for-byte unchanged.
"""

import copy
import os
import signal
import time

import pytest

from cni_bridge.tests.bridgeenv import (
    IFNAME,
    alive,
    allocations,
    calls,
    config,
    difference,
    fake_ipam,
    ipt_chain,
    ipt_nat,
    links,
    masq_rules,
    nft_ruleset,
    records,
    start_plugin,
    veths,
    wait_carrier,
)
from conformance.netenv import Outcome

pytestmark = pytest.mark.root

NET, BRIDGE = "rb", "cnitrb0"
FAKE = "fakeipam"
ADDRESS = "10.93.0.5/24"


def base(tmp_path, **keys) -> dict:
    return config(tmp_path, name=NET, bridge=BRIDGE, subnets=("10.93.0.0/24",), isGateway=True, **keys)


def comparable(snapshot: dict) -> dict:
    """The snapshot minus the fake IPAM's call log and host-local's round-robin cursors.

    A released address leaves last_reserved_ip.N pointing at it, by design
    (README, "Allocation is round-robin"): that is not an allocation.
    """
    snap = copy.deepcopy(snapshot)
    snap["files"] = {k: v for k, v in snap["files"].items() if not k.startswith("fakes") and "last_reserved_ip." not in k}
    return snap


class Witnessed:
    """A node with one healthy pod (c0) of the network, and a second pod namespace for the ADD that fails."""

    def __init__(self, bench, tmp_path, witness_conf: dict):
        self.bench, self.conf = bench, witness_conf
        self.witness = bench.container()
        bench.add(witness_conf, self.witness, "c0")
        self.pod = bench.container()
        self.fakes = tmp_path / "fakes"
        self.witness_veths = veths(bench.node)
        self.witness_allocs = allocations(witness_conf)

    def snapshot(self) -> dict:
        return comparable(self.bench.snapshot(self.pod, self.witness))

    def assert_rolled_back(self, out, code: int, before: dict) -> None:
        assert out.rc == 1 and out.json["code"] == code, out
        # named first, so a failure says what leaked; the full comparison below catches the rest
        assert veths(self.bench.node) == self.witness_veths, "host veth leaked"
        assert IFNAME not in links(self.pod), "container veth leaked"
        assert allocations(self.conf) == self.witness_allocs, "address leaked"
        assert records(self.conf) == ["c0:eth0.json"], "attachment record leaked"
        assert masq_rules(self.bench.node, NET, "c1") == [], "masquerade rules leaked"
        assert "macspoofchk-c1-" not in nft_ruleset(self.bench.node), "macspoofchk rules leaked"
        after = self.snapshot()
        assert after == before, difference(before, after)


# --- IPAM failures ------------------------------------------------------------------

FAKE_RESULTS = {
    # name: (the fake's ADD body, the code the bridge must report)
    "error structure": ('printf \'{"cniVersion":"1.1.0","code":100,"msg":"fake: range full"}\'; exit 1', 100),
    "garbage on stdout, exit 0": ("echo 'this is not JSON'; exit 0", 106),
    "killed by a signal": ("kill -KILL $$", 106),
    "result without IPs": ('echo \'{"cniVersion":"1.1.0","ips":[]}\'', 106),
    "route that cannot be added": (
        'echo \'{"cniVersion":"1.1.0","ips":[{"address":"' + ADDRESS + '"}],"routes":[{"dst":"192.0.2.0/24","gw":"203.0.113.1"}]}\'',
        104,
    ),
}


def fake_conf(tmp_path) -> dict:
    # macspoofchk and ipMasq on: their rules, set up before the failure or never reached, must not outlive it
    conf = base(tmp_path, ipMasq=True, macspoofchk=True)
    conf["ipam"] = {"type": FAKE}
    return conf


@pytest.mark.parametrize("case", list(FAKE_RESULTS))
def test_ipam_failure_rolls_back_and_releases(case, bench, tmp_path):
    env = Witnessed(bench, tmp_path, base(tmp_path, ipMasq=True, macspoofchk=True))
    body, code = FAKE_RESULTS[case]
    log = fake_ipam(env.fakes, FAKE, body)
    before = env.snapshot()
    out = bench.run("ADD", fake_conf(tmp_path), env.pod, "c1", path=str(env.fakes))
    env.assert_rolled_back(out, code, before)
    # the spec: an IPAM ADD that was attempted is always followed by its DEL, even when it failed
    assert calls(log) == [("ADD", "c1"), ("DEL", "c1")]


def wait_until(condition, proc, what: str) -> None:
    """Poll for a step of the running plugin; a liveness bound, not a timing assertion."""
    deadline = time.monotonic() + 30
    while not condition():
        assert proc.poll() is None and time.monotonic() < deadline, f"the plugin never reached {what}"
        time.sleep(0.02)


def finish(proc) -> Outcome:
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Outcome(proc.returncode, stdout, stderr)


def hanging_ipam(env, other_body: str = "exit 0"):
    """A fake IPAM whose ADD never returns; the PID of its child says when ADD is under way."""
    pids = env.fakes / "sleep.pid"
    log = fake_ipam(env.fakes, FAKE, f"sleep 300 & echo $! > {pids}; wait", other_body)
    return log, pids, lambda: pids.exists() and pids.read_text().strip() != ""


def test_hung_ipam_is_killed_with_its_process_group(bench, tmp_path):
    env = Witnessed(bench, tmp_path, base(tmp_path, ipMasq=True, macspoofchk=True))
    log, pids, _ = hanging_ipam(env)
    before = env.snapshot()
    out = bench.run("ADD", fake_conf(tmp_path), env.pod, "c1", path=str(env.fakes), env={"CNI_DELEGATE_TIMEOUT": "2"})
    env.assert_rolled_back(out, 11, before)
    assert calls(log) == [("ADD", "c1"), ("DEL", "c1")]
    script_pid = int(open(log).readline().split()[2])
    assert not alive(script_pid), "the hung IPAM survived"
    assert not alive(int(pids.read_text())), "the hung IPAM's child survived"


def test_sigterm_during_add_rolls_back_with_code_11(bench, tmp_path):
    env = Witnessed(bench, tmp_path, base(tmp_path, ipMasq=True, macspoofchk=True))
    log, pids, in_ipam_add = hanging_ipam(env)
    before = env.snapshot()
    proc = start_plugin(bench, "ADD", fake_conf(tmp_path), env.pod, "c1", str(env.fakes))
    wait_until(in_ipam_add, proc, "IPAM ADD")
    assert veths(bench.node) != env.witness_veths  # not vacuous: the veth exists when the signal lands
    proc.send_signal(signal.SIGTERM)
    env.assert_rolled_back(finish(proc), 11, before)
    assert calls(log) == [("ADD", "c1"), ("DEL", "c1")]
    assert not alive(int(open(log).readline().split()[2])) and not alive(int(pids.read_text()))


def test_a_second_signal_does_not_cut_the_rollback_short(bench, tmp_path):
    """A runtime may signal again while ADD unwinds: the IPAM DEL under way must still run to its end."""
    env = Witnessed(bench, tmp_path, base(tmp_path, ipMasq=True, macspoofchk=True))
    released = env.fakes / "released"
    log, _, in_ipam_add = hanging_ipam(env, f"sleep 1; touch {released}; exit 0")
    before = env.snapshot()
    proc = start_plugin(bench, "ADD", fake_conf(tmp_path), env.pod, "c1", str(env.fakes))
    wait_until(in_ipam_add, proc, "IPAM ADD")
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: ("DEL", "c1") in calls(log), proc, "the IPAM DEL of its rollback")
    proc.send_signal(signal.SIGTERM)
    env.assert_rolled_back(finish(proc), 11, before)
    assert released.exists(), "the IPAM DEL was killed half-way: its address would leak"


# --- failures after a real allocation -----------------------------------------------


def test_gateway_conflict_on_an_existing_bridge_is_103(bench, tmp_path):
    """An admin's bridge with an uplink port and another IPv4 address: no forceAddress, so no gateway, and nothing left."""
    node = bench.node
    node.ip("link", "add", BRIDGE, "type", "bridge")
    node.ip("addr", "add", "10.94.9.1/24", "dev", BRIDGE)
    node.ip("link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
    node.ip("link", "set", "uplink0", "master", BRIDGE)
    for name in ("uplink0", "uplink1", BRIDGE):
        node.ip("link", "set", name, "up")
    # what ADD does to any bridge it uses, done beforehand so the comparison sees only what must not change
    node.exec("sysctl", "-qw", f"net.ipv6.conf.{BRIDGE}.accept_ra=0")
    wait_carrier(node, BRIDGE)
    pod = bench.container()
    conf = config(tmp_path, name=NET, bridge=BRIDGE, subnets=("10.94.0.0/24",), isGateway=True, ipMasq=True)
    before = bench.snapshot(pod)
    out = bench.run("ADD", conf, pod, "c1")
    assert out.rc == 1 and out.json["code"] == 103, out
    assert "10.94.9.1/24" in out.json["details"]
    assert veths(node) == ["uplink0", "uplink1"] and IFNAME not in links(pod)
    assert allocations(conf) == [] and records(conf) == []  # host-local's DEL ran: the address is free again
    assert masq_rules(node, NET, "c1") == []
    after = bench.snapshot(pod)
    assert (after["node"], after["containers"]) == (before["node"], before["containers"]), difference(before, after)
    assert bench.run("ADD", conf | {"forceAddress": True}, pod, "c1").ok  # the refusal was about the address alone


def test_masquerade_setup_failure_rolls_back(bench, tmp_path):
    env = Witnessed(bench, tmp_path, base(tmp_path))
    # someone else's chain of our name, of another type: our `add chain ... type nat` cannot apply
    env.bench.node.exec("nft", "add", "table", "inet", "cni_plugins_masquerade")
    env.bench.node.exec("nft", "add", "chain", "inet", "cni_plugins_masquerade", "postrouting", "{ type filter hook postrouting priority 0; }")
    before = env.snapshot()
    out = bench.run("ADD", base(tmp_path, ipMasq=True), env.pod, "c1")
    env.assert_rolled_back(out, 104, before)
    assert "masquerade" in out.json["msg"]


def test_iptables_failure_in_the_second_family_removes_the_first(bench, tmp_path):
    """The iptables backend applies one transaction per family: a refused IPv6 half must take the IPv4 half with it."""
    dual = {"name": NET, "bridge": BRIDGE, "subnets": ("10.93.0.0/24", "2001:db8:93::/64"), "isGateway": True}
    env = Witnessed(bench, tmp_path, config(tmp_path, **dual, ipMasq=True, ipMasqBackend="iptables"))
    # an ip6 nat POSTROUTING of filter type, made with nft: ip6tables-restore cannot append to it, iptables-restore is unaffected
    env.bench.node.exec("nft", "delete", "table", "ip6", "nat")
    env.bench.node.exec("nft", "add", "table", "ip6", "nat")
    env.bench.node.exec("nft", "add", "chain", "ip6", "nat", "POSTROUTING", "{ type filter hook postrouting priority 0; }")
    before = env.snapshot()
    out = bench.run("ADD", config(tmp_path, **dual, ipMasq=True, ipMasqBackend="iptables"), env.pod, "c1")
    env.assert_rolled_back(out, 104, before)
    assert "POSTROUTING" in out.json["details"], out
    assert ipt_chain(NET, "c0") in ipt_nat(bench.node)  # not vacuous: the witness's IPv4 chain is there, c1's is not


def test_macspoofchk_setup_failure_rolls_back(bench, tmp_path):
    env = Witnessed(bench, tmp_path, base(tmp_path, ipMasq=True))
    # a PREROUTING of the bridge nat table on another hook: our declaration of it cannot apply
    env.bench.node.exec("nft", "add", "table", "bridge", "nat")
    env.bench.node.exec("nft", "add", "chain", "bridge", "nat", "PREROUTING", "{ type filter hook output priority 0; }")
    before = env.snapshot()
    out = bench.run("ADD", base(tmp_path, ipMasq=True, macspoofchk=True), env.pod, "c1")
    env.assert_rolled_back(out, 104, before)
    assert "macspoofchk" in out.json["msg"]


def test_existing_ifname_in_the_container_is_refused_before_anything_is_created(bench, tmp_path):
    pod = bench.container()
    pod.ip("link", "add", IFNAME, "type", "veth", "peer", "name", "peer0")  # this kernel has no dummy driver
    conf = base(tmp_path, ipMasq=True, macspoofchk=True)
    before = bench.snapshot(pod)
    out = bench.run("ADD", conf, pod, "c1")
    assert out.rc == 1 and out.json["code"] == 103, out
    assert "already exists" in out.json["msg"]
    assert "peer0" in links(pod) and IFNAME in links(pod)
    assert BRIDGE not in links(bench.node)
    assert bench.snapshot(pod) == before
    assert not os.path.exists(tmp_path / "ipam") and not os.path.exists(tmp_path / "bridge")
