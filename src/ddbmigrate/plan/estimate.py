"""Estimates for a plan: ``plan validate --estimate`` and the cost cap of ``run``.

:func:`estimate_plan` estimates every copy, import, export and replicate job of a plan with the
job's own settings (tables, transform, target spec, options), each on its own: a job whose source
does not exist yet (another job creates it first) cannot be estimated, and says why.
:func:`check_plan_cost` refuses (exit 2) before anything runs when the plan's total is above
``run --max-cost``, or a job's own is above its ``options.max_cost``; an estimate that cannot be
made or priced counts as above the cap, so a cap is never passed silently.

Invariant: estimating never writes (DescribeTable, Scan and S3 reads only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from ..errors import DdbMigrateError, UsageError
from .load import Plan, PlanJob, run_options

ESTIMATED_KINDS = ("copy", "import", "export", "replicate")


@dataclass
class JobEstimate:
    job: PlanJob
    estimate: Any = None  # ddbmigrate.estimate.Estimate
    error: Optional[str] = None

    @property
    def cost(self) -> Optional[float]:
        return None if self.estimate is None else self.estimate.lane().cost_usd

    def line(self) -> str:
        from ..estimate.model import fmt_duration, usd

        if self.estimate is None:
            return f"{self.job.name}: not estimated: {self.error}"
        ln = self.estimate.lane()
        cost = usd(ln.cost_usd)
        return (f"{self.job.name}: {ln.title}: {cost}, {fmt_duration(ln.duration_s)}, "
                f"{ln.write_units.get('total', 0):,.0f} write units, {ln.read_units.get('total', 0):,.0f} read units"
                + (f"; {'; '.join(self.estimate.warnings)}" if self.estimate.warnings else ""))


def estimate_job(job: PlanJob, *, sample: int = 1000, prices: Optional[str] = None) -> JobEstimate:
    """The estimate of one plan job (never raises for the job's own problems: they are its error)."""
    from .. import estimate as est

    opts = run_options(job.options, transform=job.transform, processes=job.processes or 1)
    try:
        if job.kind == "copy" and job.source and job.target:
            e = est.estimate_copy(job.source, job.target, opts, create_target=job.create_target,
                                  target_spec=job.target_spec, sample=sample, prices=prices)
        elif job.kind == "replicate" and job.source and job.target:
            e = est.estimate_replicate(job.source, job.target, opts, create_target=job.create_target,
                                       target_spec=job.target_spec, sample=sample, prices=prices)
        elif job.kind == "export" and job.source and job.path_to:
            e = est.estimate_export(job.source, job.path_to, opts, native=job.native, sample=sample, prices=prices)
        elif job.kind == "import" and job.path_from and job.target:
            # The import's input options travel in its args (import_files' keywords): sampled alike.
            # (A value of the wrong type is left to the job itself, which names it.)
            kinds = {"input_format": str, "csv_delimiter": str, "follow_symlinks": bool}
            inputs: Dict[str, Any] = {k: job.args[k] for k, t in kinds.items() if isinstance(job.args.get(k), t)}
            header = job.args.get("csv_header")
            if isinstance(header, str):
                inputs["csv_header"] = header.split(",")
            elif isinstance(header, list) and all(isinstance(h, str) for h in header):
                inputs["csv_header"] = header
            e = est.estimate_import(job.path_from, job.target, opts, spec=job.spec or job.target_spec,
                                    native=job.native, sample=sample, prices=prices, **inputs)
        else:
            return JobEstimate(job, error=f"a {job.kind} job is not estimated")
    except DdbMigrateError as err:
        return JobEstimate(job, error=err.one_line())
    return JobEstimate(job, e)


def estimate_plan(plan: Plan, *, jobs: Optional[Sequence[PlanJob]] = None, sample: int = 1000,
                  prices: Optional[str] = None) -> List[JobEstimate]:
    """Estimates of the plan's copy/import/export/replicate jobs (``jobs``: only these)."""
    return [estimate_job(j, sample=sample, prices=prices) for j in (jobs if jobs is not None else plan.jobs)
            if j.kind in ESTIMATED_KINDS]


def check_plan_cost(plan: Plan, jobs: Sequence[PlanJob], max_cost: Optional[float], *,
                    prices: Optional[str] = None) -> List[JobEstimate]:
    """Raise UsageError (exit 2) naming each estimate when ``max_cost`` (the plan's total) or a
    job's ``options.max_cost`` is exceeded; returns the estimates made (none without a cap)."""
    from ..estimate.guard import check_max_cost
    from ..estimate.model import usd

    max_cost = check_max_cost(max_cost)  # nan, inf or < 0: refused before anything is estimated
    capped = [j for j in jobs if j.options.get("max_cost") is not None]
    for j in capped:
        check_max_cost(j.options["max_cost"], f"{j.name}: max_cost")
    wanted = [j for j in jobs if j.kind in ESTIMATED_KINDS] if max_cost is not None else capped
    if not wanted:
        return []

    results = estimate_plan(plan, jobs=wanted, prices=prices)
    problems: List[str] = []
    for r in results:
        cap = r.job.options.get("max_cost")
        if cap is None:
            continue
        if r.cost is None:
            problems.append(f"{r.job.name}: max_cost {usd(cap)} cannot be checked: {r.line()}")
        elif r.cost > cap:
            problems.append(f"{r.job.name}: estimated {usd(r.cost)} exceeds its max_cost {usd(cap)} ({r.line()})")
    if max_cost is not None:
        unknown = [r for r in results if r.cost is None]
        total = sum(r.cost or 0.0 for r in results)
        if unknown:
            problems.append(f"--max-cost {usd(max_cost)} cannot be checked: "
                            + "; ".join(r.line() for r in unknown))
        elif total > max_cost:
            problems.append(f"the plan's estimated {usd(total)} exceeds --max-cost {usd(max_cost)}: "
                            + "; ".join(r.line() for r in results))
    if problems:
        raise UsageError("; ".join(problems) + "; nothing was run", code="MaxCostExceeded")
    return results
