"""What a node's overlay looks like now: lease, device, and per peer whether each entry is programmed."""

from cni_vxlan import node
from cni_vxlan.conf import VxlanConf
from cni_vxlan.peers import peer_source
from cni_vxlan.reconcile import programmed
from common import netlink


def node_report(conf: VxlanConf) -> dict:
    lease = node.cached_lease(conf)
    view = peer_source(conf).view()
    peers = node.applied_peers(conf) if view.peers is None else view.peers
    store_state = view.state
    with netlink.host() as nl:
        link = netlink.find_link(nl, conf.device)
        if link is not None:
            routes, neighbours, fdb = programmed(nl, link, conf.network, conf.ipv6_network)
        else:
            routes = neighbours = fdb = []
    have_routes = {(r.dst, r.gw) for r in routes}
    have_neigh = {(n.dst, n.mac) for n in neighbours}
    have_fdb = {(f.mac, f.dst) for f in fdb}
    dual = conf.ipv6_network is not None
    report = {
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
        "lease": _lease(lease.peer, dual) if lease else None,
        "peers": [
            {
                "node": p.node,
                **_lease(p, dual),
                "programmed": {
                    "route": (p.subnet, p.base) in have_routes,
                    "neighbour": (p.base, p.mac) in have_neigh,
                    "fdb": (p.mac, p.vtep) in have_fdb,
                    # an IPv4 peer (a node of an older version) of a dual-stack network has no IPv6 entries to check
                    **({"route6": (p.subnet6, p.base6) in have_routes, "neighbour6": (p.base6, p.mac) in have_neigh} if dual and p.subnet6 else {}),
                },
            }
            for p in peers
        ],
    }
    if dual:
        report["overlay6"] = str(conf.ipv6_network)
    return report


def _lease(p, dual: bool) -> dict:
    """A node's subnet(s), VTEP and MAC; "subnet6" (null for an IPv4 peer) in a dual-stack network only."""
    out: dict = {"subnet": str(p.subnet), "vtep": str(p.vtep), "mac": p.mac}
    if dual:
        out["subnet6"] = str(p.subnet6) if p.subnet6 is not None else None
    return out
