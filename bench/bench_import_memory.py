"""Import memory: generate a large DynamoDB-JSON .json.gz file, import it, print the peak RSS.

    .venv/bin/python bench/bench_import_memory.py                 # ~1 GB uncompressed (the issue's case)
    .venv/bin/python bench/bench_import_memory.py --size-mb 50    # quick run
    .venv/bin/python bench/bench_import_memory.py --endpoint http://127.0.0.1:8000 --keep

The import runs as ``python -m ddbmigrate import FILE TABLE`` in a child process, so the peak
RSS printed (``ru_maxrss`` of the child) is the importer's own, not this script's nor DynamoDB
Local's. The target is a DynamoDB Local started here (in memory; ``--on-disk`` for ``-dbPath``,
which is much slower) unless ``--endpoint`` names another. The goal from issue 6 is a peak under
300 MB; the script prints the number and the verdict and never fails on it (numbers depend on
the machine).
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import orjson  # noqa: E402

from ddbmigrate.sources.generated import sample_item  # noqa: E402

GOAL_MB = 300


def generate(path: str, size_mb: int, item_size: int) -> int:
    """Write ``{"Item": ...}`` lines until ``size_mb`` MB of uncompressed JSON; returns the count."""
    target = size_mb * 1024 * 1024
    written = n = 0
    pool = [sample_item(i, size=item_size) for i in range(1000)]
    with gzip.open(path, "wb", compresslevel=1) as fh:
        while written < target:
            it = dict(pool[n % 1000])
            it["pk"] = {"S": f"user#{n:010d}"}
            line = b'{"Item":' + orjson.dumps(it) + b"}\n"
            fh.write(line)
            written += len(line)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024, help="uncompressed size of the generated file")
    ap.add_argument("--item-size", type=int, default=1000)
    ap.add_argument("--endpoint", help="DynamoDB endpoint (default: start DynamoDB Local on disk)")
    ap.add_argument("--on-disk", action="store_true", help="run DynamoDB Local with -dbPath instead of in memory")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the generated file and the table")
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_REGION", "us-east-1")

    work = tempfile.mkdtemp(prefix="ddbmigrate-bench-import-")
    path = os.path.join(work, "items.json.gz")
    t0 = time.monotonic()
    count = generate(path, args.size_mb, args.item_size)
    print(f"generated {count:,} items, {args.size_mb} MB uncompressed, {os.path.getsize(path) / 2**20:,.1f} MB "
          f"gzip in {time.monotonic() - t0:,.1f} s", flush=True)

    server = None
    endpoint = args.endpoint
    if endpoint is None:
        from ddbmigrate import dynamodb_local as local

        server = local.start(in_memory=not args.on_disk, db_path=os.path.join(work, "ddb") if args.on_disk else None,
                             heap="2g")
        endpoint = server.endpoint_url
    try:
        import boto3

        c = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        table = f"bench-import-{int(time.time())}"
        c.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                       AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                       KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        c.get_waiter("table_exists").wait(TableName=table)
        t1 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "ddbmigrate", "import", path, table, "--endpoint-url", endpoint,
                            "--writers", str(args.writers), "--progress", "off", "--quiet",
                            "--checkpoint", os.path.join(work, "ckpt.json")], cwd=work)
        took = time.monotonic() - t1
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KB on Linux
        print(f"import exit {r.returncode}: {count:,} items in {took:,.1f} s ({count / took:,.0f} items/s)")
        print(f"peak RSS of the importer: {peak_mb:,.1f} MB (goal < {GOAL_MB} MB: "
              f"{'met' if peak_mb < GOAL_MB else 'NOT met'})")
        if not args.keep:
            c.delete_table(TableName=table)
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
