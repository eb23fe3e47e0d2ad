"""Typed configuration: where a table lives, and how a job runs.

Everything here is a plain, picklable dataclass so a job can be shipped to a Spark executor or
written into a checkpoint fingerprint unchanged. Nothing here talks to AWS.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

from .errors import UsageError

_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:dynamodb:([a-z0-9-]+):(\d{12}):table/([A-Za-z0-9_.-]{3,255})$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")

WRITE_MODES = ("overwrite", "skip-existing", "fail-existing")
# A host name as botocore accepts one (labels of letters, digits and inner hyphens).
_HOST = re.compile(r"^((?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)*((?!-)[A-Za-z0-9-]{1,63}(?<!-))\.?$")


def endpoint_problem(url: str) -> Optional[str]:
    """What is wrong with an endpoint URL, or None: ``http(s)://host[:port][/path]`` is what
    botocore and our transport both take. Checked before any work, so a typo is a usage error
    naming its option rather than a failure deep inside a client."""
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a port that is not a number in range
    except ValueError as e:
        return f"not a URL ({e})"
    if parts.scheme not in ("http", "https"):
        return "not an http:// or https:// URL"
    host = parts.hostname or ""
    if not host or not (_HOST.match(host) or (parts.netloc.count("[") == 1 and ":" in host)):
        return "no valid host name"
    if parts.username is not None or parts.password is not None:
        # Nothing uses it (requests are signed), and it would be printed and kept in checkpoints.
        return "it carries user:password@ (DynamoDB takes credentials from the AWS chain; a proxy's go in HTTPS_PROXY)"
    return None


def check_endpoint(url: Optional[str], name: str) -> Optional[str]:
    """``url`` when it is a usable endpoint (or None); else a UsageError naming ``name``, the
    option or environment variable it came from."""
    if url is not None:
        problem = endpoint_problem(url)
        if problem:
            raise UsageError(f"{name} {url!r}: {problem} (expected http(s)://host[:port])")
    return url


def _profile_settings(profile: Optional[str]) -> Dict[str, Any]:
    """The region and endpoint URL a profile (or the default one) sets, as botocore reads them;
    empty when the config cannot be read (the client says why, once it is made)."""
    try:
        import botocore.session

        session = botocore.session.Session(profile=profile)
        config = session.get_scoped_config()
        dynamodb = config.get("dynamodb") if isinstance(config.get("dynamodb"), dict) else {}
        return {"region": session.get_config_variable("region"),
                "endpoint_url": dynamodb.get("endpoint_url") or config.get("endpoint_url")}
    except Exception:  # a missing profile, an unreadable file: not this function's to report
        return {}


def configured_location(profile: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """The region and the DynamoDB endpoint a client of ``profile`` (or the default one) gets when
    it is given neither, as botocore resolves them: the region from AWS_DEFAULT_REGION or the
    profile; the endpoint from AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, the profile's
    ``services`` section or its ``endpoint_url``, unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS (or
    the profile's ``ignore_configured_endpoint_urls``) says to ignore them. (None, None) when the
    configuration cannot be read: the client says why, once it is made."""
    try:
        import botocore.session

        session = botocore.session.Session(profile=profile)
        region = session.get_config_variable("region")
        endpoint: Optional[str] = None
        if not session.get_config_variable("ignore_configured_endpoint_urls"):
            try:
                from botocore.configprovider import ConfiguredEndpointProvider
            except ImportError:  # (botocore's own lookup is not public: the documented order, then)
                endpoint = (os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
                            or session.get_scoped_config().get("endpoint_url"))
            else:
                endpoint = ConfiguredEndpointProvider(full_config=session.full_config,
                                                      scoped_config=session.get_scoped_config(),
                                                      client_name="dynamodb").provide()
        return (str(region) if region else None, str(endpoint) if endpoint else None)
    except Exception:  # a missing profile, an unreadable file: not this function's to report
        return (None, None)


def _without_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` (refused as an endpoint, but never printed either)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


@dataclass(frozen=True)
class TableRef:
    """A DynamoDB table and how to reach it.

    ``table`` may be a name or a table ARN; an ARN also supplies the region when none is given.
    Credentials come from the standard chain (``profile`` selects a named profile), optionally
    followed by assuming ``role_arn`` (cross-account). ``endpoint_url`` overrides the endpoint;
    when unset, botocore honours ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_DYNAMODB``.
    """

    table: str
    region: Optional[str] = None
    profile: Optional[str] = None
    role_arn: Optional[str] = None
    endpoint_url: Optional[str] = None
    role_session_name: str = "ddbmigrate"
    external_id: Optional[str] = None

    def __post_init__(self) -> None:
        m = _ARN.match(self.table)
        if m:
            region, _account, name = m.groups()
            object.__setattr__(self, "table", name)
            if self.region is None:
                object.__setattr__(self, "region", region)
        elif not _NAME.match(self.table):
            raise UsageError(
                f"invalid table name {self.table!r}: expected 3-255 characters of "
                "[A-Za-z0-9_.-] or a table ARN"
            )

    @property
    def name(self) -> str:
        return self.table

    def describe(self) -> str:
        """A human label without secrets: ``table @ region @ endpoint``, with the region and the
        endpoint the client really uses however they were set (an option, AWS_DEFAULT_REGION,
        AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, the profile), not only the options': a summary
        of a copy into DynamoDB Local set by AWS_ENDPOINT_URL said "table T", as for AWS's own."""
        region, endpoint = self.region, self.endpoint_url
        if region is None or endpoint is None:
            configured = configured_location(self.profile)
            region = region or configured[0]
            endpoint = endpoint or configured[1]
        parts = [self.table]
        if region:
            parts.append(region)
        if endpoint:
            parts.append(_without_userinfo(endpoint))
        return " @ ".join(parts)

    def identity(self) -> Dict[str, Any]:
        """What identifies this table for a checkpoint fingerprint (no credentials): the region
        and endpoint as the client resolves them, a profile's own included (two profiles of one
        table name in two regions are two jobs, and one must never resume the other)."""
        region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
        if region is None or endpoint is None:
            from_profile = _profile_settings(self.profile)
            region = region or from_profile.get("region")
            endpoint = endpoint or from_profile.get("endpoint_url")
        ident = {"table": self.table, "region": region, "endpoint_url": endpoint, "role_arn": self.role_arn}
        # Two profiles of one region are two accounts as often as not (prod and staging, or a
        # profile's own role_arn): a checkpoint of one must never be resumed against the other.
        # Only when one is named, so the fingerprints of jobs run without a profile stay as they were.
        profile = self.profile or os.environ.get("AWS_PROFILE")
        if profile and profile != "default":
            ident["profile"] = profile
        return ident

    def with_table(self, table: str) -> "TableRef":
        return replace(self, table=table)


@dataclass(frozen=True)
class RetryPolicy:
    """Our own batch-level back-off (capped exponential, full jitter).

    botocore's control-plane client is configured separately with mode="standard".
    """

    max_attempts: int = 10
    base_delay: float = 0.05
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UsageError("max attempts must be at least 1")


@dataclass
class RunOptions:
    """Options shared by jobs that read a table and write a table or files."""

    segments: Optional[int] = None
    writers: Optional[int] = None
    mode: str = "overwrite"
    transform: Optional[str] = None
    on_error: str = "fail"
    max_errors: Optional[int] = None
    dead_letter: Optional[str] = None
    report: Optional[str] = None
    checkpoint: Optional[str] = None
    resume: bool = False
    restart: bool = False
    force: bool = False
    dry_run: bool = False
    sample: int = 0
    consistent_read: bool = False
    max_read_units: Optional[float] = None
    max_write_units: Optional[float] = None
    read_percent: Optional[float] = None
    write_percent: Optional[float] = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    progress: str = "off"  # auto | bar | json | off (the CLI asks for auto; a library call prints nothing)
    queue_batches: Optional[int] = None
    processes: int = 1  # worker processes for the local engine (segments spread over them)
    checkpoint_every: float = 2.0  # seconds between checkpoint saves (and one at the end)
    drain_timeout: float = 30.0  # after Ctrl-C / SIGTERM: seconds to let in-flight batches finish
    metrics_port: Optional[int] = None  # serve Prometheus /metrics and /healthz here while the job runs
    metrics_host: str = "127.0.0.1"
    metrics_job: Optional[str] = None  # the job label of its metrics (a plan's job name; default the job kind)

    def __post_init__(self) -> None:
        # NaN passes every comparison below (all are False): refused first, by name.
        for name in ("checkpoint_every", "drain_timeout", "max_read_units", "max_write_units", "read_percent",
                     "write_percent"):
            v = getattr(self, name)
            if isinstance(v, float) and math.isnan(v):
                raise UsageError(f"--{name.replace('_', '-')} must be a number, not nan")
        if not 0 < self.checkpoint_every < math.inf or self.drain_timeout < 0:
            raise UsageError("--checkpoint-every must be > 0 (and finite) and --drain-timeout >= 0")
        for name in ("max_read_units", "max_write_units"):
            v = getattr(self, name)
            if v is not None and not 0 < v < math.inf:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive number of units per second")
        for name in ("read_percent", "write_percent"):
            v = getattr(self, name)
            if v is not None and not 0 < v <= 100:
                raise UsageError(f"--{name.replace('_', '-')} must be in (0, 100]")
        if self.mode not in WRITE_MODES:
            raise UsageError(f"--mode must be one of {', '.join(WRITE_MODES)}, not {self.mode!r}")
        if self.on_error not in ("fail", "skip"):
            raise UsageError(f"--on-error must be fail or skip, not {self.on_error!r}")
        if not 1 <= self.processes <= 256:
            raise UsageError("--processes must be between 1 and 256")
        if self.segments is not None and not (1 <= self.segments <= 1_000_000):
            raise UsageError("--segments must be between 1 and 1000000")
        if self.writers is not None and not (1 <= self.writers <= 1024):
            raise UsageError("--writers must be between 1 and 1024")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise UsageError("--metrics-port must be between 0 and 65535")
        if self.max_errors is not None and self.max_errors < 0:
            raise UsageError("--max-errors must be >= 0")

    def fingerprint_fields(self) -> Dict[str, Any]:
        """Options that change what a job writes (so a resume must match them)."""
        d = asdict(self)
        return {k: d[k] for k in ("mode", "transform", "dry_run")}
