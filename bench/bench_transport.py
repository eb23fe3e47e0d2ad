"""Client CPU of the hot path's HTTP stack: ddbmigrate's transport against maintained libraries.

    python bench/bench_transport.py [--requests 2000] [--threads 1] [--json out.json]

A loopback server in its own process answers like DynamoDB (a ~1 MB Scan page of 1,000 items of
~1 KB, a small BatchWriteItem answer, both with x-amz-crc32); the client sends the same signed
requests through each stack and reads its own CPU time (user + sys of this process, every thread
included: awscrt's event-loop threads count too). The server's CPU is not in the figures.

What is measured per request: signing (where the stack brings its own signer) + the HTTP exchange
+ reading the whole body. Parsing the JSON is the same for every stack and left out. Per item:
a copy sends one 25-item BatchWriteItem per 25 items and reads one Scan page per ~1,000 items,
so ``per item = write/25 + scan/1000``.

Stacks (each skipped when its package is not importable):
  ddbmigrate  aws.transport.Transport + aws.signing.FastSigV4 (today's hot path)
  urllib3     urllib3 2.x HTTPConnectionPool (the library botocore uses) + FastSigV4
  httpcore    httpcore 1.x ConnectionPool (httpx's core, pure Python on h11) + FastSigV4
  awscrt      awscrt.http.HttpClientConnection + awscrt.auth.aws_sign_request (the CRT's signer)
Signers alone: FastSigV4, awscrt, botocore SigV4Auth.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import socket
import sys
import threading
import time
import zlib
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from ddbmigrate.aws.signing import FastSigV4  # noqa: E402
from ddbmigrate.aws.transport import Transport  # noqa: E402

ITEM = b'{"pk":{"S":"user#000000001"},"n":{"N":"12345"},"s":{"S":"' + b"x" * 940 + b'"}}'
SCAN_BODY = b'{"Items":[' + b",".join([ITEM] * 1000) + b'],"Count":1000,"ScannedCount":1000}'
WRITE_BODY = b'{"UnprocessedItems":{},"ConsumedCapacity":[{"TableName":"bench","CapacityUnits":25.0}]}'
WRITE_REQ = (b'{"RequestItems":{"bench":[' + b",".join([b'{"PutRequest":{"Item":' + ITEM + b"}}"] * 25)
             + b']},"ReturnConsumedCapacity":"TOTAL"}')
SCAN_REQ = b'{"TableName":"bench","Segment":3,"TotalSegments":32,"ReturnConsumedCapacity":"TOTAL"}'


class Creds:
    access_key = "AKIDEXAMPLEBENCH0001"
    secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    token = "FwoGZXIvYXdzEJr//////////wEaDBenchToken0123456789abcdef"

    def get_frozen_credentials(self) -> "Creds":
        return self


# ------------------------------------------------------------------ the server (own process)


def _serve(port_q: Any) -> None:
    answers = {}
    for name, body in (("Scan", SCAN_BODY), ("BatchWriteItem", WRITE_BODY)):
        crc = zlib.crc32(body) & 0xFFFFFFFF
        answers[name.encode()] = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                                  b"x-amzn-RequestId: BENCH\r\nx-amz-crc32: %d\r\nContent-Length: %d\r\n\r\n"
                                  % (crc, len(body))) + body
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    port_q.put(s.getsockname()[1])

    def conn(c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(262144)
                    if not d:
                        return
                    buf += d
                head, _, rest = buf.partition(b"\r\n\r\n")
                n, op = 0, b""
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length":
                        n = int(v)
                    elif k == b"x-amz-target":
                        op = v.strip().rsplit(b".", 1)[-1]
                while len(rest) < n:
                    d = c.recv(262144)
                    if not d:
                        return
                    rest += d
                buf = rest[n:]
                c.sendall(answers.get(op, answers[b"BatchWriteItem"]))
        except OSError:
            return
        finally:
            c.close()

    while True:
        c, _ = s.accept()
        threading.Thread(target=conn, args=(c,), daemon=True).start()


# ------------------------------------------------------------------ the stacks


def fast_signer(host: str) -> FastSigV4:
    return FastSigV4(Creds(), "us-east-1", "dynamodb", host)


def stack_ddbmigrate(port: int) -> Callable[[str, bytes], bytes]:
    t = Transport(f"http://127.0.0.1:{port}/", max_idle=64)
    signer = fast_signer(t.host_header)

    def call(op: str, body: bytes) -> bytes:
        r = t.post(signer.sign("DynamoDB_20120810." + op, body, "application/x-amz-json-1.0"), body)
        assert r.status == 200
        return r.data

    return call


def stack_urllib3(port: int) -> Callable[[str, bytes], bytes]:
    import urllib3

    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=64, block=False, retries=False)
    signer = fast_signer(f"127.0.0.1:{port}")

    def call(op: str, body: bytes) -> bytes:
        h = signer.sign("DynamoDB_20120810." + op, body, "application/x-amz-json-1.0")
        r = pool.urlopen("POST", "/", body=body, headers=h, preload_content=True, retries=False, redirect=False)
        assert r.status == 200
        return bytes(r.data)

    return call


def stack_httpcore(port: int) -> Callable[[str, bytes], bytes]:
    import httpcore

    pool = httpcore.ConnectionPool(max_connections=64)
    signer = fast_signer(f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/"

    def call(op: str, body: bytes) -> bytes:
        h = signer.sign("DynamoDB_20120810." + op, body, "application/x-amz-json-1.0")
        r = pool.request("POST", url, headers=list(h.items()), content=body)
        assert r.status == 200
        return bytes(r.content)

    return call


def stack_awscrt(port: int) -> Callable[[str, bytes], bytes]:
    import io

    from awscrt import auth, http
    from awscrt import io as crtio

    elg = crtio.EventLoopGroup(1)
    bootstrap = crtio.ClientBootstrap(elg, crtio.DefaultHostResolver(elg))
    provider = auth.AwsCredentialsProvider.new_static(Creds.access_key, Creds.secret_key, Creds.token)
    host = f"127.0.0.1:{port}"
    local = threading.local()

    def conn() -> Any:
        c = getattr(local, "conn", None)
        if c is None or not c.is_open():
            c = local.conn = http.HttpClientConnection.new(host_name="127.0.0.1", port=port,
                                                           bootstrap=bootstrap).result()
        return c

    def call(op: str, body: bytes) -> bytes:
        headers = http.HttpHeaders([("Host", host), ("Content-Type", "application/x-amz-json-1.0"),
                                    ("X-Amz-Target", "DynamoDB_20120810." + op), ("Content-Length", str(len(body)))])
        req = http.HttpRequest("POST", "/", headers, io.BytesIO(body))
        cfg = auth.AwsSigningConfig(algorithm=auth.AwsSigningAlgorithm.V4,
                                    signature_type=auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
                                    credentials_provider=provider, region="us-east-1", service="dynamodb",
                                    signed_body_header_type=auth.AwsSignedBodyHeaderType.NONE)
        auth.aws_sign_request(req, cfg).result()
        chunks: List[bytes] = []
        stream = conn().request(req, on_body=lambda chunk, **kw: chunks.append(bytes(chunk)))
        stream.activate()
        status = stream.completion_future.result()
        assert status == 200, status
        return b"".join(chunks)

    return call


STACKS: Dict[str, Callable[[int], Callable[[str, bytes], bytes]]] = {
    "ddbmigrate": stack_ddbmigrate, "urllib3": stack_urllib3, "httpcore": stack_httpcore, "awscrt": stack_awscrt,
}


# ------------------------------------------------------------------ signers alone


def signers() -> Dict[str, Callable[[bytes], Any]]:
    out: Dict[str, Callable[[bytes], Any]] = {}
    fs = fast_signer("dynamodb.us-east-1.amazonaws.com")
    out["FastSigV4"] = lambda b: fs.sign("DynamoDB_20120810.BatchWriteItem", b, "application/x-amz-json-1.0")
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    bc = SigV4Auth(Credentials(Creds.access_key, Creds.secret_key, Creds.token), "dynamodb", "us-east-1")

    def boto(b: bytes) -> Any:
        r = AWSRequest(method="POST", url="https://dynamodb.us-east-1.amazonaws.com/", data=b,
                       headers={"Content-Type": "application/x-amz-json-1.0",
                                "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem"})
        bc.add_auth(r)
        return r

    out["botocore SigV4Auth"] = boto
    try:
        import io

        from awscrt import auth, http

        provider = auth.AwsCredentialsProvider.new_static(Creds.access_key, Creds.secret_key, Creds.token)

        def crt(b: bytes) -> Any:
            req = http.HttpRequest("POST", "/", http.HttpHeaders([
                ("Host", "dynamodb.us-east-1.amazonaws.com"), ("Content-Type", "application/x-amz-json-1.0"),
                ("X-Amz-Target", "DynamoDB_20120810.BatchWriteItem")]), io.BytesIO(b))
            cfg = auth.AwsSigningConfig(algorithm=auth.AwsSigningAlgorithm.V4,
                                        signature_type=auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
                                        credentials_provider=provider, region="us-east-1", service="dynamodb",
                                        signed_body_header_type=auth.AwsSignedBodyHeaderType.NONE)
            return auth.aws_sign_request(req, cfg).result()

        out["awscrt aws_sign_request"] = crt
    except ImportError:
        pass
    return out


# ------------------------------------------------------------------ measuring


def cpu_per_call(fn: Callable[[], Any], n: int, threads: int) -> Tuple[float, float]:
    """(CPU µs per call, wall µs per call) for n calls spread over ``threads`` threads."""
    for _ in range(min(50, n)):
        fn()
    per = n // threads

    def run() -> None:
        for _ in range(per):
            fn()

    c0, w0 = time.process_time(), time.perf_counter()
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    c1, w1 = time.process_time(), time.perf_counter()
    total = per * threads
    return (c1 - c0) / total * 1e6, (w1 - w0) / total * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000, help="BatchWriteItem requests per stack (Scan: a tenth)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="repeat and keep the median")
    p.add_argument("--only", help="comma-separated stacks")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()
    q: Any = mp.get_context("spawn").Queue()
    server = mp.get_context("spawn").Process(target=_serve, args=(q,), daemon=True)
    server.start()
    port = q.get(timeout=30)
    results: Dict[str, Any] = {"requests": a.requests, "threads": a.threads, "stacks": {}, "signers": {},
                               "python": sys.version.split()[0], "when": dt.datetime.now(dt.timezone.utc).isoformat()}
    wanted = set(a.only.split(",")) if a.only else set(STACKS)
    for name, make in STACKS.items():
        if name not in wanted:
            continue
        try:
            call = make(port)
            call("BatchWriteItem", WRITE_REQ)
        except ImportError as e:
            print(f"{name:11} skipped ({e})")
            continue
        rows = []
        for _ in range(a.rounds):
            w, _ = cpu_per_call(lambda: call("BatchWriteItem", WRITE_REQ), a.requests, a.threads)
            s, _ = cpu_per_call(lambda: call("Scan", SCAN_REQ), max(a.threads, a.requests // 10), a.threads)
            rows.append((w / 25 + s / 1000, w, s))
        rows.sort()
        item, w, s = rows[len(rows) // 2]
        results["stacks"][name] = {"write_us": round(w, 1), "scan_us": round(s, 1), "per_item_us": round(item, 2)}
        print(f"{name:11} BatchWriteItem {w:8.1f} µs   Scan (1 MB) {s:8.1f} µs   per item {item:6.2f} µs")
    for name, fn in signers().items():
        us = sorted(cpu_per_call(lambda: fn(WRITE_REQ), a.requests, 1)[0] for _ in range(a.rounds))[a.rounds // 2]
        results["signers"][name] = round(us, 1)
        print(f"signer {name:24} {us:8.1f} µs per 25-item request")
    server.terminate()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
