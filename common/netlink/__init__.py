"""The shared netlink helper: use as `with netlink.host() as nl, netlink.inside(ns) as cont:`.

core.py talks rtnetlink (messages by codec.py, in the layouts layouts.json has
from pyroute2's definitions); link.py, addr.py and sysctl.py build the
operations the plugins need on top of it.  No run-time module imports pyroute2.
"""

from common.netlink.addr import *  # noqa: F401,F403
from common.netlink.core import LinkExists, LinkNotFound, Netlink, NetlinkError, host, inside  # noqa: F401
from common.netlink.link import *  # noqa: F401,F403
