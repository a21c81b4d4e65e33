"""Faults a node meets in production, each with what must hold afterwards.

Read-only and full state directories, a read-only /proc/sys (a private mount namespace per plugin
process: `unshare -m`, so only that process sees the mount), a lock held by a
stuck or orphaned process, a real IPAM failing in the middle of a bridge ADD,
the bridge deleted by an administrator, a node reboot (namespaces gone, state
directories kept) cleaned up by DEL, GC and the boot sweep, and etcd
restarting under `vxlan sync --watch`.

What other tests already prove is not repeated here (docs/reliability.md,
"Fault cases", lists where): fake IPAMs failing, hanging or crashing
(cni_bridge/tests/test_rollback.py), DEL after the container's namespace is
gone removing masquerade rules of both backends where the reference leaks
them (cni_bridge/tests/test_lifecycle.py), etcd down under ADD
(cni_vxlan/tests/test_overlay.py::test_etcd_down).
"""
import json
import os
import signal
import subprocess
import time

import pytest

from conformance.netenv import Netns, run_plugin, tree_state
from conformance.testbed import Testbed
from tests.badinput import World
from tests.test_bad_input import difference

pytestmark = pytest.mark.root
PLUGINS = ("bridge", "host-local", "vxlan")
LOCK_BOUND = 15.0  # seconds: lockTimeout (2 s here; vxlan's node lock waits 10 s) plus a loaded machine's start-up


def error_of(out) -> dict:
    assert out.rc == 1, out
    doc = json.loads(out.stdout)
    assert set(doc) == {"cniVersion", "code", "msg", "details"} and doc["msg"], doc
    return doc


def veths(ns: Netns) -> list[str]:
    """Pods' host veths (the node's uplink, a veth pair eth0/uplink0, is not one)."""
    return sorted(l["ifname"] for l in ns.ipj("-d", "link", "show")
                  if l.get("linkinfo", {}).get("info_kind") == "veth" and l["ifname"] not in ("eth0", "uplink0"))


def held_addresses(world: World) -> list[str]:
    return sorted(n for n in os.listdir(world.net_dir) if n[0].isdigit()) if os.path.isdir(world.net_dir) else []


def masquerade(ns: Netns) -> list[str]:
    nft = [l.strip() for l in ns.exec("nft", "list", "ruleset").splitlines() if " masquerade" in l and "saddr" in l]
    ipt = ns.exec("iptables-save", "-t", "nat") + ns.exec("ip6tables-save", "-t", "nat")
    return nft + [l.strip() for l in ipt.splitlines() if "CNI-" in l]


def without(snapshot: dict, *prefixes: str) -> dict:
    """The snapshot minus files the test itself writes (probe listings, mount points)."""
    files = {k: v for k, v in snapshot["files"].items() if not k.startswith(prefixes)}
    return dict(snapshot, files=files)


# --- read-only and full state directories ------------------------------------------------------

READ_ONLY = 'mount --bind "$2" "$2" && mount -o remount,ro,bind "$2" "$2" && exec "$1"'


@pytest.mark.parametrize("plugin", PLUGINS)
def test_read_only_state_directory_is_code_5_and_changes_nothing(plugin, bin_dir, netns, tmp_path):
    world = World(plugin, bin_dir, netns, tmp_path)
    before = world.snapshot()
    out = world.run("ADD", world.conf(), mount_script=READ_ONLY, script_args=(world.state,))
    assert error_of(out)["code"] == 5, out
    after = world.snapshot()
    assert after == before, difference(before, after)
    assert world.run("ADD", world.conf()).ok, "the same ADD works once the directory is writable"


@pytest.mark.parametrize("delegation", ["in-process", "exec"])
def test_ipam_failing_mid_add_rolls_the_bridge_back(delegation, bin_dir, netns, tmp_path):
    """Only host-local's directory is read-only: the record and the veth exist when IPAM fails (5), and go."""
    world = World("bridge", bin_dir, netns, tmp_path)
    env = {"CNI_DELEGATE_EXEC": "1"} if delegation == "exec" else {}
    seed_veth = veths(world.node)
    before = world.snapshot()
    out = world.run("ADD", world.conf(), env=env, mount_script=READ_ONLY, script_args=(world.ipam_dir,))
    assert error_of(out)["code"] == 5, out
    assert veths(world.node) == seed_veth, "the failed ADD's veth is still there"
    after = world.snapshot()
    assert after == before, difference(before, after)


