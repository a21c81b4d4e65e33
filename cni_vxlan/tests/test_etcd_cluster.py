"""The overlay against a replicated etcd (3 members, Debian's 3.4) that fails (issue 14).

Each member runs in its own namespace on the underlay; every node's config lists
all three endpoints.  The failures: the leader SIGKILLed, a member whose host
vanishes (every packet dropped: connects and streams hang, nothing is refused),
quorum lost and regained, and a compaction under live watches.  The tests check
outcomes; how long each took is written to dist/etcd-cluster.jsonl for
docs/vxlan.md (no test asserts a duration).
"""

import json
import os
import time

import pytest

from cni_vxlan.tests.test_overlay import conf as overlay_conf
from cni_vxlan.tests.test_overlay import until
from conformance.testbed import Testbed, ping

pytestmark = pytest.mark.root
TIMEOUT = 2  # etcd.timeout in every node's config
REACH = 20.0  # how long a test waits for an outcome before it fails (not a bound being measured)
FIGURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "dist", "etcd-cluster.jsonl")


@pytest.fixture
def bed():
    with Testbed() as b:
        b.start_etcd_cluster(3)
        yield b


def record(test: str, figure: str, seconds: float) -> None:
    os.makedirs(os.path.dirname(FIGURES), exist_ok=True)
    with open(FIGURES, "a") as f:
        f.write(json.dumps({"test": test, "figure": figure, "seconds": round(seconds, 3), "etcd_timeout": TIMEOUT, "at": time.time()}) + "\n")


def conf(bed: Testbed, node) -> dict:
    """test_overlay's network, with every member of the cluster as an endpoint."""
    return overlay_conf(bed, node, etcd={"endpoints": bed.etcd_endpoints, "prefix": "/cnit", "timeout": TIMEOUT})


def add_pod(bed: Testbed, node, pod_id: str, bin_dir: str) -> tuple[str, float]:
    """(the pod's address, seconds the ADD took)."""
    node.pod(pod_id)
    start = time.monotonic()
    out = node.run(os.path.join(bin_dir, "vxlan"), "ADD", conf(bed, node), pod_id, bin_dir)
    took = time.monotonic() - start
    assert out.ok, out
    return out.json["ips"][0]["address"].split("/")[0], took


def watching(bed: Testbed, bin_dir: str, *names: str) -> list:
    """Nodes with a pod each and `vxlan sync --watch` running."""
    nodes = []
    for name in names:
        node = bed.add_node(name)
        add_pod(bed, node, f"{name}p", bin_dir)
        path = f"{bed.tmp}/{name}.conflist"
        with open(path, "w") as f:
            json.dump({"cniVersion": "1.1.0", "name": "overlay", "plugins": [conf(bed, node)]}, f)
        node.start([os.path.join(bin_dir, "vxlan"), "sync", "--watch", "--conf", path], f"{bed.tmp}/{name}.sync.log")
        nodes.append(node)
    return nodes


def joins_and_is_reached(bed: Testbed, bin_dir: str, test: str, name: str, watchers: list) -> None:
    """A new node takes a lease and starts a pod; every watching node's pod reaches it."""
    node = bed.add_node(name)
    address, took = add_pod(bed, node, f"{name}p", bin_dir)
    record(test, f"ADD on a joining node {name}", took)
    waited = until(lambda: all(ping(w.pods[f"{w.name}p"], address, wait=0.2) for w in watchers), REACH)
    assert waited is not None, f"{name} was not reached by {[w.name for w in watchers]}: see {bed.tmp}/*.sync.log"
    record(test, f"{name} reached by every watching node, after its ADD", waited)


def test_a_leader_killed(bed, bin_dir):
    n1, n2 = watching(bed, bin_dir, "n1", "n2")
    bed.leader().kill()
    _, took = add_pod(bed, n1, "n1q", bin_dir)
    record("leader-kill", "ADD on a leased node, just after the kill", took)
    joins_and_is_reached(bed, bin_dir, "leader-kill", "n3", [n1, n2])


def test_a_member_whose_host_vanishes(bed, bin_dir):
    """The first endpoint of every node's list goes silent: requests and watch streams on it hang, nothing refuses."""
    n1, n2 = watching(bed, bin_dir, "n1", "n2")
    bed.members["m1"].vanish()
    _, took = add_pod(bed, n1, "n1q", bin_dir)
    record("member-vanishes", "ADD on a leased node, just after the vanish", took)
    joins_and_is_reached(bed, bin_dir, "member-vanishes", "n3", [n1, n2])
    bed.members["m1"].reappear()


def test_quorum_lost_and_regained(bed, bin_dir):
    n1, n2 = watching(bed, bin_dir, "n1", "n2")
    survivor, *lost = list(bed.members.values())
    for member in lost:
        member.kill()
    # a leased node works from its local state
    _, took = add_pod(bed, n1, "n1q", bin_dir)
    record("quorum-lost", "ADD on a leased node", took)
    # an unleased node is told to retry (code 11), and nothing is left of its attempt
    n3 = bed.add_node("n3")
    n3.pod("n3p")
    start = time.monotonic()
    out = n3.run(os.path.join(bin_dir, "vxlan"), "ADD", conf(bed, n3), "n3p", bin_dir)
    record("quorum-lost", "ADD on an unleased node, until its error", time.monotonic() - start)
    assert out.rc != 0 and out.json["code"] == 11, out
    assert [link["ifname"] for link in n3.ns.ipj("link", "show")] == ["lo", "eth0"]
    assert [link["ifname"] for link in n3.pods["n3p"].ipj("link", "show")] == ["lo"]
    # quorum returns; no one acts on the nodes: the watchers find the store again by themselves
    for member in lost:
        member.start()
    for member in lost:
        member.wait_healthy()
    assert n3.run(os.path.join(bin_dir, "vxlan"), "ADD", conf(bed, n3), "n3p", bin_dir).ok
    joins_and_is_reached(bed, bin_dir, "quorum-regained", "n4", [n1, n2])


def test_compaction_under_live_watches(bed, bin_dir):
    n1, n2 = watching(bed, bin_dir, "n1", "n2")
    for i in range(20):  # history to compact away
        bed.etcdctl("put", f"/cnit/overlay/junk/{i}", "x")
    revision = json.loads(bed.etcdctl("endpoint", "status", "-w", "json"))[0]["Status"]["header"]["revision"]
    bed.etcdctl("compaction", "--physical", str(revision))
    joins_and_is_reached(bed, bin_dir, "compaction", "n3", [n1, n2])
