"""DynamoDB clients: botocore for what it does well, a thin JSON path for the hot calls.

Why a thin path: botocore walks every AttributeValue through its shape model on both parse and
serialise, which costs hundreds of microseconds of CPU per 1 KB item. The hot operations (Scan,
Query, BatchWriteItem, PutItem, DeleteItem, GetItem, BatchGetItem, GetRecords) instead send an
orjson-encoded body, signed by ``signing.FastSigV4`` (byte-identical to botocore's SigV4) with
credentials from botocore's own chain (profiles, SSO, env, IMDS, processes, assumed roles)
cached by ``credentials.CredentialCache``, over ``transport.Transport`` (urllib3 when a proxy
applies). Responses are checked against DynamoDB's x-amz-crc32 header and parsed with orjson:
items stay wire-format dicts.

Control-plane calls (DescribeTable, CreateTable, ...) use a normal botocore client configured
with retry mode "standard" and explicit max attempts.

Invariants: every retry is explicit and counted by cause (throttle, 5xx, connection,
unprocessed, credentials); when attempts run out we raise RetriesExhaustedError, never drop.
A request whose answer was lost (connection error after sending, 5xx) may have been applied:
it is sent again only when that is harmless - reads, full-image writes, and conditional puts
whose ConditionalCheckFailed is then reconciled by the caller (``retried``); a relative update
(``UpdateItem``, ``TransactWriteItems`` without a ``ClientRequestToken``) is not resent blindly.
Every error text taken from a response passes through :func:`ddbmigrate.logs.redact` before
it is truncated or stored: an endpoint that echoes request headers cannot leak a token.
"""

from __future__ import annotations

import logging
import os
import random
import re
import ssl
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.session
import orjson
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import InvalidRegionError
from botocore.parsers import ResponseParserError
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    DeferredRefreshableCredentials,
)

from ..config import RetryPolicy, TableRef, check_endpoint
from ..logs import redact
from ..errors import (
    AwsError,
    ConditionalCheckFailed,
    RetriesExhaustedError,
    TableNotFoundError,
    UsageError,
)
from .capacity import CAPACITY_MODEL_HEADER, CAPACITY_MODEL_MARK, is_dynamodb_host
from .control_plane import AnswerRefused, control_error, is_unreachable, send_bounded
from .credentials import CredentialCache
from .errors import RETRIABLE_CODES, THROTTLE_CODES, error_code, parse_error_body
from .signing import FastSigV4
from .transport import MAX_BODY, BadResponse, InvalidHeader, Transport, host_header, ssl_context_for, too_large

log = logging.getLogger("ddbmigrate.client")

# A write that raced an ongoing transaction on the same item: retrying is what AWS advises.
CONFLICT_CODES = frozenset(("TransactionConflictException",))
# Credentials refused although they may be fine by their own clock: refresh, then retry once.
CREDENTIAL_CODES = frozenset(("ExpiredTokenException", "UnrecognizedClientException"))
# Operations whose second application can change the outcome: never resent after a response that
# may have been lost (every other hot-path call is a read or a full-image write, see module doc).
NON_IDEMPOTENT_OPS = frozenset(("UpdateItem", "TransactWriteItems", "ExecuteStatement",
                                "BatchExecuteStatement", "ExecuteTransaction"))

class _Read:
    """A urllib3 response read whole within a deadline (the proxy / escape-hatch path).

    urllib3's read timeout is per socket read, so a server dripping a byte a second would hold a
    worker for as long as it likes; the body is read in pieces as they come and the exchange is
    abandoned (connection closed, a retriable timeout) once the deadline has passed. A body
    over :data:`transport.MAX_BODY` is refused as on the builtin path (announced, or as it grows;
    urllib3 decodes a compressed body, so this also bounds what it inflates to).
    """

    __slots__ = ("status", "headers", "data")

    def __init__(self, r: Any, url: str, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        parts: List[bytes] = []
        have = 0
        try:
            cl = str(r.headers.get("content-length") or "").strip()
            if cl.isdigit() and int(cl) > MAX_BODY:
                raise too_large(f"a Content-Length of {int(cl):,} bytes")
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url}: response not complete within {deadline_s:g} s")
                b = r.read1(65536) if hasattr(r, "read1") else r.read(65536)
                if not b:
                    break
                parts.append(b)
                have += len(b)
                if have > MAX_BODY:
                    raise too_large(f"a body of at least {have:,} bytes")
        except BaseException:
            r.close()
            raise
        r.release_conn()
        self.status, self.headers, self.data = r.status, r.headers, b"".join(parts)


