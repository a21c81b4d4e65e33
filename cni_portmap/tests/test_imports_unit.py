"""ADD's imports stay lean (docs/performance.md): no dataclasses, typing, logging or re on portmap's path."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("dataclasses", "typing", "logging", "re", "inspect", "pyroute2")

CODE = """
import sys  # not json here: it imports re
sys.path.insert(0, {repo!r})
from cni_portmap import plugin, nft, ipt
from cni_portmap.conf import PortmapConf
from common.skel import CmdArgs
conf = {{"cniVersion": "1.0.0", "name": "n", "type": "portmap", "backend": "nftables",
        "runtimeConfig": {{"portMappings": [{{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp"}}]}},
        "prevResult": {{"cniVersion": "1.0.0", "ips": [{{"address": "10.0.0.2/24"}}]}}}}
loaded = PortmapConf.load(CmdArgs.for_config(conf, command="ADD"))
nft.attachment_lines(loaded, 4, "c")
ipt.attachment_lines(loaded, 4, "CNI-DN-x", "c")
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in {heavy!r})))
"""


def test_add_path_imports_nothing_heavy():
    proc = subprocess.run([sys.executable, "-I", "-c", CODE.format(repo=REPO, heavy=HEAVY)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == []
