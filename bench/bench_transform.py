"""Transform overhead: copy with an identity transform vs no transform, on the same DynamoDB Local.

    .venv/bin/python bench/bench_transform.py [--items 20000] [--item-size 1000] [--repeat 1]

Starts its own DynamoDB Local (ddbmigrate.dynamodb_local.start()), seeds one source table with sample
items of every type, then copies it to fresh targets with and without ``--transform`` and prints
a markdown table: items/s and the client's CPU microseconds per item (this process only; the
server's CPU is not counted). A last row times the transform boundary alone (wire -> Python ->
user function -> wire) without any I/O. No assertions: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from ddbmigrate import dynamodb_local as local  # noqa: E402
from ddbmigrate.aws.client import DynamoClient  # noqa: E402
from ddbmigrate.config import RunOptions, TableRef  # noqa: E402
from ddbmigrate.jobs.copy import copy_table  # noqa: E402
from ddbmigrate.jobs.seed import create_sample_table, seed_table  # noqa: E402
from ddbmigrate.sources.generated import sample_item  # noqa: E402
from ddbmigrate.core.transform import TransformContext, load_transform  # noqa: E402

IDENTITY = "def identity(item):\n    return item\n"


def cpu_seconds() -> float:
    """User + system CPU of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_copy(endpoint: str, source: str, target: str, transform: Optional[str], segments: int) -> Tuple[float, float, int]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    opts = RunOptions(segments=segments, transform=transform, progress="off", restart=True,
                      checkpoint=os.path.join(tempfile.gettempdir(), f"bench-{target}.ckpt.json"))
    c0, t0 = cpu_seconds(), time.perf_counter()
    rep = copy_table(TableRef(source, endpoint_url=endpoint, region="us-east-1"),
                     TableRef(target, endpoint_url=endpoint, region="us-east-1"), opts, create_target=True)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if not rep.balanced() or rep.written != rep.read:
        raise SystemExit(f"copy to {target} did not write every item: {rep.counters}")
    return wall, cpu, rep.written


def boundary_only(transform_ref: str, n: int, size: int) -> Tuple[float, float]:
    """Time the transform boundary alone on ``n`` sample items (no I/O)."""
    tf = load_transform(transform_ref)
    ctx = TransformContext(source_table="bench")
    items = [sample_item(i, size=size) for i in range(min(n, 5000))]
    reps = max(1, n // len(items))
    c0, t0 = cpu_seconds(), time.perf_counter()
    for _ in range(reps):
        for it in items:
            tf(it, ctx)
    count = reps * len(items)
    return (time.perf_counter() - t0) / count, (cpu_seconds() - c0) / count


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000, help="source items (default 20000)")
    ap.add_argument("--item-size", type=int, default=1000, help="approximate item size in bytes")
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="copies per variant (the best is reported)")
    a = ap.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_REGION", "us-east-1")

    with tempfile.TemporaryDirectory() as tmp:
        ident = os.path.join(tmp, "ident.py")
        with open(ident, "w") as fh:
            fh.write(IDENTITY)
        ref = f"{ident}:identity"
        print(f"starting DynamoDB Local; seeding {a.items:,} items of ~{a.item_size} bytes ...", file=sys.stderr)
        with local.start() as server:
            ep = server.endpoint_url
            client = DynamoClient(TableRef("bench-source", endpoint_url=ep, region="us-east-1"))
            create_sample_table(client, "bench-source")
            seed_table(client, "bench-source", a.items, size=a.item_size)
            results: Dict[str, Tuple[float, float, int]] = {}
            for r in range(a.repeat):
                # Alternate the order so neither variant always runs on a warmer server.
                order = [("none", None), ("identity", ref)] if r % 2 == 0 else [("identity", ref), ("none", None)]
                for label, tf in order:
                    target = f"bench-{label}-{r}"
                    print(f"copy {label} -> {target} ...", file=sys.stderr)
                    got = run_copy(ep, "bench-source", target, tf, a.segments)
                    if label not in results or got[0] < results[label][0]:
                        results[label] = got
        per_item_wall, per_item_cpu = boundary_only(ref, a.items, a.item_size)

    print()
    print(f"Copy of {a.items:,} items (~{a.item_size} B, every type), {a.segments} segments, "
          f"DynamoDB Local, best of {a.repeat}; CPU is this client process only.")
    print()
    print("| variant | items/s | client CPU µs/item | wall s |")
    print("|---|---:|---:|---:|")
    for label in ("none", "identity"):
        wall, cpu, n = results[label]
        print(f"| copy, transform={label} | {n / wall:,.0f} | {cpu / n * 1e6:,.1f} | {wall:,.2f} |")
    print(f"| transform boundary only (no I/O) | {1 / per_item_wall:,.0f} | {per_item_cpu * 1e6:,.1f} | - |")
    none_cpu = results["none"][1] / results["none"][2]
    ident_cpu = results["identity"][1] / results["identity"][2]
    print()
    print(f"Identity transform overhead: {(ident_cpu - none_cpu) * 1e6:+,.1f} µs CPU per item "
          f"({(ident_cpu / none_cpu - 1) * 100:+.0f}% client CPU).")


if __name__ == "__main__":
    main()
