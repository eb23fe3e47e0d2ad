"""Answers no real DynamoDB gives, from a server in the middle: the job never loops, never loses
items silently, never holds an unbounded body, and never ends in an internal error.

The fault proxy breaks connections and returns service errors; the answers here are 200s with a
broken body (not JSON, the wrong shape, Items null, a LastEvaluatedKey that never moves on) or a
body too large to hold. A small forwarding server (:class:`Hostile`) sends each request on to
DynamoDB Local and replaces the answer of the requests a rule picks. Each scenario runs the real
CLI and checks its exit code, its one-line error, the retries in its report and, for a copy that
recovered, an independent boto3 scan of the target.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest

from ddbmigrate.aws.transport import MAX_BODY, ResponseTooLarge, Transport
from ddbmigrate.testing import run_tool
from ddbmigrate.testing.tool import ToolRun
from reliability_support import by_key, compare
from support import create_table, put_items, scan_all

pytestmark = pytest.mark.reliability

ITEMS = 300

# (handler, request JSON, status and body DynamoDB Local gave) -> writes the answer itself.
Answer = Callable[["_Handler", Dict[str, Any], int, bytes], None]


@dataclass
class Rule:
    op: str
    answer: Answer
    times: int = 1  # how many matching requests get the hostile answer (-1: all)
    only: Callable[[Dict[str, Any]], bool] = lambda req: True
    fired: int = 0


def job_scan(req: Dict[str, Any]) -> bool:
    # The job's own Scan pages, not the one-page sample a copy reads first to check item sizes.
    return "Limit" not in req


class Hostile:
    """A forwarding HTTP server on a free loopback port; see the module docstring."""

    def __init__(self, target: str, rules: List[Rule]) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules = rules
        self.lock = threading.Lock()
        self.seen: Dict[str, int] = {}
        outer = self

        class H(_Handler):
            hostile = outer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def pick(self, op: str, req: Dict[str, Any]) -> Optional[Rule]:
        with self.lock:
            self.seen[op] = self.seen.get(op, 0) + 1
            for r in self.rules:
                if r.op == op and r.times != r.fired and r.only(req):
                    r.fired += 1
                    return r
        return None

    def forward(self, headers: Dict[str, str], body: bytes) -> Tuple[int, bytes]:
        c = HTTPConnection(*self.target, timeout=30)
        try:
            c.request("POST", "/", body=body, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def __enter__(self) -> "Hostile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hostile: Hostile

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        op = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
        req = json.loads(body) if body else {}
        rule = self.hostile.pick(op, req)
        status, data = self.hostile.forward(headers, body)
        if rule is None:
            self.reply(status, data)
        else:
            rule.answer(self, req, status, data)

    def reply(self, status: int, data: bytes, length: Optional[int] = None, ctype: str = "application/x-amz-json-1.0",
              close: bool = False) -> None:
        # No x-amz-crc32: the client checks it only when it is there, and a garbled body that
        # failed its CRC would be retried for that reason, not for the one under test.
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            pass


# ---------------------------------------------------------------------------------- answers


def body(text: bytes, ctype: str = "application/x-amz-json-1.0") -> Answer:
    return lambda h, req, st, data: h.reply(200, text, ctype=ctype)


def patched(**fields: Any) -> Answer:
    def answer(h: _Handler, req: Dict[str, Any], st: int, data: bytes) -> None:
        d = json.loads(data)
        d.update({k: (v(d, req) if callable(v) else v) for k, v in fields.items()})
        h.reply(200, json.dumps(d).encode())
    return answer


def without(name: str) -> Answer:
    def answer(h: _Handler, req: Dict[str, Any], st: int, data: bytes) -> None:
        d = json.loads(data)
        d.pop(name, None)
        h.reply(200, json.dumps(d).encode())
    return answer


def gzipped(h: _Handler, req: Dict[str, Any], st: int, data: bytes) -> None:
    import gzip

    h.send_response(200)
    h.send_header("Content-Encoding", "gzip")
    z = gzip.compress(data)
    h.send_header("Content-Length", str(len(z)))
    h.end_headers()
    h.wfile.write(z)


def short_length(h: _Handler, req: Dict[str, Any], st: int, data: bytes) -> None:
    # Says the body is half as long as it is: the client reads JSON cut in the middle.
    h.reply(st, data, length=len(data) // 2, close=True)


def lek_stuck(h: _Handler, req: Dict[str, Any], st: int, data: bytes) -> None:
    # The first page says "more to come" at its last item; every later page hands back the
    # ExclusiveStartKey it was sent, as a server stuck on one position would.
    d = json.loads(data)
    if "ExclusiveStartKey" in req:
        d["LastEvaluatedKey"] = req["ExclusiveStartKey"]
    else:
        d["LastEvaluatedKey"] = {"pk": d["Items"][-1]["pk"]}
    h.reply(200, json.dumps(d).encode())


def huge_length(h: _Handler, req: Dict[str, Any], st: int, data: bytes) -> None:
    # Announces 5 GB, sends a little and hangs up: enough to be refused on its header alone.
    h.reply(200, b"[" * 65536, length=5_000_000_000, close=True)


def endless_body(h: _Handler, req: Dict[str, Any], st: int, data: bytes) -> None:
    # No length: the body ends when the connection closes. Bounded here (the cap plus 16 MiB) so
    # that a client without a cap fails on the JSON instead of filling the machine's memory.
    h.send_response(200)
    h.send_header("Connection", "close")
    h.end_headers()
    h.close_connection = True
    chunk = b"[" * 65536
    try:
        for _ in range((MAX_BODY + 16 * 1024 * 1024) // len(chunk)):
            h.wfile.write(chunk)
    except OSError:
        pass  # refused: the client closed the connection


# ---------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def small_source(endpoint: str) -> Tuple[str, Dict[str, Any]]:
    name = create_table(endpoint)
    put_items(endpoint, name, [{"pk": {"S": f"k{i:04d}"}, "n": {"N": str(i)}, "pad": {"S": "x" * 200}}
                               for i in range(ITEMS)])
    return name, by_key(scan_all(endpoint, name))


def run(args: List[str], tmp_path: Path, *extra: str,
        env: Optional[Dict[str, str]] = None) -> Tuple[ToolRun, Dict[str, Any]]:
    report = tmp_path / "report.json"
    full_env = {**os.environ, **env} if env else None
    r = run_tool([*args, "--progress", "off", "--segments", "1", "--report", str(report), *extra],
                 cwd=str(tmp_path), timeout=90, env=full_env)
    assert not r.timed_out, f"the tool did not finish\n{r.output[-3000:]}"
    rep = json.loads(report.read_text()) if report.exists() else {}
    return r, rep


def error_line(r: ToolRun) -> str:
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, r.output[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------------- 1. no loop


@pytest.mark.parametrize("command", ["copy", "clean"])
def test_a_scan_that_does_not_advance_stops_with_one_line(endpoint: str, small_source: Tuple[str, Dict[str, Any]],
                                                          tmp_path: Path, command: str) -> None:
    """copy (the lazy raw-page parser) and clean (the parsed path) stop at the first page whose
    LastEvaluatedKey is the ExclusiveStartKey sent, instead of reading that page for ever."""
    src, _ = small_source
    table = src if command == "copy" else create_table(endpoint)
    if command == "clean":
        put_items(endpoint, table, [{"pk": {"S": f"c{i}"}} for i in range(50)])
    args = ["copy", src, create_table(endpoint)] if command == "copy" else ["clean", table, "--yes"]
    with Hostile(endpoint, [Rule("Scan", lek_stuck, times=-1, only=job_scan)]) as h:
        r, rep = run([*args, "--endpoint-url", h.url], tmp_path)
        scans = h.seen.get("Scan", 0)
    assert r.exit_code == 1, r.output[-3000:]
    line = error_line(r)
    assert "does not advance" in line and f"table {table}" in line and "segment 0" in line, line
    # Caught on the first repeat: the first page, the stuck one, and copy's fit-check sample (the
    # first items of 4 segments).
    assert scans <= 2 + (4 if command == "copy" else 0), scans
    assert rep.get("exit_code") == 1


def lek_cycle(h: _Handler, req: Dict[str, Any], st: int, data: bytes) -> None:
    # Pages that hand back two positions in turn: never the key just sent, always one given before.
    d = json.loads(data)
    sent = (req.get("ExclusiveStartKey") or {}).get("pk", {}).get("S")
    d["LastEvaluatedKey"] = {"pk": {"S": "cycle-b" if sent == "cycle-a" else "cycle-a"}}
    h.reply(200, json.dumps(d).encode())


@pytest.mark.parametrize("command", ["copy", "export"])
def test_a_scan_that_goes_round_in_circles_stops_with_one_line(endpoint: str, small_source: Tuple[str, Dict[str, Any]],
                                                               tmp_path: Path, command: str) -> None:
    """Before: a LastEvaluatedKey cycling between two values was never caught: copy and export
    read the same pages for ever (an export filled the disk with duplicate lines)."""
    src, _ = small_source
    args = ["copy", src, create_table(endpoint)] if command == "copy" else ["export", src, str(tmp_path / "out")]
    with Hostile(endpoint, [Rule("Scan", lek_cycle, times=-1, only=job_scan)]) as h:
        r, rep = run([*args, "--endpoint-url", h.url, "--segments", "1"], tmp_path)
        scans = h.seen.get("Scan", 0)
    assert r.exit_code == 1, r.output[-3000:]
    line = error_line(r)
    assert "goes round in circles" in line and f"table {src}" in line, line
    assert scans <= 3 + 4, scans


# ---------------------------------------------------------------------------------- 2. size cap


@pytest.mark.parametrize("client", ["builtin", "urllib3"])
def test_a_body_announced_over_the_cap_is_refused_and_retried(endpoint: str, small_source: Tuple[str, Dict[str, Any]],
                                                              tmp_path: Path, client: str) -> None:
    src, _ = small_source
    with Hostile(endpoint, [Rule("Scan", huge_length, times=-1, only=job_scan)]) as h:
        r, rep = run(["copy", src, create_table(endpoint), "--endpoint-url", h.url, "--max-attempts", "3"], tmp_path,
                     env={"DDBMIGRATE_HTTP_CLIENT": client})
    assert r.exit_code == 75, r.output[-3000:]
    line = error_line(r)
    assert "Scan still failing after 3 attempts" in line and "5,000,000,000 bytes" in line, line
    assert rep["retries"].get("connection") == 2, rep.get("retries")


def test_a_body_without_length_is_cut_off_at_the_cap(endpoint: str, small_source: Tuple[str, Dict[str, Any]],
                                                     tmp_path: Path) -> None:
    """A close-delimited body stops being read once it passes the cap; the copy retries the page
    and finishes with every item."""
    src, expected = small_source
    dst = create_table(endpoint)
    with Hostile(endpoint, [Rule("Scan", endless_body, times=1, only=job_scan)]) as h:
        r, rep = run(["copy", src, dst, "--endpoint-url", h.url], tmp_path)
    assert r.exit_code == 0, r.output[-3000:]
    assert rep["retries"].get("connection") == 1, rep.get("retries")
    assert compare(expected, endpoint, dst) == {"lost": 0, "unexpected": 0, "mismatched": 0}
    # Held at most about the cap: 16 MiB more would have been read without one.
    assert r.peak_rss_kb < (MAX_BODY * 3) // 1024, r.peak_rss_kb


def test_a_chunked_body_over_the_cap_is_refused() -> None:
    """Chunk by chunk, refused as soon as the sizes announced pass the cap (a small one here)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        c, _ = srv.accept()
        with c:
            c.recv(65536)
            try:
                c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(8):
                    c.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
                c.sendall(b"0\r\n\r\n")
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    t = Transport(f"http://127.0.0.1:{srv.getsockname()[1]}/", max_body=4096)
    with pytest.raises(ResponseTooLarge, match="chunked body of at least 5,120 bytes"):
        t.post({"X-Amz-Target": "T"}, b"{}")
    srv.close()


