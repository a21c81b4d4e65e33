"""peers.PeerSource: a third source, registered in peers.SOURCES, is what every source-dependent path uses.

No code outside peers.py names a source: config validation, converging (ADD,
`vxlan sync`), the subnet judged before converging, STATUS, `sync --watch`,
`node-remove` and `cni-suite doctor` all ask the registered class.
"""

import json
import os
from dataclasses import replace
from ipaddress import ip_address, ip_network
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from cni_vxlan import cli, device, node, peers, plugin
from cni_vxlan.conf import Peer, VxlanConf
from cni_vxlan.peers import Lease, PeerSourceError, View
from common import lock
from common.errors import CNIError, Code
from common.skel import CmdArgs

pytestmark = pytest.mark.unit

OWN = Peer("n1", ip_address("192.0.2.1"), ip_network("198.18.7.0/24"), "0e:56:c6:12:07:00")
OTHER = Peer("n2", ip_address("192.0.2.2"), ip_network("198.18.8.0/24"), "0e:56:c6:12:08:00")


class Pigeons:
    """A third peer source, kept in memory: it records what it is asked."""

    name = "pigeon"
    calls: list = []  # shared by every instance: each caller builds its own

    def __init__(self, conf: VxlanConf):
        self.conf = conf

    def precheck(self, vtep, underlay_mtu: int) -> None:
        self.calls.append(("precheck", str(vtep)))

    fingerprint = None

    def lease_and_peers(self, nl, vtep, underlay_mtu: int, since=None):
        self.calls.append(("lease_and_peers", str(vtep)))
        return Lease(OWN, underlay_mtu), (OTHER,), 42

    def subnet_hint(self):
        return OWN.subnet

    def view(self) -> View:
        return View("no pigeon came back", error="lost at sea", fix="train more pigeons", underlay_mtus={"n1": 1500, "n2": 1400})

    def follow(self, revision: int, resync: float, converge) -> None:
        self.calls.append(("follow", revision))
        if len([c for c in self.calls if c[0] == "follow"]) == 1:
            raise PeerSourceError("a hawk")  # the caller backs off and converges again
        raise cli._Stop()

    def remove_node(self, name: str) -> bool:
        self.calls.append(("remove_node", name))
        return name == "n2"


@pytest.fixture
def pigeon(monkeypatch):
    monkeypatch.setitem(peers.SOURCES, "pigeon", Pigeons)
    monkeypatch.setattr(Pigeons, "calls", [])
    return Pigeons


def config(tmp_path, **kw) -> dict:
    base = {"cniVersion": "1.1.0", "name": "overlay", "type": "vxlan", "network": "198.18.0.0/16", "nodeName": "n1", "dataDir": str(tmp_path / "vx")}
    return dict(base, **kw)


def load(tmp_path, **kw) -> VxlanConf:
    return VxlanConf.load(CmdArgs.for_config(config(tmp_path, **kw), command="ADD"))


def test_the_config_accepts_exactly_the_registered_sources(tmp_path, pigeon):
    conf = load(tmp_path, peerSource="pigeon")
    assert conf.peer_source == "pigeon" and isinstance(peers.peer_source(conf), Pigeons)
    assert (
        type(peers.peer_source(load(tmp_path, peerSource="static", peers=[{"node": "n1", "vtep": "192.0.2.1", "subnet": "198.18.7.0/24"}])))
        is peers.StaticPeers
    )
    assert type(peers.peer_source(load(tmp_path))) is peers.EtcdPeers
    with pytest.raises(CNIError) as err:
        load(tmp_path, peerSource="semaphore")
    assert err.value.code == Code.INVALID_CONFIG and err.value.details.startswith("want 'etcd' or 'static' or 'pigeon'")


def test_an_unregistered_source_is_refused_where_it_is_chosen(tmp_path):
    conf = replace(load(tmp_path), peer_source="pigeon")  # not registered here
    with pytest.raises(CNIError) as err:
        peers.peer_source(conf)
    assert err.value.code == Code.INVALID_CONFIG


def node_lock_is_free(conf) -> bool:
    """Whether another open of the node's lock file could take it now (flock conflicts across opens, in one process too)."""
    path = os.path.join(conf.data_dir, conf.name, "lock")
    if not os.path.exists(path):
        return True
    fd = os.open(path, os.O_RDONLY)
    try:
        return lock.try_acquire(fd)
    finally:
        os.close(fd)


@pytest.fixture
def fake_node(monkeypatch, pigeon):
    """device and reconcile replaced: converge runs against the pigeon alone, under the real lock."""
    vtep = ip_address("192.0.2.1")
    monkeypatch.setattr(device, "detect_vtep", lambda nl, conf: (SimpleNamespace(mtu=1500), vtep))
    monkeypatch.setattr(device, "ensure_device", lambda nl, conf, subnet, underlay, vtep: SimpleNamespace(name=conf.device, mtu=1450, index=5))
    monkeypatch.setattr(node, "reconcile", lambda nl, link, network, wanted, applied: pigeon.calls.append(("reconcile", wanted)))


