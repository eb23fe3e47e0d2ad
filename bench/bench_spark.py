"""Copy throughput: ``--engine spark`` (local Spark) against the local engine, same table.

    .venv/bin/python bench/bench_spark.py                          # 50k items of ~1 KB, local[2]
    .venv/bin/python bench/bench_spark.py --items 200000 --segments 16 --master 'local[4]'
    .venv/bin/python bench/bench_spark.py --json bench/results/spark.json

Starts one DynamoDB Local, seeds a source table with ``--items`` sample items (every type,
~``--size`` bytes), then copies it into fresh targets: once with the local engine (threads in
one process) and once per ``--master`` with the Spark engine (one scan segment per task), and
prints a markdown table of wall time and items/s. Spark start-up (JVM, Python workers) is
reported separately from the copy, since a cluster pays it once per application, not per job.

On one small machine the Spark engine is expected to be *slower* than the local engine: the
same work plus a JVM, Python worker processes and task scheduling. Spark pays off when the
executors are many machines, each with its own network path to DynamoDB. No assertions:
numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

from ddbmigrate import dynamodb_local as local  # noqa: E402
from ddbmigrate.aws.client import DynamoClient  # noqa: E402
from ddbmigrate.config import RunOptions, TableRef  # noqa: E402
from ddbmigrate.jobs.copy import copy_table  # noqa: E402
from ddbmigrate.jobs.seed import seed_table  # noqa: E402


def create(endpoint: str, name: str) -> None:
    import boto3

    c = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    c.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    c.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--master", action="append", help="Spark master(s) to run (default local[2]).")
    ap.add_argument("--json", help="Also write the results here.")
    args = ap.parse_args()
    masters = args.master or ["local[2]"]

    server = local.start()
    ep = server.endpoint_url
    rows: List[Dict[str, Any]] = []
    try:
        ref = lambda t: TableRef(t, endpoint_url=ep, region="us-east-1")  # noqa: E731
        create(ep, "bench-spark-src")
        t0 = time.perf_counter()
        seed_table(DynamoClient(ref("bench-spark-src")), "bench-spark-src", args.items, size=args.size)
        print(f"seeded {args.items:,} items in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        opts = RunOptions(segments=args.segments, progress="off")

        create(ep, "bench-spark-local")
        t0 = time.perf_counter()
        rep = copy_table(ref("bench-spark-src"), ref("bench-spark-local"), opts)
        wall = time.perf_counter() - t0
        rows.append({"engine": "local (threads)", "startup_s": 0.0, "copy_s": round(wall, 2),
                     "items_per_s": round(rep.written / wall, 1), "written": rep.written})

        for i, master in enumerate(masters):
            from pyspark import SparkConf, SparkContext

            from ddbmigrate.engine.spark import SparkEngine, SparkSettings

            t0 = time.perf_counter()
            sc = SparkContext.getOrCreate(SparkConf().setMaster(master).setAppName("bench")
                                          .set("spark.ui.enabled", "false")
                                          .set("spark.ui.showConsoleProgress", "false"))
            sc.setLogLevel("ERROR")
            sc.parallelize(range(4), 4).map(lambda x: x).collect()  # start the Python workers
            startup = time.perf_counter() - t0
            target = f"bench-spark-target-{i}"
            create(ep, target)
            t0 = time.perf_counter()
            rep = copy_table(ref("bench-spark-src"), ref(target), opts, engine=SparkEngine(SparkSettings()))
            wall = time.perf_counter() - t0
            sc.stop()
            rows.append({"engine": f"spark {master}", "startup_s": round(startup, 2), "copy_s": round(wall, 2),
                         "items_per_s": round(rep.written / wall, 1), "written": rep.written})
    finally:
        server.stop()

    print(f"\ncopy of {args.items:,} items (~{args.size} B), {args.segments} segments, one DynamoDB Local\n")
    print("| engine | start-up s | copy s | items/s | written |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['startup_s']:.1f} | {r['copy_s']:.1f} | {r['items_per_s']:,.0f} | "
              f"{r['written']:,} |")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"items": args.items, "size": args.size, "segments": args.segments, "rows": rows}, fh,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
