"""A DynamoDB endpoint where the server costs next to nothing, so the client is the limit.

    python bench/synthetic_endpoint.py --target http://127.0.0.1:8000 --table src --items 300000

On the project's 2-core machine DynamoDB Local needs 1.5 cores to serve a copy, so adding client
processes cannot show anything but the server (docs/performance.md). This endpoint takes the
server out of the measurement, the way a real DynamoDB table with capacity to spare does:

- **Scan of ``--table``** is answered from items generated in memory (the benchmark's typical
  profile, ``sample_item(i, size=1500)``), item ``i`` in segment ``i % TotalSegments``, pages of
  at most 1 MB with a ``LastEvaluatedKey`` that is the last item's real key, so resume and
  ``--processes`` (segments split over workers) read exactly as they would from DynamoDB.
  Pages are built once and kept.
- **BatchWriteItem** is acknowledged (``UnprocessedItems`` empty) and its put and delete requests
  are counted, not stored: ``GET /__proxy__/audit`` returns ``{"puts": N, "deletes": N}``.
- **Everything else** (DescribeTable, CreateTable, ...) is forwarded to ``--target``, where
  tables of the same names and key schema exist, so a job's checks run against a real server.

It reuses the fault proxy's HTTP handling (``ddbmigrate.testing.proxy``), runs as its own
process (its CPU is measured apart from the client's) and prints its URL on the first line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import zlib
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import orjson  # noqa: E402

from ddbmigrate.sources.generated import sample_item  # noqa: E402
from ddbmigrate.testing.proxy import FaultProxy, _loads, _Request  # noqa: E402

PAGE_BYTES = 1024 * 1024
JSON = [(b"Content-Type", b"application/x-amz-json-1.0")]


def _crc(body: bytes) -> bytes:
    return str(zlib.crc32(body) & 0xFFFFFFFF).encode()


_ACK = (b'{"UnprocessedItems":{}}', _crc(b'{"UnprocessedItems":{}}'))


class SyntheticEndpoint(FaultProxy):
    def __init__(self, target: str, table: str, items: int, *, size: int = 1500, port: int = 0) -> None:
        super().__init__(target, port=port)
        self.table, self.items, self.size = table, items, size
        self._encoded: List[bytes] = [orjson.dumps(sample_item(i, size=size)) for i in range(items)]
        self._pages: Dict[Tuple[int, int, int, int], Tuple[bytes, bytes]] = {}
        self.puts = 0
        self.deletes = 0

    async def _serve(self, req: _Request, writer: asyncio.StreamWriter) -> bool:
        target = (req.header(b"x-amz-target") or b"").decode()
        op = target.rsplit(".", 1)[-1]
        if op == "BatchWriteItem":
            self.puts += req.body.count(b'"PutRequest"')
            self.deletes += req.body.count(b'"DeleteRequest"')
            return await self._ok(writer, req, *_ACK)
        if op == "Scan":
            body = _loads(req.body) or {}
            if body.get("TableName") == self.table:
                return await self._ok(writer, req, *self._page(body))
        if req.target.startswith(b"/__proxy__/audit"):
            return await self._respond(writer, req, 200, JSON, orjson.dumps(
                {"puts": self.puts, "deletes": self.deletes}), recrc=False)
        return await super()._serve(req, writer)

    async def _ok(self, writer: asyncio.StreamWriter, req: _Request, body: bytes, crc: bytes) -> bool:
        return await self._respond(writer, req, 200, JSON + [(b"x-amz-crc32", crc)], body, recrc=False)

    def _page(self, req: Dict[str, object]) -> Tuple[bytes, bytes]:
        total = int(req.get("TotalSegments") or 1)  # type: ignore[call-overload]
        seg = int(req.get("Segment") or 0)  # type: ignore[call-overload]
        limit = int(req.get("Limit") or 0)  # type: ignore[call-overload]
        start = seg
        esk = req.get("ExclusiveStartKey")
        if isinstance(esk, dict):
            start = int(esk["pk"]["S"].split("#")[1]) + total
        key = (total, seg, start, limit)
        page = self._pages.get(key)
        if page is None:
            chosen: List[bytes] = []
            used = 0
            i = start
            while i < self.items and (not limit or len(chosen) < limit):
                if chosen and used + len(self._encoded[i]) > PAGE_BYTES:
                    break  # at most 1 MB a page, as DynamoDB (by JSON bytes here, not item size)
                chosen.append(self._encoded[i])
                used += len(self._encoded[i])
                i += total
            out: Dict[str, object] = {"Count": len(chosen), "ScannedCount": len(chosen),
                                      "ConsumedCapacity": {"TableName": self.table, "CapacityUnits": used / 8192}}
            if i < self.items:
                out["LastEvaluatedKey"] = {"pk": {"S": f"user#{i - total:09d}"}}
            head = orjson.dumps(out)
            body = head[:-1] + b',"Items":[' + b",".join(chosen) + b"]}"
            page = self._pages[key] = (body, _crc(body))
        return page


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="DynamoDB (Local) for every other call")
    p.add_argument("--table", required=True, help="the table whose Scan is generated")
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--size", type=int, default=1500)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    ep = SyntheticEndpoint(a.target, a.table, a.items, size=a.size, port=a.port)

    ep.serve_until_signalled(lambda url: url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
