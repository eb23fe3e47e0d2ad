"""Peak RSS of a copy against table size: is memory bounded by configuration, not by the table?

    python bench/bench_rss.py [--sizes 10000,100000,1000000,5000000] [--size 1000]
                              [--only ddbmigrate,ddbmigrate-transform]
                              [--json bench/results/rss-sweep.json]

One DynamoDB Local (in memory with a large heap by default; ``--on-disk`` uses ``-dbPath`` in a
temporary folder, about 7x slower here), one source table grown step by step to each size. At every size each
contender copies the whole source, as its own process, into a fresh table; the script reads
that process's peak RSS and CPU time (``wait4``), checks the target's ``ItemCount`` (exact on
DynamoDB Local) and the copy's own report, and drops the target again so the server's disk
stays small. Prints one markdown table and writes JSON.

Segments: 32, or one per 20,000 items above 640,000, because DynamoDB Local's Scan costs grow
with the size of a segment (a page of a 600,000-item segment takes seconds), which would make
the server, not the client, the whole story; the client's memory depends on its reader threads
(4 per CPU, at most 32), not on the number of segments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# run.py, imported first, puts src/ on the path and sets the benchmark's dummy credentials.
from run import IDENTITY, run_measured  # noqa: E402

from ddbmigrate import TableRef  # noqa: E402
from ddbmigrate import dynamodb_local as local  # noqa: E402
from ddbmigrate.aws.client import DynamoClient  # noqa: E402
from ddbmigrate.jobs.seed import create_sample_table, seed_table  # noqa: E402


def item_count(client: DynamoClient, table: str) -> int:
    # DynamoDB Local keeps ItemCount exact at all times (AWS refreshes it every ~6 hours); a
    # Select=COUNT scan of millions of items would take longer than the copy itself.
    return int(client.describe_table(table).get("ItemCount") or 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000,5000000")
    ap.add_argument("--size", type=int, default=1000, help="bytes per item (about)")
    ap.add_argument("--segments", type=int,
                    help="default: 32, or one per 20,000 items (DynamoDB Local's Scan slows with segment size)")
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--only", default="ddbmigrate,ddbmigrate-transform")
    ap.add_argument("--heap", default="8g", help="DynamoDB Local's Java heap")
    ap.add_argument("--on-disk", action="store_true", help="run DynamoDB Local with -dbPath (slower)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "rss-sweep.json"))
    a = ap.parse_args()
    sizes = sorted(int(s) for s in a.sizes.split(","))
    only = a.only.split(",")

    dbdir = tempfile.mkdtemp(prefix="ddbbench-db-")
    work = tempfile.mkdtemp(prefix="ddbbench-")
    server = local.start(db_path=dbdir if a.on_disk else None, in_memory=not a.on_disk, heap=a.heap)
    rows: List[Dict[str, Any]] = []
    try:
        c = DynamoClient(TableRef("bench-source", endpoint_url=server.endpoint_url), pool_size=16)
        create_sample_table(c, "bench-source")
        have = 0
        py = sys.executable
        for n in sizes:
            t0 = time.perf_counter()
            have += seed_table(c, "bench-source", n - have, size=a.size, start=have)
            print(f"source at {have:,} items (seeded in {time.perf_counter() - t0:.0f}s)", file=sys.stderr)
            for kind in only:
                dst = f"bench-{kind}-{n}"
                create_sample_table(c, dst)
                cmd = [py, "-m", "ddbmigrate", "copy", "bench-source", dst, "--endpoint-url", server.endpoint_url,
                       "--quiet", "--restart", "--segments", str(a.segments or max(32, n // 20_000)),
                       "--writers", str(a.writers)]
                if kind == "ddbmigrate-transform":
                    cmd += ["--transform", f"{IDENTITY}:identity"]
                elif kind != "ddbmigrate":
                    print(f"unknown contender {kind}", file=sys.stderr)
                    continue
                report_path = os.path.join(work, f"{dst}.json")
                m = run_measured(cmd + ["--report", report_path], cwd=work)
                copied = item_count(c, dst)
                try:
                    with open(report_path) as fh:
                        written = int(json.load(fh)["counters"].get("written", 0))
                except (OSError, ValueError, KeyError):
                    written = -1
                row = {"kind": kind, "items": n, "segments": a.segments or max(32, n // 20_000),
                       "copied": copied, "reported_written": written,
                       "complete": copied == n and written == n and m["code"] == 0,
                       "seconds": round(m["wall"], 1), "items_per_s": round(copied / m["wall"], 1),
                       "cpu_us_per_item": round(m["cpu"] / max(1, copied) * 1e6, 1),
                       "peak_rss_mb": round(m["rss_mb"], 1), "exit_code": m["code"]}
                rows.append(row)
                print(f"{kind} @ {n:,}: {row['peak_rss_mb']} MB peak RSS, {row['items_per_s']:,.0f} items/s, "
                      f"{row['cpu_us_per_item']} µs/item, complete={row['complete']}", file=sys.stderr)
                if m["code"] != 0:
                    print(m["stderr"][-500:], file=sys.stderr)
                c.call("DeleteTable", {"TableName": dst})
                _save(a.json, rows, a)
        print(render(rows))
        return 0 if all(r["complete"] for r in rows) else 1
    finally:
        server.stop()
        shutil.rmtree(dbdir, ignore_errors=True)


def _save(path: str, rows: List[Dict[str, Any]], a: argparse.Namespace) -> None:
    env = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "dynamodb_local_npm": local.NPM_VERSION, "item_size": a.size,
           "writers": a.writers,
           "server": f"DynamoDB Local {'on disk' if a.on_disk else 'in memory'}, -Xmx{a.heap}"}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"env": env, "rows": rows}, fh, indent=2)


def render(rows: List[Dict[str, Any]]) -> str:
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    sizes = sorted({r["items"] for r in rows})
    by = {(r["kind"], r["items"]): r for r in rows}
    lines = ["| items | " + " | ".join(f"{k} peak RSS MB (µs/item)" for k in kinds) + " |",
             "|---:|" + "---:|" * len(kinds)]
    for n in sizes:
        cells = []
        for k in kinds:
            r = by.get((k, n))
            cells.append("-" if r is None else f"{r['peak_rss_mb']:.0f} ({r['cpu_us_per_item']:.1f})"
                         + ("" if r["complete"] else " INCOMPLETE"))
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
