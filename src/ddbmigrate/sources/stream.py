"""DynamoDB Streams reading: shard discovery, lineage, iterators and resumable shard positions.

Follows the KCL lifecycle (initialize -> process records -> checkpoint -> shard ended -> children):

    DescribeStream (paginated) ──▶ shards + parents ──▶ ready = not finished, parent finished
        ready shard ──GetShardIterator(position)──▶ GetRecords pages ──▶ records handed out
                                         no NextShardIterator ──▶ shard finished ──▶ children ready

A shard position is a small JSON value kept in the caller's checkpoint::

    {"after": "<seq>"}               resume after this record (AFTER_SEQUENCE_NUMBER)
    {"at": "<seq>"}                  resume at this record (AT_SEQUENCE_NUMBER)
    {"from": "TRIM_HORIZON", "since": <epoch s>}   every record still in the shard
    {"from": "LATEST"}               only records written from now on
    {"done": true}                   the shard is closed and every record was handed out

Invariants:
1. A child shard is read only after its parent is finished (or its parent is gone from the
   stream, or was closed before replication started): per-item order survives shard splits.
2. Positions only move past records that were handed out; the caller checkpoints a position only
   after the target acknowledged the writes of every record before it.
3. A position the stream can no longer serve (``TrimmedDataAccessException``, a missing shard,
   a checkpoint or a TRIM_HORIZON start older than the retention: 24 h, or ``retention`` seconds
   for tests that simulate a short one) raises
   :class:`ResyncNeededError`; records are never skipped silently. Expired iterators (15 min)
   are renewed from the position transparently, and so, once, is a TRIM_HORIZON iterator of a
   shard nothing was read from yet and that was empty within the retention (nothing in it can be
   trimmed): DynamoDB Local refuses one as trimmed when other tables took writes while the shard
   was empty, which stopped every replication whose stream the replicator had just enabled.

Sequence numbers are compared as integers (DynamoDB Local shares one counter between streams and
pads them; real ones are up to 40 digits). DynamoDB Local may send an empty nested map as ``{}``
without its ``M`` tag; :func:`fix_image` restores the tag before anything else sees the image.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from ..aws.client import DynamoClient
from ..config import RetryPolicy, TableRef
from ..core.items import WireItem
from ..errors import DdbMigrateError, FatalError, ResyncNeededError

RETENTION_SECONDS = 24 * 3600
# Safety margin against the 24 h retention and clock skew between us and DynamoDB.
RETENTION_MARGIN = 10 * 60
ITERATOR_TYPES = ("AFTER_SEQUENCE_NUMBER", "AT_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST")

Position = Dict[str, Any]


def seq_int(seq: str) -> int:
    """Sequence numbers are decimal strings of varying width: compare them as integers."""
    return int(seq)


def fix_value(v: Any) -> Any:
    """One attribute value with DynamoDB Local's untagged empty map (``{}``) restored to ``{"M": {}}``."""
    if not v:
        return {"M": {}}
    if "M" in v:
        m = v["M"]
        if any(not x or "M" in x or "L" in x for x in m.values()):
            return {"M": {k: fix_value(x) for k, x in m.items()}}
        return v
    if "L" in v:
        lst = v["L"]
        if any(not x or "M" in x or "L" in x for x in lst):
            return {"L": [fix_value(x) for x in lst]}
        return v
    return v


def fix_image(image: Optional[WireItem]) -> Optional[WireItem]:
    """A stream image safe to write back (see the module docstring); unchanged images are not copied."""
    if image is None:
        return None
    for x in image.values():
        if not x or "M" in x or "L" in x:
            return {k: fix_value(v) for k, v in image.items()}
    return image


@dataclass
class ShardInfo:
    shard_id: str
    parent_id: Optional[str]
    start_seq: Optional[str]
    end_seq: Optional[str]  # None while the shard is open

    @property
    def closed(self) -> bool:
        return self.end_seq is not None

    @property
    def start_int(self) -> int:
        return seq_int(self.start_seq) if self.start_seq else 0


@dataclass
class StreamDescription:
    arn: str
    status: str
    view_type: Optional[str]
    shards: List[ShardInfo]


@dataclass
class Page:
    """One GetRecords answer for one shard, with the shard's position after it."""

    shard_id: str
    records: List[Dict[str, Any]]
    position: Position
    finished: bool  # the shard is closed and now fully read


@dataclass
class _Cursor:
    iterator: Optional[str] = None
    last_empty: bool = False  # the last GetRecords returned nothing (caught up, for now)


