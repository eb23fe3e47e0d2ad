"""A minimal keep-alive HTTP/1.1 client for the hot DynamoDB calls.

Why: with the JSON handled by orjson/simdjson, what remains of a copy's client CPU is the HTTP
stack. http.client parses every response's headers with the email package and urllib3 adds
its own layers: about 200-300 µs of CPU per request, i.e. 8-12 µs per item of a 25-item
BatchWriteItem. DynamoDB speaks plain HTTP/1.1 with Content-Length bodies, so a small client
over a socket does the same exchange in a few tens of microseconds (docs/performance.md has the
measurement against urllib3, httpcore and awscrt).

Scope, on purpose: POST to one endpoint, keep-alive, Content-Length or chunked responses,
TLS with certificate verification (the default SSL context, or the CA bundle given, e.g.
botocore's ``AWS_CA_BUNDLE`` / ``ca_bundle``), a connect timeout, a per-read timeout and a
total deadline per exchange. No proxies: when HTTPS_PROXY/HTTP_PROXY applies, client.py uses
urllib3 instead (its body read under the same deadline, client._Read).

Invariants (each has a test against a misbehaving server in tests/unit/test_transport.py;
5 in tests/reliability/test_hostile_answers.py):

1. A response is only ever matched to the request it answers. Interim ``1xx`` responses are
   read and skipped; a connection goes back to the pool only when its response was framed
   completely (Content-Length or chunked) and *no byte beyond it* has arrived, checked again
   just before the connection is reused. Anything else - extra bytes, a close-delimited body,
   a framing error, a timeout - discards the connection.
2. A request is sent at most once per :meth:`Transport.post`. A reused connection that turns
   out dead after the request went out raises :class:`ConnectionLost`: the server may have
   applied it, so only the caller, who knows whether the operation is idempotent and counts
   retries, decides to send it again.
3. No exchange outlives its deadline (``total_timeout``, by default the read timeout): a
   server that drips one byte per second cannot hold a worker for minutes.
4. No header value or name carries CR, LF or NUL: an injected header is refused, not sent.
5. No response body is held above :data:`MAX_BODY` bytes: a larger Content-Length is refused
   before a byte of it is read, and a chunked or close-delimited body as soon as it grows past.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

_MAX_HEAD = 65536
_RECV = 65536
# DynamoDB's largest answers (a 16 MB BatchGetItem, a 1 MB Scan page in JSON) stay far below
# this; anything above is a broken or hostile server, and reading it whole would exhaust memory.
MAX_BODY = 64 * 1024 * 1024
_monotonic = time.monotonic


class TransportError(ConnectionError):
    """The exchange failed at the HTTP/TCP level (retriable as a 'connection' cause)."""


class ConnectionLost(TransportError):
    """The connection closed after the request was sent and before any response byte.

    The server may or may not have processed the request (a lost response looks exactly like a
    keep-alive connection the server closed while we were sending), so it is never re-sent here.
    """


class ConnectFailed(TransportError):
    """No connection could be made (refused, unreachable, a TLS handshake or certificate refused):
    nothing was sent."""


class ResponseTooLarge(TransportError):
    """The response body is (or announces itself as) larger than :data:`MAX_BODY`."""


class BadResponse(TransportError):
    """A 200 answer whose body is not what the operation returns (not JSON, wrong shape).

    Retriable as a 'connection' cause, like a body cut short: a proxy, a captive portal or a
    broken connection garbled it, and the next attempt may well get the real answer."""


def too_large(what: str, limit: int = MAX_BODY) -> ResponseTooLarge:
    """``what`` says the size, e.g. ``"a Content-Length of 5,000,000,000 bytes"``."""
    return ResponseTooLarge(f"response refused: {what} is over the {limit:,}-byte limit for one answer "
                            "(no DynamoDB answer is that large)")


class InvalidHeader(ValueError):
    """A header name or value that would inject a line into the request (CR, LF, NUL)."""


class Response:
    __slots__ = ("status", "headers", "data")

    def __init__(self, status: int, headers: Dict[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


class _Conn:
    __slots__ = ("sock", "buf", "used", "poller")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""  # received, not yet consumed
        self.used = False
        # Registered once: the check before each reuse is then a single poll(2).
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def idle_and_clean(self) -> bool:
        """True when nothing has arrived since the last response: no EOF, no stray bytes.

        A server's keep-alive close (FIN) or a misbehaving peer's extra bytes make the socket
        readable; either way the connection must not carry the next request."""
        if self.buf:
            return False
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        try:
            return not self.poller.poll(0)
        except (OSError, ValueError):
            return False


def host_header(url: str) -> str:
    """The Host header for ``url``: host[:port], the port only when not the scheme's default
    (what http.client and urllib3 send too, so a signature over it holds for every stack)."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if tls else 80)
    h = host if ":" not in host else f"[{host}]"
    return h if port == (443 if tls else 80) else f"{h}:{port}"


