"""Collision-prone attachments end to end: each pod's ADD, CHECK, DEL and GC touch that pod alone.

Earlier versions named state "<containerID>-<ifname>": (pod-1, eth0) and
(pod, 1-eth0) shared a record, so one pod's DEL or GC tore down the other's
network.  Here groups of pairs that share such a name (and names joined with
'.' or '_', IDs long enough that their key is hashed, interface names with
letters of other scripts, '+' and '=') are attached at once, on one node, to a
bridge network (ipMasq with nftables, macspoofchk) and to a vxlan network
(static peers), each pair in a container namespace of its own.  Then, group
by group, one pair is removed while its partners stay: by DEL (with and
without CNI_NETNS), by the plugin's GC with the valid list, and by `cni-suite
gc --valid ...` over both networks.  After every step the node must hold
exactly what the remaining pairs were given: their host veths (peered with
their own container interface), addresses (in the container and on disk,
naming their pair), records (byte for byte unchanged), masquerade and
macspoofchk rules; nothing of the removed ones.  At the end every survivor
passes CHECK and reaches its gateway through its own interface, and a GC
with an empty list leaves nothing behind.

The full run (104 pairs per network) uses the source wrappers (dist/src-bin);
the canonical collisions also run against the single-file build when it exists.
"""
import concurrent.futures
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import pytest

from common.attachment import HASHED, key
from conformance.netenv import Netns, run_plugin
from conformance.testbed import Node, Testbed

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC_BIN = os.path.join(REPO, "dist", "src-bin")
BUILT_BIN = os.path.join(REPO, "dist", "cni-bin")
WORKERS = 6
BRIDGE_NET, VXLAN_NET = "colbr", "colvx"
BRIDGE_SUBNET, VXLAN_SUBNET = "10.96.0.0/24", "198.18.1.0/24"


# --- the pairs -----------------------------------------------------------------------------------------


def collision_groups(tag: str, couples: int = 40) -> list[list[tuple[str, str]]]:
    """Groups of pairs whose old-style names (or '.'/'_' joins) coincide; `tag` keeps the two networks' IDs apart."""
    groups = [[(f"{tag}p{i}-1", "eth0"), (f"{tag}p{i}", "1-eth0")] for i in range(couples)]
    long = tag + "L" * 248
    at_limit, over_limit = tag + "B" * 192, tag + "C" * 193  # keys of exactly 200 characters, and of 201 (hashed)
    groups += [
        [(f"{tag}x", "a-b-c"), (f"{tag}x-a", "b-c"), (f"{tag}x-a-b", "c")],
        [(long + "-1", "eth0"), (long, "1-eth0")],
        [(at_limit + "-1", "eth0"), (at_limit, "1-eth0")],
        [(over_limit + "-1", "eth0"), (over_limit, "1-eth0")],
        [(f"{tag}d.1", "eth0"), (f"{tag}d", "1.eth0"), (f"{tag}d-1", "eth0"), (f"{tag}d", "1-eth0"), (f"{tag}d_1", "eth0"), (f"{tag}d", "1_eth0")],
        [(f"{tag}u-1", "é"), (f"{tag}u", "1-é")],
        [(f"{tag}v-a", "b+c"), (f"{tag}v", "a-b+c")],
        [(f"{tag}w-x", "=y"), (f"{tag}w", "x-=y")],
        [(f"{tag}m", "a-b"), (f"{tag}m", "A-B"), (f"{tag}m-a", "b")],  # two interfaces of one pod among them
    ]
    return groups


def canonical_groups(tag: str) -> list[list[tuple[str, str]]]:
    return [[(f"{tag}pod-1", "eth0"), (f"{tag}pod", "1-eth0")], [(f"{tag}x", "a-b-c"), (f"{tag}x-a", "b-c"), (f"{tag}x-a-b", "c")],
            [(tag + "L" * 248 + "-1", "eth0"), (tag + "L" * 248, "1-eth0")]]


