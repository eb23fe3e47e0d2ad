"""Run one pipeline as a job: checkpoint, dead letters, progress, signals, report.

Every job (copy, export, import, clean, ...) builds its Source and Sink and hands them here, so
resume, Ctrl-C handling and the report behave the same everywhere.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..state.checkpoint import CheckpointState, CheckpointStore, default_path, fingerprint, open_checkpoint
from ..aws.client import RetryStats
from ..config import RunOptions
from ..state.crashpoints import crash_point
from ..state.deadletter import DeadLetters
from ..errors import DdbMigrateError, InterruptedError_, RetriableError
from .pipeline import Pipeline, Processing, Sink, Source
from ..reporting.progress import Progress
from ..aws.capacity import RateLimiter
from ..reporting.report import Report, deliver, finish, merge_stats

log = logging.getLogger("ddbmigrate")


@dataclass
class JobSpec:
    job: str
    source: Source
    sink: Sink
    processing: Processing
    options: RunOptions
    identity: Dict[str, Any]
    source_label: str = ""
    target_label: str = ""
    total_estimate: Optional[int] = None
    readers: int = 4
    writers: int = 8
    stats: List[RetryStats] = field(default_factory=list)
    limiters: List[RateLimiter] = field(default_factory=list)
    progress_done: Callable[[Dict[str, int]], int] = lambda c: c.get("read", 0)
    extra: Dict[str, Any] = field(default_factory=dict)
    checkpoint: bool = True
    on_finish: Optional[Callable[[Report], None]] = None
    # An external display (e.g. a plan's combined progress) that polls this job's snapshot;
    # when None, the one set by ``progress_hook_context`` in the calling thread is used.
    progress_hook: Optional["ProgressHook"] = None
    # Called with the Pipeline before it runs (a stream source waits on its acknowledgements).
    on_pipeline: Optional[Callable[[Pipeline], None]] = None
    # Extra fields for each progress snapshot (e.g. replication lag and status).
    progress_extra: Optional[Callable[[], Dict[str, Any]]] = None
    # Sink state that must be saved atomically with the positions (an export's committed files),
    # and handed back on --resume.
    checkpoint_extra: Optional[Callable[[], Dict[str, Any]]] = None
    restore_extra: Optional[Callable[[Dict[str, Any]], None]] = None
    # Called after the pipeline ran without error; raising a DdbMigrateError fails the job
    # (e.g. an import whose corrupt files were skipped) and keeps the checkpoint unfinished.
    after_run: Optional[Callable[[], None]] = None


# hook(job, snapshot, interrupt) -> detach. Lets a caller that runs several jobs show one
# combined display and stop them all (Ctrl-C) without changing each job function's signature.
ProgressHook = Callable[[str, Callable[[], Dict[str, Any]], Callable[[], None]], Callable[[], None]]
_PROGRESS_HOOK: "contextvars.ContextVar[Optional[ProgressHook]]" = contextvars.ContextVar(
    "ddbmigrate_progress_hook", default=None)


@contextlib.contextmanager
def progress_hook_context(hook: Optional[ProgressHook]) -> Iterator[None]:
    """Every run_job started in this context (this thread) reports to ``hook``."""
    token = _PROGRESS_HOOK.set(hook)
    try:
        yield
    finally:
        _PROGRESS_HOOK.reset(token)


def run_job(spec: JobSpec) -> Report:
    """Run the job to its end (or its interruption) and return its report.

    Raises a DdbMigrateError (with ``.report`` attached) when the job stops on an error or
    is interrupted; returns normally when every record was handled (dead letters included).
    """
    opts = spec.options
    report = Report(job=spec.job, source=spec.source_label, target=spec.target_label,
                    dead_letter_path=opts.dead_letter, segments=None, writers=spec.writers)
    report.extra.update(spec.extra)
    fp = fingerprint(spec.identity)
    store, state = open_job_checkpoint(spec.job, spec.identity, opts, report) if spec.checkpoint else (None, None)
    if store is not None:
        if spec.checkpoint_extra is not None:
            store = _ExtraStore(store.path, spec.checkpoint_extra)
        if spec.restore_extra is not None and state is not None:
            spec.restore_extra(dict(state.extra))
    positions = dict(state.positions) if state else {}
    done_units = list(state.done) if state else []
    counters = dict(state.counters) if state else {}
    if state is not None and state.state == "done":
        done_units = spec.source.units()

    dead = DeadLetters(opts.dead_letter)

    if store is not None:
        if state is None:
            log.info("checkpoint: %s (new)", report.checkpoint_path)
        else:
            log.info("checkpoint: %s (resuming: %d units done, %d in progress, %s read so far)",
                     report.checkpoint_path, len(state.done), len(state.positions), state.counters.get("read", 0))

    def save(p: Pipeline) -> None:
        if store is None:
            return
        # One consistent snapshot: counters that match the positions exactly, so a resumed
        # run's report adds up (no chunk counted twice, none missed).
        pos, done, committed = p.checkpoint_snapshot()
        st = CheckpointState(fingerprint=fp, job=spec.identity, positions=pos, done=done, counters=committed)
        store.save(st)
        log.debug("checkpoint saved: %d units done, %d in progress", len(done), len(pos))

    pipeline = Pipeline(
        spec.source, spec.sink, spec.processing, readers=spec.readers, writers=spec.writers,
        queue_batches=opts.queue_batches, dead_letters=dead, positions=positions, done_units=done_units,
        counters=counters, on_checkpoint=save if store is not None else None, crash_hook=crash_point,
        checkpoint_every=getattr(opts, "checkpoint_every", 2.0), drain_timeout=getattr(opts, "drain_timeout", 30.0),
    )

    def snapshot() -> Dict[str, Any]:
        c = pipeline.counters.snapshot()
        stats = merge_stats(*(s.snapshot() for s in spec.stats))
        retries = sum(stats["retries"].values())
        rate = next((l.current_rate() for l in spec.limiters if l.current_rate()), None)
        return {"done": spec.progress_done(c), "total": spec.total_estimate, "retries": retries,
                "throttles": stats["retries"].get("throttle", 0) + stats["retries"].get("unprocessed", 0),
                "dead_lettered": c.get("dead_lettered", 0), "rate_limit": rate, **_limits(spec.limiters), **(spec.progress_extra() if spec.progress_extra else {})}

    if spec.on_pipeline is not None:
        spec.on_pipeline(pipeline)
    progress = Progress(spec.job, snapshot, mode=opts.progress)
    restore = _install_sigterm(pipeline)
    hook = spec.progress_hook or _PROGRESS_HOOK.get()
    if hook is not None:
        restore = _then(restore, hook(spec.job, snapshot, pipeline.interrupt))
    error: Optional[BaseException] = None
    progress.start()
    try:
        pipeline.run()
        if spec.after_run is not None:
            spec.after_run()
        report.status = "dry-run" if opts.dry_run else "done"
    except InterruptedError_:
        report.status = "interrupted"
        error = interrupted_error(report.checkpoint_path)
    except DdbMigrateError as e:
        report.status = "failed"
        error = e
        if isinstance(e, RetriableError) and report.checkpoint_path and not e.hint:
            e.hint = f"checkpoint kept at {report.checkpoint_path}; rerun the same command with --resume"
    except KeyboardInterrupt:
        report.status = "interrupted"
        error = interrupted_error(report.checkpoint_path)
    finally:
        restore()
        progress.stop()
        dead.close()
        spec.sink.close()
    report.timeline = progress.timeline
    stats = merge_stats(*(s.snapshot() for s in spec.stats))
    finish(report, pipeline.counters.snapshot(committed=error is not None), stats, pipeline.elapsed)
    report.dead_letter_reasons = dict(dead.by_reason)
    report.segments = len(spec.source.units())
    unit_seconds = pipeline.unit_seconds()
    if 0 < len(unit_seconds) <= 4096:  # per-segment durations for `ddbmigrate report`; bounded size
        report.extra["unit_seconds"] = unit_seconds
    _report_rate_limits(report, spec.limiters)
    if pipeline.samples:
        report.samples = [{"before": b, "after": a} for b, a in pipeline.samples]
    if error is None and store is not None:
        pos, done, committed = pipeline.checkpoint_snapshot()
        store.save(CheckpointState(fingerprint=fp, job=spec.identity, positions=pos, done=done,
                                   counters=committed, state="done"))
    log.info("%s %s: %s", spec.job, report.status,
             ", ".join(f"{k} {v}" for k, v in sorted(report.counters.items()) if v) or "nothing to do")
    if error is not None:
        report.error = error.one_line() if isinstance(error, DdbMigrateError) else str(error)
    if spec.on_finish is not None and error is None:
        spec.on_finish(report)
    return deliver(report, opts.report, error)


def open_job_checkpoint(job: str, identity: Dict[str, Any], opts: RunOptions,
                        report: Report) -> Tuple[Optional[CheckpointStore], Optional[CheckpointState]]:
    """The job's checkpoint store and saved state (None on a fresh start); nothing for a dry run.

    Honours --checkpoint/--resume/--restart/--force and records the path in the report.
    """
    if opts.dry_run:
        return None, None
    path = opts.checkpoint or default_path(job, identity)
    store, state = open_checkpoint(path, identity, resume=opts.resume, restart=opts.restart, force=opts.force)
    report.checkpoint_path = path
    return store, state


def interrupted_error(checkpoint_path: Optional[str]) -> InterruptedError_:
    """The one-line error of an interrupted job, telling how to go on."""
    resume_hint = "rerun the same command with --resume"
    if not checkpoint_path:
        return InterruptedError_("interrupted (no checkpoint for this run)")
    e = InterruptedError_(f"interrupted; checkpoint saved to {checkpoint_path}; {resume_hint}")
    e.hint = resume_hint
    return e


def _limits(limiters: List[RateLimiter]) -> Dict[str, Any]:
    """Progress fields: every limiter's current (adapted) rate, by name."""
    limits = {lim.name or str(i): round(lim.current_rate() or 0.0, 1) for i, lim in enumerate(limiters)
              if lim.current_rate()}
    return {"rate_limits": limits} if limits else {}


