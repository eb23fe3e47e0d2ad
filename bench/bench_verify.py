"""Verify throughput and memory: items/s and peak RSS, for growing N (RSS must not grow with N).

    .venv/bin/python bench/bench_verify.py                       # 200k items per side, engine only
    .venv/bin/python bench/bench_verify.py --million             # 1M items per side
    .venv/bin/python bench/bench_verify.py --sizes 50000,200000,1000000 --memory-mb 64
    .venv/bin/python bench/bench_verify.py --dynamodb --items 50000   # real scans of DynamoDB Local

Each size runs in a fresh child process, so its peak RSS (ru_maxrss) is its own. The default
"engine" mode feeds both sides from in-process generators (sample items of every type, ~1 KB,
with one difference in every 10,000 keys), which measures the comparison itself: key hashing,
spill to disk, partitioned compare. ``--dynamodb`` seeds two tables in DynamoDB Local (a
source, and a copy of it) and measures the full verify including the parallel scans. No
assertions: numbers depend on the machine; the RSS column is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from ddbmigrate.core.protocols import SourceBase  # noqa: E402
from ddbmigrate.core.items import KeySchema  # noqa: E402
from ddbmigrate.core.records import Chunk  # noqa: E402
from ddbmigrate.sources.generated import sample_item  # noqa: E402


class BenchSource(SourceBase):
    """``count`` items from a pool of 500 sample items with unique keys; ``mutate`` changes 1 in 10k."""

    def __init__(self, count: int, mutate: bool, per_unit: int = 20000, page: int = 500) -> None:
        self.count, self.mutate, self.per_unit, self.page = count, mutate, per_unit, page
        self.pool = [sample_item(i, size=1000) for i in range(500)]

    def units(self) -> List[str]:
        return [str(u) for u in range(0, self.count, self.per_unit)]

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        lo = int(unit)
        hi = min(self.count, lo + self.per_unit)
        for i in range(lo, hi, self.page):
            items = []
            for k in range(i, min(hi, i + self.page)):
                it = dict(self.pool[k % 500])
                it["pk"] = {"S": f"user#{k:09d}"}
                if self.mutate and k % 10000 == 7:
                    it["age"] = {"S": "changed"}
                items.append(it)
            yield Chunk(items=items, done=i + self.page >= hi)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def child(args: argparse.Namespace) -> Dict[str, Any]:
    from ddbmigrate.config import TableRef
    from ddbmigrate.verify import Side, verify_tables

    n = args.items
    t0 = time.perf_counter()
    if args.endpoint:
        rep = verify_tables(TableRef(args.source, endpoint_url=args.endpoint, region="us-east-1"),
                            TableRef(args.target, endpoint_url=args.endpoint, region="us-east-1"),
                            memory_mb=args.memory_mb, progress="off", segments=args.segments)
    else:
        ks = KeySchema("pk", "S")
        rep = verify_tables("bench-source", "bench-target", progress="off", memory_mb=args.memory_mb,
                            source_side=Side("generated", BenchSource(n, False), ks, n),
                            target_side=Side("generated", BenchSource(n, True), ks, n), readers=4)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime
    return {"items_per_side": n, "seconds": round(wall, 2), "items_per_s": round(2 * n / wall),
            "items_per_cpu_s": round(2 * n / cpu) if cpu else 0,
            "peak_rss_mb": round(peak_rss_mb(), 1), "differences": rep.differences, "equal": rep.equal,
            "partitions": rep.partitions, "spilled_mb": round(rep.spilled_bytes / 1e6, 1),
            "balanced": rep.balanced()}


def seed(n: int) -> Dict[str, Any]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    from ddbmigrate import dynamodb_local as local
    from ddbmigrate.aws.client import DynamoClient
    from ddbmigrate.config import RunOptions, TableRef
    from ddbmigrate.jobs.copy import copy_table
    from ddbmigrate.jobs.seed import create_sample_table, seed_table

    server = local.start()
    ep = server.endpoint_url
    src, dst = f"bench-src-{n}", f"bench-dst-{n}"
    c = DynamoClient(TableRef(src, endpoint_url=ep, region="us-east-1"))
    create_sample_table(c, src)
    t0 = time.perf_counter()
    seed_table(c, src, n, size=1000)
    copy_table(TableRef(src, endpoint_url=ep, region="us-east-1"), TableRef(dst, endpoint_url=ep, region="us-east-1"),
               RunOptions(progress="off", restart=True, checkpoint=f"/tmp/bench-verify-{n}.ckpt"), create_target=True)
    print(f"seeded and copied {n:,} items in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return {"server": server, "endpoint": ep, "source": src, "target": dst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000, help="items per side (default 200k)")
    ap.add_argument("--million", action="store_true", help="1,000,000 items per side")
    ap.add_argument("--sizes", help="comma-separated sizes to compare (e.g. 50000,200000,1000000)")
    ap.add_argument("--memory-mb", type=float, default=64, help="verify's memory budget (default 64)")
    ap.add_argument("--dynamodb", action="store_true", help="scan real tables in DynamoDB Local")
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [1_000_000 if args.million else args.items]
    rows = []
    for n in sizes:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--items", str(n),
               "--memory-mb", str(args.memory_mb), "--segments", str(args.segments)]
        ctx = None
        if args.dynamodb:
            ctx = seed(n)
            cmd += ["--endpoint", ctx["endpoint"], "--source", ctx["source"], "--target", ctx["target"]]
        try:
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=os.getcwd())
        finally:
            if ctx is not None:
                ctx["server"].stop()
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"verify, {'DynamoDB Local scans' if args.dynamodb else 'engine (generated sides)'}, "
          f"memory budget {args.memory_mb:g} MB, ~1 KB items\n")
    print("| items per side | seconds | items/s (both sides) | items per CPU-second | peak RSS MB | partitions "
          "| spilled MB | differences |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['items_per_side']:,} | {r['seconds']} | {r['items_per_s']:,} | {r['items_per_cpu_s']:,} | "
              f"{r['peak_rss_mb']} | "
              f"{r['partitions']} | {r['spilled_mb']} | {r['differences']} |")


if __name__ == "__main__":
    main()