class StreamReader:
    """Reads one stream shard by shard, in lineage order, from JSON-able positions.

    ``client`` is anything with ``call(op, payload)`` raising ddbmigrate errors carrying the AWS
    error ``code`` (a :class:`DynamoClient` for the Streams API, or a scripted fake in unit tests).
    """

    def __init__(
        self,
        client: Any,
        stream_arn: str,
        *,
        page_limit: int = 1000,
        describe_every: float = 30.0,
        clock: Callable[[], float] = time.time,
        retention: float = RETENTION_SECONDS,
    ) -> None:
        self.client = client
        self.arn = stream_arn
        self.page_limit = page_limit
        self.describe_every = describe_every
        self.clock = clock
        self.retention = retention
        self.shards: Dict[str, ShardInfo] = {}
        self.positions: Dict[str, Position] = {}
        self.status = "ENABLED"
        self.view_type: Optional[str] = None
        self._cursors: Dict[str, _Cursor] = {}
        self._described_at: Optional[float] = None
        self._saved_ago = 0.0  # how long ago the positions load() was given were saved
        self.iterator_renewals = 0
        self.get_records_calls = 0
        self.forgotten: List[str] = []  # finished shards dropped by refresh (the caller forgets them too)

    # ------------------------------------------------------------------ discovery

    def describe(self) -> StreamDescription:
        """DescribeStream, following ``LastEvaluatedShardId`` until every shard is listed."""
        shards: List[ShardInfo] = []
        req: Dict[str, Any] = {"StreamArn": self.arn}
        status, view = "ENABLED", None
        while True:
            try:
                resp = self.client.call("DescribeStream", req)
            except DdbMigrateError as e:
                if e.code == "ResourceNotFoundException":
                    raise ResyncNeededError(
                        f"stream {self.arn} no longer exists (disabled, or the table was recreated)",
                        code=e.code) from None
                raise
            desc = resp.get("StreamDescription") or {}
            status = str(desc.get("StreamStatus") or status)
            view = desc.get("StreamViewType") or view
            for s in desc.get("Shards") or []:
                rng = s.get("SequenceNumberRange") or {}
                shards.append(ShardInfo(str(s["ShardId"]), s.get("ParentShardId"), rng.get("StartingSequenceNumber"),
                                        rng.get("EndingSequenceNumber")))
            last = desc.get("LastEvaluatedShardId")
            if not last:
                break
            req["ExclusiveStartShardId"] = last
        return StreamDescription(self.arn, status, view, shards)

    def refresh(self, force: bool = False) -> None:
        """Learn new shards (and closed ones); new shards start at TRIM_HORIZON."""
        now = self.clock()
        if not force and self._described_at is not None and now - self._described_at < self.describe_every:
            return
        d = self.describe()
        self._described_at = now
        self.status, self.view_type = d.status, d.view_type
        listed = {s.shard_id for s in d.shards}
        # The first listing after a resume: a shard new to us may have begun any time after the
        # positions were saved (hours ago), and its oldest records be that close to trimming.
        since, self._saved_ago = now - self._saved_ago, 0.0
        for s in d.shards:
            self.shards[s.shard_id] = s
            if s.shard_id not in self.positions:
                # A shard we have never seen began after our start: all of it is new to us.
                self.positions[s.shard_id] = {"from": "TRIM_HORIZON", "since": since}
        for sid, pos in list(self.positions.items()):
            if sid not in listed and not pos.get("done"):
                # Shards are listed until their last record is trimmed: this one's unread records
                # are gone (a resume found it so; its children would wait for it forever).
                raise self._resync(sid, f"shard {sid} is gone from the stream before it was read to its end "
                                   f"(from {_pos_text(pos)}; its records are older than the retention)")
        for sid in [sid for sid in list(self.shards) if sid not in listed]:
            if self.positions.get(sid, {}).get("done"):
                # Finished and trimmed from the stream (24 h): forgotten, so a replication that
                # runs for weeks keeps as many shards in memory as the stream lists. A child
                # whose parent is unknown treats it as finished (see _parent_finished).
                del self.shards[sid]
                del self.positions[sid]
                self.forgotten.append(sid)

    def start_positions(self) -> Dict[str, Position]:
        """Positions recorded *before* a backfill: every change from now on will be replayed.

        Closed shards hold only changes older than the backfill's scan: finished. Open shards
        are read from TRIM_HORIZON (records older than the start are skipped by time by the
        caller), so nothing written after this moment can be missed, whatever the shard holds.
        """
        d = self.describe()
        now = self.clock()
        self.shards = {s.shard_id: s for s in d.shards}
        self.status, self.view_type = d.status, d.view_type
        self._described_at = now
        out: Dict[str, Position] = {}
        for s in d.shards:
            out[s.shard_id] = {"done": True} if s.closed else {"from": "TRIM_HORIZON", "since": now}
        self.positions = dict(out)
        return out

    def load(self, positions: Dict[str, Position], saved_ago: float = 0.0) -> None:
        """Continue from checkpointed positions (iterators are rebuilt lazily), saved ``saved_ago`` s ago."""
        self.positions = {k: dict(v) for k, v in positions.items()}
        self._cursors = {}
        self._described_at = None
        self._saved_ago = max(0.0, saved_ago)

    def snapshot(self) -> Dict[str, Position]:
        return {k: dict(v) for k, v in self.positions.items()}

    # ------------------------------------------------------------------ lineage

    def _parent_finished(self, s: ShardInfo) -> bool:
        pid = s.parent_id
        if not pid:
            return True
        pos = self.positions.get(pid)
        if pos is None:
            # Parent unknown: trimmed from the stream (older than 24 h) or never ours to read.
            return pid not in self.shards
        return bool(pos.get("done"))

    def ready_shards(self) -> List[str]:
        """Unfinished shards whose parent is finished, oldest first."""
        # list(): the status thread calls this while the reader thread may add shards.
        ready = [s for sid, s in list(self.shards.items())
                 if not self.positions.get(sid, {}).get("done") and self._parent_finished(s)]
        ready.sort(key=lambda s: (s.start_int, s.shard_id))
        return [s.shard_id for s in ready]

    def waiting_shards(self) -> List[str]:
        """Unfinished shards still waiting for their parent."""
        return [sid for sid, s in list(self.shards.items())
                if not self.positions.get(sid, {}).get("done") and not self._parent_finished(s)]

    def all_finished(self) -> bool:
        return bool(self.shards) and all(self.positions.get(sid, {}).get("done") for sid in self.shards)

    def caught_up(self) -> bool:
        """Every readable shard answered its last read with no records."""
        for sid in self.ready_shards():
            c = self._cursors.get(sid)
            if c is None or not c.last_empty:
                return False
        return not self.waiting_shards()

    # ------------------------------------------------------------------ reading

    def _iterator(self, shard_id: str) -> Optional[str]:
        pos = self.positions[shard_id]
        req: Dict[str, Any] = {"StreamArn": self.arn, "ShardId": shard_id}
        if "after" in pos:
            req.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=pos["after"])
        elif "at" in pos:
            req.update(ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=pos["at"])
        elif pos.get("from") == "LATEST":
            req["ShardIteratorType"] = "LATEST"
        else:
            since = pos.get("since")
            margin = min(RETENTION_MARGIN, self.retention / 4)
            if since is not None and self.clock() - float(since) > self.retention - margin:
                raise self._resync(shard_id, f"shard {shard_id} has been waiting since "
                                   f"{_fmt_time(float(since))}, longer than the stream's retention "
                                   f"({_fmt_span(self.retention)})")
            req["ShardIteratorType"] = "TRIM_HORIZON"
        try:
            resp = self.client.call("GetShardIterator", req)
        except DdbMigrateError as e:
            if e.code == "TrimmedDataAccessException":
                raise self._resync(shard_id, f"the stream no longer holds the records after {_pos_text(pos)} "
                                   f"of shard {shard_id} (trimmed after 24 h)") from None
            if e.code == "ResourceNotFoundException":
                raise self._resync(shard_id, f"shard {shard_id} is gone from the stream (older than 24 h)") from None
            raise
        it = resp.get("ShardIterator")
        return str(it) if it else None

    def _seen_empty_lately(self, shard_id: str) -> bool:
        """Whether ``shard_id`` is read from TRIM_HORIZON, nothing read yet, and it was empty up to
        a moment well within the stream's retention (so nothing in it can have been trimmed)."""
        pos = self.positions[shard_id]
        since = pos.get("since")
        margin = min(RETENTION_MARGIN, self.retention / 4)
        return (pos.get("from") == "TRIM_HORIZON" and since is not None
                and self.clock() - float(since) < self.retention - margin)

    def _resync(self, shard_id: str, why: str) -> ResyncNeededError:
        return ResyncNeededError(f"resync needed: {why}", code="TrimmedDataAccessException")

    def read_page(self, shard_id: str) -> Page:
        """One GetRecords page of a ready shard; the position moves past the records returned."""
        cur = self._cursors.setdefault(shard_id, _Cursor())
        renewed = horizon_again = False
        while True:
            if cur.iterator is None:
                it = self._iterator(shard_id)
                if it is None:  # no iterator for a closed, fully read shard
                    return self._finish(shard_id, cur, [])
                cur.iterator = it
            try:
                self.get_records_calls += 1
                asked_at = self.clock()
                resp = self.client.call("GetRecords", {"ShardIterator": cur.iterator, "Limit": self.page_limit})
            except DdbMigrateError as e:
                if e.code == "ExpiredIteratorException" and not renewed:
                    # Iterators live 15 minutes; a new one from the same position loses nothing.
                    cur.iterator = None
                    renewed = True
                    self.iterator_renewals += 1
                    continue
                if e.code == "TrimmedDataAccessException" and not horizon_again and self._seen_empty_lately(shard_id):
                    # Nothing read yet, and the shard was empty when last read, moments ago: no
                    # record it has can be old enough to be trimmed. DynamoDB Local says this of an
                    # iterator from TRIM_HORIZON of a shard that was empty while other tables took
                    # writes (its sequence numbers are shared); a fresh one reads the records.
                    cur.iterator = None
                    horizon_again = True
                    self.iterator_renewals += 1
                    continue
                if e.code == "TrimmedDataAccessException":
                    raise self._resync(shard_id, f"the stream trimmed records of shard {shard_id} before "
                                       f"{_pos_text(self.positions[shard_id])} was read (older than 24 h)") from None
                if e.code == "ResourceNotFoundException":
                    raise self._resync(shard_id, f"shard {shard_id} is gone from the stream") from None
                raise
            break
        records = list(resp.get("Records") or [])
        cur.last_empty = not records
        pos = self.positions[shard_id]
        if records:
            self.positions[shard_id] = {"after": str(records[-1]["dynamodb"]["SequenceNumber"])}
        elif pos.get("from") == "TRIM_HORIZON" and "since" in pos:
            # An empty shard up to this read: nothing older than it can be lost. (Not up to the
            # iterator's creation: the next iterators of a shard polled empty for a day are chained
            # from the first one, and its time called a resume right after a stop "resync needed".)
            self.positions[shard_id] = {"from": "TRIM_HORIZON", "since": asked_at}
        nxt = resp.get("NextShardIterator")
        if not nxt:
            return self._finish(shard_id, cur, records)
        cur.iterator = str(nxt)
        return Page(shard_id, records, dict(self.positions[shard_id]), False)

    def _finish(self, shard_id: str, cur: _Cursor, records: List[Dict[str, Any]]) -> Page:
        self.positions[shard_id] = {"done": True}
        self._cursors.pop(shard_id, None)
        # Children may be listed already; if not, the next refresh must not wait describe_every.
        self._described_at = None
        return Page(shard_id, records, {"done": True}, True)


