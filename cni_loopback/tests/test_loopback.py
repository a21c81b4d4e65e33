"""loopback as an executable (dist/src-bin and, when built, dist/cni-bin), in throw-away node and pod namespaces.

ADD brings the pod's lo up and reports it in every version's result form; a
chained ADD answers with its prevResult; CHECK fails once lo is down; DEL
brings lo down, repeated or without a namespace; GC and STATUS have nothing
to do.  Refusals carry their codes and leave lo as it was.
"""

import json
import os
import subprocess

import pytest

from cni_loopback.tests.loenv import config, disable_ipv6, expected, lo_state, run
from conformance.helpers import SPEC_VERSIONS, assert_cni_error, assert_silent_ok

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UP = (True, ["127.0.0.1/8", "::1/128"])
PREV = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "mac": "0a:58:0a:4d:00:02", "sandbox": "/run/netns/elsewhere"}],
    "ips": [{"address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}],
    "dns": {"nameservers": ["192.0.2.53"]},
}


@pytest.fixture
def lo(bin_dir, netns, pods):
    """(binary, node namespace, a new pod's namespace)."""
    return os.path.join(bin_dir, "loopback"), netns("n"), pods()


@pytest.mark.parametrize("version", SPEC_VERSIONS)
def test_add_brings_lo_up_and_reports_it(lo, version):
    binary, node, c = lo
    assert lo_state(c) == (False, [])
    out = run(binary, "ADD", config(version), node, c.path)
    assert out.ok, out
    assert out.json == expected(version, c.path)
    assert lo_state(c) == UP


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.1.0"])
def test_add_without_ipv6_reports_only_127_0_0_1(lo, version):
    binary, node, c = lo
    disable_ipv6(c)
    out = run(binary, "ADD", config(version), node, c.path)
    assert out.ok, out
    assert out.json == expected(version, c.path, v6=False)
    assert lo_state(c) == (True, ["127.0.0.1/8"])


def test_cni_ifname_is_ignored(lo):
    """The reference works on lo whatever CNI_IFNAME names, and reports lo."""
    binary, node, c = lo
    out = run(binary, "ADD", config(), node, c.path, ifname="net7")
    assert out.ok, out
    assert [i["name"] for i in out.json["interfaces"]] == ["lo"]
    assert [link["ifname"] for link in c.ipj("link", "show")] == ["lo"]


def test_add_reports_the_first_loopback_address_of_each_family(lo):
    binary, node, c = lo
    c.ip("addr", "add", "127.0.0.2/8", "dev", "lo")  # there before the kernel's own 127.0.0.1 (added when lo comes up)
    out = run(binary, "ADD", config("1.0.0"), node, c.path)
    assert out.ok, out
    up, addresses = lo_state(c)
    assert up and "127.0.0.2/8" in addresses
    first_v4 = next(a for a in addresses if ":" not in a)
    assert [ip["address"] for ip in out.json["ips"]] == [first_v4, "::1/128"]


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_chained_add_passes_prev_result_on(lo, version):
    binary, node, c = lo
    prev = dict(PREV, cniVersion=version)
    if version in ("0.3.1", "0.4.0"):
        prev["ips"] = [dict(ip, version="4") for ip in PREV["ips"]]
    out = run(binary, "ADD", config(version, prevResult=prev), node, c.path)
    assert out.ok, out
    assert out.json == prev
    assert lo_state(c) == UP, "lo comes up in a chain too"


def test_chained_add_answers_in_the_config_version(lo):
    """A prevResult without cniVersion is read in the config's version (libcni's fixup), and answered in it."""
    binary, node, c = lo
    prev = {k: v for k, v in PREV.items() if k != "cniVersion"}
    out = run(binary, "ADD", config("0.4.0", prevResult=prev), node, c.path)
    assert out.ok, out
    assert out.json["cniVersion"] == "0.4.0" and out.json["ips"][0]["version"] == "4", out.json


def test_malformed_prev_result_is_refused_before_lo_is_touched(lo):
    binary, node, c = lo
    out = run(binary, "ADD", config(prevResult={"ips": "nope"}), node, c.path)
    assert_cni_error(out, 6)
    assert lo_state(c) == (False, [])


def test_check_verifies_that_lo_is_up(lo):
    binary, node, c = lo
    conf = config("1.0.0")
    result = run(binary, "ADD", conf, node, c.path).json
    checked = dict(conf, prevResult=result)
    assert_silent_ok(run(binary, "CHECK", checked, node, c.path))
    c.ip("link", "set", "lo", "down")
    doc = assert_cni_error(run(binary, "CHECK", checked, node, c.path), 107)
    assert "down" in doc["msg"]


def test_del_brings_lo_down_and_forgives(lo):
    binary, node, c = lo
    conf = config("1.0.0")
    result = run(binary, "ADD", conf, node, c.path).json
    checked = dict(conf, prevResult=result)
    assert_silent_ok(run(binary, "DEL", checked, node, c.path))
    assert lo_state(c) == (False, ["127.0.0.1/8"]), "the kernel keeps 127.0.0.1 on a down lo and drops ::1"
    assert_silent_ok(run(binary, "DEL", checked, node, c.path), "a second DEL")
    assert_silent_ok(run(binary, "DEL", conf, node, ""), "a DEL without CNI_NETNS (containerd's second DEL)")
    path = c.path
    c.close()
    assert_silent_ok(run(binary, "DEL", checked, node, path), "a DEL whose namespace is gone")


def test_del_without_netns_leaves_every_namespace_alone(lo):
    binary, node, c = lo
    run(binary, "ADD", config(), node, c.path)
    assert_silent_ok(run(binary, "DEL", config(), node, ""))
    assert lo_state(c) == UP
    assert lo_state(node) == UP


def test_non_loopback_address_on_lo_is_refused_and_lo_left_down(lo):
    binary, node, c = lo
    c.ip("addr", "add", "10.9.8.7/24", "dev", "lo")
    doc = assert_cni_error(run(binary, "ADD", config(), node, c.path), 103)
    assert "non-loopback address 10.9.8.7" in doc["msg"]
    assert lo_state(c) == (False, ["10.9.8.7/24"])


def test_renamed_lo(lo):
    """ADD and CHECK refuse a namespace without a loopback device named lo; DEL has nothing to bring down."""
    binary, node, c = lo
    c.ip("link", "set", "lo", "name", "lo9")
    assert_cni_error(run(binary, "ADD", config(), node, c.path), 103)
    assert_cni_error(run(binary, "CHECK", config(), node, c.path), 107)
    assert_silent_ok(run(binary, "DEL", config(), node, c.path))
    c.ip("link", "add", "lo", "type", "veth", "peer", "name", "lopeer")  # no dummy module on this kernel
    assert_cni_error(run(binary, "ADD", config(), node, c.path), 103)  # a device named lo that is no loopback
    assert_silent_ok(run(binary, "DEL", config(), node, c.path))
    assert "UP" not in c.ipj("link", "show", "dev", "lo")[0]["flags"], "DEL leaves another kind of device alone"


def test_gc_and_status(lo):
    binary, node, c = lo
    run(binary, "ADD", config(), node, c.path)
    valid = {"cni.dev/valid-attachments": [{"containerID": "other", "ifname": "eth0"}]}
    assert_silent_ok(run(binary, "GC", config(**valid), node, "", cid="", ifname=""))
    assert_silent_ok(run(binary, "GC", config(), node, "", cid="", ifname=""))
    assert lo_state(c) == UP, "GC does not touch pods"
    assert_cni_error(run(binary, "GC", config(**{"cni.dev/valid-attachments": {"containerID": "x"}}), node, "", cid="", ifname=""), 7)
    assert_silent_ok(run(binary, "STATUS", config(), node, "", cid="", ifname=""))
    assert_cni_error(run(binary, "STATUS", config("1.0.0"), node, "", cid="", ifname=""), 1)


def test_version(bin_dir):
    proc = subprocess.run(
        [os.path.join(bin_dir, "loopback")], input=b'{"cniVersion":"0.4.0"}', env={"CNI_COMMAND": "VERSION"}, stdout=subprocess.PIPE, timeout=30
    )
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"cniVersion": "0.4.0", "supportedVersions": list(SPEC_VERSIONS)}


