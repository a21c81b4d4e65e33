"""cni-suite against pods made by the real plugins, inside node namespaces."""

import json
import os

import pytest

from common import bincache
from conformance.netenv import run_plugin

pytestmark = pytest.mark.root


@pytest.fixture
def site(netns, tmp_path, bin_dir):
    """A node with a conf dir holding one bridge network (ipMasq, dual-stack) and three pods."""
    node = netns("n")
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    config = {
        "cniVersion": "1.1.0",
        "name": "opsnet",
        "type": "bridge",
        "bridge": "cnitops0",
        "isDefaultGateway": True,
        "ipMasq": True,
        "ipMasqBackend": "nftables",
        "dataDir": str(tmp_path / "bridge"),
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.97.0.0/24"}], [{"subnet": "2001:db8:97::/64"}]], "dataDir": str(tmp_path / "ipam")},
    }
    (conf_dir / "10-opsnet.conflist").write_text(json.dumps({"cniVersion": "1.1.0", "name": "opsnet", "plugins": [config]}))
    pods = {}
    for cid in ("pod-a", "pod-b", "pod-c"):
        ns = netns("c")
        out = run_plugin(os.path.join(bin_dir, "bridge"), "ADD", config, node=node, netns=ns.path, container_id=cid, path=bin_dir)
        assert out.ok, out
        pods[cid] = (ns, out.json)
    return node, conf_dir, config, pods, tmp_path


def suite(node, bin_dir, conf_dir, *args, check=True) -> str:
    return node.exec(os.path.join(bin_dir, "cni-suite"), "--conf-dir", str(conf_dir), *args, check=check)


def test_status_shows_exactly_what_the_pods_hold(site, bin_dir):
    node, conf_dir, config, pods, _ = site
    report = json.loads(suite(node, bin_dir, conf_dir, "status", "--json"))["networks"]
    assert [n["network"] for n in report] == ["opsnet"]
    net = report[0]
    assert [(r["used"], r["capacity"]) for r in net["ranges"]] == [(3, 253), (3, 2**64 - 2)]  # v6: all but ::0 and the gateway
    held = sorted((a["ip"], a["containerID"], a["ifname"], a["boot"]) for a in net["allocations"])
    expected = sorted((ip["address"].split("/")[0], cid, "eth0", "current") for cid, (_, res) in pods.items() for ip in res["ips"])
    assert held == expected
    assert sorted((a["containerID"], a["hostVeth"], a["vethPresent"]) for a in net["attachments"]) == sorted(
        (cid, res["interfaces"][1]["name"], True) for cid, (_, res) in pods.items()
    )
    assert len(net["masquerade"]["nftables"]) == 6  # one rule per address
    text = suite(node, bin_dir, conf_dir, "status")
    assert "range set 0 10.97.0.1-10.97.0.254: 3 used, 250 free of 253" in text
    for cid in pods:
        assert cid in text


def test_gc_releases_exactly_what_is_not_valid(site, bin_dir):
    node, conf_dir, config, pods, tmp_path = site
    pods["pod-b"][0].close()  # pod-b died without a DEL
    out = suite(node, bin_dir, conf_dir, "gc", "--valid", "pod-a:eth0", "--valid", "pod-c:eth0", "--cni-path", bin_dir)
    assert "released 1: pod-b/eth0" in out
    net = json.loads(suite(node, bin_dir, conf_dir, "status", "--json"))["networks"][0]
    assert {a["containerID"] for a in net["allocations"]} == {"pod-a", "pod-c"}
    assert {a["containerID"] for a in net["attachments"]} == {"pod-a", "pod-c"}
    assert all(", id: pod-b" not in c for c in net["masquerade"]["nftables"]) and len(net["masquerade"]["nftables"]) == 4
    veths = [link["ifname"] for link in node.ipj("link", "show") if link["ifname"].startswith("veth")]
    assert sorted(veths) == sorted(pods[c][1]["interfaces"][1]["name"] for c in ("pod-a", "pod-c"))


