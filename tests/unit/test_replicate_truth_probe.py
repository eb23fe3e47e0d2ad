"""Numbers an acceptance probe found untrue, checked without a table (the end-to-end half is in
tests/integration/test_replicate_truth_probe_e2e.py):

* a job whose writes land while nothing settles (a throttled target: a whole chunk settles at
  once) is not "failing: ... nothing was written", and its rate is not 0;
* a resumed job whose ``done`` starts again from 0 (the replication's apply phase) never shows a
  negative rate;
* a worker process that fails stops the others without the driver calling it a signal's stop.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any, Dict, List

import pytest

from ddbmigrate.engine.processes import _Run
from ddbmigrate.engine.run import WorkerView
from ddbmigrate.errors import RetriableError, to_wire
from ddbmigrate.reporting import progress
from ddbmigrate.reporting.metrics import Stall


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --------------------------------------------------------------------------- health (Stall)


def test_acknowledged_writes_are_progress_for_the_stall_detector() -> None:
    """The probe: 503 "nothing was written for 43 s" while `written` rose 3,500 -> 3,825."""
    clock = Clock()
    stall = Stall(after=15.0, clock=clock)
    assert stall.observe(3500, 0, acked=3500) is None
    for second in range(1, 60):
        clock.t += 1.0
        # Throttles retried all along, nothing settled (the chunk is still in flight), writes landing.
        assert stall.observe(3500, second, acked=3500 + 5 * second) is None, second


def test_a_job_that_writes_nothing_while_retrying_is_still_failing() -> None:
    clock = Clock()
    stall = Stall(after=15.0, clock=clock)
    stall.observe(3500, 0, acked=3825)
    why = None
    for second in range(1, 20):
        clock.t += 1.0
        why = stall.observe(3500, second, acked=3825)
    assert why is not None and "nothing was written for 19 s" in why


def test_the_stall_detector_without_acked_counts_is_as_before() -> None:
    """Callers that pass no acknowledged writes (the interface before) keep working."""
    clock = Clock()
    stall = Stall(after=15.0, clock=clock)
    stall.observe(10, 0)
    for second in range(1, 17):
        clock.t += 1.0
        why = stall.observe(10, second)
    assert why is not None and why.startswith("failing:")
    clock.t += 1.0
    assert stall.observe(11, 17) is None


# --------------------------------------------------------------------------- progress rate


def _lines(out: io.StringIO) -> List[Dict[str, Any]]:
    return [json.loads(x) for x in out.getvalue().splitlines()]


def test_the_rate_counts_writes_acknowledged_before_their_chunk_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    """`done 0, items_per_s 0.0` for minutes while writes landed: the rate is of acknowledged work."""
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    snap: Dict[str, Any] = {"done": 0, "total": 1000, "acked": 0}
    out = io.StringIO()
    p = progress.Progress("copy", lambda: dict(snap), mode="json", interval=3600.0, stream=out)
    p.start()
    for t in range(5, 100, 5):  # 20 writes a second acknowledged, no chunk settled yet
        now[0], snap["acked"] = 100.0 + t, 20 * t
        p._tick()
    p.stop()
    lines = _lines(out)
    assert all(x["done"] == 0 for x in lines)
    assert all(x["items_per_s"] == 20.0 for x in lines), lines
    assert lines[-1]["event"] == "progress_final" and lines[-1]["eta_s"] is not None


def test_the_rate_of_acknowledged_writes_is_in_records_once_some_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transform writing 3 target items per record: 60 writes/s are 20 records/s."""
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    snap: Dict[str, Any] = {"done": 0, "total": 10_000, "acked": 0}
    out = io.StringIO()
    p = progress.Progress("copy", lambda: dict(snap), mode="json", interval=3600.0, stream=out)
    p.start()
    now[0], snap["done"], snap["acked"] = 110.0, 200, 600  # one chunk settled
    p._tick()
    now[0], snap["acked"] = 120.0, 1200  # the next one in flight
    p._tick()
    p.stop()
    lines = _lines(out)
    assert lines[1]["done"] == 200 and lines[1]["items_per_s"] == pytest.approx(20.0), lines


def test_a_job_without_writes_keeps_the_rate_of_done(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    snap: Dict[str, Any] = {"done": 0, "total": 1000, "acked": 0}
    out = io.StringIO()
    p = progress.Progress("export", lambda: dict(snap), mode="json", interval=3600.0, stream=out)
    p.start()
    now[0], snap["done"] = 110.0, 500
    p._tick()
    p.stop()
    assert _lines(out)[0]["items_per_s"] == 50.0


def test_a_resumed_job_counting_done_from_zero_never_shows_a_negative_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe: "items_per_s":-839.0 and a progress_final of -350.2 on `replicate --resume`: the
    start's count was the checkpoint's (~3,500), the apply job's ``done`` this run's, from 0."""
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    snap: Dict[str, Any] = {"done": 3500, "total": None}
    out = io.StringIO()
    p = progress.Progress("replicate", lambda: dict(snap), mode="json", interval=3600.0, stream=out)
    p.start()
    for t, d in ((5.0, 0), (10.0, 200), (20.0, 600), (40.0, 1000)):
        now[0], snap["done"] = 100.0 + t, d
        p._tick()
    now[0] = 150.0
    p.stop()
    lines = _lines(out)
    assert all(x["items_per_s"] >= 0 for x in lines), lines
    assert lines[-1]["event"] == "progress_final" and lines[-1]["items_per_s"] == 20.0  # 1,000 in 50 s


# --------------------------------------------------------------------------- processes engine


class _Driver:
    """What _Run._end needs of the driver, and whether it was asked to stop as for a signal."""

    def __init__(self) -> None:
        self.interrupted = False
        self.views: Dict[int, WorkerView] = {}
        self.samples: List[Any] = []
        self.unit_seconds: Dict[str, float] = {}
        self.failures: List[Any] = []

        class _Dead:
            def commit(self, lines: Any, settled: bool = True) -> None:
                return None

        self.dead = _Dead()

    def worker(self, wid: int) -> WorkerView:
        return self.views.setdefault(wid, WorkerView())

    def interrupt(self) -> None:
        self.interrupted = True


def test_a_failed_worker_process_stops_the_others_without_calling_it_a_signal() -> None:
    """--processes 2, a copy that failed (exit 75, no signal sent): its last progress line said
    "stopping: finishing in-flight writes (signal again to stop at once)" (the driver's status
    of an interrupt). The others are stopped all the same."""
    run = _Run.__new__(_Run)
    driver = _Driver()
    run.driver = driver  # type: ignore[assignment]
    run.stop_ev = threading.Event()
    run.ended, run.errors = set(), []
    run.pending, run.flushed = {0: [], 1: []}, {0: 0, 1: 0}
    result = {"dead_mark": 0, "counters": {"written": 5}, "stopped": {"written": 7}, "samples": [],
              "unit_seconds": {}, "failures": []}
    run._end(0, result, to_wire(RetriableError("throttled past the retries")))
    assert run.stop_ev.is_set()  # the other workers drain and stop
    assert not driver.interrupted
    extra = driver.views[0].extra_fn
    assert extra is not None
    status = extra()["status"]
    assert status.startswith("failing: worker process 0 failed") and "signal" not in status
