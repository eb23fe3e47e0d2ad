"""One progress display for many concurrent jobs: a rich bar per job plus a total.

Jobs do not know about this display: :func:`ddbmigrate.engine.run.run_job` (and the native
export/import watchers) call the *hook* installed for their thread with a ``snapshot()``
function, and this display polls every attached snapshot from its own thread. The hot path
therefore only bumps counters, exactly as with the single-job :class:`~ddbmigrate.reporting.progress.Progress`.

Besides drawing, the display records a timeline per job phase (``{t, done, retries,
throttles}``, ``t`` in seconds since the phase started) and one for the plan total, which the
plan report keeps for ``ddbmigrate report``.

Invariant: a display problem never stops a migration (every tick is guarded), and no item body
or secret is ever part of an event (invariant 8).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import orjson

from ..reporting.progress import _fmt_eta, resolve_mode

Snapshot = Callable[[], Dict[str, Any]]
MAX_TIMELINE = 2000


@dataclass
class _Phase:
    kind: str
    snapshot: Snapshot
    t0: float
    timeline: List[Dict[str, Any]] = field(default_factory=list)
    history: List[Tuple[float, int]] = field(default_factory=list)
    last: Dict[str, Any] = field(default_factory=dict)


@dataclass
class _Row:
    name: str
    label: str
    status: str = "queued"
    task: Any = None
    phase: Optional[_Phase] = None
    phases: List[Tuple[str, List[Dict[str, Any]]]] = field(default_factory=list)  # (kind, timeline)
    done: int = 0
    total: Optional[int] = None
    retries: int = 0
    throttles: int = 0
    dead: int = 0


def _window_rate(history: List[Tuple[float, int]], now: float, done: int) -> float:
    history.append((now, done))
    while len(history) > 2 and now - history[0][0] > 10.0:
        history.pop(0)
    t0, d0 = history[0]
    return (done - d0) / (now - t0) if now > t0 else 0.0


class JobObserver:
    """What a plan job's engine reports to (an engine Observer): the display's row of that job.

    Several phases may attach in turn (a copy's clean, then its copy); each is drawn while it runs.
    """

    def __init__(self, display: "PlanProgress", name: str) -> None:
        self.display = display
        self.name = name

    def attach(self, job: str, snapshot: Snapshot) -> Callable[[], None]:
        return self.display.attach(self.name, job, snapshot)

    def fields(self) -> Dict[str, Any]:
        return {}


class PlanProgress:
    """Combined display: each job's engine reports to ``observer_for(job_name)``."""

    def __init__(self, jobs: List[Tuple[str, str]], *, mode: str = "auto", stream: Any = None,
                 interval: Optional[float] = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.interval = interval if interval is not None else {"bar": 0.25, "json": 5.0}.get(self.mode, 1.0)
        self.clock = clock
        self.rows: Dict[str, _Row] = {name: _Row(name, label) for name, label in jobs}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._bar: Any = None
        self._total_task: Any = None
        self._t0 = clock()
        self._total_history: List[Tuple[float, int]] = []
        self.timeline: List[Dict[str, Any]] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._t0 = self.clock()
        # The whole plan's rate from its start: the first line's too (not 0 for want of an earlier one).
        with self._lock:
            self._total_history[:] = [(self._t0, sum(r.done for r in self.rows.values()))]
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA {task.fields[eta]}"), TimeElapsedColumn(),
                TextColumn("{task.fields[extra]}"), console=Console(file=self.stream), refresh_per_second=4,
            )
            self._bar.start()
            for row in self.rows.values():
                row.task = self._bar.add_task(row.label, total=None, rate="", eta="?", extra=row.status,
                                              start=False)
            self._total_task = self._bar.add_task("[bold]total", total=None, rate="", eta="?", extra="")
        # The thread also runs with no display: it records the timelines the report keeps.
        self._thread = threading.Thread(target=self._loop, name="plan-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._safe_tick(final=True)
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # ------------------------------------------------------------------ job side

    def attach(self, name: str, kind: str, snapshot: Snapshot) -> Callable[[], None]:
        """Show job ``name``'s phase ``kind`` from now on; returns the function that ends it."""
        row = self.rows[name]
        phase = _Phase(kind, snapshot, self.clock())
        try:  # a first sample at the start, so even a short phase has a rate to draw
            self._tick_phase(row, phase, phase.t0)
        except Exception:  # display only
            pass
        with self._lock:
            row.phase = phase
            row.status = kind
        if self._bar is not None and row.task is not None:
            try:
                self._bar.start_task(row.task)
            except Exception:  # display only
                pass

        def detach() -> None:
            try:  # one last sample, so the timeline ends where the phase ended
                self._tick_phase(row, phase, self.clock())
            except Exception:  # a display problem must never fail a job
                pass
            with self._lock:
                row.phases.append((phase.kind, list(phase.timeline)))
                if row.phase is phase:
                    row.phase = None

        return detach

    def observer_for(self, name: str) -> "JobObserver":
        """An engine Observer bound to one plan job (stopping goes through the job's ``cancel``)."""
        return JobObserver(self, name)

    def set_status(self, name: str, status: str) -> None:
        with self._lock:
            self.rows[name].status = status
        if self._bar is not None:
            try:
                row = self.rows[name]
                self._bar.update(row.task, extra=status)
            except Exception:
                pass

    def phase_timeline(self, name: str, kind: str) -> List[Dict[str, Any]]:
        """The recorded timeline of the last ``kind`` phase of job ``name`` (empty if none)."""
        with self._lock:
            for k, tl in reversed(self.rows[name].phases):
                if k == kind:
                    return list(tl)
        return []

    # ------------------------------------------------------------------ display

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._safe_tick()

    def _safe_tick(self, final: bool = False) -> None:
        try:
            self._tick(final)
        except Exception:  # a display problem must never stop a migration
            pass

    def _tick_phase(self, row: _Row, phase: _Phase, now: float) -> float:
        s = phase.snapshot()
        done = int(s.get("done") or 0)
        rate = _window_rate(phase.history, now, done)
        phase.last = s
        phase.timeline.append({"t": round(now - phase.t0, 2), "done": done, "retries": int(s.get("retries") or 0),
                               "throttles": int(s.get("throttles") or 0)})
        if len(phase.timeline) > MAX_TIMELINE:
            phase.timeline[:] = phase.timeline[::2]
        row.done, row.total = done, (int(s["total"]) if s.get("total") else None)
        row.retries, row.throttles = int(s.get("retries") or 0), int(s.get("throttles") or 0)
        row.dead = int(s.get("dead_lettered") or 0)
        return rate

    def _tick(self, final: bool = False) -> None:
        now = self.clock()
        events: List[Dict[str, Any]] = []
        with self._lock:
            rows = list(self.rows.values())
        for row in rows:
            phase = row.phase
            rate = self._tick_phase(row, phase, now) if phase is not None else 0.0
            eta = (max(0, row.total - row.done) / rate) if (row.total and rate > 0) else None
            if self._bar is not None and row.task is not None:
                extra = [row.status]
                if phase is not None and phase.last.get("status"):
                    extra.append(str(phase.last["status"]))
                if row.retries:
                    extra.append(f"retries {row.retries}")
                if row.throttles:
                    extra.append(f"throttles {row.throttles}")
                if row.dead:
                    extra.append(f"[red]dead {row.dead}[/red]")
                self._bar.update(row.task, completed=row.done,
                                 total=max(row.total, row.done) if row.total else None,
                                 rate=f"{rate:,.0f}/s" if phase is not None else "",
                                 eta=_fmt_eta(eta), extra=" ".join(extra))
            if phase is not None:
                ev = {"event": "progress", "job": row.name, "phase": phase.kind, "done": row.done,
                      "total": row.total, "items_per_s": round(rate, 1),
                      "eta_s": round(eta, 1) if eta is not None else None, "retries": row.retries,
                      "throttles": row.throttles, "dead_lettered": row.dead}
                if phase.last.get("status"):
                    ev["status"] = phase.last["status"]
                events.append(ev)
        done = sum(r.done for r in rows)
        # The total bar counts finished jobs' items too; a finished job's unknown total is its done.
        # A job still to start (or running without a total) makes the plan's total unknown: a
        # total of the others' would read as nearly done, with an ETA that ends too soon.
        waiting = sum(1 for r in rows if r.phase is None and r.status in ("queued", "starting"))
        unknown = waiting or any(r.phase is not None and not r.total for r in rows)
        total = 0 if unknown else sum((r.total if r.total else r.done) for r in rows)
        rate = _window_rate(self._total_history, now, done)
        eta = (max(0, total - done) / rate) if (total and rate > 0) else None
        self.timeline.append({"t": round(now - self._t0, 2), "done": done,
                              "retries": sum(r.retries for r in rows), "throttles": sum(r.throttles for r in rows)})
        if len(self.timeline) > MAX_TIMELINE:
            self.timeline = self.timeline[::2]
        if self._bar is not None:
            running = sum(1 for r in rows if r.phase is not None)
            self._bar.update(self._total_task, completed=done, total=max(total, done) or None,
                             rate=f"{rate:,.0f}/s", eta=_fmt_eta(eta),
                             extra=f"{running} running" + (f", {waiting} waiting" if waiting else ""))
        elif self.mode == "json":
            events.append({"event": "progress_final" if final else "progress", "job": "total", "done": done,
                           "total": total or None, "items_per_s": round(rate, 1),
                           "eta_s": round(eta, 1) if eta is not None else None, "waiting": waiting,
                           "elapsed_s": round(now - self._t0, 1)})
            try:
                for ev in events:
                    self.stream.write(orjson.dumps(ev).decode() + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
