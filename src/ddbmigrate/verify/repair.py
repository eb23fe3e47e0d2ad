"""Repair what verify found: put missing and mismatched items, delete unexpected ones, re-check.

Verify reads the whole source, then the whole target, then compares: by the time it repairs, the
source may have changed (a live ``replicate`` copies those writes to the target meanwhile). So
each key is repaired to what the source holds *now*, not to the image the comparison saw: the
source item is read again (GetItem-consistent, in batches), the transform applied again, and the
target written only if it still differs from that fresh expectation. Writing the comparison's
copy instead would undo newer replicated writes (an update overwritten with the old image, a new
item deleted) and then call them fixed.

The source item of a target key is the item with the same key attributes; that holds without a
transform, and with one that keeps each item's key (:class:`_Source` checks it on a few source
items first, and on every item it reads again). A transform that re-keys items gives no way back
from a target key to its source item: those keys are repaired from the comparison's copy, as
before, counted in ``not_reread``, and the report and the log say that this is not safe while the
source is being written. A files source does not change under verify: its copy is the truth.

Invariants:
1. Nothing is written unless repair is asked for; deletes additionally need ``confirm``.
2. Repairs are full-image puts and deletes (replay-safe), and every repaired key is read back
   with a strongly consistent read before the report calls it fixed, and compared with the
   source as read again then (not with the comparison's copy).
3. Memory is bounded by the batches in flight (100 keys each): the differences file is streamed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Set, Tuple

import orjson

from ..aws.client import DynamoClient
from ..core.items import Key, KeySchema, WireItem, canonical_item
from ..core.records import DELETE, MAX_BATCH_OPS, PUT, Op
from ..core.transform import Transform, TransformContext
from ..errors import RetriesExhaustedError, TransformError
from ..sinks.table_writer import TableWriter
from .report import PREVIEW, iter_diffs

Confirm = Callable[[str], bool]
# BatchGetItem takes at most 100 keys.
BATCH_GET = 100
# Source items the transform is tried on before repair trusts it to keep keys.
PROBE_ITEMS = 25
log = logging.getLogger(__name__)

FRESH, COPY, FAILED = "fresh", "copy", "failed"
REKEYS = "transform {} gives items keys other than their source item's, so a target key does not tell its source item"
NOT_FOUND = ("no source item has the target key, and the transform was not seen keeping keys, so which source "
             "item it came from is unknown")


@dataclass
class _Truth:
    """What one target key should hold: ``item`` (None: nothing). ``how`` says where that comes
    from: FRESH (the source read again now), COPY (the comparison's copy, the source item being
    unknown) or FAILED (the transform raised on the fresh item: nothing is written)."""

    how: str
    item: Optional[WireItem]


# One difference to repair: the target key (wire), its identity bytes, and the comparison's
# expectation (None for an unexpected item).
Entry = Tuple[WireItem, bytes, Optional[WireItem]]


def no_repairs() -> Dict[str, int]:
    """A repair's counts, all zero (also a --repair that found nothing to repair)."""
    return {"put": 0, "deleted": 0, "delete_skipped": 0, "rejected": 0, "rechecked": 0, "still_different": 0,
            "reread": 0, "source_changed": 0, "already_equal": 0, "not_reread": 0, "transform_errors": 0}