# $1 the plugin, $2 a scratch mount point, $3 the state directory, $4 where the listings go, $5 what runs out
FULL = r'''
set -e
plugin=$1 mnt=$2 state=$3 out=$4 what=$5
mount -t tmpfs -o size=64k,nr_inodes=32 cnitfull "$mnt"
cp -a "$state"/. "$mnt"/
mount --bind "$mnt" "$state"
if [ "$what" = inodes ]; then   # no file can be created; data still fits
    i=0
    while touch "$state/.fill$i" 2>/dev/null; do i=$((i+1)); done
else                            # files can be created, but hold no data
    dd if=/dev/zero of="$state/.fill" bs=1k 2>/dev/null || true
fi
list() { (cd "$state" && find . -printf '%p %y %s %m\n' | LC_ALL=C sort); }
list > "$out/before"
set +e
"$plugin"
rc=$?
list > "$out/after"
exit $rc
'''


FULL_CASES = [(p, f) for p in PLUGINS for f in ("blocks", "inodes")]


@pytest.mark.parametrize("plugin,full", FULL_CASES)
def test_full_state_directory_is_code_5_and_leaves_no_partial_file(plugin, full, bin_dir, netns, tmp_path):
    """A tmpfs of 64 KiB and 32 inodes holding a copy of the state, filled up: no room for data, or none for a file."""
    world = World(plugin, bin_dir, netns, tmp_path)
    mount_point, listing = tmp_path / "mnt", tmp_path / "probe"
    mount_point.mkdir()
    listing.mkdir()
    before = without(world.snapshot(), "probe")
    out = world.run("ADD", world.conf(), mount_script=FULL, script_args=(str(mount_point), world.state, str(listing), full))
    assert error_of(out)["code"] == 5, out
    assert (listing / "after").read_text() == (listing / "before").read_text(), "the failed ADD left a file behind"
    assert "fill" in (listing / "before").read_text()
    after = without(world.snapshot(), "probe")
    assert after == before, difference(before, after)


def test_read_only_proc_sys_fails_closed_and_changes_nothing(bin_dir, netns, tmp_path):
    """accept_ra cannot be turned off (CVE-2020-10749): the reference ignores that; ours refuses (104) before the pod is plumbed."""
    world = World("bridge", bin_dir, netns, tmp_path)
    before = world.snapshot()
    script = 'mount --bind /proc/sys /proc/sys && mount -o remount,ro,bind /proc/sys /proc/sys && exec "$1"'
    err = error_of(world.run("ADD", world.conf(), mount_script=script))
    assert err["code"] == 104 and "router advertisements" in err["msg"], err
    after = world.snapshot()
    assert after == before, difference(before, after)


# --- a lock held by someone else ---------------------------------------------------------------------


def hold_lock(path: str, inherited: bool = False) -> list[subprocess.Popen]:
    """flock(1) holding `path` around a long sleep; with inherited, the holder is an orphaned child (flock killed)."""
    argv = ["flock", "-x", path, "sleep", "600"] if inherited else ["flock", "-x", "-o", path, "sleep", "600"]
    holder = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["flock", "-n", "-x", path, "true"]).returncode == 0:
        assert time.monotonic() < deadline, "flock did not take the lock"
        time.sleep(0.05)
    procs = [holder]
    if inherited:
        # flock(1) takes the lock before it forks the command: wait for the child
        children: list[str] = []
        while not children:
            assert time.monotonic() < deadline, "flock has no child"
            children = open(f"/proc/{holder.pid}/task/{holder.pid}/children").read().split()
            if not children:
                time.sleep(0.01)
        os.kill(holder.pid, signal.SIGKILL)  # the lock lives on in the orphaned sleep, as in a runtime that lost its plugin
        holder.wait()
        procs = [int(children[0])]
    else:
        os.kill(holder.pid, signal.SIGSTOP)  # stuck: not even scheduled
    return procs


def release(procs) -> None:
    for p in procs:
        pid = p if isinstance(p, int) else p.pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not isinstance(p, int):
            p.wait()


