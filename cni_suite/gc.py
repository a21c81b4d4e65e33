"""`cni-suite gc`: CNI 1.1.0 GC without the runtime's help, and the boot sweep.

containerd and CRI-O do not call CNI GC yet, so addresses of pods that died
with a node leak until the range runs dry.  `gc --valid` and `gc
--from-runtime` send each network's plugin exactly the GC a runtime would;
`gc --boot-sweep` releases what earlier boots left behind.
"""

import io
import json
import os
import stat
import subprocess
import sys

from cni_suite.inventory import Network
from cni_suite.report import ipam_report, plumbing
from common import bincache, skel
from common.errors import CNIError, Code
from common.log import get as get_logger

log = get_logger(__name__)


def run_gc(network: Network, valid: set[tuple[str, str]], cni_path: str) -> None:
    """GC of each of our plugins in the network's list (portmap's after the bridge's), through the protocol layer, as a runtime would."""
    from common.invoke import in_process

    for base in (network.config, *network.chained):
        plugin = in_process(base["type"], {})
        if plugin is None:  # one of ours (inventory.ours()) that does not declare IN_PROCESS (common/plugins.py)
            raise CNIError(Code.INVALID_CONFIG, f"cni-suite cannot run {base['type']}'s GC: it does not run in-process")
        config = dict(base, cniVersion="1.1.0")  # our plugins do GC whatever version the file names
        config["cni.dev/valid-attachments"] = [{"containerID": cid, "ifname": ifname} for cid, ifname in sorted(valid)]
        environ = dict(os.environ, CNI_COMMAND="GC", CNI_PATH=cni_path, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="")
        out = io.StringIO()
        if skel.run(plugin, environ, io.BytesIO(json.dumps(config).encode()), out, io.StringIO()) != 0:
            error = json.loads(out.getvalue())
            raise CNIError(error["code"], error["msg"], error.get("details", ""))


def attachments(network: Network) -> set[tuple[str, str]]:
    """Every (container ID, ifname) the network holds something for."""
    found = set()
    ipam_config, bridge_dir = plumbing(network)
    if ipam_config is not None:
        found |= {(a["containerID"], a["ifname"]) for a in ipam_report(ipam_config)["allocations"] if a["containerID"]}
    if bridge_dir:
        from cni_bridge.state import Records

        found |= {(r.container_id, r.ifname) for r in Records(bridge_dir, network.name).all()}
    return found


def live_containers(source: str) -> tuple[set[str], str]:
    """IDs of the sandboxes a runtime says are alive: (ids, where they came from)."""
    sources = ("crictl", "podman", "cache") if source == "auto" else (source,)
    for name in sources:
        ids = {"crictl": _crictl, "podman": _podman, "cache": _cache}[name]()
        if ids is not None:
            return ids, name
    raise CNIError(Code.TRY_AGAIN_LATER, "no runtime reachable", "tried " + ", ".join(sources))


def _json_from(argv: list[str]):
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout or b"null")
    except ValueError:
        return None


def _crictl() -> set[str] | None:
    data = _json_from(["crictl", "pods", "-o", "json"])
    if not isinstance(data, dict):
        return None
    items = data.get("items", [])
    if type(items) is not list:
        return None
    # a runtime's output is input too: entries of another shape are skipped, never a crash
    return {pod["id"] for pod in items if type(pod) is dict and pod.get("state") == "SANDBOX_READY" and type(pod.get("id")) is str}


def _podman() -> set[str] | None:
    data = _json_from(["podman", "ps", "--format", "json"])
    if not isinstance(data, list):
        return None
    ids = (c.get("Id") or c.get("ID") for c in data if type(c) is dict)
    return {cid for cid in ids if type(cid) is str}


def _read_regular(path: str, limit: int = 1 << 20) -> bytes:
    """A regular file's first `limit` bytes; never follows a symlink or blocks on a FIFO (OSError otherwise)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _cache(directory: str | None = None) -> set[str] | None:
    """libcni's result cache: an attachment is live while its cached namespace exists."""
    directory = directory or os.environ.get("CNI_CACHE_DIR", "/var/lib/cni/results")
    if not os.path.isdir(directory):
        return None
    live = set()
    for name in os.listdir(directory):
        try:
            entry = json.loads(_read_regular(os.path.join(directory, name)))
        except (OSError, ValueError):
            continue
        if type(entry) is not dict:
            continue
        netns, cid = entry.get("netns") or "", entry.get("containerId") or ""
        if cid and netns and os.path.exists(netns):
            live.add(cid)
    return live


# --- the boot sweep --------------------------------------------------------------


def boot_sweep(network: Network, cni_path: str) -> list[str]:
    """Release what earlier boots left: no namespace survives a reboot, so nothing of theirs is live.

    Allocations recorded in an earlier boot (host-local's index names the boot),
    and bridge records of an earlier boot whose namespace is gone, are released
    through the plugin's own GC, with everything else of the network as valid.
    A later DEL or GC by the runtime finds nothing left and succeeds.
    """
    from cni_bridge.state import Records
    from common.statedir import boot_id

    current = boot_id()  # as the bridge wrote it into its records ("" when the kernel does not say)
    stale: set[tuple[str, str]] = set()
    ipam_config, bridge_dir = plumbing(network)
    if ipam_config is not None:
        stale |= {(a["containerID"], a["ifname"]) for a in ipam_report(ipam_config)["allocations"] if a["boot"] == "earlier"}
    records = Records(bridge_dir, network.name).all() if bridge_dir else []
    stale |= {(r.container_id, r.ifname) for r in records if r.boot and r.boot != current and not (r.netns and os.path.exists(r.netns))}
    # a container whose namespace exists now is live, whatever its records say
    live = {(r.container_id, r.ifname) for r in records if r.netns and os.path.exists(r.netns)}
    stale -= live
    if not stale:
        return []
    valid = attachments(network) - stale
    for cid, ifname in sorted(stale):
        log.warning("boot sweep: releasing %s/%s of network %s (left by an earlier boot)", cid, ifname, network.name)
    run_gc(network, valid, cni_path)
    return [f"{cid}/{ifname}" for cid, ifname in sorted(stale)]


def prune_binary_cache() -> list[str]:
    """Other builds' copies in the run-in-place cache that no process runs from (docs/build.md).

    Only the binary knows which build it is: from source, nothing is pruned.
    """
    meipass = getattr(sys, "_MEIPASS", "")
    if not bincache.running_in_place(meipass):
        return []
    return bincache.prune(keep=os.path.basename(meipass))[0]