def test_add_imports_neither_pyroute2_nor_the_heavy_standard_modules(netns, pods):
    """The ADD path from source, in a fresh interpreter: the project's own netlink codec, no dataclasses, typing, logging, re or json."""
    node, c = netns("n"), pods()
    code = f"""
import io, sys
sys.path.insert(0, {REPO!r})
from common import skel
from cni_loopback.plugin import PLUGIN
env = {{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "imp1", "CNI_NETNS": {c.path!r}, "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent"}}
out = io.StringIO()
rc = skel.run(PLUGIN, env, io.BytesIO(b'{{"cniVersion":"1.1.0","name":"lonet","type":"loopback"}}'), out, sys.stderr)
heavy = ("pyroute2", "dataclasses", "typing", "logging", "re", "json", "socket", "enum", "inspect", "subprocess", "ctypes", "hashlib")
sys.stderr.write(repr(sorted(n for n in sys.modules if n.split(".")[0] in heavy)))
sys.stdout.write(out.getvalue() if rc == 0 else "failed: " + out.getvalue())
"""
    python = os.path.join(REPO, ".venv", "bin", "python")
    proc = subprocess.run(["ip", "netns", "exec", node.name, python, "-I", "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["ips"][0]["address"] == "127.0.0.1/8", proc.stdout
    assert proc.stderr.decode() == "[]"


def test_cni_suite_gc_and_status_of_a_loopback_network(bin_dir, netns, tmp_path):
    """A node's conf dir with containerd's loopback network: `cni-suite gc` runs its GC (in-process) and `status` lists it."""
    node, conf_dir = netns("n"), tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "99-loopback.conf").write_text(json.dumps({"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}))
    suite = [os.path.join(bin_dir, "cni-suite"), "--conf-dir", str(conf_dir)]
    assert "cni-loopback: released 0: -" in node.exec(*suite, "gc", "--valid", "pod-a:eth0", "--cni-path", bin_dir)
    assert "network cni-loopback (loopback, " in node.exec(*suite, "status")