_CONN_ERRORS = (
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
    urllib3.exceptions.ReadTimeoutError,
    urllib3.exceptions.SSLError,
    ConnectionError,
    OSError,
)


T = TypeVar("T")


def load_object(data: bytes, op: str) -> Dict[str, Any]:
    """A 200 answer's JSON object; anything else (HTML from a captive portal, a gzip body, JSON
    cut short, an array) is a :class:`BadResponse`, which the retry loop retries."""
    try:
        d = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        # orjson's message gives the position, not the text: no item data reaches a log.
        raise BadResponse(f"the {op} answer (HTTP 200, {len(data):,} bytes) is not JSON: {e}") from None
    if not isinstance(d, dict):
        raise BadResponse(f"the {op} answer (HTTP 200) is a JSON {type(d).__name__}, not an object")
    return d


# The capacity model's header (describe_table): a plain decimal, no exponent, sign or underscore.
_UNITS = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,17})?")


class RetryStats:
    """Thread-safe counters of retries by cause, plus consumed capacity."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries: Counter[str] = Counter()
        self.consumed_read = 0.0
        self.consumed_write = 0.0
        self.requests = 0

    def retry(self, cause: str) -> None:
        with self._lock:
            self.retries[cause] += 1

    def consumed(self, read: float = 0.0, write: float = 0.0) -> None:
        with self._lock:
            self.consumed_read += read
            self.consumed_write += write
            self.requests += 1

    @property
    def throttles(self) -> int:
        return self.retries.get("throttle", 0)

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "retries": dict(self.retries),
                "consumed_read_units": round(self.consumed_read, 3),
                "consumed_write_units": round(self.consumed_write, 3),
                "requests": self.requests,
            }


@dataclass
class Backoff:
    """Capped exponential back-off with full jitter; time and randomness are injectable."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        cap = min(self.policy.max_delay, self.policy.base_delay * (2 ** attempt))
        return float(cap * self.rand())

    def wait(self, attempt: int) -> float:
        d = self.delay(attempt)
        if d > 0:
            self.sleep(d)
        return d


class ServiceError(Exception):
    """One failed HTTP exchange, classified (internal; callers see ddbmigrate errors)."""

    def __init__(self, code: str, message: str, status: int, item: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.item = item  # the existing item of a failed condition (ReturnValuesOnConditionCheckFailure)
        self.credentials: Any = None  # the frozen credentials the refused request was signed with

    @property
    def cause(self) -> Optional[str]:
        if self.code in THROTTLE_CODES:
            return "throttle"
        if self.code in CONFLICT_CODES:
            return "conflict"
        if self.status >= 500 or self.code in RETRIABLE_CODES:
            return "5xx"
        if self.code == "CRC32Mismatch":
            return "connection"
        return None


_loader_lock = threading.Lock()
_shared_loader: Any = None


def _share_models(session: boto3.Session) -> None:
    """One botocore data loader per process: every client after the first finds the service
    models already parsed (a client costs ~45 ms of CPU otherwise, and a job makes several)."""
    global _shared_loader
    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = session._session.get_component("data_loader")
        else:
            session._session.register_component("data_loader", _shared_loader)


def make_session(ref: TableRef) -> boto3.Session:
    """A boto3 session from the standard chain, optionally assuming ``ref.role_arn``."""
    try:
        session = boto3.Session(profile_name=ref.profile, region_name=ref.region)
    except Exception as e:  # botocore.exceptions.ProfileNotFound and friends
        import os

        name = ref.profile or os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
        where = "" if ref.profile or not name else " (from AWS_PROFILE)"
        raise UsageError(f"cannot load AWS profile {name!r}{where}: {e}") from None
    _share_models(session)
    if ref.role_arn:
        base = session._session  # botocore session, for its credential machinery
        extra: Dict[str, Any] = {"RoleSessionName": ref.role_session_name}
        if ref.external_id:
            extra["ExternalId"] = ref.external_id
        try:
            source_credentials = base.get_credentials()
        except Exception as e:  # the chain under the role: a credential_process, a source_profile, ...
            raise _credentials_error(session, ref, e) from None
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=base.create_client,
            source_credentials=source_credentials,
            role_arn=ref.role_arn,
            extra_args=extra,
        )
        creds = DeferredRefreshableCredentials(method="assume-role", refresh_using=fetcher.fetch_credentials)
        bs = botocore.session.Session(profile=ref.profile)
        bs._credentials = creds  # the documented way botocore sessions carry explicit creds
        session = boto3.Session(botocore_session=bs, region_name=ref.region or session.region_name)
    return session


