"""Running a plan: at most ``parallel`` jobs at a time, one display, one report, one resume.

:func:`run_plan` loads the plan (:mod:`.load`), checks that every job's function and engine are
in this build (:mod:`ddbmigrate.jobs.registry`), creates missing targets one at a time (a job
with ``after:`` creates its own when it starts, under the same lock), then schedules the jobs on a
thread pool as their ``after:`` allow. Each job calls its library
function; a job that names an ``engine:`` gets ``engine=engine_for(name, ...)``, and one that
names none is called exactly as before engines existed (no ``engine`` keyword at all).

Invariants:

* Every job has a deterministic checkpoint (``<state_dir>/checkpoints/<job>.checkpoint.json``)
  and dead-letter file, and the plan keeps ``plan-state.json`` (written atomically after each job
  ends): ``--resume`` skips the jobs that finished and resumes the others from their
  checkpoints, so a plan resumed any number of times converges like each of its jobs does.
  Before any job starts (or any target is created), the jobs about to run are saved as
  ``running``: a plan killed outright (``kill -9``, a lost machine) is still seen as an
  unfinished run, refused without ``--resume``/``--restart`` once, at plan level.
* ``--resume --force`` passes ``force`` to every job: a job whose checkpoint was made by another
  definition (a fixed transform, changed options) resumes from it anyway, as a single job's
  ``--force`` does; inside a plan, the jobs' own refusals name the plan's command line.
* A failing job never silently disappears: it is reported with its error and exit code, jobs
  that depend on it (``after:``) are reported ``blocked``, and the plan's exit code reflects the
  worst outcome. Independent jobs keep running unless ``fail_fast`` is set.
* Ctrl-C / SIGTERM is a flag, never an exception mid-save: running jobs drain and checkpoint,
  no new job starts.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time
from dataclasses import asdict, replace
from typing import Any, Callable, Dict, List, Optional, Sequence

import orjson

from ..config import RetryPolicy, RunOptions
from ..reporting import metrics
from ..errors import (
    EXIT_DIFFERENCES,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    DdbMigrateError,
    FingerprintMismatchError,
    UsageError,
)
from ..jobs import registry
from ..logs import redact
from ..reporting.report import utcnow
from ..state.checkpoint import atomic_write
from .load import Plan, PlanJob, load_plan, ref_key, run_options
from .report import JobResult, PlanReport

STATE_VERSION = 1


def _call(func: Callable[..., Any], args: Sequence[Any], optional: Dict[str, Any], user: Dict[str, Any]) -> Any:
    """Call a job function with the optional keyword arguments it accepts, plus the user's ``args``.

    The user's arguments are always passed (a wrong one is their error to see); ours are
    dropped when the function does not take them, so the plan works across versions.
    """
    kw = {k: v for k, v in optional.items() if v is not None and registry.takes_keyword(func, k)}
    kw.update(user)
    try:
        return func(*args, **kw)
    except TypeError as e:
        if "argument" in str(e) and func.__name__ in str(e):
            raise UsageError(f"{func.__name__}: {e}") from None
        raise


def _report_dict(obj: Any) -> Optional[Dict[str, Any]]:
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if isinstance(obj, dict):
        return obj
    try:
        return asdict(obj)
    except TypeError:
        return {"value": str(obj)}


class _PlanState:
    """``plan-state.json``: what each job's last run ended with, saved atomically."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "plan-state.json")
        self.jobs: Dict[str, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def load(self, restart: bool = False) -> bool:
        """Read the state; False when there is none. ``restart`` ignores the state, so one whose
        content does not read is no reason to refuse (the way out its error names)."""
        problem: Optional[str] = None
        try:
            with open(self.path, "rb") as fh:
                data = orjson.loads(fh.read())
        except FileNotFoundError:
            return False
        except OSError as e:  # the folder itself: --restart would meet it too
            raise UsageError(f"cannot read plan state {self.path}: {e.strerror or e}") from None
        except orjson.JSONDecodeError as e:
            data, problem = None, f"is unreadable: {e}"
        if problem is None and not (isinstance(data, dict) and isinstance(data.get("jobs") or {}, dict)):
            problem = "is not a plan state"
        elif problem is None and data.get("version") != STATE_VERSION:
            problem = f"has version {data.get('version')}, expected {STATE_VERSION}"
        if problem is not None:
            if restart:
                return False
            raise UsageError(f"plan state {self.path} {problem}; use --restart to start over")
        self.jobs = dict(data.get("jobs") or {})
        return True

    def unfinished(self) -> List[str]:
        return [n for n, j in self.jobs.items() if j.get("status") != "done"]

    def keep_only(self, names: Sequence[str]) -> None:
        """Forget the jobs no longer in the plan: a job removed from the file is not something
        a later run could finish, so it must not keep every run refused as unfinished."""
        keep = set(names)
        self.jobs = {n: j for n, j in self.jobs.items() if n in keep}

    def record(self, job: PlanJob, result: JobResult) -> None:
        with self._lock:
            self.jobs[job.name] = {"hash": job.definition_hash(), "status": result.status, "result": asdict(result)}
            self._save()

    def mark_running(self, jobs: Sequence[PlanJob]) -> None:
        """Save ``jobs`` as ``running`` before any of them starts: a plan killed outright (no
        chance to record how its jobs ended) is still an unfinished run, so the next run without
        --resume is refused at plan level instead of each job meeting its own checkpoint."""
        if not jobs:
            return
        with self._lock:
            for job in jobs:
                self.jobs[job.name] = {"hash": job.definition_hash(), "status": "running", "result": None}
            self._save()

    def _save(self) -> None:
        atomic_write(self.path, orjson.dumps({"version": STATE_VERSION, "jobs": self.jobs, "saved_at": utcnow()},
                                             option=orjson.OPT_INDENT_2, default=str))

    def finished_result(self, job: PlanJob) -> Optional[JobResult]:
        rec = self.jobs.get(job.name)
        if not rec or rec.get("status") != "done" or rec.get("hash") != job.definition_hash():
            return None
        try:
            return JobResult(**rec["result"])
        except TypeError:
            return None


def plan_command(plan: Plan, *flags: str) -> str:
    """The command line that runs ``plan`` again with ``flags`` (for the messages that name it)."""
    return " ".join(["ddbmigrate", "run", plan.path, *flags])


class _Runner:
    def __init__(self, plan: Plan, *, parallel: int, resume: bool, restart: bool, progress: str, stream: Any,
                 fail_fast: bool, max_cost: Optional[float] = None, prices: Optional[str] = None,
                 force: bool = False) -> None:
        from .progress import PlanProgress

        self.plan = plan
        self.metrics_port: Optional[int] = None  # set by run_plan: one server for the whole plan
        self.metrics_host = "127.0.0.1"
        self.parallel = max(1, parallel)
        self.resume = resume
        self.restart = restart
        self.force = force
        self.fail_fast = fail_fast
        self.state = _PlanState(plan.state_dir)
        self.display = PlanProgress([(j.name, f"{j.name}") for j in plan.jobs], mode=progress, stream=stream)
        self.stopping = threading.Event()
        self.stop_reason: Optional[str] = None
        self.t0 = time.monotonic()
        self.results: Dict[str, JobResult] = {
            j.name: JobResult(j.name, j.kind, j.line, description=j.describe()) for j in plan.jobs}
        self.report = PlanReport(plan=plan.path, name=plan.name, parallel=self.parallel, state_dir=plan.state_dir)
        self.max_cost = max_cost
        self.prices = prices
        self.estimates: Dict[str, Any] = {}
        # Targets are created one at a time, each once per run (by ref_key): a job that starts
        # after another (after:) prepares its target when it starts, so two such jobs writing
        # into one new table would otherwise both try to create it.
        self._target_lock = threading.Lock()
        self._prepared: Dict[Any, Optional[str]] = {}

    # ------------------------------------------------------------------ paths

    def checkpoint_path(self, job: PlanJob) -> str:
        return os.path.join(self.plan.state_dir, "checkpoints", f"{job.name}.checkpoint.json")

    def dead_letter_path(self, job: PlanJob) -> Optional[str]:
        if job.options.get("dead_letters", True) is False:
            return None
        return os.path.join(self.plan.state_dir, "dead-letters", f"{job.name}.jsonl")

    def options(self, job: PlanJob, checkpoint: Optional[str] = None) -> RunOptions:
        opts = run_options(job.options, transform=job.transform, dead_letter=self.dead_letter_path(job),
                           checkpoint=checkpoint or self.checkpoint_path(job), resume=self.resume,
                           restart=self.restart, force=self.force, progress="off")
        if self.metrics_port is None:
            return opts
        # One server for the whole plan (shared, counted), each job's series labelled with its name.
        return replace(opts, metrics_port=self.metrics_port, metrics_host=self.metrics_host, metrics_job=job.name)

    # ------------------------------------------------------------------ run

    def run(self) -> PlanReport:
        had_state = self.state.load(restart=self.restart)
        if had_state:
            self.state.keep_only([j.name for j in self.plan.jobs])
        if had_state and self.restart:
            self.state.jobs = {}
        elif had_state and not self.resume and self.state.unfinished():
            raise UsageError(
                f"an unfinished run of this plan exists ({self.state.path}: "
                f"{', '.join(self.state.unfinished())} not done): add --resume to continue it or --restart "
                "to start over")
        elif had_state and not self.resume:
            self.state.jobs = {}  # the last run finished: this is a new run
        os.makedirs(self.plan.state_dir, exist_ok=True)
        pending: List[PlanJob] = []
        for job in self.plan.jobs:
            earlier = self.state.finished_result(job) if self.resume else None
            if earlier is not None:
                earlier.resumed_from_state = True
                self.results[job.name] = earlier
                self.display.set_status(job.name, "done (earlier run)")
            else:
                pending.append(job)
        # The cost caps (run --max-cost, a job's options.max_cost): checked before anything runs.
        from .estimate import check_plan_cost

        for r in check_plan_cost(self.plan, pending, self.max_cost, prices=self.prices):
            if r.estimate is not None:
                self.estimates[r.job.name] = r.estimate
        # A job that finished, then changed (another target, a fixed transform): its finished
        # checkpoint is the old definition's, which its run refuses even with --force, so --resume
        # failed it until --restart redid every job. It runs again, from the start.
        changed = [j for j in pending if self.resume and self.state.jobs.get(j.name, {}).get("status") == "done"]
        # From here on the run changes things (targets, checkpoints): say so first, durably.
        self.state.mark_running(pending)
        self._start_afresh(pending if not self.resume else changed)
        started = list(pending)
        self.display.start()
        restore = self._install_signals()
        try:
            self._prepare_targets(pending)
            self._schedule(pending)
        finally:
            restore()
            self.display.stop()
            # Jobs that never ran (blocked, or not started after a stop) are saved as what they
            # are, no longer "running" (a status no finished job has: they stay unfinished).
            for job in started:
                if self.state.jobs.get(job.name, {}).get("status") == "running":
                    self.state.record(job, self.results[job.name])
        rep = self.report
        rep.jobs = [self.results[j.name] for j in self.plan.jobs]
        rep.duration_seconds = round(time.monotonic() - self.t0, 3)
        rep.finished_at = utcnow()
        rep.timeline = self.display.timeline
        statuses = {j.status for j in rep.jobs}
        if self.stop_reason == "signal":
            rep.status = "interrupted"
        elif statuses & {"failed", "blocked", "not-started", "interrupted"}:
            rep.status = "failed"
        elif "differences" in statuses:
            rep.status = "differences"
        else:
            rep.status = "done"
        rep.compute_totals()
        return rep

    def _start_afresh(self, jobs: Sequence[PlanJob]) -> None:
        """A new run (or --restart): the jobs' files of the run before are not this run's. A job's
        finished checkpoint would otherwise be taken, on a later --resume, for this run's (a job
        that never started reported done, with the old run's counts, over a changed source), and
        its dead letters would pile up under this run's count. The dead letters are kept beside."""
        from ..engine.run import keep_previous_dead_letters
        from ..state.status import RUN_BUSY, RunLock, lock_path_for

        for job in jobs:
            cp = self.checkpoint_path(job)
            # Under the job's own lock: a run of it still going (this plan run elsewhere, or the
            # job by hand) is refused here, before its files are touched.
            lock = RunLock(lock_path_for(cp), busy=f"{job.name}: {RUN_BUSY}")
            lock.acquire()
            try:
                try:
                    os.unlink(cp)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise UsageError(f"cannot remove the last run's checkpoint {cp}: {e.strerror or e}",
                                     file=cp) from None
                dead = self.dead_letter_path(job)
                if dead is not None:
                    keep_previous_dead_letters(dead)
                try:
                    os.unlink(self.managed_path(job))  # the last run's export or import: not this run's
                except FileNotFoundError:
                    pass
            finally:
                lock.release()

    def _install_signals(self) -> Callable[[], None]:
        # Ctrl-C and SIGTERM: running jobs drain and checkpoint, no new job starts. Handled as
        # a signal (not KeyboardInterrupt) so it never lands in the middle of a state save.
        from ..engine.run import install_handler

        def handler(signum: int, frame: Any) -> None:
            try:
                os.write(2, b"ddbmigrate: stopping the plan: running jobs finish in-flight batches and "
                            b"save their checkpoints\n")
            except OSError:
                pass
            self.stop("signal")

        return install_handler(handler)

    def stop(self, reason: str = "signal") -> None:
        if not self.stopping.is_set():
            self.stop_reason = reason
        self.stopping.set()

    def _schedule(self, pending: List[PlanJob]) -> None:
        running: Dict[cf.Future[JobResult], PlanJob] = {}
        with cf.ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="plan-job") as pool:
            while pending or running:
                if not self.stopping.is_set():
                    for job in list(pending):
                        if len(running) >= self.parallel:
                            break
                        dep_status = [self.results[a].status for a in job.after]
                        if any(s in ("failed", "blocked", "interrupted", "differences") for s in dep_status):
                            res = self.results[job.name]
                            bad = [a for a in job.after if self.results[a].status != "done"]
                            # Its cause's code, not a fatal 1 of its own: the plan's exit follows the
                            # jobs that failed (a retriable 75 read as fatal through the job after it).
                            codes = [self.results[a].exit_code or EXIT_FATAL for a in bad]
                            fatal = [c for c in codes if c in (EXIT_FATAL, EXIT_USAGE)]
                            res.status, res.exit_code = "blocked", fatal[0] if fatal else max(codes)
                            res.error = f"not run: it runs after {', '.join(bad)}, which did not finish"
                            self.display.set_status(job.name, "blocked")
                            pending.remove(job)
                            continue
                        if all(s == "done" for s in dep_status):
                            pending.remove(job)
                            self.display.set_status(job.name, "starting")
                            running[pool.submit(self._run_job, job)] = job
                else:
                    pending.clear()
                if not running:
                    if pending:  # waiting on nothing: cannot happen without a cycle, but never spin
                        time.sleep(0.05)
                    continue
                try:
                    done, _ = cf.wait(list(running), timeout=0.2, return_when=cf.FIRST_COMPLETED)
                except KeyboardInterrupt:
                    self.stop("signal")
                    continue
                for fut in done:
                    job = running.pop(fut)
                    res = fut.result()
                    self.results[job.name] = res
                    self.state.record(job, res)
                    self.display.set_status(job.name, res.status)
                    if res.status == "failed" and self.fail_fast:
                        self.stop("fail_fast")

    def _prepare_targets(self, jobs: List[PlanJob]) -> None:
        """Create missing targets one at a time before jobs run concurrently.

        Two jobs writing into one new table (a re-model of two tables into one) would otherwise
        race to create it; preparing here also fails early, before any data moves. A job with
        ``after:`` may need what an earlier job makes (its source, say): its target is prepared
        when it starts (:meth:`_prepare_target`, under the same lock).
        """
        for job in jobs:
            if job.after or not _creates_target(job):
                continue
            if self.stopping.is_set():  # Ctrl-C, or fail_fast after a target that failed: none made past it
                break
            try:
                self._prepare_target(job)
            except DdbMigrateError as e:
                res = self.results[job.name]
                res.status, res.exit_code, res.error = "failed", e.exit_code, f"preparing the target: {e.one_line()}"
                if self.fail_fast:  # a failed job, as one failing once it runs: the others do not start
                    self.stop("fail_fast")
        for job in jobs:
            if self.results[job.name].status == "failed":
                self.state.record(job, self.results[job.name])
                self.display.set_status(job.name, "failed")
        jobs[:] = [j for j in jobs if self.results[j.name].status != "failed"]

    def _prepare_target(self, job: PlanJob) -> None:
        """Describe the job's target, creating it when missing; once per table per run, and one
        at a time, so a table created by another job of the plan is found and used."""
        from ..aws.client import DynamoClient
        from ..errors import FatalError
        from ..jobs.common import prepare_target

        assert job.target is not None
        key = ref_key(job.target)
        with self._target_lock:
            if key not in self._prepared:
                try:
                    retry = RetryPolicy(max_attempts=int(job.options.get("max_attempts", 10)))
                    dst = DynamoClient(job.target, pool_size=2, retry=retry)
                    src = DynamoClient(job.source, pool_size=2, retry=retry) if job.source is not None else None
                    sdesc = src.describe_table() if (src is not None and not job.target_spec) else None
                    prepare_target(dst, source_desc=sdesc, source_client=src, create=job.create_target,
                                   spec_path=job.target_spec)
                    self._prepared[key] = None
                except DdbMigrateError as e:
                    self._prepared[key] = e.one_line()
                    raise
                return
            error = self._prepared[key]
        if error is not None:
            raise FatalError(error)

    def _run_job(self, job: PlanJob) -> JobResult:
        res = JobResult(job.name, job.kind, job.line, description=job.describe(), started_at=utcnow(),
                        offset_seconds=round(time.monotonic() - self.t0, 2))
        res.checkpoint_path = self.checkpoint_path(job)
        res.dead_letter_path = self.dead_letter_path(job)
        t = time.monotonic()
        if job.after and _creates_target(job):
            try:
                self._prepare_target(job)
            except DdbMigrateError as e:
                res.status, res.exit_code = "failed", e.exit_code
                res.error = f"preparing the target: {e.one_line()}"
                res.finished_at = utcnow()
                return res
        try:
            engine = self._engine(job)
            report = self._execute(job, engine)
            if job.name in self.estimates and hasattr(report, "extra"):
                from ..estimate import attach_estimate

                attach_estimate(report, self.estimates[job.name])
            res.report = _report_dict(report)
            res.exit_code = int(getattr(report, "exit_code", EXIT_OK) or EXIT_OK)
            res.status = "done"
            if job.verify_after and job.kind in ("copy", "import", "replicate") and self.stopping.is_set():
                # Its work ended as the plan stopped: "done" would let --resume skip the verify for good.
                res.status, res.exit_code = "interrupted", EXIT_INTERRUPTED
                res.error = "the plan stopped before its verify_after; --resume verifies it"
            elif job.verify_after and job.kind in ("copy", "import", "replicate"):
                self.display.set_status(job.name, "verifying")
                vrep = self._verify(job, engine)
                res.verify = _report_dict(vrep)
                vcode = int(getattr(vrep, "exit_code", EXIT_OK) or EXIT_OK)
                if vcode == EXIT_DIFFERENCES:
                    res.status, res.exit_code = "differences", EXIT_DIFFERENCES
                    res.error = "verify found differences between source and target"
                elif job.kind == "verify" or vcode:
                    res.exit_code = max(res.exit_code, vcode)
            if job.kind == "verify" and res.exit_code == EXIT_DIFFERENCES:
                res.status = "differences"
        except DdbMigrateError as e:
            rep = _report_dict(getattr(e, "report", None))
            if res.report is not None:
                # The job's own work had ended and its verify_after stopped or failed: the job's
                # counts stay the job's, and the verify's report is its verify.
                res.verify = rep
            else:
                res.report = rep
            res.status = "interrupted" if e.exit_code == EXIT_INTERRUPTED else "failed"
            res.exit_code = e.exit_code
            res.error = self._plan_error(e)
            if job.native and res.status == "failed" and e.exit_code == EXIT_FATAL:
                # The operation itself FAILED (or was cancelled) in AWS: a --resume starts a new one
                # rather than watch that one fail again.
                try:
                    os.unlink(self.managed_path(job))
                except FileNotFoundError:
                    pass
        except Exception as e:  # a bug or an unexpected library error: report it, keep the plan going
            res.status, res.exit_code = "failed", EXIT_FATAL
            res.error = f"internal error: {type(e).__name__}: {redact(str(e))[:500]}"
        res.duration_seconds = round(time.monotonic() - t, 3)
        res.finished_at = utcnow()
        if res.report is not None and not res.report.get("timeline"):
            res.report["timeline"] = self.display.phase_timeline(job.name, str(res.report.get("job") or job.kind))
        return res

    def _plan_error(self, e: DdbMigrateError) -> str:
        """The job's error, with the way out a plan has when it is a checkpoint refusal: the job's
        own --force/--resume are options of the single-job commands, not of ``run``."""
        text = e.one_line()
        # Only where the job's own --force would do: one refused "even with --force" (another
        # target, other segments, a finished run of another job) was told to use it anyway.
        if isinstance(e, FingerprintMismatchError) and "; use --force" in text:
            head = text.split("; use --force", 1)[0]
            return (f"{head}; use {plan_command(self.plan, '--resume', '--force')} to resume anyway, or "
                    f"{plan_command(self.plan, '--restart')} to start every job over")
        if isinstance(e, UsageError) and text.startswith("a checkpoint of an unfinished run exists"):
            head = text.split(": add --resume", 1)[0]
            return (f"{head}: use {plan_command(self.plan, '--resume')} to continue it, or "
                    f"{plan_command(self.plan, '--restart')} to start every job over")
        return text

    def _engine(self, job: PlanJob) -> Any:
        """The engine the job named, built now; None (and no ``engine=`` at all) when it named none."""
        name = job.passed_engine()
        if name is None:
            return None
        engine_for = registry.engine_factory(name)
        return engine_for(name, processes=job.processes or 2, spark_master=job.spark_master)

    def _execute(self, job: PlanJob, engine: Any) -> Any:
        func = registry.job_function(job.kind, native=job.native)
        opts = self.options(job)
        # The engine travels with the user's args: those are always passed, so a function that
        # cannot take it fails loudly instead of silently running on threads.
        user = dict(job.args, engine=engine) if engine is not None else job.args
        confirm = (lambda message: True) if job.confirm else (lambda message: False)
        # Jobs on the one job model take stopping and watching as parameters.
        watch = {"cancel": self.stopping, "observer": self.display.observer_for(job.name)}
        if job.kind == "copy":
            return _call(func, (job.source, job.target, opts),
                         {"create_target": job.create_target, "target_spec": job.target_spec,
                          "clean_target": job.clean_target, "confirm": confirm, **watch}, user)
        if job.kind == "clean":
            return _call(func, (job.target, opts), {"confirm": confirm, **watch}, user)
        if job.kind == "update":  # the transform travels in opts; version_attribute etc. in args
            return _call(func, (job.target, opts), watch, user)
        if job.kind == "export" and job.native:
            return _call(func, (job.source, job.path_to),
                         {"export_time": job.export_time, "incremental": job.incremental, "progress": "off",
                          **self._managed(job, "export_arn"), **watch}, user)
        if job.kind == "import" and job.native:
            return _call(func, (job.path_from, job.target, job.spec or job.target_spec),
                         {"progress": "off", **self._managed(job, "import_arn"), **watch}, user)
        if job.kind == "export":
            return _call(func, (job.source, job.path_to, opts), watch, user)
        if job.kind == "import":
            return _call(func, (job.path_from, job.target, opts),
                         {"create_target": job.create_target, "spec": job.spec or job.target_spec, **watch}, user)
        if job.kind == "verify":
            return _call(func, (job.source, job.target), self._verify_kwargs(job, opts), user)
        # replicate: runs until the plan stops (Ctrl-C / SIGTERM / fail_fast) unless the job's
        # args give max_runtime or stop_after_idle.
        return _call(func, (job.source, job.target),
                     {"options": opts, "transform": job.transform, "create_target": job.create_target,
                      "target_spec": job.target_spec, "clean_target": job.clean_target, "confirm": confirm,
                      "stop_event": self.stopping}, user)

    def managed_path(self, job: PlanJob) -> str:
        return os.path.join(self.plan.state_dir, "managed", f"{job.name}.json")

    def _managed(self, job: PlanJob, arn_arg: str) -> Dict[str, Any]:
        """A native export or import is an operation AWS runs on its own: the plan keeps its ARN as
        soon as it starts, and a --resume watches that one again instead of starting a second
        (a second export billed twice; a second ImportTable refused, its table now existing)."""
        path = self.managed_path(job)
        # Kept with the job's definition: a job changed since (another export time, another
        # table) starts its own operation rather than watch the old one for it.
        kw: Dict[str, Any] = {"on_started": lambda arn: atomic_write(path, orjson.dumps(
            {arn_arg: arn, "definition": job.definition_hash()}))}
        if self.resume:
            try:
                with open(path, "rb") as fh:
                    saved = orjson.loads(fh.read())
                arn = saved.get(arn_arg) if saved.get("definition") == job.definition_hash() else None
            except (OSError, ValueError, AttributeError):
                arn = None
            if arn:
                kw[arn_arg] = arn
        return kw

    def _verify_kwargs(self, job: PlanJob, opts: RunOptions) -> Dict[str, Any]:
        return {"transform": job.transform, "progress": "off", "segments": opts.segments,
                "consistent_read": opts.consistent_read or None, "max_read_units": opts.max_read_units,
                "retry": opts.retry, "on_error": opts.on_error,
                "diff_path": os.path.join(self.plan.state_dir, "diffs", f"{job.name}.jsonl"),
                # Stopped with the plan (Ctrl-C, SIGTERM, fail_fast) and drawn on its job's row.
                "cancel": self.stopping, "observer": self.display.observer_for(job.name),
                # On the plan's server, apart from the job's own series (each only rises).
                "metrics_port": opts.metrics_port, "metrics_host": opts.metrics_host,
                "metrics_job": opts.metrics_job}

    def _verify(self, job: PlanJob, engine: Any) -> Any:
        # verify_after scans both tables, so it runs on the engine that moved the data.
        func = registry.job_function("verify")
        if job.kind == "import":
            raise UsageError("verify_after on an import job is not supported; add a verify job instead")
        os.makedirs(os.path.join(self.plan.state_dir, "diffs"), exist_ok=True)
        return _call(func, (job.source, job.target), self._verify_kwargs(job, self.options(job)),
                     {"engine": engine} if engine is not None else {})


