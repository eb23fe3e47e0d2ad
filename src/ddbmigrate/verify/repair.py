"""Repair what verify found: put missing and mismatched items, delete unexpected ones, re-check.

Invariants:
1. Nothing is written unless repair is asked for; deletes additionally need ``confirm``.
2. Repairs are full-image puts and deletes (replay-safe), and every repaired key is read back
   with a strongly consistent read before the report calls it fixed.
3. Memory is bounded by the batches in flight: the differences file is streamed, twice.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import orjson

from ..aws.client import DynamoClient
from ..core.items import KeySchema, WireItem, canonical_item
from ..core.records import DELETE, MAX_BATCH_OPS, PUT, Op
from ..errors import RetriesExhaustedError
from ..sinks.table_writer import TableWriter
from .report import PREVIEW, iter_diffs

Confirm = Callable[[str], bool]
# BatchGetItem takes at most 100 keys.
BATCH_GET = 100


def repair_differences(diff_file: str, client: DynamoClient, keys: KeySchema, *,
                       confirm: Optional[Confirm] = None, writers: int = 8) -> Dict[str, Any]:
    """Put missing and mismatched items, delete unexpected ones (if confirmed), then re-check.

    Streams the differences file twice (write, then re-check) so memory stays bounded by the
    batches in flight. The re-check reads every repaired key with BatchGetItem(ConsistentRead)
    and compares it canonically with the expected item (or expects it gone).
    """
    table = client.ref.table
    to_delete = sum(1 for d in iter_diffs(diff_file) if d["category"] == "unexpected")
    delete_ok = False
    if to_delete:
        msg = (f"Delete {to_delete:,} unexpected items (in the target, not in transform(source)) from table "
               f"{table!r} at {client.endpoint}?")
        delete_ok = bool(confirm is not None and confirm(msg))
    writer = TableWriter(client, table, keys)
    result: Dict[str, int] = {"put": 0, "deleted": 0, "delete_skipped": 0 if delete_ok else to_delete,
                              "rejected": 0, "rechecked": 0, "still_different": 0}
    still_keys: List[Dict[str, Any]] = []
    lock = threading.Lock()
    pending: Deque["Future[None]"] = deque()

    def write(ops: List[Op]) -> None:
        res = writer.write(ops)
        with lock:
            result["put"] += res.written
            result["deleted"] += res.deleted
            result["rejected"] += len(res.rejected)

    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="verify-repair") as pool:
        batch: List[Op] = []
        for d in iter_diffs(diff_file):
            cat = d["category"]
            if cat in ("missing", "mismatched"):
                item = d["expected"]
                batch.append(Op(PUT, item, orjson.dumps(item), keys.key(item)))
            elif cat == "unexpected" and delete_ok:
                k = keys.project(d["key"])
                batch.append(Op(DELETE, k, orjson.dumps(k), keys.key(k)))
            else:
                continue
            if len(batch) >= MAX_BATCH_OPS:
                pending.append(pool.submit(write, batch))
                batch = []
                while len(pending) > writers * 2:  # bounded in-flight batches
                    pending.popleft().result()
        if batch:
            pending.append(pool.submit(write, batch))
        while pending:
            pending.popleft().result()

    # Re-check with strongly consistent reads.
    group: List[Tuple[Dict[str, Any], Optional[WireItem]]] = []

    def recheck(group: List[Tuple[Dict[str, Any], Optional[WireItem]]]) -> None:
        got = batch_get(client, table, [k for k, _ in group], keys)
        for k, expected in group:
            actual = got.get(orjson.dumps(keys.key(k)))
            ok = actual is None if expected is None else (actual is not None and
                                                          canonical_item(actual) == canonical_item(expected))
            result["rechecked"] += 1
            if not ok:
                result["still_different"] += 1
                if len(still_keys) < PREVIEW:
                    still_keys.append(k)

    for d in iter_diffs(diff_file):
        cat = d["category"]
        if cat in ("missing", "mismatched"):
            group.append((keys.project(d["expected"]), d["expected"]))
        elif cat == "unexpected" and delete_ok:
            group.append((keys.project(d["key"]), None))
        else:
            continue
        if len(group) >= BATCH_GET:
            recheck(group)
            group = []
    if group:
        recheck(group)
    return {**result, "still_different_keys": still_keys}


def batch_get(client: DynamoClient, table: str, keys_list: List[Dict[str, Any]], keys: KeySchema,
              consistent: bool = True) -> Dict[bytes, WireItem]:
    """BatchGetItem of up to 100 keys (retrying UnprocessedKeys); returns key bytes -> item."""
    out: Dict[bytes, WireItem] = {}
    request: Dict[str, Any] = {table: {"Keys": keys_list, "ConsistentRead": consistent}}
    attempt = 0
    while request:
        resp = client.call("BatchGetItem", {"RequestItems": request, "ReturnConsumedCapacity": "TOTAL"}, table=table)
        for cc in resp.get("ConsumedCapacity") or []:
            client.stats.consumed(read=float(cc.get("CapacityUnits") or 0.0))
        for it in (resp.get("Responses") or {}).get(table) or []:
            out[orjson.dumps(keys.key(it))] = it
        request = resp.get("UnprocessedKeys") or {}
        if request:
            attempt += 1
            if attempt >= client.retry_policy.max_attempts:
                raise RetriesExhaustedError(f"BatchGetItem keys still unprocessed after {attempt} attempts",
                                            table=table, code="UnprocessedKeys")
            client.stats.retry("unprocessed")
            client.backoff.wait(attempt)
    return out


__all__ = ["BATCH_GET", "batch_get", "repair_differences"]