def test_the_groups_are_what_they_claim():
    """The pair list itself: distinct, shared old-style names within each group, the key limit straddled."""
    for tag in ("b", "v"):
        groups = collision_groups(tag)
        pairs = [p for g in groups for p in g]
        assert len(pairs) == len(set(pairs)) >= 100
        for group in groups:
            joins = [{f"{c}{sep}{i}" for c, i in group} for sep in "-._"]
            assert any(len(j) < len(group) for j in joins), f"{group} share no joined name"
        assert len(key(tag + "B" * 192 + "-1", "eth0")) == 200 and key(tag + "C" * 193 + "-1", "eth0").startswith(HASHED)
        assert key(tag + "L" * 248, "1-eth0").startswith(HASHED)


# --- the node ------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Att:
    net: "Net"
    cid: str
    ifname: str
    pod: Netns
    result: dict = field(default_factory=dict)
    host_veth: str = ""
    address: str = ""  # CIDR, as ADD returned it
    mac: str = ""

    @property
    def pair(self) -> tuple[str, str]:
        return self.cid, self.ifname

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    def __repr__(self) -> str:
        return f"{self.net.name}:{self.cid[:40]}/{self.ifname}"


@dataclass(eq=False)
class Net:
    name: str
    kind: str  # bridge or vxlan
    conf: dict
    ipam_dir: str
    record_dirs: list[str]  # directories holding one <key>.json per attachment
    gateway: str
    firewall: bool  # ipMasq (nftables) and macspoofchk

    def __repr__(self) -> str:
        return self.name


