"""The networks a node is configured with, as a runtime finds them (NETCONFPATH, default /etc/cni/net.d).

Only networks using our plugins are described: a bridge or vxlan network
(with its host-local IPAM) or a plugin list that uses host-local directly.
"""
import glob
import os
from dataclasses import dataclass

from common.config import load_json
from common.errors import CNIError

DEFAULT_CONF_DIR = "/etc/cni/net.d"
OURS = ("bridge", "vxlan", "host-local")


@dataclass(frozen=True)
class Network:
    name: str
    source: str  # the file it came from
    plugin: str  # "bridge", "vxlan" or "host-local"
    config: dict  # the plugin's request configuration (cniVersion and name filled in)
    problem: str = ""  # why it could not be read, if it could not


def conf_dir(option: str | None = None) -> str:
    return option or os.environ.get("NETCONFPATH") or DEFAULT_CONF_DIR


def networks(directory: str) -> list[Network]:
    out, seen = [], set()
    files = sorted(glob.glob(os.path.join(directory, "*.conflist"))) + sorted(
        glob.glob(os.path.join(directory, "*.conf")) + glob.glob(os.path.join(directory, "*.json"))
    )
    for path in files:
        try:
            with open(path, "rb") as f:
                data = load_json(f.read(), path)
        except (OSError, CNIError) as err:
            out.append(Network(os.path.basename(path), path, "", {}, f"unreadable: {err}"))
            continue
        if type(data) is not dict:
            continue
        entries = data.get("plugins") if type(data.get("plugins")) is list else [data]
        for entry in entries:
            if type(entry) is not dict or entry.get("type") not in OURS:
                continue
            name = data.get("name") or entry.get("name")
            if name in seen:
                continue  # as libcni: the first file naming a network wins
            seen.add(name)
            config = dict(entry, name=name, cniVersion=data.get("cniVersion") or entry.get("cniVersion") or "1.1.0")
            out.append(Network(name, path, entry["type"], config))
            break
    return out


def find(directory: str, name: str) -> Network:
    for network in networks(directory):
        if network.name == name:
            return network
    raise CNIError(7, f"no network {name!r} of ours in {directory}")