@pytest.mark.parametrize("holder", ["stopped", "orphaned child"])
def test_bridge_add_with_a_stuck_lock_holder_gives_11_within_the_bound_and_rolls_back(holder, bin_dir, netns, tmp_path):
    world = World("bridge", bin_dir, netns, tmp_path)
    conf = world.conf()
    conf["ipam"]["lockTimeout"] = 2
    held = hold_lock(os.path.join(world.net_dir, "lock"), inherited=holder == "orphaned child")
    try:
        before = world.snapshot()
        start = time.monotonic()
        out = world.run("ADD", conf)
        took = time.monotonic() - start
        err = error_of(out)
        assert err["code"] == 11 and "lock" in err["msg"], err
        assert took < LOCK_BOUND, f"code 11 after {took:.1f}s"
        after = world.snapshot()
        assert after == before, difference(before, after)  # the veth made before IPAM waited is gone again
    finally:
        release(held)
    assert world.run("ADD", conf).ok
    assert held_addresses(world) == ["10.161.0.2", "10.161.0.3"]


def test_bridge_del_with_a_stuck_lock_holder_gives_11_then_succeeds(bin_dir, netns, tmp_path):
    world = World("bridge", bin_dir, netns, tmp_path)
    conf = world.conf()
    conf["ipam"]["lockTimeout"] = 2
    held = hold_lock(os.path.join(world.net_dir, "lock"))
    try:
        err = error_of(world.run("DEL", conf, cid="seed", netns=world.pod.path))
        assert "not found" not in json.dumps(err).lower(), err  # go-cni would take it for success
        assert held_addresses(world) == ["10.161.0.2"], "the address is still held: a retried DEL must release it"
        assert err["code"] == 11, err
    finally:
        release(held)
        assert world.run("DEL", conf, cid="seed", netns=world.pod.path).ok  # the retried DEL finishes the job
        assert held_addresses(world) == []


def test_vxlan_add_with_a_stuck_node_lock_gives_11_within_the_bound(bin_dir, netns, tmp_path):
    world = World("vxlan", bin_dir, netns, tmp_path)
    held = hold_lock(os.path.join(world.state, "vxlan", "badnet", "lock"))
    try:
        before = world.snapshot()
        start = time.monotonic()
        err = error_of(world.run("ADD", world.conf()))
        assert err["code"] == 11 and "lock" in err["msg"], err
        assert time.monotonic() - start < LOCK_BOUND + 10  # the node lock's own bound is 10 s
        after = world.snapshot()
        assert after == before, difference(before, after)
    finally:
        release(held)
    assert world.run("ADD", world.conf()).ok


# --- the bridge deleted under the pods -------------------------------------------------------------


def test_bridge_deleted_by_an_administrator(bin_dir, netns, tmp_path):
    world = World("bridge", bin_dir, netns, tmp_path)
    seed_veth = veths(world.node)
    world.node.ip("link", "del", "cnibad0")
    # the old pod's port is orphaned: CHECK says so instead of reporting a healthy pod
    check = dict(world.conf(), prevResult=world.seed_result)
    assert error_of(world.run("CHECK", check, cid="seed", netns=world.pod.path))["code"] == 107
    out = world.run("ADD", world.conf(), cid="new", netns=world.pod2.path)
    assert out.ok, out
    bridge = world.node.ipj("-d", "link", "show", "cnibad0")[0]
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    new_veth = out.json["interfaces"][1]["name"]
    assert world.node.ipj("link", "show", new_veth)[0].get("master") == "cnibad0"
    assert world.run("DEL", dict(world.conf(), prevResult=world.seed_result), cid="seed", netns=world.pod.path).ok
    assert world.run("DEL", dict(world.conf(), prevResult=out.json), cid="new", netns=world.pod2.path).ok
    assert veths(world.node) == [] and seed_veth
    assert held_addresses(world) == []
    assert os.listdir(os.path.join(world.state, "bridge", "badnet")) == []
    assert masquerade(world.node) == []


# --- a node reboot ---------------------------------------------------------------------------------


def reboot(world: World, make_netns) -> None:
    """Namespaces, links and rules are gone; the state directories stay. A fresh node namespace takes over."""
    for ns in (world.pod, world.pod2, world.node):
        ns.close()
    world.node = make_netns("n")


def suite(world: World, conf_dir, *args) -> str:
    return world.node.exec(os.path.join(world.bin_dir, "cni-suite"), "--conf-dir", str(conf_dir), *args)


