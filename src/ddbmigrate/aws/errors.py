"""Reading AWS error codes: the one place that knows where AWS puts them.

AWS reports a failure in one of two shapes, and ddbmigrate meets both:

* botocore (control plane, S3): a ``ClientError`` whose ``response`` is
  ``{"Error": {"Code": "ResourceInUseException", "Message": "..."}, ...}``;
* DynamoDB's JSON protocol, read raw by the thin data-plane client: an HTTP 4xx/5xx body
  ``{"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
  "message": "..."}`` (``Message`` on some services).

Invariant: these helpers never raise, whatever they are given (an exception of any library, a
malformed body); messages read from a body are redacted (:func:`ddbmigrate.logs.redact`);
"no code" is ``None`` (or an ``HTTP<status>`` code for a body), so callers
classify errors without guarding each lookup. The codes every caller retries are listed here
(:data:`THROTTLE_CODES`, :data:`RETRIABLE_CODES`); how they are retried is the callers' affair.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import orjson

from ..logs import redact

THROTTLE_CODES = frozenset(
    (
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
    )
)
RETRIABLE_CODES = frozenset(("InternalServerError", "ServiceUnavailable", "TransactionInProgressException"))


def _error_dict(e: object) -> Dict[str, Any]:
    # ``response`` is botocore's parsed error; other libraries (requests, urllib3) put an HTTP
    # response object there, which is not an AWS error and carries no code.
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return {}
    err = response.get("Error")
    return err if isinstance(err, dict) else {}


def error_code(e: object) -> Optional[str]:
    """The AWS error code of a botocore exception (``ClientError`` and its generated
    subclasses), e.g. ``"ConditionalCheckFailedException"``; ``None`` for anything else or
    when the response has no code."""
    code = _error_dict(e).get("Code")
    return str(code) if code else None


def error_message(e: object) -> Optional[str]:
    """The AWS error message of a botocore exception; ``None`` when there is none."""
    msg = _error_dict(e).get("Message")
    return redact(str(msg)) if msg else None


def code_from_type(error_type: str) -> str:
    """The short code of a JSON-protocol ``__type``: the part after the last ``#``
    (``"com.amazonaws.dynamodb.v20120810#ThrottlingException"`` -> ``"ThrottlingException"``);
    a bare code is returned as it is."""
    return error_type.rsplit("#", 1)[-1]


def parse_error_body(data: bytes, status: int) -> Tuple[str, str]:
    """``(code, message)`` of a failed JSON-protocol response.

    The code comes from ``__type`` (see :func:`code_from_type`); when the body is not a JSON
    object or has no ``__type``, the code is ``HTTP<status>``, and a body that is not JSON at
    all becomes the message (its first 200 bytes)."""
    try:
        err = orjson.loads(data)
    except orjson.JSONDecodeError:
        # Redacted before the cut (a proxy may echo the request's headers into its error page).
        return f"HTTP{status}", redact(bytes(data[:4096]).decode("utf-8", "replace"))[:200]
    if not isinstance(err, dict):
        return f"HTTP{status}", ""
    code = code_from_type(str(err.get("__type") or "")) or f"HTTP{status}"
    return code, redact(str(err.get("message") or err.get("Message") or ""))
