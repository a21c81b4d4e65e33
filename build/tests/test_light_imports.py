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


def test_the_netlink_layer_imports_neither_pyroute2_nor_socket():
    """Messages come from common/netlink/codec.py with layouts generated from pyroute2; sockets from _socket."""
    out = fresh("""
import json, common.netlink
heavy = ("pyroute2", "socket", "selectors", "typing", "logging", "threading", "traceback", "asyncio", "multiprocessing", "platform", "ssl")
print(json.dumps({"imported": sorted(n for n in sys.modules if n.split(".")[0] in heavy),
                  "codec": "common.netlink.codec" in sys.modules}))
""")
    assert out == {"imported": [], "codec": True}


def test_the_netlink_message_classes_still_encode_and_decode():
    from common.netlink.core import ifinfmsg

    msg = ifinfmsg()
    msg["index"] = 7
    msg["attrs"] = [("IFLA_IFNAME", "veth0"), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", {"attrs": [("IFLA_VXLAN_ID", 42)]})]})]
    msg.encode()
    back = ifinfmsg(msg.data)
    back.decode()
    assert back.get_attr("IFLA_IFNAME") == "veth0"
    assert back.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA").get_attr("IFLA_VXLAN_ID") == 42  # a kind-dependent set


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
    """Nor json, re or enum: common.startup reads and writes JSON through _json (about 3 ms)."""
    out = fresh("""
import io
from common.version import respond
sink = io.StringIO()
respond(("1.0.0",), io.BytesIO(b"{}"), sink)
loaded = sorted(n for n in sys.modules if n.startswith(("common", "dataclasses", "logging", "ipaddress", "typing", "json", "re", "enum")))
answer = sink.getvalue()
import json
print(json.dumps({"loaded": loaded, "answer": json.loads(answer)}))
""")
    assert out["loaded"] == ["common", "common.startup", "common.version"]
    assert out["answer"] == {"cniVersion": "1.1.0", "supportedVersions": ["1.0.0"]}  # no cniVersion asked: the latest
