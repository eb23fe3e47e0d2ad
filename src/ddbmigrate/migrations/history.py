"""The history table: what was applied, when, by whom, and the lock that lets one runner in.

One DynamoDB table (default ``ddbmigrate_migrations``, hash key ``id``), created on first use::

    id "0003_add_user_alias"   state running|applied|failed|reverting|revert_failed|reverted,
                               checksum, description, started_at, finished_at, who, error,
                               summary (the latest run's steps, bounded), steps (totals of all its
                               steps), attempts, runs [{kind up|down, started_at, finished_at,
                               state, who, error, to}]
    id "__lock__"              owner, who, acquired_at, expires_at (epoch seconds)

The lock is a lease: taken by a conditional PutItem (no lock item, or one whose lease expired),
renewed while the runner works (conditional on still owning it), deleted on exit (conditional
again). A runner that died leaves a lock that anyone may take once it expires.

Invariants:
1. At most one runner holds an unexpired lease: every take and renewal is one conditional write.
   Every migration record is written in one transaction with a check that the writer still
   holds the lease (LockLostError otherwise): a runner that lost the lock writes nothing.
2. A migration's record says ``running`` before its first job starts and ``applied`` only after
   its ``upgrade`` returned; a crash in between leaves ``running`` (or ``failed``), never
   ``applied``, and the next ``up`` resumes it. A revert likewise: ``reverting`` before its
   ``downgrade`` starts, ``reverted`` only after it returned; a crash leaves ``reverting`` (or
   ``revert_failed``), which ``down`` finishes and ``up`` refuses.
3. Times come from an injected clock (tests never sleep to expire a lease).
4. A record is one item, always under DynamoDB's 400 KB: every part of it is bounded (errors
   cut, the last 20 runs), and the per-step ``summary`` — one entry per step, so as long as the
   migration — is cut to what fits (:func:`bounded_summary`), while ``steps`` totals every step.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ..aws.client import DynamoClient
from ..aws.errors import error_code
from ..aws.tables import create_table, wait_active
from ..config import TableRef
from ..core.items import value_size
from ..errors import AwsError, RetriableError, SchemaError, TableNotFoundError, UsageError
from ..reporting.report import utcnow

log = logging.getLogger("ddbmigrate.migrations")

DEFAULT_HISTORY_TABLE = "ddbmigrate_migrations"
LOCK_ID = "__lock__"
DEFAULT_LEASE_SECONDS = 300.0


class LockHeldError(RetriableError):
    """Another runner holds the migrations lock (exit 75: try again later, or --wait)."""


class LockLostError(RetriableError):
    """This runner no longer holds the lock it took (exit 75, as LockHeldError: the lock is, or
    may be, another runner's now; run again later)."""

    reason = "another runner took it, or its lease ran out without a renewal"


_CONFLICT_RETRIES = 5
# An error is kept in a record cut to this: the record is one item (400 KB at most), and an error
# that quotes a large item or answer in full would make the record unwritable, so the migration's
# failure (its real error) would go unrecorded and it would stay "running".
MAX_ERROR_CHARS = 2000


def clip(text: str) -> str:
    """``text`` as a record keeps it (see MAX_ERROR_CHARS)."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:MAX_ERROR_CHARS]}... ({len(text) - MAX_ERROR_CHARS} more characters)"


# What one record may take of DynamoDB's 400 KB (409,600 bytes): the rest is headroom for what
# is measured approximately (the lock check's transaction, numbers' sizes) and for attributes
# added by hand. The per-step summary gets what the rest of the record leaves of it.
MAX_RECORD_BYTES = 320 * 1024
# The first steps of a long migration are kept beside the notable and the last ones (below).
FIRST_STEPS = 10
# A step entry is notable when it has one of these: what an operator must be able to read back.
NOTABLE_KEYS = ("error", "dead_letters", "started_over", "kept", "unsettled")


def _clip_strings(v: Any) -> Any:
    if isinstance(v, str):
        return clip(v)
    if isinstance(v, dict):
        return {k: _clip_strings(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clip_strings(x) for x in v]
    return v


def record_size(v: Any) -> int:
    """Bytes DynamoDB counts for ``v`` as it would be stored: a record (a dict: its attributes'
    names and values), or one value (a list: as an attribute's value)."""
    from boto3.dynamodb.types import TypeSerializer

    ser = TypeSerializer()
    if isinstance(v, dict):
        return sum(len(k.encode("utf-8")) + value_size(ser.serialize(x)) for k, x in _plain(v).items())
    return value_size(ser.serialize(_plain(v)))


def _value_bytes(v: Any) -> int:
    """Bytes DynamoDB counts for ``v`` as a value (a dict is a map: its own overhead counted)."""
    from boto3.dynamodb.types import TypeSerializer

    return value_size(TypeSerializer().serialize(_plain(v)))


def _notable(entry: Dict[str, Any]) -> bool:
    return (any(k in entry for k in NOTABLE_KEYS) or entry.get("exit_code") not in (None, 0)
            or entry.get("status") not in (None, "done", "created", "exists"))


def _ranges(steps: List[int]) -> str:
    """``[3, 4, 5, 9]`` as ``"3-5, 9"``."""
    out: List[str] = []
    for n in sorted(steps):
        if out and n == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def bounded_summary(summary: List[Dict[str, Any]], budget: int) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """(the step entries a record keeps, the totals of every step) for a run's ``summary``.

    Every entry is kept while they all fit in ``budget`` bytes. Past it (a migration of
    thousands of steps), entries are kept in this order until the budget is spent: the last one
    (where the run ended: the failed step), the notable ones (an error, dead letters, a
    checkpoint started over or kept, writes past a checkpoint, a non-zero exit code), newest
    first; the first FIRST_STEPS; then the others, newest first. The kept ones stay in step
    order; the totals (``count``, ``by_kind``, summed ``counters`` and ``seconds``) cover every
    step, and ``omitted`` / ``omitted_steps`` say which entries were left out.
    """
    entries = [_clip_strings(e) for e in summary]
    counters: Dict[str, int] = {}
    by_kind: Dict[str, int] = {}
    seconds = 0.0
    for e in entries:
        kind = str(e.get("kind") or "step")
        by_kind[kind] = by_kind.get(kind, 0) + 1
        for k, v in (e.get("counters") or {}).items():
            if isinstance(v, int) and not isinstance(v, bool):
                counters[k] = counters.get(k, 0) + v
        if isinstance(e.get("seconds"), (int, float)):
            seconds += float(e["seconds"])
    totals: Dict[str, Any] = {"count": len(entries), "by_kind": by_kind, "counters": counters,
                              "seconds": round(seconds, 3), "omitted": 0}
    sizes = [_value_bytes(e) + 1 for e in entries]  # an element of a list: its value and one byte
    if not entries or sum(sizes) + 3 <= budget:
        return entries, totals
    last = len(entries) - 1
    order = [last] + [i for i in range(last - 1, -1, -1) if _notable(entries[i])]
    order += [i for i in range(min(FIRST_STEPS, last))]
    order += list(range(last - 1, -1, -1))
    keep: Set[int] = set()
    used = 3
    for i in order:
        if i not in keep and used + sizes[i] <= budget:
            keep.add(i)
            used += sizes[i]
    left_out = [int(entries[i].get("step") or i + 1) for i in range(len(entries)) if i not in keep]
    totals["omitted"] = len(left_out)
    totals["omitted_steps"] = clip(_ranges(left_out))
    return [entries[i] for i in sorted(keep)], totals


def who_am_i() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container: still say which host and process
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


class History:
    """The history table of one migrations folder; see the module docstring."""

    def __init__(self, ref: TableRef, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, client: Optional[DynamoClient] = None) -> None:
        self.ref = ref
        self.table = ref.table
        self.client = client or DynamoClient(ref, pool_size=4)
        self._own_client = client is None
        self.clock = clock
        self.sleep = sleep

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    # ------------------------------------------------------------------ the table

    def exists(self) -> bool:
        try:
            self._check_key(self.client.describe_table(self.table))
            return True
        except TableNotFoundError:
            return False

    def _check_key(self, desc: Dict[str, Any]) -> None:
        """Refuse a table that is not keyed as a history table (``--history-table`` naming a data
        table): the lock item and records would be refused one by one, or mixed with its items."""
        types = {a.get("AttributeName"): a.get("AttributeType") for a in desc.get("AttributeDefinitions") or []}
        key = [(k.get("AttributeName"), k.get("KeyType")) for k in desc.get("KeySchema") or []]
        if key != [("id", "HASH")] or types.get("id") != "S":
            have = ", ".join(f"{n} ({types.get(n, '?')}, {t.lower()})" for n, t in key) or "unknown"
            raise UsageError(f"table {self.table} is not a migrations history table: its key is {have}, not id "
                             "(S, hash); give --history-table the name of a history table, or of a table to create")

    def ensure(self) -> None:
        """Create the history table on first use (two runners creating it at once is fine)."""
        try:
            desc = self.client.describe_table(self.table)
            self._check_key(desc)
            if desc.get("TableStatus") != "ACTIVE":
                wait_active(self.client, self.table)
            return
        except TableNotFoundError:
            pass
        log.info("creating the migrations history table %s", self.table)
        try:
            create_table(self.client, {"TableName": self.table, "BillingMode": "PAY_PER_REQUEST",
                                       "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                                       "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]})
        except SchemaError as e:
            if e.code != "ResourceInUseException":
                raise
            wait_active(self.client, self.table)

    def records(self) -> Dict[str, Dict[str, Any]]:
        """Every migration record by id (the lock item left out); {} when the table does not exist."""
        if not self.exists():
            return {}
        out: Dict[str, Dict[str, Any]] = {}
        kw: Dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        paginator = self.client.control.get_paginator("scan")
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        for page in paginator.paginate(**kw):
            for raw in page.get("Items", []):
                rec = {k: _native(des.deserialize(v)) for k, v in raw.items()}
                if rec.get("id") != LOCK_ID:
                    if "state" not in rec:  # a data table keyed id: its items are no migrations
                        raise UsageError(f"table {self.table} is not a migrations history table: its item "
                                         f"{str(rec.get('id'))[:80]!r} is no migration record; give --history-table "
                                         "the name of a history table, or of a table to create")
                    out[str(rec["id"])] = rec
        return out

    def lock_item(self) -> Optional[Dict[str, Any]]:
        resp = self.client.control.get_item(TableName=self.table, Key={"id": {"S": LOCK_ID}}, ConsistentRead=True)
        item = resp.get("Item")
        if not item:
            return None
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        return {k: _native(des.deserialize(v)) for k, v in item.items()}

    # ------------------------------------------------------------------ records

    def put(self, item: Dict[str, Any], *, lock: "Lock") -> None:
        """Write one migration record as it is, only while ``lock`` is still this runner's: the
        record and a check of the lock item (same owner, lease not over) are one transaction.

        A runner paused past its lease (a GC pause, a stopped process, a slow network) may wake
        after another runner took the lock and recorded the same migration: its write must not
        replace the new holder's record. LockLostError (nothing written) when the lock is gone.
        """
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        record = {k: ser.serialize(v) for k, v in _plain(item).items()}
        control = self.client.control
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                control.transact_write_items(TransactItems=[
                    {"ConditionCheck": {
                        "TableName": self.table, "Key": {"id": {"S": LOCK_ID}},
                        "ConditionExpression": "#o = :me AND expires_at > :now",
                        "ExpressionAttributeNames": {"#o": "owner"},
                        "ExpressionAttributeValues": {":me": {"S": lock.owner},
                                                      ":now": {"N": repr(round(self.clock(), 3))}}}},
                    {"Put": {"TableName": self.table, "Item": record}},
                ])
                return
            except control.exceptions.TransactionCanceledException as e:
                codes = [str(r.get("Code")) for r in e.response.get("CancellationReasons") or []]
                if "ConditionalCheckFailed" in codes:
                    lock._taken_over = True
                    why = self._holder(lock)
                    lost = LockLostError(f"the migrations lock was lost ({why}); the record of {item.get('id')} "
                                         "was not written", table=self.table, code="LockLost")
                    lost.reason = why
                    raise lost from None
                # The background renewal touching the lock item at the same moment: try again.
                if "TransactionConflict" not in codes or attempt == _CONFLICT_RETRIES:
                    raise RetriableError(
                        f"cannot write the record of {item.get('id')}: transaction cancelled "
                        f"({', '.join(codes) or 'no reason given'})", table=self.table,
                        code="TransactionCanceled") from None
                self.sleep(0.05 * (attempt + 1))
            except control.exceptions.ClientError as e:
                if error_code(e) not in ("AccessDeniedException", "AccessDenied"):
                    raise
                raise AwsError(f"cannot write the record of {item.get('id')}: access denied; recording a migration "
                               f"needs dynamodb:PutItem and dynamodb:ConditionCheckItem on {self.table} (the record "
                               "and a check of the lock are one transaction)", table=self.table,
                               code="AccessDeniedException") from None

    def _holder(self, lock: "Lock") -> str:
        """Who has the lock now, for the one line that says this runner lost it."""
        try:
            held = self.lock_item()
        except Exception:  # the refusal matters, not the name: say what is known
            held = None
        if held is None:
            return "its lease ran out; another runner may have taken the lock and released it since"
        if held.get("owner") != lock.owner:
            return f"taken over by {held.get('who', 'another runner')} at {held.get('acquired_at', '?')}"
        return "its lease ran out without a renewal"

    def start(self, mid: str, checksum: str, description: str, previous: Optional[Dict[str, Any]], *,
              lock: "Lock") -> Dict[str, Any]:
        """Record ``mid`` running (an ``up`` begins it); the record written."""
        rec = dict(previous or {})
        rec.update({"id": mid, "checksum": checksum, "description": clip(description), "state": "running",
                    "started_at": utcnow(), "finished_at": None, "who": who_am_i(), "error": None,
                    "attempts": int(rec.get("attempts") or 0) + 1})
        rec["runs"] = list(rec.get("runs") or [])[-19:] + [{"started_at": rec["started_at"], "who": rec["who"],
                                                            "state": "running", "kind": "up"}]
        rec = {k: v for k, v in rec.items() if v is not None}
        self.put(rec, lock=lock)
        return rec

    def start_revert(self, previous: Dict[str, Any], to: str, *, lock: "Lock") -> Dict[str, Any]:
        """Record the migration of ``previous`` (its record) reverting: a ``down --to to`` begins
        its downgrade. Until ``finish`` says ``reverted`` (or ``revert_failed``), this is what
        the history says: a runner killed in the downgrade leaves it, not ``applied``."""
        rec = dict(previous)
        rec.update({"state": "reverting", "started_at": utcnow(), "finished_at": None, "who": who_am_i(),
                    "error": None})
        rec["runs"] = list(rec.get("runs") or [])[-19:] + [{"started_at": rec["started_at"], "who": rec["who"],
                                                            "state": "reverting", "kind": "down", "to": to}]
        rec = {k: v for k, v in rec.items() if v is not None}
        self.put(rec, lock=lock)
        return rec

    def finish(self, rec: Dict[str, Any], state: str, summary: List[Dict[str, Any]],
               error: Optional[str] = None, *, lock: "Lock") -> Dict[str, Any]:
        """Record the end of the run ``rec`` was started for: ``state``, the run's step
        ``summary`` (bounded to what the item can hold, see bounded_summary) and ``error``."""
        rec = dict(rec)
        rec["state"] = state
        rec["finished_at"] = utcnow()
        error = clip(error) if error else error
        if error:
            rec["error"] = error
        else:
            rec.pop("error", None)
        runs = list(rec.get("runs") or [])
        if runs:
            last = dict(runs[-1])
            last.update({"finished_at": rec["finished_at"], "state": state})
            if error:
                last["error"] = error
            runs[-1] = last
        rec["runs"] = runs
        rest = {k: v for k, v in rec.items() if k not in ("summary", "steps")}
        # The totals are small (a few kinds and counter names, omitted_steps clipped): 4 KB covers them.
        rec["summary"], rec["steps"] = bounded_summary(summary, MAX_RECORD_BYTES - record_size(rest) - 4096)
        self.put(rec, lock=lock)
        return rec

    # ------------------------------------------------------------------ the lock

    def acquire(self, lease: float = DEFAULT_LEASE_SECONDS, wait: float = 0.0) -> "Lock":
        """Take the lock (waiting up to ``wait`` seconds for its holder); LockHeldError otherwise."""
        owner = uuid.uuid4().hex
        deadline = self.clock() + wait
        while True:
            now = self.clock()
            try:
                self.client.control.put_item(
                    TableName=self.table,
                    Item={"id": {"S": LOCK_ID}, "owner": {"S": owner}, "who": {"S": who_am_i()},
                          "acquired_at": {"S": utcnow()}, "expires_at": {"N": repr(round(now + lease, 3))}},
                    ConditionExpression="attribute_not_exists(id) OR expires_at < :now",
                    ExpressionAttributeValues={":now": {"N": repr(round(now, 3))}})
                return Lock(self, owner, lease, now + lease)
            except self.client.control.exceptions.ConditionalCheckFailedException:
                held = self.lock_item() or {}
                if self.clock() >= deadline:
                    left = float(held.get("expires_at") or now) - now
                    raise LockHeldError(  # noqa: B904 - the refusal is the answer, not a failure of the handler
                        f"another runner holds the migrations lock ({held.get('who', 'unknown')}, since "
                        f"{held.get('acquired_at', '?')}, lease ends in {max(0.0, left):.0f}s); wait for it "
                        "(--wait SECONDS) or run again later", table=self.table, code="LockHeld")
                self.sleep(min(2.0, max(0.05, deadline - self.clock())))


class Lock:
    """A held lease: renewed in the background while held, released on exit."""

    def __init__(self, history: History, owner: str, lease: float, expires_at: float) -> None:
        self.history = history
        self.owner = owner
        self.lease = lease
        self.expires_at = expires_at  # the end of the lease as last written by this runner
        self._taken_over = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def lost(self) -> bool:
        """Another runner took the lock, or the lease ran out without a renewal reaching DynamoDB
        (so another runner may have taken it): either way this runner must not go on."""
        return self._taken_over or self.history.clock() >= self.expires_at

    def renew(self) -> bool:
        """Move the lease's end on; False when this runner no longer owns the lock."""
        h = self.history
        until = h.clock() + self.lease
        try:
            h.client.control.update_item(
                TableName=h.table, Key={"id": {"S": LOCK_ID}}, UpdateExpression="SET expires_at = :e",
                ConditionExpression="#o = :me", ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":e": {"N": repr(round(until, 3))}, ":me": {"S": self.owner}})
            self.expires_at = until
            return True
        except h.client.control.exceptions.ConditionalCheckFailedException:
            self._taken_over = True
            return False

    def start_renewing(self) -> None:
        def loop() -> None:
            while not self._stop.wait(max(1.0, self.lease / 3)):
                try:
                    if not self.renew():
                        log.error("the migrations lock was taken over by another runner")
                        return
                except Exception as e:  # a network blip: the next round tries again
                    log.warning("renewing the migrations lock failed: %s", e)

        self._thread = threading.Thread(target=loop, name="migrations-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        h = self.history
        try:
            h.client.control.delete_item(TableName=h.table, Key={"id": {"S": LOCK_ID}}, ConditionExpression="#o = :me",
                                          ExpressionAttributeNames={"#o": "owner"},
                                          ExpressionAttributeValues={":me": {"S": self.owner}})
        except h.client.control.exceptions.ConditionalCheckFailedException:
            pass  # expired and taken by another runner: theirs now

    def __enter__(self) -> "Lock":
        self.start_renewing()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _native(v: Any) -> Any:
    """A record read back: numbers as int (or float), sets as sorted lists, so it prints as JSON."""
    from decimal import Decimal

    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dict):
        return {k: _native(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_native(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted(_native(x) for x in v)
    return v


def _plain(v: Any) -> Any:
    """Report summaries as DynamoDB can store them: floats as Decimal, no empty sets."""
    from decimal import Decimal

    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


__all__ = ["DEFAULT_HISTORY_TABLE", "History", "Lock", "LockHeldError", "LockLostError", "bounded_summary",
           "who_am_i"]

