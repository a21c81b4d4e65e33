"""Program each remote node: one neighbour, one FDB entry and one route per node, never per pod.

For a peer owning 10.244.2.0/24 with VTEP 192.0.2.2 and MAC 0e:56:0a:f4:02:00:
  neighbour 10.244.2.0 -> 0e:56:0a:f4:02:00   (permanent, on the device)
  fdb       0e:56:0a:f4:02:00 -> 192.0.2.2    (permanent, self)
  route     10.244.2.0/24 via 10.244.2.0 dev <device> onlink, proto 241
and, in a dual-stack overlay, for its IPv6 subnet fd00:10:244:2::/64 as well:
  neighbour fd00:10:244:2:: -> 0e:56:0a:f4:02:00 (the same MAC: one FDB entry serves both)
  route     fd00:10:244:2::/64 via fd00:10:244:2:: dev <device> onlink, proto 241
The neighbour and FDB entries go in before the route, so the kernel never has
to resolve anything (flannel's order).  Whatever is on the device and not
desired is removed, routes first.  No entry is touched while the peer set is
unknown (the store unreachable): stale beats missing.
"""

from dataclasses import dataclass, field

from cni_vxlan.conf import ROUTE_PROTOCOL, Peer
from common import netlink

ZERO_MAC = "00:00:00:00:00:00"


@dataclass
class Plan:
    """The entries to set and the stale ones to remove on the device."""

    neighbours: list = field(default_factory=list)  # (ip, mac) to set
    fdb: list = field(default_factory=list)  # (mac, vtep) to set
    routes: list = field(default_factory=list)  # (subnet, gateway) to set
    stale_routes: list = field(default_factory=list)  # RouteEntry
    stale_neighbours: list = field(default_factory=list)  # ip
    stale_fdb: list = field(default_factory=list)  # (mac, dst)

    def __bool__(self) -> bool:
        return any((self.neighbours, self.fdb, self.routes, self.stale_routes, self.stale_neighbours, self.stale_fdb))


def _routes(p: Peer) -> list:
    """(subnet, gateway) of each family the peer has."""
    return [(p.subnet, p.base)] + ([(p.subnet6, p.base6)] if p.subnet6 is not None else [])


def plan(peers: list[Peer], routes, neighbours, fdb) -> Plan:
    """What to change, given the desired peers and what is programmed now (pure; unit-tested).

    Routes and neighbours of both families are keyed by their address: the families never collide.
    """
    out = Plan()
    want_routes = {subnet: gw for p in peers for subnet, gw in _routes(p)}
    want_neigh = {gw: p.mac for p in peers for _, gw in _routes(p)}
    want_fdb = {p.mac: p.vtep for p in peers}
    have_routes = {r.dst: r.gw for r in routes}
    have_neigh = {n.dst: n.mac for n in neighbours}
    have_fdb = {(f.mac, f.dst) for f in fdb}
    for ip, mac in want_neigh.items():
        if have_neigh.get(ip) != mac:
            out.neighbours.append((ip, mac))
    for mac, vtep in want_fdb.items():
        if (mac, vtep) not in have_fdb:
            out.fdb.append((mac, vtep))
    for subnet, gw in want_routes.items():
        if have_routes.get(subnet) != gw:
            out.routes.append((subnet, gw))
    out.stale_routes = [r for r in routes if r.dst not in want_routes]
    out.stale_neighbours = [n.dst for n in neighbours if n.dst not in want_neigh]
    out.stale_fdb = [(f.mac, f.dst) for f in fdb if want_fdb.get(f.mac) != f.dst]
    return out


class _Applied:
    """A route this node programmed for a peer, as the kernel would list it (what del_route needs)."""

    def __init__(self, dst, gw, oif: int):
        self.dst, self.gw, self.oif, self.proto = dst, gw, oif, ROUTE_PROTOCOL


def plan_changes(peers: list[Peer], applied: list[Peer], oif: int) -> Plan:
    """What to change, given the desired peers and those programmed last (pure; no dump of the kernel's tables).

    An ADD's cost then follows the peers that changed, not the node count;
    entries someone else removed are put back by `vxlan sync`, which plans
    against the kernel (plan()).
    """
    out = Plan()
    want, had = {p.node: p for p in peers}, {p.node: p for p in applied}
    routes = {subnet for p in peers for subnet, _ in _routes(p)}
    bases = {gw for p in peers for _, gw in _routes(p)}
    fdb = {(p.mac, p.vtep) for p in peers}
    for p in peers:
        if had.get(p.node) != p:
            out.neighbours += [(gw, p.mac) for _, gw in _routes(p)]
            out.fdb.append((p.mac, p.vtep))
            out.routes += _routes(p)
    for p in applied:
        if want.get(p.node) != p:
            out.stale_routes += [_Applied(subnet, gw, oif) for subnet, gw in _routes(p) if subnet not in routes]
            out.stale_neighbours += [gw for _, gw in _routes(p) if gw not in bases]
            if (p.mac, p.vtep) not in fdb:
                out.stale_fdb.append((p.mac, p.vtep))
    return out


def programmed(nl, device: netlink.Link, network, network6=None):
    """The routes, permanent neighbours and FDB entries on the device that belong to the overlay (network6: its IPv6 range too)."""
    routes = [r for r in netlink.list_routes(nl, 4) if (r.oif == device.index or r.proto == ROUTE_PROTOCOL) and r.dst.subnet_of(network)]
    if network6 is not None:
        routes += [
            r
            for r in netlink.list_routes(nl, 6)
            if (r.oif == device.index or r.proto == ROUTE_PROTOCOL) and r.gw is not None and r.dst.subnet_of(network6)
        ]
    ranges = (network,) if network6 is None else (network, network6)
    neighbours = [
        n
        for n in netlink.list_neighbours(nl, device.index)
        if n.state & netlink.NUD_PERMANENT and n.dst is not None and any(n.dst in r for r in ranges)
    ]
    fdb = [
        f
        for f in netlink.list_neighbours(nl, device.index, bridge=True)
        if f.mac != ZERO_MAC and f.dst is not None and f.state & netlink.NUD_PERMANENT
    ]
    return routes, neighbours, fdb


def reconcile(nl, device: netlink.Link, network, peers: list[Peer], applied: list[Peer] | None = None, network6=None) -> Plan:
    """Program peers on the device: against the kernel's tables, or (applied given) against what was programmed last."""
    todo = plan(peers, *programmed(nl, device, network, network6)) if applied is None else plan_changes(peers, applied, device.index)
    for route in todo.stale_routes:
        netlink.del_route(nl, route.dst, route.gw, route.oif, proto=route.proto)
    for ip, mac in todo.neighbours:
        netlink.replace_neighbour(nl, device.index, ip, mac)
    for mac, vtep in todo.fdb:
        netlink.replace_fdb(nl, device.index, mac, vtep)
    for subnet, gw in todo.routes:
        netlink.add_route(nl, subnet, gw, device.index, replace=True, onlink=True, proto=ROUTE_PROTOCOL)
    for ip in todo.stale_neighbours:
        netlink.del_neighbour(nl, device.index, ip)
    for mac, dst in todo.stale_fdb:
        netlink.del_fdb(nl, device.index, mac, dst)
    return todo
