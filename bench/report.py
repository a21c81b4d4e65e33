"""The benchmark's report: bench/out/report.md (+ results.json, latency.png); the Markdown is also printed."""
import json
import os
import statistics

MB = 1024 * 1024
ORDER = [
    "host-local VERSION", "bridge VERSION", "host-local ADD", "host-local DEL", "bridge ADD", "bridge CHECK", "bridge DEL",
    "vxlan ADD", "vxlan DEL", "host-local ADD, /16 with 60k used", "host-local DEL, /16 with 60k used",
    "host-local ADD, /16 exhausted (error)", "TMPDIR on disk: host-local VERSION", "TMPDIR on disk: host-local ADD",
    "TMPDIR on disk: host-local DEL",
]


def _ms(value) -> str:
    return "–" if value is None else (f"{value:.1f}" if value < 100 else f"{value:.0f}")


def _mb(entry: dict, key: str, present: str = "") -> str:
    """Megabytes, or a dash when the burst was not sampled."""
    if key not in entry or (present and present not in entry):
        return "–"
    return f"{entry[key] / MB:.0f} MB"


def _scenarios(res) -> list[str]:
    seen = {s for s, _ in res.samples}
    return [s for s in ORDER if s in seen] + sorted(seen - set(ORDER))


def _ratio(res, scenario: str):
    ours, ref = res.stats(scenario, "ours"), res.stats(scenario, "reference")
    if not ours or not ref or not ref["median"]:
        return None
    return ours["median"] / ref["median"]


def _cpu_ratio(res, scenario: str) -> str:
    ours, ref = res.stats(scenario, "ours"), res.stats(scenario, "reference")
    return f"{ours['cpu'] / ref['cpu']:.2f}x" if ours and ref and ref["cpu"] else ""


def targets(res, env) -> list[tuple[str, str, bool | None, str]]:
    """(target, measured, met, the same on CPU time: what machine load barely moves)."""
    rows = []
    v = res.stats("host-local VERSION", "ours")
    if v:
        rows.append(("VERSION median <= 40 ms", f"{v['median']:.1f} ms", v["median"] <= 40, f"{v['cpu']:.1f} ms"))
    for scenario, limit in (("bridge ADD", 6.0), ("bridge DEL", 2.5)):
        r = _ratio(res, scenario)
        if r is not None:
            rows.append((f"{scenario} median <= {limit:g}x reference", f"{r:.2f}x", r <= limit, _cpu_ratio(res, scenario)))
    ours, ref = res.burst.get("ours"), res.burst.get("reference")
    if ours and ref and ours.get("add_wall") and ref.get("add_wall"):
        n = env.get("burst", 110)
        rows.append((f"{n}-pod burst: zero failures", f"{ours['add_failures']} ADD, {ours['del_failures']} DEL failed",
                     ours["add_failures"] == 0 and ours["del_failures"] == 0, ""))
        rows.append((f"{n}-pod burst: distinct addresses", f"{min(ours['distinct'])} distinct of {n}", min(ours["distinct"]) == n, ""))
        r = statistics.median(ours["add_wall"]) / statistics.median(ref["add_wall"])
        cpu = statistics.median(ours["add_cpu"]) / statistics.median(ref["add_cpu"])
        rows.append((f"{n}-pod burst: ADD wall <= 6x reference", f"{r:.2f}x", r <= 6, f"{cpu:.2f}x"))
    for scenario in _scenarios(res):
        if scenario.startswith("host-local ADD, /16 with ") and (r := _ratio(res, scenario)) is not None:
            rows.append((f"{scenario.split(', ')[1]}: host-local ADD no slower than the reference", f"{r:.2f}x", r <= 1.0,
                         _cpu_ratio(res, scenario)))
    size = env.get("binary_bytes", 0)
    rows.append(("binary <= 25 MB", f"{size / MB:.1f} MB", size <= 25 * MB, ""))
    return rows


