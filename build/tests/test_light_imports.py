"""The import-cost changes in common/ that the binary relies on, each in a fresh interpreter (docs/performance.md)."""
import errno
import io
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fresh(code: str) -> dict:
    """Run code in a new interpreter (no module of ours loaded yet); it prints one JSON document."""
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {REPO!r})\n" + code],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_the_netlink_layer_loads_neither_pyroute2_init_nor_its_config_dependencies():
    out = fresh("""
import json, common.netlink
m = sys.modules
print(json.dumps({"init_ran": hasattr(m["pyroute2"], "IPRoute"), "heavy": sorted(n for n in ("asyncio", "multiprocessing", "platform", "ssl") if n in m),
                  "af_bridge": m["pyroute2.config"].AF_BRIDGE, "plugins": m["pyroute2.config"].data_plugins_pkgs}))
""")
    assert out == {"init_ran": False, "heavy": [], "af_bridge": 7, "plugins": []}


def test_the_light_pyroute2_config_becomes_the_real_one_when_asked_for_more():
    out = fresh("""
import json, common.netlink
from pyroute2 import config
kernel = config.kernel
from pyroute2.config import child_process_mode
print(json.dumps({"kernel": kernel, "mode": child_process_mode, "mp": "multiprocessing" in sys.modules,
                  "same": config is sys.modules["pyroute2.config"], "plugins": config.data_plugins_pkgs}))
""")
    assert out["kernel"] and all(isinstance(n, int) for n in out["kernel"])
    assert out["mode"] == "fork" and out["mp"] and out["same"] and out["plugins"] == []


def test_the_netlink_message_classes_still_encode_and_decode():
    from common.netlink.core import ifinfmsg

    msg = ifinfmsg()
    msg["index"] = 7
    msg["attrs"] = [("IFLA_IFNAME", "veth0"), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", {"attrs": [("IFLA_VXLAN_ID", 42)]})]})]
    msg.encode()
    back = ifinfmsg(msg.data)
    back.decode()
    assert back.get_attr("IFLA_IFNAME") == "veth0"
    assert back.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA").get_attr("IFLA_VXLAN_ID") == 42  # a link-kind plugin


def test_firewall_imports_subprocess_only_to_run_a_tool():
    out = fresh("""
import json, common.firewall
print(json.dumps({"subprocess": "subprocess" in sys.modules, "tool": common.firewall.tool("sh") is not None}))
""")
    assert out == {"subprocess": False, "tool": True}


def test_netns_does_not_import_ctypes():
    out = fresh("""
import json, common.netns
print(json.dumps({"ctypes": "ctypes" in sys.modules}))
""")
    assert out == {"ctypes": False}


def test_libc_calls_return_results_and_raise_with_errno():
    from common import libc

    assert libc.call("getpid") == os.getpid()
    with pytest.raises(OSError) as err:
        libc.call("setns", 987654, 0x40000000)
    assert err.value.errno == errno.EBADF
    assert "setns" in str(err.value)


@pytest.mark.parametrize(
    "stdin,version",
    [(b'{"cniVersion":"0.3.1"}', "0.3.1"), (b"", "1.1.0"), (b"not json", "1.1.0"), (b"[1]", "1.1.0"), (b'{"cniVersion":7}', "1.1.0"),
     (b'{"cniVersion":""}', "1.1.0")],
)
def test_version_respond_answers_whatever_stdin_holds(stdin, version):
    from common.version import SUPPORTED_VERSIONS, respond

    out = io.StringIO()
    assert respond(SUPPORTED_VERSIONS, io.BytesIO(stdin), out) == 0
    assert json.loads(out.getvalue()) == {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
    assert out.getvalue().startswith('{\n    "cniVersion"')  # the reference's indented layout


def test_the_version_answer_needs_only_the_version_module():
    out = fresh("""
import io, json
from common.version import respond
sink = io.StringIO()
respond(("1.0.0",), io.BytesIO(b"{}"), sink)
print(json.dumps(sorted(n for n in sys.modules if n.startswith(("common", "dataclasses", "logging", "ipaddress", "typing")))))
""")
    assert out == ["common", "common.version"]
