"""What a node's overlay looks like now: lease, device, and per peer whether each entry is programmed."""

from cni_vxlan import etcd, node
from cni_vxlan.conf import VxlanConf
from cni_vxlan.reconcile import programmed
from common import netlink


def node_report(conf: VxlanConf) -> dict:
    lease = node.cached_lease(conf)
    peers, store_state = node.applied_peers(conf), "static peers"
    if conf.peer_source == "etcd":
        from cni_vxlan.store import LeaseStore

        try:
            snap = LeaseStore(conf).snapshot()
            peers = [other.peer for n, other in sorted(snap.leases.items()) if n != conf.node_name]
            store_state = f"etcd reachable (revision {snap.revision}, {len(snap.leases)} leases)"
        except etcd.EtcdError as err:
            store_state = f"etcd unreachable ({err}): showing the last applied peers"
    with netlink.host() as nl:
        link = netlink.find_link(nl, conf.device)
        if link is not None:
            routes, neighbours, fdb = programmed(nl, link, conf.network)
        else:
            routes = neighbours = fdb = []
    have_routes = {(r.dst, r.gw) for r in routes}
    have_neigh = {(n.dst, n.mac) for n in neighbours}
    have_fdb = {(f.mac, f.dst) for f in fdb}
    return {
        "network": conf.name,
        "overlay": str(conf.network),
        "node": conf.node_name,
        "store": store_state,
        "device": {
            "name": conf.device,
            "state": "missing" if link is None else ("up" if link.up else "down"),
            "mtu": link.mtu if link else 0,
            "vtep": link.vxlan["local"] if link and link.vxlan else "",
        },
        "lease": {"subnet": str(lease.peer.subnet), "vtep": str(lease.peer.vtep), "mac": lease.peer.mac} if lease else None,
        "peers": [
            {
                "node": p.node,
                "subnet": str(p.subnet),
                "vtep": str(p.vtep),
                "mac": p.mac,
                "programmed": {
                    "route": (p.subnet, p.base) in have_routes,
                    "neighbour": (p.base, p.mac) in have_neigh,
                    "fdb": (p.mac, p.vtep) in have_fdb,
                },
            }
            for p in peers
        ],
    }
