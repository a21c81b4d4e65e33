"""The quick DEL's judgement (cni_bridge/idle.py, cni_hostlocal_ipam/layout.py): "nothing to do" only when provably so."""

import fcntl
import os

import pytest

from cni_bridge import idle
from cni_hostlocal_ipam import layout
from common import attachment, skel

pytestmark = pytest.mark.unit
CID, IFNAME = "pod-1", "eth0"


@pytest.fixture
def dirs(tmp_path):
    return {"bridge": str(tmp_path / "bridge"), "ipam": str(tmp_path / "ipam")}


def args_for(dirs, netns=None, layer3=True, **top):
    config = {"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "dataDir": dirs["bridge"]}
    if layer3:
        config["ipam"] = {"type": "host-local", "subnet": "10.1.0.0/24", "dataDir": dirs["ipam"]}
    config.update(top)
    args = skel.CmdArgs.for_config(config, command="DEL")
    return args.replace(container_id=CID, ifname=IFNAME, netns=netns)


def put(path: str, data: bytes = b"") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def allocation(dirs, ip: str, cid: str, ifname: str, indexed: bool = True) -> None:
    record = os.path.join(dirs["ipam"], "net1", ip)
    put(record, f"{cid}\r\n{ifname}".encode())
    put(os.path.join(dirs["ipam"], "net1", layout.LOCK))
    if indexed:
        os.link(record, os.path.join(dirs["ipam"], "net1", f"{layout.INDEX_PREFIX}{layout.owner_hash(cid, ifname)}.b00t.{ip}"))


def test_a_node_that_never_saw_the_network_has_nothing_to_delete(dirs):
    assert idle.nothing_to_delete(args_for(dirs)) is True


def test_other_pods_state_does_not_count(dirs):
    key = attachment.key("pod-2", IFNAME)
    put(os.path.join(dirs["bridge"], "net1", key + ".json"), b"{}")
    allocation(dirs, "10.1.0.2", "pod-2", IFNAME)
    allocation(dirs, "10.1.0.3", CID, "eth1")  # same pod, another interface: another attachment
    assert idle.nothing_to_delete(args_for(dirs)) is True


@pytest.mark.parametrize("name", ["{key}.json", "{key}.lock", "pod-1-eth0.json"])
def test_any_record_or_lock_of_the_attachment_means_the_plugin_decides(dirs, name):
    put(os.path.join(dirs["bridge"], "net1", name.format(key=attachment.key(CID, IFNAME))))
    assert idle.nothing_to_delete(args_for(dirs)) is False


def test_an_address_held_by_the_attachment_means_the_plugin_decides(dirs):
    allocation(dirs, "10.1.0.2", CID, IFNAME)
    assert idle.nothing_to_delete(args_for(dirs)) is False


def test_a_record_without_an_owner_index_could_be_anyones(dirs):
    allocation(dirs, "10.1.0.2", "someone", IFNAME, indexed=False)  # as the reference writes them
    assert idle.nothing_to_delete(args_for(dirs)) is False


def test_an_allocation_being_published_means_the_plugin_decides(dirs):
    put(os.path.join(dirs["ipam"], "net1", layout.LOCK))
    put(os.path.join(dirs["ipam"], "net1", f"{layout.TMP_PREFIX}{layout.owner_hash(CID, IFNAME)}-123"))
    assert idle.nothing_to_delete(args_for(dirs)) is False


def test_a_network_locked_by_a_running_command_means_the_plugin_decides(dirs):
    allocation(dirs, "10.1.0.2", "pod-2", IFNAME)
    fd = os.open(os.path.join(dirs["ipam"], "net1", layout.LOCK), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert idle.nothing_to_delete(args_for(dirs)) is False
    finally:
        os.close(fd)
    assert idle.nothing_to_delete(args_for(dirs)) is True


def test_a_container_namespace_means_the_plugin_decides(dirs):
    assert idle.nothing_to_delete(args_for(dirs, netns=object())) is False


def test_layer_2_only_needs_no_ipam_check(dirs):
    assert idle.nothing_to_delete(args_for(dirs, layer3=False)) is True


@pytest.mark.parametrize(
    "top",
    [
        {"ipam": {"type": "dhcp"}},  # another IPAM plugin: only it knows
        {"ipam": {"type": "host-local", "dataDir": "relative"}},
        {"dataDir": "/x/../y"},
        {"dataDir": 5},
        {"ipam": {"subnet": "10.1.0.0/24"}},  # settings without a type: the plugin refuses it
    ],
)
def test_a_config_it_cannot_read_the_plugins_way_means_the_plugin_decides(dirs, top):
    assert idle.nothing_to_delete(args_for(dirs, **top)) is False


def test_host_local_alone(dirs):
    config = {"cniVersion": "1.0.0", "name": "net1", "type": "host-local", "ipam": {"type": "host-local", "dataDir": dirs["ipam"]}}
    args = skel.CmdArgs.for_config(config, command="DEL").replace(container_id=CID, ifname=IFNAME)
    assert layout.nothing_to_delete(args) is True
    allocation(dirs, "10.1.0.2", CID, IFNAME)
    assert layout.nothing_to_delete(args) is False
    no_ipam = args.replace(config={"cniVersion": "1.0.0", "name": "net1", "type": "host-local"})
    assert layout.nothing_to_delete(no_ipam) is False
