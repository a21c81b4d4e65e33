"""The portmap plugin, as the plugin table knows it (common/plugins.py; constants only).

SAMPLE carries a prevResult: portmap is chained, and its ADD without one is
refused as the reference refuses it.  It has no ipam section, so the suite's
address-judging tests leave it out (conformance/configs.py, PLUGIN_TYPES);
its own are conformance/test_portmap*.py.
"""

TYPES = ("portmap",)
KIND = "plugin"
MODULE = "cni_portmap.plugin"
IN_PROCESS = True  # `cni-suite gc` runs its GC in-process (common/plugins.py)
SAMPLE = {
    "name": "confnet",
    "type": "portmap",
    "dataDir": "$DATA_DIR",
    "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
    "prevResult": {"ips": [{"address": "10.77.0.2/24", "version": "4"}]},
}