def repair_differences(diff_file: str, client: DynamoClient, keys: KeySchema, *,
                       confirm: Optional[Confirm] = None, writers: int = 8,
                       source: Optional[DynamoClient] = None, source_keys: Optional[KeySchema] = None,
                       transform: Optional[Transform] = None,
                       context: Optional[TransformContext] = None) -> Dict[str, Any]:
    """Repair every missing, mismatched and unexpected key (deletes only if confirmed), then re-check.

    ``source`` (with ``source_keys``, ``transform`` and its ``context``): the source table, read
    again before each key is repaired (see the module doc). Without it (a files source) the
    comparison's copy is the truth. Keys are handled in batches of 100, ``writers`` batches at a
    time, each batch: read the source and the target (BatchGetItem, consistent), write what still
    differs, read both again and compare.
    """
    table = client.ref.table
    to_delete = sum(1 for d in iter_diffs(diff_file) if d["category"] == "unexpected")
    delete_ok = False
    if to_delete:
        msg = (f"Delete {to_delete:,} unexpected items (in the target, not in transform(source)) from table "
               f"{table!r} at {client.endpoint}?")
        if source is not None:
            msg += " (Each is first read again from the source: one it now holds is rewritten, not deleted.)"
        delete_ok = bool(confirm is not None and confirm(msg))
    truth = _Source(source, source_keys, keys, transform, context)
    writer = TableWriter(client, table, keys)
    result: Dict[str, int] = no_repairs()
    still_keys: List[Dict[str, Any]] = []
    lock = threading.Lock()

    def count(**n: int) -> None:
        with lock:
            for k, v in n.items():
                result[k] += v

    def differs(key: WireItem) -> None:
        with lock:
            result["still_different"] += 1
            if len(still_keys) < PREVIEW:
                still_keys.append(key)

    def repair(entries: List[Entry]) -> None:
        truths = truth.of(entries)
        actual = batch_get(client, table, [k for k, _, _ in entries], keys)
        ops: List[Op] = []
        checked: List[Tuple[Entry, _Truth]] = []  # repaired, or found right: read back below
        for e in entries:
            key, kb, expected = e
            t = truths[kb]
            if t.how == FAILED:
                # No expectation to write: the key stays as it is, and is said to differ.
                count(transform_errors=1)
                differs(key)
                continue
            count(**({"reread": 1, "source_changed": int(not _same(t.item, expected))} if t.how == FRESH
                     else {"not_reread": 1}))
            if _same(actual.get(kb), t.item):
                count(already_equal=1)  # the target already holds it (a live copy got there first)
            elif t.item is not None:
                ops.append(Op(PUT, t.item, orjson.dumps(t.item), keys.key(t.item)))
            elif delete_ok:
                ops.append(Op(DELETE, key, orjson.dumps(key), keys.key(key)))
            else:
                count(delete_skipped=1)
                continue
            checked.append((e, t))
        for i in range(0, len(ops), MAX_BATCH_OPS):
            res = writer.write(ops[i:i + MAX_BATCH_OPS])
            count(put=res.written, deleted=res.deleted, rejected=len(res.rejected))
        if not checked:
            return
        # Re-check with strongly consistent reads, against the source as it is now: a write
        # replicated after the repair's read is then not called fixed by an older image.
        entries2 = [e for e, _ in checked]
        again = truth.of(entries2)
        actual = batch_get(client, table, [k for k, _, _ in entries2], keys)
        for (key, kb, _), t in checked:
            t2 = again[kb]
            want = t2.item if t2.how == FRESH else t.item
            count(rechecked=1)
            if not _same(actual.get(kb), want):
                differs(key)

    pending: Deque["Future[None]"] = deque()
    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="verify-repair") as pool:
        batch: List[Entry] = []
        for d in iter_diffs(diff_file):
            cat = d["category"]
            if cat in ("missing", "mismatched"):
                k = keys.project(d["expected"])
                batch.append((k, orjson.dumps(keys.key(k)), d["expected"]))
            elif cat == "unexpected":
                k = keys.project(d["key"])
                batch.append((k, orjson.dumps(keys.key(k)), None))
            else:
                continue
            if len(batch) >= BATCH_GET:
                pending.append(pool.submit(repair, batch))
                batch = []
                while len(pending) > writers * 2:  # bounded in-flight batches
                    pending.popleft().result()
        if batch:
            pending.append(pool.submit(repair, batch))
        while pending:
            pending.popleft().result()

    out: Dict[str, Any] = {**result, "still_different_keys": still_keys}
    if result["source_changed"]:
        log.warning("repair: %s key(s) changed in the source while verify ran: each was repaired to the "
                    "source's current value (or left alone, the target already holding it), not to the copy "
                    "verify compared", f"{result['source_changed']:,}")
    if source is not None and result["not_reread"]:
        out["note"] = (f"{result['not_reread']:,} key(s) were repaired from the copy verify read at the start, "
                       f"not read again from the source ({'; '.join(sorted(truth.why))}). Repair while the "
                       "source is being written is not safe for keys whose source item cannot be told (a "
                       "transform that re-keys items): if the source was written while verify ran, these "
                       "repairs may have undone newer writes; stop writes to the source and run verify again")
        log.warning("repair: %s", out["note"])
    return out


