"""Same-container races: ADD against ADD, ADD against DEL, both pinned to one CPU as on a busy node.

A runtime must not run two operations for one container at once, but one
whose ADD timed out sends a second ADD or a DEL while the first still runs.
ADD, DEL and GC of one attachment hold its lock (common/records.py), so:

  * ADD/ADD: exactly one ADD succeeds; the other fails with a CNI error
    (102 already attached, 11 lock timeout, 103 the interface exists) and
    leaves the winner's record, veth, address and masquerade rule alone.  A
    DEL with CNI_NETNS empty (the record alone names the veth) then removes
    everything: no veth, address file, record, rule or lock file.
  * ADD/DEL: afterwards everything is gone (DEL ran after ADD), or (DEL ran
    first, then ADD) record, veth, address and rule are all there and agree
    with ADD's result; never a veth without a record, or an address without
    one.  A DEL then removes everything.

Both processes run under `taskset -c 0`, so they interleave on one CPU.
Half of the trials use a network never used before (its state directories
do not exist yet, the first ADD on a node), half one used by earlier trials.
Each trial's start order and stagger are drawn from a seeded random.Random
(CNI_RACE_SEED replays a run, CNI_RACE_TRIALS changes the number of trials).
Which side wins is counted and printed, never asserted.
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter

import pytest

from common.attachment import key
from conformance.netenv import Netns

pytestmark = pytest.mark.root

TRIALS = int(os.environ.get("CNI_RACE_TRIALS") or 20)
IFNAME = "eth0"
SUBNET = "10.98.0.0/24"
RACE_CODES = {102, 11, 103}  # README "Error codes": already attached, try again later, the interface exists


@pytest.fixture(scope="module")
def seed() -> int:
    value = int(os.environ.get("CNI_RACE_SEED") or random.randrange(1 << 32))
    print(f"test_races: seed {value} (CNI_RACE_SEED={value} replays the draws)")
    return value


@pytest.fixture
def taskset() -> str:
    path = shutil.which("taskset")
    if path is None:
        pytest.skip("taskset (util-linux) is not installed")
    return path


class Racer:
    """A node namespace running the bridge plugin from bin_dir; state under tmp_path."""

    def __init__(self, bin_dir: str, netns, tmp_path, taskset: str):
        self.bin_dir, self.netns, self.tmp, self.taskset = bin_dir, netns, tmp_path, taskset
        self.bridge = os.path.join(bin_dir, "bridge")
        self.node: Netns = netns("rn")

    def conf(self, network: str) -> dict:
        return {"cniVersion": "1.1.0", "name": network, "type": "bridge", "bridge": "cnitrace0", "isGateway": True,
                "ipMasq": True, "ipMasqBackend": "nftables", "dataDir": f"{self.tmp}/bridge",
                "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": f"{self.tmp}/ipam"}}

    def start(self, command: str, conf: dict, cid: str, netns: str, pin: bool = True) -> subprocess.Popen:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
               "CNI_NETNS": netns, "CNI_IFNAME": IFNAME, "CNI_PATH": self.bin_dir}
        argv = ["ip", "netns", "exec", self.node.name, self.bridge]
        if pin:
            argv = [self.taskset, "-c", "0"] + argv  # ip and the plugin it execs inherit the affinity
        with tempfile.TemporaryFile() as stdin:  # a file, not a pipe: the plugin reads it whenever it gets the CPU
            stdin.write(json.dumps(conf).encode())
            stdin.seek(0)
            return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def run(self, command: str, conf: dict, cid: str, netns: str) -> "Outcome":
        return Outcome.of(self.start(command, conf, cid, netns, pin=False))

    def race(self, first: tuple, second: tuple, stagger: float) -> tuple["Outcome", "Outcome"]:
        a = self.start(*first)
        if stagger:
            time.sleep(stagger)
        b = self.start(*second)
        return Outcome.of(a), Outcome.of(b)

    # --- what the node holds for one attachment ---

    def state(self, network: str, cid: str, container: Netns) -> dict:
        records = f"{self.tmp}/bridge/{network}"
        name = key(cid, IFNAME)
        record = None
        if os.path.exists(f"{records}/{name}.json"):
            with open(f"{records}/{name}.json") as f:
                record = json.load(f)
        ipam = f"{self.tmp}/ipam/{network}"
        addresses, indexes = {}, 0
        for entry in sorted(os.listdir(ipam)) if os.path.isdir(ipam) else []:
            if entry[0].isdigit():
                with open(f"{ipam}/{entry}", "rb") as f:
                    addresses[entry] = f.read().decode()
            indexes += entry.startswith(".alloc.")
        veths = {l["ifname"]: l for l in self.node.ipj("-d", "link", "show") if l.get("linkinfo", {}).get("info_kind") == "veth"}
        inside = {l["ifname"]: l for l in container.ipj("addr", "show") if l["ifname"] != "lo"}
        return {
            "record": record,
            "locks": sorted(n for n in (os.listdir(records) if os.path.isdir(records) else []) if n.endswith(".lock")),
            "addresses": addresses,
            "indexes": indexes,
            "veths": veths,
            "inside": inside,
            "masquerade": masquerade(self.node, network, cid),
        }


class Outcome:
    def __init__(self, rc: int, stdout: bytes, stderr: bytes):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr

    @classmethod
    def of(cls, proc: subprocess.Popen) -> "Outcome":
        out, err = proc.communicate(timeout=120)
        return cls(proc.returncode, out, err)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def json(self):
        return json.loads(self.stdout) if self.stdout.strip() else None

    def code(self) -> int:
        """The CNI error code of a failure; fails the test unless it is exactly one error document with exit status 1."""
        assert self.rc == 1, self
        doc = json.loads(self.stdout)
        assert type(doc.get("code")) is int and doc.get("msg"), self
        return doc["code"]

    def __repr__(self) -> str:
        return f"rc={self.rc} stdout={self.stdout[:600]!r} stderr={self.stderr[-1500:]!r}"


def masquerade(node: Netns, network: str, cid: str) -> list[str]:
    """Source addresses of the nftables masquerade rules of (network, cid, eth0), by the documented comment."""
    h = lambda text: hashlib.sha512(text.encode()).hexdigest()[:16]  # noqa: E731
    prefix = f"{h(network)}-{h(IFNAME + ':' + cid)}"
    out = node.exec("nft", "-j", "list", "ruleset")
    saddrs = []
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule and rule.get("table") == "cni_plugins_masquerade" and rule.get("comment", "").startswith(prefix):
            saddrs += [m["match"]["right"] for m in rule["expr"] if "match" in m and m["match"]["left"].get("payload", {}).get("field") == "saddr"]
    return saddrs


def host_veth_of(result: dict, container: Netns) -> str:
    [host] = [i["name"] for i in result["interfaces"] if not i.get("sandbox") and i["name"].startswith("veth")]
    return host


def assert_attached(state: dict, result: dict, cid: str, container: Netns, what: str) -> None:
    """Record, veth, address and rule all there, and what ADD returned."""
    [address] = [ip["address"] for ip in result["ips"]]
    ip = address.split("/")[0]
    veth = host_veth_of(result, container)
    record = state["record"]
    assert record is not None, f"{what}: ADD's veth {veth} and address {address} have no record: {state}"
    assert (record["container_id"], record["ifname"], record["host_veth"]) == (cid, IFNAME, veth), f"{what}: record {record}, ADD said {veth}"
    assert set(state["veths"]) == {veth}, f"{what}: host veths {sorted(state['veths'])}, ADD made {veth}"
    assert set(state["inside"]) == {IFNAME}, f"{what}: the container holds {sorted(state['inside'])}"
    eth0 = state["inside"][IFNAME]
    addrs = [f"{i['local']}/{i['prefixlen']}" for i in eth0.get("addr_info", []) if i.get("scope") == "global"]
    assert addrs == [address], f"{what}: {IFNAME} has {addrs}, ADD gave {address}"
    assert eth0.get("link_index") == state["veths"][veth]["ifindex"], f"{what}: {IFNAME} is not the peer of {veth}"
    assert state["addresses"] == {ip: f"{cid}\r\n{IFNAME}"} and state["indexes"] == 1, f"{what}: address files {state['addresses']} ({state['indexes']} index links), ADD gave {ip}"
    assert state["masquerade"] == [ip], f"{what}: masquerade rules for {state['masquerade']}, ADD gave {ip}"
    assert state["locks"] == [], f"{what}: lock files left while no call runs: {state['locks']}"


def assert_gone(state: dict, what: str) -> None:
    leftovers = {k: state[k] for k in ("record", "locks", "addresses", "indexes", "veths", "inside", "masquerade") if state[k]}
    assert not leftovers, f"{what}: left behind: {leftovers}"


def finish(racer: Racer, conf: dict, cid: str, container: Netns, what: str) -> None:
    """The runtime's DEL, with CNI_NETNS empty: the record alone names the veth.  Nothing may be left."""
    out = racer.run("DEL", conf, cid, "")
    assert out.ok and not out.stdout.strip(), f"{what}: the final DEL: {out}"
    assert_gone(racer.state(conf["name"], cid, container), f"{what}, after the final DEL")


