from data_explorer.pipelines.console import status_lines, summary_table
from data_explorer.pipelines.status import RunStatus


def test_progress_only_grows_and_ends_at_100():
    s = RunStatus("r", "demo", "commcare_sync", "incremental")
    seen = []
    s.enter("Discovering", "d")
    seen.append(s.progress["current"])
    s.within("Discovering", 1.0, "done")
    seen.append(s.progress["current"])
    s.enter("Loading", "l")
    for f in (0.1, 0.5, 0.3, 1.0):  # a step that reports less must not move it back
        s.within("Loading", f, "x")
        seen.append(s.progress["current"])
    s.enter("Transforming", "t")
    seen.append(s.progress["current"])
    s.enter("Succeeded", "ok")
    seen.append(s.progress["current"])
    assert seen == sorted(seen) and seen[-1] == 100
    assert s.progress["total"] == 100 and s.completed_at is not None


def test_failure_keeps_progress_and_records_the_error():
    s = RunStatus("r", "demo", "commcare_sync", "full")
    s.enter("Discovering", "d")
    s.enter("Loading", "l")
    s.within("Loading", 0.5, "half")
    before = s.progress["current"]
    s.fail("AUTH_FAILED", "refused")
    assert s.phase == "Failed" and s.error == {"code": "AUTH_FAILED", "message": "refused"}
    assert s.progress["current"] == before


def test_display_and_summary_render_every_step():
    s = RunStatus("r1", "demo", "commcare_sync", "full")
    s.enter("Discovering", "d")
    s.phases["discover"] = {"state": "done", "apps": 2, "case_types": 3, "forms": 4, "seconds": 0.2}
    s.phases["load"]["cases"] = {"state": "done", "rows": 1234, "mode": "full", "seconds": 1.0}
    s.phases["transform"] = {"state": "done", "total": 1, "models": {"cases": {"state": "success", "rows": 1234, "seconds": 0.5}}}
    for phase in ("Loading", "Transforming", "Succeeded"):
        s.enter(phase, phase.lower())
    text = "\n".join(status_lines(s))
    assert "3 case types" in text and "1,234 rows" in text and "1 of 1 models" in text
    table = summary_table(s)
    assert "load cases" in table and "model cases" in table and "Succeeded" in table and "r1" in table


def test_runs_follow_the_state_machine():
    import pytest

    from data_explorer.pipelines.status import IllegalTransition

    s = RunStatus("r", "demo", "commcare_sync", "full")
    with pytest.raises(IllegalTransition, match="Pending to Transforming"):
        s.enter("Transforming", "skipping ahead")
    for phase in ("Discovering", "Loading", "Transforming", "Succeeded"):
        s.enter(phase, phase)
    with pytest.raises(IllegalTransition, match="from Succeeded: nothing"):
        s.fail("X", "too late")
    cancelled = RunStatus("r2", "demo", "commcare_sync", "full")
    cancelled.fail("CANCELLED", "before it began", phase="Cancelled")
    assert cancelled.phase == "Cancelled"
