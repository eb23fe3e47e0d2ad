"""Run one pipeline as a job: checkpoint, dead letters, progress, signals, report.

Every job (copy, export, import, clean, ...) builds its Source and Sink and hands them here, so
resume, Ctrl-C handling and the report behave the same everywhere.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from .checkpoint import CheckpointState, CheckpointStore, default_path, fingerprint, open_checkpoint
from .client import RetryStats
from .config import RunOptions
from .crashpoints import crash_point
from .deadletter import DeadLetters
from .errors import DdbMigrateError, InterruptedError_
from .pipeline import Pipeline, Processing, Sink, Source
from .progress import Progress
from .ratelimit import RateLimiter
from .report import Report, finish, merge_stats


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


def run_job(spec: JobSpec) -> Report:
    """Run the job to its end (or its interruption) and return its report.

    Raises a DdbMigrateError (with ``.report`` attached) when the job stops on an error or
    is interrupted; returns normally when every record was handled (dead letters included).
    """
    opts = spec.options
    report = Report(job=spec.job, source=spec.source_label, target=spec.target_label,
                    dead_letter_path=opts.dead_letter, segments=None, writers=spec.writers)
    report.extra.update(spec.extra)
    store: Optional[CheckpointStore] = None
    state: Optional[CheckpointState] = None
    fp = fingerprint(spec.identity)
    if spec.checkpoint and not opts.dry_run:
        path = opts.checkpoint or default_path(spec.job, spec.identity)
        store, state = open_checkpoint(path, spec.identity, resume=opts.resume, restart=opts.restart,
                                       force=opts.force)
        report.checkpoint_path = path
    positions = dict(state.positions) if state else {}
    done_units = list(state.done) if state else []
    counters = dict(state.counters) if state else {}
    if state is not None and state.state == "done":
        done_units = spec.source.units()

    dead = DeadLetters(opts.dead_letter)

    def save(p: Pipeline) -> None:
        if store is None:
            return
        pos, done = p.unit_positions()
        st = CheckpointState(fingerprint=fp, job=spec.identity, positions=pos, done=done,
                             counters=p.counters.snapshot(committed=True))
        store.save(st)

    pipeline = Pipeline(
        spec.source, spec.sink, spec.processing, readers=spec.readers, writers=spec.writers,
        queue_batches=opts.queue_batches, dead_letters=dead, positions=positions, done_units=done_units,
        counters=counters, on_checkpoint=save if store is not None else None, crash_hook=crash_point,
    )

    def snapshot() -> Dict[str, Any]:
        c = pipeline.counters.snapshot()
        stats = merge_stats(*(s.snapshot() for s in spec.stats))
        retries = sum(stats["retries"].values())
        rate = next((l.current_rate() for l in spec.limiters if l.current_rate()), None)
        return {"done": spec.progress_done(c), "total": spec.total_estimate, "retries": retries,
                "throttles": stats["retries"].get("throttle", 0), "dead_lettered": c.get("dead_lettered", 0),
                "rate_limit": rate}

    progress = Progress(spec.job, snapshot, mode=opts.progress)
    restore = _install_sigterm(pipeline)
    error: Optional[BaseException] = None
    progress.start()
    try:
        pipeline.run()
        report.status = "dry-run" if opts.dry_run else "done"
    except InterruptedError_ as e:
        report.status = "interrupted"
        error = e
        resume_hint = "rerun the same command with --resume"
        e.hint = resume_hint
        e.message = f"interrupted; checkpoint saved to {report.checkpoint_path}; {resume_hint}"
    except DdbMigrateError as e:
        report.status = "failed"
        error = e
    except KeyboardInterrupt:
        report.status = "interrupted"
        error = InterruptedError_(f"interrupted; checkpoint saved to {report.checkpoint_path}; "
                                  "rerun the same command with --resume")
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
    if pipeline.samples:
        report.samples = [{"before": b, "after": a} for b, a in pipeline.samples]
    if error is None and store is not None:
        pos, done = pipeline.unit_positions()
        store.save(CheckpointState(fingerprint=fp, job=spec.identity, positions=pos, done=done,
                                   counters=pipeline.counters.snapshot(committed=True), state="done"))
    if error is not None:
        report.error = error.one_line() if isinstance(error, DdbMigrateError) else str(error)
    if spec.on_finish is not None and error is None:
        spec.on_finish(report)
    if opts.report:
        report.write_json(opts.report)
    if error is not None:
        setattr(error, "report", report)
        raise error
    return report


def _install_sigterm(pipeline: Pipeline) -> Callable[[], None]:
    """SIGTERM behaves like Ctrl-C: stop reading, drain, checkpoint, exit 130."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        pipeline.interrupt()

    try:
        old_term = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return lambda: None

    def restore() -> None:
        signal.signal(signal.SIGTERM, old_term)

    return restore


def pool_size(readers: int, writers: int) -> int:
    return readers + writers + 4


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
