"""The loopback plugin, as the plugin table knows it (common/plugins.py; constants only)."""

TYPES = ("loopback",)
KIND = "plugin"
MODULE = "cni_loopback.plugin"
IN_PROCESS = True  # `cni-suite gc` runs each network's GC in-process (loopback's only checks its list)
QUICK_DELETE = "cni_loopback.idle:nothing_to_delete"  # containerd's second DEL (no CNI_NETNS), answered without the plugin
SAMPLE = {"name": "confnet", "type": "loopback"}
