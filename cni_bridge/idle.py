"""What a bridge DEL can tell without loading the plugin: where its records live, and whether it has anything to do.

containerd sends each pod a second DEL with an empty CNI_NETNS and no cached
result, and runtimes repeat DELs (docs/performance.md, "The quick DEL").
The plugin's DEL changes nothing on the node when:
  - there is no container namespace to look into (CNI_NETNS empty, or gone);
  - the attachment left nothing in the bridge's records: ADD takes the
    attachment's lock and writes its record before it changes the node, and
    DEL removes the record last, only once everything else is undone, so
    without them there is no veth, masquerade or macspoofchk rule of its own
    (common/records.py, Records.untouched);
  - it has no IPAM, or host-local holds no address for it
    (cni_hostlocal_ipam/layout.py, holds_nothing).
Then the protocol layer answers it without loading the plugin (common/skel.py,
quick_delete).  Anything this module cannot read the plugin's way makes the
answer "ask the plugin".
"""

import os

from cni_hostlocal_ipam import layout
from common.config import Obj
from common.errors import CNIError, Code
from common.records import Records

DEFAULT_DATA_DIR = "/var/lib/cni/bridge"


def data_dir(top: Obj) -> str:
    """The bridge's dataDir: its attachment records live in <dataDir>/<network>."""
    path = top.str("dataDir") or DEFAULT_DATA_DIR
    if not path.startswith("/") or ".." in path.split("/") or "\0" in path:
        raise CNIError(Code.INVALID_CONFIG, "invalid dataDir", f"{path!r} must be an absolute path without '..'")
    return os.path.normpath(path)


def nothing_to_delete(args) -> bool:
    """True when the plugin's DEL for args would change nothing on the node."""
    if args.netns is not None:
        return False
    try:
        top = Obj(args.config)
        records = Records(data_dir(top), top.str("name") or "")
        ipam = top.obj("ipam")
    except CNIError:
        return False
    if not records.network or not records.untouched(args.container_id, args.ifname):
        return False
    if ipam is None or not ipam.raw:
        return True  # layer 2 only
    try:
        if ipam.str("type") != "host-local":
            return False  # another IPAM plugin: only it knows what it holds
        ipam_dir = layout.data_dir(ipam)
    except CNIError:
        return False
    return layout.holds_nothing(ipam_dir, records.network, args.container_id, args.ifname)
