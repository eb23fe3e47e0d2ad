"""Write batches of full-image puts and deletes into a table.

The BatchWriteItem contract this module owns:
- at most 25 requests and 16 MB per call (the pipeline cuts batches; we assert);
- no duplicate keys in one call (the pipeline collapses them, last wins);
- ``UnprocessedItems`` are re-sent with capped exponential back-off and full jitter; when the
  attempts run out we raise RetriesExhaustedError (exit 75) and the checkpoint stays behind the
  batch: an item is never "ignored and continued";
- a ValidationException on a whole batch is narrowed down item by item so one bad item is
  dead-lettered instead of poisoning 24 good ones.

Conditional modes (skip-existing, fail-existing) cannot use BatchWriteItem, so they run as
PutItem calls with ``attribute_not_exists`` on the hash key, with the same retries and counts.
Invariant 3: only full images are written (Put/Delete), never relative updates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import orjson

from ..aws.capacity import RateLimiter
from ..aws.client import Backoff, DynamoClient
from ..config import RetryPolicy, TableRef
from ..core.items import KeySchema, canonical_item
from ..core.protocols import SinkBase
from ..core.records import DELETE, MAX_BATCH_OPS, BatchResult, Op
from ..core.specs import Resources, SinkSpecBase
from ..errors import AwsError, ConditionalCheckFailed, RetriesExhaustedError

log = logging.getLogger("ddbmigrate.sinks")


def _wcu(enc_len: int) -> float:
    return float(max(1, -(-enc_len // 1024)))


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
    ) -> None:
        self.client = client
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
        while True:
            self.limiter.acquire(estimate)
            try:
                resp = self.client.call("BatchWriteItem", body, table=self.table, limiter=self.limiter)
            except AwsError as e:
                if e.code == "ValidationException" and len(ops) > 0:
                    return self._one_by_one(ops)
                raise
            consumed = _consumed(resp)
            self.limiter.settle(estimate, consumed)
            self.client.stats.consumed(write=consumed)
            unprocessed = (resp.get("UnprocessedItems") or {}).get(self.table) or []
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
            self.limiter.throttled()
            body = b'{"RequestItems":' + orjson.dumps({self.table: unprocessed}) + b',"ReturnConsumedCapacity":"TOTAL"}'
            estimate = float(len(unprocessed))
            self.backoff.wait(attempt)

    def _one_by_one(self, ops: List[Op]) -> BatchResult:
        """Isolate the item(s) DynamoDB refuses; write the rest."""
        res = BatchResult()
        for o in ops:
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
        return res

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
        for o in ops:
            try:
                self._single("PutItem", head + o.enc + b"}", o)
                res.written += 1
            except ConditionalCheckFailed as e:
                self.client.stats.consumed(write=1.0)
                if e.retried and e.item is not None and canonical_item(e.item) == canonical_item(o.item):
                    # Our own first attempt was applied and its response lost: the item there is
                    # the one we sent. It was written by this run, not found existing.
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
        return res


def _consumed(resp: Dict[str, Any]) -> float:
    cc = resp.get("ConsumedCapacity")
    if not cc:
        return 0.0
    if isinstance(cc, list):
        return float(sum(float(c.get("CapacityUnits") or 0.0) for c in cc))
    return float(cc.get("CapacityUnits") or 0.0)


@dataclass(frozen=True)
class TableWriterSpec(SinkSpecBase):
    """Writes into ``ref``'s table with ``mode`` (picklable); ``write_rate`` is the job's limit."""

    ref: TableRef
    keys: KeySchema
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    mode: str = "overwrite"
    write_rate: Optional[float] = None
    writers: int = 16

    def build(self, res: Resources) -> TableWriter:
        client = res.client(self.ref, self.retry, pool_size=self.writers + 4)
        return TableWriter(client, self.ref.table, self.keys, mode=self.mode,
                           limiter=res.limiter(self.write_rate, "write"))
