"""host-local as an executable: concurrency, exhaustion, and bad input that changes nothing."""

import hashlib
import json
import os
import subprocess

import pytest

from conformance.netenv import run_plugin

pytestmark = pytest.mark.root


def conf(data_dir, subnet, name="conc", **ipam):
    return {"cniVersion": "1.0.0", "name": name, "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data_dir, **ipam}}


def parallel(binary, command, config, netns_path, ids):
    env_base = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": command,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": os.path.dirname(binary),
    }
    data = json.dumps(config).encode()
    procs = []
    for cid in ids:
        p = subprocess.Popen(
            [binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**env_base, "CNI_CONTAINERID": cid}
        )
        procs.append(p)
    for p in procs:  # all are started before any gets its stdin: maximal overlap
        p.stdin.write(data)
        p.stdin.close()
    out = []
    for p in procs:
        stdout = p.stdout.read()
        p.wait()
        out.append((p.returncode, json.loads(stdout) if stdout.strip() else None))
    return out


def records(data_dir, name="conc"):
    d = os.path.join(data_dir, name)
    return sorted(f for f in os.listdir(d) if f[0].isdigit()) if os.path.isdir(d) else []


def test_100_concurrent_adds_on_a_slash_24_get_100_distinct_addresses(bin_dir, container, tmp_path):
    binary = os.path.join(bin_dir, "host-local")
    config = conf(str(tmp_path), "10.40.0.0/24")
    ids = [f"c{i}" for i in range(100)]
    results = parallel(binary, "ADD", config, container, ids)
    assert all(rc == 0 for rc, _ in results), [r for r in results if r[0]]
    addresses = [r["ips"][0]["address"] for _, r in results]
    assert len(set(addresses)) == 100
    assert len(records(str(tmp_path))) == 100
    assert all(rc == 0 for rc, _ in parallel(binary, "DEL", config, container, ids))
    assert records(str(tmp_path)) == []
    assert not [f for f in os.listdir(tmp_path / "conc") if f.startswith((".alloc.", ".tmp-"))]


def test_exhausting_a_slash_28_concurrently(bin_dir, container, tmp_path):
    binary = os.path.join(bin_dir, "host-local")
    config = conf(str(tmp_path), "10.41.0.0/28")
    ids = [f"c{i}" for i in range(100)]
    results = parallel(binary, "ADD", config, container, ids)
    ok = [r for rc, r in results if rc == 0]
    failed = [r for rc, r in results if rc != 0]
    assert len(ok) == 13  # .2-.14: /28 minus network, gateway and broadcast
    assert len({r["ips"][0]["address"] for r in ok}) == 13
    assert len(failed) == 87
    for err in failed:
        assert err["code"] == 100
        assert err["msg"] == "failed to allocate for range 0: no IP addresses available in range set: 10.41.0.1-10.41.0.14"
    assert len(records(str(tmp_path))) == 13
    parallel(binary, "DEL", config, container, ids)
    assert records(str(tmp_path)) == []


def tree(path) -> dict:
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.lstat(full)
            digest = hashlib.sha256(open(full, "rb").read()).hexdigest() if os.path.isfile(full) and not os.path.islink(full) else ""
            out[os.path.relpath(full, path)] = (st.st_mode, st.st_size, digest)
    return out


def seeded(tmp_path, bin_dir, container) -> dict:
    """A data dir holding one allocation of network 'conc', and the config that made it."""
    config = conf(str(tmp_path / "data"), "10.42.0.0/24")
    assert run_plugin(os.path.join(bin_dir, "host-local"), "ADD", config, netns=container, container_id="seed").ok
    return config


BAD = {
    "malformed JSON": (b'{"cniVersion":"1.0.0","name":"conc","ipam":', {}, 6),
    "missing CNI_CONTAINERID": (None, {"CNI_CONTAINERID": None}, 4),
    "missing CNI_IFNAME": (None, {"CNI_IFNAME": None}, 4),
    "unsupported version": ({"cniVersion": "9.9.9"}, {}, 1),
    "invalid range": ({"ipam.subnet": "10.42.0.0/33"}, {}, 7),
    "rangeStart outside": ({"ipam.rangeStart": "10.43.0.5"}, {}, 7),
    "path-escaping network name": ({"name": "../conc"}, {}, 7),
    "slash in network name": ({"name": "a/b"}, {}, 7),
    "ifname too long": (None, {"CNI_IFNAME": "a" * 16}, 4),
    "ifname with slash": (None, {"CNI_IFNAME": "a/b"}, 4),
    "ifname with colon": (None, {"CNI_IFNAME": "a:b"}, 4),
    "netns not a netns": (None, {"CNI_NETNS": "/etc/hostname"}, 4),
    "own netns": (None, {"CNI_NETNS": "/proc/self/ns/net"}, 4),
    "relative dataDir": ({"ipam.dataDir": "rel/dir"}, {}, 7),
    "requested IP not an IP": (None, {"CNI_ARGS": "IP=banana"}, 4),
    "requested IP taken": (None, {"CNI_ARGS": "IP=10.42.0.2"}, 101),
    "duplicate ADD": (None, {"CNI_CONTAINERID": "seed"}, 102),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_its_code_and_changes_nothing_on_disk(case, bin_dir, container, tmp_path):
    config = seeded(tmp_path, bin_dir, container)
    before = tree(tmp_path)
    change, env_change, code = BAD[case]
    if isinstance(change, bytes):
        stdin = change
    else:
        for key, value in (change or {}).items():
            target = config
            *path, last = key.split(".")
            for p in path:
                target = target[p]
            target[last] = value
        stdin = json.dumps(config).encode()
    env = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "new",
        "CNI_NETNS": container,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": bin_dir,
    }
    for key, value in env_change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    proc = subprocess.run([os.path.join(bin_dir, "host-local")], input=stdin, env=env, capture_output=True, cwd=tmp_path)
    assert proc.returncode != 0
    error = json.loads(proc.stdout)
    assert set(error) == {"cniVersion", "code", "msg", "details"}
    assert error["code"] == code, error
    assert error["msg"]
    assert tree(tmp_path) == before
