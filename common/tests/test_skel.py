import io
import json

import pytest

from common import skel
from common.errors import CNIError, Code
from common.types import IPConfig, Result, parse_cidr
from common.version import SUPPORTED_VERSIONS

pytestmark = pytest.mark.unit


class Recorder:
    """A plugin whose handlers record their CmdArgs and do what the test says."""

    def __init__(self, raise_=None):
        self.calls = []
        self.raise_ = raise_

    def handler(self, command):
        def call(args):
            self.calls.append((command, args))
            if self.raise_ is not None:
                raise self.raise_
            if command == "ADD":
                return Result(ips=(IPConfig(parse_cidr("10.0.0.2/24")),))
            return None

        return call

    def plugin(self):
        h = self.handler
        return skel.Plugin(name="fake", add=h("ADD"), delete=h("DEL"), check=h("CHECK"), gc=h("GC"), status=h("STATUS"))


def invoke(env, stdin=b'{"cniVersion":"1.0.0","name":"net"}', raise_=None):
    rec = Recorder(raise_)
    out, err = io.StringIO(), io.StringIO()
    rc = skel.run(rec.plugin(), env, io.BytesIO(stdin), out, err)
    text = out.getvalue()
    return rc, (json.loads(text) if text.strip() else None), err.getvalue(), rec