def test_boot_sweep_reclaims_an_earlier_boot_and_nothing_live(site, bin_dir):
    node, conf_dir, config, pods, tmp_path = site
    # a simulated reboot: the namespaces of pod-a and pod-b are gone, their records carry another boot id
    for cid in ("pod-a", "pod-b"):
        pods[cid][0].close()
        record = tmp_path / "bridge" / "opsnet" / f"{cid}:eth0.json"
        data = json.loads(record.read_text())
        old_boot = "0" * 16
        record.write_text(json.dumps(dict(data, boot=old_boot)))
        ipam_dir = tmp_path / "ipam" / "opsnet"
        for name in os.listdir(ipam_dir):
            if name.startswith(".alloc.") and any(name.endswith("." + ip["address"].split("/")[0]) for ip in pods[cid][1]["ips"]):
                parts = name.split(".", 4)
                os.rename(ipam_dir / name, ipam_dir / ".".join(parts[:3] + [old_boot, parts[4]]))
    out = suite(node, bin_dir, conf_dir, "gc", "--boot-sweep", "--cni-path", bin_dir)
    assert "boot sweep released 2: pod-a/eth0 pod-b/eth0" in out
    net = json.loads(suite(node, bin_dir, conf_dir, "status", "--json"))["networks"][0]
    assert {a["containerID"] for a in net["allocations"]} == {"pod-c"}
    assert {a["containerID"] for a in net["attachments"]} == {"pod-c"}
    assert all(", id: pod-c" in c for c in net["masquerade"]["nftables"])
    assert "released 0" in suite(node, bin_dir, conf_dir, "gc", "--boot-sweep", "--cni-path", bin_dir)
    # the runtime's own DEL for a swept container still succeeds
    assert run_plugin(os.path.join(bin_dir, "bridge"), "DEL", config, node=node, container_id="pod-a", netns="", path=bin_dir).ok


def test_doctor_reports_a_healthy_node_as_healthy(site, bin_dir):
    node, conf_dir, *_ = site
    out = suite(node, bin_dir, conf_dir, "doctor", "--bin-dir", bin_dir)
    assert "healthy" in out


def doctor_findings(node, bin_dir, conf_dir, env: str = "") -> list[dict]:
    argv = ["sh", "-c", f"{env} {os.path.join(bin_dir, 'cni-suite')} --conf-dir {conf_dir} doctor --json --bin-dir {bin_dir}; true"]
    return json.loads(node.exec(*argv))["findings"]


def test_doctor_finds_a_bridge_holding_a_foreign_address(site, bin_dir):
    node, conf_dir, *_ = site
    node.ip("addr", "add", "10.250.0.1/24", "dev", "cnitops0")
    findings = doctor_findings(node, bin_dir, conf_dir)
    assert [f["check"] for f in findings] == ["bridge-address"]
    assert "10.250.0.1/24" in findings[0]["problem"] and "ip addr del" in findings[0]["fix"]


def test_doctor_finds_ipv6_disabled(site, bin_dir):
    node, conf_dir, *_ = site
    node.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    assert [f["check"] for f in doctor_findings(node, bin_dir, conf_dir)] == ["ipv6"]


def test_doctor_finds_a_noexec_runtime_tmpdir(site, bin_dir, tmp_path):
    """The runtime's TMPDIR is named with --runtime-tmpdir: a single-file cni-suite cannot
    itself start from a noexec TMPDIR (the bootloader's dlopen of libpython fails)."""
    node, conf_dir, *_ = site
    mnt = tmp_path / "noexec"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o noexec,size=1m none {mnt} && "
        f"{os.path.join(bin_dir, 'cni-suite')} --conf-dir {conf_dir} doctor --json --bin-dir {bin_dir} --runtime-tmpdir {mnt}; true"
    )
    findings = json.loads(node.exec("unshare", "-m", "sh", "-c", script))["findings"]
    assert [f["check"] for f in findings] == ["runtime-tmpdir"]
    assert str(mnt) in findings[0]["problem"] and "noexec" in findings[0]["problem"]