def _creates_target(job: PlanJob) -> bool:
    """Whether the plan prepares the job's target (a native import creates its own)."""
    if job.target is None or not (job.create_target or job.target_spec):
        return False
    return job.kind in ("copy", "import", "replicate") and not (job.kind == "import" and job.native)


def run_plan(
    path: str,
    *,
    parallel: Optional[int] = None,
    resume: bool = False,
    restart: bool = False,
    report: Optional[str] = None,
    progress: str = "off",
    state_dir: Optional[str] = None,
    fail_fast: Optional[bool] = None,
    stream: Any = None,
    max_cost: Optional[float] = None,
    prices: Optional[str] = None,
    metrics_port: Optional[int] = None,
    metrics_host: str = "127.0.0.1",
    force: bool = False,
) -> PlanReport:
    """Run every job of the plan at ``path`` and return the combined report.

    Job failures do not raise: they are in the report (``status``, ``exit_code``, each job's
    ``error``). Invalid plans raise :class:`PlanError`; an unfinished earlier run without
    ``resume`` or ``restart`` raises :class:`UsageError`, and so does an estimate above
    ``max_cost`` (USD, the plan's total) or above a job's ``options.max_cost``, before any job runs.
    ``force`` (with ``resume``): a job whose checkpoint belongs to another definition of it (a fixed
    transform, changed options) resumes from it anyway, as a single job's ``--force`` does.
    """
    from ..estimate.guard import check_max_cost

    if resume and restart:
        raise UsageError("--resume and --restart are mutually exclusive")
    if force and not resume:
        raise UsageError("--force resumes jobs whose checkpoint belongs to a different definition: it needs "
                         "--resume (or use --restart to start every job over)")
    max_cost = check_max_cost(max_cost)  # nan, inf or negative: refused before anything is read
    plan = load_plan(path, state_dir=state_dir)
    for job in plan.jobs:
        # A missing job kind or engine fails here, before any job has started.
        registry.job_function(job.kind, native=job.native, engine=job.engine)
        if job.verify_after:
            registry.job_function("verify", engine=job.passed_engine())
    runner = _Runner(plan, parallel=parallel or plan.parallel, resume=resume, restart=restart, progress=progress,
                     stream=stream, fail_fast=plan.fail_fast if fail_fast is None else fail_fast,
                     max_cost=max_cost, prices=prices, force=force)
    runner.metrics_port, runner.metrics_host = metrics_port, metrics_host
    # Held for the whole plan (jobs acquire the same server), so it answers between jobs too.
    server = metrics.acquire(metrics_host, metrics_port) if metrics_port is not None else None
    try:
        rep = runner.run()
    finally:
        if server is not None:
            metrics.release(server)
    if report:
        rep.write_json(report)
    rep.write_json(os.path.join(plan.state_dir, "last-report.json"))
    return rep