def _bad_header(s: str) -> bool:
    return "\r" in s or "\n" in s or "\0" in s


def ssl_context_for(ca_bundle: Optional[str] = None, verify: bool = True) -> ssl.SSLContext:
    """The TLS context of the hot path: the system's CAs, or only ``ca_bundle`` when given
    (a file or a directory of certificates, as botocore accepts)."""
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if ca_bundle:
        import os

        if os.path.isdir(ca_bundle):
            return ssl.create_default_context(capath=ca_bundle)
        return ssl.create_default_context(cafile=ca_bundle)
    return ssl.create_default_context()


class Transport:
    """A pool of keep-alive connections to one ``http(s)://host[:port]/path`` endpoint."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0, read_timeout: float = 30.0,
                 total_timeout: Optional[float] = None, max_idle: int = 64,
                 ssl_context: Optional[ssl.SSLContext] = None, ca_bundle: Optional[str] = None,
                 max_body: int = MAX_BODY) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported endpoint scheme in {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.tls else 80)
        self.path = parts.path or "/"
        self.host_header = host_header(url)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        # The whole exchange (send, wait, every byte of the answer) fits in this; DynamoDB answers
        # a 1 MB Scan page in well under a second, so the read timeout is a generous bound.
        self.total_timeout = read_timeout if total_timeout is None else total_timeout
        self.max_idle = max_idle
        self.max_body = max_body
        if self.tls:
            self._ctx: Optional[ssl.SSLContext] = ssl_context or ssl_context_for(ca_bundle)
        else:
            self._ctx = None
        self._idle: List[_Conn] = []
        self._lock = threading.Lock()
        self._head = f"POST {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\n".encode("latin-1")

    # ------------------------------------------------------------------ pool

    def _connect(self) -> _Conn:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ctx is not None:
                sock = self._ctx.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except OSError as e:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {e}") from e
        return _Conn(sock)

    def _get(self) -> _Conn:
        while True:
            with self._lock:
                if not self._idle:
                    break
                c = self._idle.pop()
            if c.idle_and_clean():
                return c
            c.close()  # closed by the server while idle, or poisoned by stray bytes
        return self._connect()

    def _put(self, c: _Conn) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(c)
                return
        c.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    # ------------------------------------------------------------------ exchange

    def post(self, headers: Dict[str, str], body: bytes) -> Response:
        """POST ``body`` once. Raises :class:`TransportError` (:class:`ConnectionLost` when the
        request went out and the connection died before an answer) or :class:`InvalidHeader`."""
        head = self._request_head(headers, len(body))
        conn = self._get()
        deadline = _monotonic() + self.total_timeout
        try:
            if len(body) < 65536:
                conn.sock.sendall(head + body)
            else:
                conn.sock.sendall(head)
                conn.sock.sendall(body)
            status, hdrs, data, keep = self._read(conn, deadline)
        except _NothingBack:
            conn.close()
            raise ConnectionLost(
                f"connection to {self.host}:{self.port} closed before a response "
                "(the request may have been processed)") from None
        except TransportError:
            conn.close()
            raise
        except (OSError, ValueError) as e:
            conn.close()
            if isinstance(e, (socket.timeout, TimeoutError)):
                raise TransportError(f"no complete response from {self.host}:{self.port} within "
                                     f"{self.read_timeout:g} s ({e})") from e
            raise TransportError(f"HTTP exchange with {self.host}:{self.port} failed: {e}") from e
        conn.used = True
        if keep and not conn.buf:
            self._put(conn)
        else:
            conn.close()
        return Response(status, hdrs, data)

    def _request_head(self, headers: Dict[str, str], length: int) -> bytes:
        lines = [f"{k}: {v}\r\n" for k, v in headers.items()
                 if k.lower() not in ("host", "content-length", "connection", "transfer-encoding")]
        text = "".join(lines)
        # Exactly one CR and one LF per line, no NUL, no colon in a name: nothing was injected.
        n = len(lines)
        if text.count("\n") != n or text.count("\r") != n or "\0" in text or \
                any(":" in k for k in headers):
            bad = next((k for k, v in headers.items() if _bad_header(k) or _bad_header(v) or ":" in k), "?")
            raise InvalidHeader(f"header {bad[:40]!r} has a line break, NUL or colon in its name or value: refused")
        try:
            return self._head + f"{text}Content-Length: {length}\r\n\r\n".encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidHeader("a header value is not Latin-1 text: refused") from None

    # ------------------------------------------------------------------ reading

    def _recv(self, conn: _Conn, deadline: float, size: int = _RECV) -> bytes:
        """One recv of at most ``size`` bytes, bounded by the read timeout and by what is left
        of the exchange's deadline."""
        left = deadline - _monotonic()
        if left <= 0:
            raise TransportError(f"response from {self.host}:{self.port} not complete within the "
                                 f"{self.total_timeout:g} s deadline")
        sock = conn.sock
        if left < self.read_timeout:
            sock.settimeout(left)
        try:
            d = sock.recv(size)
        except (socket.timeout, TimeoutError):
            if left < self.read_timeout:
                raise TransportError(f"response from {self.host}:{self.port} not complete within the "
                                     f"{self.total_timeout:g} s deadline") from None
            raise
        finally:
            if left < self.read_timeout:
                sock.settimeout(self.read_timeout)
        return d

    def _read_head(self, conn: _Conn, deadline: float, first: bool) -> Tuple[bytes, List[bytes]]:
        buf = conn.buf
        start = 0
        while True:
            i = buf.find(b"\r\n\r\n", start)
            if i >= 0:
                head, conn.buf = buf[:i], buf[i + 4:]
                break
            if len(buf) > _MAX_HEAD:
                raise ValueError("response header section too large")
            start = max(0, len(buf) - 3)
            d = self._recv(conn, deadline)
            if not d:
                if first and not buf:
                    raise _NothingBack()
                raise ValueError("connection closed inside the response headers")
            buf += d
        lines = head.split(b"\r\n")
        return lines[0], lines[1:]

    def _read(self, conn: _Conn, deadline: float) -> Tuple[int, Dict[str, str], bytes, bool]:
        first = True
        while True:
            status_line, lines = self._read_head(conn, deadline, first)
            first = False
            version, _, rest = status_line.partition(b" ")
            code = rest[:3]
            if version[:7] != b"HTTP/1." or len(code) != 3 or not code.isdigit():
                raise ValueError(f"bad status line {status_line[:80]!r}")
            status = int(code)
            if 100 <= status < 200 and status != 101:
                # Interim response (100 Continue, 103 Early Hints), never asked for but allowed:
                # it has no body and the real answer follows on the same connection.
                continue
            break
        if status == 101:
            raise ValueError("unexpected 101 Switching Protocols")
        headers: Dict[str, str] = {}
        for h in lines:
            name, sep, value = h.partition(b":")
            if not sep or not name or name != name.strip():
                raise ValueError(f"bad response header line {h[:80]!r}")
            k = name.lower().decode("latin-1")
            v = value.strip().decode("latin-1")
            if k == "content-length" and k in headers and headers[k] != v:
                raise ValueError("conflicting Content-Length headers")
            headers[k] = v
        keep = version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        te = headers.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise ValueError(f"unsupported Transfer-Encoding {te!r}")
            if "content-length" in headers:
                keep = False  # both framings given: chunked wins (RFC 9112), but trust no more
            data = self._read_chunked(conn, deadline)
        elif "content-length" in headers:
            cl = headers["content-length"]
            if not cl.isdigit():
                raise ValueError(f"bad Content-Length {cl!r}")
            n = int(cl)
            if n > self.max_body:
                raise too_large(f"a Content-Length of {n:,} bytes", self.max_body)
            data = self._read_exact(conn, n, deadline)
        elif status in (204, 304):
            data = b""
        else:
            data = self._read_to_close(conn, deadline)
            keep = False
        return status, headers, data, keep

    def _read_exact(self, conn: _Conn, n: int, deadline: float) -> bytes:
        buf = conn.buf
        if len(buf) >= n:
            conn.buf = buf[n:]  # anything left is a stray byte: the connection will not be reused
            return buf[:n]
        # Never read past the body: a byte beyond it stays in the socket, where the check before
        # reuse sees it. Pieces of 64 KB, below malloc's mmap threshold: larger reads (or one
        # bytearray filled by recv_into, then copied) cost several times the CPU in page faults
        # and raised a copy's peak RSS by ~20 MB.
        parts = [buf]
        have = len(buf)
        conn.buf = b""
        while have < n:
            d = self._recv(conn, deadline, min(_RECV, n - have))
            if not d:
                raise ValueError(f"response body cut short ({have} of {n} bytes)")
            parts.append(d)
            have += len(d)
        return b"".join(parts)

    def _read_line(self, conn: _Conn, deadline: float) -> bytes:
        while True:
            i = conn.buf.find(b"\r\n")
            if i >= 0:
                line, conn.buf = conn.buf[:i], conn.buf[i + 2:]
                return line
            if len(conn.buf) > _MAX_HEAD:
                raise ValueError("chunk header line too long")
            d = self._recv(conn, deadline)
            if not d:
                raise ValueError("connection closed inside a chunked body")
            conn.buf += d

    def _read_chunked(self, conn: _Conn, deadline: float) -> bytes:
        out: List[bytes] = []
        total = 0
        while True:
            size_s = self._read_line(conn, deadline).split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise ValueError(f"bad chunk size {size_s[:20]!r}") from None
            if size == 0:
                while self._read_line(conn, deadline):
                    pass  # trailers, up to the empty line
                return b"".join(out)
            total += size
            if total > self.max_body:
                raise too_large(f"a chunked body of at least {total:,} bytes", self.max_body)
            try:
                out.append(self._read_exact(conn, size, deadline))
            except ValueError:
                raise ValueError("chunked body cut short") from None
            if self._read_line(conn, deadline):
                raise ValueError("chunk not followed by CRLF")

    def _read_to_close(self, conn: _Conn, deadline: float) -> bytes:
        parts = [conn.buf]
        have = len(conn.buf)
        conn.buf = b""
        while True:
            if have > self.max_body:
                raise too_large(f"a body without a length, at {have:,} bytes and growing,", self.max_body)
            d = self._recv(conn, deadline)
            if not d:
                return b"".join(parts)
            parts.append(d)
            have += len(d)


class _NothingBack(Exception):
    """The connection closed before the first byte of a response."""