def test_a_noexec_TMPDIR_is_harmless_while_the_plugins_run_in_place(site, bin_dir, tmp_path):
    """Running in place, nothing is unpacked into TMPDIR: doctor starts and finds nothing to say about it."""
    node, conf_dir, *_ = site
    mnt = tmp_path / "noexec"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o noexec,size=64m none {mnt} && "
        f"TMPDIR={mnt} {os.path.join(bin_dir, 'cni-suite')} --conf-dir {conf_dir} doctor --json --bin-dir {bin_dir} 2>{tmp_path}/err; echo rc=$?"
    )
    body, rc = node.exec("unshare", "-m", "sh", "-c", script).rsplit("rc=", 1)
    assert json.loads(body)["findings"] == [] and rc.strip() == "0", (tmp_path / "err").read_text()


def test_doctor_says_why_the_plugins_cannot_run_in_place_and_then_checks_TMPDIR(site, bin_dir, tmp_path):
    """A cache root writable by others is refused: the plugins fall back to unpacking into TMPDIR on every start.
    From source, doctor reports both; a single-file build cannot start from a noexec TMPDIR at all (the pain
    point): it exits non-zero with the bootloader's message on stderr and nothing on stdout."""
    node, conf_dir, *_ = site
    mnt = tmp_path / "noexec"
    mnt.mkdir()
    os.makedirs(bincache.ROOT, mode=0o700, exist_ok=True)
    script = (
        f"mount -t tmpfs -o mode=0777,size=1m none {bincache.ROOT} && mount -t tmpfs -o noexec,size=64m none {mnt} && "
        f"TMPDIR={mnt} {os.path.join(bin_dir, 'cni-suite')} --conf-dir {conf_dir} doctor --json --bin-dir {bin_dir} 2>{tmp_path}/err; echo rc=$?"
    )
    body, rc = node.exec("unshare", "-m", "sh", "-c", script).rsplit("rc=", 1)
    if bin_dir.endswith("src-bin"):
        findings = json.loads(body)["findings"]
        assert [f["check"] for f in findings] == ["run-in-place", "runtime-tmpdir"]
        assert "writable by others" in findings[0]["problem"] and findings[0]["fix"] == f"chmod 0700 {bincache.ROOT}"
        assert str(mnt) in findings[1]["problem"]
        assert rc.strip() == "1"
    else:
        assert body == "" and rc.strip() != "0"
        assert "failed to map segment" in (tmp_path / "err").read_text()


def test_doctor_finds_missing_firewall_tools(site, bin_dir, tmp_path):
    node, conf_dir, *_ = site
    # hide nft inside a private mount namespace: an empty file over the binary
    empty = tmp_path / "empty"
    empty.write_text("")
    script = (
        f"mount --bind {empty} /usr/sbin/nft && chmod 0 {empty} && "
        f"{os.path.join(bin_dir, 'cni-suite')} --conf-dir {conf_dir} doctor --json --bin-dir {bin_dir}; true"
    )
    findings = json.loads(node.exec("unshare", "-m", "sh", "-c", script))["findings"]
    assert [f["check"] for f in findings] == ["firewall-tools"] and "nft" in findings[0]["problem"]


