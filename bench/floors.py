"""CPU floors: each job's work done by the smallest script that still does all of it.

    python bench/floors.py JOB --endpoint URL --source T [--target T2] [--dir D] [--segments N]
                           [--writers W] [--level L]

JOB is copy, transform, import, export, verify or clean. A floor does the same DynamoDB calls and
the same byte work as the job (parallel scan pages parsed with orjson, BatchWriteItem of 25 with
UnprocessedItems resent, gzip at the job's level, MD5 of what it writes, one key hash per compared
item) and nothing else: no checkpoints, no dead letters, no progress, no report, no validation
beyond what a correct copy needs. It uses the project's HTTP client and signer
(``DynamoClient.call_raw``), so the floor and the job pay the same transport cost; that client is
measured against urllib3, httpcore and awscrt on its own in bench_transport.py.

``bench/jobs.py`` runs each floor as its own process next to the job and prints their ratio.
The transform floor converts wire items to Python and back with a ten-line converter written here,
not with ddbmigrate's codec, so the ratio shows what the codec costs.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import os
import queue
import sys
import threading
from decimal import Decimal
from typing import Any, Callable, Dict, Iterator, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import orjson  # noqa: E402

from ddbmigrate import TableRef  # noqa: E402
from ddbmigrate.aws.client import DynamoClient  # noqa: E402

Item = Dict[str, Any]


def client_for(endpoint: str, table: str, pool: int = 32) -> DynamoClient:
    return DynamoClient(TableRef(table, endpoint_url=endpoint, region="us-east-1"), pool_size=pool)


def scan_segment(c: DynamoClient, table: str, segment: int, total: int, projection: Optional[List[str]] = None
                 ) -> Iterator[List[Item]]:
    req: Dict[str, Any] = {"TableName": table, "Segment": segment, "TotalSegments": total}
    if projection:
        req["ProjectionExpression"] = ", ".join(f"#k{i}" for i in range(len(projection)))
        req["ExpressionAttributeNames"] = {f"#k{i}": n for i, n in enumerate(projection)}
    while True:
        page = orjson.loads(c.call_raw("Scan", req, table=table))
        yield page.get("Items", [])
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        req["ExclusiveStartKey"] = last


def write_batches(c: DynamoClient, table: str, batches: "queue.Queue[Optional[List[Item]]]", kind: str) -> None:
    """One writer thread: BatchWriteItem each batch, resending UnprocessedItems until none."""
    while True:
        batch = batches.get()
        if batch is None:
            return
        reqs = [{kind: {"Item" if kind == "PutRequest" else "Key": it}} for it in batch]
        pending: Dict[str, Any] = {table: reqs}
        while pending:
            out = c.call("BatchWriteItem", {"RequestItems": pending}, table=table)
            pending = out.get("UnprocessedItems") or {}


def fan(c: DynamoClient, table: str, writers: int, produce: Callable[["queue.Queue[Optional[List[Item]]]"], None],
        kind: str = "PutRequest") -> None:
    batches: "queue.Queue[Optional[List[Item]]]" = queue.Queue(maxsize=writers * 4)
    threads = [threading.Thread(target=write_batches, args=(c, table, batches, kind)) for _ in range(writers)]
    for t in threads:
        t.start()
    produce(batches)
    for _ in threads:
        batches.put(None)
    for t in threads:
        t.join()


def parallel(segments: int, fn: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=fn, args=(s,)) for s in range(segments)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def rebatch(items: List[Item], out: "queue.Queue[Optional[List[Item]]]", carry: List[Item]) -> List[Item]:
    carry.extend(items)
    while len(carry) >= 25:
        out.put(carry[:25])
        carry = carry[25:]
    return carry


# --------------------------------------------------------------------------- the transform boundary


def to_py(v: Item) -> Any:
    (t, x), = v.items()
    if t == "S" or t == "BOOL":
        return x
    if t == "N":
        return Decimal(x)
    if t == "M":
        return {k: to_py(y) for k, y in x.items()}
    if t == "L":
        return [to_py(y) for y in x]
    if t == "NULL":
        return None
    if t == "B":
        return base64.b64decode(x)
    if t == "SS":
        return set(x)
    if t == "NS":
        return {Decimal(n) for n in x}
    return {base64.b64decode(b) for b in x}  # BS


def to_wire(v: Any) -> Item:
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, Decimal):
        return {"N": str(v)}
    if isinstance(v, dict):
        return {"M": {k: to_wire(y) for k, y in v.items()}}
    if isinstance(v, list):
        return {"L": [to_wire(y) for y in v]}
    if v is None:
        return {"NULL": True}
    if isinstance(v, bytes):
        return {"B": base64.b64encode(v).decode()}
    first = next(iter(v))
    if isinstance(first, str):
        return {"SS": list(v)}
    if isinstance(first, Decimal):
        return {"NS": [str(n) for n in v]}
    return {"BS": [base64.b64encode(b).decode() for b in v]}


# --------------------------------------------------------------------------- the jobs


def copy(a: argparse.Namespace, transform: bool = False) -> int:
    src, dst = client_for(a.endpoint, a.source), client_for(a.endpoint, a.target)
    total = [0]
    lock = threading.Lock()

    def produce(out: "queue.Queue[Optional[List[Item]]]") -> None:
        def read(seg: int) -> None:
            carry: List[Item] = []
            n = 0
            for items in scan_segment(src, a.source, seg, a.segments):
                if transform:
                    items = [to_wire(to_py({"M": it}))["M"] for it in items]
                n += len(items)
                carry = rebatch(items, out, carry)
            if carry:
                out.put(carry)
            with lock:
                total[0] += n
        parallel(a.segments, read)

    fan(dst, a.target, a.writers, produce)
    return total[0]


def import_(a: argparse.Namespace) -> int:
    dst = client_for(a.endpoint, a.target)
    files = sorted(os.path.join(root, f) for root, _, fs in os.walk(a.dir) for f in fs if f.endswith(".json.gz"))
    total = [0]
    lock = threading.Lock()
    todo: "queue.Queue[str]" = queue.Queue()
    for f in files:
        todo.put(f)

    def produce(out: "queue.Queue[Optional[List[Item]]]") -> None:
        def read(_: int) -> None:
            n = 0
            while True:
                try:
                    path = todo.get_nowait()
                except queue.Empty:
                    break
                carry: List[Item] = []
                with gzip.open(path, "rb") as fh:
                    for line in fh:
                        if line.strip():
                            carry.append(orjson.loads(line)["Item"])
                            n += 1
                            if len(carry) == 25:
                                out.put(carry)
                                carry = []
                if carry:
                    out.put(carry)
            with lock:
                total[0] += n
        parallel(max(1, min(a.segments, len(files))), read)

    fan(dst, a.target, a.writers, produce)
    return total[0]


def export(a: argparse.Namespace) -> int:
    src = client_for(a.endpoint, a.source)
    os.makedirs(a.dir, exist_ok=True)
    total = [0]
    lock = threading.Lock()

    def read(seg: int) -> None:
        path = os.path.join(a.dir, f"part-{seg:05d}.json.gz")
        md5 = hashlib.md5()
        n = 0
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=a.level) as gz:
            for items in scan_segment(src, a.source, seg, a.segments):
                data = b"".join(orjson.dumps({"Item": it}) + b"\n" for it in items)
                gz.write(data)
                n += len(items)
        with open(path, "rb") as fh:
            md5.update(fh.read())
        with lock:
            total[0] += n

    parallel(a.segments, read)
    return total[0]


def verify(a: argparse.Namespace) -> int:
    keys = a.keys.split(",")
    sides: List[Dict[bytes, bytes]] = [{}, {}]
    lock = threading.Lock()

    def side(i: int, table: str) -> None:
        c = client_for(a.endpoint, table)

        def read(seg: int) -> None:
            got = {}
            for items in scan_segment(c, table, seg, a.segments):
                for it in items:
                    key = orjson.dumps([it[k] for k in keys])
                    got[key] = hashlib.md5(orjson.dumps(it, option=orjson.OPT_SORT_KEYS)).digest()
            with lock:
                sides[i].update(got)
        parallel(a.segments, read)

    side(0, a.source)
    side(1, a.target)
    differ = sum(1 for k, h in sides[0].items() if sides[1].get(k) != h) + len(sides[1].keys() - sides[0].keys())
    print(f"differences: {differ}", file=sys.stderr)
    return len(sides[0])


def clean(a: argparse.Namespace) -> int:
    c = client_for(a.endpoint, a.source)
    keys = a.keys.split(",")
    total = [0]
    lock = threading.Lock()

    def produce(out: "queue.Queue[Optional[List[Item]]]") -> None:
        def read(seg: int) -> None:
            carry: List[Item] = []
            n = 0
            for items in scan_segment(c, a.source, seg, a.segments, projection=keys):
                n += len(items)
                carry = rebatch(items, out, carry)
            if carry:
                out.put(carry)
            with lock:
                total[0] += n
        parallel(a.segments, read)

    fan(c, a.source, a.writers, produce, kind="DeleteRequest")
    return total[0]


JOBS: Dict[str, Callable[[argparse.Namespace], int]] = {
    "copy": copy, "transform": lambda a: copy(a, transform=True), "import": import_, "export": export,
    "verify": verify, "clean": clean,
}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("job", choices=sorted(JOBS))
    p.add_argument("--endpoint", required=True)
    p.add_argument("--source", default="")
    p.add_argument("--target", default="")
    p.add_argument("--dir", default="")
    p.add_argument("--keys", default="pk", help="key attribute names (verify, clean)")
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--level", type=int, default=6, help="gzip level (export)")
    a = p.parse_args(argv)
    n = JOBS[a.job](a)
    print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
