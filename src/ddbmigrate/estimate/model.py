"""From a sample and the tables' settings to units, dollars and seconds, for every lane.

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


def usd(v: Optional[float]) -> str:
    """Dollars with cents, or with significant digits below a dollar ($0.000030)."""
    if v is None:
        return "unknown"
    if v >= 1 or v <= 0:
        return f"${v:,.2f}"
    decimals = max(4, 1 - math.floor(math.log10(v)))
    return f"${v:.{decimals}f}"


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
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
    prices: Prices
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
    files_in_s3: bool = False
    tier: str = "STANDARD"
    cross_region_or_account: bool = False
    client_items_per_second: Optional[float] = None  # injected in tests; else measured
    assumptions: List[str] = field(default_factory=list)


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
            "notes": self.notes,
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


class _Calc:
    def __init__(self, job: Job) -> None:
        self.job = job
        st = job.stats
        self.k = (job.source_items / st.source_items) if st.source_items else 0.0
        self.p = job.prices
        self.notes: List[str] = job.assumptions

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

    def output_items(self) -> float:
        return self.job.stats.outputs * self.k

    def price(self, name: str, tier: Optional[str] = None) -> Optional[float]:
        return self.p.rate(name, tier)

    def cost_units(self, read: float, write: float, read_mode: str, write_mode: str) -> Tuple[Optional[float], float, float]:
        """(cost by the tables' own billing modes, all on-demand, all provisioned)."""
        rr, wr = self.price("on_demand_read_per_million") or 0.0, self.price("on_demand_write_per_million") or 0.0
        rh, wh = self.price("provisioned_rcu_hour") or 0.0, self.price("provisioned_wcu_hour") or 0.0
        od_r, od_w = read / 1e6 * rr, write / 1e6 * wr
        pr_r, pr_w = read / 3600.0 * rh, write / 3600.0 * wh
        actual = (pr_r if read_mode == "PROVISIONED" else od_r) + (pr_w if write_mode == "PROVISIONED" else od_w)
        return actual, od_r + od_w, pr_r + pr_w

    def s3_put_cost(self, nbytes: float) -> Tuple[float, float]:
        files = math.ceil(nbytes / self.p.assume("export_file_bytes")) + 4 if nbytes > 0 else 0  # + manifests
        return files, files / 1000.0 * (self.price("s3_put_per_1000") or 0.0)

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
        for name, spread in self.job.stats.spread.items():
            hot = spread.hottest()
            if hot is None:
                continue
            units = hot[1][0] * self.k * units_scale
            out[f"hot key {name}"] = units / limit
        return out

    def write_bounds(self, units: Mapping[str, float], target: Side) -> Dict[str, float]:
        job = self.job
        desc = target.desc or {}
        bounds: Dict[str, float] = {}
        table_cap = capacity(desc, target.billing, "write", self.p, self.notes, f"target {target.label}")
        user = capacity_limit(desc, job.max_write_units, job.write_percent, "write")
        if user:
            table_cap = min(table_cap, user)
        # LSI writes are the table's own capacity (same partitions).
        lsi = sum(v for n, v in units.items() if n != "total" and self._kind(n) == "LSI")
        if units.get("table", 0) + lsi > 0:
            bounds["target table capacity"] = (units.get("table", 0) + lsi) / table_cap
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
        lane.duration_s, lane.limited_by = secs, name


def _engine_lane(c: _Calc) -> Lane:
    job = c.job
    lane = Lane(ENGINE, "ddbmigrate engine (scan -> transform -> batch write)" if job.kind != "export"
                else "ddbmigrate engine (scan -> files)", True)
    read = c.scan_read_units() if job.kind != "import" else 0.0
    if job.kind != "import":
        lane.read_units = {"table": read, "total": read}
        lane.needs.append("dynamodb:Scan and DescribeTable on the source")
    else:
        lane.read_units = {"total": 0.0}
        lane.needs.append("read access to the input files (s3:GetObject, s3:ListBucket for s3://)")
    write_mode = "PAY_PER_REQUEST"
    if job.kind == "export":
        lane.write_units = {"total": 0.0}
        files, put_cost = c.s3_put_cost(c.out_bytes())
        lane.cost_parts["s3 requests"] = put_cost
        lane.notes.append(f"about {files:,.0f} S3 objects written")
        lane.consumes_capacity = True
        write = 0.0
    else:
        assert job.target is not None
        lane.write_units = c.write_units()
        write = lane.write_units["total"]
        write_mode = job.target.billing
        lane.needs.append("dynamodb:BatchWriteItem and DescribeTable on the target")
        lane.bytes_written = c.entry_bytes()
    read_mode = job.source.billing if job.source is not None else "PAY_PER_REQUEST"
    actual, od, prov = c.cost_units(read, write, read_mode, write_mode)
    extra = sum(v for v in lane.cost_parts.values() if v is not None)
    if job.kind == "import" and job.files_in_s3:
        gets = job.files / 1000.0 * (c.price("s3_get_per_1000") or 0.0)
        lane.cost_parts["s3 requests"] = gets
        extra += gets
    read_cost = (read / 1e6 * (c.price("on_demand_read_per_million") or 0.0) if read_mode != "PROVISIONED"
                 else read / 3600.0 * (c.price("provisioned_rcu_hour") or 0.0))
    write_cost = (write / 1e6 * (c.price("on_demand_write_per_million") or 0.0) if write_mode != "PROVISIONED"
                  else write / 3600.0 * (c.price("provisioned_wcu_hour") or 0.0))
    lane.cost_parts["read units"] = read_cost
    lane.cost_parts["write units"] = write_cost
    lane.cost_usd = (actual or 0.0) + extra
    lane.cost_on_demand_usd = od + extra
    lane.cost_provisioned_usd = prov + extra
    # time
    if job.source is not None and read > 0:
        cap = capacity(job.source.desc, job.source.billing, "read", c.p, c.notes, f"source {job.source.label}")
        user = capacity_limit(job.source.desc or {}, job.max_read_units, job.read_percent, "read")
        if user:
            cap = min(cap, user)
        segs = job.segments or _default_segments(job.source_bytes)
        cap = min(cap, segs * c.p.assume("partition_read_units"))
        lane.bounds["source read capacity"] = read / cap
    if job.target is not None and job.kind != "export":
        lane.bounds.update(c.write_bounds(lane.write_units, job.target))
        lane.bounds.update(c.hot_bounds(lane))
    lane.bounds["this machine (CPU)"] = job.source_items / c.client_rate() if job.source_items else 0.0
    c.settle(lane)
    return lane


def _default_segments(nbytes: int) -> int:
    from ..sources.table_scan import default_segments

    return int(default_segments({"TableSizeBytes": nbytes}))


def _managed_import_lane(c: _Calc) -> Lane:
    job = c.job
    lane = Lane(IMPORT_TABLE, "export -> ImportTable (creates a new table)", False, consumes_capacity=False)
    tgt_exists = job.target is not None and job.target.exists
    if job.kind not in ("copy", "import"):
        lane.why_not = "ImportTable does not follow a stream: use it for the backfill, then replicate --no-backfill"
    elif tgt_exists:
        lane.why_not = "the target exists, and ImportTable only creates new tables (see the bulk put lane)"
    elif job.target is not None and (job.target.desc or {}).get("LocalSecondaryIndexes"):
        lane.why_not = "ImportTable cannot create local secondary indexes"
    elif job.kind == "import" and job.transform:
        lane.why_not = "ImportTable loads the files as they are: a transform needs the engine (or export them transformed first)"
    elif job.kind == "import" and not job.files_in_s3:
        lane.why_not = "ImportTable reads S3: upload the files first"
    else:
        lane.available = True
    _managed_common(c, lane, import_gb=c.out_bytes() / GB)
    # The same writes as the engine's, for comparison; ImportTable bills them per GB, not as capacity.
    lane.write_units = c.write_units()
    lane.bytes_written = c.entry_bytes()
    if lane.available or lane.why_not:
        imp = c.price("import_per_gb")
        lane.cost_parts["ImportTable"] = None if imp is None else c.out_bytes() / GB * imp
        lane.bounds["ImportTable"] = c.p.assume("managed_startup_seconds") + \
            c.out_bytes() / GB / c.p.assume("import_table_gb_per_hour") * 3600
        lane.needs += ["dynamodb:ImportTable", "s3:GetObject and s3:ListBucket on the bucket",
                       "logs:CreateLogGroup/CreateLogStream/PutLogEvents (DynamoDB logs rejected items)"]
        lane.notes.append("ImportTable consumes no table capacity: billed per GB of uncompressed input")
    _sum_managed(c, lane)
    return lane


def _bulk_put_lane(c: _Calc) -> Lane:
    job = c.job
    tier = job.tier
    lane = Lane(BULK_PUT, f"export -> bulk put items ({tier}, existing table)", False, consumes_capacity=False)
    if job.kind not in ("copy", "import"):
        lane.why_not = "bulk put does not follow a stream: use it for the backfill, then replicate --no-backfill"
    elif job.target is None or not job.target.exists:
        lane.why_not = "the target does not exist yet (bulk put loads an existing table; see the ImportTable lane)"
    elif job.kind == "import" and job.transform:
        lane.why_not = "bulk put loads the files as they are: a transform needs the engine (or export them transformed first)"
    elif job.kind == "import" and not job.files_in_s3:
        lane.why_not = "bulk put reads S3: upload the files first"
    else:
        lane.available = True
    _managed_common(c, lane, import_gb=c.out_bytes() / GB)
    units = c.write_units()
    lane.write_units = units
    lane.bytes_written = c.entry_bytes()
    gb = lane.bytes_written["total"] / GB
    price = c.price("bulk_put_per_gb", tier)
    lane.cost_parts[f"bulk put ({tier})"] = None if price is None else gb * price
    if price is None:
        lane.notes.append(f"bulk put {tier} price unknown in the prices file ({c.p.date}): cost unknown; "
                          "give bulk_put_per_gb with --prices")
    rate = c.p.assume("bulk_put_write_units", tier)
    if job.max_write_units:
        rate = min(rate, max(1024.0, job.max_write_units))
    lane.bounds[f"bulk put {tier} rate"] = c.p.assume("managed_startup_seconds") + units["total"] / rate
    lane.bounds.update({k: v + c.p.assume("managed_startup_seconds") for k, v in c.hot_bounds(lane).items()})
    lane.needs += ["dynamodb:StartBulkPutItems, DescribeBulkOperation, CancelBulkOperation",
                   "s3:GetObject/ListBucket on the input, s3:PutObject on the failure-report prefix",
                   "a table that is not a global table"]
    lane.notes.append("bulk put is billed per GB written to the table and each index (BulkPutBytes), "
                      "not by the table's capacity")
    _sum_managed(c, lane)
    return lane


def _managed_common(c: _Calc, lane: Lane, import_gb: float) -> None:
    """The export step in front of a managed load: native (no transform) or ours (with one)."""
    job = c.job
    if job.kind == "import":
        lane.read_units = {"total": 0.0}
        return
    if job.transform:
        read = c.scan_read_units()
        lane.read_units = {"table": read, "total": read}
        mode = job.source.billing if job.source else "PAY_PER_REQUEST"
        cost = c.cost_units(read, 0.0, mode, "PAY_PER_REQUEST")[0]
        files, puts = c.s3_put_cost(c.out_bytes())
        lane.cost_parts["export (ddbmigrate, transformed)"] = (cost or 0.0) + puts
        cap = capacity((job.source.desc if job.source else None), mode, "read", c.p, c.notes,
                       f"source {job.source.label if job.source else ''}")
        lane.bounds["export (ddbmigrate)"] = read / cap if read else 0.0
        lane.needs.append("ddbmigrate export with the transform to S3 first")
    else:
        lane.read_units = {"table": 0.0, "total": 0.0}
        price = c.price("export_per_gb")
        lane.cost_parts["native export"] = None if price is None else job.source_bytes / GB * price
        lane.bounds["native export"] = c.p.assume("managed_startup_seconds") + \
            job.source_bytes / GB / c.p.assume("native_export_gb_per_hour") * 3600
        lane.needs += ["point-in-time recovery on the source (dynamodb:ExportTableToPointInTime)",
                       "an S3 bucket (s3:PutObject)"]


def _sum_managed(c: _Calc, lane: Lane) -> None:
    parts = list(lane.cost_parts.values())
    lane.cost_usd = None if any(v is None for v in parts) else sum(v for v in parts if v is not None)
    lane.cost_on_demand_usd = lane.cost_provisioned_usd = lane.cost_usd
    # The steps run one after the other: the export (or upload) first, then the load.
    steps = [k for k in lane.bounds if k.startswith(("native export", "export ("))]
    load = {k: v for k, v in lane.bounds.items() if k not in steps}
    first = sum(lane.bounds[k] for k in steps)
    if load:
        name, secs = max(load.items(), key=lambda kv: kv[1])
        lane.duration_s, lane.limited_by = first + secs, name
    else:
        c.settle(lane)


def _native_export_lane(c: _Calc) -> Lane:
    lane = Lane(NATIVE_EXPORT, "DynamoDB Export to S3 (native)", True, consumes_capacity=False)
    if c.job.transform:
        lane.available, lane.why_not = False, "a native export cannot transform items"
    _managed_common(c, lane, 0.0)
    lane.write_units = {"total": 0.0}
    _sum_managed(c, lane)
    return lane


def _replica_lane(c: _Calc, engine: Lane) -> Lane:
    job = c.job
    lane = Lane(REPLICA, "global-table replica (same schema, another region)", False, consumes_capacity=True)
    if job.transform:
        lane.why_not = "a replica has the same items and schema: no transform"
    elif not job.cross_region_or_account:
        lane.why_not = "source and target are in the same region and account"
    elif job.target is not None and job.target.exists:
        lane.why_not = "a replica is created by DynamoDB: the target must not exist"
    else:
        lane.available = True
    lane.write_units = dict(engine.write_units)
    rw = c.price("replicated_write_per_million")
    table_units = lane.write_units.get("table", 0.0)
    other = lane.write_units.get("total", 0.0) - table_units
    lane.cost_parts["replicated writes"] = None if rw is None else table_units / 1e6 * rw
    lane.cost_parts["index writes in the replica"] = other / 1e6 * (c.price("on_demand_write_per_million") or 0.0)
    lane.needs += ["UpdateTable ReplicaUpdates on the source (streams NEW_AND_OLD_IMAGES; on-demand or "
                   "auto-scaled writes)", "same account (cross-account needs the multi-account global tables setup)",
                   "afterwards: remove the replica relationship if the source is retired"]
    lane.notes.append("time is DynamoDB's (hours for large tables): not estimated")
    parts = list(lane.cost_parts.values())
    lane.cost_usd = None if any(v is None for v in parts) else sum(v for v in parts if v is not None)
    lane.cost_on_demand_usd = lane.cost_provisioned_usd = lane.cost_usd
    return lane


# --------------------------------------------------------------------------- hot keys and the whole


def hot_key_warnings(c: _Calc, engine: Lane) -> Tuple[Dict[str, Any], List[str]]:
    """Per index the key spread of the sample; warnings for keys that cap the writes."""
    keys: Dict[str, Any] = {}
    warnings: List[str] = []
    limit = c.p.assume("partition_write_units")
    others = [v for k, v in engine.bounds.items() if not k.startswith("hot key")]
    rest = max(others) if others else 0.0
    for name, spread in c.job.stats.spread.items():
        total_units = c.job.stats.units.get(name, 0)
        projected = c.job.stats.projected.get(name, 0)
        entry: Dict[str, Any] = {"attribute": spread.attribute, "distinct_values_in_sample": len(spread.values),
                                 "items_in_sample": projected, "hottest": None}
        hot = spread.hottest()
        if hot is not None and total_units:
            value, (units, outs, srcs) = hot
            unit_share = units / total_units
            item_share = outs / projected if projected else 0.0
            seconds = units * c.k / limit
            entry["hottest"] = {"value": value, "share_of_items": round(item_share, 4),
                                "share_of_write_units": round(unit_share, 4), "source_items": srcs,
                                "caps_writes_at_units_per_s": round(limit / unit_share, 1),
                                "min_duration_s": round(seconds, 1)}
            if item_share >= 0.1 or seconds >= rest:
                where = "the table" if name == "table" else name
                warnings.append(f"{spread.attribute}={value!r} holds {item_share * 100:.0f} % of items: {where} caps "
                                f"writes at {limit / unit_share:,.0f} WCU/s -> >= {fmt_duration(seconds)}")
        keys[name] = entry
    return keys, warnings


def estimate_job(job: Job, *, source_label: str = "", target_label: str = "") -> Estimate:
    """Every lane of ``job`` with its units, cost and duration."""
    c = _Calc(job)
    st = job.stats
    engine = _engine_lane(c)
    lanes = [engine]
    if job.kind in ("copy", "import", "replicate"):
        lanes += [_managed_import_lane(c), _bulk_put_lane(c)]
    if job.kind == "export":
        lanes.append(_native_export_lane(c))
    if job.kind in ("copy", "replicate"):
        lanes.append(_replica_lane(c, engine))
    if job.kind == "replicate":
        sp = c.price("stream_read_per_100k")
        engine.notes.append("the estimate covers the backfill; the stream then costs one write per change"
                            + (f" and ${sp} per 100,000 stream reads past the free tier" if sp else ""))
    keys, warnings = hot_key_warnings(c, engine) if job.kind != "export" else ({}, [])
    if st.errors:
        warnings.append(f"{st.errors} of {st.source_items} sampled items failed in the transform "
                        f"(e.g. {st.first_error}): they would be dead letters")
    inputs = {
        "source_items": job.source_items, "source_bytes": job.source_bytes,
        "sample": {"items": st.source_items, "outputs": st.outputs, "complete": st.complete,
                   "fan_out": round(st.outputs / st.source_items, 4) if st.source_items else None,
                   "drop_rate": round(st.dropped / st.source_items, 4) if st.source_items else None,
                   "transform_errors": st.errors,
                   "mean_source_item_bytes": round(st.source_bytes / st.source_items, 1) if st.source_items else None,
                   "mean_output_item_bytes": round(st.output_bytes / st.outputs, 1) if st.outputs else None,
                   "cpu_seconds": round(st.cpu_seconds, 4)},
        "transform": job.transform,
        "consistent_read": job.consistent_read,
    }
    for side, name in ((job.source, "source_table"), (job.target, "target_table")):
        if side is not None:
            d = side.desc or {}
            inputs[name] = {"name": side.label, "exists": side.exists, "billing_mode": side.billing,
                            "indexes": [s.name for s in (st.shapes if name == "target_table" else [])
                                        if s.name != "table"],
                            "item_count": d.get("ItemCount"), "size_bytes": d.get("TableSizeBytes")}
    assumptions = list(dict.fromkeys(job.assumptions + c.p.notes + [
        "write units: 1 per started KB per item, plus one write per GSI/LSI that projects the item "
        "(an overwrite that changes an index key costs a delete too: not counted)",
        "read units: 1 per started 4 KB of scanned data, half for eventually consistent scans",
        "managed lanes' speeds (export, ImportTable, bulk put) are assumptions from the prices file, "
        "not AWS figures",
    ]))
    return Estimate(job=job.kind, source=source_label, target=target_label, region=c.p.region,
                    prices=c.p.describe(), inputs=inputs, keys=keys, lanes=lanes, warnings=warnings,
                    assumptions=assumptions)
