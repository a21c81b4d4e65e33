"""Rule generation and rule ownership without root: what each backend would apply, line by line."""

from ipaddress import ip_address, ip_interface

import pytest

from cni_portmap import ident, ipt, nft
from cni_portmap.conf import PortmapConf, PortMapping

pytestmark = pytest.mark.unit

V4, V6 = ip_interface("10.1.0.5/24"), ip_interface("fd00::5/64")
TCP = PortMapping(8080, 80, "tcp")
UDP_HOSTIP = PortMapping(5353, 53, "udp", ip_address("192.0.2.7"))
V6_ONLY = PortMapping(9090, 90, "tcp", ip_address("fd00:2::1"))


def conf(**changes) -> PortmapConf:
    base = PortmapConf(
        name="net",
        backend="nftables",
        snat=True,
        masq_all=False,
        mark_masq_bit=13,
        external_set_mark_chain="",
        conditions_v4=(),
        conditions_v6=(),
        data_dir="/tmp/x",
        mappings=(TCP, UDP_HOSTIP, V6_ONLY),
        container_v4=V4,
        container_v6=V6,
    )
    return base.replace(**changes)


# --- identity ------------------------------------------------------------------------------------


def test_tags_never_collide_across_attachments():
    pairs = [("net", "pod-1", "eth0"), ("net", "pod", "1-eth0"), ("net", "pod-1", "eth1"), ("net2", "pod-1", "eth0")]
    tags = {ident.tag(n, c, i) for n, c, i in pairs}
    assert len(tags) == 4
    chains = {ident.dnat_chain("a", "bc", "eth0"), ident.dnat_chain("ab", "c", "eth0")}
    assert len(chains) == 2, "the reference's chain hash (network + containerID) gives these one chain"
    assert all(len(c) <= 28 and c.startswith("CNI-DN-") for c in chains)


def test_owner_reads_only_our_comments():
    comment = ident.comment("net", "pod-1", "eth0")
    assert ident.owner(comment) == ident.tag("net", "pod-1", "eth0")
    assert ident.owner(comment[: ident.TAG_LEN]) == ident.tag("net", "pod-1", "eth0"), "a comment cut to its tag still names it"
    for other in (None, "", "pod-1", "CNI portfwd masquerade mark", comment.upper(), "x" + comment, comment[: ident.TAG_LEN] + "x"):
        assert ident.owner(other) is None, other


def test_comment_is_sanitised_and_bounded():
    text = ident.comment("net", "c" * 255, "eth0")
    assert len(text.encode()) <= 128 and '"' not in text


# --- nftables ------------------------------------------------------------------------------------


def test_nft_rules_v4():
    lines = nft.attachment_lines(conf(), 4, "C")
    assert lines == [
        'add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.1.0.5:80 comment "C"',
        'add rule ip cni_hostport hostports ip daddr 192.0.2.7 udp dport 5353 dnat to 10.1.0.5:53 comment "C"',
        'add rule ip cni_hostport masquerading ip saddr 10.1.0.5 ip daddr 10.1.0.5 masquerade comment "C"',
        'add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.1.0.5 masquerade comment "C"',
    ]


def test_nft_rules_v6():
    lines = nft.attachment_lines(conf(), 6, "C")
    assert lines == [
        'add rule ip6 cni_hostport hostports tcp dport 8080 dnat to [fd00::5]:80 comment "C"',
        'add rule ip6 cni_hostport hostports ip6 daddr fd00:2::1 tcp dport 9090 dnat to [fd00::5]:90 comment "C"',
        'add rule ip6 cni_hostport masquerading ip6 saddr fd00::5 ip6 daddr fd00::5 masquerade comment "C"',
    ]


def test_nft_masq_all_and_no_snat():
    lines = nft.attachment_lines(conf(masq_all=True), 4, "C")
    assert [line for line in lines if "masquerading" in line] == [
        'add rule ip cni_hostport masquerading ip saddr 0.0.0.0/0 ip daddr 10.1.0.5 masquerade comment "C"'
    ]
    assert not [line for line in nft.attachment_lines(conf(snat=False), 4, "C") if "masquerade" in line]
    assert not [line for line in nft.base_lines(conf(snat=False), 4) if "masquerading" in line]


def test_nft_base_lines_carry_conditions():
    lines = nft.base_lines(conf(conditions_v4=("iifname != lo",)), 4)
    assert "add rule ip cni_hostport prerouting iifname != lo fib daddr type local jump hostports_all" in lines
    assert "add rule ip cni_hostport output iifname != lo fib daddr type local jump hostports_all" in lines
    assert "flush chain ip cni_hostport prerouting" in lines and "add chain ip cni_hostport hostip_hostports" in lines
    assert "add rule ip6 cni_hostport prerouting fib daddr type local jump hostports_all" in nft.base_lines(conf(), 6)


