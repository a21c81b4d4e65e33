"""The bridge plugin, as the plugin table knows it (common/plugins.py; constants only)."""

TYPES = ("bridge",)
KIND = "plugin"
MODULE = "cni_bridge.plugin"
IN_PROCESS = True  # vxlan delegates each pod to it
QUICK_DELETE = "cni_bridge.idle:nothing_to_delete"  # a DEL with nothing to do, answered without the plugin
SAMPLE = {
    "name": "confnet",
    "type": "bridge",
    "bridge": "cnitconf0",
    "isGateway": True,
    "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": "$DATA_DIR"},
}