def _region_origin(ref: TableRef, region: str) -> str:
    """Where the region botocore was given comes from, for a message about it: a blank or
    misspelt AWS_DEFAULT_REGION is otherwise hard to find."""
    if ref.region:
        return "the region option"
    # The variable holding that very region: botocore reads AWS_DEFAULT_REGION, not AWS_REGION,
    # so a set AWS_REGION is not where a bad one came from (a profile's may be).
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        if os.environ.get(var) == region:
            return var
    profile = ref.profile or os.environ.get("AWS_PROFILE") or "default"
    return f"the {profile!r} profile's config"


class DynamoClient:
    """One per side, shared by all worker threads."""

    def __init__(
        self,
        ref: TableRef,
        *,
        pool_size: int = 16,
        retry: Optional[RetryPolicy] = None,
        stats: Optional[RetryStats] = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        timeout: float = 30.0,
        service: str = "dynamodb",
    ) -> None:
        """``service`` names the botocore service of the fast path (``dynamodbstreams`` for the
        Streams API); its signing name and JSON target prefix come from botocore's model."""
        self.ref = ref
        # A library caller's (or a plan's) malformed endpoint: a usage error, not botocore's ValueError.
        check_endpoint(ref.endpoint_url, "endpoint URL")
        self.retry_policy = retry or RetryPolicy()
        self.stats = stats or RetryStats()
        self.backoff = Backoff(self.retry_policy, sleep=sleep, rand=rand)
        self.session = make_session(ref)
        region = self.session.region_name or "us-east-1"
        # The credential chain is resolved here, on its own, not inside session.client() (which
        # resolves it too, then caches it): a failing credential_process, a missing source_profile,
        # an unreadable SSO cache is the chain's fault, said as such, not an endpoint's.
        try:
            creds = self.session.get_credentials()
        except Exception as e:  # BotoCoreError (CredentialRetrievalError, InvalidConfigError,
            # ProfileNotFound, PartialCredentialsError, ...), OSError (a program that is not
            # there), ValueError (a process printing no JSON)
            raise _credentials_error(self.session, ref, e) from None
        cfg = Config(
            retries={"mode": "standard", "total_max_attempts": self.retry_policy.max_attempts},
            max_pool_connections=max(10, pool_size),
            # A wrong or unreachable endpoint is reported within seconds, not after minutes.
            connect_timeout=5,
            read_timeout=timeout,
        )
        try:
            self.control = self.session.client(
                service, region_name=region, endpoint_url=ref.endpoint_url, config=cfg
            )
        except InvalidRegionError as e:  # (a ValueError too: told apart first)
            raise UsageError(f"invalid region {region!r} (from {_region_origin(ref, region)}): {e}") from None
        except ValueError as e:  # an endpoint from AWS_ENDPOINT_URL(_DYNAMODB) or the profile
            raise UsageError(f"invalid {service} endpoint: {e} (expected http(s)://host[:port])") from None
        self.control.meta.events.register("needs-retry", self._say_unreachable)
        model = self.control.meta.service_model
        self._signing_name = model.signing_name or "dynamodb"
        self._target_prefix = str(model.metadata.get("targetPrefix") or "DynamoDB_20120810") + "."
        self.region = self.control.meta.region_name
        self.endpoint = self.control.meta.endpoint_url.rstrip("/")
        check_endpoint(self.endpoint, f"{service} endpoint")  # one botocore took from the environment, too
        if creds is None:
            raise UsageError(
                f"no AWS credentials found for {ref.describe()}: set a profile, environment "
                "variables or an instance role"
            )
        self._credentials = CredentialCache(creds, reload=lambda: make_session(ref).get_credentials())
        try:
            self._credentials.get_frozen_credentials()  # registers the values for redaction, fails early
        except Exception as e:  # a failing credential_process, SSO token, role assumption
            raise _credentials_error(self.session, ref, e) from None
        # The control plane signs with the same cache, so credentials refreshed after a refusal
        # (below) serve both paths; botocore's signer only calls get_frozen_credentials().
        try:
            self.control._request_signer._credentials = self._credentials
            self.control.meta.events.register("needs-retry", self._refresh_refused)
        except AttributeError:  # another botocore: its own credentials, its own retries
            pass
        # The CA bundle botocore uses (AWS_CA_BUNDLE, the profile's ca_bundle): the hot path
        # must trust exactly what the control plane trusts.
        ca_bundle = self.session._session.get_config_variable("ca_bundle") or None
        # Loaded now, whichever HTTP stack follows: a missing or unreadable bundle is a usage error
        # naming where it was set, not an internal error or a connection retried ten times.
        tls_ctx = _tls_context(ca_bundle, self.session, ref) if self.endpoint.startswith("https") else None
        self._transport: Optional[Transport] = None
        self._http: Any = None
        proxy = _proxy_url(self.endpoint)
        if proxy:
            # The thin transport speaks no proxy protocol; urllib3 does (slower, still correct),
            # including CONNECT for https endpoints. Credentials in the proxy URL become
            # Proxy-Authorization (urllib3 does not take them from the URL by itself).
            self._http = urllib3.ProxyManager(_strip_userinfo(proxy), maxsize=max(4, pool_size), block=False,
                                              retries=False, proxy_headers=_proxy_headers(proxy),
                                              ca_certs=ca_bundle,
                                              timeout=urllib3.Timeout(connect=10.0, read=timeout))
        elif _http_client() == "urllib3":
            # The escape hatch (DDBMIGRATE_HTTP_CLIENT=urllib3): a maintained HTTP stack instead of
            # transport.py, for a middlebox ours cannot talk to; ~35 % more client CPU per item.
            self._http = urllib3.PoolManager(maxsize=max(4, pool_size), block=False, retries=False,
                                             ca_certs=ca_bundle, timeout=urllib3.Timeout(connect=10.0, read=timeout))
        else:
            self._transport = Transport(self.endpoint + "/", read_timeout=timeout, max_idle=max(4, pool_size),
                                        ssl_context=tls_ctx, ca_bundle=ca_bundle)
        self._url = self.endpoint + "/"
        self._deadline_s = timeout  # no exchange outlives it, on either HTTP stack
        # The control plane's answers are bounded as the data path's are (see control_plane.py).
        self.bound(self.control)
        self._fast_signer: Optional[FastSigV4] = None
        if urlsplit(self._url).path == "/":
            # Every stack sends Host as host[:port] (port only when not the scheme's default).
            self._fast_signer = FastSigV4(self._credentials, self.region, self._signing_name,
                                          host_header(self._url))
        self._lock = threading.Lock()
        self._signer: Optional[SigV4Auth] = None
        self._signer_creds: Any = None

    # ------------------------------------------------------------------ raw exchange

    def _sign(self, op: str, body: bytes, frozen: Any) -> Dict[str, str]:
        if self._fast_signer is not None:
            return self._fast_signer.sign(self._target_prefix + op, body, "application/x-amz-json-1.0",
                                          creds=frozen)
        signer = self._signer
        if signer is None or self._signer_creds is not frozen:
            signer = SigV4Auth(frozen, self._signing_name, self.region)
            self._signer, self._signer_creds = signer, frozen
        req = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": self._target_prefix + op,
            },
        )
        signer.add_auth(req)
        return dict(req.headers.items())

    def _exchange(self, headers: Dict[str, str], body: bytes) -> Any:
        """One POST of a signed request on this client's HTTP stack: the answer (``.status``,
        ``.headers``, ``.data``) held whole, within the size cap and the deadline."""
        if self._transport is not None:
            return self._transport.post(headers, body)
        return _Read(self._http.urlopen("POST", self._url, body=body, headers=headers, preload_content=False,
                                        retries=False, redirect=False), self._url, self._deadline_s)

    def bound(self, control: Any) -> Any:
        """Make a botocore client of this endpoint send through this client's bounded HTTP stack
        (answers capped in size and time, see control_plane.py); returns it."""
        send_bounded(control, self._url, self._exchange)
        return control

    def request_once(self, op: str, body: bytes) -> Dict[str, Any]:
        """One signed POST, parsed. Raises ServiceError or a connection error."""
        return load_object(self.request_raw_once(op, body), op)

    def request_raw_once(self, op: str, body: bytes) -> bytes:
        """One signed POST; the raw 200 body. Raises ServiceError or a connection error."""
        frozen = self._credentials.get_frozen_credentials()
        headers = self._sign(op, body, frozen)
        try:
            r = self._exchange(headers, body)
        except (InvalidHeader, ValueError) as e:
            if not isinstance(e, InvalidHeader) and "header" not in str(e).lower():
                raise
            # A CR/LF in a header value (http.client refuses it too, with a ValueError): a credential
            # source returned something that is no token. Never sent, never retried.
            raise UsageError(f"refusing to send {op}: a header value contains a line break, a NUL or "
                             "non-Latin-1 text (check the session token the credential source returns)",
                             table=self.ref.table) from None
        data = r.data
        crc = r.headers.get("x-amz-crc32")
        if crc is not None and (not str(crc).strip().isdigit() or int(crc) != (zlib.crc32(data) & 0xFFFFFFFF)):
            raise ServiceError("CRC32Mismatch", "response body failed its CRC32 check", 0)
        if r.status == 200:
            return bytes(data)
        code, msg = parse_error_body(data, r.status)
        item = None
        if code == "ConditionalCheckFailedException":
            try:
                item = orjson.loads(data).get("Item")
            except (orjson.JSONDecodeError, AttributeError):
                item = None
        err = ServiceError(code, msg, r.status, item)
        err.credentials = frozen
        raise err

    def call(self, op: str, payload: Any, *, table: Optional[str] = None, limiter: Any = None,
             resendable: bool = False) -> Dict[str, Any]:
        """A data-plane call with explicit, counted, capped and jittered retries.

        ``resendable``: the caller vouches that a second application is harmless although ``op``
        may not be in general (an UpdateItem conditional on the whole image it was computed from:
        once applied, its condition fails, and the caller reads what is there)."""
        return self.call_parsed(op, payload, lambda data: load_object(data, op), table=table, limiter=limiter,
                                resendable=resendable)

    def call_raw(self, op: str, payload: Any, *, table: Optional[str] = None, limiter: Any = None,
                 resendable: bool = False) -> bytes:
        """Like :meth:`call`, but returns the response body unparsed and unchecked."""
        return self.call_parsed(op, payload, bytes, table=table, limiter=limiter, resendable=resendable)

    def call_parsed(self, op: str, payload: Any, parse: Callable[[bytes], T], *, table: Optional[str] = None,
                    limiter: Any = None, resendable: bool = False) -> T:
        """Like :meth:`call`, with the 200 body handed to ``parse`` (e.g. a lazy parser) inside
        the retry loop: a :class:`BadResponse` it raises, for a body it cannot read or whose shape
        is wrong, is retried and counted as a connection error, as a body cut short would be."""
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        attempt = 0
        # An earlier attempt may have been applied only if its answer never came (a connection
        # error) or came as a server error; a throttled one was certainly not.
        maybe_applied = False
        refreshed = False
        while True:
            try:
                return parse(self.request_raw_once(op, body))
            except ServiceError as e:
                cause = e.cause
                if cause is None and e.code in CREDENTIAL_CODES and e.credentials is not None:
                    if refreshed or not self._credentials.refresh(e.credentials):
                        raise self._refused(e, table, refreshed) from None
                    refreshed = True
                    cause = "credentials"
                    log.info("%s refused the credentials (%s): retrying with fresh ones", self.endpoint, e.code)
                if cause is None:
                    err = self._to_error(e, table)
                    if isinstance(err, ConditionalCheckFailed):
                        err.retried = maybe_applied
                    raise err from None
                last: Exception = e
            except _CONN_ERRORS as e:
                cause, last = "connection", e
            attempt += 1
            if cause in ("connection", "5xx") and not (resendable or _resendable(op, body)):
                raise AwsError(
                    f"{op} failed ({_brief(last)}) and may have been applied; it is not sent again because "
                    "applying it twice could change the result", table=table or self.ref.table,
                    code=getattr(last, "code", "connection"))
            maybe_applied = maybe_applied or cause in ("connection", "5xx")
            if cause == "connection" and 2 <= attempt < self.retry_policy.max_attempts:
                # One line per attempt once it is not a passing blip: silence looks like a hang.
                log.warning("%s %s (%s); retrying, attempt %d of %d",
                            "bad answer from" if isinstance(last, BadResponse) else "cannot reach", self.endpoint,
                            _brief(last), attempt + 1, self.retry_policy.max_attempts)
            if attempt >= self.retry_policy.max_attempts:
                raise RetriesExhaustedError(
                    f"{op} still failing after {attempt} attempts: {_brief(last)}",
                    table=table or self.ref.table,
                    code=getattr(last, "code", type(last).__name__),
                )
            self.stats.retry(cause)
            log.debug("%s retry %d (%s): %s", op, attempt, cause, _brief(last))
            if cause == "throttle" and limiter is not None:
                limiter.throttled()
            if cause != "credentials":  # fresh credentials need no back-off
                self.backoff.wait(attempt)
            if cause == "throttle" and limiter is not None:
                limiter.again()  # the re-sent call waits for the rate as the first did

    def _refused(self, e: ServiceError, table: Optional[str], refreshed: bool) -> AwsError:
        why = ("refused again after loading fresh credentials" if refreshed
               else "and the credential chain has nothing fresher to offer")
        return AwsError(f"{e.code}: {e.message or 'credentials refused'} ({why})",
                        table=table or self.ref.table, code=e.code, status=e.status,
                        hint="renew the credentials (aws sso login, a new session token, or the profile's source)")

    def _refresh_refused(self, response: Any = None, request_dict: Any = None, **_: Any) -> Optional[int]:
        """botocore's retry hook (control plane): credentials refused before their stated expiry
        are loaded again and the call retried once, as on the data path."""
        try:
            code = response[1]["Error"]["Code"]
            context = request_dict["context"]
        except (TypeError, KeyError, IndexError):
            return None
        if code not in CREDENTIAL_CODES or context.get("ddbmigrate_refreshed"):
            return None
        context["ddbmigrate_refreshed"] = True
        if not self._credentials.refresh(self._credentials.get_frozen_credentials()):
            return None
        self.stats.retry("credentials")
        log.info("%s refused the credentials (%s): retrying with fresh ones", self.endpoint, code)
        return 0

    def _say_unreachable(self, attempts: int = 0, caught_exception: Any = None, **_: Any) -> None:
        """botocore's retry hook (control plane): say so while an endpoint cannot be reached."""
        if caught_exception is None or attempts >= self.retry_policy.max_attempts:
            return
        if is_unreachable(caught_exception):
            log.warning("cannot reach %s (%s); retrying, attempt %d of %d", self.endpoint,
                        _brief(caught_exception), attempts + 1, self.retry_policy.max_attempts)
        elif isinstance(caught_exception, AnswerRefused):
            self.stats.retry("connection")
            log.warning("%s; retrying, attempt %d of %d", _brief(caught_exception), attempts + 1,
                        self.retry_policy.max_attempts)

    def _to_error(self, e: ServiceError, table: Optional[str]) -> Exception:
        t = table or self.ref.table
        if e.code == "ConditionalCheckFailedException":
            return ConditionalCheckFailed(e.message or "condition failed", table=t, code=e.code, status=e.status,
                                          item=e.item)
        if e.code == "ResourceNotFoundException":
            return TableNotFoundError(
                f"table {t!r} not found at {self.endpoint} ({self.region})", table=t, code=e.code
            )
        return AwsError(e.message or e.code, table=t, code=e.code, status=e.status)

    # ------------------------------------------------------------------ control plane

    def describe_table(self, table: Optional[str] = None) -> Dict[str, Any]:
        name = table or self.ref.table
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self.control.describe_table(TableName=name)
                got = resp.get("Table") if isinstance(resp, dict) else None
                if not isinstance(got, dict) or not got.get("TableName"):
                    raise BadResponse("the answer holds no table description")
                desc = dict(got)
                break
            except self.control.exceptions.ResourceNotFoundException:
                raise TableNotFoundError(
                    f"table {name!r} does not exist at {self.endpoint} ({self.region})", table=name,
                    code="ResourceNotFoundException",
                ) from None
            except (BadResponse, ResponseParserError, UnicodeDecodeError) as e:
                # An answer botocore cannot read (HTML, cut short, gzip it was not asked for), or
                # one that is no description: retried as the data path retries one, then exit 75
                # naming the operation (it was a KeyError: 'Table', exit 1).
                if attempt >= self.retry_policy.max_attempts:
                    raise RetriesExhaustedError(f"DescribeTable still failing after {attempt} attempts: {_brief(e)}",
                                                table=name, code="BadResponse") from None
                self.stats.retry("connection")
                self.backoff.wait(attempt)
            except Exception as e:
                raise control_error(e, name) from None
        model = ((resp.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}).get(CAPACITY_MODEL_HEADER)
        if model is not None:
            # The fault proxy's capacity model: what it enforces (botocore keeps no field it does
            # not know, so it comes as a header). Never from DynamoDB's own endpoints; a plain
            # decimal of at least 1 unit (a table's least), at most a billion.
            units = float(model) if _UNITS.fullmatch(model.strip()) else 0.0
            if 1.0 <= units <= 1e9 and not is_dynamodb_host(self.endpoint):
                desc[CAPACITY_MODEL_MARK] = {"WriteCapacityUnits": units}
        return desc

    def table_exists(self, table: Optional[str] = None) -> bool:
        try:
            self.describe_table(table)
            return True
        except TableNotFoundError:
            return False

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._http is not None:
            self._http.clear()


