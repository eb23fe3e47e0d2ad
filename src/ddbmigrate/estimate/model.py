"""From a sample and the tables' settings to units, dollars and seconds (the lanes: ``lanes.py``).

The formulas (``docs/estimate.md`` has them with a worked example):

* scale ``k = source items / sampled items`` (1 when the sample is the whole source);
* reads: ``RRU = ceil(source bytes / 4 KB)``, halved for eventually consistent scans;
* writes, per output item: ``ceil(size / 1 KB)`` on the table, plus ``ceil(entry / 1 KB)`` on each
  GSI/LSI that projects the item (has its key attributes; entry = the projected attributes), so a
  GSI with ``ALL`` projection doubles the writes; every sampled sum is multiplied by ``k``;
* on-demand cost: units × price per million; provisioned cost: the capacity the job uses for as
  long as it runs, ``units / 3600 × price per unit-hour``; managed lanes: per GB, plus S3 requests;
* time: the largest of ``units / capacity`` for the table and each GSI (on-demand: warm or
  starting throughput), ``hot key units / 1,000 WCU/s`` for the hottest key of the table and of each
  GSI, ``read units / source capacity`` (at most 3,000 RCU/s per scan segment), and this machine's
  ``items × CPU per item / cores``.

Invariant: every number that is a guess is named in ``assumptions``; an unknown price gives an
unknown cost (None), never zero.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..aws.capacity import capacity_limit
from .prices import Prices
from .sample import SampleStats, read_units

GB = 1024 ** 3

ENGINE = "engine"
IMPORT_TABLE = "import-table"
BULK_PUT = "bulk-put"
NATIVE_EXPORT = "native-export"
REPLICA = "global-table-replica"


def add_costs(*parts: Optional[float]) -> Optional[float]:
    """The sum, or None when any part is unknown."""
    return None if any(v is None for v in parts) else sum(v for v in parts if v is not None)


def usd(v: Optional[float]) -> str:
    """Dollars with cents, or with significant digits below a dollar ($0.000030)."""
    if v is None:
        return "unknown"
    if not math.isfinite(v):
        return f"${v}"
    if v >= 1 or v <= 0:
        return f"${v:,.2f}"
    decimals = max(4, 1 - math.floor(math.log10(v)))
    return f"${v:.{decimals}f}"


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    if not math.isfinite(seconds):
        return "unbounded" if seconds > 0 else "?"
    s = int(math.ceil(seconds))
    if s < 60:
        return f"{s} s"
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h} h {m} min"
    return f"{m} min {sec} s" if sec else f"{m} min"


@dataclass
class Side:
    """One table as the estimate sees it: its description (or planned CreateTable request)."""

    desc: Optional[Dict[str, Any]]
    exists: bool
    label: str = ""

    @property
    def billing(self) -> str:
        d = self.desc or {}
        mode = (d.get("BillingModeSummary") or {}).get("BillingMode") or d.get("BillingMode")
        if mode:
            return str(mode)
        pt = d.get("ProvisionedThroughput") or {}
        return "PROVISIONED" if int(pt.get("WriteCapacityUnits") or 0) > 0 else "PAY_PER_REQUEST"


@dataclass
class Job:
    """What is estimated: the kind, both ends, the sample and the options that change the numbers."""

    kind: str  # copy | replicate | import | export
    stats: SampleStats
    source_items: int
    source_bytes: int
    prices: Prices  # the target's region (writes, managed loads); of the source when there is no target
    source: Optional[Side] = None  # a table source (copy, replicate, export)
    target: Optional[Side] = None  # a table target (copy, replicate, import)
    transform: Optional[str] = None
    consistent_read: bool = False
    max_read_units: Optional[float] = None
    max_write_units: Optional[float] = None
    read_percent: Optional[float] = None
    write_percent: Optional[float] = None
    segments: Optional[int] = None
    processes: int = 1
    files: int = 0  # import: input files; export: none
    files_in_s3: bool = False  # import: the input is in S3; export: the destination is
    tier: str = "STANDARD"
    staged_condition: bool = False  # bulk put --condition: the input is staged (rewritten) first
    cross_region_or_account: bool = False
    client_items_per_second: Optional[float] = None  # injected in tests; else measured
    assumptions: List[str] = field(default_factory=list)
    # A source in another region than ``prices``': its reads and exports are billed at its prices.
    source_prices: Optional[Prices] = None
    # import: what ImportTable bills (the input's uncompressed size), when the files tell it
    import_source_bytes: Optional[float] = None


@dataclass
class Lane:
    name: str
    title: str
    available: bool
    why_not: Optional[str] = None
    needs: List[str] = field(default_factory=list)
    read_units: Dict[str, float] = field(default_factory=dict)
    write_units: Dict[str, float] = field(default_factory=dict)
    bytes_written: Dict[str, float] = field(default_factory=dict)
    consumes_capacity: bool = True
    cost_usd: Optional[float] = None
    cost_on_demand_usd: Optional[float] = None
    cost_provisioned_usd: Optional[float] = None
    cost_parts: Dict[str, Optional[float]] = field(default_factory=dict)
    duration_s: Optional[float] = None
    limited_by: Optional[str] = None
    bounds: Dict[str, float] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    missing_prices: List[str] = field(default_factory=list)  # why cost_usd is None
    missing_regions: Dict[str, str] = field(default_factory=dict)  # missing price -> its region

    def to_dict(self) -> Dict[str, Any]:
        return {
            "lane": self.name, "title": self.title, "available": self.available, "why_not": self.why_not,
            "needs": self.needs, "read_units": _rounded(self.read_units), "write_units": _rounded(self.write_units),
            "bytes_written": _rounded(self.bytes_written), "consumes_table_capacity": self.consumes_capacity,
            "cost_usd": _money(self.cost_usd), "cost_on_demand_usd": _money(self.cost_on_demand_usd),
            "cost_provisioned_usd": _money(self.cost_provisioned_usd),
            "cost_parts_usd": {k: _money(v) for k, v in self.cost_parts.items()},
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "limited_by": self.limited_by, "bounds_s": {k: round(v, 3) for k, v in self.bounds.items()},
            "notes": self.notes, "missing_prices": self.missing_prices,
        }


def _rounded(d: Mapping[str, float]) -> Dict[str, float]:
    return {k: (int(v) if float(v).is_integer() else round(v, 2)) for k, v in d.items()}


def _money(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(v, 10)


@dataclass
class Estimate:
    """The answer: inputs, key spread, hot-key warnings, lanes, assumptions."""

    job: str
    source: str
    target: str
    region: str
    prices: Dict[str, Any]
    inputs: Dict[str, Any]
    keys: Dict[str, Any]
    lanes: List[Lane]
    warnings: List[str]
    assumptions: List[str]
    chosen: str = ENGINE

    def lane(self, name: Optional[str] = None) -> Lane:
        want = name or self.chosen
        for ln in self.lanes:
            if ln.name == want:
                return ln
        raise KeyError(want)

    def to_dict(self) -> Dict[str, Any]:
        return {"job": self.job, "source": self.source, "target": self.target, "region": self.region,
                "prices": self.prices, "inputs": self.inputs, "keys": self.keys, "chosen_lane": self.chosen,
                "lanes": [ln.to_dict() for ln in self.lanes], "warnings": self.warnings,
                "assumptions": self.assumptions}


# --------------------------------------------------------------------------- capacity


def _warm(d: Mapping[str, Any], kind: str) -> float:
    """On-demand units/s a table or GSI can take now: its maximum if set, else its warm throughput."""
    odt = d.get("OnDemandThroughput") or {}
    warm = d.get("WarmThroughput") or {}
    mx = float(odt.get("MaxWriteRequestUnits" if kind == "write" else "MaxReadRequestUnits") or 0)
    w = float(warm.get("WriteUnitsPerSecond" if kind == "write" else "ReadUnitsPerSecond") or 0)
    if mx > 0 and w > 0:
        return min(mx, w)
    return mx or w


def capacity(d: Optional[Mapping[str, Any]], billing: str, kind: str, prices: Prices,
             notes: List[str], what: str) -> float:
    """Units/s ``d`` (a table or one GSI) can serve: provisioned, else on-demand warm/starting."""
    d = d or {}
    if billing == "PROVISIONED":
        pt = d.get("ProvisionedThroughput") or {}
        v = float(pt.get("WriteCapacityUnits" if kind == "write" else "ReadCapacityUnits") or 0)
        if v > 0:
            return v
    w = _warm(d, kind)
    if w > 0:
        return w
    start = prices.assume("on_demand_new_table_write_units" if kind == "write" else "on_demand_new_table_read_units")
    notes.append(f"{what}: on-demand, no warm throughput reported: {start:,.0f} {kind} units/s assumed "
                 "(a new on-demand table's starting throughput; it doubles after sustained use)")
    return start


def _gsi_desc(desc: Mapping[str, Any], name: str) -> Dict[str, Any]:
    for g in desc.get("GlobalSecondaryIndexes") or []:
        if g.get("IndexName") == name:
            return dict(g)
    return {}


# --------------------------------------------------------------------------- the lanes


class Calc:
    """The job's sample scaled to the whole source, and the prices: what every lane computes from."""

    def __init__(self, job: Job) -> None:
        self.job = job
        st = job.stats
        self.k = (job.source_items / st.source_items) if st.source_items else 0.0
        self.p = job.prices
        self.sp = job.source_prices or job.prices  # the source side's region: reads, exports
        self.notes: List[str] = job.assumptions
        self.missing: List[str] = []  # prices asked for and not in the prices file (see cost())
        self.missing_regions: Dict[str, str] = {}  # missing price -> the region it is missing for

    # units of the whole job (scaled from the sample)
    def write_units(self) -> Dict[str, float]:
        out = {name: u * self.k for name, u in self.job.stats.units.items()}
        out = {n: (float(round(v)) if abs(v - round(v)) < 1e-9 else v) for n, v in out.items()}
        out["total"] = sum(out.values())
        return out

    def entry_bytes(self) -> Dict[str, float]:
        out = {name: b * self.k for name, b in self.job.stats.entry_bytes.items()}
        out["total"] = sum(out.values())
        return out

    def scan_read_units(self) -> float:
        return read_units(self.job.source_bytes, self.job.consistent_read)

    def out_bytes(self) -> float:
        return self.job.stats.output_bytes * self.k

    def import_bytes(self) -> float:
        """What ImportTable bills and reads: the uncompressed size of its input in S3 - the files'
        when known, else the export's DynamoDB JSON lines (one ``{"Item":...}`` per output item)."""
        if self.job.import_source_bytes is not None:
            return self.job.import_source_bytes
        return self.job.stats.json_line_bytes * self.k

    def output_items(self) -> float:
        return self.job.stats.outputs * self.k

    def price(self, name: str, tier: Optional[str] = None, prices: Optional[Prices] = None) -> Optional[float]:
        return (prices or self.p).rate(name, tier)

    def cost(self, quantity: float, name: str, per: float = 1.0, tier: Optional[str] = None,
             prices: Optional[Prices] = None) -> Optional[float]:
        """``quantity / per × price``; None (and the price named in :meth:`take_missing`) when the
        price is unknown, so a missing price never reads as free. Nothing to pay needs no price.
        ``prices``: another region's (the source's), else the target's."""
        if quantity <= 0:
            return 0.0
        pr = prices or self.p
        price = pr.rate(name, tier)
        if price is None:
            label = f"{name}.{tier}" if tier else name
            if label not in self.missing:
                self.missing.append(label)
            self.missing_regions[label] = pr.rates_region or pr.region
            return None
        return quantity / per * price

    def take_missing(self) -> List[str]:
        out, self.missing = self.missing, []
        return out

    def take_missing_regions(self, missing: List[str]) -> Dict[str, str]:
        return {m: self.missing_regions[m] for m in missing if m in self.missing_regions}

    def cost_units(self, read: float, write: float, read_mode: str,
                   write_mode: str) -> Tuple[Optional[float], Optional[float], Optional[float], Optional[float]]:
        """(read cost, write cost) at the tables' own billing modes, then (all on-demand, all provisioned)."""
        sp = self.sp  # reads are billed where the source is, writes where the target is
        od_r, od_w = (self.cost(read, "on_demand_read_per_million", 1e6, prices=sp),
                      self.cost(write, "on_demand_write_per_million", 1e6))
        pr_r, pr_w = (self.cost(read, "provisioned_rcu_hour", 3600.0, prices=sp),
                      self.cost(write, "provisioned_wcu_hour", 3600.0))
        chosen = [pr_r if read_mode == "PROVISIONED" else od_r, pr_w if write_mode == "PROVISIONED" else od_w]
        self.missing = [m for m in self.missing  # only the prices of the modes the tables use are missing
                        if (m.startswith("on_demand_read") and read_mode != "PROVISIONED")
                        or (m.startswith("on_demand_write") and write_mode != "PROVISIONED")
                        or (m.startswith("provisioned_rcu") and read_mode == "PROVISIONED")
                        or (m.startswith("provisioned_wcu") and write_mode == "PROVISIONED")
                        or not m.startswith(("on_demand_", "provisioned_"))]
        return chosen[0], chosen[1], add_costs(od_r, od_w), add_costs(pr_r, pr_w)

    def s3_put_cost(self, nbytes: float, prices: Optional[Prices] = None) -> Tuple[float, Optional[float]]:
        files = math.ceil(nbytes / self.p.assume("export_file_bytes")) + 4 if nbytes > 0 else 0  # + manifests
        return files, self.cost(files, "s3_put_per_1000", 1000.0, prices=prices)

    # time
    def client_rate(self) -> float:
        job = self.job
        if job.client_items_per_second:
            return job.client_items_per_second
        st = job.stats
        per_item = (st.cpu_seconds / st.source_items if st.source_items else 0.0) \
            + self.p.assume("client_base_cpu_seconds_per_item")
        cores = max(1, min(job.processes, os.cpu_count() or 1))
        return cores / per_item

    def hot_bounds(self, lane: Lane, units_scale: float = 1.0) -> Dict[str, float]:
        """Seconds each index's hottest partition key needs at one partition's write limit."""
        limit = self.p.assume("partition_write_units")
        out: Dict[str, float] = {}
        lsis = [s.name for s in self.job.stats.shapes if s.kind == "LSI"]
        for name, spread in self.job.stats.spread.items():
            if name in lsis:
                continue  # an LSI entry lives in its table item's partition: counted with the table's key
            hot = spread.hottest()
            if hot is None:
                continue
            units = float(hot[1][0])
            if name == "table":
                units += sum(self.job.stats.spread[n].values.get(hot[0], [0])[0] for n in lsis)
            out[f"hot key {name}"] = units * self.k * units_scale / limit
        return out

    def write_bounds(self, units: Mapping[str, float], target: Side) -> Dict[str, float]:
        job = self.job
        desc = target.desc or {}
        bounds: Dict[str, float] = {}
        table_cap = capacity(desc, target.billing, "write", self.p, self.notes, f"target {target.label}")
        user = capacity_limit(desc, job.max_write_units, job.write_percent, "write")
        # LSI writes are the table's own capacity (same partitions).
        lsi = sum(v for n, v in units.items() if n != "total" and self._kind(n) == "LSI")
        if units.get("table", 0) + lsi > 0:
            bounds["target table capacity"] = (units.get("table", 0) + lsi) / table_cap
        total = sum(v for n, v in units.items() if n != "total")
        if user and total > 0:
            # The engine's limiter counts every consumed write unit (ReturnConsumedCapacity TOTAL:
            # the table and each index), so the cap bounds their sum, not the table's share.
            what = "--max-write-units" if job.max_write_units else "--write-percent"
            bounds[f"write limit ({what})"] = total / user
        for n, v in units.items():
            if n in ("table", "total") or self._kind(n) != "GSI" or v <= 0:
                continue
            g = _gsi_desc(desc, n)
            cap = capacity(g, target.billing, "write", self.p, self.notes, f"GSI {n}")
            bounds[f"GSI {n} capacity"] = v / cap
        return bounds

    def _kind(self, name: str) -> str:
        for s in self.job.stats.shapes:
            if s.name == name:
                return s.kind
        return "table"

    def settle(self, lane: Lane) -> None:
        if not lane.bounds:
            lane.duration_s, lane.limited_by = 0.0, None
            return
        name, secs = max(lane.bounds.items(), key=lambda kv: kv[1])
        # nothing to do (an empty table) takes 0 s, limited by nothing
        lane.duration_s, lane.limited_by = secs, (name if secs > 0 else None)
