"""The one driver every engine runs a job through: checkpoint, dead letters, counters, progress,
report, errors.

    Engine.run(job, cancel=, observer=)
        └─ Driver(job)  opens the checkpoint, prepares the sink, owns the dead-letter file
             ├─ engine schedules units on workers (threads / processes / Spark tasks)
             │     worker ──commit(positions, done, counters, sink state)──▶ Driver.commit ─▶ checkpoint
             │     worker ──live(counters, stats, limits)──────────────────▶ Driver.live   ─▶ progress
             └─ Driver.finish(error)  final checkpoint, sink.finalize, report, exit code

Engines differ only in how they schedule units; whatever they are, a job resumes, reports,
counts and stops the same way.

Invariants:
1. The checkpoint saves exactly what workers committed: positions of acknowledged writes, the
   counters of those writes and the sink's committed state, from one consistent cut per worker
   (the pipeline's invariant 1). Dead letters it counts are fsynced before it is saved.
2. A stop (``cancel``, Ctrl-C, SIGTERM) is graceful first — in-flight batches finish and are
   checkpointed — and immediate on a second signal or after ``--drain-timeout``.
3. The report is built once, here, from the same counters the checkpoint holds, and is written
   (``--report``) whether the job succeeded or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
)

from ..config import RunOptions
from ..core.records import COUNTER_NAMES
from ..errors import DdbMigrateError, FatalError, InterruptedError_, RetriableError, UsageError
from ..logs import redact
from ..reporting import metrics
from ..reporting.progress import Progress
from ..reporting.report import Report, deliver, finish, merge_stats
from ..state.checkpoint import (
    CheckpointState,
    CheckpointStore,
    default_path,
    fingerprint,
    open_checkpoint,
)
from ..state.deadletter import DeadLetters
from ..state.status import RUN_BUSY, RunLock, lock_path_for
from .job import Job
from .pipeline import MAX_ERRORS

log = logging.getLogger("ddbmigrate")

Snapshot = Callable[[], Dict[str, Any]]


class Observer(Protocol):
    """Watches jobs: ``attach`` is called when a job starts; the function it returns, when it ends.

    An observer may also have ``fields() -> dict``: what it knows, added to the job's progress
    (a replication's journal backlog while its backfill runs). It is optional, so observers
    written before it existed keep working."""

    def attach(self, job: str, snapshot: Snapshot) -> Callable[[], None]: ...


class Engine(Protocol):
    """Runs a :class:`Job`: threads, processes and Spark differ only in how they schedule units."""

    name: str

    def run(self, job: Job, *, cancel: Optional[threading.Event] = None,
            observer: Optional[Observer] = None) -> Report: ...


class WorkerView:
    """What the driver knows of one worker: its last commit and its live counters."""

    def __init__(self) -> None:
        self.committed: Dict[str, int] = {}
        self.live: Optional[Dict[str, int]] = None
        self.settled: Optional[Dict[str, int]] = None
        self.stats: Dict[str, Any] = {}
        self.limits: Dict[str, Dict[str, Any]] = {}
        self.sink_state: Optional[Mapping[str, Any]] = None
        self.finished = False
        # A worker (process, Spark task) that stopped on an error: every count it made, its
        # unacknowledged writes included, for the report's "also written, not settled".
        self.stopped: Optional[Dict[str, int]] = None
        self.live_fn: Optional[Callable[[], Dict[str, int]]] = None
        self.settled_fn: Optional[Callable[[], Dict[str, int]]] = None
        self.extra_fn: Optional[Callable[[], Dict[str, Any]]] = None
        # Live retry stats and rate limits while a worker in this process runs (threads engine).
        self.stats_fn: Optional[Callable[[], Dict[str, Any]]] = None
        self.limits_fn: Optional[Callable[[], Dict[str, Dict[str, Any]]]] = None

    def live_counters(self) -> Dict[str, int]:
        if self.live_fn is not None:
            return self.live_fn()
        if self.stopped is not None:
            return self.stopped
        if self.finished or self.live is None:
            return self.committed
        return self.live

    def settled_counters(self) -> Dict[str, int]:
        """Counters of records settled: their writes acknowledged (or skipped, dead-lettered, dropped)."""
        if self.settled_fn is not None:
            return self.settled_fn()
        if self.finished or self.settled is None:
            return self.committed
        return self.settled


class WorkerFeed(Protocol):
    """What one worker's pipeline reports to: the :class:`Driver`, or its stand-in in a worker
    process that forwards to the parent's driver."""

    sink: Any  # the prepared SinkSpec
    done: List[str]
    positions: Dict[str, Any]
    samples: List[Tuple[Any, Any]]
    unit_seconds: Dict[str, float]
    failures: List[Any]
    cut_short: bool

    def worker(self, wid: int) -> WorkerView: ...

    def on_stop(self, interrupt: Callable[[], None], abort: Callable[[], None]) -> None: ...

    def commit(self, wid: int, positions: Mapping[str, Any], done: Sequence[str], counters: Mapping[str, int],
               sink_state: Optional[Mapping[str, Any]], save: bool = True,
               dead_mark: Optional[int] = None) -> None: ...

    def live(self, wid: int, counters: Mapping[str, int], stats: Mapping[str, Any],
             limits: Mapping[str, Mapping[str, Any]], settled: Optional[Mapping[str, int]] = None) -> None: ...


# Report entries of a job's phase before its run (see Driver._open), kept in its checkpoint.
CARRIED = ("clean_target",)


class Driver:
    """One run of one job; see the module docstring. Engines call ``commit``/``live``/``finish``."""

    def __init__(self, job: Job, engine: str, *, cancel: Optional[threading.Event] = None,
                 observer: Optional[Observer] = None) -> None:
        self.job = job
        self.engine = engine
        opts = self.opts = job.options
        self.cancel = cancel
        self.observer = observer
        self._observer_fields: Optional[Callable[[], Dict[str, Any]]] = getattr(observer, "fields", None)
        self.report = Report(job=job.kind, source=job.source_label, target=job.target_label,
                             dead_letter_path=opts.dead_letter, segments=None, writers=job.writers)
        self.report.extra.update(job.extra)
        self.fp = fingerprint(dict(job.identity))
        # A dead-letter file that cannot be written is refused before anything is read; a named one
        # before any checkpoint is opened too. (Not for a dry run, which may run in a read-only
        # folder and makes its file only if a record fails.)
        if opts.dead_letter and not opts.dry_run:
            DeadLetters(opts.dead_letter).check()
        self.store: Optional[CheckpointStore] = None
        state: Optional[CheckpointState] = None
        # One run of a job at a time, before its checkpoint or dead letters are touched (a second
        # run would write both beside the first, and a --restart would empty them under it).
        self.run_lock: Optional[RunLock] = None
        if job.checkpoint and not opts.dry_run:
            self.run_lock = RunLock(lock_path_for(job_checkpoint_path(job.kind, dict(job.identity), opts)),
                                    busy=RUN_BUSY)
            self.run_lock.acquire()
        try:
            self._open(job, opts, state)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Let the next run of this job start (the kernel does it too, when the process ends)."""
        if self.run_lock is not None:
            self.run_lock.release()
            self.run_lock = None

    def _open(self, job: Job, opts: RunOptions, state: Optional[CheckpointState]) -> None:
        if job.checkpoint and not opts.dry_run:
            self.store, state = open_job_checkpoint(job.kind, dict(job.identity), opts, self.report)
        self.units = list(job.source.units())
        self.positions: Dict[str, Any] = dict(state.positions) if state else {}
        self.done: List[str] = list(state.done) if state else []
        if state is not None and state.state == "done":
            self.done = list(self.units)
        self.base: Dict[str, int] = dict(state.counters) if state else {}
        self.saved_extra: Dict[str, Any] = dict(state.extra) if state else {}
        # What a job did before its run proper (copy --clean-target's clean) is in the report of
        # every run of it, a resumed one's too, which did not do it: the checkpoint carries it.
        for k, v in (self.saved_extra.get("carried") or {}).items():
            if self.report.extra.get(k) is None:
                self.report.extra[k] = v
        self.carried = {k: self.report.extra[k] for k in CARRIED if self.report.extra.get(k) is not None}
        self.sink = job.sink.prepare(self.saved_extra or None)
        # Dead letters are always kept: by default next to the checkpoint (a dry run's apart).
        dead_path = opts.dead_letter or default_dead_letter_path(
            self.report.checkpoint_path or default_path(job.kind, dict(job.identity)), dry_run=opts.dry_run)
        self.report.dead_letter_path = dead_path
        saved_dead = self.saved_extra.get("dead_letters") or {}
        # A file the user named may be shared with other jobs: its records say whose they are.
        # A resumed job keeps its tag (though --force may have changed its fingerprint); one
        # resumed from a checkpoint older than tags has untagged lines, and goes on without one.
        self.dead_tag: Optional[str] = None
        if opts.dead_letter:
            self.dead_tag = saved_dead.get("job") if state is not None and saved_dead else self.fp[:16]
        self.dead = DeadLetters(dead_path, job=self.dead_tag)
        if not opts.dry_run and not opts.dead_letter:  # (a named one was checked above)
            self.dead.check()
        if state is None and not opts.dead_letter and not opts.dry_run:
            # The default file belongs to this job: a fresh run starts it afresh, and the last
            # run's dead letters (a finished run's, or one started over) are kept beside it.
            kept = keep_previous_dead_letters(dead_path)
            if kept is not None:
                self.report.extra["previous_dead_letters"] = kept
                log.warning("dead letters of the previous run kept in %s; this run's go to %s", kept, dead_path)
        self.dead_bytes: Optional[int] = None
        # Where this job's lines begin in its file (a --dead-letter file the user named may hold
        # earlier jobs' lines before them).
        self.dead_start = 0
        saved_path = saved_dead.get("path")
        same_file = bool(saved_path) and os.path.abspath(str(saved_path)) == os.path.abspath(dead_path)
        if state is not None and state.state != "done" and saved_path and not same_file:
            # The earlier runs' dead letters, and lines of chunks this run reads again (to be cut
            # off), are in that file: a resume writing elsewhere would split them and repeat some.
            raise UsageError(f"this job's dead letters so far are in {saved_path}, not {dead_path}: resume with "
                             f"--dead-letter {saved_path}" + ("" if opts.dead_letter else " (or move it back)"),
                             file=dead_path)
        if state is not None and same_file:
            # Lines of chunks the checkpoint does not count: this run reads those chunks again.
            cut = self.dead.truncate(int(saved_dead.get("bytes") or 0))
            if cut:
                log.info("dead letters: dropped %d bytes written after the last checkpoint "
                         "(their items are read again)", cut)
            # The report's reasons are the whole job's, as its counts are: the earlier runs' too.
            start = saved_dead.get("start")
            self.dead_start = self.dead.recount(int(start) if start is not None else None,
                                                int(self.base.get("dead_lettered", 0)))
        elif state is None and not opts.dead_letter:
            self.dead.truncate(0)  # (a --dead-letter file the user named is appended to, as it always was)
        else:
            self.dead_start = self.dead.mark()
        # --max-errors counts the whole job, a resumed one included.
        self.dead.count = int(self.base.get("dead_lettered", 0))
        self.workers: Dict[int, WorkerView] = {}
        self._lock = threading.Lock()
        self._counter_high: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float] = {}  # see metric_samples
        self._save_lock = threading.Lock()
        self.samples: List[Tuple[Any, Any]] = []
        self.failures: List[Any] = []
        self.unit_seconds: Dict[str, float] = {}
        self.started = time.monotonic()
        self.progress: Optional[Progress] = None
        self._interrupt: List[Callable[[], None]] = []
        self._abort: List[Callable[[], None]] = []
        self.interrupted = False
        # A worker's pipeline was aborted without an error (--max-runtime cutting a replicate
        # chunk): its counts are what its positions cover, as a failed run's (see _finish).
        self.cut_short = False
        if self.store is not None:
            if state is None:
                # Saved before anything is read: it records where this run's dead letters start,
                # so even a run killed before its first periodic save resumes without repeating one.
                self.save()
                log.info("checkpoint: %s (new)", self.report.checkpoint_path)
            else:
                log.info("checkpoint: %s (resuming: %d units done, %d in progress, %s read so far)",
                         self.report.checkpoint_path, len(state.done), len(state.positions),
                         state.counters.get("read", 0))

    # ------------------------------------------------------------------ what engines schedule

    def todo(self) -> List[str]:
        done = set(self.done)
        return [u for u in self.units if u not in done]

    def worker(self, wid: int) -> WorkerView:
        with self._lock:
            w = self.workers.get(wid)
            if w is None:
                w = self.workers[wid] = WorkerView()
            return w

    def on_stop(self, interrupt: Callable[[], None], abort: Callable[[], None]) -> None:
        """What a stop request does in this engine: graceful first, then immediate. A stop that
        came before the engine could say how to stop is applied at once."""
        self._interrupt.append(interrupt)
        self._abort.append(abort)
        if self.interrupted:
            interrupt()

    def interrupt(self) -> None:
        self.interrupted = True
        for f in list(self._interrupt):
            f()

    def abort(self) -> None:
        for f in list(self._abort):
            f()

    # ------------------------------------------------------------------ what workers report

    def commit(self, wid: int, positions: Mapping[str, Any], done: Sequence[str], counters: Mapping[str, int],
               sink_state: Optional[Mapping[str, Any]], save: bool = True, dead_mark: Optional[int] = None) -> None:
        """A worker's consistent cut: its units' positions, finished units, committed counters.

        ``dead_mark``: the dead-letter file size this cut covers, when the worker writes the
        driver's file itself (threads); otherwise every line written is covered.
        """
        w = self.worker(wid)
        with self._lock:
            if dead_mark is not None:
                self.dead_bytes = dead_mark
            for u in done:
                self.positions.pop(u, None)
                if u not in self.done:
                    self.done.append(u)
            self.positions.update(positions)
            w.committed = dict(counters)
            if sink_state is not None:
                w.sink_state = sink_state
        if save:
            self.save()

    def live(self, wid: int, counters: Mapping[str, int], stats: Mapping[str, Any],
             limits: Mapping[str, Mapping[str, Any]], settled: Optional[Mapping[str, int]] = None) -> None:
        w = self.worker(wid)
        with self._lock:
            w.live = dict(counters)
            if settled is not None:
                w.settled = dict(settled)
            w.stats = dict(stats)
            w.limits = {k: dict(v) for k, v in limits.items()}

    # ------------------------------------------------------------------ views

    def counters(self, live: bool, settled: bool = False) -> Dict[str, int]:
        """The job's counters: this run's workers' on top of a resumed checkpoint's.

        ``live``: as records are read and written; ``settled``: records whose every write is
        acknowledged (what progress shows); neither: what the last checkpoint of each worker holds.
        """
        total = dict(self.base)
        with self._lock:
            views = list(self.workers.values())
        for w in views:
            c = w.settled_counters() if settled else w.live_counters() if live else w.committed
            for k, v in c.items():
                total[k] = total.get(k, 0) + v
        return total

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            views = list(self.workers.values())
        return merge_stats(*(dict(s) for s in self.job.preflight),
                           *(s for s in (w.stats_fn() if w.stats_fn is not None else w.stats for w in views) if s))

    def limits(self) -> Dict[str, Dict[str, Any]]:
        """Every configured limit summed over workers: their shares add up to the job's limit."""
        out: Dict[str, Dict[str, Any]] = {}
        with self._lock:
            views = list(self.workers.values())
        for w in views:
            for name, d in (w.limits_fn() if w.limits_fn is not None else w.limits).items():
                o = out.setdefault(name, {"limit": 0.0, "current": 0.0, "throttle_events": 0})
                o["limit"] = round(o["limit"] + float(d.get("limit") or 0), 1)
                o["current"] = round(o["current"] + float(d.get("current") or 0), 1)
                o["throttle_events"] += int(d.get("throttle_events") or 0)
                if d.get("auto"):
                    o["auto"] = True  # found from DynamoDB's throttles, not given
                if d.get("declared"):
                    # Where it started: each worker's share of what the table declares it admits.
                    o["declared"] = float(o.get("declared") or 0) + float(d["declared"])
                if d.get("declared_last") is not None and float(d.get("declared_read_at") or 0) >= \
                        float(o.get("declared_read_at") or 0):
                    # What the table declared when last read, if that changed: the table's whole
                    # figure, the newest reading of any worker (not a sum: only some may have looked).
                    o["declared_last"], o["declared_read_at"] = float(d["declared_last"]), float(d["declared_read_at"])
                if d.get("declared_look_failures"):
                    failures = int(o.get("declared_look_failures") or 0)
                    o["declared_look_failures"] = failures + int(d["declared_look_failures"])
        for o in out.values():
            o.pop("declared_read_at", None)
            last = o.get("declared_last")
            if last is not None and abs(last - float(o.get("declared") or 0)) <= 0.005 * max(last, 1.0):
                del o["declared_last"]  # read again, unchanged (or changed and back)
            for k in ("declared", "declared_last"):
                if k in o:
                    o[k] = round(o[k], 1)
        return out

    def snapshot(self) -> Dict[str, Any]:
        """What progress shows: records settled (not merely read), reads beside them."""
        c = self.counters(live=False, settled=True)
        live = self.counters(live=True)
        stats = self.stats()
        limits = self.limits()
        out: Dict[str, Any] = {
            "done": c.get(self.job.progress_counter, 0), "total": self.job.total_estimate,
            "read": live.get("read", 0),
            # Writes the target acknowledged, settled or not: progress's rate and /healthz's stall
            # detector (a chunk settles at once, and a throttled one took minutes showing 0/s).
            "acked": sum(live.get(k, 0) for k in ("written", "deleted", "skipped_existing")),
            "retries": sum(stats.get("retries", {}).values()),
            "throttles": stats.get("retries", {}).get("throttle", 0) + stats.get("retries", {}).get("unprocessed", 0),
            "dead_lettered": c.get("dead_lettered", 0),
            "rate_limit": next((d["current"] for d in limits.values() if d.get("current")), None),
        }
        if limits:
            out["rate_limits"] = {k: d["current"] for k, d in limits.items()}
        with self._lock:
            views = list(self.workers.values())
        for w in views:
            if w.extra_fn is not None:
                out.update(w.extra_fn())
        if self._observer_fields is not None:
            out.update(self._observer_fields())
        if self.interrupted:
            # The drain is visible: "done" keeps moving while in-flight writes are acknowledged.
            out["status"] = "stopping: finishing in-flight writes (signal again to stop at once)"
        return out

    def metric_samples(self) -> List[metrics.Sample]:
        """This job's figures for ``--metrics-port`` (read at scrape time)."""
        counters = {k: 0 for k in COUNTER_NAMES}
        counters.update(self.counters(live=True))
        samples = metrics.job_samples(self.opts.metrics_job or self.job.kind, counters, self.stats(), self.limits(),
                                      dict(self.dead.by_reason))
        # A counter never goes down (Prometheus reads a drop as a restart and counts it all again):
        # a unit done again (a Spark task retried from its start) counts anew from 0, and the
        # figure holds until the retry passes it.
        out = []
        for smp in samples:
            if smp.kind == "counter":
                key = (smp.name, tuple(sorted(smp.labels.items())))
                high = max(smp.value, self._counter_high.get(key, 0.0))
                self._counter_high[key] = high
                smp = dataclasses.replace(smp, value=high)
            out.append(smp)
        return out

    def sink_state(self) -> Dict[str, Any]:
        with self._lock:
            states = [w.sink_state for w in self.workers.values() if w.sink_state is not None]
        merged: Dict[str, Any] = self.sink.merge(states)
        return merged

    # ------------------------------------------------------------------ checkpoint

    def save(self, final: bool = False) -> None:
        if self.store is None:
            return
        with self._save_lock:
            # One cut, taken at once: positions, counters and the dead-letter size they cover.
            # Workers write a chunk's dead letters before they commit it, so every line this cut
            # counts is written by now; the sync below, *after* the cut, makes them durable before
            # the checkpoint that counts them exists (a sync before the cut would miss the lines of
            # a commit landing between the two, and a kill -9 would lose them from the file).
            with self._lock:
                positions, done = dict(self.positions), list(self.done)
                counters = dict(self.base)
                for w in self.workers.values():
                    for k, v in w.committed.items():
                        counters[k] = counters.get(k, 0) + v
                dead_bytes = self.dead_bytes
            extra = self.sink_state()
            if self.carried:
                extra["carried"] = self.carried
            if self.dead.path is not None:
                extra["dead_letters"] = {"path": self.dead.path, "start": self.dead_start,
                                         "bytes": dead_bytes if dead_bytes is not None else self.dead.mark(),
                                         **({"job": self.dead_tag} if self.dead_tag else {})}
            self.dead.sync()
            st = CheckpointState(fingerprint=self.fp, job=dict(self.job.identity), positions=positions, done=done,
                                 counters=counters, state="done" if final else "running", extra=extra)
            self.store.save(st)
            log.debug("checkpoint saved: %d units done, %d in progress", len(done), len(positions))

    # ------------------------------------------------------------------ running

    @contextlib.contextmanager
    def running(self, progress_label: str = "items") -> Iterator[None]:
        """Progress display, observers, signals and ``cancel`` around the engine's work."""
        progress = Progress(self.job.kind, self.snapshot, mode=self.opts.progress, label=progress_label)
        self.progress = progress
        server: Optional[metrics.MetricsServer] = None
        remove: Callable[[], None] = lambda: None
        if self.opts.metrics_port is not None:
            server = metrics.acquire(self.opts.metrics_host, self.opts.metrics_port)
            stall = metrics.Stall()

            def health() -> Optional[str]:
                snap = self.snapshot()
                return stall.observe(snap.get("done", 0), snap.get("retries", 0), acked=snap.get("acked"))

            remove = server.add(self.metric_samples, health)
        restore = install_handler(self._on_signal)
        detach: Callable[[], None] = lambda: None
        if self.observer is not None:
            detach = self.observer.attach(self.job.kind, self.snapshot)
        watcher_done = threading.Event()
        watcher: Optional[threading.Thread] = None
        if self.cancel is not None:
            cancel = self.cancel

            def watch() -> None:
                while not watcher_done.wait(0.1):
                    if cancel.is_set():
                        self.interrupt()
                        return

            watcher = threading.Thread(target=watch, name="cancel-watch", daemon=True)
            watcher.start()
        progress.start()
        try:
            yield
        finally:
            remove()
            if server is not None:
                metrics.release(server)
            watcher_done.set()
            if watcher is not None:
                watcher.join()
            restore()
            detach()
            progress.stop()

    def _on_signal(self, signum: int, frame: Any) -> None:
        """SIGTERM and Ctrl-C (SIGINT): stop reading, drain, checkpoint, exit 130.

        A second signal aborts the drain (queued batches are dropped, not acknowledged, so the
        checkpoint stays behind them). Handling SIGINT here rather than as KeyboardInterrupt
        means the interruption never lands in the middle of a checkpoint save.
        """
        if self.interrupted:
            _say("second signal: not waiting for in-flight batches; saving the checkpoint")
            self.abort()
        else:
            _say("stopping: finishing in-flight batches, then saving the checkpoint "
                 "(signal again to stop sooner)")
        self.interrupt()

    def finish(self, error: Optional[BaseException], *, segments: Optional[int] = None,
               extra: Optional[Mapping[str, Any]] = None) -> Report:
        """Final checkpoint, sink finalisation, the report; raises the job's error (report attached)."""
        try:
            return self._finish(error, segments=segments, extra=extra)
        finally:
            self.release()

    def _finish(self, error: Optional[BaseException], *, segments: Optional[int],
                extra: Optional[Mapping[str, Any]]) -> Report:
        opts = self.opts
        report = self.report
        if error is None and self.failures:
            error = self.job.source.failed(self.failures)
            report.extra["failed_files"] = [_plain(f) for f in self.failures]
        if isinstance(error, KeyboardInterrupt):
            error = InterruptedError_("interrupted")
        if error is None:
            report.status = "dry-run" if opts.dry_run else "done"
        elif isinstance(error, InterruptedError_):
            report.status = "interrupted"
            error = interrupted_error(report.checkpoint_path)
        else:
            report.status = "failed"
            if isinstance(error, RetriableError) and report.checkpoint_path and not error.hint:
                error.hint = f"checkpoint kept at {report.checkpoint_path}; rerun the same command with --resume"
        self.dead.close()
        report.timeline = self.progress.timeline if self.progress is not None else []
        whole = error is None and not self.cut_short
        finish(report, self.counters(live=whole), self.stats(), time.monotonic() - self.started,
               before=self.base)
        if not whole:
            # A stopped job counts what its checkpoint covers (chunks whose every write was
            # acknowledged), so its counts add up and a resume starts there. Writes DynamoDB
            # acknowledged in chunks that never finished are in the target too: said, not hidden.
            live = self.counters(live=True)
            kinds = ["written", "deleted"]
            if getattr(error, "code", None) == MAX_ERRORS:
                kinds.append("dead_lettered")  # kept in the file for the user to read (pipeline.py)
            unsettled = {k: live.get(k, 0) - report.count(k) for k in kinds}
            unsettled = {k: v for k, v in unsettled.items() if v > 0}
            if unsettled:
                report.extra["unsettled"] = unsettled
        report.dead_letter_reasons = dict(self.dead.by_reason)
        if self.dead.examples:
            report.extra["dead_letter_messages"] = dict(self.dead.examples)
        report.segments = segments if segments is not None else len(self.units)
        if 0 < len(self.unit_seconds) <= 4096:  # per-segment durations for `ddbmigrate report`; bounded
            report.extra["unit_seconds"] = dict(self.unit_seconds)
        report.rate_limits.update(self.limits())
        if self.samples:
            keep = self.samples[: opts.sample] if opts.sample else self.samples
            report.samples = [{"before": b, "after": a} for b, a in keep]
        report.extra.update(extra or {})
        if error is None:
            self.save(final=True)
            try:
                self.sink.finalize(self.sink_state(), report)
            except DdbMigrateError as e:
                error = e
                report.status = "failed"
            except Exception as e:  # an S3 or disk error writing manifests: still one line, a report
                error = FatalError(f"finishing the {self.job.kind} failed: {type(e).__name__}: {e}")
                report.status = "failed"
        log.info("%s %s: %s", self.job.kind, report.status,
                 ", ".join(f"{k} {v}" for k, v in sorted(report.counters.items()) if v) or "nothing to do")
        if error is not None:
            report.error = error.one_line() if isinstance(error, DdbMigrateError) else redact(str(error))
        report.extra = {k: v for k, v in report.extra.items() if v is not None}
        return deliver(report, opts.report, error)


def job_checkpoint_path(kind: str, identity: Dict[str, Any], opts: RunOptions) -> str:
    """Where a job's checkpoint is (--checkpoint, or the default for what it moves); its lock,
    dead letters and a resume's checks are all found from it."""
    return opts.checkpoint or default_path(kind, identity)


def open_job_checkpoint(job: str, identity: Dict[str, Any], opts: RunOptions,
                        report: Report) -> Tuple[Optional[CheckpointStore], Optional[CheckpointState]]:
    """The job's checkpoint store and saved state (None on a fresh start); nothing for a dry run.

    Honours --checkpoint/--resume/--restart/--force and records the path in the report.
    """
    if opts.dry_run:
        return None, None
    path = job_checkpoint_path(job, identity, opts)
    store, state = open_checkpoint(path, identity, resume=opts.resume, restart=opts.restart, force=opts.force)
    report.checkpoint_path = path
    return store, state


def default_dead_letter_path(checkpoint_path: str, dry_run: bool = False) -> str:
    """``.ddbmigrate/<job>-<names>-<hash>.deadletter.jsonl``: beside the job's checkpoint (a dry
    run's ``...dry-run.deadletter.jsonl``, so it never mixes with the real run's)."""
    base = checkpoint_path[: -len(".checkpoint.json")] if checkpoint_path.endswith(".checkpoint.json") \
        else checkpoint_path
    return base + (".dry-run" if dry_run else "") + ".deadletter.jsonl"


def keep_previous_dead_letters(path: str) -> Optional[str]:
    """Move a non-empty dead-letter file aside (``X.deadletter.<UTC time>.jsonl``) and return
    where, or None when there is nothing to keep. A record is the only trace of its item."""
    try:
        if os.path.getsize(path) == 0:
            return None
    except OSError:
        return None
    stem = path[: -len(".jsonl")] if path.endswith(".jsonl") else path
    try:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(os.path.getmtime(path)))
        for n in range(1000):
            kept = f"{stem}.{stamp}{'' if n == 0 else f'-{n}'}.jsonl"
            if not os.path.exists(kept):
                os.replace(path, kept)
                return kept
    except OSError as e:
        raise FatalError(f"cannot keep the previous dead letters of {path}: {e.strerror or e}; move the file "
                         "away, then rerun") from None
    raise FatalError(f"cannot keep the previous dead letters of {path}: too many kept beside it; move them away")