def _http_client() -> str:
    import os

    name = os.environ.get("DDBMIGRATE_HTTP_CLIENT", "builtin").strip().lower() or "builtin"
    if name not in ("builtin", "urllib3"):
        raise UsageError(f"DDBMIGRATE_HTTP_CLIENT must be builtin or urllib3, not {name!r}")
    return name


def _resendable(op: str, body: bytes) -> bool:
    """May ``op`` be sent again when its first attempt may have been applied? See the module doc."""
    if op == "TransactWriteItems":
        return b'"ClientRequestToken"' in body  # DynamoDB makes it idempotent for 10 minutes
    return op not in NON_IDEMPOTENT_OPS


def _proxy_configured(endpoint: str) -> bool:
    return bool(_proxy_url(endpoint))


def _strip_userinfo(proxy: str) -> str:
    u = urllib3.util.parse_url(proxy if "://" in proxy else "http://" + proxy)
    return u._replace(auth=None).url


def _proxy_headers(proxy: str) -> Optional[Dict[str, str]]:
    """``Proxy-Authorization: Basic`` from ``http://user:pass@host`` (percent-decoded, as curl
    and requests do); None when the URL has no credentials."""
    from urllib.parse import unquote

    u = urllib3.util.parse_url(proxy if "://" in proxy else "http://" + proxy)
    if not u.auth:
        return None
    user, _, password = u.auth.partition(":")
    return dict(urllib3.util.make_headers(proxy_basic_auth=f"{unquote(user)}:{unquote(password)}"))


