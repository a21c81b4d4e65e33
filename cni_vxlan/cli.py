"""Operator commands of the vxlan plugin (same executable): sync, node-remove, show.

`vxlan sync --watch` keeps a node's peers current between ADDs: it watches
the network's prefix in etcd and reconciles within a debounce of any change,
re-lists every --resync seconds (a watch can die quietly or fall behind a
compaction), refreshes TTL leases, recreates a deleted device, and never
removes entries while etcd is unreachable.  It runs in the foreground, for a
systemd unit or a DaemonSet, and ends cleanly on SIGTERM.  What it waits
on between converges, and how a node is retired, is the peer source's
(peers.py: etcd watches, static peers re-converge every --resync seconds).
"""

import json
import logging
import os
import signal
import sys
import time
from typing import NoReturn

import click

from cni_vxlan import node
from cni_vxlan.conf import VxlanConf
from cni_vxlan.peers import PeerSourceError, peer_source
from common import netlink
from common.config import load_json
from common.errors import CNIError
from common.skel import CmdArgs

log = logging.getLogger("cni_vxlan.sync")
# a store that comes back is seen within this (plus one converge): each retry tries every
# endpoint within etcd.timeout, so a longer wait only delays recovery
BACKOFF_MAX = 1.0


def load_conf(path: str, network: str | None) -> VxlanConf:
    """The vxlan plugin entry of a .conf or .conflist file, with the list's name and version."""
    with open(path, "rb") as f:
        data = load_json(f.read(), path)
    entries = data.get("plugins") if isinstance(data.get("plugins"), list) else [data]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("type") == "vxlan":
            merged = dict(entry, name=data.get("name") or entry.get("name"), cniVersion=data.get("cniVersion") or entry.get("cniVersion"))
            if network and merged.get("name") != network:
                continue
            return VxlanConf.load(CmdArgs.for_config(merged, command="STATUS"))
    raise click.ClickException(f"{path}: no vxlan plugin" + (f" for network {network}" if network else ""))


@click.group(help="Operator commands of the CNI vxlan overlay plugin.")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def cli(log_level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, log_level.upper()), format="%(asctime)s vxlan %(levelname)s %(message)s")


def _fail(err: CNIError) -> NoReturn:
    raise click.ClickException(f"{err.msg}{': ' + err.details if err.details else ''} (code {err.code})")


@cli.command(help="Reconcile this node with the store: once, or continuously with --watch.")
@click.option("--conf", "conf_path", required=True, type=click.Path(exists=True, dir_okay=False), help="CNI .conf or .conflist with the vxlan plugin")
@click.option("--network", default=None, help="network name, when the file holds several")
@click.option("--once/--watch", default=True, help="reconcile and exit, or keep watching")
@click.option("--resync", default=30.0, show_default=True, help="seconds between full re-lists in --watch")
def sync(conf_path: str, network: str | None, once: bool, resync: float) -> None:
    conf = load_conf(conf_path, network)
    try:
        if once:
            with netlink.host() as nl:
                state = node.converge(conf, nl)
            held = state.lease.peer.subnet if state.lease.peer.subnet6 is None else f"{state.lease.peer.subnet} and {state.lease.peer.subnet6}"
            click.echo(f"{conf.name}: {conf.node_name} holds {held}, {len(state.peers or ())} peers programmed")
            return
        _watch(conf, resync)
    except CNIError as err:
        _fail(err)


class _Stop(Exception):
    pass


def _watch(conf: VxlanConf, resync: float) -> None:
    def stop(signum, frame):
        raise _Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    source = peer_source(conf)
    backoff = 0.5
    try:
        while True:
            try:
                revision = _converge(conf)
                backoff = 0.5
                source.follow(revision, resync, lambda: _converge(conf))
            except (PeerSourceError, CNIError) as err:
                log.warning("%s; retrying in %.1fs (entries left as programmed)", err, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
    except _Stop:
        log.info("stopping")


def _converge(conf: VxlanConf) -> int:
    with netlink.host() as nl:
        state = node.converge(conf, nl)
    if state.peers is None:
        raise PeerSourceError(f"{conf.peer_source} unreachable")
    log.info("converged at revision %d: %s holds %s, %d peers", state.revision, conf.node_name, state.lease.peer.subnet, len(state.peers))
    return state.revision


@cli.command("node-remove", help="Retire a node: delete its lease; peers drop its entries on their next sync.")
@click.argument("name")
@click.option("--conf", "conf_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--network", default=None)
def node_remove(name: str, conf_path: str, network: str | None) -> None:
    conf = load_conf(conf_path, network)
    try:
        removed = peer_source(conf).remove_node(name)
    except PeerSourceError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{name}: lease removed" if removed else f"{name}: held no lease")


@cli.command(help="Show leases, this node's device and what is programmed for each peer.")
@click.option("--conf", "conf_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--network", default=None)
@click.option("--json", "as_json", is_flag=True)
def show(conf_path: str, network: str | None, as_json: bool) -> None:
    from cni_vxlan.status import node_report

    report = node_report(load_conf(conf_path, network))
    click.echo(json.dumps(report, indent=2) if as_json else _text(report))


def _text(report: dict) -> str:
    overlay = report["overlay"] + (", " + report["overlay6"] if "overlay6" in report else "")
    lines = [f"network {report['network']} ({overlay}), node {report['node']}, device {report['device']['name']}: {report['device']['state']}"]
    lease = report.get("lease")
    dual = "overlay6" in report  # a dual-stack network: each node's IPv6 subnet beside its IPv4 one
    if lease:
        lines.append(
            f"lease: {lease['subnet']}" + (f" {lease['subnet6'] or '(no IPv6)'}" if dual else "") + f" vtep {lease['vtep']} mac {lease['mac']}"
        )
    else:
        lines.append("lease: none")
    for peer in report["peers"]:
        flags = " ".join(f"{k}:{'ok' if v else 'MISSING'}" for k, v in peer["programmed"].items())
        v6 = f" {peer['subnet6'] or 'IPv4 only':24}" if dual else ""
        lines.append(f"  peer {peer['node']:12} {peer['subnet']:18}{v6} vtep {peer['vtep']:15} {flags}")
    return "\n".join(lines)


def main() -> None:
    cli(prog_name=os.path.basename(sys.argv[0]) or "vxlan")
