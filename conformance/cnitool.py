"""A cnitool-compatible runner: python -m conformance.cnitool add|check|del|status|gc NETWORK NETNS_PATH

Behaves as containernetworking/cni's cnitool (built on libcni):

* NETCONFPATH   directory of network configurations (default /etc/cni/net.d);
                *.conflist by `name`, else *.conf/*.json up-converted
* CNI_PATH      plugin directories (':'-separated)
* CNI_IFNAME    interface name (default eth0; --ifname/-i wins)
* CNI_ARGS      K=V;K=V pairs passed to every plugin
* CAP_ARGS      JSON object of capability arguments, injected as runtimeConfig
                into the plugins that declare the capability
* CNI_CACHE_DIR libcni's cache directory (default /var/lib/cni; results in
                <dir>/results/<net>-<containerID>-<ifname>); --cache-dir wins

The container ID is "cnitool-" + the hex of the first 10 bytes of
sha512(absolute NETNS_PATH).  `add` prints the result, `gc` passes no valid
attachments (everything of the network is released), `status` runs STATUS.
Errors go to stderr with exit status 1.  The plugins run in the network
namespace this process runs in: use `ip netns exec NODE python -m
conformance.cnitool ...` to keep them off the machine's own namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import click

from conformance.libcni import DEFAULT_CACHE_DIR, CNIConfig, CNIError, RuntimeConf, load_network, parse_cni_args

DEFAULT_NETDIR = "/etc/cni/net.d"


def container_id_for(netns: str) -> str:
    return "cnitool-" + hashlib.sha512(netns.encode()).digest()[:10].hex()


def _setup(network: str, netns: str, ifname: str | None, cache_dir: str | None):
    netdir = os.environ.get("NETCONFPATH") or DEFAULT_NETDIR
    conflist = load_network(netdir, network)
    cap_args = {}
    raw_caps = os.environ.get("CAP_ARGS", "")
    if raw_caps:
        try:
            cap_args = json.loads(raw_caps)
        except ValueError as exc:
            raise CNIError(f"CAP_ARGS: {exc}") from None
        if not isinstance(cap_args, dict):
            raise CNIError("CAP_ARGS: not a JSON object")
    raw_args = os.environ.get("CNI_ARGS", "")
    args = parse_cni_args(raw_args) if raw_args else []
    if not ifname:
        ifname = os.environ.get("CNI_IFNAME") or "eth0"
    netns = os.path.abspath(netns)
    rt = RuntimeConf(container_id=container_id_for(netns), netns=netns, ifname=ifname, args=args, capability_args=cap_args)
    path = os.environ.get("CNI_PATH", "").split(os.pathsep)
    cni = CNIConfig(path, cache_dir=cache_dir or os.environ.get("CNI_CACHE_DIR") or DEFAULT_CACHE_DIR)
    return cni, conflist, rt


def _run(fn):
    try:
        fn()
    except CNIError as exc:
        click.echo(str(exc), err=True)
        if exc.stderr:
            click.echo(exc.stderr.rstrip(), err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    sys.exit(0)


_common = [
    click.argument("network"),
    click.argument("netns"),
    click.option("--ifname", "-i", default=None, help="interface name (default: $CNI_IFNAME or eth0)"),
    click.option("--cache-dir", default=None, envvar="CNI_CACHE_DIR", help=f"libcni cache directory (default {DEFAULT_CACHE_DIR})"),
]


def common(fn):
    for decorator in reversed(_common):
        fn = decorator(fn)
    return fn


@click.group(help="Add, check, remove, gc or status network interfaces from a network namespace (cnitool-compatible).")
def cli():
    pass


def command(name: str, help: str, action) -> None:
    """A cnitool subcommand: action(cni, conflist, rt) on the setup the environment and options describe."""

    @cli.command(name=name, help=help)
    @common
    def run(network, netns, ifname, cache_dir):
        _run(lambda: action(*_setup(network, netns, ifname, cache_dir)))


def _add(cni, conflist, rt):
    click.echo(json.dumps(cni.add(conflist, rt), indent=4))


command("add", "run ADD on every plugin of NETWORK, in order, and print the result", _add)
command("check", "run CHECK on every plugin of NETWORK with the cached result", lambda cni, conflist, rt: cni.check(conflist, rt))
command("del", "run DEL on every plugin of NETWORK, in reverse, with the cached result", lambda cni, conflist, rt: cni.delete(conflist, rt))
command(
    "gc",
    "DEL every cached attachment of NETWORK, then GC every plugin with no valid attachments",
    lambda cni, conflist, _: cni.gc(conflist, None),
)
command("status", "run STATUS on every plugin of NETWORK (configs of 1.1.0 and later)", lambda cni, conflist, _: cni.status(conflist))


def main(argv=None):
    cli.main(args=argv, prog_name="cnitool")


if __name__ == "__main__":
    main()