def test_nft_no_address_no_rules():
    assert nft.attachment_lines(conf(container_v6=None), 6, "C") == []


def test_nft_dnat_of_json_rule():
    rule = {
        "chain": "hostports",
        "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "192.0.2.7"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 5353}},
            {"dnat": {"addr": "10.1.0.5", "port": 53}},
        ],
    }
    assert nft._dnat_of(rule) == ("udp", 5353, "192.0.2.7", "10.1.0.5", 53)
    assert nft._dnat_of({"expr": [{"masquerade": None}]}) is None


# --- iptables ------------------------------------------------------------------------------------


def test_ipt_rules_v4():
    lines = ipt.attachment_lines(conf(backend="iptables"), 4, "CNI-DN-x", "C")
    assert lines == [
        ":CNI-DN-x - [0:0]",
        '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "C" -m multiport --dports 8080 -j CNI-DN-x',
        '-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "C" -m multiport --dports 5353 -j CNI-DN-x',
        "-A CNI-DN-x -s 10.1.0.5/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        "-A CNI-DN-x -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        "-A CNI-DN-x -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.5:80",
        "-A CNI-DN-x -s 10.1.0.5/24 -p udp -m udp --dport 5353 -d 192.0.2.7/32 -j CNI-HOSTPORT-SETMARK",
        "-A CNI-DN-x -s 127.0.0.1/32 -p udp -m udp --dport 5353 -d 192.0.2.7/32 -j CNI-HOSTPORT-SETMARK",
        "-A CNI-DN-x -p udp -m udp --dport 5353 -d 192.0.2.7/32 -j DNAT --to-destination 10.1.0.5:53",
    ]


def test_ipt_rules_v6_external_mark_and_conditions():
    c = conf(backend="iptables", external_set_mark_chain="KUBE-MARK-MASQ", conditions_v6=("!", "-s", "fd00::1"), mappings=(TCP,))
    lines = ipt.attachment_lines(c, 6, "CNI-DN-x", "C")
    assert lines == [
        ":CNI-DN-x - [0:0]",
        '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "C" -m multiport --dports 8080 ! -s fd00::1 -j CNI-DN-x',
        "-A CNI-DN-x -s fd00::5/64 -p tcp -m tcp --dport 8080 -j KUBE-MARK-MASQ",
        "-A CNI-DN-x -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::5]:80",
    ]


def test_ipt_multiport_groups_of_15():
    many = tuple(PortMapping(10000 + i, 80, "tcp") for i in range(17))
    entries = [line for line in ipt.attachment_lines(conf(backend="iptables", mappings=many, snat=False), 4, "CNI-DN-x", "C") if "multiport" in line]
    assert len(entries) == 2 and entries[0].count(",") == 14 and "--dports 10015,10016 " in entries[1]


def test_ipt_shared_lines_only_when_missing():
    c = conf(backend="iptables", mark_masq_bit=14)
    fresh = ipt.shared_lines(c, 4, [])
    assert ":CNI-HOSTPORT-SETMARK - [0:0]" in fresh and ":CNI-HOSTPORT-DNAT - [0:0]" in fresh
    assert '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x4000/0x4000' in fresh
    assert "-A CNI-HOSTPORT-MASQ -m mark --mark 0x4000/0x4000 -j MASQUERADE" in fresh
    assert fresh.index('-I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ') >= 0
    saved = [line for line in fresh if not line.startswith("-I ")] + ["-A POSTROUTING -m comment --comment x -j CNI-HOSTPORT-MASQ"]
    saved = [(":" + line[1:] if line.startswith(":") else line) for line in saved]
    assert ipt.shared_lines(c, 4, saved) == [], "an ADD on a node that has them adds none"
    assert not [line for line in ipt.shared_lines(conf(backend="iptables", external_set_mark_chain="K"), 4, []) if "MARK" in line or "MASQ" in line]


def test_ipt_removal_lines():
    mine = ident.comment("net", "pod-1", "eth0")
    other = ident.comment("net", "pod-2", "eth0")
    chain, other_chain = ident.dnat_chain("net", "pod-1", "eth0"), ident.dnat_chain("net", "pod-2", "eth0")
    saved = [
        f":{chain} - [0:0]",
        f":{other_chain} - [0:0]",
        f'-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "{mine}" -m multiport --dports 8080 -j {chain}',
        f'-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "{other}" -m multiport --dports 8081 -j {other_chain}',
        f"-A {chain} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.5:80",
    ]
    tag = ident.tag("net", "pod-1", "eth0")
    assert ipt._removal_lines(saved, lambda owner: owner == tag) == [
        f'-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment "{mine}" -m multiport --dports 8080 -j {chain}',
        f"-F {chain}",
        f"-X {chain}",
    ]
    assert ipt._removal_lines(saved, lambda owner: False) == []