@pytest.fixture
def racer(bin_dir, netns, tmp_path, taskset) -> Racer:
    return Racer(bin_dir, netns, tmp_path, taskset)


def network_of(trial: int) -> str:
    """Even trials: a network no call has used yet (no state directory); odd ones: one shared by all odd trials."""
    return f"rnew{trial}" if trial % 2 == 0 else "rshared"


def test_add_racing_add_of_the_same_container(racer, netns, seed):
    rng = random.Random(seed)
    tally = Counter()
    for trial in range(TRIALS):
        what = f"ADD/ADD trial {trial} (seed {seed})"
        conf, cid = racer.conf(network_of(trial)), f"aa{trial}"
        container = netns("rc")
        stagger = rng.choice([0, 0, rng.uniform(0, 0.05)])
        one, two = racer.race(("ADD", conf, cid, container.path), ("ADD", conf, cid, container.path), stagger)
        winners = [i for i, out in enumerate((one, two)) if out.ok]
        assert len(winners) == 1, f"{what}: {len(winners)} ADDs succeeded:\n first {one}\n second {two}"
        winner, loser = (one, two) if winners == [0] else (two, one)
        code = loser.code()
        assert code in RACE_CODES, f"{what}: the losing ADD failed with {code}: {loser}"
        tally[("first" if winners == [0] else "second", code)] += 1
        assert_attached(racer.state(conf["name"], cid, container), winner.json, cid, container, f"{what}, after the race")
        finish(racer, conf, cid, container, what)
        container.close()
    print(f"ADD/ADD ({racer.bin_dir}): " + ", ".join(f"{side} started won, loser {code}: {n}" for (side, code), n in sorted(tally.items())))
    assert sum(tally.values()) == TRIALS


