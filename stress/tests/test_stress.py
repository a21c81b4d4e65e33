"""The stress harness, short: a few hundred randomized calls under kill -9, then the runtime's sweep, with no violation."""
import os

import pytest

from stress import harness

pytestmark = pytest.mark.root


def test_short_stress_run_keeps_every_invariant(tmp_path):
    report = tmp_path / "stress.md"
    summary = harness.run(harness.Options(ops=300, workers=16, kill_rate=0.05, report=str(report), quiet=True))
    print(summary.text())
    assert summary.violations == [], summary.text()
    assert summary.ops >= 300 and summary.rounds >= 2
    assert summary.killed > 0, "no plugin process was killed"
    # the /28 ran out, and every refusal there was the documented code 100
    add = {outcome: n for (phase, op, outcome), n in summary.outcomes.items() if phase == "run" and op == "ADD"}
    assert add.get("code 100", 0) > 0, add
    # nothing is left after the sweeps (check_clean ran once per round without a violation) and the report says so
    text = report.read_text()
    assert "| invariant violations | **0** |" in text
    # same-container races ran (about 5% of the operations), each checked at once, and the report counts them
    races = sum(summary.races.values())
    assert races > 0 and {kind for kind, _ in summary.races} <= {"ADD/ADD", "ADD/DEL"}, summary.races
    assert f"| {summary.race_text()} | {races} |" in text and summary.race_text() in summary.text()


@pytest.mark.unit
def test_options_and_report_without_running():
    opts = harness.parse(["--ops", "20", "--workers", "16", "--kill-rate", "0.05", "--report", "/tmp/x.md"])
    assert (opts.ops, opts.workers, opts.kill_rate, opts.report, opts.race_rate) == (20, 16, 0.05, "/tmp/x.md", 0.05)
    assert harness.parse(["--race-rate", "0.5"]).race_rate == 0.5
    with pytest.raises(SystemExit):
        harness.parse(["--kill-rate", "1.5"])
    with pytest.raises(SystemExit):
        harness.parse(["--race-rate", "-0.1"])
    summary = harness.Summary(bin_dir="b", workers=1, kill_rate=0.0, seed=1, networks=[], pinned=True)
    summary.races[("ADD/ADD", "first won, loser 102")] += 2
    summary.races[("ADD/DEL", "gone")] += 1
    assert summary.race_text() == "same-container races, pinned to CPU 0 with taskset: ADD/ADD 2 (first won, loser 102: 2); ADD/DEL 1 (gone: 1)"
    assert summary.race_text() in summary.text() and f"| {summary.race_text()} | 3 |" in summary.markdown()
    bin_dir, note = harness.default_bin_dir()
    assert os.path.isdir(bin_dir)
    assert bool(note) == bin_dir.endswith("src-bin")
