"""Differential reachability: the same conflist (bridge + host-local + portmap), once with the plugins under test
and once with the reference's (--reference-dir), must let the same connections through and refuse the same ones.

Each run builds its own node (conformance/test_portmap.py, Bed), adds two
pods (one with hostPorts, both serving), makes the same connections from the
remote host, the node, the pod itself and the other pod, then DELs and makes
them again.  An answer is "<pod> <peer address the pod saw>", so masquerading
is compared too; the one deliberate difference (docs/portmap.md) is that the
nftables backend masquerades only the pod's own hairpin traffic, as upstream's
nftables backend does, where the reference's iptables backend masquerades its
whole subnet.  The reference here is Debian's plugins 1.1.1: iptables only,
CNI up to 1.0.0.
"""

from __future__ import annotations

import pytest

from conformance import test_portmap
from conformance.test_portmap import GATEWAY_V4, NODE_V4, NODE_V4_EXTRA, NODE_V6, Bed, mappings, pod_ip

pytestmark = pytest.mark.conformance
bed_factory = test_portmap.bed_factory  # the fixture, shared

MAPPINGS = mappings((18080, 80, "tcp"), (18053, 53, "udp"), (18090, 80, "tcp", NODE_V4_EXTRA), caps=True)


def scenario(bed: Bed, v6: bool, **portmap_keys) -> dict[str, str | None]:
    conflist = bed.conflist(**portmap_keys)
    rt_a, rt_b = bed.runtime("diff-a", MAPPINGS), bed.runtime("diff-b", [])
    result = bed.cni.add(conflist, rt_a)
    other = pod_ip(bed.cni.add(conflist, rt_b))
    bed.serve("diff-a", "tcp/80", "udp/53", "tcp/18080")
    bed.serve("diff-b", "tcp/80", "tcp/18080")
    ip = pod_ip(result)
    pod_a, pod_b = bed.pods["diff-a"], bed.pods["diff-b"]
    probes = {
        "remote -> node:hostPort tcp": (bed.remote, NODE_V4, 18080, "tcp"),
        "remote -> node:hostPort udp": (bed.remote, NODE_V4, 18053, "udp"),
        "remote -> other node address:hostPort": (bed.remote, NODE_V4_EXTRA, 18080, "tcp"),
        "remote -> hostIP-scoped port, its address": (bed.remote, NODE_V4_EXTRA, 18090, "tcp"),
        "remote -> hostIP-scoped port, another address": (bed.remote, NODE_V4, 18090, "tcp"),
        "remote -> node:unmapped port": (bed.remote, NODE_V4, 18081, "tcp"),
        "remote -> pod address:hostPort (not for the node)": (bed.remote, ip, 18080, "tcp"),
        "remote -> other pod:hostPort (not for the node)": (bed.remote, other, 18080, "tcp"),
        "remote -> pod:containerPort (direct)": (bed.remote, ip, 80, "tcp"),
        "node -> 127.0.0.1:hostPort": (bed.node, "127.0.0.1", 18080, "tcp"),
        "node -> 127.0.0.1:hostPort udp": (bed.node, "127.0.0.1", 18053, "udp"),
        "node -> own address:hostPort": (bed.node, NODE_V4, 18080, "tcp"),
        "pod -> node:hostPort (hairpin)": (pod_a, NODE_V4, 18080, "tcp"),
        "pod -> gateway:hostPort (hairpin)": (pod_a, GATEWAY_V4, 18080, "tcp"),
        "pod -> node:hostPort udp (hairpin)": (pod_a, NODE_V4, 18053, "udp"),
        "other pod -> node:hostPort": (pod_b, NODE_V4, 18080, "tcp"),
    }
    if v6:
        probes["remote -> node IPv6:hostPort tcp"] = (bed.remote, NODE_V6, 18080, "tcp")
        probes["remote -> node IPv6:hostPort udp"] = (bed.remote, NODE_V6, 18053, "udp")
        probes["node -> own IPv6 address:hostPort"] = (bed.node, NODE_V6, 18080, "tcp")
        probes["pod -> node IPv6:hostPort (hairpin)"] = (pod_a, NODE_V6, 18080, "tcp")
    seen = {name: _probe(bed, *probe) for name, probe in probes.items()}
    bed.cni.delete(conflist, rt_a)
    for name in ("remote -> node:hostPort tcp", "node -> 127.0.0.1:hostPort", "pod -> node:hostPort (hairpin)"):
        seen[f"after DEL: {name}"] = _probe(bed, *probes[name])
    if v6:
        seen["after DEL: remote -> node IPv6:hostPort tcp"] = _probe(bed, *probes["remote -> node IPv6:hostPort tcp"])
    bed.cni.delete(conflist, rt_b)
    return seen


def _probe(bed: Bed, src, host: str, port: int, proto: str) -> str | None:
    """One connection, tried twice (a first SYN or datagram may race neighbour discovery)."""
    return bed.probe(src, host, port, proto) or bed.probe(src, host, port, proto)


# our nftables backend, like upstream's, masquerades hairpin traffic of the pod itself only (docs/portmap.md);
# without snat both treat another pod's connection alike.  masqAll is not compared: Debian's 1.1.1 predates it
# (test_portmap.py checks it against upstream's meaning).
NFT_PEER_DIFFERENCES = {"other pod -> node:hostPort"}
VARIANTS = {"ipv4": (False, {}), "dual-stack": (True, {}), "ipv4-no-snat": (False, {"snat": False})}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_same_connections_as_the_reference(backend, variant, bin_dir, plugins, reference, reference_dir, bed_factory):
    plugins.path("portmap")
    for name in ("bridge", "host-local", "portmap"):
        reference.path(name)
    v6, options = VARIANTS[variant]
    theirs = scenario(bed_factory(reference_dir, v6=v6, sub="reference"), v6, **options)
    ours = scenario(bed_factory(bin_dir, v6=v6, sub="ours"), v6, backend=backend, **options)

    reached = lambda seen: {name: answer is not None for name, answer in seen.items()}
    assert reached(ours) == reached(theirs), _table(ours, theirs)
    # the answers themselves (which pod, and the peer it saw) match too, but for the documented difference
    skip = NFT_PEER_DIFFERENCES if backend == "nftables" and not options else set()
    assert {k: v for k, v in ours.items() if k not in skip} == {k: v for k, v in theirs.items() if k not in skip}, _table(ours, theirs)
    # the scenario is not vacuous: both outcomes occur
    assert any(reached(theirs).values()) and not all(reached(theirs).values()), _table(ours, theirs)


def _table(ours: dict, theirs: dict) -> str:
    return "\n" + "\n".join(f"{name:55} ours={ours.get(name)!r:32} reference={theirs.get(name)!r}" for name in theirs)
