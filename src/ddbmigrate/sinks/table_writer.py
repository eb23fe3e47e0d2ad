"""Write batches of full-image puts and deletes into a table.

The BatchWriteItem contract this module owns:
- at most 25 requests and 16 MB per call (the pipeline cuts batches; we assert);
- no duplicate keys in one call (the pipeline collapses them, last wins);
- ``UnprocessedItems`` are re-sent with capped exponential back-off and full jitter; when the
  attempts run out we raise RetriesExhaustedError (exit 75) and the checkpoint stays behind the
  batch: an item is never "ignored and continued";
- a ValidationException on a whole batch is narrowed down item by item so one bad item is
  dead-lettered instead of poisoning 24 good ones;
- an answer whose ``UnprocessedItems`` is not a mapping of lists of put/delete requests is a
  :class:`BadResponse` (retried, counted as a connection error): reading it as "all written"
  could lose items, and the batch holds full images only, so sending it again is harmless.

Conditional modes (skip-existing, fail-existing) cannot use BatchWriteItem, so they run as
PutItem calls with ``attribute_not_exists`` on the hash key, with the same retries and counts.
Invariant 3: only full images are written (Put/Delete), never relative updates.

Throttled writes are attributed to their partition keys (the table's and each global secondary
index's): when one key value takes most of them, the report names it as a hot key — a target
partition no rate can get past (e.g. a transform that gives every item ``GSI1PK = "USER"``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import orjson

from ..aws.capacity import Declared, RateLimiter, redescriber
from ..aws.client import Backoff, DynamoClient, load_object
from ..aws.transport import BadResponse
from ..config import RetryPolicy, TableRef
from ..core.items import KeySchema, canonical_item
from ..core.protocols import SinkBase
from ..core.records import DELETE, MAX_BATCH_OPS, BatchResult, Op
from ..core.specs import Resources, SinkSpecBase
from ..errors import AwsError, ConditionalCheckFailed, RetriesExhaustedError

log = logging.getLogger("ddbmigrate.sinks")


def _request_identity(request: Any) -> Tuple[str, Any]:
    """A put or delete, an Op or a request as BatchWriteItem holds it, in one canonical form (the
    same item or key whatever its numbers' spelling or its attributes' order)."""
    image: Any
    if isinstance(request, Op):
        kind, image = ("D" if request.kind == DELETE else "P"), request.item
    else:
        put = request.get("PutRequest") if isinstance(request, dict) else None
        if isinstance(put, dict):
            kind, image = "P", put.get("Item")
        else:
            kind, image = "D", (request.get("DeleteRequest") or {}).get("Key")
    return kind, canonical_item(image)


def _wcu(enc_len: int) -> float:
    return float(max(1, -(-enc_len // 1024)))


# (index name or "" for the table, attribute, value as text): one throttled partition key.
KeyValue = Tuple[str, str, str]
_KEEP_KEYS = 1000  # distinct key values kept per writer (the most throttled; memory stays bounded)


class _Attributed:
    """The limiter as one call sees it: a throttle also says which items it held back."""

    __slots__ = ("limiter", "note", "sent")

    def __init__(self, limiter: RateLimiter, note: Any, sent: Sequence[Any]) -> None:
        self.limiter, self.note, self.sent = limiter, note, sent  # Ops, or request images

    def throttled(self) -> None:
        self.note([s.item if isinstance(s, Op) else s for s in self.sent])
        self.limiter.throttled()

    def again(self) -> None:
        self.limiter.again()


class TableWriter(SinkBase):
    """Writes acknowledged full images into one table; see the module docstring."""

    def __init__(
        self,
        client: DynamoClient,
        table: str,
        key_schema: KeySchema,
        *,
        mode: str = "overwrite",
        limiter: Optional[RateLimiter] = None,
        backoff: Optional[Backoff] = None,
        index_keys: Sequence[Tuple[str, str]] = (),
        resumed: bool = False,
    ) -> None:
        self.client = client
        # A resumed run re-reads what its interrupted run may have written after its last
        # checkpoint: an item found there equal to the one being written is counted written.
        self.resumed = resumed
        self.index_keys = tuple(index_keys)
        self.throttled_keys: Counter[KeyValue] = Counter()
        self._keys_lock = threading.Lock()
        self.table = table
        self.keys = key_schema
        self.mode = mode
        # Conditional modes never replace an item: of several versions of one key, the first
        # written stays, so the pipeline collapses duplicates to the first, not the last.
        self.first_write_wins = mode != "overwrite"
        self.limiter = limiter or RateLimiter()
        self.backoff = backoff or client.backoff
        self.max_attempts = client.retry_policy.max_attempts
        self._prefix = b'{"RequestItems":{' + orjson.dumps(table) + b":["
        self._suffix = b']},"ReturnConsumedCapacity":"TOTAL"}'
        self._cond_names = orjson.dumps({"#h": key_schema.hash_name})

    # ------------------------------------------------------------------ entry point

    def write(self, ops: List[Op]) -> BatchResult:
        if not ops:
            return BatchResult()
        if self.mode == "overwrite" or any(o.kind == DELETE for o in ops):
            return self._batch_write(ops)
        return self._conditional_puts(ops)

    # ------------------------------------------------------------------ BatchWriteItem

    def _encode(self, ops: List[Op]) -> bytes:
        parts = []
        for o in ops:
            if o.kind == DELETE:
                parts.append(b'{"DeleteRequest":{"Key":' + o.enc + b"}}")
            else:
                parts.append(b'{"PutRequest":{"Item":' + o.enc + b"}}")
        return self._prefix + b",".join(parts) + self._suffix

    def _batch_write(self, ops: List[Op]) -> BatchResult:
        assert len(ops) <= MAX_BATCH_OPS, "the pipeline must cut batches at 25"
        body = self._encode(ops)
        estimate = sum(_wcu(len(o.enc)) for o in ops)
        attempt = 0
        pending: Sequence[Any] = ops
        sent: Sequence[Any] = ops  # what this attempt sends: the Ops, then the requests held back
        while True:
            self.limiter.acquire(estimate)
            try:
                consumed, unprocessed, images = self.client.call_parsed(
                    "BatchWriteItem", body, functools.partial(self._parse_answer, sent=sent), table=self.table,
                    limiter=_Attributed(self.limiter, self._note_throttled, pending))
            except AwsError as e:
                if e.code == "ValidationException" and len(ops) > 0:
                    return self._one_by_one(ops)
                raise
            self.limiter.settle(estimate, consumed)
            self.client.stats.consumed(write=consumed)
            if unprocessed:
                self.limiter.held_back(float(len(unprocessed)))
            if not unprocessed:
                puts = sum(1 for o in ops if o.kind != DELETE)
                return BatchResult(written=puts, deleted=len(ops) - puts)
            attempt += 1
            if attempt >= self.max_attempts:
                raise RetriesExhaustedError(
                    f"{len(unprocessed)} of {len(ops)} items still unprocessed after {attempt} "
                    "BatchWriteItem attempts (table throttled?); lower --writers or the write rate "
                    "and --resume",
                    table=self.table,
                    code="UnprocessedItems",
                )
            self.client.stats.retry("unprocessed")
            log.debug("BatchWriteItem: %d of %d requests unprocessed (attempt %d)", len(unprocessed), len(ops), attempt)
            pending = images
            sent = unprocessed
            self._note_throttled(pending)
            self.limiter.throttled()
            body = b'{"RequestItems":' + orjson.dumps({self.table: unprocessed}) + b',"ReturnConsumedCapacity":"TOTAL"}'
            estimate = float(len(unprocessed))
            self.backoff.wait(attempt)

    def _parse_answer(self, data: bytes, sent: Sequence[Any]) -> Tuple[float, List[Any], List[Any]]:
        """A BatchWriteItem answer -> (units consumed, our unprocessed requests, their images);
        checked inside the retry loop, so a garbled answer is sent again (see the module doc)."""
        resp = load_object(data, "BatchWriteItem")
        unp = resp.get("UnprocessedItems")
        if unp is None:
            return _consumed(resp), [], []
        if not isinstance(unp, dict) or not all(isinstance(v, list) for v in unp.values()):
            raise BadResponse("the BatchWriteItem answer's UnprocessedItems is not a mapping of table names "
                              "to lists of requests")
        unprocessed: List[Any] = unp.get(self.table) or []
        images: List[Any] = []
        for r in unprocessed:  # at most 25, and only when some are held back
            put = r.get("PutRequest") if isinstance(r, dict) else None
            img = put.get("Item") if isinstance(put, dict) else None
            if img is None and isinstance(r, dict) and isinstance(r.get("DeleteRequest"), dict):
                img = r["DeleteRequest"].get("Key")
            if not isinstance(img, dict):
                raise BadResponse("the BatchWriteItem answer's UnprocessedItems holds something that is not a "
                                  "PutRequest with an Item or a DeleteRequest with a Key")
            images.append(img)
        if unprocessed:
            # Only requests of this call can be held back: one it never sent would be re-sent as
            # it is, writing (or deleting) an item that was never part of the job.
            ours = {_request_identity(x) for x in sent}
            if any(_request_identity(r) not in ours for r in unprocessed):
                raise BadResponse("the BatchWriteItem answer's UnprocessedItems holds a request this call did not "
                                  "send")
        return _consumed(resp), unprocessed, images

    def _note_throttled(self, images: Sequence[Any]) -> None:
        hk = self.keys.hash_name
        with self._keys_lock:
            for img in images:
                if not isinstance(img, dict):
                    continue
                if hk in img:
                    self.throttled_keys[("", hk, _text(img[hk]))] += 1
                for index, attr in self.index_keys:
                    if attr in img:
                        self.throttled_keys[(index, attr, _text(img[attr]))] += 1
            if len(self.throttled_keys) > 2 * _KEEP_KEYS:
                self.throttled_keys = Counter(dict(self.throttled_keys.most_common(_KEEP_KEYS)))

    @contextlib.contextmanager
    def commit(self, final: bool) -> Iterator[Optional[Dict[str, Any]]]:
        with self._keys_lock:
            top = [[i, a, v, n] for (i, a, v), n in self.throttled_keys.most_common(20)]
            total = sum(self.throttled_keys.values())
        yield {"throttled_keys": top, "throttled_attributions": total} if total else {}

    def _one_by_one(self, ops: List[Op]) -> BatchResult:
        """Isolate the item(s) DynamoDB refuses; write the rest."""
        res = BatchResult()
        with _partial(res):
            for o in ops:
                self._one(o, res)
        return res

    def _one(self, o: Op, res: BatchResult) -> None:
        try:
            if o.kind == DELETE:
                self._single("DeleteItem", b'{"TableName":' + orjson.dumps(self.table) + b',"Key":' + o.enc + b"}", o)
                res.deleted += 1
            else:
                self._single("PutItem", b'{"TableName":' + orjson.dumps(self.table) + b',"Item":' + o.enc + b"}", o)
                res.written += 1
        except AwsError as e:
            if e.code != "ValidationException":
                raise
            res.rejected.append((o, f"rejected by DynamoDB: {e.message}", e.code or "ValidationException"))

    def _single(self, op: str, body: bytes, o: Op) -> Dict[str, Any]:
        est = _wcu(len(o.enc))
        self.limiter.acquire(est)
        resp = self.client.call(op, body, table=self.table, limiter=self.limiter)
        consumed = _consumed(resp)
        self.limiter.settle(est, consumed)
        self.client.stats.consumed(write=consumed)
        return resp

    # ------------------------------------------------------------------ conditional puts

    def _conditional_puts(self, ops: List[Op]) -> BatchResult:
        res = BatchResult()
        head = (b'{"TableName":' + orjson.dumps(self.table)
                + b',"ConditionExpression":"attribute_not_exists(#h)","ExpressionAttributeNames":'
                + self._cond_names + b',"ReturnValuesOnConditionCheckFailure":"ALL_OLD"'
                + b',"ReturnConsumedCapacity":"TOTAL","Item":')
        with _partial(res):
            for o in ops:
                self._conditional_put(head, o, res)
        return res

    def _conditional_put(self, head: bytes, o: Op, res: BatchResult) -> None:
        try:
            self._single("PutItem", head + o.enc + b"}", o)
            res.written += 1
        except ConditionalCheckFailed as e:
            self.client.stats.consumed(write=1.0)
            if ((e.retried or self.resumed) and e.item is not None
                    and canonical_item(e.item) == canonical_item(o.item)):
                # Our own first attempt was applied and its response lost, or the interrupted
                # run this one resumes wrote it after its last checkpoint: the item there is
                # the one we send. It was written by this job, not found existing. (On a
                # resume, one that existed before the job with this very content is counted
                # so too: the two cannot be told apart, and the table holds it either way.)
                res.written += 1
            elif self.mode == "skip-existing":
                res.skipped_existing += 1
            else:
                res.rejected.append((o, "item already exists in the target (--mode fail-existing)",
                                     "ConditionalCheckFailedException"))
        except AwsError as e:
            if e.code != "ValidationException":
                raise
            res.rejected.append((o, f"rejected by DynamoDB: {e.message}", e.code or "ValidationException"))


@contextlib.contextmanager
def _partial(res: BatchResult) -> Iterator[None]:
    """A call of one item at a time that stops midway (retries spent, a stop) has written the
    items before: the exception carries them (``partial``), so the run's live counts, and its
    report's "also written, not settled", include them. Lost, a failed fail-existing copy said
    written 0 over 231 items in the target."""
    try:
        yield
    except BaseException as e:
        if res.written or res.deleted or res.skipped_existing:
            try:
                e.partial = res  # type: ignore[attr-defined]
            except AttributeError:
                pass
        raise


def _text(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        return str(next(iter(v.values())))[:200]
    return str(v)[:200]


def hot_key(state: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The key value most throttled writes went to, when it stands out (else None)."""
    top = state.get("throttled_keys") or []
    total = int(state.get("throttled_attributions") or 0)
    if not top or total < 20:
        return None
    index, attr, value, n = max(top, key=lambda t: t[3])
    # Attributions count each throttled item once per key it has (table + each index), so a
    # value holding at least a third of them took nearly every throttled item of its index.
    if n * 3 < total:
        return None
    return {"index": index or None, "attribute": attr, "value": value, "throttled_writes": n,
            "share": round(n / total, 3)}


