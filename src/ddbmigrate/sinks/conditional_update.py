"""Transform items in place, under live traffic: optimistic concurrency, changed attributes only.

Each op is an item *as the scan read it*. For each one this sink::

    read image ──transform──▶ new image ──diff──▶ nothing changed?  ──▶ "unchanged" (no write)
                                           │
                                           └──▶ UpdateItem  SET changed / REMOVE dropped attributes
                                                 IF the item is still what was read
                                                    ├─ ok ─▶ "written"
                                                    └─ ConditionalCheckFailed ─▶ "retried_races" += 1,
                                                       GetItem (strongly consistent), transform again,
                                                       retry (item gone meanwhile: "vanished")

"Still what was read" is, by default, every attribute of the read image being equal to what was
read (plus ``attribute_not_exists`` on every attribute the update creates); with a version
attribute (``--version-attribute NAME``) it is that attribute's value alone, and the update
moves it on by one so other optimistic writers see the change.

Invariants (docs/migrations.md says which concurrent writes this makes safe):
1. An application's write is never overwritten: a write that lands between our read and our
   update makes the condition fail, and we transform the newer image instead. Attributes we do
   not change are not in the request, so an attribute added meanwhile stays.
2. A deleted item is never re-created (``attribute_exists`` on the hash key is always part of the
   condition).
3. Every op ends in exactly one place: written, unchanged, vanished, or rejected (dead-lettered
   with its reason: a transform error under ``--on-error skip``, an output the update cannot
   write, an item that changed on every one of ``max_races`` attempts, a condition too large).
4. The sink never changes a key: the transform must return one item with the same key.

This sink writes relative updates, unlike the full images of invariant 3 of DESIGN.md; a replay
is still harmless because an update transform is re-applied to the item *as it is now*: for an
idempotent transform (docs/migrations.md) a replayed item comes out unchanged.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import orjson

from ..aws.capacity import Declared, RateLimiter, redescriber
from ..aws.client import DynamoClient
from ..config import RetryPolicy, TableRef
from ..core.items import KeySchema, WireItem, canonical_value, item_size
from ..core.processing import Processor
from ..core.protocols import SinkBase
from ..core.records import BatchResult, Op
from ..core.specs import ProcessingSpec, Resources, SinkSpecBase
from ..errors import AwsError, ConditionalCheckFailed, TransformError
from .table_writer import _partial

log = logging.getLogger("ddbmigrate.sinks")

# DynamoDB's expression limits: 4 KB per expression string, 300 operators or functions per
# expression. Kept a little under so a rounding of how DynamoDB counts never hits them.
MAX_EXPRESSION_CHARS = 4000
MAX_EXPRESSION_OPERATORS = 290
DEFAULT_MAX_RACES = 10


class Plan:
    """What one item needs: nothing, a refusal, or an UpdateItem request (and the image it makes)."""

    __slots__ = ("after", "code", "reason", "request", "transform_failed")

    def __init__(self, request: Optional[Dict[str, Any]] = None, after: Optional[WireItem] = None,
                 reason: Optional[str] = None, code: Optional[str] = None, transform_failed: bool = False) -> None:
        self.request = request
        self.after = after
        self.reason = reason
        self.code = code
        self.transform_failed = transform_failed  # the user's code raised (counted as a copy counts it)

    @property
    def unchanged(self) -> bool:
        return self.request is None and self.reason is None


def _same(a: Any, b: Any) -> bool:
    return bool(canonical_value(a) == canonical_value(b))


def diff(before: WireItem, after: WireItem, keys: Tuple[str, ...]) -> Tuple[Dict[str, Any], List[str]]:
    """(attributes to SET, attributes to REMOVE) that turn ``before`` into ``after`` (key excluded)."""
    sets = {n: v for n, v in after.items()
            if n not in keys and (n not in before or not _same(before[n], v))}
    removes = [n for n in before if n not in after and n not in keys]
    return sets, removes


class UpdateRequestBuilder:
    """Builds the UpdateItem request of one item; pure (no I/O), so it is unit-tested alone."""

    def __init__(self, table: str, keys: KeySchema, version_attribute: Optional[str] = None) -> None:
        self.table = table
        self.keys = keys
        self.version = version_attribute

    def plan(self, before: WireItem, after: WireItem) -> Plan:
        names = self.keys.names
        sets, removes = diff(before, after, names)
        version_set = False
        if self.version is not None:
            # The update sets the version itself (its condition). Left out by the transform (a new
            # item built without it), it is moved on all the same; given another value, that value
            # would be lost: the item is refused with the reason (below), not updated without it.
            version_set = sets.pop(self.version, None) is not None
            if self.version in removes:
                removes.remove(self.version)
        if not sets and not removes and not version_set:
            return Plan()
        expr_names: Dict[str, str] = {}
        values: Dict[str, Any] = {}

        def name(n: str) -> str:
            # One placeholder per attribute, reused by the condition and the update.
            for k, v in expr_names.items():
                if v == n:
                    return k
            k = f"#n{len(expr_names)}"
            expr_names[k] = n
            return k

        def value(v: Any) -> str:
            k = f":v{len(values)}"
            values[k] = v
            return k

        conds = [f"attribute_exists({name(self.keys.hash_name)})"]
        if self.version is not None:
            cur = before.get(self.version)
            if cur is None:
                conds.append(f"attribute_not_exists({name(self.version)})")
                sets[self.version] = {"N": "1"}
            elif "N" in cur:
                conds.append(f"{name(self.version)} = {value(cur)}")
                sets[self.version] = {"N": str(_bump(cur["N"]))}
            else:
                return Plan(reason=f"version attribute {self.version!r} is not a number "
                                   f"({next(iter(cur), '?')})", code="BadVersionAttribute")
            if version_set:
                return Plan(reason=f"the transform set the version attribute {self.version!r} to another value; "
                                   "the update manages it (--version-attribute): leave it as it is",
                            code="VersionChanged")
        else:
            # The condition is the read image itself: any write since the read breaks it.
            for n, v in before.items():
                if n not in names:
                    conds.append(f"{name(n)} = {value(v)}")
            for n in sets:
                if n not in before:
                    conds.append(f"attribute_not_exists({name(n)})")
        parts = []
        if sets:
            parts.append("SET " + ", ".join(f"{name(n)} = {value(v)}" for n, v in sets.items()))
        if removes:
            parts.append("REMOVE " + ", ".join(name(n) for n in removes))
        update = " ".join(parts)
        condition = " AND ".join(conds)
        # Each condition term is one comparison or function, joined by one AND each.
        cond_ops = 2 * len(conds) - 1
        upd_ops = len(sets) + len(removes)
        if (len(condition) > MAX_EXPRESSION_CHARS or cond_ops > MAX_EXPRESSION_OPERATORS
                or len(update) > MAX_EXPRESSION_CHARS or upd_ops > MAX_EXPRESSION_OPERATORS):
            hint = "" if self.version is not None else \
                "; a condition on what was read names every attribute: give --version-attribute NAME"
            return Plan(reason=f"the update of this item exceeds DynamoDB's expression limits ({len(before)} "
                               f"attributes read, {upd_ops} changed; 4 KB and 300 operators per expression)"
                               + hint, code="ExpressionTooLarge")
        req: Dict[str, Any] = {
            "TableName": self.table, "Key": self.keys.project(before), "UpdateExpression": update,
            "ConditionExpression": condition, "ExpressionAttributeNames": expr_names,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if values:
            req["ExpressionAttributeValues"] = values
        image = {n: v for n, v in before.items() if n not in removes}
        image.update(sets)
        return Plan(request=req, after=image)


def _bump(text: str) -> Any:
    from decimal import Context, Decimal

    # In all of DynamoDB's 38 digits (and one carried), not Python's default 28: 10**30 + 1 would
    # round back to 10**30.
    return Context(prec=40).add(Decimal(text), 1)


class ConditionalUpdateSink(SinkBase):
    """Applies an update transform to each item in place; see the module docstring."""

    # Its dead letters hold an item as it was read, before the update: put back by a replay, it
    # would undo whatever was written since. Their stage says so, and the replay refuses them.
    dead_letter_stage = "update"

    def __init__(self, client: DynamoClient, table: str, keys: KeySchema, processor: Processor, *,
                 version_attribute: Optional[str] = None, limiter: Optional[RateLimiter] = None,
                 max_races: int = DEFAULT_MAX_RACES, dry_run: bool = False) -> None:
        self.client = client
        self.dry_run = dry_run  # plan every update, send none (``--dry-run``: would-be writes count as written)
        self.table = table
        self.keys = keys
        self.processor = processor
        self.builder = UpdateRequestBuilder(table, keys, version_attribute)
        self.limiter = limiter or RateLimiter()
        self.max_races = max(1, max_races)
        self._get_head = b'{"TableName":' + orjson.dumps(table) + b',"ConsistentRead":true,' \
            b'"ReturnConsumedCapacity":"TOTAL","Key":'

    def write(self, ops: List[Op]) -> BatchResult:
        res = BatchResult(counts={"unchanged": 0, "retried_races": 0, "vanished": 0})
        # A batch stopped midway (the transform failing under --on-error fail, retries spent) has
        # updated the items before: the report says so ("also written, not settled"), not 0. A
        # dry run's "written" were never sent.
        with contextlib.nullcontext() if self.dry_run else _partial(res):
            for o in ops:
                self._one(o, res)
        return res

    # ------------------------------------------------------------------ one item

    def _one(self, op: Op, res: BatchResult) -> None:
        item: WireItem = op.item
        races = 0
        while True:
            plan = self._plan(item)
            if plan.reason is not None:
                if plan.transform_failed:
                    res.counts["transform_errors"] = res.counts.get("transform_errors", 0) + 1
                res.rejected.append((op, plan.reason, plan.code or "UpdateRefused"))
                return
            if plan.unchanged:
                res.counts["unchanged"] += 1
                return
            assert plan.request is not None
            if self.dry_run:
                res.written += 1
                return
            try:
                self._call("UpdateItem", plan.request, plan.after or item)
                res.written += 1
                return
            except ConditionalCheckFailed as e:
                res.counts["retried_races"] += 1
                races += 1
                current = self._get(item)
                if current is None:
                    res.counts["vanished"] += 1
                    return
                if e.retried and plan.after is not None and _same({"M": current}, {"M": plan.after}):
                    # Our first attempt was applied and its answer lost: the item is what we wrote.
                    res.counts["retried_races"] -= 1
                    res.written += 1
                    return
                if races >= self.max_races:
                    reason = (f"the item changed on each of {races} attempts to update it (a hot item); "
                              "run the update again to settle it")
                    res.rejected.append((op, reason, "ItemKeepsChanging"))
                    return
                item = current
            except AwsError as e:
                if e.code != "ValidationException":
                    raise
                res.rejected.append((op, f"rejected by DynamoDB: {e.message}", e.code))
                return

    def _plan(self, item: WireItem) -> Plan:
        try:
            outs = self.processor.apply(item)
        except TransformError as e:
            if self.processor.proc.on_error == "fail":
                where = orjson.dumps(self.keys.project_or_none(item)).decode()
                raise TransformError(f"{e.message} (source key {where})", code=e.code) from e
            return Plan(reason=e.message, code=e.code or "TransformError", transform_failed=True)
        if not outs:
            return Plan()  # None: leave the item as it is (an update never deletes)
        if len(outs) > 1:
            return Plan(reason=f"an update transform must return one item, not {len(outs)}", code="FanOut")
        out = outs[0]
        p = self.processor.problem(out)
        if p is not None:
            return Plan(reason=p, code="InvalidOutput")
        if self.keys.key(out) != self.keys.key(item):
            return Plan(reason="an update transform must keep the item's key (it returned "
                               f"{orjson.dumps(self.keys.project(out)).decode()})", code="KeyChanged")
        return self.builder.plan(item, out)

    def _call(self, op: str, req: Dict[str, Any], image: WireItem) -> Dict[str, Any]:
        est = float(max(1, -(-item_size(image) // 1024)))
        self.limiter.acquire(est)
        # Every request is conditional on the whole image it was computed from, so one that was
        # applied but whose answer was lost fails its condition when sent again, and _one reads
        # the item to tell which (invariant 1 holds across the resend).
        resp = self.client.call(op, req, table=self.table, limiter=self.limiter, resendable=True)
        consumed = float((resp.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0)
        self.limiter.settle(est, consumed)
        self.client.stats.consumed(write=consumed)
        return resp

    def _get(self, item: WireItem) -> Optional[WireItem]:
        """The item as it is now (strongly consistent), or None when it was deleted."""
        body = self._get_head + orjson.dumps(self.keys.project(item)) + b"}"
        resp = self.client.call("GetItem", body, table=self.table)
        cc = resp.get("ConsumedCapacity") or {}
        self.client.stats.consumed(read=float(cc.get("CapacityUnits") or 0.0))
        got = resp.get("Item")
        return dict(got) if got else None


@dataclass(frozen=True)
class ConditionalUpdateSpec(SinkSpecBase):
    """Updates ``ref``'s table in place with ``processing``'s transform (picklable)."""

    ref: TableRef
    keys: KeySchema
    processing: ProcessingSpec
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    version_attribute: Optional[str] = None
    write_rate: Optional[float] = None
    writers: int = 32
    max_races: int = DEFAULT_MAX_RACES
    dry_run: bool = False
    declared: Optional[Declared] = None  # the write units the table says it admits: where the rate starts

    def build(self, res: Resources) -> ConditionalUpdateSink:
        client = res.client(self.ref, self.retry, pool_size=self.writers + 4)
        return ConditionalUpdateSink(client, self.ref.table, self.keys, Processor(self.processing.build()),
                                     version_attribute=self.version_attribute,
                                     limiter=res.limiter(self.write_rate, "write", self.declared,
                                                         redescriber(client, self.ref.table)),
                                     max_races=self.max_races,
                                     dry_run=self.dry_run)


__all__ = ["ConditionalUpdateSink", "ConditionalUpdateSpec", "Plan", "UpdateRequestBuilder", "diff"]
