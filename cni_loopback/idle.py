"""What a loopback DEL can tell without loading the plugin: whether it has anything to do.

Its DEL only brings lo down in the container's namespace, so without one
(CNI_NETNS empty, as in containerd's second DEL of every pod, or a namespace
already gone) it changes nothing, and the protocol layer answers it
(common/skel.py, quick_delete).
"""


def nothing_to_delete(args) -> bool:
    """True when the plugin's DEL for args would change nothing."""
    return args.netns is None