def env(**kw):
    base = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def test_version_prints_supported_versions_and_echoes_the_request():
    rc, out, _, rec = invoke({"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"0.4.0"}')
    assert rc == 0
    assert out == {"cniVersion": "0.4.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    assert not rec.calls


def test_version_ignores_other_env_and_garbage_stdin():
    # podman sends CNI_NETNS=dummy etc. with VERSION; nothing may be validated
    rc, out, _, _ = invoke({"CNI_COMMAND": "VERSION", "CNI_NETNS": "dummy", "CNI_IFNAME": "x" * 40}, b"{not json")
    assert rc == 0 and out["cniVersion"] == "1.1.0"


def test_no_command_prints_about_text_to_stderr():
    rc, out, err, _ = invoke({})
    assert rc == 0 and out is None
    assert "CNI protocol versions supported: 0.1.0" in err


def test_missing_env_lists_every_missing_variable():
    rc, out, _, rec = invoke({"CNI_COMMAND": "ADD"})
    assert rc == 1 and out["code"] == Code.INVALID_ENV
    assert out["msg"] == "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing"
    assert not rec.calls


@pytest.mark.parametrize("ifname", ["", "a" * 16, "é" * 8, ".", "..", "a/b", "a:b", "a b", "a\tb", "eth%d", "a\x01"])
def test_invalid_ifname_is_code_4(ifname):
    rc, out, _, rec = invoke(env(CNI_IFNAME=ifname))
    assert rc == 1 and out["code"] == 4 and "CNI_IFNAME" in out["msg"]
    assert not rec.calls


@pytest.mark.parametrize("cid", ["../x", "a/b", "a b", "-x", ".x", "x\n", "x" * 256])
def test_invalid_container_id_is_code_4(cid):
    rc, out, _, _ = invoke(env(CNI_CONTAINERID=cid))
    assert out["code"] == 4 and "CNI_CONTAINERID" in out["msg"]


def test_env_problems_are_reported_together():
    rc, out, _, _ = invoke({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "a/b"})
    assert out["code"] == 4
    assert "CNI_CONTAINERID" in out["msg"] and "CNI_IFNAME" in out["msg"]


def test_unknown_command_is_code_4():
    rc, out, _, _ = invoke(env(CNI_COMMAND="FROB"))
    assert out == {"cniVersion": "1.1.0", "code": 4, "msg": "unknown CNI_COMMAND: FROB", "details": ""}


@pytest.mark.parametrize(
    "stdin,code",
    [
        (b"", 6),
        (b'{"cniVersion":"1.0.0","na', 6),
        (b"[1,2]", 6),
        (b"null", 6),
        (b'{"cniVersion":"1.0.0","name":"\xff"}', 6),
        (b'{"cniVersion":"1.0.0","name":"n","x":"\\ud800"}', 6),
        (b'{"cniVersion":"1.0.0","name":"n","mtu":NaN}', 6),
        (b'{"cniVersion":"1.0.0","name":"n","mtu":1e400}', 6),
        (b"[" * 100000, 6),
        (b'{"cniVersion":"1.0.0","name":"n","a":1,"a":2}', 6),
        (b'{"cniVersion":"9.9.9","name":"n"}', 1),
        (b'{"cniVersion":"1.0","name":"n"}', 1),
        (b'{"cniVersion":1,"name":"n"}', 6),
        (b'{"cniVersion":"1.0.0"}', 7),
        (b'{"cniVersion":"1.0.0","name":"../x"}', 7),
        (b'{"cniVersion":"1.0.0","name":"a b"}', 7),
    ],
)
def test_bad_stdin_codes(stdin, code):
    rc, out, _, rec = invoke(env(), stdin)
    assert rc == 1 and out["code"] == code, out
    assert set(out) == {"cniVersion", "code", "msg", "details"}
    assert not rec.calls


def test_oversized_stdin_is_an_io_error():
    rc, out, _, _ = invoke(env(), b'{"x":"' + b"a" * (4 << 20) + b'"}')
    assert out["code"] == Code.IO_FAILURE


def test_missing_version_means_0_1_0():
    rc, out, _, rec = invoke(env(CNI_COMMAND="DEL"), b'{"name":"n"}')
    assert rc == 0 and rec.calls[0][1].cni_version == "0.1.0"


@pytest.mark.parametrize("command,version", [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "1.0.0")])
def test_commands_gated_by_version(command, version):
    e = env(CNI_COMMAND=command, CNI_NETNS="/proc/self/ns/net", CNI_NETNS_OVERRIDE="1")
    rc, out, _, rec = invoke(e, json.dumps({"cniVersion": version, "name": "n"}).encode())
    assert out["code"] == 1 and "does not allow" in out["msg"]
    assert not rec.calls


def test_check_with_unparsable_version_is_code_6():
    rc, out, _, _ = invoke(env(CNI_COMMAND="GC"), b'{"cniVersion":"abc","name":"n"}')
    assert out["code"] == 6


def test_del_success_prints_nothing_and_passes_args():
    rc, out, _, rec = invoke(env(CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.0.0.9"))
    assert rc == 0 and out is None
    args = rec.calls[0][1]
    assert args.command == "DEL" and args.container_id == "c1" and args.ifname == "eth0"
    assert args.args["IP"] == "10.0.0.9" and args.path == ("/opt/cni/bin",)
    assert args.netns is None and args.config["name"] == "net"


def test_add_prints_result_in_the_requested_version():
    e = env(CNI_COMMAND="ADD", CNI_NETNS="/proc/self/ns/net", CNI_NETNS_OVERRIDE="1")
    rc, out, _, _ = invoke(e, b'{"cniVersion":"0.3.1","name":"n"}')
    assert rc == 0
    assert out == {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24"}], "dns": {}}


def test_cni_error_becomes_the_error_structure_with_the_config_version():
    rc, out, err, _ = invoke(env(), raise_=CNIError(Code.TRY_AGAIN_LATER, "busy", "try later"))
    assert rc == 1
    assert out == {"cniVersion": "1.0.0", "code": 11, "msg": "busy", "details": "try later"}


def test_unexpected_exception_is_999_with_traceback_on_stderr_only():
    rc, out, err, _ = invoke(env(), raise_=ZeroDivisionError("boom"))
    assert rc == 1 and out["code"] == 999 and "ZeroDivisionError" in out["msg"]
    assert "Traceback" in err and "Traceback" not in json.dumps(out)


def test_own_netns_is_refused_before_the_plugin_runs():
    rc, out, _, rec = invoke(env(CNI_COMMAND="DEL", CNI_NETNS="/proc/self/ns/net"))
    assert out["code"] == 4 and "CNI_NETNS" in out["msg"]
    assert not rec.calls


@pytest.mark.parametrize("path", ["/etc/hostname", "/proc/self/ns/mnt", "/nonexistent/ns", "relative/ns"])
def test_add_with_a_netns_that_is_not_one_is_code_4(path):
    rc, out, _, rec = invoke(env(CNI_COMMAND="ADD", CNI_NETNS=path))
    assert out["code"] == 4 and "CNI_NETNS" in out["msg"], out
    assert not rec.calls


@pytest.mark.parametrize("path", ["/etc/hostname", "/nonexistent/ns", "/proc/self/ns/mnt"])
def test_del_with_a_vanished_netns_runs_without_one(path):
    rc, out, _, rec = invoke(env(CNI_COMMAND="DEL", CNI_NETNS=path))
    assert rc == 0 and rec.calls[0][1].netns is None and rec.calls[0][1].netns_path == path


def test_invalid_cni_args_pair_is_code_4():
    rc, out, _, _ = invoke(env(CNI_ARGS="a=b;novalue"))
    assert out["code"] == 4 and "CNI_ARGS" in out["msg"]


@pytest.mark.unit
def test_a_command_without_a_handler_is_refused_with_4():
    """Plugins declare only what they do: a command left out is refused, never a crash."""
    from common.types import Result

    plugin = skel.Plugin(name="minimal", add=lambda args: Result(), delete=lambda args: None)
    env = {"CNI_COMMAND": "GC", "CNI_PATH": "/bin"}
    out = io.StringIO()
    rc = skel.run(plugin, env, io.BytesIO(b'{"cniVersion":"1.1.0","name":"net"}'), out, io.StringIO())
    error = json.loads(out.getvalue())
    assert rc == 1 and error["code"] == 4 and "does not support GC" in error["msg"], error
    assert plugin.handler("DEL") is not None


def test_for_config_is_the_command_s_view_of_a_config_without_an_invocation():
    config = {"cniVersion": "0.4.0", "name": "n"}
    args = skel.CmdArgs.for_config(config, command="DEL", cni_args={"IP": "10.0.0.9"})
    assert (args.command, args.config, args.args, args.cni_version) == ("DEL", config, {"IP": "10.0.0.9"}, "0.4.0")
    assert (args.container_id, args.ifname, args.netns, args.netns_path, args.path, args.stdin, args.environ) == ("", "", None, "", (), b"", {})
    # no usable cniVersion: the latest, as run() would never let through
    assert skel.CmdArgs.for_config({"name": "n", "cniVersion": ""}, command="STATUS").cni_version == "1.1.0"
    assert skel.CmdArgs.for_config({"name": "n", "cniVersion": 1}, command="STATUS").cni_version == "1.1.0"
    with pytest.raises(ValueError):
        skel.CmdArgs.for_config(config, command="VERSION")
