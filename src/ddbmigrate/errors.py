"""One error root, three families, one exit code per class.

    DdbMigrateError                      exit 1   (never raised bare)
    ├── FatalError                       exit 1   stop; nothing to retry
    │   ├── UsageError                   exit 2   bad option, bad spec, bad reference
    │   ├── TableNotFoundError           exit 1
    │   ├── SchemaError                  exit 1   key schema / spec problems
    │   ├── FingerprintMismatchError     exit 2   --resume on a checkpoint of another job
    │   ├── ResyncNeededError            exit 1   stream trimmed past our checkpoint
    │   └── AwsError                     exit 1   a non-retriable service error (code, message)
    ├── RetriableError                   exit 75  the job may be resumed from its checkpoint
    │   └── RetriesExhaustedError        exit 75  back-off gave up; checkpoint kept
    ├── SkippableError                   (item-level; dead-lettered, never ends a run alone)
    │   ├── InvalidItemError             bad key, too large, bad type descriptor, bad line
    │   └── TransformError               user code raised or returned a bad value
    └── InterruptedError_                exit 130 Ctrl-C / SIGTERM, checkpoint saved

Exit codes that are not errors: 0 done, 3 done with dead letters, 4 verify found differences;
``replicate status``: 5 running but lagging more than --max-lag, 6 not running.
Every error carries structured attributes (table, segment, key, file, line, code) so the CLI can
print a single line and the report can keep the details.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Optional

from .logs import redact

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_DEAD_LETTERS = 3
EXIT_DIFFERENCES = 4
EXIT_RETRIABLE = 75
EXIT_INTERRUPTED = 130
# ``replicate status``: 0 running and caught up (or within --max-lag), these two otherwise.
EXIT_LAGGING = 5
EXIT_NOT_RUNNING = 6


class DdbMigrateError(Exception):
    """Root of every error ddbmigrate raises on purpose."""

    exit_code: ClassVar[int] = EXIT_FATAL

    def __init__(
        self,
        message: str,
        *,
        table: Optional[str] = None,
        segment: Optional[int] = None,
        key: Any = None,
        file: Optional[str] = None,
        line: Optional[int] = None,
        code: Optional[str] = None,
        hint: Optional[str] = None,
    ) -> None:
        # Every error text ends up printed, logged or in a report: the one redaction step runs
        # here, where the text is made (an AWS message may echo a request's headers).
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.table = table
        self.segment = segment
        self.key = key
        self.file = file
        self.line = line
        self.code = code
        self.hint = redact(hint) if hint else hint

    def one_line(self) -> str:
        """The message a person sees: one line, with where it happened."""
        where = []
        if self.file is not None:
            where.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        if self.table is not None:
            where.append(f"table {self.table}")
        if self.segment is not None:
            where.append(f"segment {self.segment}")
        if self.code is not None:
            where.append(self.code)
        text = self.message
        if where:
            text = f"{text} ({', '.join(where)})"
        return text.replace("\n", " ")


class FatalError(DdbMigrateError):
    exit_code = EXIT_FATAL


class UsageError(FatalError):
    exit_code = EXIT_USAGE


class TableNotFoundError(FatalError):
    pass


class SchemaError(FatalError):
    pass


class FingerprintMismatchError(FatalError):
    exit_code = EXIT_USAGE


class ResyncNeededError(FatalError):
    pass


class AwsError(FatalError):
    """A service error that retrying will not fix (validation, access denied, ...)."""

    def __init__(self, message: str, *, status: int = 400, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status


class ConditionalCheckFailed(AwsError):
    """The write's condition did not hold (used by the skip/fail-existing write modes).

    ``item`` is the item that made it fail, when asked for (``ReturnValuesOnConditionCheckFailure``);
    ``retried`` says an earlier attempt of the same request went unanswered or failed on the
    server's side, so it may have been applied.
    """

    def __init__(self, message: str, *, item: Optional[Dict[str, Any]] = None, retried: bool = False,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.item = item
        self.retried = retried


class RetriableError(DdbMigrateError):
    exit_code = EXIT_RETRIABLE


class RetriesExhaustedError(RetriableError):
    pass


class SkippableError(DdbMigrateError):
    """An item-level problem: the item is dead-lettered with this reason."""

    reason: ClassVar[str] = "invalid"


class InvalidItemError(SkippableError):
    reason = "invalid_item"


class TransformError(SkippableError):
    reason = "transform_error"


class InterruptedError_(DdbMigrateError):
    exit_code = EXIT_INTERRUPTED


def to_wire(e: BaseException) -> dict:  # type: ignore[type-arg]
    """An error as plain values, to cross a process or Spark boundary (see :func:`from_wire`)."""
    if isinstance(e, DdbMigrateError):
        return {"class": type(e).__name__, "message": e.message, "table": e.table, "segment": e.segment,
                "file": e.file, "line": e.line, "code": e.code, "hint": e.hint}
    return {"class": "FatalError", "message": f"{type(e).__name__}: {e}"}


def from_wire(d: dict, prefix: str = "") -> DdbMigrateError:  # type: ignore[type-arg]
    """The same error on this side of the boundary: same class, so the same exit code."""
    cls = globals().get(str(d.get("class")))
    if not (isinstance(cls, type) and issubclass(cls, DdbMigrateError)):
        cls = FatalError
    kw = {k: d.get(k) for k in ("table", "segment", "file", "line", "code", "hint")}
    message = prefix + str(d.get("message", ""))
    try:
        return cls(message, **kw)
    except TypeError:  # a class with its own constructor
        e = FatalError(message, **kw)
        return e