def _proxy_url(endpoint: str) -> str:
    import os
    import urllib.request

    host = urllib3.util.parse_url(endpoint).host or ""
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return ""
    scheme = "https" if endpoint.startswith("https") else "http"
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
        proxy = os.environ.get(name)
        if proxy:
            _check_proxy(proxy, name)
            return proxy
    return ""


def _check_proxy(proxy: str, name: str) -> None:
    """A UsageError naming the variable when ``proxy`` is no http(s) proxy URL (it was an internal
    error: LocationParseError, ProxySchemeUnknown). The URL is not repeated: it may hold a password."""
    try:
        u = urllib3.util.parse_url(proxy if "://" in proxy else "http://" + proxy)
    except Exception:  # urllib3's LocationParseError (a ValueError) and anything it finds odd
        u = None
    if u is None or not u.host or (u.scheme or "http") not in ("http", "https"):
        why = f"the {u.scheme} scheme is not supported" if u is not None and u.scheme not in (None, "http", "https") \
            else "not a proxy URL"
        raise UsageError(f"{name}: {why} (expected http(s)://[user:password@]host:port)")


# The settings of a profile that make it fetch credentials (named in an error, never their values:
# a credential_process command line may carry a token).
_CHAIN_KEYS = ("credential_process", "role_arn", "source_profile", "credential_source", "web_identity_token_file",
               "sso_session", "sso_start_url")


