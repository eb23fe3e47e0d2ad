"""A proxy that gives DynamoDB Local's Streams API a short retention, as DynamoDB trims after 24 h.

    tool ──HTTP──▶ RetentionProxy (127.0.0.1:port) ──HTTP──▶ DynamoDB Local
                        ▲ a poller reads every shard of the watched tables' streams directly and
                        │ notes when each record first appeared (Local's timestamps are per minute)

Records first seen more than ``retention`` seconds ago are *trimmed*, and the proxy answers as
DynamoDB does for trimmed data:

- ``GetShardIterator`` at or after a sequence number with trimmed records after it:
  400 ``TrimmedDataAccessException``;
- ``GetShardIterator`` ``TRIM_HORIZON``: starts after the trimmed records (the request is
  rewritten to ``AFTER_SEQUENCE_NUMBER`` of the last trimmed one), silently, as DynamoDB does;
- ``GetRecords`` whose answer would contain a record trimmed more than ``trim_lag`` seconds ago:
  400 ``TrimmedDataAccessException``.

``scan_delay`` slows every ``Scan`` page down, so a test's backfill outlasts the retention.
``ttl_expired`` marks chosen REMOVE records as TTL expiries (``userIdentity`` the DynamoDB
service), which DynamoDB Local never emits.
Everything else is the fault proxy's (:mod:`ddbmigrate.testing.proxy`): faults, outages, audit.
Memory grows with the records seen (a test tool).
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Dict, List, Optional, Tuple

import orjson

from .proxy import FaultProxy, _loads, _Request


class RetentionProxy(FaultProxy):
    """See the module docstring. ``tables``: the tables whose streams are watched."""

    def __init__(self, target: str, *, retention: float, tables: Sequence[str], scan_delay: float = 0.0,
                 poll_interval: float = 0.1, trim_lag: float = 1.0,
                 ttl_expired: Optional[Callable[[Dict[str, Any]], bool]] = None, **kw: Any) -> None:
        super().__init__(target, **kw)
        self.target = target
        self.retention = retention
        self.tables = list(tables)
        self.scan_delay = scan_delay
        self.poll_interval = poll_interval
        # DynamoDB trims in the background: an iterator handed out just before a record's
        # retention ends can still read it for a moment (without this, every TRIM_HORIZON read
        # near the boundary would race the clock).
        self.trim_lag = trim_lag
        # REMOVE records this says yes to come out as TTL expiries (DynamoDB Local has no TTL):
        # ``userIdentity`` is the DynamoDB service, as on a real stream.
        self.ttl_expired = ttl_expired
        self._lock = threading.Lock()
        # shard id -> (sorted sequence numbers, first-seen times in the same order, seq strings)
        self._seen: Dict[str, Tuple[List[int], List[float], List[str]]] = {}
        self._poll_stop = threading.Event()
        self._poller: Optional[threading.Thread] = None
        self.trimmed_answers = 0  # errors or rewritten iterators served (proof the proxy bit)
        self.horizon_rewrites = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RetentionProxy:
        super().start()
        self._poll_once()  # records present from the start are known before the first request
        self._poller = threading.Thread(target=self._poll, name="retention-poller", daemon=True)
        self._poller.start()
        return self

    def stop(self) -> None:
        self._poll_stop.set()
        if self._poller is not None:
            self._poller.join(10)
        super().stop()

    def watch(self, table: str) -> None:
        with self._lock:
            if table not in self.tables:
                self.tables.append(table)

    # ------------------------------------------------------------------ the poller

    def _client(self) -> Any:
        import boto3

        return boto3.client("dynamodbstreams", endpoint_url=self.target, region_name="us-east-1",
                            aws_access_key_id="x", aws_secret_access_key="x")

    def _poll(self) -> None:
        while not self._poll_stop.wait(self.poll_interval):
            try:
                self._poll_once()
            except Exception:  # Local restarting, a table being deleted: next round
                pass

    _iters: Dict[str, Optional[str]]
    _client_obj: Any = None

    def _poll_once(self) -> None:
        if self._client_obj is None:
            self._client_obj = self._client()
            self._iters = {}
        c = self._client_obj
        with self._lock:
            tables = list(self.tables)
        for table in tables:
            arns = [s["StreamArn"] for s in c.list_streams(TableName=table).get("Streams", [])]
            for arn in arns:
                shards = c.describe_stream(StreamArn=arn)["StreamDescription"].get("Shards", [])
                for sh in shards:
                    sid = sh["ShardId"]
                    if sid not in self._iters:
                        self._iters[sid] = c.get_shard_iterator(StreamArn=arn, ShardId=sid,
                                                                ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                    it = self._iters[sid]
                    while it:
                        resp = c.get_records(ShardIterator=it, Limit=1000)
                        recs = resp.get("Records") or []
                        now = time.time()
                        with self._lock:
                            seqs, times, strs = self._seen.setdefault(sid, ([], [], []))
                            for r in recs:
                                s = r["dynamodb"]["SequenceNumber"]
                                seqs.append(int(s))
                                times.append(now)
                                strs.append(s)
                        it = resp.get("NextShardIterator")
                        self._iters[sid] = it
                        if not recs:
                            break

    # ------------------------------------------------------------------ trimming

    def _trimmed(self, shard: str) -> Tuple[List[int], List[str]]:
        """Sequence numbers (ints, strings) of the shard's trimmed records, oldest first."""
        cut = time.time() - self.retention
        with self._lock:
            seqs, times, strs = self._seen.get(shard, ([], [], []))
            n = bisect.bisect_left(times, cut)
            return seqs[:n], strs[:n]

    def _is_trimmed(self, shard: str, seq: int) -> bool:
        cut = time.time() - self.retention - self.trim_lag
        with self._lock:
            seqs, times, _ = self._seen.get(shard, ([], [], []))
            i = bisect.bisect_left(seqs, seq)
            return i < len(seqs) and seqs[i] == seq and times[i] < cut

    async def _serve(self, req: _Request, writer: asyncio.StreamWriter) -> bool:
        target = (req.header(b"x-amz-target") or b"").decode()
        op = target.rsplit(".", 1)[-1] if target else ""
        if op == "Scan" and self.scan_delay:
            await asyncio.sleep(self.scan_delay)
        if op == "GetShardIterator":
            body = _loads(req.body) or {}
            shard, typ = str(body.get("ShardId")), body.get("ShardIteratorType")
            trimmed, strs = self._trimmed(shard)
            if trimmed and typ in ("AFTER_SEQUENCE_NUMBER", "AT_SEQUENCE_NUMBER"):
                seq = int(body.get("SequenceNumber") or 0)
                lost = trimmed[-1] > seq if typ == "AFTER_SEQUENCE_NUMBER" else trimmed[-1] >= seq
                if lost:
                    self.trimmed_answers += 1
                    return await self._error(writer, req, 400, "TrimmedDataAccessException",
                                             "The operation attempted to read past the oldest stream record in a shard.")
            if trimmed and typ == "TRIM_HORIZON":
                self.horizon_rewrites += 1
                self.trimmed_answers += 1
                new = dict(body, ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=strs[-1])
                status, headers, resp = await self._forward(req, orjson.dumps(new))
                return await self._respond(writer, req, status, headers, resp, recrc=False)
        if op == "GetRecords":
            status, headers, resp = await self._forward(req, req.body)
            if status == 200:
                d = _loads(resp) or {}
                for r in d.get("Records") or []:
                    dyn = r.get("dynamodb") or {}
                    seq = int(dyn.get("SequenceNumber") or 0)
                    owner = self._shard_of(seq)
                    if owner is not None and self._is_trimmed(owner, seq):
                        self.trimmed_answers += 1
                        return await self._error(writer, req, 400, "TrimmedDataAccessException",
                                                 "The operation attempted to read past the oldest stream record "
                                                 "in a shard.")
                if self.ttl_expired is not None:
                    marked = False
                    for r in d.get("Records") or []:
                        if r.get("eventName") == "REMOVE" and self.ttl_expired(r):
                            r["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
                            marked = True
                    if marked:
                        return await self._respond(writer, req, status, headers, orjson.dumps(d), recrc=True)
            return await self._respond(writer, req, status, headers, resp, recrc=False)
        return await super()._serve(req, writer)

    def _shard_of(self, seq: int) -> Optional[str]:
        # Local's sequence numbers are global: the shard that holds a number is the one that saw it.
        with self._lock:
            for sid, (seqs, _, _) in self._seen.items():
                i = bisect.bisect_left(seqs, seq)
                if i < len(seqs) and seqs[i] == seq:
                    return sid
        return None


__all__ = ["RetentionProxy"]
