"""Minimal valid network configurations per plugin type, for protocol-level tests."""
import copy

HOST_LOCAL = {"name": "confnet", "type": "host-local", "ipam": {"type": "host-local", "subnet": "10.77.0.0/24"}}
BRIDGE = {
    "name": "confnet",
    "type": "bridge",
    "bridge": "cnitconf0",
    "isGateway": True,
    "ipam": {"type": "host-local", "subnet": "10.77.0.0/24"},
}
VXLAN = {
    "name": "confnet",
    "type": "vxlan",
    "network": "10.78.0.0/16",
    "subnetLen": 24,
    "peerSource": "static",
    "nodeName": "n1",
    "peers": [{"node": "n1", "vtep": "192.0.2.1", "subnet": "10.78.1.0/24"}],
}
BY_TYPE = {"host-local": HOST_LOCAL, "bridge": BRIDGE, "vxlan": VXLAN}
PLUGIN_TYPES = tuple(BY_TYPE)


def config(plugin: str, version: str = "1.0.0", data_dir: str = "", **extra) -> dict:
    conf = copy.deepcopy(BY_TYPE[plugin])
    conf["cniVersion"] = version
    if data_dir:
        ipam = conf.get("ipam")
        if ipam is not None:
            ipam["dataDir"] = data_dir
        if plugin == "vxlan":
            conf["dataDir"] = data_dir + "/vxlan"
            conf["ipam"] = {"dataDir": data_dir}
    conf.update(extra)
    return conf
