"""The control plane (DescribeTable, CreateTable, ... through botocore) is bounded as the data
path is: an answer larger than the cap is refused before it is read, a server that drips its
answer is abandoned at the deadline, and either ends, after the retries, in one line and exit 75.

Before, botocore read such an answer whole: a 1 GB DescribeTable answer was held in memory, and
a byte a second held the job for as long as the server liked."""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path
from typing import List

import pytest

from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.aws.control_plane import control_error
from ddbmigrate.config import RetryPolicy, TableRef
from ddbmigrate.errors import RetriesExhaustedError
from ddbmigrate.schema.read import settings_client
from test_client_hardening import client, clean_aws_env, target  # noqa: F401  (an autouse fixture)
from test_transport import ScriptedServer, drip_reply, ok

DESC = b'{"Table":{"TableName":"tbl1","TableStatus":"ACTIVE","ItemCount":0}}'
GIB = 1 << 30


def huge_then_nothing(c: socket.socket, req: bytes, n: int) -> bool:
    """Announces a gigabyte and sends 64 KB of it, then keeps the connection open."""
    try:
        c.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {GIB}\r\n\r\n".encode() + b"x" * 65536)
        time.sleep(2)
    except OSError:
        pass
    return False


def endless(c: socket.socket, req: bytes, n: int) -> bool:
    """A body without a length that never ends: megabyte after megabyte until the reader leaves."""
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        chunk = b"x" * (1 << 20)
        for _ in range(4096):
            c.sendall(chunk)
    except OSError:
        pass
    return False


@pytest.mark.parametrize("stack", ["builtin", "urllib3"])
def test_a_description_announced_over_the_cap_is_refused_unread_and_retried(
        stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDBMIGRATE_HTTP_CLIENT", stack)
    srv = ScriptedServer(huge_then_nothing)
    cl = client(f"http://127.0.0.1:{srv.port}", attempts=3)
    with pytest.raises(RetriesExhaustedError, match="DescribeTable: response refused: a Content-Length of "
                                                    "1,073,741,824 bytes is over the") as e:
        cl.describe_table()
    assert e.value.exit_code == 75
    assert len(srv.requests) == 3 and all(target(r) == "DescribeTable" for r in srv.requests)
    assert cl.stats.snapshot()["retries"].get("connection") == 2
    cl.close()
    srv.close()


def test_a_description_that_never_ends_is_cut_off_at_the_cap() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    srv = ScriptedServer(endless)
    cl = client(f"http://127.0.0.1:{srv.port}", attempts=1)
    with pytest.raises(RetriesExhaustedError, match="response refused: a body without a length") as e:
        cl.describe_table()
    assert e.value.exit_code == 75
    # Held at most about the cap (64 MiB, then joined once): never the 4 GiB the server offers.
    grew_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grew_kb < 3 * 64 * 1024, grew_kb
    cl.close()
    srv.close()


@pytest.mark.parametrize("stack", ["builtin", "urllib3"])
def test_a_description_dripped_a_byte_at_a_time_is_abandoned_at_the_deadline(
        stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each byte comes within any read timeout (0.2 s); the whole answer would take 20 s a try."""
    monkeypatch.setenv("DDBMIGRATE_HTTP_CLIENT", stack)
    srv = ScriptedServer(drip_reply)
    cl = DynamoClient(TableRef("tbl1", region="us-east-1", endpoint_url=f"http://127.0.0.1:{srv.port}"),
                      retry=RetryPolicy(max_attempts=2), sleep=lambda s: None, timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(RetriesExhaustedError, match="DescribeTable: .*not complete within (the )?1 s") as e:
        cl.describe_table()
    assert e.value.exit_code == 75 and len(srv.requests) == 2
    assert time.monotonic() - t0 < 10  # two attempts of 1 s and a backoff, never two of 20 s
    cl.close()
    srv.close()


def test_an_answer_within_bounds_goes_through_the_bounded_stack_to_botocore() -> None:
    """The same signed request reaches the server, and botocore parses the answer as ever."""
    srv = ScriptedServer(lambda c, req, n: c.sendall(ok(DESC, "x-amzn-RequestId: r1\r\n")) or True)
    cl = client(f"http://127.0.0.1:{srv.port}")
    assert cl.describe_table()["TableStatus"] == "ACTIVE"
    req = srv.requests[0]
    assert b"Authorization: AWS4-HMAC-SHA256 Credential=AKIDSTATICKEY0000001/" in req
    assert b"X-Amz-Target: DynamoDB_20120810.DescribeTable" in req and req.endswith(b'{"TableName": "tbl1"}')
    # The settings calls of `schema export` go the same way.
    seen: List[bytes] = []
    srv2 = ScriptedServer(lambda c, req, n: seen.append(req) or c.sendall(
        ok(b'{"TimeToLiveDescription":{"TimeToLiveStatus":"DISABLED"}}')) or True)
    cl2 = client(f"http://127.0.0.1:{srv2.port}")
    got = settings_client(cl2).describe_time_to_live(TableName="tbl1")
    assert got["TimeToLiveDescription"] == {"TimeToLiveStatus": "DISABLED"} and len(seen) == 1
    for c, s in ((cl, srv), (cl2, srv2)):
        c.close()
        s.close()


def test_a_refused_port_is_still_said_as_unreachable_with_its_reason() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    cl = client(f"http://127.0.0.1:{port}", attempts=2)
    with pytest.raises(RetriesExhaustedError, match=r"cannot reach DynamoDB: Could not connect to the endpoint URL: "
                                                    rf"\"http://127.0.0.1:{port}/\" \(cannot connect to") as e:
        cl.describe_table()
    assert e.value.exit_code == 75
    cl.close()


def test_a_botocore_error_no_step_caught_is_one_line_with_its_exit_code(tmp_path: Path) -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    err = control_error(EndpointConnectionError(endpoint_url="http://x:1/"))
    assert err.exit_code == 75
    assert err.one_line().startswith('cannot reach DynamoDB: Could not connect to the endpoint URL: "http://x:1/"')
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "CreateTable")
    assert control_error(denied).exit_code == 1 and "AccessDeniedException" in control_error(denied).one_line()
