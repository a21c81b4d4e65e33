"""make bench, step vxlanscale: the overlay's ADD and `vxlan sync` against 3 and 1,000 nodes (issue 14).

One real node (n1) and etcd run on a testbed (conformance/testbed.py); the
other nodes are simulated: leases written in the store's real format
(cni_vxlan/store.py: subnets/<subnet> and nodes/<node>), with VTEPs in
100.64.0.0/10 that need not answer (programming a peer sends nothing to it).
ADD then plans against what it applied last, so its cost should not follow
the node count; `vxlan sync --once` compares with the kernel, cold (nothing
programmed) and warm (all programmed).
"""
import json
import os
from ipaddress import ip_address, ip_network

from conformance.netenv import Netns
from conformance.testbed import Testbed

NETWORK = "10.128.0.0/9"  # room for 32,768 /24s
NODES = (3, 1000)


def _conf(bed: Testbed, work: str) -> dict:
    return {"cniVersion": "1.1.0", "name": "scale", "type": "vxlan", "network": NETWORK, "nodeName": "n1",
            "dataDir": os.path.join(work, "scale", "vxlan"), "ipam": {"dataDir": os.path.join(work, "scale", "ipam")},
            "etcd": {"endpoints": [bed.etcd_endpoint], "prefix": "/bench", "timeout": 5}}


def _simulate(bed: Testbed, conf: dict, first: int, last: int) -> None:
    """Leases for nodes sim<first>..sim<last>, as their own ADDs would have written them."""
    from bench.run import inside
    from cni_vxlan import etcd
    from cni_vxlan.conf import Peer, VxlanConf, vtep_mac
    from cni_vxlan.peers import Lease
    from cni_vxlan.store import LeaseStore, _encode
    from common.skel import CmdArgs

    store = LeaseStore(VxlanConf.load(CmdArgs.for_config(conf, command="ADD")))
    base = int(ip_network(NETWORK).network_address)
    ops = []
    for i in range(first, last + 1):
        subnet = ip_network(f"{ip_address(base + (i + 10) * 256)}/24")  # clear of n1's, which it leases first
        vtep = ip_address(int(ip_address("100.64.0.0")) + i)
        node = f"sim{i}"
        ops += [etcd.put_op(store.subnet_key(subnet), _encode(Lease(Peer(node, vtep, subnet, vtep_mac(subnet)), 1500))),
                etcd.put_op(store.node_key(node), json.dumps({"subnet": str(subnet)}).encode())]
    with inside(bed.nodes["n1"].ns):
        for at in range(0, len(ops), 100):  # etcd takes at most 128 operations per transaction
            store.client.txn([], ops[at:at + 100])


def bench_vxlan_scale(res, ours, iterations: int, work: str) -> None:
    from bench.run import _run_argv, inside

    if not os.access(os.path.join(ours.bin_dir, "vxlan"), os.X_OK):
        res.notes.append("vxlanscale: no vxlan plugin in this build; skipped.")
        return
    with Testbed() as bed:
        bed.start_etcd()
        n1 = bed.add_node("n1")
        conf = _conf(bed, work)
        path = os.path.join(work, "scale.conflist")
        with open(path, "w") as f:
            json.dump({"cniVersion": "1.1.0", "name": "scale", "plugins": [conf]}, f)
        sync = [os.path.join(ours.bin_dir, "vxlan"), "sync", "--once", "--conf", path]
        simulated = 0
        for nodes in NODES:
            _simulate(bed, conf, simulated + 1, nodes - 1)
            simulated = nodes - 1
            with inside(n1.ns):
                res.add(f"vxlan sync --once, {nodes:,} nodes, cold", ours.label, _run_argv(sync, ours.env("")))
                res.add(f"vxlan sync --once, {nodes:,} nodes, warm", ours.label, _run_argv(sync, ours.env("")))
                for i in range(iterations):
                    with Netns("bs") as pod:
                        res.add(f"vxlan ADD, {nodes:,} nodes (etcd)", ours.label, ours.run("vxlan", "ADD", conf, f"s{nodes}-{i}", pod.path))
                        res.add(f"vxlan DEL, {nodes:,} nodes (etcd)", ours.label, ours.run("vxlan", "DEL", conf, f"s{nodes}-{i}", pod.path))
            # the next size starts cold: nothing programmed, as on a node that just joined
            n1.ns.ip("link", "del", "cnivx.1", check=False)