def _consumed(resp: Dict[str, Any]) -> float:
    # Only steers the rate: a shape DynamoDB never sends counts as nothing rather than failing
    # a write that was applied.
    cc = resp.get("ConsumedCapacity")
    if not cc:
        return 0.0
    return float(sum(_units(c) for c in cc)) if isinstance(cc, list) else _units(cc)


def _units(cc: Any) -> float:
    units = cc.get("CapacityUnits") if isinstance(cc, dict) else None
    return float(units) if isinstance(units, (int, float)) and not isinstance(units, bool) else 0.0


@dataclass(frozen=True)
class TableWriterSpec(SinkSpecBase):
    """Writes into ``ref``'s table with ``mode`` (picklable); ``write_rate`` is the job's limit."""

    ref: TableRef
    keys: KeySchema
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    mode: str = "overwrite"
    write_rate: Optional[float] = None
    writers: int = 16
    index_keys: Tuple[Tuple[str, str], ...] = ()  # (GSI name, its partition key) of the target
    resumed: bool = False
    declared: Optional[Declared] = None  # the write units the table says it admits: where the rate starts

    def prepare(self, saved: Optional[Mapping[str, Any]]) -> "TableWriterSpec":
        return replace(self, resumed=saved is not None)

    def build(self, res: Resources) -> TableWriter:
        client = res.client(self.ref, self.retry, pool_size=self.writers + 4)
        return TableWriter(client, self.ref.table, self.keys, mode=self.mode,
                           limiter=res.limiter(self.write_rate, "write", self.declared, redescriber(client, self.ref.table)),
                           index_keys=self.index_keys, resumed=self.resumed)

    def merge(self, states: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        keys: Counter[Tuple[str, str, str]] = Counter()
        total = 0
        for st in states:
            for i, a, v, n in st.get("throttled_keys") or []:
                keys[(i, a, v)] += int(n)
            total += int(st.get("throttled_attributions") or 0)
        if not total:
            return {}
        return {"throttled_keys": [[i, a, v, n] for (i, a, v), n in keys.most_common(20)],
                "throttled_attributions": total}

    def finalize(self, state: Mapping[str, Any], report: Any) -> None:
        hot = hot_key(state)
        if hot is not None:
            where = f"index {hot['index']}" if hot["index"] else "the table"
            report.extra["hot_key_detail"] = hot
            report.extra["hot_key"] = (
                f"{hot['attribute']} = {hot['value']!r} ({where}) took {hot['share']:.0%} of the throttled writes "
                f"({hot['throttled_writes']:,}): one partition of {where} caps this job's write rate whatever the "
                "table's capacity; spread that key (e.g. a suffix) or accept the rate")