def _pos_text(pos: Position) -> str:
    if "after" in pos:
        return f"sequence number {pos['after']}"
    if "at" in pos:
        return f"sequence number {pos['at']}"
    return str(pos.get("from", pos))


def _fmt_span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def _fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def stream_client(ref: TableRef, table_client: Optional[DynamoClient] = None, *,
                  retry: Optional[RetryPolicy] = None, pool_size: int = 8) -> DynamoClient:
    """A fast-path client for the DynamoDB Streams API of the table ``ref`` lives in.

    The endpoint is ``ref.endpoint_url`` (DynamoDB Local serves both APIs on one port), else
    ``AWS_ENDPOINT_URL_DYNAMODB_STREAMS``, else the table endpoint when it is not AWS's own (a
    local or proxy endpoint given by environment), else the region's streams endpoint.
    """
    endpoint = ref.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB_STREAMS")
    if endpoint is None and table_client is not None and "amazonaws.com" not in table_client.endpoint:
        endpoint = table_client.endpoint
    sref = TableRef(ref.table, region=ref.region or (table_client.region if table_client else None),
                    profile=ref.profile, role_arn=ref.role_arn, endpoint_url=endpoint,
                    role_session_name=ref.role_session_name, external_id=ref.external_id)
    return DynamoClient(sref, pool_size=pool_size, retry=retry, service="dynamodbstreams")