@pytest.mark.parametrize("reclaim", ["DEL and GC", "boot sweep"])
@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_node_reboot_is_reclaimed(reclaim, backend, bin_dir, netns, tmp_path):
    world = World("bridge", bin_dir, netns, tmp_path, seed=False)
    conf = dict(world.conf(), ipMasqBackend=backend)
    results = {}
    third = netns("c")
    for cid, pod in (("a", world.pod), ("b", world.pod2), ("c", third)):
        out = world.run("ADD", conf, cid=cid, netns=pod.path)
        assert out.ok, out
        results[cid] = out.json
    assert len(held_addresses(world)) == 3 and len(masquerade(world.node)) >= 3
    third.close()
    reboot(world, netns)
    if reclaim == "DEL and GC":
        # containerd after a reboot: DEL with CNI_NETNS empty and the cached result; the other two never come back
        assert world.run("DEL", dict(conf, prevResult=results["a"]), cid="a", netns="").ok
        assert "10.161.0.2" not in held_addresses(world)
        gc = dict(conf, **{"cni.dev/valid-attachments": []})
        out = run_plugin(world.binary, "GC", gc, node=world.node, ifname="", path=world.bin_dir)
        assert out.ok, out
    else:
        # the boot sweep needs allocations of an earlier boot: give the records another boot id, as a reboot would
        old = "0" * 16
        for name in os.listdir(world.net_dir):
            if name.startswith(".alloc."):
                parts = name.split(".", 4)
                os.rename(os.path.join(world.net_dir, name), os.path.join(world.net_dir, ".".join(parts[:3] + [old, parts[4]])))
        records = os.path.join(world.state, "bridge", "badnet")
        for name in os.listdir(records):
            with open(os.path.join(records, name)) as f:
                data = json.load(f)
            with open(os.path.join(records, name), "w") as f:
                json.dump(dict(data, boot=old), f)
        conf_dir = tmp_path / "net.d"
        conf_dir.mkdir()
        (conf_dir / "10-badnet.conflist").write_text(json.dumps({"cniVersion": "1.1.0", "name": "badnet", "plugins": [conf]}))
        out = suite(world, conf_dir, "gc", "--boot-sweep", "--cni-path", world.bin_dir)
        assert "released 3" in out, out
        # the runtime's own DEL, arriving late, finds nothing and succeeds
        assert world.run("DEL", dict(conf, prevResult=results["a"]), cid="a", netns="").ok
    assert held_addresses(world) == []
    assert not [n for n in os.listdir(world.net_dir) if n.startswith((".alloc.", ".tmp-"))]
    assert os.listdir(os.path.join(world.state, "bridge", "badnet")) == []
    assert veths(world.node) == [] and masquerade(world.node) == []
    out = world.run("ADD", conf, cid="after", netns=netns("c").path)
    assert out.ok and out.json["ips"][0]["address"] != "", out  # the node works again


# --- etcd restarting under vxlan sync --watch ------------------------------------------------------


def test_sync_watch_survives_an_etcd_restart_and_converges_again(bin_dir):
    from cni_vxlan.tests.test_overlay import add_pod, conflist, overlay_entries, until

    with Testbed() as bed:
        bed.start_etcd()
        n1, n2 = bed.add_node("n1"), bed.add_node("n2")
        add_pod(bed, n1, "p1", bin_dir)
        add_pod(bed, n2, "p2", bin_dir)
        sync = n1.start([os.path.join(bin_dir, "vxlan"), "sync", "--watch", "--resync", "5", "--conf", conflist(bed, n1)], f"{bed.tmp}/n1.sync.log")
        assert until(lambda: len(overlay_entries(n1)[0]) == 1, 10) is not None, "n1 never programmed n2"
        programmed = overlay_entries(n1)
        bed.stop_etcd()
        time.sleep(3)  # several failed re-lists and reconnects
        assert sync.poll() is None, "sync --watch died with etcd"
        assert overlay_entries(n1) == programmed, "entries changed while etcd was down"
        bed.start_etcd()  # the same data directory: the leases are still there
        n3 = bed.add_node("n3")
        address, _ = add_pod(bed, n3, "p3", bin_dir)
        subnet = ".".join(address.split(".")[:3]) + ".0/24"
        waited = until(lambda: any(r["dst"] == subnet for r in overlay_entries(n1)[0]), 45)
        log = open(f"{bed.tmp}/n1.sync.log").read()[-2000:]
        assert waited is not None, f"sync --watch did not converge after the restart; log: {log}"
        assert sync.poll() is None, "sync --watch died"
        routes, neigh, fdb = overlay_entries(n1)
        assert len(routes) == len(neigh) == len(fdb) == 2, (routes, neigh, fdb)
