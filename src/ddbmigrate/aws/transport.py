"""A minimal keep-alive HTTP/1.1 client for the hot DynamoDB calls.

Why: with the JSON handled by orjson/simdjson, what remains of a copy's client CPU is the HTTP
stack. http.client parses every response's headers with the email package and urllib3 adds
its own layers: about 200-300 µs of CPU per request, i.e. 8-12 µs per item of a 25-item
BatchWriteItem. DynamoDB speaks plain HTTP/1.1 with Content-Length bodies, so a small client
over a buffered socket does the same exchange in a few tens of microseconds.

Scope, on purpose: POST to one endpoint, keep-alive, Content-Length or chunked responses,
TLS with certificate verification (the default SSL context), connect and read timeouts. No
proxies: when HTTPS_PROXY/HTTP_PROXY is set, client.py uses urllib3 instead.

Invariant: a connection goes back to the pool only after its response was read completely;
any error discards it, so a half-read response can never be mistaken for the next one.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit


class TransportError(ConnectionError):
    """The exchange failed at the HTTP/TCP level (retriable as a 'connection' cause)."""


class Response:
    __slots__ = ("status", "headers", "data")

    def __init__(self, status: int, headers: Dict[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


class _Conn:
    __slots__ = ("sock", "rfile", "used")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=65536)
        self.used = False

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


class Transport:
    """A pool of keep-alive connections to one ``http(s)://host[:port]/path`` endpoint."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0, read_timeout: float = 30.0,
                 max_idle: int = 64, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported endpoint scheme in {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.tls else 80)
        self.path = parts.path or "/"
        default_port = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        host_header = self.host if ":" not in self.host else f"[{self.host}]"
        self.host_header = host_header if default_port else f"{host_header}:{self.port}"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._ctx = ssl_context or (ssl.create_default_context() if self.tls else None)
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
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {e}") from e
        return _Conn(sock)

    def _get(self) -> _Conn:
        with self._lock:
            if self._idle:
                return self._idle.pop()
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
        """POST ``body``; a reused connection that the server closed while idle is retried once."""
        conn = self._get()
        reused = conn.used
        try:
            return self._exchange(conn, headers, body)
        except _StaleConnection:
            if not reused:
                raise TransportError("connection closed by the server before a response") from None
        # The server closed an idle keep-alive connection: nothing was processed, try a new one.
        conn = self._connect()
        try:
            return self._exchange(conn, headers, body)
        except _StaleConnection:
            raise TransportError("connection closed by the server before a response") from None

    def _exchange(self, conn: _Conn, headers: Dict[str, str], body: bytes) -> Response:
        parts = [self._head]
        for k, v in headers.items():
            lk = k.lower()
            if lk in ("host", "content-length", "connection"):
                continue
            parts.append(f"{k}: {v}\r\n".encode("latin-1"))
        parts.append(f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1"))
        try:
            conn.sock.sendall(b"".join(parts) + body if len(body) < 65536 else b"".join(parts))
            if len(body) >= 65536:
                conn.sock.sendall(body)
            status, hdrs, data, keep = self._read(conn)
        except _StaleConnection:
            conn.close()
            raise
        except (OSError, ValueError) as e:
            conn.close()
            raise TransportError(f"HTTP exchange with {self.host}:{self.port} failed: {e}") from e
        conn.used = True
        if keep:
            self._put(conn)
        else:
            conn.close()
        return Response(status, hdrs, data)

    def _read(self, conn: _Conn) -> Tuple[int, Dict[str, str], bytes, bool]:
        rfile = conn.rfile
        line = rfile.readline(65537)
        if not line:
            raise _StaleConnection()
        try:
            version, code, _ = line.split(b" ", 2) if line.count(b" ") >= 2 else (*line.split(b" ", 1), b"")
            status = int(code)
        except ValueError:
            raise ValueError(f"bad status line {line[:80]!r}") from None
        headers: Dict[str, str] = {}
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise ValueError("connection closed inside the response headers")
            name, _, value = h.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        keep = version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = self._read_chunked(rfile)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            data = rfile.read(n)
            if len(data) != n:
                raise ValueError(f"response body cut short ({len(data)} of {n} bytes)")
        elif status in (204, 304) or 100 <= status < 200:
            data = b""
        else:
            data = rfile.read()  # delimited by close
            keep = False
        return status, headers, data, keep

    @staticmethod
    def _read_chunked(rfile: "object") -> bytes:
        out: List[bytes] = []
        read, readline = rfile.read, rfile.readline  # type: ignore[attr-defined]
        while True:
            size_line = readline(65537)
            if not size_line:
                raise ValueError("connection closed inside a chunked body")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(out)
            chunk = read(size)
            if len(chunk) != size:
                raise ValueError("chunked body cut short")
            out.append(chunk)
            readline(65537)


class _StaleConnection(Exception):
    """The server closed the connection before sending anything (idle keep-alive timeout)."""
