"""The threads engine: the whole job in this process, one pipeline of reader and writer threads.

The default engine: one process moves items at a few tens of microseconds of client CPU each,
so it keeps up with DynamoDB up to roughly 30-40k items/s; past that, use the processes engine.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional

from ..core.specs import Resources
from ..reporting.report import Report, merge_stats
from ..state.crashpoints import crash_point
from .job import Job
from .pipeline import Pipeline
from .run import Driver, Observer, WorkerFeed


class ThreadsEngine:
    """Runs every unit of a job in this process (see engine/pipeline.py for the threads)."""

    name = "threads"

    def __init__(self, crash_hook: Optional[Callable[[str], None]] = None) -> None:
        self.crash_hook = crash_hook or crash_point

    def run(self, job: Job, *, cancel: Optional[threading.Event] = None,
            observer: Optional[Observer] = None) -> Report:
        driver = Driver(job, self.name, cancel=cancel, observer=observer)
        error: Optional[BaseException] = None
        try:
            with driver.running():
                try:
                    run_units(driver, job, Resources(), self.crash_hook, dead=driver.dead,
                              checkpoint=driver.store is not None)
                except BaseException as e:  # classified by the driver (Ctrl-C included)
                    error = e
        except BaseException as e:  # around the run (its metrics port, its observer): reported the same
            error = error or e
        return driver.finish(error)


def run_units(feed: WorkerFeed, job: Job, res: Resources, crash_hook: Callable[[str], None], *, dead: Any,
              checkpoint: bool, wid: int = 0) -> None:
    """One pipeline over ``res.units`` (all units when None), reporting to ``feed``.

    ``feed`` is the driver itself (threads engine) or, in a worker process, its stand-in that
    forwards everything to the parent's driver (processes engine). Raises the pipeline's error
    after reporting what was committed.
    """
    opts = job.options
    error: Optional[BaseException] = None
    sink = src = None
    try:
        src = job.source.build(res)
        sink = feed.sink.build(res)
        sink.open()
        proc = job.processing.build(max_errors=opts.max_errors)
        units = set(res.units) if res.units is not None else None
        done = [u for u in feed.done if units is None or u in units]
        positions = {u: p for u, p in feed.positions.items() if units is None or u in units}

        def save(p: Pipeline, state: Dict[str, Any]) -> None:
            cut = p.checkpoint_cut()
            feed.commit(wid, cut.positions, cut.done, cut.counters, state, dead_mark=cut.dead_mark)

        p = Pipeline(
            src, sink, proc, readers=job.readers, writers=job.writers, queue_batches=opts.queue_batches,
            dead_letters=dead, positions=positions, done_units=done, on_checkpoint=save if checkpoint else None,
            crash_hook=crash_hook, checkpoint_every=opts.checkpoint_every, drain_timeout=opts.drain_timeout,
        )
        view = feed.worker(wid)
        view.live_fn = lambda: p.counters.snapshot()
        view.settled_fn = lambda: p.counters.snapshot(committed=True)
        view.extra_fn = src.progress_fields
        feed.on_stop(p.interrupt, p.abort.set)
        src.attach(p)
        limits = res.limiters

        def live() -> None:
            feed.live(wid, p.counters.snapshot(), merge_stats(*res.stats()),
                      {lim.name or str(i): d for i, lim in enumerate(limits) if (d := lim.describe()) is not None},
                      p.counters.snapshot(committed=True))

        live()
        view.stats_fn = lambda: merge_stats(*res.stats())
        view.limits_fn = lambda: {lim.name or str(i): d for i, lim in enumerate(limits)
                                  if (d := lim.describe()) is not None}
        try:
            p.run()
        except BaseException as e:
            error = e
        view.live_fn = view.settled_fn = view.stats_fn = view.limits_fn = None
        live()
        view.live = p.counters.snapshot()
        # The final commit came through ``save`` at the end of p.run(); without a checkpoint
        # (a dry run) the counters still have to reach the driver.
        cut = p.checkpoint_cut()
        final_state = None
        if not checkpoint and error is None:
            # Without a checkpoint the pipeline never commits the sink, yet the driver still
            # merges and finalizes its state (the files a compare sink wrote, for one).
            with sink.commit(True) as final_state:
                pass
        # A stopped run's mark would also cover the unsettled dead letters appended after its last
        # save: only a finished run's is the size a checkpoint may record.
        # A run cut short (an error, or an abort: --max-runtime cutting a chunk, a second Ctrl-C)
        # saves what its positions cover, not its live counts: writes of the cut chunk are done
        # again by the resume, and counted then (they were counted twice).
        whole = error is None and not p.abort.is_set()
        if error is None and not whole:
            feed.cut_short = True  # (the driver's report counts what the positions cover too)
        feed.commit(wid, cut.positions, cut.done, p.counters.snapshot() if whole else cut.counters,
                    final_state, save=False, dead_mark=cut.dead_mark if whole else None)
        feed.samples.extend(p.samples)
        feed.unit_seconds.update(p.unit_seconds())
        feed.failures.extend(src.failures())
    except BaseException as e:
        error = error or e
    finally:
        if sink is not None:
            sink.close()
        if src is not None:
            src.close()
        res.close()
    if error is not None:
        raise error
