"""The CNI protocol as every plugin must speak it (SPEC: Overview, Parameters, Errors, VERSION)."""
import json
import os
import subprocess

import pytest

from conformance.configs import PLUGIN_TYPES, config
from conformance.netenv import run_plugin

pytestmark = pytest.mark.conformance
SPEC_VERSIONS = {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
ERROR_KEYS = {"code", "msg"}


def assert_error(outcome, code=None):
    assert outcome.rc != 0, outcome
    doc = json.loads(outcome.stdout)  # exactly one JSON document, nothing else
    assert ERROR_KEYS <= set(doc), doc
    assert type(doc["code"]) is int and type(doc["msg"]) is str and doc["msg"]
    if code is not None:
        assert doc["code"] == code, doc
    return doc


def run_node(node, binary, command, conf, **kw):
    """Run a plugin inside the node namespace (never the machine's own, even if a refusal test goes wrong)."""
    return run_plugin(binary, command, conf, node=node, **kw)


@pytest.fixture(params=PLUGIN_TYPES)
def plugin(request, plugins):
    return request.param, plugins.path(request.param)


def test_version_lists_supported_versions(plugin):
    name, binary = plugin
    proc = subprocess.run([binary], input=b'{"cniVersion":"0.4.0"}', env={"CNI_COMMAND": "VERSION"}, stdout=subprocess.PIPE, timeout=30)
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert set(doc) >= {"cniVersion", "supportedVersions"}
    assert doc["supportedVersions"] and set(doc["supportedVersions"]) <= SPEC_VERSIONS
    assert "0.4.0" in doc["supportedVersions"] or name == "vxlan"


def test_version_needs_no_other_environment(plugin):
    """libcni and podman call VERSION with dummy values and an empty container ID."""
    _, binary = plugin
    env = {"CNI_COMMAND": "VERSION", "CNI_CONTAINERID": "", "CNI_NETNS": "dummy", "CNI_IFNAME": "dummy", "CNI_PATH": "dummy"}
    proc = subprocess.run([binary], input=b'{"cniVersion":"1.0.0"}', env=env, stdout=subprocess.PIPE, timeout=30)
    assert proc.returncode == 0 and json.loads(proc.stdout)["supportedVersions"]


@pytest.mark.parametrize("missing,param", [("CNI_CONTAINERID", "container_id"), ("CNI_IFNAME", "ifname"), ("CNI_NETNS", "netns")])
def test_missing_required_env_is_code_4(plugin, missing, param, container, node, data_dir):
    name, binary = plugin
    kw = {"netns": container, "container_id": "c1", "ifname": "eth0", param: ""}
    doc = assert_error(run_node(node, binary, "ADD", config(name, data_dir=data_dir), **kw), 4)
    assert missing in doc["msg"] + doc.get("details", "")


@pytest.mark.parametrize("ifname", ["a" * 16, ".", "..", "a/b", "a:b", "a b"])
def test_invalid_ifname_is_code_4(plugin, ifname, container, node, data_dir):
    name, binary = plugin
    assert_error(run_node(node, binary, "ADD", config(name, data_dir=data_dir), netns=container, container_id="c1", ifname=ifname), 4)


@pytest.mark.parametrize("cid", ["../x", "a/b", "a b", "-x"])
def test_invalid_container_id_is_code_4(plugin, cid, container, node, data_dir):
    name, binary = plugin
    assert_error(run_node(node, binary, "ADD", config(name, data_dir=data_dir), netns=container, container_id=cid), 4)


def test_unknown_command_is_code_4(plugin, container, node, data_dir):
    name, binary = plugin
    assert_error(run_node(node, binary, "FROB", config(name, data_dir=data_dir), netns=container, container_id="c1"), 4)


@pytest.mark.parametrize("stdin", [b"", b"{", b"[1,2]", b'{"cniVersion":"1.0.0","name":'])
def test_undecodable_config_is_code_6(plugin, stdin, container, node, data_dir):
    _, binary = plugin
    assert_error(run_node(node, binary, "ADD", stdin, netns=container, container_id="c1"), 6)


@pytest.mark.parametrize("version", ["9.9.9", "1.0"])
def test_unsupported_version_is_code_1(plugin, version, container, node, data_dir):
    name, binary = plugin
    assert_error(run_node(node, binary, "ADD", config(name, version, data_dir=data_dir), netns=container, container_id="c1"), 1)


@pytest.mark.parametrize("net_name", ["", "../x", "a/b", "a b"])
def test_invalid_network_name_is_code_7(plugin, net_name, container, node, data_dir):
    name, binary = plugin
    conf = config(name, data_dir=data_dir)
    conf["name"] = net_name
    assert_error(run_node(node, binary, "ADD", conf, netns=container, container_id="c1"), 7)


def test_check_needs_0_4_0(plugin, container, node, data_dir):
    name, binary = plugin
    assert_error(run_node(node, binary, "CHECK", config(name, "0.3.1", data_dir=data_dir), netns=container, container_id="c1"), 1)


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_need_1_1_0(plugin, plugins, command, node, data_dir):
    name, binary = plugin
    plugins.need_version(name, "1.1.0")
    assert_error(run_node(node, binary, command, config(name, "1.0.0", data_dir=data_dir), container_id=""), 1)


def test_errors_are_one_json_document_on_stdout(plugin, container, node, data_dir):
    name, binary = plugin
    out = run_node(node, binary, "ADD", b"{", netns=container, container_id="c1")
    text = out.stdout.decode()
    decoder = json.JSONDecoder()
    doc, end = decoder.raw_decode(text.strip())
    assert text.strip()[end:] == "" and doc["code"] == 6


def test_del_of_something_never_added_succeeds_silently(plugin, container, tmp_path, node):
    name, binary = plugin
    out = run_plugin(binary, "DEL", config(name, data_dir=str(tmp_path)), node=node, netns=container, container_id="never", path=os.path.dirname(binary))
    assert out.rc == 0, out
    assert out.stdout.strip() == b""


def test_missing_env_names_every_missing_variable(plugin, container, node, data_dir):
    name, binary = plugin
    doc = assert_error(run_node(node, binary, "ADD", config(name, data_dir=data_dir), netns="", container_id="", ifname=""), 4)
    text = doc["msg"] + doc.get("details", "")
    for var in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"):
        assert var in text, doc


def test_missing_cni_version_means_0_1_0(plugins, container, tmp_path, node):
    """A config without cniVersion is a 0.1.0 config: the result has the 0.1.0 shape (ip4)."""
    binary = plugins.path("host-local")
    conf = config("host-local", data_dir=str(tmp_path))
    del conf["cniVersion"]
    out = run_plugin(binary, "ADD", conf, node=node, netns=container, container_id="nover")
    assert out.rc == 0, out
    doc = out.json
    assert doc.get("cniVersion") in ("0.1.0", "", None) and "ip4" in doc and "ips" not in doc, doc
    assert run_plugin(binary, "DEL", conf, node=node, netns=container, container_id="nover").rc == 0


@pytest.mark.parametrize("extra", [{"frobnicate": {"x": 1}}, {"capabilities": {"portMappings": True, "ips": True}},
                                   {"args": {"cni": {"labels": [{"key": "a", "value": "b"}]}}}, {"dns": {"nameservers": ["192.0.2.53"]}}],
                         ids=["unknown-key", "capabilities", "args", "dns"])
def test_tolerated_config_keys(plugin, extra, container, tmp_path, node):
    """Unknown keys, a `capabilities` key left in by libcni, `args` a plugin does not know, well-known keys."""
    name, binary = plugin
    if name == "vxlan":
        from conformance.helpers import prepare_node

        prepare_node(name, node)
    conf = config(name, data_dir=str(tmp_path), **extra)
    out = run_plugin(binary, "ADD", conf, node=node, netns=container, container_id="keys1")
    assert out.rc == 0, out
    out = run_plugin(binary, "DEL", dict(conf, prevResult=out.json), node=node, netns=container, container_id="keys1")
    assert out.rc == 0 and out.stdout.strip() == b"", out


def test_kubernetes_cni_args_are_accepted(plugin, container, tmp_path, node):
    name, binary = plugin
    if name == "vxlan":
        from conformance.helpers import prepare_node

        prepare_node(name, node)
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-1;K8S_POD_INFRA_CONTAINER_ID=kargs1;K8S_POD_UID=42"
    conf = config(name, data_dir=str(tmp_path))
    out = run_plugin(binary, "ADD", conf, node=node, netns=container, container_id="kargs1", args=args)
    assert out.rc == 0, out
    out = run_plugin(binary, "DEL", dict(conf, prevResult=out.json), node=node, netns=container, container_id="kargs1", args=args)
    assert out.rc == 0, out


def test_l2_bridge_result(plugins, container, tmp_path, node):
    """A bridge without IPAM: 1.0.0 results have interfaces and no ips; 0.2.0 cannot express that (an error)."""
    binary = plugins.path("bridge")
    conf = config("bridge", "1.0.0", data_dir=str(tmp_path))
    del conf["ipam"]
    conf["isGateway"] = False
    out = run_plugin(binary, "ADD", conf, node=node, netns=container, container_id="l2one")
    assert out.rc == 0, out
    doc = out.json
    assert not doc.get("ips") and any(i["name"] == "eth0" and i.get("sandbox") == container for i in doc["interfaces"]), doc
    assert run_plugin(binary, "DEL", dict(conf, prevResult=doc), node=node, netns=container, container_id="l2one").rc == 0
    old = dict(conf, cniVersion="0.2.0")
    assert_error(run_plugin(binary, "ADD", old, node=node, netns=container, container_id="l2two"))
    assert run_plugin(binary, "DEL", old, node=node, netns=container, container_id="l2two").rc == 0


def test_result_is_one_json_document(plugin, container, tmp_path, node):
    name, binary = plugin
    if name == "vxlan":
        from conformance.helpers import prepare_node

        prepare_node(name, node)
    conf = config(name, data_dir=str(tmp_path))
    out = run_plugin(binary, "ADD", conf, node=node, netns=container, container_id="onedoc")
    assert out.rc == 0, out
    text = out.stdout.decode().strip()
    doc, end = json.JSONDecoder().raw_decode(text)
    assert text[end:].strip() == "" and doc["cniVersion"] == conf["cniVersion"]
    assert run_plugin(binary, "DEL", dict(conf, prevResult=doc), node=node, netns=container, container_id="onedoc").rc == 0


def test_version_without_stdin(plugin):
    """Runtimes may send VERSION without a body; the plugin must not block or fail on it."""
    _, binary = plugin
    proc = subprocess.run([binary], stdin=subprocess.DEVNULL, env={"CNI_COMMAND": "VERSION"}, stdout=subprocess.PIPE, timeout=30)
    assert proc.returncode == 0 and json.loads(proc.stdout)["supportedVersions"]


def test_prev_result_without_cni_version(plugin, container, tmp_path, node):
    """libcni's fixup: a prevResult without cniVersion is read in the config's version (DEL and CHECK)."""
    name, binary = plugin
    if name == "vxlan":
        from conformance.helpers import prepare_node

        prepare_node(name, node)
    conf = config(name, data_dir=str(tmp_path))
    out = run_plugin(binary, "ADD", conf, node=node, netns=container, container_id="nocv")
    assert out.rc == 0, out
    prev = {k: v for k, v in out.json.items() if k != "cniVersion"}
    check = run_plugin(binary, "CHECK", dict(conf, prevResult=prev), node=node, netns=container, container_id="nocv")
    assert check.rc == 0 and check.stdout.strip() == b"", check
    out = run_plugin(binary, "DEL", dict(conf, prevResult=prev), node=node, netns=container, container_id="nocv")
    assert out.rc == 0 and out.stdout.strip() == b"", out