def _profile_of(session: Any, ref: TableRef) -> Optional[str]:
    try:
        return ref.profile or session._session.profile or None
    except Exception:
        return ref.profile


def _profile_config(session: Any, name: str) -> Dict[str, Any]:
    try:
        return dict(session._session.full_config.get("profiles", {}).get(name) or {})
    except Exception:  # an unreadable config file: its name is still worth saying
        return {}


def _credentials_error(session: Any, ref: TableRef, e: Exception) -> UsageError:
    """One line naming the profile and the setting whose credentials could not be loaded."""
    name = _profile_of(session, ref)
    cfg = _profile_config(session, name or "default")
    keys = [f"source_profile {str(cfg[k])!r}" if k == "source_profile" else k for k in _CHAIN_KEYS if k in cfg]
    if keys:
        where = f"profile {name or 'default'!r} ({', '.join(keys)})"
    elif name:
        where = f"profile {name!r}"
    else:
        where = "the default credential chain"
    if ref.role_arn:
        # The profile may be fine and the role the fault (a malformed ARN, a role not trusting it):
        # name what was being assumed, not only the profile underneath.
        where += f" assuming role {ref.role_arn!r}"
    why = _one_line(e)
    if isinstance(e, ValueError) and e.__class__.__module__.startswith("json"):
        why = f"its output is not valid JSON ({why})"
    elif isinstance(e, OSError) and not isinstance(e, ssl.SSLError):
        why = f"{e.__class__.__name__}: {why}"
    return UsageError(f"cannot load AWS credentials for {ref.describe()} from {where}: {why}")


