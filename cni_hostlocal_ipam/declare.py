"""The host-local IPAM plugin, as the plugin table knows it (common/plugins.py; constants only)."""

TYPES = ("host-local",)
KIND = "plugin"
MODULE = "cni_hostlocal_ipam.plugin"
IN_PROCESS = True  # the bridge's IPAM, in its process
QUICK_DELETE = "cni_hostlocal_ipam.layout:nothing_to_delete"  # a DEL with nothing to release, answered without the plugin
SAMPLE = {"name": "confnet", "type": "host-local", "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": "$DATA_DIR"}}
