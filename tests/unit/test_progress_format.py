"""How sizes are written for people (reporting/progress.fmt_bytes): the managed jobs' status
lines (ImportTable, export, bulk put) and the progress line's journal size."""

from __future__ import annotations

import io

import pytest

from ddbmigrate.reporting.progress import fmt_bytes


def test_sizes_are_written_for_people_and_an_unknown_one_says_so() -> None:
    assert fmt_bytes(None) == "?"
    assert fmt_bytes(0) == "0 B"
    assert fmt_bytes(1023) == "1,023 B"
    assert fmt_bytes(1024) == "1.0 KB"
    assert fmt_bytes(1536) == "1.5 KB"
    assert fmt_bytes(5 * 1024 ** 2) == "5.0 MB"
    assert fmt_bytes(3 * 1024 ** 3) == "3.0 GB"
    assert fmt_bytes(1024 ** 4 - 1) == "1,024.0 GB"  # rounded, not promoted: the unit is chosen first
    assert fmt_bytes(5 * 1024 ** 4) == "5.0 TB"
    assert fmt_bytes(2048 * 1024 ** 4) == "2,048.0 TB"


def test_the_progress_line_gives_the_journal_size_and_zero_when_none_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddbmigrate.reporting.progress import Progress

    monkeypatch.setenv("COLUMNS", "200")  # the whole line, whatever the terminal running the tests

    for size, shown in ((None, "(0 B)"), (1536, "(1.5 KB)")):
        out = io.StringIO()
        p = Progress("j", lambda: {"done": 5, "total": 10, "journal_backlog": 1234, "journal_bytes": size},
                     mode="bar", interval=60.0, stream=out)
        p.start()
        p.stop()
        text = " ".join(out.getvalue().split())
        assert f"journal 1,234 changes {shown}" in text, text