def _same(a: Optional[Mapping[str, Any]], b: Optional[Mapping[str, Any]]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return canonical_item(a) == canonical_item(b)


def _key_of(keys: KeySchema, item: Mapping[str, Any]) -> Optional[Key]:
    """``keys.key(item)``, or None when ``item`` lacks (or mistypes) a key attribute."""
    try:
        return keys.key(item)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None


class _Source:
    """The fresh truth for target keys: the source item with the same key attributes, read again
    (BatchGetItem, consistent) and transformed again; or the comparison's copy when that source
    item cannot be known (see the module doc; ``why`` says which case it was)."""

    def __init__(self, client: Optional[DynamoClient], source_keys: Optional[KeySchema], keys: KeySchema,
                 transform: Optional[Transform], context: Optional[TransformContext]) -> None:
        self.client, self.skeys, self.keys, self.tf = client, source_keys, keys, transform
        self.context = context or TransformContext()
        self.why: Set[str] = set()  # why some keys were repaired from the comparison's copy
        # Whether a target key not found in the source means "no item": only when the transform is
        # known to keep keys (no transform, or one the probe found keeping them).
        self.absent_is_none = transform is None
        if client is None or source_keys is None:
            self.client = None
            return
        tattrs = dict(keys.attributes())
        if any(tattrs.get(n) != t for n, t in source_keys.attributes()):
            # The target key does not hold the source key: a target item does not name its source item.
            self.client = None
            self.why.add(f"the target's key ({', '.join(keys.names)}) does not hold the source's "
                         f"({', '.join(source_keys.names)}), so a target key does not tell its source item")
            return
        if transform is not None:
            kept = self._probe()
            if kept is False:
                self.client = None
                self.why.add(REKEYS.format(transform.name))
                return
            self.absent_is_none = bool(kept)

    def _apply(self, item: WireItem) -> List[WireItem]:
        if self.tf is None:
            return [item]
        # A context of its own per call: repair threads never share a mutable context.
        return self.tf(item, replace(self.context, extra=dict(self.context.extra)))

    def _keeps(self, item: WireItem, outs: List[WireItem]) -> bool:
        """Every output carries its source item's key attributes unchanged."""
        assert self.skeys is not None
        k = self.skeys.key(item)
        return all(_key_of(self.skeys, o) == k for o in outs)

    def _probe(self) -> Optional[bool]:
        """Does the transform keep keys? Tried on the first source items a Scan returns: False if
        an output does not carry its item's key, True if some did and none failed, None if no
        item gave an output to judge by."""
        assert self.client is not None
        table = self.client.ref.table
        resp = self.client.call("Scan", {"TableName": table, "Limit": PROBE_ITEMS,
                                         "ReturnConsumedCapacity": "TOTAL"}, table=table)
        cc = resp.get("ConsumedCapacity") or {}
        self.client.stats.consumed(read=float(cc.get("CapacityUnits") or 0.0))
        judged = False
        for it in resp.get("Items") or []:
            try:
                outs = self._apply(it)
            except TransformError:
                continue  # says nothing about keys
            if outs and not self._keeps(it, outs):
                return False
            judged = judged or bool(outs)
        return True if judged else None

    def of(self, entries: List[Entry]) -> Dict[bytes, _Truth]:
        if self.client is None:
            return {kb: _Truth(COPY, expected) for _, kb, expected in entries}
        assert self.skeys is not None
        skeys = self.skeys
        wanted: Dict[bytes, WireItem] = {}
        for key, _, _ in entries:
            sk = skeys.project(key)
            wanted.setdefault(orjson.dumps(skeys.key(sk)), sk)  # BatchGetItem refuses duplicate keys
        got = batch_get(self.client, self.client.ref.table, list(wanted.values()), skeys)
        outs_of: Dict[bytes, Any] = {}
        truths: Dict[bytes, _Truth] = {}
        for key, kb, expected in entries:
            skb = orjson.dumps(skeys.key(skeys.project(key)))
            item = got.get(skb)
            if item is None:
                # Deleted since the comparison (a live replicate has deleted it from the target
                # too): nothing should be there. This trusts the probe that the transform keeps
                # keys; one that re-keys only some items, past the probe's sample, would have its
                # re-keyed outputs read as deleted: docs/verify.md says to repair those only with
                # the source quiet.
                if self.absent_is_none:
                    truths[kb] = _Truth(FRESH, None)
                else:
                    truths[kb] = _Truth(COPY, expected)
                    self.why.add(NOT_FOUND)
                continue
            if skb not in outs_of:
                try:
                    outs = self._apply(item)
                    outs_of[skb] = outs if self._keeps(item, outs) else None
                except TransformError as e:
                    log.warning("repair: %s (source key %s): the key is left as it is",
                                e.message, orjson.dumps(skeys.project(item)).decode())
                    outs_of[skb] = e
            outs = outs_of[skb]
            if isinstance(outs, TransformError):
                truths[kb] = _Truth(FAILED, None)
            elif outs is None:
                truths[kb] = _Truth(COPY, expected)  # this item's outputs are re-keyed
                assert self.tf is not None
                self.why.add(REKEYS.format(self.tf.name))
            else:
                # The last output with this key, as a copy writes it (the last write wins).
                k = self.keys.key(key)
                fresh = [o for o in outs if _key_of(self.keys, o) == k]
                truths[kb] = _Truth(FRESH, fresh[-1] if fresh else None)
        return truths


def batch_get(client: DynamoClient, table: str, keys_list: List[Dict[str, Any]], keys: KeySchema,
              consistent: bool = True) -> Dict[bytes, WireItem]:
    """BatchGetItem of up to 100 keys (retrying UnprocessedKeys); returns key bytes -> item."""
    out: Dict[bytes, WireItem] = {}
    if not keys_list:
        return out
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
