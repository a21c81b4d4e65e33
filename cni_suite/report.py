"""`cni-suite status`: what the plugins hold on this node, per network.

Range usage and every allocation (address, container, interface, age, boot),
the attachments the bridge recorded (and whether their veth still exists),
the masquerade rules of the network, and for vxlan the lease and peers.
"""

import os
import time

from cni_bridge import masq
from cni_bridge.conf import BridgeConf
from cni_bridge.state import Records
from cni_hostlocal_ipam.conf import IPAMConf
from cni_hostlocal_ipam.store import open_store
from cni_suite.inventory import Network
from common import netlink
from common.errors import CNIError
from common.skel import CmdArgs, ifname_problem


def plumbing(network: Network) -> tuple[dict | None, str]:
    """(the config host-local sees, the bridge's data dir) for a network of ours; (None, "") for a type with neither."""
    if network.plugin == "host-local":
        return network.config, ""
    if network.plugin == "bridge":
        conf = BridgeConf.load(CmdArgs.for_config(network.config, command="STATUS"))
        return (network.config if conf.layer3 and conf.ipam_type == "host-local" else None), conf.data_dir
    if network.plugin != "vxlan":
        return None, ""  # another plugin of ours (the plugin table): no host-local state, no bridge records
    from cni_vxlan import node
    from cni_vxlan.conf import VxlanConf
    from cni_vxlan.plugin import delegate_config

    vxlan_conf = VxlanConf.load(CmdArgs.for_config(network.config, command="STATUS"))
    lease = node.cached_lease(vxlan_conf)
    bridge_dir = os.path.join(node.state_dir(vxlan_conf), "bridge")
    if lease is None:
        return None, bridge_dir
    return delegate_config(vxlan_conf, lease, 0, network.config), bridge_dir


def ipam_report(config: dict) -> dict:
    conf = IPAMConf.load(CmdArgs.for_config(config, command="STATUS"))
    now = time.time()
    allocations = []
    store = open_store(conf, create=False)
    if store.exists():
        with store:
            allocations = store.allocations()
    ranges = []
    for index, range_set in enumerate(conf.range_sets):
        # as ints: a range's bounds and gateway are one family (IPAMConf.load checks them against the subnet)
        capacity = sum(int(r.end) - int(r.start) + 1 - (1 if int(r.start) <= int(r.gateway) <= int(r.end) else 0) for r in range_set.ranges)
        used = sum(1 for a in allocations if range_set.range_for(a.ip) is not None)
        ranges.append({"rangeSet": index, "ranges": str(range_set), "capacity": capacity, "used": used, "free": capacity - used})
    return {
        "dataDir": os.path.join(conf.data_dir, conf.name),
        "ranges": ranges,
        "allocations": [
            {
                "ip": str(a.ip),
                "containerID": a.container_id,
                "ifname": a.ifname,
                "ageSeconds": int(now - a.ctime),
                "boot": "current" if a.boot == store.boot else ("earlier" if a.boot else "unknown"),
            }
            for a in allocations
        ],
    }


def attachments_report(bridge_dir: str, name: str) -> list[dict]:
    if not bridge_dir:
        return []
    out = []
    with netlink.host() as nl:
        for record in Records(bridge_dir, name).all():
            # a damaged or planted record may name anything: the kernel refuses a lookup of a
            # non-name (ERANGE, EINVAL), and no such link can exist anyway
            valid = record.host_veth and not ifname_problem(record.host_veth)
            link = netlink.find_link(nl, record.host_veth) if valid else None
            out.append(
                {
                    "containerID": record.container_id,
                    "ifname": record.ifname,
                    "hostVeth": record.host_veth,
                    "vethPresent": link is not None,
                    "netns": record.netns,
                    "netnsExists": bool(record.netns) and os.path.exists(record.netns),
                }
            )
    return out


def masquerade_report(name: str) -> dict:
    prefix = masq.network_hash(name) + "-"
    nft = [r.get("comment", "") for r in masq.nft_rules() if r.get("comment", "").startswith(prefix)]
    ipt = {f"ipv{v}": sorted(f"{chain} ({cid})" for chain, cid in masq.ipt_chains(v, name).items()) for v in (4, 6)}
    return {"nftables": nft, **ipt}


def network_report(network: Network) -> dict:
    out: dict = {"network": network.name, "plugin": network.plugin, "source": network.source}
    if network.problem:
        out["problem"] = network.problem
        return out
    try:
        ipam_config, bridge_dir = plumbing(network)
        if ipam_config is not None:
            out.update(ipam_report(ipam_config))
        out["attachments"] = attachments_report(bridge_dir, network.name)
        out["masquerade"] = masquerade_report(network.name)
        if network.plugin == "vxlan":
            from cni_vxlan.conf import VxlanConf
            from cni_vxlan.status import node_report

            out["vxlan"] = node_report(VxlanConf.load(CmdArgs.for_config(network.config, command="STATUS")))
    except (CNIError, OSError) as err:  # one network's bad state must not hide the others' report
        out["problem"] = str(err)
    return out
