"""Delegation: the in-process fast path must be indistinguishable from exec'ing the plugin."""

import json
import os

import pytest

from common import invoke
from common.errors import CNIError
from common.netns import open_netns
from common.skel import CmdArgs

pytestmark = pytest.mark.root


def cmd_args(command, config, netns_path, cid, bin_dir, exec_path: bool) -> CmdArgs:
    environ = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": bin_dir,
        "PATH": os.environ["PATH"],
    }
    if exec_path:
        environ["CNI_DELEGATE_EXEC"] = "1"
    stdin = json.dumps(config).encode()
    return CmdArgs(command, cid, open_netns(netns_path), netns_path, "eth0", {}, (bin_dir,), stdin, config, config["cniVersion"], environ)


def outcome(command, config, netns_path, cid, bin_dir, exec_path):
    args = cmd_args(command, config, netns_path, cid, bin_dir, exec_path)
    try:
        result = invoke.delegate(command, "host-local", args)
        return ("ok", result)
    except CNIError as err:
        return ("error", err.code, err.msg, err.details)
    finally:
        args.netns.close()


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.0.0", "1.1.0"])
def test_in_process_and_exec_give_identical_results(version, bin_dir, container, tmp_path):
    def config(data_dir):
        return {
            "cniVersion": version,
            "name": "inv",
            "ipam": {
                "type": "host-local",
                "dataDir": data_dir,
                "routes": [{"dst": "0.0.0.0/0"}],
                "ranges": [[{"subnet": "10.50.0.0/30"}], [{"subnet": "2001:db8:50::/64"}]],
            },
        }

    steps = [("ADD", "a"), ("ADD", "a"), ("ADD", "b"), ("CHECK", "b"), ("CHECK", "zz"), ("DEL", "a"), ("ADD", "c"), ("DEL", "b"), ("DEL", "b")]
    if version == "0.2.0":
        steps = [s for s in steps if s[0] != "CHECK"]
    runs = {}
    for exec_path in (False, True):
        data_dir = str(tmp_path / ("exec" if exec_path else "inproc"))
        runs[exec_path] = [outcome(cmd, config(data_dir), container, cid, bin_dir, exec_path) for cmd, cid in steps]
        runs[exec_path].append(sorted(f for f in os.listdir(os.path.join(data_dir, "inv")) if f[0].isdigit()))
    assert runs[False] == runs[True]
    assert runs[False][0][0] == "ok" and runs[False][1][0] == "error"  # not vacuous


def test_exec_path_reports_the_delegates_error_structure(bin_dir, container, tmp_path):
    config = {"cniVersion": "1.0.0", "name": "inv", "ipam": {"type": "host-local", "subnet": "10.51.0.0/40"}}
    inproc = outcome("ADD", config, container, "a", bin_dir, False)
    execd = outcome("ADD", config, container, "a", bin_dir, True)
    assert inproc == execd and inproc[1] == 7


def test_delegate_lookup_refuses_paths_and_missing_plugins(tmp_path):
    for name in ("../../bin/true", "/bin/true", "", ".", "..", "a\0b"):
        with pytest.raises(CNIError) as err:
            invoke.find_in_path(name, ("/usr/lib/cni",))
        assert err.value.code == 7
    with pytest.raises(CNIError) as err:
        invoke.find_in_path("no-such-plugin", (str(tmp_path), "/usr/lib/cni"))
    assert err.value.code == 7 and str(tmp_path) in err.value.details
    (tmp_path / "noexec").write_text("#!/bin/sh\n")
    with pytest.raises(CNIError):
        invoke.find_in_path("noexec", (str(tmp_path),))
    assert invoke.find_in_path("host-local", ("/nonexistent", "/usr/lib/cni")) == "/usr/lib/cni/host-local"