class Site:
    """One node of a Testbed with a bridge and a vxlan network, a conf dir naming both, and pods."""

    def __init__(self, bed: Testbed, bin_dir: str, suite_kinds: tuple[str, ...] = ("bridge", "vxlan")):
        self.bed, self.bin_dir = bed, bin_dir
        self.node: Node = bed.add_node("n1")
        tmp = bed.tmp
        bridge_conf = {
            "cniVersion": "1.1.0", "name": BRIDGE_NET, "type": "bridge", "bridge": "cnitcol0", "isGateway": True,
            "ipMasq": True, "ipMasqBackend": "nftables", "macspoofchk": True, "dataDir": f"{tmp}/bridge",
            "ipam": {"type": "host-local", "subnet": BRIDGE_SUBNET, "dataDir": f"{tmp}/ipam"},
        }
        vxlan_conf = {
            "cniVersion": "1.1.0", "name": VXLAN_NET, "type": "vxlan", "network": "198.18.0.0/16", "nodeName": "n1",
            "dataDir": f"{tmp}/vxlan", "ipam": {"dataDir": f"{tmp}/vxipam"}, "delegate": {"bridge": "cnitcolvx"},
            "peerSource": "static", "peers": [{"node": "n1", "vtep": self.node.address, "subnet": VXLAN_SUBNET}],
        }
        self.bridge = Net(BRIDGE_NET, "bridge", bridge_conf, f"{tmp}/ipam/{BRIDGE_NET}", [f"{tmp}/bridge/{BRIDGE_NET}"], "10.96.0.1", True)
        self.vxlan = Net(VXLAN_NET, "vxlan", vxlan_conf, f"{tmp}/vxipam/{VXLAN_NET}",
                         [f"{tmp}/vxlan/{VXLAN_NET}/containers", f"{tmp}/vxlan/{VXLAN_NET}/bridge/{VXLAN_NET}"], "198.18.1.1", False)
        self.conf_dir = f"{tmp}/net.d"
        os.mkdir(self.conf_dir)
        for i, net in enumerate(n for n in (self.bridge, self.vxlan) if n.kind in suite_kinds):
            with open(f"{self.conf_dir}/{10 + i}-{net.name}.conflist", "w") as f:
                json.dump({"cniVersion": "1.1.0", "name": net.name, "plugins": [net.conf]}, f)
        self.pods: dict[tuple[str, str], Netns] = {}  # (network, container ID) -> its namespace
        self.pool = concurrent.futures.ThreadPoolExecutor(WORKERS)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def make_pods(self, groups_by_net: dict) -> list[Att]:
        wanted = sorted({(net.name, cid) for net, groups in groups_by_net.items() for g in groups for cid, _ in g})

        def make(pod: tuple[str, str]) -> None:
            ns = Netns("cp")
            self.pods[pod] = ns
            self.node.pods[f"{pod[0]}/{pod[1]}"] = ns  # the testbed deletes them, also when a later one fails

        list(self.pool.map(make, wanted))
        return [Att(net, cid, ifname, self.pods[(net.name, cid)]) for net, groups in groups_by_net.items() for g in groups for cid, ifname in g]

    # --- plugin calls ---

    def call(self, command: str, att: Att, conf: dict | None = None, netns: str | None = None):
        binary = os.path.join(self.bin_dir, att.net.kind)
        conf = conf if conf is not None else att.net.conf
        return run_plugin(binary, command, conf, node=self.node.ns, netns=att.pod.path if netns is None else netns,
                          ifname=att.ifname, container_id=att.cid, path=self.bin_dir)

    def gc(self, net: Net, valid) -> None:
        conf = dict(net.conf, **{"cni.dev/valid-attachments": [{"containerID": c, "ifname": i} for c, i in sorted(valid)]})
        out = run_plugin(os.path.join(self.bin_dir, net.kind), "GC", conf, node=self.node.ns, ifname="", path=self.bin_dir)
        assert out.ok and not out.stdout.strip(), f"GC of {net.name}: {out}"

    def suite_gc(self, valid) -> str:
        args = [a for c, i in sorted(valid) for a in ("--valid", f"{c}:{i}")]
        return self.node.ns.exec(os.path.join(self.bin_dir, "cni-suite"), "--conf-dir", self.conf_dir, "gc", *args,
                                 "--cni-path", self.bin_dir, timeout=300)

    def add_all(self, atts: list[Att]) -> None:
        first = {}
        for att in atts:  # each network's first ADD alone: it creates the bridge (and the vxlan device)
            first.setdefault(att.net, att)
        rest = [a for a in atts if a not in first.values()]
        for att, out in list(zip(first.values(), map(lambda a: self.call("ADD", a), first.values()))) + list(
                zip(rest, self.pool.map(lambda a: self.call("ADD", a), rest))):
            assert out.ok, f"ADD {att!r}: {out}"
            att.result = out.json
            interfaces = att.result["interfaces"]
            container = [i for i in interfaces if i.get("sandbox") == att.pod.path and i["name"] == att.ifname]
            host = [i["name"] for i in interfaces if not i.get("sandbox") and i["name"].startswith("veth")]
            assert len(container) == 1 and len(host) == 1, f"ADD {att!r}: {interfaces}"
            att.mac, att.host_veth = container[0]["mac"], host[0]
            [ip] = att.result["ips"]
            att.address = ip["address"]

    def check_all(self, atts: list[Att]) -> None:
        outs = self.pool.map(lambda a: self.call("CHECK", a, dict(a.net.conf, prevResult=a.result)), atts)
        for att, out in zip(atts, outs):
            assert out.ok and not out.stdout.strip(), f"CHECK {att!r}: {out}"

    def ping_all(self, atts: list[Att]) -> None:
        def ping(att: Att) -> bool:
            return att.pod.exec("ping", "-n", "-c1", "-W2", "-I", att.ifname, att.net.gateway, check=False).find(" 0% packet loss") >= 0
        failed = [att for att, ok in zip(atts, self.pool.map(ping, atts)) if not ok]
        assert not failed, f"these attachments no longer reach their gateway through their own interface: {failed}"

    # --- what the node holds ---

    def records(self, net: Net) -> dict[str, bytes]:
        out = {}
        for directory in net.record_dirs:
            for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
                with open(os.path.join(directory, name), "rb") as f:
                    out[os.path.join(directory, name)] = f.read()
        return out

    def verify(self, atts: list[Att], live: set[Att], stage: str) -> None:
        """The node holds exactly what the live attachments were given, and nothing of the others."""
        nets = (self.bridge, self.vxlan)
        links = {l["ifname"]: l for l in self.node.ns.ipj("-d", "link", "show")}
        veths = {name: l for name, l in links.items() if l.get("linkinfo", {}).get("info_kind") == "veth" and name != "eth0"}
        expected_veths = {a.host_veth: a for a in live}
        assert set(veths) == set(expected_veths), (
            f"{stage}: host veths: missing {[expected_veths[v] for v in set(expected_veths) - set(veths)]}, "
            f"unexpected {sorted(set(veths) - set(expected_veths))}")
        # every pod namespace: exactly its live interfaces, each with its own address, peered with its own host veth
        pods = sorted({a.pod for a in atts if os.path.exists(a.pod.path)}, key=lambda ns: ns.name)
        views = dict(zip(pods, self.pool.map(lambda ns: {l["ifname"]: l for l in ns.ipj("addr", "show") if l["ifname"] != "lo"}, pods)))
        for ns, view in views.items():
            mine = {a.ifname: a for a in live if a.pod is ns}
            assert set(view) == set(mine), f"{stage}: {ns.name} holds {sorted(view)}, its live attachments are {sorted(mine)}"
            for ifname, link in view.items():
                att = mine[ifname]
                addrs = [f"{i['local']}/{i['prefixlen']}" for i in link.get("addr_info", []) if i.get("scope") == "global"]
                assert addrs == [att.address], f"{stage}: {att!r} has {addrs}, ADD gave {att.address}"
                assert link.get("address") == att.mac, f"{stage}: {att!r} has MAC {link.get('address')}, ADD gave {att.mac}"
                host = veths[att.host_veth]
                assert link.get("link_index") == host["ifindex"] and host.get("link_index") == link["ifindex"], \
                    f"{stage}: {att!r}'s interface is not peered with its host veth {att.host_veth}"
        for net in nets:
            mine = [a for a in live if a.net is net]
            # records: one per live attachment, under its key, naming its pair (and, for the bridge, its veth)
            for directory in net.record_dirs:
                names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
                assert names == sorted(key(*a.pair) + ".json" for a in mine), (
                    f"{stage}: {directory}: unexpected {sorted(set(names) - {key(*a.pair) + '.json' for a in mine})[:10]}, "
                    f"missing {[a for a in mine if key(*a.pair) + '.json' not in names][:10]}")
                for att in mine:
                    with open(os.path.join(directory, key(*att.pair) + ".json")) as f:
                        doc = json.load(f)
                    assert (doc["container_id"], doc["ifname"]) == att.pair, f"{stage}: record of {att!r} names {doc}"
                    if "host_veth" in doc:
                        assert doc["host_veth"] == att.host_veth, f"{stage}: record of {att!r} names {doc['host_veth']}"
            # addresses on disk: exactly the live ones, each naming its own pair
            held = {}
            indexes = 0
            for name in os.listdir(net.ipam_dir) if os.path.isdir(net.ipam_dir) else []:
                if name[0].isdigit():
                    with open(os.path.join(net.ipam_dir, name), "rb") as f:
                        held[name] = f.read().decode()
                indexes += name.startswith(".alloc.")
            assert held == {a.ip: f"{a.cid}\r\n{a.ifname}" for a in mine}, f"{stage}: {net.name} allocations differ: {sorted(held.items())[:6]}"
            assert indexes == len(mine), f"{stage}: {net.name} has {indexes} index links for {len(mine)} addresses"
        self.verify_firewall([a for a in live if a.net.firewall], stage)

    def verify_firewall(self, live: list[Att], stage: str) -> None:
        ruleset = json.loads(self.node.ns.exec("nft", "-j", "list", "ruleset"))["nftables"]
        chains: dict[tuple[str, str, str], list[dict]] = {}
        for item in ruleset:
            if "chain" in item:
                c = item["chain"]
                chains.setdefault((c["family"], c["table"], c["name"]), [])
            elif "rule" in item:
                r = item["rule"]
                chains.setdefault((r["family"], r["table"], r["chain"]), []).append(r)
        # masquerade: one rule per live address, found by the documented comment
        masq = chains.get(("inet", "cni_plugins_masquerade", "masq_checks"), [])
        by_instance: dict[str, list[str]] = {}
        for rule in masq:
            saddr = [m["match"]["right"] for m in rule["expr"] if "match" in m and m["match"]["left"].get("payload", {}).get("field") == "saddr"]
            by_instance.setdefault(rule.get("comment", "")[:33], []).extend(saddr)
        expected = {instance_hash(BRIDGE_NET, a.ifname, a.cid): [a.ip] for a in live}
        assert by_instance == expected, f"{stage}: masquerade rules differ: extra {sorted(set(by_instance) - set(expected))[:5]}, " \
                                        f"missing {[a for a in live if instance_hash(BRIDGE_NET, a.ifname, a.cid) not in by_instance][:5]}"
        # macspoofchk: PREROUTING jumps, per live host veth, to a chain that jumps to one checking the pod's MAC
        bridge_nat = {name: rules for (family, table, name), rules in chains.items() if (family, table) == ("bridge", "nat")}
        jumps = {}
        for rule in bridge_nat.get("PREROUTING", []):
            iif = [m["match"]["right"] for m in rule["expr"] if "match" in m and m["match"]["left"].get("meta", {}).get("key") == "iifname"]
            target = [e["jump"]["target"] for e in rule["expr"] if "jump" in e]
            assert len(iif) == 1 and len(target) == 1, f"{stage}: unexpected PREROUTING rule {rule}"
            assert iif[0] not in jumps, f"{stage}: two macspoofchk jumps for {iif[0]}"
            jumps[iif[0]] = target[0]
        assert set(jumps) == {a.host_veth for a in live}, f"{stage}: macspoofchk jumps for {sorted(jumps)}, live veths {sorted(a.host_veth for a in live)}"
        used = {"PREROUTING"} if bridge_nat else set()
        for att in live:
            iface = jumps[att.host_veth]
            rules = bridge_nat.get(iface, [])
            inner = [e["jump"]["target"] for r in rules for e in r["expr"] if "jump" in e]
            assert len(rules) == 1 and len(inner) == 1, f"{stage}: {att!r}: chain {iface} holds {rules}"
            checks = bridge_nat.get(inner[0], [])
            macs = [m["match"]["right"] for r in checks for m in r["expr"] if "match" in m]
            assert len(checks) == 2 and macs == [att.mac] and "drop" in checks[1]["expr"][-1], \
                f"{stage}: {att!r} ({att.mac}): its MAC chain {inner[0]} holds {checks}"
            used |= {iface, inner[0]}
        assert set(bridge_nat) == used, f"{stage}: macspoofchk chains of nobody: {sorted(set(bridge_nat) - used)[:5]}"