def test_converge_asks_the_source_before_the_node_lock_and_changes_the_node_under_it(tmp_path, pigeon, fake_node, monkeypatch):
    """An ADD does not wait behind `vxlan sync`'s request to the store (issue 14): the source is read unlocked."""
    conf = load(tmp_path, peerSource="pigeon")
    asked = Pigeons.lease_and_peers

    def lease_and_peers(self, nl, vtep, mtu, since=None):
        self.calls.append(("lock free", node_lock_is_free(conf)))
        return asked(self, nl, vtep, mtu, since)

    monkeypatch.setattr(Pigeons, "lease_and_peers", lease_and_peers)

    def reconcile(nl, link, network, wanted, applied):
        pigeon.calls.append(("reconcile", wanted, node_lock_is_free(conf)))

    monkeypatch.setattr(node, "reconcile", reconcile)
    state = node.converge(conf, nl=None)
    assert (state.lease, state.peers, state.revision) == (Lease(OWN, 1500), (OTHER,), 42)
    assert pigeon.calls == [("precheck", "192.0.2.1"), ("lock free", True), ("lease_and_peers", "192.0.2.1"), ("reconcile", [OTHER], False)]
    assert node.cached_lease(conf) == Lease(OWN, 1500) and node.applied_peers(conf) == [OTHER]
    assert node.applied_revision(conf) == 42


def test_an_older_read_arriving_late_changes_no_entry(tmp_path, pigeon, fake_node):
    conf = load(tmp_path, peerSource="pigeon")
    newer = Peer("n3", ip_address("192.0.2.3"), ip_network("198.18.9.0/24"), "0e:56:c6:12:09:00")
    node.write_state(
        conf, "applied.json", {"revision": 50, "peers": [{"node": "n3", "vtep": "192.0.2.3", "subnet": "198.18.9.0/24", "mac": newer.mac}]}
    )
    state = node.converge(conf, nl=None)  # the pigeon answers from revision 42
    assert state.revision == 42 and [c for c in pigeon.calls if c[0] == "reconcile"] == []
    assert node.applied_peers(conf) == [newer] and node.applied_revision(conf) == 50
    assert node.cached_lease(conf) == Lease(OWN, 1500)  # the lease is still this node's own


def test_add_judges_requested_addresses_by_the_sources_subnet(tmp_path, pigeon):
    assert plugin._expected_subnet(load(tmp_path, peerSource="pigeon")) == OWN.subnet
    assert plugin._expected_subnet(load(tmp_path)) == ip_network("198.18.0.0/16")  # etcd, no lease yet: the overlay


def test_status_names_the_unreachable_source(tmp_path, pigeon):
    with pytest.raises(CNIError) as err:
        plugin.status(CmdArgs.for_config(config(tmp_path, peerSource="pigeon"), command="STATUS"))
    assert (err.value.code, err.value.msg, err.value.details) == (
        Code.NOT_AVAILABLE,
        "pigeon unreachable and this node holds no lease",
        "lost at sea",
    )


def test_sync_watch_waits_on_the_source_and_backs_off_when_it_is_lost(tmp_path, pigeon, monkeypatch):
    revisions = iter([7, 8])
    monkeypatch.setattr(cli, "_converge", lambda conf: next(revisions))
    monkeypatch.setattr(cli.signal, "signal", lambda signum, handler: None)
    slept: list = []
    monkeypatch.setattr(cli.time, "sleep", slept.append)
    cli._watch(load(tmp_path, peerSource="pigeon"), resync=30.0)
    assert pigeon.calls == [("follow", 7), ("follow", 8)] and slept == [0.5]


def test_node_remove_asks_the_source(tmp_path, pigeon):
    path = tmp_path / "10-overlay.conflist"
    path.write_text(json.dumps({"cniVersion": "1.1.0", "name": "overlay", "plugins": [dict(config(tmp_path, peerSource="pigeon"), name=None)]}))
    out = CliRunner().invoke(cli.cli, ["node-remove", "n2", "--conf", str(path)])
    assert out.exit_code == 0 and out.output == "n2: lease removed\n"
    assert pigeon.calls == [("remove_node", "n2")]
    static = {"peerSource": "static", "peers": [{"node": "n1", "vtep": "192.0.2.1", "subnet": "198.18.7.0/24"}]}
    path.write_text(json.dumps({"cniVersion": "1.1.0", "name": "overlay", "plugins": [dict(config(tmp_path, **static), name=None)]}))
    out = CliRunner().invoke(cli.cli, ["node-remove", "n2", "--conf", str(path)])
    assert out.exit_code == 1 and "remove the node from peers[] in every node's config instead" in out.output


def test_doctor_reports_through_the_source(tmp_path, pigeon, monkeypatch):
    from cni_suite import doctor
    from cni_suite.inventory import Network

    network = Network("overlay", "10-overlay.conflist", "vxlan", config(tmp_path, peerSource="pigeon"))
    [finding] = doctor._vxlan(network)
    assert (finding.check, finding.problem, finding.fix) == ("pigeon", "pigeon unreachable: lost at sea", "train more pigeons")
    monkeypatch.setattr(Pigeons, "view", lambda self: View("all home", (OTHER,), underlay_mtus={"n1": 1500, "n2": 1400}))
    [finding] = doctor._vxlan(network)
    assert finding.check == "vxlan-mtu" and "1400: n2; 1500: n1" in finding.problem