def test_the_first_progress_line_gives_the_rate_since_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first line came 5 s in with 0 items/s and no ETA: there was no earlier line to compare
    with. It is now the rate since the start, from what was done then (a resumed job's count)."""
    import json

    from ddbmigrate.reporting import progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    done = [400]  # a resumed job: 400 done before this run
    out = io.StringIO()
    p = progress.Progress("copy", lambda: {"done": done[0], "total": 3400}, mode="json", interval=3600.0, stream=out)
    p.start()
    now[0], done[0] = 105.0, 1400
    p._tick()
    p.stop()
    first = json.loads(out.getvalue().splitlines()[0])
    assert first["items_per_s"] == 200.0 and first["eta_s"] == 10.0, first


def test_the_last_progress_line_gives_the_whole_runs_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines in between give the last 10 seconds' rate (to follow the speed as it changes); the
    last gives the run's, as the summary does, not the speed of its final seconds."""
    import json

    from ddbmigrate.reporting import progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    done = [0]
    out = io.StringIO()
    p = progress.Progress("copy", lambda: {"done": done[0], "total": 6000}, mode="json", interval=3600.0, stream=out)
    p.start()
    for t, d in ((110.0, 1000), (120.0, 2000), (130.0, 6000)):  # 100/s, then 400/s at the end
        now[0], done[0] = t, d
        p._tick()
    p.stop()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[-2]["items_per_s"] == 400.0  # the last 10 s
    assert lines[-1]["event"] == "progress_final" and lines[-1]["items_per_s"] == 200.0  # 6,000 in 30 s


def test_a_resumed_jobs_items_per_second_counts_only_this_runs_items() -> None:
    """The report's counts are the whole job's (a resumed job's checkpoint included); its items/s
    is this run's: 1,000 items in 10 s is 100/s, not 10,100 items over this run's 10 s."""
    from ddbmigrate.reporting.report import Report, finish

    before = {"read": 9100, "written": 9000, "skipped_existing": 100}
    whole = {"read": 10100, "written": 9900, "skipped_existing": 200}
    r = finish(Report("copy"), whole, {}, 10.0, before=before)
    assert r.count("written") == 9900 and r.items_per_second == 100.0
    assert finish(Report("export"), whole, {}, 10.0, before=before).items_per_second == 100.0  # read
    assert finish(Report("copy"), whole, {}, 10.0).items_per_second == 1010.0  # a first run


def test_the_rate_starts_when_the_first_items_settle_so_the_early_eta_is_not_high() -> None:
    """A job held to 500 items/s whose first page of writes settles 2 s in: at 6 s, 2,000 are
    settled. The rate is 500/s (not 2,000 / 6 s), so the ETA for 4,000 more is 8 s, not 12."""
    from ddbmigrate.reporting.progress import Progress

    p = Progress("copy", lambda: {"done": 0}, mode="json", stream=io.StringIO())
    p._base = (100.0, 0)
    p._history.append(p._base)
    settled = {100.5: 0, 101.0: 0, 101.5: 0, 102.0: 0, 104.0: 1000, 106.0: 2000}
    rates = [p._rate(t, d) for t, d in settled.items()]
    assert rates[:4] == [0.0, 0.0, 0.0, 0.0]  # nothing settled: no rate, no ETA
    assert rates[4:] == [500.0, 500.0]
    # A resumed job's start is what its checkpoint held; a stall later in the run stays in the window.
    q = Progress("copy", lambda: {"done": 0}, mode="json", stream=io.StringIO())
    q._base = (0.0, 7000)
    q._history.append(q._base)
    got = [q._rate(t, d) for t, d in [(1.0, 7000), (2.0, 7500), (3.0, 7500), (4.0, 7500), (5.0, 8000)]]
    assert got[-1] == 1000 / 4.0


@pytest.mark.parametrize("columns", ["80", "60"])
def test_a_narrow_terminal_cuts_the_extras_not_the_count_or_the_eta(monkeypatch: pytest.MonkeyPatch,
                                                                    columns: str) -> None:
    # At 80 columns the total read "0/150…" (of 15,000) and, while draining, the long "stopping:
    # ..." hid the job, its count and its ETA.
    from ddbmigrate.reporting.progress import Progress

    monkeypatch.setenv("COLUMNS", columns)
    out = io.StringIO()
    snap = {"done": 828, "total": 15000, "retries": 3, "throttles": 2, "rate_limit": 800.0,
            "status": "stopping: finishing in-flight writes (signal again to stop at once)"}
    p = Progress("copy", lambda: dict(snap), mode="bar", interval=60.0, stream=out)
    p.start()
    p.stop()
    last = [ln for ln in out.getvalue().splitlines() if ln.strip()][-1]
    assert len(last) <= int(columns), last
    assert "copy" in last and "828/15000" in last and "ETA" in last, last


def test_progress_never_goes_back_and_a_passed_estimate_is_no_total() -> None:
    """A Spark task retried from its start settles its unit's items anew: done went 250 -> 150 with
    -20 items/s. A total estimated from DescribeTable's ItemCount (hours old) that the job passed
    read done 3,814 of 3,000 with an ETA of 0 while it ran."""
    import json

    from ddbmigrate.reporting.progress import Progress

    snaps = iter([{"done": 0, "total": 3000}, {"done": 250, "total": 3000}, {"done": 150, "total": 3000},
                  {"done": 3814, "total": 3000}, {"done": 4560, "total": 3000}])
    out = io.StringIO()
    p = Progress("copy", lambda: next(snaps), mode="json", interval=3600.0, stream=out)
    p.start()
    for _ in range(3):
        p._tick()
    p._tick(final=True)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["done"] for x in lines] == [250, 250, 3814, 4560]
    assert all(x["items_per_s"] >= 0 for x in lines)
    assert lines[2]["total"] == 3814 and lines[2]["eta_s"] is None  # passed: no total, no ETA of 0
    assert lines[3]["total"] == 4560
    assert [t["done"] for t in p.timeline] == [250, 250, 3814, 4560]


def test_metrics_counters_never_go_down() -> None:
    """Prometheus reads a counter that drops as a restart: a Spark task retried from its start
    took written 400 -> 50."""
    from types import SimpleNamespace

    from ddbmigrate.engine.run import Driver

    d = Driver.__new__(Driver)
    d.opts = SimpleNamespace(metrics_job=None)  # type: ignore[assignment]
    d.job = SimpleNamespace(kind="copy")  # type: ignore[assignment]
    d.dead = SimpleNamespace(by_reason={})  # type: ignore[assignment]
    d._counter_high = {}
    seen = iter([{"written": 400, "read": 400}, {"written": 50, "read": 60}, {"written": 500, "read": 500}])
    d.counters = lambda live, settled=False: next(seen)  # type: ignore[method-assign]
    d.stats = lambda: {"retries": {}}  # type: ignore[method-assign]
    d.limits = lambda: {}  # type: ignore[method-assign]

    def written() -> float:
        return next(s.value for s in d.metric_samples() if s.name == "records" and s.labels["counter"] == "written")

    assert [written(), written(), written()] == [400.0, 400.0, 500.0]


def test_every_retry_cause_is_exposed_from_the_start() -> None:
    from ddbmigrate.reporting.metrics import job_samples

    got = {(s.labels["cause"], s.value) for s in job_samples("copy", {}, {"retries": {"5xx": 2}}, {}, {})
           if s.name == "retries"}
    assert got == {("throttle", 0.0), ("unprocessed", 0.0), ("5xx", 2.0), ("connection", 0.0), ("credentials", 0.0)}
