"""SIGKILLs of the top process during ADD, each followed by the runtime's DEL: no orphan, nothing left, no _MEI, no partial cache."""
import pytest

from stress import killtop

pytestmark = pytest.mark.root


def test_killed_adds_leave_no_orphan_no_mei_and_del_cleans_everything():
    result = killtop.KillTop(kills=100, workers=8, real_minute=False).run()
    assert result["violations"] == [], result
    assert result["kills"] >= 100 and result["orphans"] == 0
    assert result["dels"] >= result["kills"]
    if result["frozen"]:  # in place: one process, no _MEI; kills land while the cache is being populated
        assert result["cold_starts"] > 0
        assert result["killed_while_populating"] > 0, "no kill landed during a first population: the kills came too late"
        assert result["mei_after_sweep"] == 0


def test_remains_sees_what_an_add_leaves():
    """The per-kill check can fail: an ADD that is never deleted shows up in every category."""
    run = killtop.KillTop(kills=0, workers=1, real_minute=False)
    run.setup()
    try:
        p = run.start("ADD", "probe", run.pods[0].path)
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out
        assert sorted(run.remains("probe")) == ["address 10.189.0.2", "attachment record", "masquerade rule"]
        assert run.remains("probe2") == []
        run.delete("probe", run.pods[0].path)
        assert run.remains("probe") == [] and run.violations == []
    finally:
        run.teardown()
