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
from typing import Iterable, List, Optional

LEVELS = ("error", "warning", "info", "debug")
NOISY = ("botocore", "boto3", "urllib3", "s3transfer")
_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_PATTERNS = [
    re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b"),
    re.compile(r"(Credential=)[^,\s]+"),
    re.compile(r"(Signature=)[0-9a-fA-F]+"),
    re.compile(r"((?:X-Amz-Security-Token|x-amz-security-token|aws_session_token|aws_secret_access_key)"
               r"['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"),
]


def secret_values(extra: Iterable[str] = ()) -> List[str]:
    vals = [os.environ.get(k, "") for k in _SECRET_ENV] + list(extra)
    # Very short values ("test") would redact ordinary words; real secrets are long.
    return sorted({v for v in vals if v and len(v) >= 8}, key=len, reverse=True)


def redact(text: str, secrets: Optional[Iterable[str]] = None) -> str:
    """``text`` with credential values and credential-shaped strings replaced by ``***``."""
    for v in secret_values() if secrets is None else secrets:
        text = text.replace(v, "***")
    for p in _PATTERNS:
        text = p.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


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
