"""The lanes: what each way of doing the job costs and how long it takes, and the whole estimate.

One function per lane (our engine; export -> ImportTable; export -> bulk put; native export; a
global-table replica), each from the same scaled sample (:class:`~.model.Calc`), then
:func:`estimate_job` puts them together with the key spread and the hot-key warnings. The
formulas are in :mod:`.model`'s docstring and ``docs/estimate.md``.

Invariant: a lane that cannot do the job says why (``why_not``) and still shows what it would
cost, so the choice is visible; an unknown price leaves its cost None.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

from ..aws.capacity import capacity_limit
from ..errors import UsageError
from .model import (
    BULK_PUT,
    ENGINE,
    GB,
    IMPORT_TABLE,
    NATIVE_EXPORT,
    REPLICA,
    Calc,
    Estimate,
    Job,
    Lane,
    add_costs,
    capacity,
    fmt_duration,
)
from .sample import index_shapes


def bulk_put_price_note(region: str, tier: str, date: str) -> str:
    """Why a bulk put cost is unknown, and how to give the price."""
    return (f"bulk put {tier} price unknown: AWS had published no per-GB bulk put price in the sources of the "
            f"prices file ({date}), so bulk_put_per_gb.{tier} is null for {region} and the cost is unknown. "
            f"Give it with --prices FILE holding "
            f'{{"regions": {{"{region}": {{"bulk_put_per_gb": {{"{tier}": <USD per GB>}}}}}}}}')


def _take_missing(c: Calc, lane: Lane) -> None:
    lane.missing_prices = c.take_missing()
    lane.missing_regions = c.take_missing_regions(lane.missing_prices)


def _engine_lane(c: Calc) -> Lane:
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
        if job.files_in_s3:
            files, put_cost = c.s3_put_cost(c.out_bytes(), c.sp)
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
    if job.kind == "import" and job.files_in_s3:
        lane.cost_parts["s3 requests"] = c.cost(job.files, "s3_get_per_1000", 1000.0)
    extra = add_costs(*lane.cost_parts.values())
    read_cost, write_cost, od, prov = c.cost_units(read, write, read_mode, write_mode)
    lane.cost_parts["read units"] = read_cost
    lane.cost_parts["write units"] = write_cost
    lane.cost_usd = add_costs(read_cost, write_cost, extra)
    lane.cost_on_demand_usd = add_costs(od, extra)
    lane.cost_provisioned_usd = add_costs(prov, extra)
    _take_missing(c, lane)
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


def _managed_import_lane(c: Calc) -> Lane:
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
    _managed_common(c, lane)
    # The same writes as the engine's, for comparison; ImportTable bills them per GB, not as capacity.
    lane.write_units = c.write_units()
    lane.bytes_written = c.entry_bytes()
    # AWS bills ImportTable by the uncompressed size of its S3 input (DynamoDB JSON lines, with
    # the "Item" wrapper and attribute type tags), well above the items' DynamoDB size.
    source_gb = c.import_bytes() / GB
    lane.cost_parts["ImportTable"] = c.cost(source_gb, "import_per_gb")
    lane.bounds["ImportTable"] = c.p.assume("managed_startup_seconds") + \
        source_gb / c.p.assume("import_table_gb_per_hour") * 3600
    lane.needs += ["dynamodb:ImportTable", "s3:GetObject and s3:ListBucket on the bucket",
                   "logs:CreateLogGroup/CreateLogStream/PutLogEvents (DynamoDB logs rejected items)"]
    lane.notes.append(f"ImportTable consumes no table capacity: billed per GB (GiB) of uncompressed input "
                      f"({c.import_bytes():,.0f} bytes" + (")" if job.import_source_bytes is not None else
                                                           " as DynamoDB JSON lines, estimated from the sample)"))
    _sum_managed(c, lane)
    return lane


def _bulk_put_lane(c: Calc) -> Lane:
    job = c.job
    tier = job.tier
    lane = Lane(BULK_PUT, f"export -> bulk put items ({tier}, existing table)", False, consumes_capacity=False)
    if job.kind not in ("copy", "import"):
        lane.why_not = "bulk put does not follow a stream: use it for the backfill, then replicate --no-backfill"
    elif job.target is None or not job.target.exists:
        lane.why_not = "the target does not exist yet (bulk put loads an existing table; see the ImportTable lane)"
    elif (job.target.desc or {}).get("Replicas"):
        lane.why_not = "the target is a global table, which bulk put cannot load"
    elif job.kind == "import" and job.transform:
        lane.why_not = "bulk put loads the files as they are: a transform needs the engine (or export them transformed first)"
    elif job.kind == "import" and not job.files_in_s3:
        lane.why_not = "bulk put reads S3: upload the files first"
    else:
        lane.available = True
    _managed_common(c, lane)
    units = c.write_units()
    lane.write_units = units
    lane.bytes_written = c.entry_bytes()
    gb = lane.bytes_written["total"] / GB
    lane.cost_parts[f"bulk put ({tier})"] = c.cost(gb, "bulk_put_per_gb", tier=tier)
    if c.price("bulk_put_per_gb", tier) is None:
        lane.notes.append(bulk_put_price_note(c.p.region, tier, c.p.date))
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
    if job.staged_condition:
        # --condition: every input object is read and written once more (the staged copy), by this machine.
        lane.cost_parts["staged copy (S3 requests)"] = add_costs(c.cost(job.files, "s3_get_per_1000", 1000.0),
                                                                 c.cost(job.files, "s3_put_per_1000", 1000.0))
        lane.needs.append("s3:PutObject/DeleteObject on the staging prefix (--condition)")
        lane.notes.append(f"--condition: the {job.files:,} input object(s) are first copied with the condition in "
                          "every record (read and written once through this machine: time not counted; "
                          "S3 storage of the copy while it runs not counted)")
    _sum_managed(c, lane)
    return lane


def _managed_common(c: Calc, lane: Lane) -> None:
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
        _files, puts = c.s3_put_cost(c.out_bytes(), c.sp)
        lane.cost_parts["export (ddbmigrate, transformed)"] = add_costs(cost, puts)
        cap = capacity((job.source.desc if job.source else None), mode, "read", c.p, c.notes,
                       f"source {job.source.label if job.source else ''}")
        lane.bounds["export (ddbmigrate)"] = read / cap if read else 0.0
        lane.needs.append("ddbmigrate export with the transform to S3 first")
    else:
        lane.read_units = {"table": 0.0, "total": 0.0}
        lane.cost_parts["native export"] = c.cost(job.source_bytes / GB, "export_per_gb", prices=c.sp)
        lane.bounds["native export"] = c.p.assume("managed_startup_seconds") + \
            job.source_bytes / GB / c.p.assume("native_export_gb_per_hour") * 3600
        lane.needs += ["point-in-time recovery on the source (dynamodb:ExportTableToPointInTime)",
                       "an S3 bucket (s3:PutObject)"]


def _sum_managed(c: Calc, lane: Lane) -> None:
    lane.cost_usd = add_costs(*lane.cost_parts.values())
    _take_missing(c, lane)
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


def _native_export_lane(c: Calc) -> Lane:
    lane = Lane(NATIVE_EXPORT, "DynamoDB Export to S3 (native)", True, consumes_capacity=False)
    if c.job.transform:
        lane.available, lane.why_not = False, "a native export cannot transform items"
    _managed_common(c, lane)
    lane.write_units = {"total": 0.0}
    _sum_managed(c, lane)
    return lane


def _replica_lane(c: Calc, engine: Lane) -> Lane:
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
    # DynamoDB copies the items into the replica: no Scan of ours (the same keys as every lane's)
    lane.read_units = {"table": 0.0, "total": 0.0}
    table_units = lane.write_units.get("table", 0.0)
    other = lane.write_units.get("total", 0.0) - table_units
    lane.cost_parts["replicated writes"] = c.cost(table_units, "replicated_write_per_million", 1e6)
    lane.cost_parts["index writes in the replica"] = c.cost(other, "on_demand_write_per_million", 1e6)
    lane.needs += ["UpdateTable ReplicaUpdates on the source (streams NEW_AND_OLD_IMAGES; on-demand or "
                   "auto-scaled writes)", "same account (cross-account needs the multi-account global tables setup)",
                   "afterwards: remove the replica relationship if the source is retired"]
    lane.notes.append("time is DynamoDB's (hours for large tables): not estimated")
    lane.cost_usd = add_costs(*lane.cost_parts.values())
    lane.cost_on_demand_usd = lane.cost_provisioned_usd = lane.cost_usd
    _take_missing(c, lane)
    return lane


# --------------------------------------------------------------------------- hot keys and the whole


def hot_key_warnings(c: Calc, engine: Lane) -> Tuple[Dict[str, Any], List[str]]:
    """Per index the key spread of the sample; warnings for keys that cap the writes."""
    keys: Dict[str, Any] = {}
    warnings: List[str] = []
    limit = c.p.assume("partition_write_units")
    others = [v for k, v in engine.bounds.items() if not k.startswith("hot key")]
    rest = max(others) if others else 0.0
    kinds = {sh.name: sh.kind for sh in c.job.stats.shapes}
    has_lsi = "LSI" in kinds.values()
    for name, spread in c.job.stats.spread.items():
        total_units = c.job.stats.units.get(name, 0)
        projected = c.job.stats.projected.get(name, 0)
        entry: Dict[str, Any] = {"attribute": spread.attribute, "sort_key": spread.sort_attribute,
                                 "distinct_values_in_sample": len(spread.values),
                                 "items_in_sample": projected, "hottest": None}
        hot = spread.hottest()
        if hot is not None and total_units:
            value, (units, outs, srcs) = hot
            unit_share = units / total_units
            item_share = outs / projected if projected else 0.0
            seconds = units * c.k / limit
            sorts = len(spread.sort_values.get(value, ()))
            split = split_for_heat(kinds.get(name, "table"), spread.sort_attribute, sorts, has_lsi)
            entry["hottest"] = {"value": value, "share_of_items": round(item_share, 4),
                                "share_of_write_units": round(unit_share, 4), "source_items": srcs,
                                "caps_writes_at_units_per_s": round(limit / unit_share, 1),
                                "min_duration_s": round(seconds, 1),
                                "distinct_sort_keys_in_sample": sorts if spread.sort_attribute else None,
                                "split_for_heat": split}
            if item_share >= 0.1 or seconds >= rest:
                where = "the table" if name == "table" else name
                warnings.append(f"{spread.attribute}={value!r} holds {item_share * 100:.0f} % of items: {where} caps "
                                f"writes at {limit / unit_share:,.0f} WCU/s → ≥ {fmt_duration(seconds)}")
                if split.startswith("possible"):
                    engine.notes.append(f"hot key {spread.attribute}={value!r} ({where}): {split}")
        keys[name] = entry
    return keys, warnings


def _check_finite(lane: Lane) -> None:
    """A UsageError (exit 2, one line) naming the first figure of ``lane`` that is not a finite
    number. Only out-of-range inputs make one (``--max-write-units 1e-320``, a ``--prices`` figure
    of 1e-320 GB/h or a price of 1e308): shown, an infinite time was an OverflowError (exit 1), an
    infinite cost "$inf" (and null in the JSON, which means an unknown price)."""
    figures: List[Tuple[str, Optional[float]]] = [("cost", lane.cost_usd), ("on-demand cost", lane.cost_on_demand_usd),
                                                  ("provisioned cost", lane.cost_provisioned_usd)]
    figures += [(f"cost of {k}", v) for k, v in lane.cost_parts.items()]
    figures += [(f"time bound {k!r}", v) for k, v in lane.bounds.items()]
    figures += [(f"write units ({k})", v) for k, v in lane.write_units.items()]
    figures += [(f"read units ({k})", v) for k, v in lane.read_units.items()]
    figures += [(f"bytes written ({k})", v) for k, v in lane.bytes_written.items()]
    figures.append(("time", lane.duration_s))
    for what, v in figures:
        if v is not None and not math.isfinite(v):
            raise UsageError(f"estimate: the {what} of the lane {lane.title!r} is {v}, not a finite number: an input "
                             "is out of range (an option such as --max-write-units or --max-read-units, a --prices "
                             "price or throughput figure, or the table's reported size)")


def split_for_heat(kind: str, sort_attr: Optional[str], distinct_sorts: int, has_lsi: bool) -> str:
    """Whether DynamoDB could spread one hot partition-key value over several partitions.

    Items are placed by the hash of their partition key, so one value starts in one partition
    (1,000 WCU/s). Adaptive capacity can split a partition for heat by sort-key range, which only
    helps a value with many sort keys, and not in a table with an LSI (its item collections stay
    whole in one partition). The estimate never counts on it: this is said, not modelled.
    """
    if kind == "LSI":
        return "not possible: an LSI entry lives in its table item's collection, which an LSI keeps whole"
    if not sort_attr:
        return "not possible: no sort key, every write of the value goes to one partition"
    if kind == "table" and has_lsi:
        return "not possible: the table has a local secondary index, so an item collection is never split"
    if distinct_sorts < 2:
        return f"not possible: one {sort_attr} value under it in the sample"
    return (f"possible, not counted: {distinct_sorts} distinct {sort_attr} values under it in the sample, so "
            "DynamoDB may split it for heat by sort-key range after minutes of sustained load (not when "
            f"{sort_attr} only grows, e.g. timestamps written in order); the bound above assumes one partition")


def estimate_job(job: Job, *, source_label: str = "", target_label: str = "") -> Estimate:
    """Every lane of ``job`` with its units, cost and duration."""
    c = Calc(job)
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
        sp = c.price("stream_read_per_100k", prices=c.sp)  # the stream is the source's
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
                   "cpu_seconds": round(st.cpu_seconds, 4), "read_units_consumed": round(st.read_units, 2)},
        "transform": job.transform,
        "consistent_read": job.consistent_read,
    }
    for side, name in ((job.source, "source_table"), (job.target, "target_table")):
        if side is not None:
            d = side.desc or {}
            # the target's shapes are the sample's; the source's come from its own description
            shapes = st.shapes if name == "target_table" else index_shapes(d) if d.get("KeySchema") else []
            inputs[name] = {"name": side.label, "exists": side.exists, "billing_mode": side.billing,
                            "indexes": [s.name for s in shapes if s.name != "table"],
                            "item_count": d.get("ItemCount"), "size_bytes": d.get("TableSizeBytes")}
    prices = c.p.describe()
    cross: List[str] = []
    if c.sp is not c.p:
        prices["source_side"] = c.sp.describe()
        cross.append(f"source and target are in different regions ({c.sp.region} -> {c.p.region}): reads and "
                     f"exports are priced at {c.sp.rates_region or c.sp.region} prices, writes and loads at "
                     f"{c.p.rates_region or c.p.region} prices; inter-region data transfer (billed per GB by AWS) "
                     "is not priced: the prices file has no data transfer prices")
    assumptions = list(dict.fromkeys(job.assumptions + c.p.notes + (c.sp.notes if c.sp is not c.p else []) + cross + [
        "write units: 1 per started KB per item, plus one write per GSI/LSI that projects the item "
        "(an overwrite that changes an index key costs a delete too: not counted)",
        "read units: 1 per started 4 KB of scanned data, half for eventually consistent scans",
        "managed lanes' speeds (export, ImportTable, bulk put) are assumptions from the prices file, "
        "not AWS figures",
        "hot keys: DynamoDB places items by the hash of the partition key, so every write of one partition-key "
        "value (table or GSI) is counted against one partition's 1,000 WCU/s, whatever its sort keys; a split for "
        "heat by sort-key range (possible with a sort key and, on the table, no LSI) is not counted on",
    ]))
    for ln in lanes:
        _check_finite(ln)
    return Estimate(job=job.kind, source=source_label, target=target_label, region=c.p.region,
                    prices=prices, inputs=inputs, keys=keys, lanes=lanes, warnings=warnings,
                    assumptions=assumptions)