def markdown(res, env) -> str:
    out = ["# Benchmark: cni-python-suite (dist/cni-bin) against the reference plugins", ""]
    out.append(f"{env['date']}, git {env['git']}, kernel {env['kernel']}, {env['cpus']} CPUs, load average {env['loadavg']} at the start "
               f"and {env.get('loadavg_end', '?')} at the end; {env['iterations']} runs per command, interleaved; "
               f"reference: {env['reference']}; our runtime temporary directory (TMPDIR): {env['tmpdir']}. "
               f"Took {env.get('seconds', '?')} s.")
    out += ["", "Milliseconds from spawn to exit of one plugin process, as a runtime pays for it (wall), and the CPU time "
            "(user + system) of the process and the descendants it waited for: our bootloader's Python child, the reference "
            "bridge's host-local.  CPU time is what machine load barely moves.", ""]
    out.append("| command | ours median | ours min–max | reference median | reference min–max | ours/reference | CPU ours / ref (ms) | failures (ours/ref) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scenario in _scenarios(res):
        if scenario.startswith("TMPDIR on "):
            continue
        o, r = res.stats(scenario, "ours"), res.stats(scenario, "reference")
        ratio = _ratio(res, scenario)
        fail = f"{o['failures'] if o else '–'}/{r['failures'] if r else '–'}"
        cpu = f"{_ms(o and o['cpu'])} / {_ms(r and r['cpu'])}"
        out.append(f"| {scenario} | {_ms(o and o['median'])} | {_ms(o and o['min'])}–{_ms(o and o['max'])} | "
                   f"{_ms(r and r['median'])} | {_ms(r and r['min'])}–{_ms(r and r['max'])} | "
                   f"{'–' if ratio is None else f'{ratio:.2f}x'} | {cpu} | {fail} |")
    rows = [s for s in _scenarios(res) if s.startswith("TMPDIR on disk: ")]
    if rows:
        out += ["", "## Runtime temporary directory: disk or tmpfs (ours only)", "",
                "The same binary with TMPDIR on the disk file system (as above) and on a tmpfs (/dev/shm), interleaved.", "",
                "| command | disk median | tmpfs median | tmpfs/disk | CPU disk / tmpfs (ms) |", "|---|---:|---:|---:|---:|"]
        for disk in rows:
            command = disk.split(": ", 1)[1]
            d, t = res.stats(disk, "ours"), res.stats(f"TMPDIR on tmpfs: {command}", "ours")
            if d and t:
                out.append(f"| {command} | {_ms(d['median'])} | {_ms(t['median'])} | {t['median'] / d['median']:.2f}x | {_ms(d['cpu'])} / {_ms(t['cpu'])} |")
    if res.burst:
        n = env.get("burst", 110)
        out += ["", f"## {n} parallel bridge ADDs, then {n} DELs", "",
                "Wall time from the first spawn to the last exit.  Memory is a second burst with a sampler (every 5 ms): the sum of "
                "RSS over every process of the plugin trees (for ours the bootloader and its Python child; for the reference bridge "
                "and the host-local it execs), and for ours the bytes extracted into the runtime temporary directory (page cache). "
                "The last row is ours again with TMPDIR on a tmpfs (/dev/shm), timing only.", ""]
        out.append("| | ADD wall ms | DEL wall ms | CPU s ADD / DEL | failures ADD/DEL | distinct addresses | peak Σ RSS | peak processes | peak extracted (TMPDIR) | veths left |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label in ("ours", "reference", "ours, TMPDIR on tmpfs"):
            b = res.burst.get(label)
            if not b or not b.get("add_wall"):
                continue
            out.append(f"| {label} | {statistics.median(b['add_wall']):.0f} | {statistics.median(b['del_wall']):.0f} | "
                       f"{statistics.median(b['add_cpu']) / 1e3:.1f} / {statistics.median(b['del_cpu']) / 1e3:.1f} | "
                       f"{b['add_failures']}/{b['del_failures']} | {min(b['distinct'])} of {n} | {_mb(b, 'peak_rss')} | "
                       f"{b.get('peak_procs', 0) or '–'} | {_mb(b, 'peak_extracted', 'samples')} | {b.get('leftover_veths', 0)} |")
        ours, ref = res.burst.get("ours"), res.burst.get("reference")
        if ours and ref and ours.get("add_wall") and ref.get("add_wall"):
            med = statistics.median
            out.append(f"| ours/reference | {med(ours['add_wall']) / med(ref['add_wall']):.2f}x | "
                       f"{med(ours['del_wall']) / med(ref['del_wall']):.2f}x | "
                       f"{med(ours['add_cpu']) / med(ref['add_cpu']):.1f}x / {med(ours['del_cpu']) / med(ref['del_cpu']):.1f}x | | | "
                       f"{(ours.get('peak_rss', 0) / max(ref.get('peak_rss', 1), 1)):.1f}x | | | |")
        for label in ("ours", "reference", "ours, TMPDIR on tmpfs"):
            b = res.burst.get(label) or {}
            if b.get("errors"):
                out.append(f"\nFirst errors ({label}): " + "; ".join(f"`{e.strip()}`" for e in b["errors"][:3]))
    if res.exhausted:
        out += ["", "## The exhausted /16", "", "| | code | message |", "|---|---|---|"]
        for label, e in res.exhausted.items():
            out.append(f"| {label} | {e['code']} | {e['msg']} |")
    out += ["", "## Targets", "", "Judged on wall-clock medians; the last column is the same figure on CPU time.", "",
            "| target | measured | met | on CPU time |", "|---|---|---|---|"]
    for name, measured, met, cpu in targets(res, env):
        out.append(f"| {name} | {measured} | {'yes' if met else 'NO'} | {cpu or '–'} |")
    failures = {k: v for k, v in res.failures.items() if v}
    if failures:
        out += ["", "## Failed runs", ""]
        for (scenario, impl), errs in sorted(failures.items()):
            out.append(f"* {scenario}, {impl}: {len(errs)} failed; first: `{errs[0].strip()[:200]}`")
    if res.notes:
        out += ["", "## Notes", ""] + [f"* {n}" for n in res.notes]
    out += ["", "Latency distributions: latency.png.  Raw samples: results.json.  Analysis: docs/performance.md.", ""]
    return "\n".join(out)


def plot(res, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios = [s for s in _scenarios(res) if res.samples.get((s, "ours")) and not s.startswith("TMPDIR on ")]
    if not scenarios:
        return False
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(scenarios)), 5.5))
    positions, data, colors = [], [], []
    for i, scenario in enumerate(scenarios):
        for j, (label, color) in enumerate((("ours", "#1f77b4"), ("reference", "#ff7f0e"))):
            values = res.samples.get((scenario, label))
            if values:
                positions.append(i * 3 + j)
                data.append(values)
                colors.append(color)
    parts = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True, showfliers=True)
    for patch, color in zip(parts["boxes"], colors):
        patch.set_facecolor(color)
    ax.set_xticks([i * 3 + 0.5 for i in range(len(scenarios))])
    ax.set_xticklabels([s.replace(", ", "\n") for s in scenarios], rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ms per process (log scale)")
    ax.set_title("Latency per command, spawn to exit")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#1f77b4", label="ours (dist/cni-bin)"), Patch(color="#ff7f0e", label="reference 1.1.1")], loc="upper left")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(res, env, out_dir: str) -> str:
    text = markdown(res, env)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(text)
    raw = {"environment": env, "samples": {f"{s} | {i}": v for (s, i), v in res.samples.items()},
           "cpu": {f"{s} | {i}": v for (s, i), v in res.cpu.items()},
           "failures": {f"{s} | {i}": v for (s, i), v in res.failures.items()}, "burst": res.burst, "exhausted": res.exhausted,
           "notes": res.notes}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(raw, f, indent=1)
    plot(res, os.path.join(out_dir, "latency.png"))
    return text
