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


@pytest.mark.unit
def test_options_and_report_without_running():
    opts = harness.parse(["--ops", "20", "--workers", "16", "--kill-rate", "0.05", "--report", "/tmp/x.md"])
    assert (opts.ops, opts.workers, opts.kill_rate, opts.report) == (20, 16, 0.05, "/tmp/x.md")
    with pytest.raises(SystemExit):
        harness.parse(["--kill-rate", "1.5"])
    bin_dir, note = harness.default_bin_dir()
    assert os.path.isdir(bin_dir)
    assert bool(note) == bin_dir.endswith("src-bin")
