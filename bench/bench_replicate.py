"""Replication lag and throughput under a sustained writer, against DynamoDB Local.

    .venv/bin/python bench/bench_replicate.py                       # 20 s at 300 writes/s
    .venv/bin/python bench/bench_replicate.py --rate 1000 --seconds 60 --seed-items 20000
    .venv/bin/python bench/bench_replicate.py --endpoint http://127.0.0.1:8000 --transform f.py:fn

A writer (several threads, paced to ``--rate`` operations per second: 50% puts, 35% updates,
15% deletes over a key space twice the seeded size) writes the source while ``replicate`` runs:
the backfill with the change journal filling, then the journal applied, then tailing. The
replicator's own status file is sampled every 0.25 s. Printed as one JSON object:

    backfill_seconds    time until the apply phase began
    write_rate          achieved source writes per second
    journal_backlog_max most records waiting in the journal (at the end of the backfill)
    journal_bytes_max   largest journal on disk
    drain_seconds       from the end of the backfill until the journal's backlog was first empty
    drain_per_s         journal records applied per second while draining that backlog
    applied_per_s       stream records applied per second during the writer's run (after the backfill)
    lag_p50/p95/max_s   lag the replicator reported while the writer ran (seconds)
    pending_max         largest number of records read but not yet acknowledged
    catch_up_seconds    from the writer's last write until lag 0 (caught up, nothing pending)
    equal               target == transform(source) at the end (independent boto3 scans)

Lag is the age of the oldest change not yet applied (DynamoDB Local's minute-rounded timestamps
are bounded by the moment the journal read the record); ``catch_up_seconds`` is exact.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from typing import Any, Dict, List, Optional

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from ddbmigrate import RunOptions, TableRef  # noqa: E402
from ddbmigrate.aws.client import DynamoClient  # noqa: E402
from ddbmigrate.jobs.replicate import replicate  # noqa: E402
from ddbmigrate.state.status import read_status  # noqa: E402
from ddbmigrate.jobs.seed import seed_table  # noqa: E402
from ddbmigrate.core.transform import load_transform  # noqa: E402
from support import as_set, boto_client, create_table, scan_all  # noqa: E402


def writer(endpoint: str, table: str, keys: int, rate: float, seconds: float, threads: int,
           counts: List[int], seed: int) -> None:
    stop_at = time.time() + seconds
    per_thread = rate / threads

    def run(i: int) -> None:
        c = boto_client(endpoint)
        r = random.Random(seed * 100 + i)
        n = 0
        t0 = time.time()
        while time.time() < stop_at:
            k = {"pk": {"S": f"user#{r.randrange(keys):09d}"}}
            x = r.random()
            if x < 0.5:
                c.put_item(TableName=table, Item={**k, "v": {"N": str(n)}, "pad": {"S": "x" * 400}})
            elif x < 0.85:
                c.update_item(TableName=table, Key=k, UpdateExpression="SET v = :v",
                              ExpressionAttributeValues={":v": {"N": str(n)}})
            else:
                c.delete_item(TableName=table, Key=k)
            n += 1
            counts[i] = n
            ahead = n / per_thread - (time.time() - t0)
            if ahead > 0:
                time.sleep(ahead)

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", help="A running DynamoDB Local (default: start one).")
    ap.add_argument("--seed-items", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=300.0, help="Source writes per second.")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--writer-threads", type=int, default=8)
    ap.add_argument("--writers", type=int, default=8, help="Replicator writer threads.")
    ap.add_argument("--transform")
    ap.add_argument("--shard-readers", type=int, default=8)
    args = ap.parse_args()

    server: Any = None
    endpoint = args.endpoint
    if endpoint is None:
        from ddbmigrate import dynamodb_local as local

        server = local.start()
        endpoint = server.endpoint_url
    try:
        src = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
        dst = create_table(endpoint)
        seed_table(DynamoClient(TableRef(src, endpoint_url=endpoint)), src, args.seed_items, size=500)
        status = f"/tmp/bench-replicate-{os.getpid()}.json"
        stop = threading.Event()
        box: Dict[str, Any] = {}

        def run() -> None:
            try:
                box["report"] = replicate(TableRef(src, endpoint_url=endpoint), TableRef(dst, endpoint_url=endpoint),
                                          transform=args.transform, options=RunOptions(progress="off", writers=args.writers),
                                          stop_event=stop, status_path=status, poll_interval=0.1, status_every=0.25,
                                          shard_readers=args.shard_readers)
            except BaseException as e:
                box["error"] = e

        counts = [0] * args.writer_threads
        t0 = time.time()
        rt = threading.Thread(target=run, daemon=True)
        rt.start()
        wt = threading.Thread(target=writer, args=(endpoint, src, args.seed_items * 2, args.rate, args.seconds,
                                                   args.writer_threads, counts, 1), daemon=True)
        wt.start()
        lags: List[float] = []
        pending_max = 0
        stream_began: Optional[float] = None
        records_at_start: Optional[int] = None
        records_at_end = 0
        backlog_max = bytes_max = 0
        backlog_at_start = 0
        drained_at: Optional[float] = None
        while wt.is_alive():
            time.sleep(0.25)
            if not os.path.exists(status):
                continue
            st = read_status(status)
            j = st.get("journal") or {}
            backlog_max = max(backlog_max, int(j.get("backlog_records") or 0))
            bytes_max = max(bytes_max, int(j.get("bytes") or 0))
            if st.get("phase") == "stream":
                if stream_began is None:
                    stream_began = time.time()
                    records_at_start = int(st.get("records") or 0)
                    backlog_at_start = int(j.get("backlog_records") or 0)
                if drained_at is None and int(j.get("backlog_records") or 0) == 0:
                    drained_at = time.time()
                lags.append(float(st.get("lag_seconds") or 0.0))
                pending_max = max(pending_max, int(st.get("pending_records") or 0))
                records_at_end = int(st.get("records") or 0)
        writer_end = time.time()
        caught_at = None
        while caught_at is None and time.time() - writer_end < 300:
            st = read_status(status)
            if st.get("caught_up") and st.get("pending_records") == 0 and st["updated_at"] > writer_end + 0.3:
                caught_at = time.time()
            else:
                time.sleep(0.1)
        stop.set()
        rt.join(60)
        if "error" in box:
            raise box["error"]
        writes = sum(counts)
        tf = load_transform(args.transform) if args.transform else None
        expected = [o for it in scan_all(endpoint, src) for o in (tf(it) if tf else [it])]
        stream_time = max(1e-9, writer_end - (stream_began or writer_end))
        out = {
            "seed_items": args.seed_items,
            "writer_seconds": round(writer_end - t0, 1),
            "writes": writes,
            "write_rate": round(writes / (writer_end - t0), 1),
            "backfill_seconds": round((stream_began or writer_end) - t0, 2),
            "applied_per_s": round((records_at_end - (records_at_start or 0)) / stream_time, 1),
            "lag_p50_s": round(statistics.median(lags), 2) if lags else None,
            "lag_p95_s": round(sorted(lags)[int(len(lags) * 0.95) - 1], 2) if len(lags) >= 2 else None,
            "lag_max_s": max(lags) if lags else None,
            "pending_max": pending_max,
            "journal_backlog_max": backlog_max,
            "journal_bytes_max": bytes_max,
            "drain_seconds": round(drained_at - stream_began, 2) if drained_at and stream_began else None,
            "drain_per_s": round(backlog_at_start / max(1e-9, drained_at - stream_began), 1)
            if drained_at and stream_began and backlog_at_start else None,
            "catch_up_seconds": round(caught_at - writer_end, 2) if caught_at else None,
            "equal": as_set(scan_all(endpoint, dst)) == as_set(expected),
            "report": {k: v for k, v in box["report"].extra.items()
                       if k in ("records", "collapsed_records", "journal", "stream_records_read")},
        }
        print(json.dumps(out, indent=2))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
