"""cni-suite: the node operator's view of the CNI plugins (status, gc, doctor).

Shipped in the same single-file binary as the plugins, under the name
`cni-suite`.  Networks are read from NETCONFPATH (default /etc/cni/net.d),
as runtimes read them.
"""

import json
import logging
import os
import sys

import click

from cni_suite import inventory
from cni_suite.text import safe, safe_lines, safe_tree
from common.errors import CNIError

log = logging.getLogger("cni_suite")


def _networks(conf_dir: str | None, network: str | None) -> list[inventory.Network]:
    found = inventory.networks(inventory.conf_dir(conf_dir))
    if network:
        found = [n for n in found if n.name == network]
        if not found:
            raise click.ClickException(safe(f"no network {network!r} of ours in {inventory.conf_dir(conf_dir)}"))
    return found


def say(text: str, err: bool = False) -> None:
    """Every text line goes out through here.  Fields are made safe where the lines are
    built (a newline inside a field must not start a line); this catches any field missed."""
    click.echo(safe_lines(text), err=err)


class SafeFormatter(logging.Formatter):
    """Log messages quote container IDs and file names from state: escaped like all text output."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return safe_lines(super().format(record))  # a traceback keeps its lines, nothing else


@click.group(help="Operate the CNI plugins of this node: what they hold, garbage collection, health.")
@click.option("--conf-dir", default=None, help="network configurations (default: $NETCONFPATH or /etc/cni/net.d)")
@click.option("--log-level", default="warning", type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def cli(ctx, conf_dir: str | None, log_level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("cni-suite %(levelname)s %(message)s"))
    logging.basicConfig(level=getattr(logging, log_level.upper()), handlers=[handler])
    ctx.obj = conf_dir


@cli.command(help="Per network: range usage, allocations, attachments, masquerade rules, vxlan peers.")
@click.option("--network", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(conf_dir, network, as_json) -> None:
    from cni_suite.report import network_report

    reports = [network_report(n) for n in _networks(conf_dir, network)]
    if as_json:
        click.echo(json.dumps({"networks": reports}, indent=2))
        return
    for report in reports:
        say(_text(report))


def _text(report: dict) -> str:
    # every string in it came from state, config or the runtime; container IDs are
    # abbreviated before they are escaped, so that no escape is cut in half
    short = {k: [dict(a, containerID=a["containerID"][:24]) for a in report[k]] for k in ("allocations", "attachments") if k in report}
    r = safe_tree(dict(report, **short))
    lines = [f"network {r['network']} ({r['plugin']}, {r['source']})"]
    if "problem" in r:
        lines.append(f"  PROBLEM: {r['problem']}")
    for rs in r.get("ranges", []):
        lines.append(f"  range set {rs['rangeSet']} {rs['ranges']}: {rs['used']} used, {rs['free']} free of {rs['capacity']}")
    for a in r.get("allocations", []):
        lines.append(f"    {a['ip']:40} {a['containerID']:24} {a['ifname']:8} age {a['ageSeconds']}s, {a['boot']} boot")
    for a in r.get("attachments", []):
        veth = a["hostVeth"] + ("" if a["vethPresent"] else " (gone)")
        lines.append(f"  attachment {a['containerID']}/{a['ifname']}: veth {veth}, netns {a['netns'] or '-'}{'' if a['netnsExists'] else ' (gone)'}")
    m = r.get("masquerade", {})
    if any(m.values()):
        lines.append(f"  masquerade: {len(m.get('nftables', []))} nftables rules, iptables chains {m.get('ipv4', []) + m.get('ipv6', [])}")
    if "vxlan" in r:
        v = r["vxlan"]
        lines.append(f"  vxlan {v['device']['name']}: {v['device']['state']}, {v['store']}")
        for p in v["peers"]:
            flags = " ".join(f"{k}:{'ok' if ok else 'MISSING'}" for k, ok in p["programmed"].items())
            subnets = p["subnet"] + (f" {p['subnet6']}" if p.get("subnet6") else "")
            lines.append(f"    peer {p['node']} {subnets} via {p['vtep']}: {flags}")
    return "\n".join(lines)


@cli.command(help="Release what no live container holds, as CNI 1.1.0 GC would; remove other builds' unused run-in-place caches.")
@click.option("--network", default=None)
@click.option("--valid", multiple=True, metavar="CONTAINERID:IFNAME", help="an attachment to keep (repeatable)")
@click.option(
    "--from-runtime",
    "runtime",
    type=click.Choice(["auto", "crictl", "podman", "cache"]),
    default=None,
    help="keep the sandboxes a runtime reports alive",
)
@click.option("--boot-sweep", is_flag=True, help="release only what earlier boots left behind")
@click.option("--cni-path", default=lambda: os.environ.get("CNI_PATH", "/opt/cni/bin"), show_default="$CNI_PATH or /opt/cni/bin")
@click.pass_obj
def gc(conf_dir, network, valid, runtime, boot_sweep, cni_path) -> None:
    from cni_suite import gc as collect

    if sum(map(bool, (valid, runtime, boot_sweep))) != 1:
        raise click.UsageError("give exactly one of --valid, --from-runtime, --boot-sweep")
    pairs = set()
    for item in valid:
        cid, sep, ifname = item.rpartition(":")
        if not sep or not cid or not ifname:
            raise click.UsageError(f"--valid {item!r}: want CONTAINERID:IFNAME")
        pairs.add((cid, ifname))
    live: set[str] = set()
    if runtime:
        try:
            live, source = collect.live_containers(runtime)
        except CNIError as err:
            raise click.ClickException(safe(err)) from None
        say(f"{len(live)} live sandboxes from {source}")
    failed = False
    for net in _networks(conf_dir, network):
        if net.problem:  # an unreadable conf file has no plugin to ask; it would fail as a misleading vxlan error
            failed = True
            say(f"{safe(net.name)}: GC skipped: {safe(net.problem)}", err=True)
            continue
        try:
            if boot_sweep:
                released = collect.boot_sweep(net, cni_path)
                say(f"{safe(net.name)}: boot sweep released {len(released)}: {' '.join(map(safe, released)) or '-'}")
                continue
            keep = pairs if valid else {(cid, ifname) for cid, ifname in collect.attachments(net) if cid in live}
            before = collect.attachments(net)
            collect.run_gc(net, keep, cni_path)
            gone = sorted(before - collect.attachments(net))
            say(f"{safe(net.name)}: released {len(gone)}: {' '.join(safe(f'{c}/{i}') for c, i in gone) or '-'}")
        except CNIError as err:
            failed = True
            say(f"{safe(net.name)}: GC failed: {safe(err)}", err=True)
    for path in collect.prune_binary_cache():
        say(f"run-in-place cache: removed {safe(path)}")
    if failed:
        sys.exit(1)


@cli.command(help="Check this node for the known pain points and print each finding with its fix.")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--runtime-tmpdir",
    metavar="DIR",
    default=None,
    help="The TMPDIR the container runtime gives the plugins (default: $TMPDIR, else /tmp). "
    "A single-file binary cannot start from a noexec TMPDIR, so check the runtime's from a usable one.",
)
@click.option("--bin-dir", default="/opt/cni/bin", show_default=True, help="The runtime's CNI bin_dir, where the plugins should be.")
@click.option(
    "--cni-path",
    default=None,
    help="The runtime's CNI_PATH, colon-separated (default: $CNI_PATH, else the bin dir). "
    "Debian's containerd appends /usr/lib/cni: give /opt/cni/bin:/usr/lib/cni to check what it would run.",
)
@click.pass_obj
def doctor(conf_dir, as_json, runtime_tmpdir, bin_dir, cni_path) -> None:
    from cni_suite.doctor import examine

    path = [d for d in (cni_path or os.environ.get("CNI_PATH") or bin_dir).split(":") if d]
    findings = examine(_networks(conf_dir, None), runtime_tmpdir, (inventory.conf_dir(conf_dir), bin_dir, path))
    if as_json:
        click.echo(json.dumps({"healthy": not findings, "findings": [f.to_dict() for f in findings]}, indent=2))
    elif not findings:
        say("healthy: no known problem found")
    else:
        for f in findings:
            say(_finding_text(f))
    sys.exit(1 if findings else 0)


def _finding_text(f) -> str:
    return f"[{safe(f.check)}] {safe(f.network) + ': ' if f.network else ''}{safe(f.problem)}\n    fix: {safe(f.fix)}"


def main() -> None:
    try:
        cli(prog_name="cni-suite")
    except Exception:  # a crash's traceback quotes the data that caused it: escaped like the rest (exit 1, as Python's)
        import traceback

        sys.stderr.write(safe_lines(traceback.format_exc()))
        sys.exit(1)