def _tls_context(ca_bundle: Optional[str], session: Any, ref: TableRef) -> Optional[ssl.SSLContext]:
    """The hot path's TLS context for ``ca_bundle`` (None: the system's CAs, made by the transport);
    a bundle that cannot be loaded is a :class:`UsageError` naming the setting and the path."""
    if not ca_bundle:
        return None
    try:
        return ssl_context_for(ca_bundle)
    except OSError as e:  # FileNotFoundError, PermissionError, ssl.SSLError (no certificate in it)
        if os.environ.get("AWS_CA_BUNDLE") == ca_bundle:
            where = "AWS_CA_BUNDLE"
        else:
            where = f"the ca_bundle of profile {_profile_of(session, ref) or 'default'!r}"
        if not os.path.exists(ca_bundle):
            why = "no such file or directory"
        elif isinstance(e, ssl.SSLError):
            why = f"not a PEM file of CA certificates ({_one_line(e)})"
        else:
            why = _one_line(e)
        raise UsageError(f"cannot use the CA bundle {ca_bundle} set by {where}: {why}") from None


def _one_line(e: Exception) -> str:
    return " ".join(_brief(e).split()) or e.__class__.__name__


def _brief(e: Exception) -> str:
    s = redact(str(e))  # before the cut: half a token would no longer be recognised
    return s if len(s) < 200 else s[:197] + "..."
