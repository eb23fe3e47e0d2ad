"""Copy throughput against workers: does it grow until the server is the limit?

    python bench/bench_scaling.py [--items 100000] [--workers 1,2,4,8,16] [--segments N] [--processes 2]
                                  [--json bench/results/scaling.json]

One DynamoDB Local, one seeded source. For each worker count W, ``ddbmigrate copy`` runs with
``--segments W --writers W`` (W segments read in parallel, W writer threads; ``--segments N``
keeps the segments fixed and varies writers only) into a fresh table; then once more with
``--processes P`` at the largest W (the segments spread over P worker processes, for when one
core's GIL is the limit). Note that DynamoDB Local's Scan cost grows with segment size, so with
few segments part of the gain is the server scanning smaller segments.

Each run is its own process: items/s,
client CPU per item and peak RSS are that process's. The server's own CPU time is sampled too
(from /proc), so a table can show where DynamoDB Local, not the client, became the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# run.py, imported first, puts src/ on the path and sets the benchmark's dummy credentials.
from run import count, run_measured  # noqa: E402

from ddbmigrate import TableRef  # noqa: E402
from ddbmigrate import dynamodb_local as local  # noqa: E402
from ddbmigrate.aws.client import DynamoClient  # noqa: E402
from ddbmigrate.jobs.seed import create_sample_table, seed_table  # noqa: E402


def proc_cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of ``pid`` so far (Linux /proc), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--workers", default="1,2,4,8,16")
    ap.add_argument("--segments", type=int, help="fixed segment count (default: W, as the writers)")
    ap.add_argument("--processes", type=int, default=2, help="also run the largest W over this many processes")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "scaling.json"))
    a = ap.parse_args()
    workers = [int(w) for w in a.workers.split(",")]

    server = local.start(heap="2g")
    work = tempfile.mkdtemp(prefix="ddbbench-")
    rows: List[Dict[str, Any]] = []
    try:
        c = DynamoClient(TableRef("bench-source", endpoint_url=server.endpoint_url), pool_size=16)
        create_sample_table(c, "bench-source")
        seed_table(c, "bench-source", a.items, size=a.size)
        runs = [(w, 1) for w in workers] + ([(max(workers), a.processes)] if a.processes > 1 else [])
        # Warm the server's JVM first, so the first measured run is not on a cold server.
        runs = [(max(workers), 0)] + runs
        py = sys.executable
        for w, procs in runs:
            dst = f"bench-scale-{w}-{procs}-{int(time.time())}"
            create_sample_table(c, dst)
            cmd = [py, "-m", "ddbmigrate", "copy", "bench-source", dst, "--endpoint-url", server.endpoint_url,
                   "--quiet", "--restart", "--segments", str(a.segments or w), "--writers", str(w)]
            if procs > 1:
                cmd += ["--processes", str(procs)]
            s0 = proc_cpu_seconds(server.pid or 0)
            m = run_measured(cmd, cwd=work)
            s1 = proc_cpu_seconds(server.pid or 0)
            copied = count(c, dst)
            c.call("DeleteTable", {"TableName": dst})
            if procs == 0:
                print("server warmed up", file=sys.stderr)
                continue
            row = {"workers": w, "segments": a.segments or w, "processes": procs, "items": copied,
                   "complete": copied == a.items and m["code"] == 0,
                   "seconds": round(m["wall"], 2), "items_per_s": round(copied / m["wall"], 1),
                   "client_cpu_us_per_item": round(m["cpu"] / max(1, copied) * 1e6, 1),
                   "client_cores": round(m["cpu"] / m["wall"], 2),
                   "server_cores": round((s1 - s0) / m["wall"], 2) if s0 is not None and s1 is not None else None,
                   "peak_rss_mb": round(m["rss_mb"], 1)}
            rows.append(row)
            print(f"W={w} P={procs}: {row['items_per_s']:,.0f} items/s, client {row['client_cores']} cores, "
                  f"server {row['server_cores']} cores", file=sys.stderr)
        env = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
               "dynamodb_local_npm": local.NPM_VERSION, "items": a.items, "item_size": a.size,
               "segments": a.segments}
        os.makedirs(os.path.dirname(a.json), exist_ok=True)
        with open(a.json, "w") as fh:
            json.dump({"env": env, "rows": rows}, fh, indent=2)
        print(render(rows))
        return 0 if all(r["complete"] for r in rows) else 1
    finally:
        server.stop()


def render(rows: List[Dict[str, Any]]) -> str:
    base = rows[0]["items_per_s"] if rows else 1.0
    lines = ["| segments = writers | processes | items/s | × 1 worker | client CPU µs/item | client cores | server cores |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['processes']} | {r['items_per_s']:,.0f} | {r['items_per_s'] / base:.2f} | "
                     f"{r['client_cpu_us_per_item']:.1f} | {r['client_cores']:.2f} | {r['server_cores'] or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