def interrupted_error(checkpoint_path: Optional[str]) -> InterruptedError_:
    """The one-line error of an interrupted job, telling how to go on."""
    resume_hint = "rerun the same command with --resume"
    if not checkpoint_path:
        return InterruptedError_("interrupted (no checkpoint for this run)")
    e = InterruptedError_(f"interrupted; checkpoint saved to {checkpoint_path}; {resume_hint}")
    e.hint = resume_hint
    return e


def first_error(errors: Sequence[Optional[BaseException]]) -> Optional[BaseException]:
    """The error a job ends with: a real failure before an interruption."""
    real = [e for e in errors if e is not None and not isinstance(e, (InterruptedError_, KeyboardInterrupt))]
    if real:
        return real[0]
    return next((e for e in errors if e is not None), None)


def max_errors_error(limit: int) -> FatalError:
    return FatalError(f"more than --max-errors {limit} items dead-lettered; stopping "
                      "(checkpoint kept; fix the cause and --resume)")


def install_handler(handler: Callable[[int, Any], None],
                    signums: Tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Callable[[], None]:
    """Handle ``signums`` with ``handler``; returns the function that puts the old handlers back.

    Only the main thread can install handlers: in any other thread (a library caller's worker)
    this does nothing, and the caller's own handling stays in place.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    try:
        old = [(s, signal.signal(s, handler)) for s in signums]
    except ValueError:
        return lambda: None

    def restore() -> None:
        for s, h in old:
            signal.signal(s, h)

    return restore


def _plain(obj: Any) -> Any:
    try:
        return dict(vars(obj))
    except TypeError:
        return str(obj)


def _say(msg: str) -> None:
    # Called from a signal handler: a plain write, no locks (logging takes one).
    try:
        os.write(2, f"ddbmigrate: {msg}\n".encode())
    except OSError:
        pass


def pool_size(readers: int, writers: int) -> int:
    return readers + writers + 4
