"""The control plane's calls (DescribeTable, CreateTable, UpdateTable, ...) on bounded HTTP.

botocore serialises, signs, retries and parses these calls well, but its HTTP stack reads an
answer whole with only a per-read timeout: a broken or hostile endpoint could send a 1 GB
DescribeTable answer (held in memory) or drip one byte a second (a job held for hours before it
starts). The data path's HTTP stacks bound both (``transport.MAX_BODY``, a total deadline per
exchange), so the control-plane client sends through them too: a ``before-send`` handler hands
botocore's signed request to the same stack and gives botocore the answer back. botocore's
retries, parsers and error classes stay as they are; a refused answer is one of its transient
HTTP errors (retried), then :func:`control_error` makes it one line and exit 75.

Only what that stack can send is taken over: a POST with a bytes body to the client's own URL
(every DynamoDB and Streams control call). Anything else is left to botocore.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterator, Optional

import urllib3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)

from ..errors import AwsError, DdbMigrateError, RetriesExhaustedError, UsageError
from ..logs import redact
from .errors import RETRIABLE_CODES, THROTTLE_CODES, error_code
from .transport import ConnectFailed, ConnectionLost, InvalidHeader, TransportError

log = logging.getLogger("ddbmigrate.client")



class AnswerRefused(HTTPClientError):  # type: ignore[misc]
    """The bounded stack refused the answer or could not finish the exchange: over the size cap,
    past the deadline, badly framed. Transient for botocore's retries."""

    fmt = "{error}"


class CannotConnect(EndpointConnectionError):  # type: ignore[misc]
    """botocore's EndpointConnectionError with the reason kept (a refused port, a certificate)."""

    fmt = 'Could not connect to the endpoint URL: "{endpoint_url}" ({error})'


# An exchange: (signed headers, body) -> an object with .status, .headers and .data.
Exchange = Callable[[Dict[str, str], bytes], Any]

_CONNECT_ERRORS = (ConnectFailed, urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                   urllib3.exceptions.ProxyError)
# Raised by urllib3 (or by the socket under it) once a request is on its way.
_EXCHANGE_ERRORS = (TransportError, urllib3.exceptions.HTTPError, OSError, TimeoutError)


class _Body:
    """What botocore reads an answer's body from (``AWSResponse.content`` joins ``stream()``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self.data


def _brief(e: BaseException) -> str:
    s = " ".join(redact(str(e)).split()) or e.__class__.__name__
    return s if len(s) < 200 else s[:197] + "..."


def send_bounded(client: Any, url: str, exchange: Exchange) -> None:
    """Make the botocore ``client`` send its requests to ``url`` through ``exchange``."""

    def before_send(request: Any, event_name: str = "", **_: Any) -> Optional[AWSResponse]:
        body = request.body
        if request.method != "POST" or request.url != url or not isinstance(body, (bytes, bytearray)):
            return None
        op = event_name.rsplit(".", 1)[-1] or "the call"
        headers = {k: v.decode("latin-1") if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
        try:
            r = exchange(headers, bytes(body))
        except InvalidHeader:
            raise UsageError(f"refusing to send {op}: a header value contains a line break, a NUL or "
                             "non-Latin-1 text (check the session token the credential source returns)") from None
        except ConnectionLost as e:
            raise ConnectionClosedError(endpoint_url=url, error=e) from None
        except _CONNECT_ERRORS as e:
            raise CannotConnect(endpoint_url=url, error=_brief(e)) from None
        except urllib3.exceptions.ReadTimeoutError as e:
            raise ReadTimeoutError(endpoint_url=url, error=e) from None
        except _EXCHANGE_ERRORS as e:
            raise AnswerRefused(error=f"{op}: {_brief(e)}") from None
        return AWSResponse(request.url, r.status, dict(r.headers.items()), _Body(bytes(r.data)))

    client.meta.events.register("before-send", before_send)


def is_unreachable(e: BaseException) -> bool:
    """An endpoint that could not be reached or answered nothing (botocore's or ours)."""
    return isinstance(e, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError)) \
        or e.__class__.__name__ == "ProxyConnectionError"


def control_error(e: BaseException, table: Optional[str] = None) -> DdbMigrateError:
    """A botocore error of a control-plane call, once botocore's retries are spent, as one line
    and the exit code it deserves: 75 for what a later run may not meet, 2 for missing
    credentials, 1 otherwise."""
    on = f" on {table}" if table else ""
    code = error_code(e)
    if code in THROTTLE_CODES or code in RETRIABLE_CODES:
        return RetriesExhaustedError(f"{code}{on}: {_brief(e)}", table=table, code=code)
    if isinstance(e, AnswerRefused):
        return RetriesExhaustedError(f"{_brief(e)} (after every attempt)", table=table, code="BadResponse")
    if is_unreachable(e):
        return RetriesExhaustedError(f"cannot reach DynamoDB: {_brief(e)}", table=table, code="connection")
    if code is not None and code.isdigit() and (code.startswith("5") or code == "429"):
        # An answer with no DynamoDB error in it (a load balancer's 502, a proxy's 429) after
        # botocore's retries: the server's trouble, which a later run may not have (exit 75).
        return RetriesExhaustedError(f"HTTP {code}{on}: {_brief(e)}", table=table, code=f"HTTP{code}")
    if e.__class__.__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        return UsageError(f"no usable AWS credentials: {_brief(e)}", table=table)
    return AwsError(_brief(e), table=table, code=code)


def is_botocore_error(e: BaseException) -> bool:
    return isinstance(e, (BotoCoreError, ClientError))