def _report_rate_limits(report: Report, limiters: List[RateLimiter]) -> None:
    """Each configured limit, its rate at the end (after adaptation) and its throttle events."""
    for i, lim in enumerate(limiters):
        d = lim.describe() if hasattr(lim, "describe") else None
        if d is not None:
            report.rate_limits[lim.name or str(i)] = d


def _install_sigterm(pipeline: Pipeline) -> Callable[[], None]:
    """SIGTERM and Ctrl-C (SIGINT): stop reading, drain, checkpoint, exit 130.

    A second signal aborts the drain (queued batches are dropped, not acknowledged, so the
    checkpoint stays behind them). Handling SIGINT here rather than as KeyboardInterrupt means
    the interruption never lands in the middle of a checkpoint save or a sink's bookkeeping.
    """
    def handler(signum: int, frame: Any) -> None:
        if pipeline.stop_reading.is_set():
            pipeline.abort.set()
            _say("second signal: not waiting for in-flight batches; saving the checkpoint")
        else:
            _say("stopping: finishing in-flight batches, then saving the checkpoint "
                 "(signal again to stop sooner)")
        pipeline.interrupt()

    return install_handler(handler)


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


class _ExtraStore(CheckpointStore):
    """A checkpoint store that adds the sink's state to every save (same atomic write)."""

    def __init__(self, path: str, extra: Callable[[], Dict[str, Any]]) -> None:
        super().__init__(path)
        self._extra = extra

    def save(self, st: CheckpointState) -> None:
        st.extra = {**st.extra, **self._extra()}
        super().save(st)


def _then(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        try:
            first()
        finally:
            second()

    return both


def _say(msg: str) -> None:
    # Called from a signal handler: a plain write, no locks (logging takes one).
    try:
        os.write(2, f"ddbmigrate: {msg}\n".encode())
    except OSError:
        pass


def pool_size(readers: int, writers: int) -> int:
    return readers + writers + 4


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
