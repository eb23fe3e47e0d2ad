"""A seeded fault-injecting HTTP proxy for DynamoDB (Local), on loopback, standard library only.

    tool ──HTTP──▶ FaultProxy (127.0.0.1:port) ──HTTP──▶ DynamoDB Local

Each request to an eligible operation (the data plane by default: Scan, Query, BatchWriteItem,
PutItem, DeleteItem, ...) may get, with the probabilities in :class:`Faults`:

- ``throttle``: 400 ``ProvisionedThroughputExceededException`` (not forwarded);
- ``error500`` / ``error503``: 500 ``InternalServerError`` / 503 ``ServiceUnavailable`` (not forwarded);
- ``reset``: the connection is reset before the request is forwarded;
- ``lost_response``: forwarded (the server applies the write), then the connection is reset
  instead of answering — the client must retry a write that already happened;
- ``unprocessed``: a BatchWriteItem is forwarded with only some of its requests; the rest come
  back as ``UnprocessedItems`` (the response's ``x-amz-crc32`` is recomputed for the new body);
- ``echo_headers``: 403 ``AccessDeniedException`` (not forwarded) whose message repeats every
  request header, ``Authorization`` and ``X-Amz-Security-Token`` included, as some proxies and
  gateways do: what the tool prints, logs or stores from it must not carry the secrets;
- outages (``Faults.outages``: (start, seconds) after the first request, or :meth:`start_outage`):
  every request, of any operation, has its connection reset.

The choice is made by one ``random.Random(seed)`` in arrival order, so a run is reproducible up
to thread scheduling. The :class:`Audit` records requests by operation, faults injected by kind,
and per key how many writes were forwarded (write amplification), plus any relative update
(``UpdateItem``, ``UpdateExpression``, ``AttributeUpdates``), which ddbmigrate must never send.

Run it standalone::

    python -m ddbmigrate.testing.proxy --target http://127.0.0.1:8000 --seed 7 \\
        --throttle 0.05 --unprocessed 0.1 --outage 10:30 --audit audit.json

then point the tool at it with ``--endpoint-url http://127.0.0.1:<port>``. With
``--write-capacity 1500 --partitions 4`` each table admits 1,500 write units a second, split
over 4 partitions by the hash of the partition key (``testing/capacity.py``);
``GET /__proxy__/capacity`` returns what it admitted and throttled (efficiency, hot keys),
``POST /__proxy__/capacity?units=750`` changes the capacity while a job runs (a GET with the
query does too, for older scripts), ``POST /__proxy__/outage?seconds=5`` starts an outage and
``GET /__proxy__/audit`` returns the audit; any other path is 404.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

import orjson

from ..aws.capacity import CAPACITY_MODEL_HEADER
from .capacity import WriteCapacity

DATA_PLANE_OPS: FrozenSet[str] = frozenset((
    "Scan", "Query", "GetItem", "BatchGetItem", "PutItem", "DeleteItem", "UpdateItem", "BatchWriteItem",
    "TransactWriteItems", "GetRecords", "GetShardIterator",
))
WRITE_OPS: FrozenSet[str] = frozenset(("PutItem", "DeleteItem", "UpdateItem", "BatchWriteItem", "TransactWriteItems"))
FAULT_KINDS = ("throttle", "error500", "error503", "reset", "lost_response", "unprocessed", "echo_headers")
_ERR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_HOP_HEADERS = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
                          b"trailer", b"upgrade", b"content-length"))


@dataclass
class Faults:
    """Per-request fault probabilities (each in [0, 1]; checked in FAULT_KINDS order)."""

    throttle: float = 0.0
    error500: float = 0.0
    error503: float = 0.0
    reset: float = 0.0
    lost_response: float = 0.0
    unprocessed: float = 0.0
    echo_headers: float = 0.0
    outages: List[Tuple[float, float]] = field(default_factory=list)  # (start s after first request, seconds)
    ops: FrozenSet[str] = DATA_PLANE_OPS
    # Only inject into requests that write (so scans stay clean), when set.
    writes_only: bool = False
    # A table's write capacity split over partitions (testing/capacity.py); None: unlimited.
    capacity: Optional[WriteCapacity] = None

    def total(self) -> float:
        return float(sum(getattr(self, k) for k in FAULT_KINDS))


class Audit:
    """What went through the proxy. Thread-safe snapshots (the proxy runs on its own loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by operation, as received
        self.forwarded: Counter[str] = Counter()  # by operation, sent to the server
        self.faults: Counter[str] = Counter()  # injected, by kind (plus "outage")
        self.writes: Counter[Tuple[str, str]] = Counter()  # (table, canonical key) -> writes forwarded
        self.relative_updates = 0
        self.outage_recoveries: List[float] = []  # seconds from an outage's end to the next success
        self.keys: Dict[str, List[str]] = {}  # table -> key attribute names (learned from DescribeTable)
        self.gsi_keys: Dict[str, Dict[str, str]] = {}  # table -> {index: its partition key attribute}

    # --------------------------------------------------------------- recording (loop thread)

    def note(self, counter: str, key: Any, n: int = 1) -> None:
        with self._lock:
            getattr(self, counter)[key] += n

    def note_writes(self, op: str, body: Dict[str, Any]) -> None:
        with self._lock:
            if op == "BatchWriteItem":
                for table, reqs in (body.get("RequestItems") or {}).items():
                    for r in reqs:
                        img = (r.get("PutRequest") or {}).get("Item") or (r.get("DeleteRequest") or {}).get("Key")
                        self.writes[(table, self._key(table, img or {}))] += 1
            elif op in ("PutItem", "DeleteItem", "UpdateItem"):
                table = str(body.get("TableName"))
                self.writes[(table, self._key(table, body.get("Item") or body.get("Key") or {}))] += 1
            elif op == "TransactWriteItems":
                for t in body.get("TransactItems") or []:
                    for kind, spec in t.items():
                        if kind == "ConditionCheck":
                            continue
                        table = str(spec.get("TableName"))
                        self.writes[(table, self._key(table, spec.get("Item") or spec.get("Key") or {}))] += 1

    def _key(self, table: str, image: Dict[str, Any]) -> str:
        names = self.keys.get(table)
        key = {n: image.get(n) for n in names} if names else image
        return orjson.dumps(key, option=orjson.OPT_SORT_KEYS).decode()

    def learn_keys(self, desc: Dict[str, Any]) -> None:
        t = desc.get("Table") or desc.get("TableDescription") or {}
        if t.get("TableName") and t.get("KeySchema"):
            with self._lock:
                self.keys[t["TableName"]] = [k["AttributeName"] for k in t["KeySchema"]]
                self.gsi_keys[t["TableName"]] = {
                    g["IndexName"]: next(k["AttributeName"] for k in g["KeySchema"] if k["KeyType"] == "HASH")
                    for g in t.get("GlobalSecondaryIndexes") or []}

    # --------------------------------------------------------------- reading (any thread)

    def writes_for(self, table: str) -> Dict[str, int]:
        with self._lock:
            return {k: n for (t, k), n in self.writes.items() if t == table}

    def write_amplification(self, table: str, items: Optional[int] = None) -> float:
        """Writes forwarded per distinct key (or per ``items``): 1.0 means no write was repeated."""
        w = self.writes_for(table)
        denom = items if items is not None else len(w)
        return round(sum(w.values()) / denom, 4) if denom else 0.0

    def snapshot(self, capacity: Optional[WriteCapacity] = None) -> Dict[str, Any]:
        extra = {"capacity": capacity.snapshot()} if capacity is not None else {}
        with self._lock:
            return {**extra,
                "requests": dict(self.requests), "forwarded": dict(self.forwarded), "faults": dict(self.faults),
                "writes_forwarded": sum(self.writes.values()), "distinct_keys_written": len(self.writes),
                "max_writes_per_key": max(self.writes.values(), default=0),
                "relative_updates": self.relative_updates,
                "outage_recoveries_s": [round(x, 3) for x in self.outage_recoveries],
            }


class _Request:
    __slots__ = ("method", "target", "version", "headers", "body")

    def __init__(self, method: bytes, target: bytes, version: bytes, headers: List[Tuple[bytes, bytes]],
                 body: bytes) -> None:
        self.method, self.target, self.version, self.headers, self.body = method, target, version, headers, body

    def header(self, name: bytes) -> Optional[bytes]:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class FaultProxy:
    """The proxy. ``start()`` serves from a background thread; or ``await serve()`` in a loop."""

    def __init__(self, target: str, *, seed: int = 0, faults: Optional[Faults] = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        u = urllib.parse.urlsplit(target)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"--target must be an http:// URL, not {target!r}")
        self.upstream = (u.hostname, u.port or 80)
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.seed = seed
        self.host = host
        self.port = port
        self.audit = Audit()
        self._first: Optional[float] = None
        self._manual_outage_until = 0.0
        self._outage_ends: List[float] = []
        self._server: Optional[asyncio.AbstractServer] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._pool: List[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --------------------------------------------------------------- lifecycle

    def start(self) -> "FaultProxy":
        """Serve from a daemon thread; returns once the port is bound."""
        ready = threading.Event()
        failure: List[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._bind())
            except BaseException as e:  # surface bind errors to the caller
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _bind(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._clients):
            w.close()
        for _, w in self._pool:
            w.close()
        self._pool.clear()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def serve_forever(self) -> None:
        await self._bind()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    def serve_until_signalled(self, banner: Callable[[str], str]) -> None:
        """Serve in this thread until SIGINT or SIGTERM; ``banner(url)`` is printed once bound."""

        async def run() -> None:
            await self._bind()
            print(banner(self.url), flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await self._close()

        asyncio.run(run())

    def start_outage(self, seconds: float) -> None:
        """Reset every request for ``seconds`` from now (callable from any thread)."""
        self._manual_outage_until = time.monotonic() + seconds
        self._outage_ends.append(self._manual_outage_until)

    def end_outage(self) -> None:
        """End a :meth:`start_outage` outage now."""
        self._manual_outage_until = 0.0

    def reset_rng(self, seed: Optional[int] = None) -> None:
        self.rng = random.Random(self.seed if seed is None else seed)

    # --------------------------------------------------------------- per connection

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    return
                keep = await self._serve(req, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        except asyncio.CancelledError:
            # Stopped with this connection open (kept alive, idle): the connection ends here. Let
            # through, asyncio printed its traceback on every stop with a client connected.
            return
        finally:
            self._clients.discard(writer)
            if not writer.is_closing():
                writer.close()

    def _in_outage(self, now: float) -> bool:
        if now < self._manual_outage_until:
            return True
        if self._first is None:
            return False
        t = now - self._first
        for start, secs in self.faults.outages:
            if start <= t < start + secs:
                end = self._first + start + secs
                if end not in self._outage_ends:
                    self._outage_ends.append(end)
                return True
        return False

    def _choose(self, op: str) -> Optional[str]:
        f = self.faults
        if op not in f.ops or (f.writes_only and op not in WRITE_OPS) or f.total() <= 0:
            return None
        x = self.rng.random()
        for kind in FAULT_KINDS:
            p = getattr(f, kind)
            if kind == "unprocessed" and op != "BatchWriteItem":
                continue
            if x < p:
                return kind
            x -= p
        return None

    async def _serve(self, req: _Request, writer: asyncio.StreamWriter) -> bool:
        now = time.monotonic()
        target = (req.header(b"x-amz-target") or b"").decode()
        op = target.rsplit(".", 1)[-1] if target else ""
        if req.target == b"/__proxy__" or req.target.startswith((b"/__proxy__/", b"/__proxy__?")):
            return await self._control(req, writer)
        self.audit.note("requests", op)
        if op in DATA_PLANE_OPS and self._first is None:
            self._first = now
        body: Optional[Dict[str, Any]] = None
        if op in WRITE_OPS:
            body = _loads(req.body)
            if op == "UpdateItem" or b"UpdateExpression" in req.body or b"AttributeUpdates" in req.body:
                with self.audit._lock:
                    self.audit.relative_updates += 1
        if self._in_outage(now):
            self.audit.note("faults", "outage")
            _reset(writer)
            return False
        kind = self._choose(op)
        if kind is not None:
            self.audit.note("faults", kind)
        if kind == "throttle":
            return await self._error(writer, req, 400, "ProvisionedThroughputExceededException",
                                     "The level of configured provisioned throughput for the table was exceeded.")
        if kind == "error500":
            return await self._error(writer, req, 500, "InternalServerError", "Internal server error")
        if kind == "error503":
            return await self._error(writer, req, 503, "ServiceUnavailable", "Service unavailable")
        if kind == "reset":
            _reset(writer)
            return False
        if kind == "echo_headers":
            echoed = "; ".join(f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in req.headers)
            return await self._error(writer, req, 403, "AccessDeniedException",
                                     f"Forbidden by policy. Your request was: {req.method.decode()} "
                                     f"{req.target.decode('latin-1')} with headers {{{echoed}}}")

        held: List[Any] = []
        fwd_body = req.body
        if kind == "unprocessed" and body is not None:
            fwd_body, held, body = self._split_batch(body)
        elif self.faults.capacity is not None and body is not None and op in ("BatchWriteItem", "PutItem",
                                                                               "DeleteItem"):
            if self._learn_needed(op, body):
                await self._describe(req, op, body)
            fwd_body, held, body = self._admit(op, body, fwd_body)
            if held and body is None and op != "BatchWriteItem":
                return await self._error(writer, req, 400, "ProvisionedThroughputExceededException",
                                         "The level of configured provisioned throughput for the table was exceeded.")
            if held and body is None:
                # Nothing fits: DynamoDB refuses the whole call rather than returning all of it.
                return await self._error(writer, req, 400, "ProvisionedThroughputExceededException",
                                         "The level of configured provisioned throughput for the table was exceeded.")
        if held and body is None:
            # Nothing forwarded: everything comes back unprocessed.
            status, headers, resp = 200, [(b"Content-Type", b"application/x-amz-json-1.0")], b"{}"
        else:
            status, headers, resp = await self._forward(req, fwd_body)
            self.audit.note("forwarded", op)
            if body is not None and 200 <= status < 300:
                self.audit.note_writes(op, body)
        if status == 200 and op in ("DescribeTable", "CreateTable"):
            d = _loads(resp)
            if d:
                self.audit.learn_keys(d)
            cap = self.faults.capacity
            if op == "DescribeTable" and cap is not None and cap.declared:
                # The model is a table that says what it admits, as a provisioned table's
                # WriteCapacityUnits does on DynamoDB (DynamoDB Local's say whatever the table was
                # created with, and are not read). A header of its own: the body is Local's.
                headers = [*headers, (CAPACITY_MODEL_HEADER.encode(), repr(float(cap.units)).encode())]
        if status == 200 and op in DATA_PLANE_OPS and self._outage_ends:
            ended = [e for e in self._outage_ends if e <= now]
            if ended:
                with self.audit._lock:
                    self.audit.outage_recoveries.extend(now - e for e in ended)
                self._outage_ends = [e for e in self._outage_ends if e > now]
        if held:
            d = _loads(resp) or {}
            un = d.setdefault("UnprocessedItems", {})
            for table, reqs in held:
                un.setdefault(table, []).extend(reqs)
            resp = orjson.dumps(d)
        if kind == "lost_response":
            _reset(writer)
            return False
        return await self._respond(writer, req, status, headers, resp, recrc=bool(held))

    def _learn_needed(self, op: str, body: Dict[str, Any]) -> bool:
        tables = list((body.get("RequestItems") or {}).keys()) if op == "BatchWriteItem" else [body.get("TableName")]
        return any(t not in self.audit.keys for t in tables)

    async def _describe(self, req: _Request, op: str, body: Dict[str, Any]) -> None:
        """The key schema of a table first written before the tool described it through us."""
        tables = list((body.get("RequestItems") or {}).keys()) if op == "BatchWriteItem" else [body.get("TableName")]
        for t in tables:
            headers = [(k, v) for k, v in req.headers if k.lower() != b"x-amz-target"]
            headers.append((b"X-Amz-Target", b"DynamoDB_20120810.DescribeTable"))
            probe = _Request(b"POST", b"/", b"HTTP/1.1", headers, orjson.dumps({"TableName": t}))
            status, _, resp = await self._forward(probe, probe.body)
            d = _loads(resp) if status == 200 else None
            if d:
                self.audit.learn_keys(d)

    def _admit(self, op: str, body: Dict[str, Any], raw: bytes
               ) -> Tuple[bytes, List[Tuple[str, List[Any]]], Optional[Dict[str, Any]]]:
        """What the table's capacity admits of one write call: (body to forward, held back, new body)."""
        cap = self.faults.capacity
        assert cap is not None
        if op == "BatchWriteItem":
            items = body.get("RequestItems") or {}
        else:
            req = {"PutRequest": {"Item": body.get("Item")}} if op == "PutItem" else {"DeleteRequest": {"Key": body.get("Key")}}
            items = {str(body.get("TableName")): [req]}
        kept: Dict[str, List[Any]] = {}
        held: List[Tuple[str, List[Any]]] = []
        for table, reqs in items.items():
            names = self.audit.keys.get(table) or []
            k, h = cap.admit(table, reqs, names[0] if names else None, self.audit.gsi_keys.get(table, {}))
            if k:
                kept[table] = k
            if h:
                held.append((table, h))
        if not held:
            return raw, [], body
        if not kept:
            return b"", held, None
        if op != "BatchWriteItem":
            return raw, [], body
        new = dict(body)
        new["RequestItems"] = kept
        return orjson.dumps(new), held, new

    def _split_batch(self, body: Dict[str, Any]) -> Tuple[bytes, List[Tuple[str, List[Any]]], Optional[Dict[str, Any]]]:
        """Keep a random prefix of each table's requests; hold back the rest as unprocessed."""
        items = body.get("RequestItems") or {}
        kept: Dict[str, List[Any]] = {}
        held: List[Tuple[str, List[Any]]] = []
        for table, reqs in items.items():
            k = self.rng.randrange(0, len(reqs)) if reqs else 0
            if k:
                kept[table] = reqs[:k]
            if reqs[k:]:
                held.append((table, reqs[k:]))
        if not kept:
            return b"", held, None
        new = dict(body)
        new["RequestItems"] = kept
        return orjson.dumps(new), held, new

    # --------------------------------------------------------------- upstream

    async def _forward(self, req: _Request, body: bytes) -> Tuple[int, List[Tuple[bytes, bytes]], bytes]:
        head = [req.method + b" " + req.target + b" HTTP/1.1"]
        for k, v in req.headers:
            if k.lower() not in _HOP_HEADERS:
                head.append(k + b": " + v)
        head.append(b"Content-Length: " + str(len(body)).encode())
        data = b"\r\n".join(head) + b"\r\n\r\n" + body
        for attempt in range(2):
            fresh = not self._pool
            r, w = self._pool.pop() if self._pool else await asyncio.open_connection(*self.upstream)
            try:
                w.write(data)
                await w.drain()
                status, headers, resp, keep = await _read_response(r)
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                w.close()
                if fresh or attempt:
                    raise ConnectionResetError(f"upstream failed: {e}") from None
                continue  # a pooled connection the server had closed: once more on a new one
            if keep:
                self._pool.append((r, w))
            else:
                w.close()
            return status, headers, resp
        raise ConnectionResetError("upstream failed")

    # --------------------------------------------------------------- responses

    async def _error(self, writer: asyncio.StreamWriter, req: _Request, status: int, code: str, msg: str) -> bool:
        body = orjson.dumps({"__type": _ERR_PREFIX + code, "message": f"{msg} (injected by ddbmigrate.testing.proxy)"})
        return await self._respond(writer, req, status, [(b"Content-Type", b"application/x-amz-json-1.0")], body,
                                   recrc=True)

    async def _respond(self, writer: asyncio.StreamWriter, req: _Request, status: int,
                       headers: List[Tuple[bytes, bytes]], body: bytes, *, recrc: bool,
                       length: Optional[int] = None) -> bool:
        close = (req.header(b"connection") or b"").lower() == b"close" or req.version == b"HTTP/1.0"
        out = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Status"))]
        for k, v in headers:
            kl = k.lower()
            if kl in _HOP_HEADERS or (recrc and kl == b"x-amz-crc32"):
                continue
            out.append(k + b": " + v)
        if recrc:
            # DynamoDB's checksum of the body; clients verify it, so an altered body needs a new one.
            out.append(b"x-amz-crc32: " + str(zlib.crc32(body) & 0xFFFFFFFF).encode())
            if not any(k.lower() == b"x-amzn-requestid" for k, _ in headers):
                out.append(b"x-amzn-RequestId: proxy-" + str(self.rng.getrandbits(48)).encode())
        out.append(b"Content-Length: " + str(len(body) if length is None else length).encode())
        out.append(b"Connection: close" if close else b"Connection: keep-alive")
        writer.write(b"\r\n".join(out) + b"\r\n\r\n" + body)
        await writer.drain()
        return not close

    async def _control(self, req: _Request, writer: asyncio.StreamWriter) -> bool:
        """``/__proxy__/audit`` (read), ``/__proxy__/capacity`` (read; ``units=N`` sets) and
        ``/__proxy__/outage`` (``seconds=N`` starts one). A change is a POST, its parameters in
        the query or a form body; a GET with the query is kept for the scripts and notes that
        used it. Any other path is 404, another method 405, a body that is not a form 415, an
        unknown parameter, a parameter given twice or a bad value 400: a request that mistypes
        anything must not read as success."""
        url = urllib.parse.urlsplit(req.target.decode("latin-1"))
        handlers: Dict[str, Tuple[Any, FrozenSet[str]]] = {
            "/__proxy__/audit": (self._audit_control, frozenset()),
            "/__proxy__/capacity": (self._capacity_control, frozenset(("units",))),
            "/__proxy__/outage": (self._outage_control, frozenset(("seconds",)))}
        handler, known = handlers.get(url.path.rstrip("/"), (None, frozenset()))
        if handler is None:
            return await self._json(writer, req, 404, {"error": f"unknown control path {url.path!r}",
                                                       "paths": sorted(handlers)})
        if req.method not in (b"GET", b"POST"):
            return await self._json(writer, req, 405, {"error": f"{req.method.decode('latin-1')} {url.path}: "
                                                                "GET reads; POST (or GET with a query) changes"},
                                    extra=[(b"Allow", b"GET, POST")])
        parts = [url.query]
        if req.body:
            ctype = (req.header(b"content-type") or b"application/x-www-form-urlencoded").split(b";")[0].strip()
            if req.method != b"POST":
                return await self._json(writer, req, 400, {"error": f"{url.path}: a body only with POST "
                                                                    "(or the parameters in the query)"})
            if ctype.lower() != b"application/x-www-form-urlencoded":
                return await self._json(writer, req, 415, {"error": f"{url.path}: parameters go in the query or a "
                                                                    "form body (units=750), not "
                                                                    f"{ctype.decode('latin-1')!r}"})
            parts.append(req.body.decode("latin-1"))
        params: Dict[str, str] = {}
        try:
            for part in parts:
                part = "&".join(field for field in part.split("&") if field)  # "units=750&" is fine
                for k, v in urllib.parse.parse_qsl(part, keep_blank_values=True, strict_parsing=bool(part)):
                    if k not in known:
                        raise ValueError(f"unknown parameter {k!r}" + (f" (expected {', '.join(sorted(known))})"
                                                                        if known else " (this path takes none)"))
                    if k in params:
                        raise ValueError(f"{k} given twice")
                    params[k] = v
        except ValueError as e:
            return await self._json(writer, req, 400, {"error": f"{url.path}: {e}"})
        return bool(await handler(req, writer, params))

    async def _json(self, writer: asyncio.StreamWriter, req: _Request, status: int, body: Dict[str, Any],
                    extra: Optional[List[Tuple[bytes, bytes]]] = None) -> bool:
        data = orjson.dumps(body)
        head = req.method == b"HEAD"  # the length of what a GET would have said, and no body
        return await self._respond(writer, req, status, [(b"Content-Type", b"application/json")] + (extra or []),
                                   b"" if head else data, recrc=False, length=len(data) if head else None)

    async def _audit_control(self, req: _Request, writer: asyncio.StreamWriter, params: Dict[str, str]) -> bool:
        return await self._json(writer, req, 200, self.audit.snapshot(self.faults.capacity))

    async def _outage_control(self, req: _Request, writer: asyncio.StreamWriter, params: Dict[str, str]) -> bool:
        raw = params.get("seconds", "5")
        try:
            seconds = float(raw)
            if not 0 < seconds < 86400:
                raise ValueError
        except ValueError:
            return await self._json(writer, req, 400, {"error": f"seconds={raw!r}: a number of seconds above 0"})
        self.start_outage(seconds)
        return await self._json(writer, req, 200, {"ok": True, "seconds": seconds})

    async def _capacity_control(self, req: _Request, writer: asyncio.StreamWriter, params: Dict[str, str]) -> bool:
        """The capacity model's figures; ``units=N`` changes its capacity first (auto scaling,
        or a table's capacity lowered under a running job)."""
        cap = self.faults.capacity
        units = params.get("units")
        if cap is None:
            return await self._json(writer, req, 400,
                                    {"error": "no capacity model: start the proxy with --write-capacity UNITS"})
        if units is not None:
            try:
                cap.set_units(float(units))
            except ValueError as e:  # not a number, not positive, or too small to admit a write
                return await self._json(writer, req, 400, {"error": f"units={units!r}: {e}"})
        return await self._json(writer, req, 200, cap.snapshot())


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            415: b"Unsupported Media Type",
            500: b"Internal Server Error", 503: b"Service Unavailable"}


def _loads(data: bytes) -> Optional[Dict[str, Any]]:
    try:
        d = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None
    return d if isinstance(d, dict) else None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a broken network would, rather than a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def _read_headers(reader: asyncio.StreamReader) -> Optional[Tuple[bytes, List[Tuple[bytes, bytes]]]]:
    first = await reader.readline()
    if not first:
        return None
    headers: List[Tuple[bytes, bytes]] = []
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        line = line.rstrip(b"\r\n")
        if not line:
            break
        k, _, v = line.partition(b":")
        headers.append((k.strip(), v.strip()))
    return first.rstrip(b"\r\n"), headers


async def _read_body(reader: asyncio.StreamReader, headers: List[Tuple[bytes, bytes]], *,
                     until_eof: bool) -> bytes:
    h = {k.lower(): v for k, v in headers}
    if b"chunked" in h.get(b"transfer-encoding", b"").lower():
        out = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()).strip():
                    pass  # trailers
                return bytes(out)
            out += await reader.readexactly(size)
            await reader.readline()
    if b"content-length" in h:
        n = int(h[b"content-length"])
        return await reader.readexactly(n) if n else b""
    return await reader.read() if until_eof else b""


async def _read_request(reader: asyncio.StreamReader) -> Optional[_Request]:
    got = await _read_headers(reader)
    if got is None:
        return None
    first, headers = got
    parts = first.split(b" ")
    if len(parts) != 3:
        raise ValueError("bad request line")
    body = await _read_body(reader, headers, until_eof=False)
    return _Request(parts[0], parts[1], parts[2], headers, body)


async def _read_response(reader: asyncio.StreamReader) -> Tuple[int, List[Tuple[bytes, bytes]], bytes, bool]:
    got = await _read_headers(reader)
    if got is None:
        raise asyncio.IncompleteReadError(b"", None)
    first, headers = got
    status = int(first.split(b" ")[1])
    h = {k.lower(): v.lower() for k, v in headers}
    framed = b"content-length" in h or b"chunked" in h.get(b"transfer-encoding", b"")
    body = await _read_body(reader, headers, until_eof=True)
    keep = framed and h.get(b"connection") != b"close"
    return status, headers, body, keep


# ------------------------------------------------------------------- command line


def _outage(s: str) -> Tuple[float, float]:
    at, _, secs = s.partition(":")
    return float(at), float(secs or "30")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddbmigrate.testing.proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="DynamoDB endpoint to forward to (http://127.0.0.1:8000)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="listen port (default: a free one, printed)")
    p.add_argument("--seed", type=int, default=0)
    for kind in FAULT_KINDS:
        p.add_argument(f"--{kind.replace('error', 'error-').replace('_', '-')}", dest=kind, type=float, default=0.0,
                       help=f"probability of {kind} per eligible request")
    p.add_argument("--outage", action="append", type=_outage, default=[], metavar="AT:SECONDS",
                   help="reset everything for SECONDS, AT seconds after the first request (repeatable)")
    p.add_argument("--ops", help="comma-separated operations to inject into (default: data plane)")
    p.add_argument("--writes-only", action="store_true", help="inject only into write requests")
    p.add_argument("--audit", help="write the audit JSON here on exit")
    cap = p.add_argument_group("capacity model", "a table's write capacity, as DynamoDB spends it (testing/capacity.py)")
    cap.add_argument("--write-capacity", type=float, metavar="UNITS",
                     help="write units per second each table admits; writes over it come back in UnprocessedItems, "
                          "or as ProvisionedThroughputExceededException when none fit (change it while running: "
                          "GET /__proxy__/capacity?units=N)")
    cap.add_argument("--partitions", type=int,
                     help="partitions the capacity is split over, by the hash of the partition key (and of each "
                          "GSI's partition key for its own buckets); default 4")
    cap.add_argument("--burst-seconds", type=float,
                     help="seconds of capacity each partition can bank while idle; default 1")
    cap.add_argument("--undeclared", action="store_true",
                     help="the table does not say what it admits (an on-demand table's partition limits): by "
                          "default DescribeTable carries the modelled units, as a provisioned table's "
                          "WriteCapacityUnits do")
    a = p.parse_args(argv)
    if a.write_capacity is None and (a.partitions is not None or a.burst_seconds is not None or a.undeclared):
        p.error("--partitions, --burst-seconds and --undeclared shape the capacity model: give --write-capacity too")
    capacity = None
    if a.write_capacity is not None:
        if a.unprocessed:
            # A call split at random would bypass the buckets: the capacity's figures would lie.
            p.error("--unprocessed and --write-capacity both decide what a write admits: give one of them")
        shape = {k: v for k, v in (("partitions", a.partitions), ("burst_seconds", a.burst_seconds)) if v is not None}
        try:
            capacity = WriteCapacity(a.write_capacity, declared=not a.undeclared, **shape)  # defaults otherwise
        except ValueError as e:
            p.error(str(e))
    faults = Faults(**{k: getattr(a, k) for k in FAULT_KINDS}, outages=a.outage, writes_only=a.writes_only,
                    capacity=capacity)
    if a.ops:
        faults.ops = frozenset(o.strip() for o in a.ops.split(",") if o.strip())
    proxy = FaultProxy(a.target, seed=a.seed, faults=faults, host=a.host, port=a.port)
    said = (f", {capacity.units:g} write units/s over {capacity.partitions} partition(s), "
            f"{capacity.burst_seconds:g} s of burst" if capacity is not None else "")
    proxy.serve_until_signalled(lambda url: f"fault proxy listening on {url} -> {a.target} (seed {a.seed}{said})")
    snap = proxy.audit.snapshot(faults.capacity)
    if a.audit:
        with open(a.audit, "wb") as fh:
            fh.write(orjson.dumps(snap, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(snap).decode(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