def test_doctor_finds_plugins_missing_from_bin_dir_or_run_from_elsewhere(netns, bin_dir, tmp_path):
    """Every type a conf file names (and containerd's loopback) must run from bin_dir: a type found only
    further along CNI_PATH runs from there silently (Debian's containerd appends /usr/lib/cni)."""
    node = netns("n")
    mine, other, conf_dir = tmp_path / "bin", tmp_path / "other", tmp_path / "net.d"
    for directory in (mine, other, conf_dir):
        directory.mkdir()
    for path in (mine / "bridge", mine / "host-local", mine / "loopback", other / "tuning", other / "bridge"):
        path.write_text("#!/bin/sh\nexit 1\n")  # only located, never run
        path.chmod(0o755)
    (mine / "not-executable").write_text("")
    bridge = {"type": "bridge", "bridge": "cnitdoc0", "ipam": {"type": "host-local", "subnet": "10.96.0.0/24", "dataDir": str(tmp_path / "ipam")}}
    plugins = [bridge, {"type": "tuning"}, {"type": "not-executable"}]
    (conf_dir / "10-docnet.conflist").write_text(json.dumps({"cniVersion": "1.1.0", "name": "docnet", "plugins": plugins}))
    cni_suite = os.path.join(bin_dir, "cni-suite")

    def findings(*args: str, env: str = "") -> list[tuple[str, str, str]]:
        out = node.exec("sh", "-c", f"{env} {cni_suite} --conf-dir {conf_dir} doctor --json --bin-dir {mine} {' '.join(args)}; true")
        return sorted((f["check"], f["network"], f["problem"]) for f in json.loads(out)["findings"])

    path, conf = f"{mine}:{other}", f"{conf_dir}/10-docnet.conflist"
    expected = [
        ("plugin-elsewhere", "docnet", f"type tuning (named by {conf}) is not in {mine}: the runtime runs {other}/tuning instead"),
        ("plugin-missing", "docnet", f"type not-executable (named by {conf}) is on no directory of CNI_PATH {path}: every ADD fails"),
    ]
    assert findings("--cni-path", path) == expected
    assert findings(env=f"CNI_PATH={path}") == expected  # the runtime's CNI_PATH, as the plugins get it
    # without CNI_PATH, the bin dir alone: tuning is missing too
    assert [f[:2] for f in findings()] == [("plugin-missing", "docnet"), ("plugin-missing", "docnet")]
    (mine / "loopback").unlink()
    assert ("plugin-missing", "", f"type loopback (named by containerd's CRI) is on no directory of CNI_PATH {path}: every ADD fails") in findings(
        "--cni-path", path
    )
    # a node whose conf dir names only what bin_dir holds is healthy on this count
    (conf_dir / "10-docnet.conflist").write_text(json.dumps({"cniVersion": "1.1.0", "name": "docnet", "plugins": [bridge]}))
    (mine / "loopback").write_text("#!/bin/sh\n")
    (mine / "loopback").chmod(0o755)
    assert findings("--cni-path", path) == []


def test_gc_runs_every_plugin_of_ours_in_the_list(netns, bin_dir, tmp_path):
    """A bridge + portmap list: `cni-suite gc` collects portmap's rules too, for the attachments it does not keep."""
    node = netns("n")
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    bridge = {
        "type": "bridge",
        "bridge": "cnitgcpm0",
        "isGateway": True,
        "dataDir": str(tmp_path / "bridge"),
        "ipam": {"type": "host-local", "subnet": "10.95.0.0/24", "dataDir": str(tmp_path / "ipam")},
    }
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "dataDir": str(tmp_path / "portmap")}
    (conf_dir / "10-pmnet.conflist").write_text(json.dumps({"cniVersion": "1.1.0", "name": "pmnet", "plugins": [bridge, portmap]}))
    for i, cid in enumerate(("pod-a", "pod-b")):
        ns = netns("c")
        config = dict(bridge, cniVersion="1.1.0", name="pmnet")
        out = run_plugin(os.path.join(bin_dir, "bridge"), "ADD", config, node=node, netns=ns.path, container_id=cid, path=bin_dir)
        assert out.ok, out
        mapped = dict(
            portmap,
            cniVersion="1.1.0",
            name="pmnet",
            prevResult=out.json,
            runtimeConfig={"portMappings": [{"hostPort": 18190 + i, "containerPort": 80, "protocol": "tcp"}]},
        )
        out = run_plugin(os.path.join(bin_dir, "portmap"), "ADD", mapped, node=node, netns=ns.path, container_id=cid, path=bin_dir)
        assert out.ok, out

    def mapped_ports() -> list[str]:
        return sorted(p for p in ("18190", "18191") if f"dport {p}" in node.exec("nft", "list", "ruleset"))

    assert mapped_ports() == ["18190", "18191"]
    suite(node, bin_dir, conf_dir, "gc", "--valid", "pod-a:eth0", "--cni-path", bin_dir)
    assert mapped_ports() == ["18190"], "pod-b's hostPort rule was collected with its address, pod-a's kept"