# ------------------------------------------------------------------- 3 and 4. broken 200 answers

def any_request(req: Dict[str, Any]) -> bool:
    return True


def target(req: Dict[str, Any]) -> str:
    return next(iter(req["RequestItems"]))


ONCE: Dict[str, Tuple[str, Answer, Callable[[Dict[str, Any]], bool]]] = {
    "scan-invalid-json": ("Scan", body(b'{"Items": [ this is not json'), job_scan),
    "scan-html": ("Scan", body(b"<html>captive portal</html>", "text/html"), job_scan),
    "scan-gzip": ("Scan", gzipped, job_scan),
    "scan-short-content-length": ("Scan", short_length, job_scan),
    "scan-json-array": ("Scan", body(b"[]"), job_scan),
    "scan-empty-body": ("Scan", body(b""), job_scan),
    "scan-items-null": ("Scan", patched(Items=None), job_scan),
    "scan-items-missing": ("Scan", without("Items"), job_scan),
    "scan-items-string": ("Scan", patched(Items="abc"), job_scan),
    "scan-items-object": ("Scan", patched(Items=lambda d, req: {"a": d["Items"][0]}), job_scan),
    "scan-items-numbers": ("Scan", patched(Items=lambda d, req: list(range(len(d["Items"])))), job_scan),
    "scan-items-arrays": ("Scan", patched(Items=lambda d, req: [[i] for i in d["Items"]]), job_scan),
    "scan-count-disagrees": ("Scan", patched(Items=lambda d, req: d["Items"][:-1]), job_scan),
    "scan-lek-string": ("Scan", patched(LastEvaluatedKey="k0001"), job_scan),
    "bwi-invalid-json": ("BatchWriteItem", body(b'{"UnprocessedItems": {'), any_request),
    # Under the target's own name, as DynamoDB would put them.
    "bwi-unprocessed-not-lists": ("BatchWriteItem",
                                  patched(UnprocessedItems=lambda d, req: {target(req): {"x": 1}}), any_request),
    "bwi-unprocessed-not-requests": ("BatchWriteItem",
                                     patched(UnprocessedItems=lambda d, req: {target(req): ["x", 1]}), any_request),
}


