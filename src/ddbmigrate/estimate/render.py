"""An estimate as plain text lines (a table per lane, warnings, assumptions) for the terminal."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .model import Estimate, Lane, fmt_duration, usd


def _usd(v: Optional[float]) -> str:
    return usd(v)


def _v(x: object) -> str:
    return "-" if x is None else str(x)


def _units(d: dict) -> str:  # type: ignore[type-arg]
    parts = [f"{k} {v:,.0f}" for k, v in d.items() if k != "total" and v]
    total = d.get("total", 0) or 0
    return f"{total:,.0f}" + (f" ({', '.join(parts)})" if len(parts) > 1 else "")


def _lane_lines(ln: Lane, chosen: bool) -> List[str]:
    mark = "*" if chosen else " "
    if not ln.available:
        head = f"{mark} {ln.title}: not available: {ln.why_not}"
        if ln.cost_usd is not None or ln.duration_s:
            head += f" (would be {_usd(ln.cost_usd)}, {fmt_duration(ln.duration_s)})"
        return [head]
    lines = [f"{mark} {ln.title}",
             f"    cost {_usd(ln.cost_usd)}  (all on-demand {_usd(ln.cost_on_demand_usd)}, all provisioned "
             f"{_usd(ln.cost_provisioned_usd)})",
             f"    time {fmt_duration(ln.duration_s)}" + (f", limited by {ln.limited_by}" if ln.limited_by else ""),
             f"    write units {_units(ln.write_units)}; read units {_units(ln.read_units)}"]
    if ln.needs:
        lines.append(f"    needs: {'; '.join(ln.needs)}")
    lines += [f"    note: {n}" for n in ln.notes]
    return lines


def _prices_of(p: Dict[str, Any]) -> str:
    """Whose prices these are: a region without prices of its own names the region used instead."""
    used = p.get("rates_region") or p["region"]
    where = used if used == p["region"] else f"{used} (none for {p['region']} in the prices file)"
    return f"{where} of {p['date']}"


def _prices_line(p: Dict[str, Any]) -> str:
    side = p.get("source_side")
    if side:
        return f"  prices: reads {_prices_of(side)}, writes {_prices_of(p)} ({p['file']})"
    return f"  prices: {_prices_of(p)} ({p['file']})"


def estimate_lines(est: Estimate) -> List[str]:
    s = est.inputs["sample"]
    out = [f"estimate: {est.job} {est.source} -> {est.target}", _prices_line(est.prices),
           f"  source: {est.inputs['source_items']:,} items, {est.inputs['source_bytes']:,} bytes"
           f"{' (the sample is the whole source)' if s['complete'] else ''}",
           f"  sample: {s['items']:,} items -> {s['outputs']:,} outputs (fan-out {_v(s['fan_out'])}, "
           f"drop rate {_v(s['drop_rate'])}, mean {_v(s['mean_source_item_bytes'])} -> "
           f"{_v(s['mean_output_item_bytes'])} bytes)"]
    for name, k in est.keys.items():
        hot = k.get("hottest")
        where = "table" if name == "table" else name
        line = f"  keys {where} ({k['attribute']}): {k['distinct_values_in_sample']:,} distinct in the sample"
        if hot:
            line += f"; hottest {hot['value']!r} {hot['share_of_items'] * 100:.0f} % of items"
        out.append(line)
    out.append("lanes (* = this job's):")
    for ln in est.lanes:
        out += ["  " + x for x in _lane_lines(ln, ln.name == est.chosen)]
    if est.warnings:
        out.append("warnings:")
        out += [f"  ! {w}" for w in est.warnings]
    out.append("assumptions:")
    out += [f"  - {a}" for a in est.assumptions]
    return out
