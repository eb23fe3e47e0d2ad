"""Simple copy scripts that ddbmigrate is measured against (run as separate processes).

    python bench/baselines.py KIND ENDPOINT SOURCE TARGET [--segments N] [--writers N] [--limit N]

KIND:
  ceiling     multi-threaded boto3 low-level client: parallel Scan + concurrent BatchWriteItem,
              items moved as wire-format dicts (no TypeDeserializer). The raw ceiling of boto3.
  plain       the usual script: boto3 resource API, table.scan() + table.batch_writer(),
              Python values (TypeDeserializer/TypeSerializer round trip), one thread.
  sequential  low-level client, one thread: scan page -> batch_write_item of 25, retrying
              UnprocessedItems.
  naive       resource API, scan + one put_item per item (only --limit items; it is slow).

Each prints one JSON line: {"kind", "items", "seconds"}; the caller measures CPU and RSS.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from typing import Any, Dict, List

import boto3
from botocore.config import Config


def client(endpoint: str, pool: int = 50) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(max_pool_connections=pool, retries={"mode": "standard", "max_attempts": 10}))


def write_batch(c: Any, table: str, items: List[Dict[str, Any]]) -> None:
    req = {table: [{"PutRequest": {"Item": it}} for it in items]}
    while req:
        resp = c.batch_write_item(RequestItems=req)
        req = resp.get("UnprocessedItems") or {}
        if req:
            time.sleep(0.05)


def ceiling(endpoint: str, src: str, dst: str, segments: int, writers: int, limit: int) -> int:
    c = client(endpoint, segments + writers + 4)
    q: "queue.Queue[Any]" = queue.Queue(maxsize=writers * 4)
    count = [0]
    lock = threading.Lock()

    def scan(seg: int) -> None:
        kw: Dict[str, Any] = {"TableName": src, "Segment": seg, "TotalSegments": segments}
        while True:
            page = c.scan(**kw)
            items = page["Items"]
            for i in range(0, len(items), 25):
                q.put(items[i:i + 25])
            if "LastEvaluatedKey" not in page:
                return
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def write() -> None:
        while True:
            b = q.get()
            if b is None:
                return
            write_batch(c, dst, b)
            with lock:
                count[0] += len(b)

    ws = [threading.Thread(target=write) for _ in range(writers)]
    ss = [threading.Thread(target=scan, args=(s,)) for s in range(segments)]
    for t in ws + ss:
        t.start()
    for t in ss:
        t.join()
    for _ in ws:
        q.put(None)
    for t in ws:
        t.join()
    return count[0]


def plain(endpoint: str, src: str, dst: str, limit: int) -> int:
    r = boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    s, d = r.Table(src), r.Table(dst)
    n = 0
    kw: Dict[str, Any] = {}
    with d.batch_writer() as w:
        while True:
            page = s.scan(**kw)
            for it in page["Items"]:
                w.put_item(Item=it)
                n += 1
            if "LastEvaluatedKey" not in page:
                return n
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def sequential(endpoint: str, src: str, dst: str, limit: int) -> int:
    c = client(endpoint)
    n = 0
    kw: Dict[str, Any] = {"TableName": src}
    while True:
        page = c.scan(**kw)
        items = page["Items"]
        for i in range(0, len(items), 25):
            write_batch(c, dst, items[i:i + 25])
        n += len(items)
        if "LastEvaluatedKey" not in page:
            return n
        kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def naive(endpoint: str, src: str, dst: str, limit: int) -> int:
    r = boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    s, d = r.Table(src), r.Table(dst)
    n = 0
    kw: Dict[str, Any] = {}
    while n < limit:
        page = s.scan(**kw)
        for it in page["Items"]:
            d.put_item(Item=it)
            n += 1
            if n >= limit:
                break
        if "LastEvaluatedKey" not in page:
            break
        kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["ceiling", "plain", "sequential", "naive"])
    ap.add_argument("endpoint")
    ap.add_argument("source")
    ap.add_argument("target")
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--limit", type=int, default=10 ** 12)
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.kind == "ceiling":
        n = ceiling(a.endpoint, a.source, a.target, a.segments, a.writers, a.limit)
    elif a.kind == "plain":
        n = plain(a.endpoint, a.source, a.target, a.limit)
    elif a.kind == "sequential":
        n = sequential(a.endpoint, a.source, a.target, a.limit)
    else:
        n = naive(a.endpoint, a.source, a.target, a.limit)
    print(json.dumps({"kind": a.kind, "items": n, "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
