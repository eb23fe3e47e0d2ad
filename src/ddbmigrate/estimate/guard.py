"""The cost cap (``--max-cost USD``) and the estimate-vs-actual comparison after a run.

:func:`enforce_max_cost` raises :class:`CostCapExceeded` (a UsageError: exit 2) carrying the
estimate when the chosen lane's cost is above the cap, or when that cost is unknown (a price
missing from the prices file): a cap that cannot be checked is not silently passed.
:func:`attach_estimate` puts the estimate and the run's actual time and capacity side by side in
the report (``extra["estimate"]``), so estimates can be checked against what happened.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

from ..errors import UsageError
from .model import Estimate, fmt_duration, usd


class CostCapExceeded(UsageError):
    """The estimate is above ``--max-cost`` (or cannot be checked against it): nothing ran."""

    def __init__(self, message: str, estimate: Estimate) -> None:
        super().__init__(message, code="MaxCostExceeded")
        self.estimate = estimate


def max_cost_problem(value: Any, name: str = "--max-cost", given: Optional[str] = None) -> Optional[str]:
    """Why ``value`` is not a cost cap (a finite number of US dollars, 0 or more), or None
    (``given``: the value as the user wrote it, for the message).

    ``nan`` compares false with everything, so it would silently pass every estimate; ``inf``
    is no cap at all; both are refused, as a negative amount is."""
    shown = given if given is not None else repr(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} must be an amount of US dollars, not {shown}"
    if not math.isfinite(value) or value < 0:
        return f"{name} must be a finite amount of US dollars, 0 or more, not {shown}"
    return None


def check_max_cost(max_cost: Optional[float], name: str = "--max-cost") -> Optional[float]:
    """``max_cost`` when it is a usable cap (or None); a UsageError (exit 2) otherwise."""
    if max_cost is None:
        return None
    problem = max_cost_problem(max_cost, name)
    if problem:
        raise UsageError(problem)
    return float(max_cost)


def enforce_max_cost(est: Estimate, max_cost: Optional[float], *, what: str = "this job") -> Estimate:
    """Raise CostCapExceeded when ``est``'s chosen lane costs more than ``max_cost`` USD
    (a UsageError, before looking at the estimate, when ``max_cost`` is not a finite amount >= 0)."""
    max_cost = check_max_cost(max_cost)
    if max_cost is None:
        return est
    lane = est.lane()
    if lane.cost_usd is None:
        default = est.prices.get("rates_region") or est.region
        example = lane.missing_prices[0] if lane.missing_prices else "<price name>"
        # a cross-region job misses prices of the source's region, the file entry to give is that one
        region = lane.missing_regions.get(example, default)
        missing = ", ".join(m if lane.missing_regions.get(m, default) == region
                            else f"{m} (of {lane.missing_regions[m]})" for m in lane.missing_prices) or "a price"
        name, _, tier = example.partition(".")
        value = f'{{"{tier}": <USD>}}' if tier else "<USD>"
        raise CostCapExceeded(
            f"--max-cost {usd(max_cost)}: the cost of {what} ({lane.title}) is unknown: {missing} for {region} is "
            f"null in the prices file ({est.prices.get('date')}: not published in its sources). Give it with --prices "
            f'FILE holding {{"regions": {{"{region}": {{"{name}": {value}}}}}}}; nothing was read or written', est)
    if lane.cost_usd > max_cost:
        raise CostCapExceeded(
            f"estimated cost {usd(lane.cost_usd)} of {what} ({lane.title}: "
            f"{lane.write_units.get('total', 0):,.0f} write units, {lane.read_units.get('total', 0):,.0f} read units, "
            f"about {fmt_duration(lane.duration_s)}) exceeds --max-cost {usd(max_cost)}; nothing was read or written",
            est)
    return est


def attach_estimate(report: Any, est: Estimate, path: Optional[str] = None) -> Dict[str, Any]:
    """Estimated vs actual time and capacity, into ``report.extra["estimate"]`` (also returned);
    ``path``: the run's JSON report, written again with it."""
    lane = est.lane()
    actual_w = float(getattr(report, "consumed_write_units", 0.0) or 0.0)
    actual_r = float(getattr(report, "consumed_read_units", 0.0) or 0.0)
    out = {
        "lane": lane.name,
        "estimated": {"duration_s": lane.duration_s, "write_units": lane.write_units.get("total"),
                      "read_units": lane.read_units.get("total"), "cost_usd": lane.cost_usd,
                      "limited_by": lane.limited_by},
        "actual": {"duration_s": getattr(report, "duration_seconds", None), "write_units": actual_w,
                   "read_units": actual_r},
    }
    extra = getattr(report, "extra", None)
    if isinstance(extra, dict):
        extra["estimate"] = out
    if path and hasattr(report, "write_json"):
        report.write_json(path)
    return out


def comparison_lines(cmp: Dict[str, Any]) -> list:  # type: ignore[type-arg]
    """Two lines for the terminal: estimated vs actual."""
    e, a = cmp["estimated"], cmp["actual"]
    return [
        f"estimated: {fmt_duration(e['duration_s'])}, {e['write_units'] or 0:,.0f} write units, "
        f"{e['read_units'] or 0:,.0f} read units, {usd(e['cost_usd'])}",
        f"actual:    {fmt_duration(a['duration_s'])}, {a['write_units']:,.0f} write units, "
        f"{a['read_units']:,.0f} read units",
    ]
