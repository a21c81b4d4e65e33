"""The stress run's figures: printed as a summary and written as Markdown."""
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Summary:
    bin_dir: str
    workers: int
    kill_rate: float
    seed: int
    networks: list[str]
    notes: list[str] = field(default_factory=list)
    violations: list[tuple[str, str]] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)  # (phase, op, outcome) -> calls
    durations: dict = field(default_factory=dict)  # op -> seconds of each run-phase call
    kills: Counter = field(default_factory=Counter)  # "ADD at veth" -> kills
    unexpected: list[str] = field(default_factory=list)  # documented codes a healthy run should not see
    mei_partial: list[str] = field(default_factory=list)  # remains of _MEI dirs whose bootloader was killed while deleting them
    stuck_bootloader: list[str] = field(default_factory=list)  # onefile children killed in the bootloader's fork/sem_post window
    late_deaths: list = field(default_factory=list)  # (seconds, exited at its parent check, printed something) of slow children
    elapsed: float = 0.0
    run_seconds: float = 0.0
    sweep_seconds: float = 0.0
    rounds: int = 0
    containers: int = 0
    lost: int = 0
    mei_left: int | None = None
    mei_after_sweep: int | None = None

    # --- figures ---------------------------------------------------------------------------

    def calls(self, phase: str = "run") -> int:
        return sum(n for (ph, _, _), n in self.outcomes.items() if ph == phase)

    @property
    def ops(self) -> int:
        return self.calls("run")

    @property
    def killed(self) -> int:
        return sum(self.kills.values())

    @property
    def throughput(self) -> float:
        return self.ops / self.run_seconds if self.run_seconds else 0.0

    def breakdown(self) -> list[tuple[str, str, dict[str, int], int]]:
        """(phase, op, {outcome: calls}, total), phases and ops in a fixed order."""
        rows = []
        for phase in ("run", "sweep"):
            for op in ("ADD", "CHECK", "DEL", "GC"):
                cells = {o: n for (ph, o_op, o), n in self.outcomes.items() if ph == phase and o_op == op}
                if cells:
                    rows.append((phase, op, dict(sorted(cells.items(), key=_outcome_order)), sum(cells.values())))
        return rows

    def latency(self, op: str) -> tuple[float, float, float] | None:
        values = sorted(self.durations.get(op, []))
        if not values:
            return None
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        return statistics.median(values), p95, values[-1]

    def late_note(self) -> str:
        worst = max(s for s, _, _ in self.late_deaths)
        at_check = sum(1 for _, c, _ in self.late_deaths if c)
        return (f"{len(self.late_deaths)} killed calls had a process outlive the kill by over 1 s (at most {worst:.1f} s); "
                f"{at_check} of them were plugin children killed before PR_SET_PDEATHSIG that exited at their parent check")

    # --- output ----------------------------------------------------------------------------

    def text(self) -> str:
        lines = [
            f"stress: {self.ops} operations ({self.workers} workers, {self.rounds} rounds, {self.containers} containers) "
            f"in {self.run_seconds:.0f}s: {self.throughput:.1f} ops/s",
            f"  kills injected: {self.killed} ({100 * self.killed / max(self.ops, 1):.1f}% of calls): "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.kills.items())),
            f"  sweep: {self.calls('sweep')} calls in {self.sweep_seconds:.0f}s; left to GC (runtime lost them): {self.lost}",
        ]
        for phase, op, cells, total in self.breakdown():
            lines.append(f"  {phase:5} {op:5} {total:6}: " + ", ".join(f"{o} {n}" for o, n in cells.items()))
        if self.mei_left is not None:
            lines.append(f"  _MEI dirs left by killed bootloaders: {self.mei_left}; after the next start's sweep: {self.mei_after_sweep}"
                         + (f" ({len(self.mei_partial)} of them remains of a bootloader killed while deleting "
                            f"its directory that the sweep kept: violations)" if self.mei_partial else ""))
        if self.late_deaths:
            lines.append(f"  {self.late_note()}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.unexpected:
            lines.append(f"  unexpected (documented) error codes: {len(self.unexpected)}")
            lines += [f"    {u}" for u in self.unexpected[:20]]
        if self.stuck_bootloader:
            lines.append(f"  {len(self.stuck_bootloader)} onefile bootloader children stuck in sem_wait before Python "
                         f"(violations: the patched bootloader, build/bootloader.sh, must not leave any)")
            lines += [f"    {d}" for d in self.stuck_bootloader[:5]]
        lines.append(f"  invariant violations: {len(self.violations)}")
        lines += [f"    {kind}: {detail}" for kind, detail in self.violations[:50]]
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [
            "# Stress run",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}, plugins from `{self.bin_dir}`, seed {self.seed}.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| operations (plugin calls, randomized phase) | {self.ops} |",
            f"| concurrent workers | {self.workers} |",
            f"| rounds (each: sweep, GC, checks) | {self.rounds} |",
            f"| containers started | {self.containers} |",
            f"| kills injected (SIGKILL of the top process) | {self.killed} ({100 * self.killed / max(self.ops, 1):.1f}%) |",
            f"| killed ADDs left to GC (runtime lost them) | {self.lost} |",
            f"| invariant violations | **{len(self.violations)}** |",
            f"| of the violations, bootloader children stuck before Python (the fork/sem_post window build/bootloader.sh closes) | {len(self.stuck_bootloader)} |",
            f"| throughput | {self.throughput:.1f} ops/s ({self.run_seconds:.0f} s) |",
            f"| sweep | {self.calls('sweep')} calls in {self.sweep_seconds:.0f} s |",
            f"| wall time | {self.elapsed:.0f} s |",
        ]
        if self.mei_left is not None:
            out.append(f"| `_MEI*` dirs left by killed bootloaders / after the next start's sweep | {self.mei_left} / {self.mei_after_sweep} |")
            out.append(f"| of those, remains of a deleting bootloader the sweep kept (violations) | {len(self.mei_partial)} |")
        out += ["", "Networks: " + "; ".join(self.networks) + ".", ""]
        out += ["## Operations by outcome", "", "| phase | op | calls | outcomes |", "|---|---|---|---|"]
        for phase, op, cells, total in self.breakdown():
            out.append(f"| {phase} | {op} | {total} | " + ", ".join(f"{o}: {n}" for o, n in cells.items()) + " |")
        out += ["", "## Kills by point", "", "| point | kills |", "|---|---|"]
        out += [f"| {k} | {n} |" for k, n in sorted(self.kills.items())]
        out += ["", "## Latency (randomized phase, seconds)", "", "| op | median | p95 | max |", "|---|---|---|---|"]
        for op in ("ADD", "CHECK", "DEL"):
            lat = self.latency(op)
            if lat:
                out.append(f"| {op} | {lat[0]:.3f} | {lat[1]:.3f} | {lat[2]:.3f} |")
        notes = self.notes + ([self.late_note()] if self.late_deaths else [])
        if notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
        out += ["", "## Unexpected error codes (documented, but not expected in a healthy run)", ""]
        out += [f"- {u}" for u in self.unexpected] or ["none"]
        out += ["", "## Bootloader children stuck before Python", "",
                "PyInstaller's onefile bootloader forks its child, which blocks in `sem_wait()` until the parent has installed its",
                "signal handlers and posted the semaphore. A SIGKILL of the parent in that window leaves the child blocked forever:",
                "it never starts Python (so `PR_SET_PDEATHSIG`, set from Python, never happens) and runs none of the plugin's code,",
                "but it keeps the caller's stdout pipe open. The harness kills each one it finds.", ""]
        out += [f"- {d}" for d in self.stuck_bootloader] or ["none"]
        out += ["", "## `_MEI` remains the start-up sweep does not remove", "",
                "A bootloader killed while deleting its own `_MEI` directory leaves what it had not deleted yet and no",
                "`.cni-multi-build` marker (it was deleted first), so later starts do not recognise the remains as theirs.", ""]
        out += [f"- {d}" for d in self.mei_partial] or ["none"]
        out += ["", "## Invariant violations", ""]
        out += [f"- **{kind}**: {detail}" for kind, detail in self.violations] or ["none"]
        return "\n".join(out) + "\n"

    def write(self, path: str) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with open(path, "w") as f:
            f.write(self.markdown())


def _outcome_order(item):
    outcome = item[0]
    if outcome == "ok":
        return (0, 0)
    if outcome.startswith("code "):
        return (1, int(outcome.split()[1]))
    return (2, outcome)
