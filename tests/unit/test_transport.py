"""The minimal HTTP/1.1 transport against a scripted loopback server (no DynamoDB needed)."""

from __future__ import annotations

import socket
import threading
from typing import Callable, List

import pytest

from ddbmigrate.aws.transport import Transport, TransportError


class ScriptedServer:
    """Accepts connections; for each request calls ``reply(conn, request_bytes, n)``."""

    def __init__(self, reply: Callable[[socket.socket, bytes, int], bool]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.requests: List[bytes] = []
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c: socket.socket) -> None:
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, rest = buf.partition(b"\r\n\r\n")
                n = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
                while len(rest) < n:
                    rest += c.recv(65536)
                req, buf = head + b"\r\n\r\n" + rest[:n], rest[n:]
                self.requests.append(req)
                if not self.reply(c, req, len(self.requests)):
                    return

    def close(self) -> None:
        self.sock.close()


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_keep_alive_reuses_one_connection() -> None:
    srv = ScriptedServer(lambda c, req, n: c.sendall(ok(b'{"n":%d}' % n)) or True)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    for i in range(1, 6):
        r = t.post({"X-Amz-Target": "T"}, b"{}")
        assert (r.status, r.data) == (200, b'{"n":%d}' % i)
    assert srv.connections == 1
    assert srv.requests[0].startswith(b"POST / HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 2\r\n" in srv.requests[0]
    srv.close()


def test_chunked_response_and_headers_lowercased() -> None:
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    srv = ScriptedServer(lambda c, req, n: c.sendall(
        b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\nX-Amz-Crc32: 12\r\n\r\n" + body) or True)
    r = Transport(f"http://127.0.0.1:{srv.port}/").post({}, b"x")
    assert (r.status, r.data, r.headers["x-amz-crc32"]) == (400, b"hello world", "12")
    srv.close()


def test_connection_close_header_opens_a_new_connection() -> None:
    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        c.sendall(ok(b"{}", "Connection: close\r\n"))
        return False

    srv = ScriptedServer(reply)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    t.post({}, b"1")
    t.post({}, b"2")
    assert srv.connections == 2
    srv.close()


def test_stale_idle_connection_is_retried_once_transparently() -> None:
    # The server answers the first request, then closes the idle connection (keep-alive timeout).
    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        c.sendall(ok(b"{}"))
        return n != 1

    srv = ScriptedServer(reply)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    t.post({}, b"1")
    import time

    time.sleep(0.1)  # let the server's close reach us
    r = t.post({}, b"2")
    assert r.status == 200 and srv.connections == 2
    srv.close()


def test_response_cut_short_is_a_transport_error() -> None:
    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\"")
        return False

    srv = ScriptedServer(reply)
    with pytest.raises(TransportError, match="cut short"):
        Transport(f"http://127.0.0.1:{srv.port}/").post({}, b"{}")
    srv.close()


def test_connection_refused_is_a_transport_error() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(TransportError, match="cannot connect"):
        Transport(f"http://127.0.0.1:{port}/", connect_timeout=2).post({}, b"{}")


def test_large_body_sent_whole() -> None:
    srv = ScriptedServer(lambda c, req, n: c.sendall(ok(str(len(req)).encode())) or True)
    body = b"x" * 1_000_000
    r = Transport(f"http://127.0.0.1:{srv.port}/").post({}, body)
    assert srv.requests[0].endswith(body)
    srv.close()
