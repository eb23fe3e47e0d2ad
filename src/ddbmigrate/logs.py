"""Logging for the CLI: ddbmigrate's own messages only, with secrets redacted on the way out.

``configure_logging("debug")`` sends the ``ddbmigrate`` logger to stderr (and optionally a
file). botocore, boto3, urllib3 and s3transfer stay at WARNING whatever the level, because their
DEBUG output contains signed request headers (the access key id in ``Authorization``, the
session token in ``X-Amz-Security-Token``) and item bodies.

Invariant 8 (no secret or item body is ever logged): every record passes :class:`RedactingFilter`,
which replaces the current credentials' values (from the environment) and anything shaped like
an access key id, a SigV4 signature or a security-token header with ``***``. The library never
logs items; it logs counts, tables, positions and error codes.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any, Iterable, List, Optional, Set, Tuple

LEVELS = ("error", "warning", "info", "debug")
NOISY = ("botocore", "boto3", "urllib3", "s3transfer")
_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_PATTERNS = [
    # access key ids (long-term, temporary, role, user)
    re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b"),
    # SigV4 in headers and in presigned URLs (X-Amz-Credential / X-Amz-Signature, URL-encoded too)
    re.compile(r"(Credential=)[^,\s&'\"]+"),
    re.compile(r"(Signature=)[0-9a-fA-F]+"),
    # the values of credential-carrying headers, query parameters and config keys
    re.compile(r"((?:X-Amz-Security-Token|aws_session_token|aws_security_token|aws_secret_access_key"
               r"|aws_access_key_id|SecretAccessKey|SessionToken)['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}&]+",
               re.IGNORECASE),
    # Authorization / Proxy-Authorization: the whole credential, whatever the scheme
    re.compile(r"((?:Proxy-)?Authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,}]+", re.IGNORECASE),
    # user:password@ in a URL (a proxy's, typically); the scheme starts a word, or every position
    # of a long run of letters would be tried (a 300 KB error took minutes to print)
    re.compile(r"(\b\w+://)[^/@\s:'\"]+:[^/@\s'\"]+(@)"),
]

_registered: Set[str] = set()
_registered_lock = threading.Lock()


def register_secrets(values: Iterable[Optional[str]]) -> None:
    """Remember credential values that did not come from the environment (profiles, processes,
    SSO, assumed roles) so every later :func:`redact` removes them too."""
    new = {v for v in values if v and len(v) >= 8}
    if new - _registered:
        with _registered_lock:
            _registered.update(new)


_cache: Tuple[Tuple[Any, ...], List[str]] = ((), [])


def secret_values(extra: Iterable[str] = ()) -> List[str]:
    global _cache
    env = tuple(os.environ.get(k, "") for k in _SECRET_ENV)
    extra = list(extra)
    key = (env, len(_registered))
    if not extra and _cache[0] == key:
        return _cache[1]  # the common case: nothing changed since the last error
    with _registered_lock:  # another thread may be registering fresh credentials right now
        vals = list(env) + list(_registered) + extra
    # Very short values ("test") would redact ordinary words; real secrets are long.
    out = sorted({v for v in vals if v and len(v) >= 8}, key=len, reverse=True)
    if not extra:
        _cache = (key, out)
    return out


def redact(text: str, secrets: Optional[Iterable[str]] = None) -> str:
    """``text`` with credential values and credential-shaped strings replaced by ``***``.

    The one redaction step: every error text that is printed, logged or persisted (reports,
    status files, dead-letter reasons) passes through it, and it is applied *before* any
    truncation, so a cut cannot leave half a secret that no longer matches."""
    for v in secret_values() if secrets is None else secrets:
        if v in text:
            text = text.replace(v, "***")
    for p in _PATTERNS:
        text = p.sub(_keep_prefix, text)
    return text


def _keep_prefix(m: "re.Match[str]") -> str:
    g = m.groups()
    if len(g) == 2:  # scheme://user:pass@ -> scheme://***@
        return f"{g[0]}***{g[1]}"
    return (g[0] if g else "") + "***"


def redact_obj(obj: Any) -> Any:
    """``obj`` (JSON-like: dicts, lists, strings) with every string redacted; for reports and
    status files, written as a whole."""
    secrets = secret_values()
    return _redact_obj(obj, secrets)


def _redact_obj(obj: Any, secrets: List[str]) -> Any:
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, dict):
        return {k: _redact_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redact_obj(v, secrets) for v in obj]
    return obj


class RedactingFilter(logging.Filter):
    """Formats the record's message once, redacted, so arguments cannot smuggle a secret out."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string must not break logging
            msg = str(record.msg)
        record.msg = redact(msg)
        record.args = None
        if record.exc_info:
            # Tracebacks can carry request details; keep the type and a redacted message only.
            etype, evalue = record.exc_info[0], record.exc_info[1]
            record.msg += f" ({etype.__name__ if etype else 'error'}: {redact(str(evalue))})"
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(level: str = "warning", log_file: Optional[str] = None) -> None:
    """Route the ``ddbmigrate`` logger to stderr (and ``log_file``) at ``level``; idempotent."""
    level = level.lower()
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    logger = logging.getLogger("ddbmigrate")
    for h in list(logger.handlers):
        if getattr(h, "_ddbmigrate", False):
            logger.removeHandler(h)
            h.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    handlers: List[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(RedactingFilter())
        h._ddbmigrate = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    logger.setLevel(getattr(logging, level.upper()))
    logger.propagate = False
    for name in NOISY:
        # Their DEBUG output is signed headers and bodies: never, even with --log-level debug.
        noisy = logging.getLogger(name)
        noisy.setLevel(logging.WARNING)
        for h in noisy.handlers:
            h.addFilter(RedactingFilter())
