"""The vxlan overlay plugin, as the plugin table knows it (common/plugins.py; constants only)."""

TYPES = ("vxlan",)
KIND = "plugin"
MODULE = "cni_vxlan.plugin"  # its main() also takes the operator commands (`vxlan sync`, ...)
IN_PROCESS = True
SAMPLE = {
    "name": "confnet",
    "type": "vxlan",
    "network": "10.78.0.0/16",
    "subnetLen": 24,
    "peerSource": "static",
    "nodeName": "n1",
    "peers": [{"node": "n1", "vtep": "192.0.2.1", "subnet": "10.78.1.0/24"}],
    "dataDir": "$DATA_DIR/vxlan",
    "ipam": {"dataDir": "$DATA_DIR"},
}