def instance_hash(network: str, ifname: str, cid: str) -> str:
    """The documented nftables masquerade comment prefix (upstream's layout)."""
    def h16(text: str) -> str:
        return hashlib.sha512(text.encode()).hexdigest()[:16]
    return f"{h16(network)}-{h16(ifname + ':' + cid)}"


@pytest.fixture
def bed():
    with Testbed() as b:
        yield b


def run_scenario(bed: Testbed, bin_dir: str, groups_by_kind: dict[str, list[list[tuple[str, str]]]],
                 suite_kinds: tuple[str, ...] = ("bridge",)) -> dict:
    """ADD all, CHECK all; then per group one pair removed by DEL, GC or cni-suite gc; verified after each step.

    cni-suite's conf dir names the networks of suite_kinds; the groups of the
    others lose their victim by DEL or GC only.
    """
    site = Site(bed, bin_dir, suite_kinds)
    try:
        nets = {"bridge": site.bridge, "vxlan": site.vxlan}
        groups_by_net = {nets[k]: g for k, g in groups_by_kind.items()}
        atts = site.make_pods(groups_by_net)
        by_pair = {(a.net, a.pair): a for a in atts}
        site.add_all(atts)
        live = set(atts)
        assert len({(a.net, a.ip) for a in atts}) == len(atts), "two attachments got one address"
        site.verify(atts, live, "after every ADD")
        site.check_all(atts)

        # one victim per group, its partners stay; the way it goes rotates with the group
        victims = {"DEL": [], "GC": [], "suite": []}
        for net, groups in groups_by_net.items():
            ways = ("DEL", "GC", "suite") if net.kind in suite_kinds else ("DEL", "GC")
            for g, group in enumerate(groups):
                way = ways[g % len(ways)]
                victims[way].append(by_pair[(net, group[(g // len(ways)) % len(group)])])
        records_before = {net: site.records(net) for net in groups_by_net}

        def unchanged_records(stage: str) -> None:
            for net in groups_by_net:
                now = site.records(net)
                for path, data in records_before[net].items():
                    if os.path.basename(path) in {key(*a.pair) + ".json" for a in live if a.net is net}:
                        assert now.get(path) == data, f"{stage}: the record {path} of a survivor changed"

        # DEL: half with CNI_NETNS empty (the record alone names the veth), half with the namespace
        dels = victims["DEL"]
        outs = site.pool.map(lambda iv: site.call("DEL", iv[1], netns="" if iv[0] % 2 else None), enumerate(dels))
        for att, out in zip(dels, outs):
            assert out.ok and not out.stdout.strip(), f"DEL {att!r}: {out}"
        live -= set(dels)
        site.verify(atts, live, "after DEL of one pair per group")
        unchanged_records("after DEL")

        # the plugins' own GC, each with every live pair of its network but the victims
        for net in groups_by_net:
            site.gc(net, {a.pair for a in live if a.net is net and a not in victims["GC"]})
        live -= set(victims["GC"])
        site.verify(atts, live, "after the plugins' GC")
        unchanged_records("after GC")

        # cni-suite gc --valid over both networks at once
        out = site.suite_gc({a.pair for a in live if a not in victims["suite"]})
        for net in (n for n in groups_by_net if n.kind in suite_kinds):
            released = len([a for a in victims["suite"] if a.net is net])
            assert re.search(rf"^{net.name}: released {released}:", out, re.M), out
        live -= set(victims["suite"])
        site.verify(atts, live, "after cni-suite gc")
        unchanged_records("after cni-suite gc")

        survivors = sorted(live, key=repr)
        site.check_all(survivors)
        site.ping_all(survivors)

        # what is left goes with a GC that names nothing valid; then the node holds nothing of anyone
        for net in groups_by_net:
            site.gc(net, set())
        site.verify(atts, set(), "after a GC with an empty valid list")
        locks = [n for net in groups_by_net for d in net.record_dirs for n in (os.listdir(d) if os.path.isdir(d) else []) if n.endswith(".lock")]
        assert not locks, locks
        return {way: len(v) for way, v in victims.items()} | {"pairs": len(atts), "survivors": len(survivors)}
    finally:
        site.close()


def test_many_collision_prone_pairs_keep_their_own_attachments(bed):
    """104 pairs per network through ADD, CHECK, DEL, GC and cni-suite gc (the source wrappers)."""
    figures = run_scenario(bed, SRC_BIN, {"bridge": collision_groups("b"), "vxlan": collision_groups("v")}, suite_kinds=("bridge", "vxlan"))
    print(figures)
    assert figures["pairs"] == 208 and min(figures["DEL"], figures["GC"], figures["suite"]) >= 30, figures


@pytest.fixture
def built_bin() -> str:
    if not os.access(os.path.join(BUILT_BIN, "bridge"), os.X_OK):
        pytest.skip("dist/cni-bin is not built (make build)")
    return BUILT_BIN


def test_canonical_collisions_with_the_built_binaries(bed, built_bin):
    """(pod-1, eth0)/(pod, 1-eth0), a three-way split and a hashed couple, against the single-file build."""
    figures = run_scenario(bed, built_bin, {"bridge": canonical_groups("b"), "vxlan": canonical_groups("v")})
    assert figures["pairs"] == 14


# --- found while writing these tests (fixed) ---------------------------------------------------------------------


def test_cni_suite_gc_over_a_vxlan_network(bed):
    run_scenario(bed, SRC_BIN, {"bridge": canonical_groups("b"), "vxlan": canonical_groups("v")}, suite_kinds=("bridge", "vxlan"))


def test_a_pair_named_like_anothers_mac_chain_keeps_its_own_macspoofchk_chains(bed):
    site = Site(bed, SRC_BIN)
    try:
        groups = [[("a", "abcdefghijkl")], [("a-abcdefghijkl", "mac")]]
        atts = site.make_pods({site.bridge: groups})
        site.add_all(atts)
        site.verify(atts, set(atts), "after both ADDs")  # once: the first pair's MAC chain jumped to the second's
        site.check_all(atts)
        site.ping_all(atts)
        for att in atts:
            out = site.call("DEL", att, netns="")
            assert out.ok, f"DEL {att!r}: {out}"  # once: 104, "Device or resource busy", for both, on every retry
        site.verify(atts, set(), "after both DELs")
    finally:
        site.close()
