"""The minimal HTTP/1.1 transport against a scripted loopback server (no DynamoDB needed)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, List

import pytest

from ddbmigrate.aws.transport import ConnectionLost, InvalidHeader, Transport, TransportError


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
        try:
            self._exchange(c)
        except OSError:  # the client dropped the connection (that is what some tests check)
            pass

    def _exchange(self, c: socket.socket) -> None:
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


def test_connection_closed_while_idle_is_not_reused() -> None:
    # The server answers the first request, then closes the idle connection (keep-alive timeout):
    # the pool sees the close before sending and opens a new connection; nothing is re-sent.
    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        c.sendall(ok(b"{}"))
        return n != 1

    srv = ScriptedServer(reply)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    t.post({}, b"1")
    time.sleep(0.1)  # let the server's close reach us
    r = t.post({}, b"2")
    assert r.status == 200 and srv.connections == 2 and len(srv.requests) == 2
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
    assert r.data == str(len(srv.requests[0])).encode()
    assert srv.requests[0].endswith(body)
    srv.close()


# ---------------------------------------------------------------- misbehaving servers (issue 22)


def test_unsolicited_100_continue_is_skipped_not_taken_for_the_answer() -> None:
    # A proxy that sends "100 Continue" nobody asked for: each request must still get its own answer.
    srv = ScriptedServer(lambda c, req, n: c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b'{"n":%d}' % n)) or True)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    for i in range(1, 4):
        r = t.post({}, b"{}")
        assert (r.status, r.data) == (200, b'{"n":%d}' % i)
    srv.close()


def test_interim_responses_split_across_reads_are_skipped() -> None:
    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        c.sendall(b"HTTP/1.1 100 Continue\r\n")
        time.sleep(0.02)
        c.sendall(b"\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
        time.sleep(0.02)
        c.sendall(ok(b'{"n":%d}' % n))
        return True

    srv = ScriptedServer(reply)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    assert [t.post({}, b"{}").data for _ in range(2)] == [b'{"n":1}', b'{"n":2}']
    srv.close()


@pytest.mark.parametrize("late", [False, True], ids=["with-the-response", "after-the-response"])
def test_bytes_beyond_content_length_never_answer_the_next_request(late: bool) -> None:
    # The first answer is followed by a whole extra response (a misbehaving load balancer). If the
    # connection were reused, the second request would read {"n":666} as its answer.
    stray = ok(b'{"n":666}')
    sent = threading.Event()

    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        if n == 1 and not late:
            c.sendall(ok(b'{"n":1}') + stray)
        elif n == 1:
            c.sendall(ok(b'{"n":1}'))
            time.sleep(0.05)
            c.sendall(stray)
        else:
            c.sendall(ok(b'{"n":%d}' % n))
        if n == 1:
            sent.set()
        return True

    srv = ScriptedServer(reply)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    assert t.post({}, b"{}").data == b'{"n":1}'
    assert sent.wait(5)
    time.sleep(0.05)  # let the stray bytes arrive
    assert t.post({}, b"{}").data == b'{"n":2}'
    assert t.post({}, b"{}").data == b'{"n":3}'
    assert srv.connections == 2  # the poisoned connection was dropped, the new one kept
    srv.close()


def test_lost_response_on_a_reused_connection_is_not_resent() -> None:
    # The second request is received (and, for a write, applied) but its connection closes
    # without an answer: the transport must raise, not quietly send the request again.
    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        if n == 2:
            return False  # close without answering
        c.sendall(ok(b'{"n":%d}' % n))
        return True

    srv = ScriptedServer(reply)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    t.post({}, b"1")
    with pytest.raises(ConnectionLost, match="may have been processed"):
        t.post({}, b"2")
    time.sleep(0.1)
    assert len(srv.requests) == 2  # sent once
    assert t.post({}, b"3").data == b'{"n":3}'
    srv.close()


def drip_reply(c: socket.socket, req: bytes, n: int) -> bool:
    """A 100-byte answer, a byte every 0.2 s: each within any read timeout, the whole 20 s."""
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            time.sleep(0.2)
            c.sendall(b"x")
    except OSError:
        pass
    return False


def test_slow_drip_response_hits_the_total_deadline() -> None:
    srv = ScriptedServer(drip_reply)
    t = Transport(f"http://127.0.0.1:{srv.port}/", read_timeout=1.0)
    with pytest.raises(TransportError, match="deadline"):
        t.post({}, b"{}")
    srv.close()


@pytest.mark.parametrize("name,value", [("X-Amz-Security-Token", "tok\r\nX-Injected: yes"),
                                        ("X-Amz-Target", "DynamoDB_20120810.Scan\nX-Injected: yes"),
                                        ("X-Bad\r\nX-Injected", "v"), ("X-Amz-Target", "a\x00b")])
def test_line_breaks_in_headers_are_refused_not_sent(name: str, value: str) -> None:
    srv = ScriptedServer(lambda c, req, n: c.sendall(ok(b"{}")) or True)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    with pytest.raises(InvalidHeader):
        t.post({name: value}, b"{}")
    assert t.post({"X-Amz-Target": "ok"}, b"{}").status == 200
    assert len(srv.requests) == 1 and b"X-Injected" not in srv.requests[0]
    srv.close()


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n Folded: header\r\nContent-Length: 2\r\n\r\n{}",
    b"ICY 200 OK\r\n\r\n",
], ids=["two-lengths", "negative-length", "unknown-coding", "bad-chunk-end", "101", "folded", "not-http"])
def test_ambiguous_framing_is_an_error_and_the_connection_is_dropped(response: bytes) -> None:
    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        c.sendall(response if n == 1 else ok(b'{"n":%d}' % n))
        return True

    srv = ScriptedServer(reply)
    t = Transport(f"http://127.0.0.1:{srv.port}/")
    with pytest.raises(TransportError):
        t.post({}, b"{}")
    assert t.post({}, b"{}").data == b'{"n":2}'
    assert srv.connections == 2
    srv.close()


def test_a_header_value_that_is_not_latin1_is_refused() -> None:
    srv = ScriptedServer(lambda c, req, n: c.sendall(ok(b"{}")) or True)
    with pytest.raises(InvalidHeader, match="Latin-1"):
        Transport(f"http://127.0.0.1:{srv.port}/").post({"X-Amz-Security-Token": "tok\u20ac"}, b"{}")
    assert srv.requests == []
    srv.close()