def approx_time(record: Dict[str, Any]) -> Optional[float]:
    """A record's ApproximateCreationDateTime in epoch seconds (float), if present."""
    v = (record.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def check_stream_view(view_type: Optional[str], *, needs_old: bool, table: str) -> None:
    """Refuse a stream whose images cannot express every change for this replication."""
    if view_type == "NEW_AND_OLD_IMAGES":
        return
    if view_type == "NEW_IMAGE" and not needs_old:
        return
    why = ("the transform needs old images to delete the target items derived from a removed or "
           "re-keyed source item" if needs_old else "puts need the new image of every change")
    raise FatalError(
        f"the stream of {table} has view type {view_type}; replication needs NEW_AND_OLD_IMAGES ({why}). "
        f"A stream's view type cannot change: disable the stream and enable it again with "
        f"NEW_AND_OLD_IMAGES (aws dynamodb update-table --table-name {table} --stream-specification "
        f"StreamEnabled=false, then StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES), then start "
        f"replication over", table=table, code="StreamViewType")


__all__ = [
    "ITERATOR_TYPES",
    "Page",
    "Position",
    "RETENTION_SECONDS",
    "ShardInfo",
    "StreamDescription",
    "StreamReader",
    "approx_time",
    "check_stream_view",
    "fix_image",
    "seq_int",
    "stream_client",
]