def test_add_racing_del_of_the_same_container(racer, netns, seed):
    rng = random.Random(seed + 1)
    tally = Counter()
    for trial in range(TRIALS):
        what = f"ADD/DEL trial {trial} (seed {seed})"
        conf, cid = racer.conf(network_of(trial)), f"ad{trial}"
        container = netns("rc")
        del_netns = container.path if trial % 4 < 2 else ""  # a DEL with the namespace, or one without it
        add, delete = ("ADD", conf, cid, container.path), ("DEL", conf, cid, del_netns)
        del_first = rng.random() < 0.5
        stagger = rng.choice([0, rng.uniform(0, 0.03), rng.uniform(0, 0.12)])
        if del_first:
            out_del, out_add = racer.race(delete, add, stagger)
        else:
            out_add, out_del = racer.race(add, delete, stagger)
        assert out_del.ok and not out_del.stdout.strip(), f"{what}: DEL failed: {out_del}"
        if not out_add.ok:
            assert out_add.code() == 11, f"{what}: ADD failed: {out_add}"
        state = racer.state(conf["name"], cid, container)
        if state["record"] is None and not state["veths"] and not state["addresses"] and not state["inside"]:
            assert_gone(state, what)
            outcome = "gone"
        else:
            assert out_add.ok, f"{what}: the ADD failed ({out_add}) but left {state}"
            assert_attached(state, out_add.json, cid, container, f"{what}: neither gone nor consistent")
            outcome = "attached"
        tally[("DEL" if del_first else "ADD", outcome if out_add.ok else "gone, ADD failed with 11")] += 1
        finish(racer, conf, cid, container, what)
        container.close()
    print(f"ADD/DEL ({racer.bin_dir}): " + ", ".join(f"{side} started first, {outcome}: {n}" for (side, outcome), n in sorted(tally.items())))
    assert sum(tally.values()) == TRIALS


# --- found while writing these tests ---------------------------------------------------------------------


def _waiting_on_a_lock(pids: list[int]) -> bool:
    """Whether one of these processes waits for a flock (a "->" line of /proc/locks)."""
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "->" in fields and len(fields) > 5 and fields[fields.index("->") + 4].isdigit() and int(fields[fields.index("->") + 4]) in pids:
                return True
    return False


def test_a_del_racing_the_first_add_on_a_node_holds_the_attachment_lock(netns, tmp_path, taskset):
    """Deterministic: the DEL is parked inside its IPAM DEL (a wrapper waits for a go file) while the ADD runs.

    With the lock held by the DEL, the ADD waits for it (seen in /proc/locks), and the DEL
    then releases nothing of the ADD's; without it, the ADD completes first and the DEL
    releases the address the ADD just returned.
    """
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dist", "src-bin")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name in ("bridge", "host-local"):
        os.symlink(os.path.join(src, name), plugins / name)
    parked, go = tmp_path / "parked", tmp_path / "go"
    (plugins / "parkipam").write_text(  # host-local, whose DEL first waits (a slow disk, a remote IPAM) until told to go on
        "#!/bin/sh\n"
        f'if [ "$CNI_COMMAND" = DEL ]; then : > {parked}; i=0; while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; fi\n'
        f'exec {src}/host-local "$@"\n')
    (plugins / "parkipam").chmod(0o755)
    racer = Racer(str(plugins), netns, tmp_path, taskset)
    conf = dict(racer.conf("rfirst"), ipam={"type": "parkipam", "subnet": SUBNET, "dataDir": f"{tmp_path}/ipam"})
    container = netns("rc")
    delete = racer.start("DEL", conf, "c1", container.path, pin=False)
    add = None
    try:
        deadline = time.monotonic() + 60
        while not parked.exists() and delete.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert parked.exists(), f"the DEL never reached its IPAM DEL: {Outcome.of(delete)}"
        add = racer.start("ADD", conf, "c1", container.path, pin=False)
        while add.poll() is None and not _waiting_on_a_lock([add.pid]) and time.monotonic() < deadline:
            time.sleep(0.02)
        go.touch()
        out_add, out_del = Outcome.of(add), Outcome.of(delete)
    finally:
        go.touch()
        for proc in (delete, add):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert out_del.ok, out_del
    assert out_add.ok, out_add
    state = racer.state("rfirst", "c1", container)
    assert_attached(state, out_add.json, "c1", container, "ADD after a parked DEL")
    finish(racer, conf, "c1", container, "the parked DEL")