@pytest.mark.parametrize("case", list(ONCE))
def test_one_broken_answer_is_retried_and_nothing_is_lost(endpoint: str, small_source: Tuple[str, Dict[str, Any]],
                                                          tmp_path: Path, case: str) -> None:
    """One broken 200 answer to a Scan page or a BatchWriteItem: retried (counted as a connection
    retry), and the target ends equal to the source. Before, these ended as an internal error
    (JSONDecodeError, AttributeError) or, for Items null or missing or short, as exit 0 with the
    page's items silently missing."""
    src, expected = small_source
    dst = create_table(endpoint)
    op, answer, only = ONCE[case]
    with Hostile(endpoint, [Rule(op, answer, times=1, only=only)]) as h:
        r, rep = run(["copy", src, dst, "--endpoint-url", h.url], tmp_path)
        fired = h.rules[0].fired
    assert fired == 1
    assert r.exit_code == 0, r.output[-3000:]
    assert rep["retries"].get("connection") == 1, rep.get("retries")
    assert compare(expected, endpoint, dst) == {"lost": 0, "unexpected": 0, "mismatched": 0}
    assert rep["counters"]["read"] == ITEMS == rep["counters"]["written"]


@pytest.mark.parametrize("case", ["scan-items-null", "scan-invalid-json", "scan-items-arrays"])
def test_the_parsed_scan_path_retries_a_broken_page(endpoint: str, tmp_path: Path, case: str) -> None:
    """clean reads pages with orjson (not the lazy parser copy uses): same checks, same outcome."""
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"c{i}"}} for i in range(50)])
    op, answer, only = ONCE[case]
    with Hostile(endpoint, [Rule(op, answer, times=1, only=only)]) as h:
        r, rep = run(["clean", table, "--yes", "--endpoint-url", h.url], tmp_path)
    assert r.exit_code == 0, r.output[-3000:]
    assert rep["retries"].get("connection") == 1, rep.get("retries")
    assert scan_all(endpoint, table) == []


@pytest.mark.parametrize("op,answer", [("Scan", body(b"<html>captive portal</html>", "text/html")),
                                       ("Scan", patched(Items=None)),
                                       ("BatchWriteItem", body(b'{"UnprocessedItems": {'))])
def test_broken_answers_every_time_end_in_exit_75_naming_the_operation(
        endpoint: str, small_source: Tuple[str, Dict[str, Any]], tmp_path: Path, op: str, answer: Answer) -> None:
    src, _ = small_source
    only = job_scan if op == "Scan" else any_request
    with Hostile(endpoint, [Rule(op, answer, times=-1, only=only)]) as h:
        r, rep = run(["copy", src, create_table(endpoint), "--endpoint-url", h.url, "--max-attempts", "3"], tmp_path)
    assert r.exit_code == 75, r.output[-3000:]
    line = error_line(r)
    assert f"{op} still failing after 3 attempts" in line and f"the {op} answer" in line, line
    assert rep["retries"].get("connection", 0) >= 2, rep.get("retries")
