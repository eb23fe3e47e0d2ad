"""Capacity efficiency: how much of a table's write capacity a copy or import uses, and how much
of it is throttled, against the fault proxy's capacity model (testing/capacity.py).

    python bench/capacity.py [--items 30000] [--capacity 1500] [--partitions 4]

For copy and import (a gzip DYNAMODB_JSON export of the same table), each without rate options
on a table that says its capacity (``declared``: DescribeTable carries it, as a provisioned
table's WriteCapacityUnits do, and the job starts there), on one that does not (``found``: an
on-demand table's partition limits; the rate is found from throttles), and with
``--max-write-units`` set to the capacity (``limited``), it prints:
efficiency = accepted write units / (capacity x seconds), over the whole write phase and over
the steady state (after ``--settle`` seconds), the share of write calls with anything
throttled, and the share of write requests (the puts inside the calls) throttled. Results go
to bench/results/capacity.json. CAPACITY_TIMELINE=1 prints calls per second, CAPACITY_CALLS=F
writes every call (time, units sent, units admitted) to F, CAPACITY_LOG=F the job's debug log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from ddbmigrate import TableRef  # noqa: E402
from ddbmigrate import dynamodb_local as local  # noqa: E402
from ddbmigrate.aws.client import DynamoClient  # noqa: E402
from ddbmigrate.jobs.seed import create_sample_table, seed_table  # noqa: E402
from ddbmigrate.testing import FaultProxy, Faults  # noqa: E402
from ddbmigrate.testing.capacity import WriteCapacity  # noqa: E402


def run_case(endpoint: str, args: List[str], capacity: float, partitions: int, settle: float,
             dst: str, change: Any = None, declared: bool = True) -> Dict[str, Any]:
    """``change`` = (at seconds, new capacity): the table's capacity changes mid-run; the steady
    state is then measured from ``settle`` seconds after the change. ``declared``: DescribeTable
    says the capacity (a provisioned table) or not (on demand)."""
    whole = WriteCapacity(capacity, partitions=partitions, declared=declared)
    steady: Dict[str, Any] = {}
    with FaultProxy(endpoint, faults=Faults(capacity=whole)) as proxy:
        def take_steady() -> None:
            steady.update(whole.snapshot())
            whole.reset_stats()

        if change:
            threading.Timer(change[0], whole.set_units, args=(change[1],)).start()
        t = threading.Timer(settle + (change[0] if change else 0.0), take_steady)
        t.start()
        t0 = time.perf_counter()
        log = ["--log-level", "debug", "--log-file", os.environ["CAPACITY_LOG"]] if os.environ.get("CAPACITY_LOG") else []
        out = subprocess.run([sys.executable, "-m", "ddbmigrate", *args, "--endpoint-url", proxy.url, "--quiet", *log],
                             capture_output=True, text=True)
        wall = time.perf_counter() - t0
        t.cancel()
    if out.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(args)} exited {out.returncode}: {out.stderr[-1500:]}")
    late = whole.snapshot()
    first = steady or late
    total_units = first.get("accepted_units", 0) + (late["accepted_units"] if steady else 0)
    total_calls = first.get("write_calls", 0) + (late["write_calls"] if steady else 0)
    total_thr = first.get("throttled_calls", 0) + (late["throttled_calls"] if steady else 0)
    # Write requests (the puts and deletes inside the calls): DynamoDB's throttle events count these.
    thr_items = first.get("throttled_items", 0) + (late["throttled_items"] if steady else 0)
    ok_items = first.get("accepted_items", 0) + (late["accepted_items"] if steady else 0)
    if os.environ.get("CAPACITY_TIMELINE"):
        for sec in whole.timeline():
            print(json.dumps(sec), file=sys.stderr)
    if os.environ.get("CAPACITY_CALLS"):  # per call: seconds since the start, units sent, units admitted
        with open(os.environ["CAPACITY_CALLS"], "w") as fh:
            json.dump(list(whole.calls), fh)
    capacity_seconds = (capacity * min(wall, change[0]) + change[1] * max(0.0, wall - change[0]) if change
                        else capacity * wall)
    return {"seconds": round(wall, 2),
            "efficiency_whole": round(total_units / capacity_seconds, 3),
            "efficiency_steady": late["efficiency"] if steady else None,
            "throttled_calls_whole": round(total_thr / max(1, total_calls), 4),
            "throttled_requests_whole": round(thr_items / max(1, thr_items + ok_items), 4),
            "throttled_calls_steady": late["throttled_call_share"] if steady else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=30_000)
    ap.add_argument("--size", type=int, default=600)
    ap.add_argument("--capacity", type=float, default=1500.0, help="the table's write units per second")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds before the steady state is measured")
    ap.add_argument("--jobs", default="copy,import")
    ap.add_argument("--rates", default="declared,found,limited",
                    help="declared (no rate option, the table says its capacity), found (no rate option, it does "
                         "not) and/or limited (--max-write-units)")
    ap.add_argument("--change", default="8:750", help="AT:UNITS: one more copy whose table capacity changes to "
                    "UNITS at AT seconds (none: skip it)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "capacity.json"))
    a = ap.parse_args()
    server = local.start(heap="2g")
    rows: List[Dict[str, Any]] = []
    try:
        endpoint = server.endpoint_url
        c = DynamoClient(TableRef("cap-source", endpoint_url=endpoint), pool_size=16)
        create_sample_table(c, "cap-source")
        seed_table(c, "cap-source", a.items, size=a.size)
        work = tempfile.mkdtemp(prefix="ddbcap-")
        export = os.path.join(work, "export")
        subprocess.run([sys.executable, "-m", "ddbmigrate", "export", "cap-source", export, "--endpoint-url",
                        endpoint, "--quiet"], check=True, cwd=work)
        labels = {"declared": f"none given; the table declares {a.capacity:g}",
                  "found": "none given or declared: found", "limited": f"--max-write-units {a.capacity:g}"}
        rates = [r for r in a.rates.split(",") if r]
        for r in rates:
            if r not in labels:
                raise SystemExit(f"--rates: unknown {r!r} (declared, found, limited)")
        for job in a.jobs.split(","):
            for rate in rates:
                dst = f"cap-{job}-{rate}"
                create_sample_table(c, dst)
                src_arg = "cap-source" if job == "copy" else export
                args = [job, src_arg, dst, "--restart", "--checkpoint", os.path.join(work, dst + ".json")]
                if rate == "limited":
                    args += ["--max-write-units", str(a.capacity)]
                r = run_case(endpoint, args, a.capacity, a.partitions, a.settle, dst, declared=rate != "found")
                r.update({"job": job, "rate": labels[rate]})
                rows.append(r)
                print(json.dumps(r), file=sys.stderr)
        if a.change != "none" and "copy" in a.jobs.split(","):
            at, units = (float(x) for x in a.change.split(":"))
            for rate in [r for r in rates if r != "limited"]:
                dst = f"cap-copy-change-{rate}"
                create_sample_table(c, dst)
                args = ["copy", "cap-source", dst, "--restart", "--checkpoint", os.path.join(work, dst + ".json")]
                r = run_case(endpoint, args, a.capacity, a.partitions, a.settle, dst, change=(at, units),
                             declared=rate == "declared")
                r.update({"job": "copy", "rate": f"{labels[rate]}; capacity {a.capacity:g} -> {units:g} at {at:g} s"})
                rows.append(r)
                print(json.dumps(r), file=sys.stderr)
    finally:
        server.stop()
    env = {"items": a.items, "item_size": a.size, "capacity": a.capacity, "partitions": a.partitions,
           "settle_s": a.settle, "cpus": os.cpu_count(), "python": platform.python_version()}
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as fh:
        json.dump({"env": env, "rows": rows}, fh, indent=2)
    print(render(rows, env))
    return 0


def render(rows: List[Dict[str, Any]], env: Dict[str, Any]) -> str:
    out = [f"{env['items']:,} items of ~{env['item_size']} B, capacity {env['capacity']:g} WCU/s over "
           f"{env['partitions']} partitions (fault proxy model), steady state after {env['settle_s']:g} s", "",
           "| job | rate | seconds | efficiency (whole) | efficiency (steady) | throttled calls (whole) | "
           "throttled calls (steady) | throttled write requests (whole) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        steady = "-" if r["efficiency_steady"] is None else f"{r['efficiency_steady']:.0%}"
        thr = "-" if r["throttled_calls_steady"] is None else f"{r['throttled_calls_steady']:.1%}"
        out.append(f"| {r['job']} | {r['rate']} | {r['seconds']:.1f} | {r['efficiency_whole']:.0%} | {steady} | "
                   f"{r['throttled_calls_whole']:.1%} | {thr} | {r['throttled_requests_whole']:.1%} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
