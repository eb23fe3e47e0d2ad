"""DynamoClient on loopback against scripted servers: what the transport's caller decides.

Lost responses (resend only what is safe, counted), credentials refused early (refresh once,
counted), credential_process cached, the CA bundle and proxy credentials botocore would use.
No DynamoDB needed: each server answers from a script.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
import socket
import ssl
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import orjson
import pytest

from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.config import RetryPolicy, TableRef
from ddbmigrate.errors import AwsError
from test_transport import ScriptedServer, drip_reply, ok

SCAN_OK = b'{"Items":[],"Count":0,"ScannedCount":0}'


@pytest.fixture(autouse=True)
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
              "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy",
              "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTATICKEY0000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "static-secret-key-value")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def client(endpoint: str, *, profile: Optional[str] = None, attempts: int = 4) -> DynamoClient:
    return DynamoClient(TableRef("tbl1", region="us-east-1", profile=profile, endpoint_url=endpoint),
                        retry=RetryPolicy(max_attempts=attempts), sleep=lambda s: None, timeout=5.0)


def access_key(req: bytes) -> str:
    m = re.search(rb"Credential=([^/]+)/", req)
    return m.group(1).decode() if m else ""


def target(req: bytes) -> str:
    m = re.search(rb"X-Amz-Target: [A-Za-z0-9_]+\.(\w+)", req)
    return m.group(1).decode() if m else ""


# ---------------------------------------------------------------- lost responses


def lose_second(c: socket.socket, req: bytes, n: int) -> bool:
    if n == 2:
        return False  # received (applied, for a write), then the connection drops: no answer
    c.sendall(ok(b'{"UnprocessedItems":{}}' if target(req) == "BatchWriteItem" else b"{}"))
    return True


def test_lost_response_of_a_full_image_write_is_resent_and_counted() -> None:
    srv = ScriptedServer(lose_second)
    c = client(f"http://127.0.0.1:{srv.port}")
    body = {"RequestItems": {"tbl1": [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}]}}
    c.call("BatchWriteItem", body)
    c.call("BatchWriteItem", body)  # its first answer is lost: resent once, as a counted retry
    assert len(srv.requests) == 3
    assert c.stats.snapshot()["retries"] == {"connection": 1}
    srv.close()


def test_lost_response_of_a_relative_update_is_not_resent() -> None:
    srv = ScriptedServer(lose_second)
    c = client(f"http://127.0.0.1:{srv.port}")
    upd = {"TableName": "tbl1", "Key": {"pk": {"S": "a"}}, "UpdateExpression": "ADD n :one",
           "ExpressionAttributeValues": {":one": {"N": "1"}}}
    c.call("UpdateItem", upd)
    with pytest.raises(AwsError, match="may have been applied"):
        c.call("UpdateItem", upd)
    assert len(srv.requests) == 2  # never applied twice
    srv.close()


# ---------------------------------------------------------------- credentials

EXPIRED = (b'{"__type":"com.amazon.coral.service#ExpiredTokenException",'
           b'"message":"The security token included in the request is expired"}')


def refuse(keys: Callable[[str], bool], body: bytes = EXPIRED) -> Callable[[socket.socket, bytes, int], bool]:
    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        if keys(access_key(req)):
            c.sendall(f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        else:
            c.sendall(ok(SCAN_OK))
        return True

    return reply


def process_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minutes: int) -> Path:
    """A profile whose credential_process hands out a new key at each run, valid ``minutes``."""
    counter = tmp_path / "runs"
    script = tmp_path / "creds.py"
    script.write_text(f"""#!{sys.executable}
import datetime, json, pathlib
p = pathlib.Path({str(counter)!r})
n = len(p.read_text().splitlines()) + 1 if p.exists() else 1
with p.open("a") as f:
    f.write("run\\n")
exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes={minutes})
print(json.dumps({{"Version": 1, "AccessKeyId": "AKIDPROC%012d" % n, "SecretAccessKey": "secret-%d" % n,
                  "SessionToken": "token-%d-abcdefgh" % n, "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "config").write_text(f"[profile proc]\ncredential_process = {script}\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    return counter


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines())


def test_expired_token_before_stated_expiry_refreshes_and_retries(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    counter = process_profile(tmp_path, monkeypatch, minutes=60)
    first: List[str] = []  # the first key the server sees is revoked (its stated expiry: an hour ahead)
    srv = ScriptedServer(refuse(lambda k: (first.append(k) if not first else None) or k == first[0]))
    c = client(f"http://127.0.0.1:{srv.port}", profile="proc")
    revoked = c._credentials.get_frozen_credentials().access_key
    before = runs(counter)
    assert c.call("Scan", {"TableName": "tbl1"})["Count"] == 0
    assert c.stats.snapshot()["retries"] == {"credentials": 1}
    assert [access_key(r) for r in srv.requests][0] == revoked and access_key(srv.requests[1]) != revoked
    assert runs(counter) == before + 1
    # and the fresh credentials are kept: no further process run, no further refusal
    for _ in range(5):
        c.call("Scan", {"TableName": "tbl1"})
    assert runs(counter) == before + 1 and c.stats.snapshot()["retries"] == {"credentials": 1}
    srv.close()


def test_fresh_credentials_refused_too_fail_with_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    process_profile(tmp_path, monkeypatch, minutes=60)
    body = b'{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"invalid token"}'
    srv = ScriptedServer(refuse(lambda k: True, body))
    c = client(f"http://127.0.0.1:{srv.port}", profile="proc")
    with pytest.raises(AwsError, match="refused again after loading fresh credentials") as ei:
        c.call("Scan", {"TableName": "tbl1"})
    assert ei.value.code == "UnrecognizedClientException" and ei.value.exit_code == 1
    assert len(srv.requests) == 2  # the refused credentials, then the fresh ones: no more
    srv.close()


def test_static_credentials_refused_are_not_retried() -> None:
    srv = ScriptedServer(refuse(lambda k: True))
    c = client(f"http://127.0.0.1:{srv.port}")
    with pytest.raises(AwsError, match="nothing fresher"):
        c.call("Scan", {"TableName": "tbl1"})
    assert len(srv.requests) == 1
    srv.close()


def test_credential_process_runs_once_not_per_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 12 minutes is inside botocore's refresh window (15 min): botocore alone runs the process on
    # every get_frozen_credentials(), i.e. once per signed request.
    counter = process_profile(tmp_path, monkeypatch, minutes=12)
    srv = ScriptedServer(lambda c, req, n: c.sendall(ok(SCAN_OK)) or True)
    c = client(f"http://127.0.0.1:{srv.port}", profile="proc")
    for _ in range(20):
        c.call("Scan", {"TableName": "tbl1"})
    assert len(srv.requests) == 20
    assert runs(counter) <= 2  # botocore's initial load, then ours; cached after that
    srv.close()


def test_credential_cache_refreshes_shortly_before_expiry() -> None:
    from botocore.credentials import RefreshableCredentials

    from ddbmigrate.aws.credentials import CredentialCache

    t0 = time.time()  # botocore reads the real clock; the cache reads ours
    now = [t0]
    fetched: List[int] = []

    def fetch() -> Dict[str, Any]:
        fetched.append(1)
        exp = dt.datetime.fromtimestamp(now[0] + 300, dt.timezone.utc)
        return {"access_key": f"AKID{len(fetched):016d}", "secret_key": "s" * 20, "token": "t" * 20,
                "expiry_time": exp.isoformat()}

    src = RefreshableCredentials.create_from_metadata(fetch(), fetch, "test")
    cache = CredentialCache(src, clock=lambda: now[0])
    first = cache.get_frozen_credentials()
    for t in (1, 60, 200):  # 5-minute credentials, margin a quarter: kept until 225 s
        now[0] = t0 + t
        assert cache.get_frozen_credentials() is first
    now[0] = t0 + 230
    assert cache.get_frozen_credentials().access_key != first.access_key


# ---------------------------------------------------------------- TLS: the CA bundle botocore uses


def self_signed(tmp_path: Path) -> Tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ddbmigrate test CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsServer(ScriptedServer):
    def __init__(self, reply: Callable[[socket.socket, bytes, int], bool], cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        super().__init__(reply)

    def _conn(self, c: socket.socket) -> None:
        try:
            c = self.ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            return  # a client that does not trust us
        super()._conn(c)


@pytest.mark.parametrize("how", ["env", "profile"])
def test_ca_bundle_is_honoured_on_the_hot_path(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    srv = TlsServer(lambda c, req, n: c.sendall(ok(SCAN_OK)) or True, cert, key)
    if how == "env":
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
        profile = None
    else:
        (tmp_path / "config").write_text(f"[profile tls]\nca_bundle = {cert}\naws_access_key_id = AKIDPROFILE000000001\n"
                                         "aws_secret_access_key = profile-secret-value\n")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        profile = "tls"
    c = client(f"https://127.0.0.1:{srv.port}", profile=profile)
    assert c.call("Scan", {"TableName": "tbl1"})["Count"] == 0
    assert c.stats.snapshot()["retries"] == {}
    srv.close()


# ---------------------------------------------------------------- proxies with credentials


class AuthProxy:
    """An HTTP proxy that wants ``Proxy-Authorization: Basic user:p@ss``; answers absolute-form
    requests itself and tunnels CONNECT to ``tunnel_to``."""

    def __init__(self, tunnel_to: Optional[int] = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.tunnel_to = tunnel_to
        self.seen: List[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c: socket.socket) -> None:
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, _, rest = buf.partition(b"\r\n\r\n")
            self.seen.append(head)
            want = b"Basic " + base64.b64encode(b"user:p@ss")
            good = any(n.strip().lower() == b"proxy-authorization" and v.strip() == want
                       for n, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:]))
            if not good:
                c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n"
                          b"Connection: close\r\n\r\n")
                return
            if head.startswith(b"CONNECT ") and self.tunnel_to:
                up = socket.create_connection(("127.0.0.1", self.tunnel_to))
                c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                threading.Thread(target=self._pipe, args=(up, c), daemon=True).start()
                if rest:
                    up.sendall(rest)
                self._pipe(c, up)
                return
            c.sendall(ok(SCAN_OK, "Connection: close\r\n"))
        except OSError:
            pass
        finally:
            c.close()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_proxy_credentials_in_http_proxy_url_are_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = AuthProxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy.port}")
    c = client("http://dynamodb.example.invalid:8000")
    assert c.call("Scan", {"TableName": "tbl1"})["Count"] == 0
    assert proxy.seen[0].startswith(b"POST http://dynamodb.example.invalid:8000/ HTTP/1.1")
    proxy.close()


def test_proxy_credentials_reach_an_https_connect_tunnel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    srv = TlsServer(lambda c, req, n: c.sendall(ok(SCAN_OK)) or True, cert, key)
    proxy = AuthProxy(tunnel_to=srv.port)
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy.port}")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    c = client(f"https://127.0.0.1:{srv.port}")
    assert c.call("Scan", {"TableName": "tbl1"})["Count"] == 0
    assert proxy.seen[0].startswith(b"CONNECT 127.0.0.1:")
    assert orjson.loads(srv.requests[0].split(b"\r\n\r\n", 1)[1]) == {"TableName": "tbl1"}
    srv.close()
    proxy.close()


# ---------------------------------------------------------------- the signature on the wire, every stack


def botocore_authorization(req: bytes, url: str) -> str:
    """botocore's SigV4 Authorization for the request as the server received it."""
    import botocore.auth as ba
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    head, _, body = req.partition(b"\r\n\r\n")
    hdrs = dict(line.decode("latin-1").split(": ", 1) for line in head.split(b"\r\n")[1:])
    when = dt.datetime.strptime(hdrs["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    r = AWSRequest(method="POST", url=url, data=body,
                   headers={"Content-Type": hdrs["Content-Type"], "X-Amz-Target": hdrs["X-Amz-Target"]})
    orig = ba.get_current_datetime
    try:
        ba.get_current_datetime = lambda *a, **k: when  # type: ignore[assignment]
        ba.SigV4Auth(Credentials("AKIDSTATICKEY0000001", "static-secret-key-value"), "dynamodb",
                     "us-east-1").add_auth(r)
    finally:
        ba.get_current_datetime = orig  # type: ignore[assignment]
    assert hdrs.get("Host") == r.url.split("/")[2]
    return str(r.headers["Authorization"])


@pytest.mark.parametrize("stack", ["builtin", "urllib3"])
def test_the_request_on_the_wire_carries_botocores_signature(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDBMIGRATE_HTTP_CLIENT", stack)
    srv = ScriptedServer(lambda c, req, n: c.sendall(ok(SCAN_OK)) or True)
    url = f"http://127.0.0.1:{srv.port}"
    c = client(url)
    assert (c._transport is None) == (stack == "urllib3")
    c.call("Scan", {"TableName": "tbl1"})
    wire = re.search(rb"\r\nAuthorization: ([^\r]+)", srv.requests[0])
    assert wire is not None and wire.group(1).decode() == botocore_authorization(srv.requests[0], url + "/")
    srv.close()


def test_an_unknown_http_client_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddbmigrate.errors import UsageError

    monkeypatch.setenv("DDBMIGRATE_HTTP_CLIENT", "curl")
    with pytest.raises(UsageError, match="DDBMIGRATE_HTTP_CLIENT"):
        client("http://127.0.0.1:9")


def test_a_token_with_a_line_break_is_refused_before_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddbmigrate.errors import UsageError

    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-value\r\nX-Injected: yes")
    srv = ScriptedServer(lambda c, req, n: c.sendall(ok(SCAN_OK)) or True)
    c = client(f"http://127.0.0.1:{srv.port}")
    with pytest.raises(UsageError, match="line break"):
        c.call("Scan", {"TableName": "tbl1"})
    assert srv.requests == [] and c.stats.snapshot()["retries"] == {}
    srv.close()


def test_conditional_put_whose_answer_was_lost_counts_as_written_not_as_existing() -> None:
    # skip-existing: PutItem with attribute_not_exists. The server applies it, the connection
    # closes without an answer; the retry then finds "our" item. Re-sent silently by the
    # transport, the writer could not know and counted it as an item that already existed.
    from ddbmigrate.core.items import KeySchema
    from ddbmigrate.core.records import PUT, Op
    from ddbmigrate.sinks.table_writer import TableWriter

    item = {"pk": {"S": "k1"}, "v": {"N": "1"}}
    failed = orjson.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                           "message": "The conditional request failed", "Item": item})

    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        if n == 1:
            c.sendall(ok(SCAN_OK))  # an earlier call: the connection is now a reused keep-alive one
            return True
        if n == 2:
            return False  # the put is applied; its answer is lost
        c.sendall(f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(failed)}\r\n\r\n".encode() + failed)
        return True

    srv = ScriptedServer(reply)
    c = client(f"http://127.0.0.1:{srv.port}")
    c.call("Scan", {"TableName": "tbl1"})
    w = TableWriter(c, "tbl1", KeySchema("pk", "S"), mode="skip-existing")
    res = w.write([Op(PUT, item, orjson.dumps(item), ("k1",))])
    assert (res.written, res.skipped_existing, res.rejected) == (1, 0, [])
    assert c.stats.snapshot()["retries"] == {"connection": 1}
    srv.close()


def test_control_plane_refreshes_refused_credentials_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # DescribeTable goes through botocore: it must sign with the refreshed credentials as well.
    process_profile(tmp_path, monkeypatch, minutes=60)
    first: List[str] = []
    desc = b'{"Table":{"TableName":"tbl1","TableStatus":"ACTIVE","ItemCount":0}}'

    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        k = access_key(req)
        if not first:
            first.append(k)
        if k == first[0]:
            c.sendall(f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(EXPIRED)}\r\n\r\n".encode() + EXPIRED)
        else:
            c.sendall(ok(desc if target(req) == "DescribeTable" else SCAN_OK))
        return True

    srv = ScriptedServer(reply)
    c = client(f"http://127.0.0.1:{srv.port}", profile="proc")
    assert c.describe_table()["TableStatus"] == "ACTIVE"
    assert c.stats.snapshot()["retries"] == {"credentials": 1}
    assert c.call("Scan", {"TableName": "tbl1"})["Count"] == 0  # the data path has the fresh ones already
    assert c.stats.snapshot()["retries"] == {"credentials": 1}
    assert [access_key(r) for r in srv.requests].count(first[0]) == 1
    srv.close()


def test_the_urllib3_path_has_a_total_deadline_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxies and the escape hatch go through urllib3, whose read timeout is per socket read:
    a server dripping a byte at a time must still not hold a request past its deadline."""
    monkeypatch.setenv("DDBMIGRATE_HTTP_CLIENT", "urllib3")
    srv = ScriptedServer(drip_reply)
    c = DynamoClient(TableRef("tbl1", endpoint_url=f"http://127.0.0.1:{srv.port}", region="us-east-1"),
                     retry=RetryPolicy(max_attempts=1), timeout=1.0)
    from ddbmigrate.errors import RetriesExhaustedError

    with pytest.raises(RetriesExhaustedError, match="not complete within 1 s"):
        c.call("Scan", {"TableName": "tbl1"})  # the whole answer would take 20 s
    srv.close()


# ---------------------------------------------------------------- throttled calls and the limiter


def test_a_throttled_call_waits_for_the_limiter_before_it_is_sent_again() -> None:
    """A call refused with ProvisionedThroughputExceededException is re-sent by the client's
    own retry loop: it tells the limiter, then acquires from it again, so the re-sent call waits
    for the rate (it used to be re-sent on the back-off alone, past a rate just cut)."""
    throttle = (b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
                b'"message":"The level of configured provisioned throughput for the table was exceeded."}')

    def once(c: socket.socket, req: bytes, n: int) -> bool:
        if n == 1:
            c.sendall(f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(throttle)}\r\n\r\n".encode() + throttle)
        else:
            c.sendall(ok(b'{"UnprocessedItems":{}}'))
        return True

    class Spy:
        def __init__(self) -> None:
            self.seen: List[str] = []

        def throttled(self) -> None:
            self.seen.append("throttled")

        def again(self) -> None:
            self.seen.append("again")

    srv = ScriptedServer(once)
    spy = Spy()
    c = client(f"http://127.0.0.1:{srv.port}")
    c.call("BatchWriteItem", {"RequestItems": {"tbl1": [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}]}}, limiter=spy)
    assert spy.seen == ["throttled", "again"] and len(srv.requests) == 2
    assert c.stats.snapshot()["retries"] == {"throttle": 1}
    srv.close()


# ---------------------------------------------------------------- an answer holding back what was never sent


@pytest.mark.parametrize("foreign", [
    {"PutRequest": {"Item": {"pk": {"S": "FOREIGN-1"}, "evil": {"S": "yes"}}}},
    {"DeleteRequest": {"Key": {"pk": {"S": "KEEPME"}}}},
])
def test_unprocessed_items_this_call_never_sent_are_never_applied(foreign: Dict[str, Any]) -> None:
    """Before: a server's UnprocessedItems was re-sent as it came: a request of its own wrote an
    item that was never part of the job, or deleted one the target had (exit 0, "done"). Now the
    answer is a bad one, retried: the batch is sent again, the foreign request never."""
    from ddbmigrate.core.items import KeySchema
    from ddbmigrate.core.records import PUT, Op
    from ddbmigrate.sinks.table_writer import TableWriter

    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        held = {"tbl1": [foreign, {"PutRequest": {"Item": {"pk": {"S": "k1"}, "n": {"N": "1.0"}}}}]}
        c.sendall(ok(orjson.dumps({"UnprocessedItems": held if n == 1 else {}})))
        return True

    srv = ScriptedServer(reply)
    cl = client(f"http://127.0.0.1:{srv.port}")
    items = [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}} for i in range(3)]
    w = TableWriter(cl, "tbl1", KeySchema("pk", "S"))
    res = w.write([Op(PUT, it, orjson.dumps(it), None) for it in items])
    assert res.written == 3
    bodies = [r.split(b"\r\n\r\n", 1)[1] for r in srv.requests]
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert all(b"FOREIGN" not in b and b"KEEPME" not in b for b in bodies)
    assert cl.stats.snapshot()["retries"].get("connection") == 1
    cl.close()


def test_unprocessed_items_of_this_call_are_sent_again_whatever_their_spelling() -> None:
    """The check compares items by value: DynamoDB may hand back 1.0 for 1, attributes reordered."""
    from ddbmigrate.core.items import KeySchema
    from ddbmigrate.core.records import PUT, Op
    from ddbmigrate.sinks.table_writer import TableWriter

    def reply(c: socket.socket, req: bytes, n: int) -> bool:
        held = {"tbl1": [{"PutRequest": {"Item": {"n": {"N": "1.0"}, "pk": {"S": "k1"}}}}]}
        c.sendall(ok(orjson.dumps({"UnprocessedItems": held if n == 1 else {}})))
        return True

    srv = ScriptedServer(reply)
    cl = client(f"http://127.0.0.1:{srv.port}")
    items = [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}} for i in range(3)]
    res = TableWriter(cl, "tbl1", KeySchema("pk", "S")).write([Op(PUT, it, orjson.dumps(it), None) for it in items])
    assert res.written == 3
    bodies = [r.split(b"\r\n\r\n", 1)[1] for r in srv.requests]
    assert len(bodies) == 2 and b'"k1"' in bodies[1] and b'"k0"' not in bodies[1]
    cl.close()


# ---------------------------------------------------------------- the control plane's broken answers


@pytest.mark.parametrize("body", [b"<html>hello</html>", b'{"Table": {"TableNa', b"{}"])
def test_a_describe_table_answer_that_is_no_description_is_retried_then_exit_75(body: bytes) -> None:
    """Before: "error: 'Table'" (a KeyError) or a codec error, exit 1, not retried; the data path
    retries such an answer and ends in exit 75 naming the operation."""
    from ddbmigrate.errors import RetriesExhaustedError

    srv = ScriptedServer(lambda c, req, n: c.sendall(ok(body)) or True)
    cl = client(f"http://127.0.0.1:{srv.port}", attempts=3)
    with pytest.raises(RetriesExhaustedError, match="DescribeTable still failing after 3 attempts") as e:
        cl.describe_table()
    assert e.value.exit_code == 75 and len(srv.requests) == 3
    assert cl.stats.snapshot()["retries"].get("connection") == 2
    cl.close()


def test_a_describe_table_answered_by_a_502_page_is_exit_75() -> None:
    from ddbmigrate.errors import RetriesExhaustedError

    page = b"<html>Bad Gateway</html>"
    srv = ScriptedServer(lambda c, req, n: c.sendall(
        f"HTTP/1.1 502 Bad Gateway\r\nContent-Length: {len(page)}\r\n\r\n".encode() + page) or True)
    cl = client(f"http://127.0.0.1:{srv.port}", attempts=2)
    with pytest.raises(RetriesExhaustedError, match="HTTP 502") as e:
        cl.describe_table()
    assert e.value.exit_code == 75
    cl.close()


@pytest.mark.parametrize("proxy, said", [("garbage:::", "not a proxy URL"), ("http://127.0.0.1:notaport", "not a proxy URL"),
                                         ("socks5://127.0.0.1:1080", "the socks5 scheme is not supported")])
def test_a_proxy_setting_that_is_no_proxy_url_is_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, proxy: str, said: str) -> None:
    """Before: "internal error: LocationParseError" or "ProxySchemeUnknown", exit 1."""
    from ddbmigrate.errors import UsageError

    monkeypatch.setenv("HTTP_PROXY", proxy)
    with pytest.raises(UsageError, match=f"HTTP_PROXY: {said}") as e:
        client("http://127.0.0.1:9")
    assert e.value.exit_code == 2 and "127.0.0.1:1080" not in e.value.message
