"""What every Spark task of ddbmigrate shares (the engine's and Spark verify's), and the context.

    SparkSettings, spark_context, task_slots     where and how wide to run (driver)
    SegmentDeadLetters, segment_file, upload     a task's own output file: dead.segment-0007.jsonl,
                                                 local (started afresh per attempt) or S3 (uploaded)
    FAIL_ONCE_ENV, parse_fail_once, fault hook   the test hook that fails a task's first attempt
    java_error_line                             a failed Spark job's error, as one line

Invariant: a task's outputs are its own (one file per unit and attempt, never shared), so Spark
may run a task twice without two attempts' lines mixing. The core never imports pyspark: it is
imported lazily, in ``spark_context``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from ..config import TableRef
from ..core.transform import Transform, load_transform
from ..errors import UsageError
from ..state.crashpoints import crash_point
from ..state.deadletter import DeadLetters

# Test hook, read on the driver and shipped in the task (executors may not share the driver's
# environment): "<segment>:<after_batches>:<marker file>" makes the first attempt of that unit
# (by index: the segment number of a scan) raise after that many acknowledged batches.
FAIL_ONCE_ENV = "DDBMIGRATE_SPARK_FAIL_ONCE"


@dataclass(frozen=True)
class SparkSettings:
    """Where and how wide to run.

    ``master`` is only used when no SparkContext is active (spark-submit and Glue create one
    first). ``max_tasks`` caps concurrently running units (default: the context's
    defaultParallelism, i.e. the executor cores); rate limits are divided by it.
    """

    master: Optional[str] = None
    max_tasks: Optional[int] = None
    app_name: str = "ddbmigrate"


def segment_file(base: str, segment: int, digits: int = 4, default_ext: str = ".jsonl") -> str:
    """``dead.jsonl`` -> ``dead.segment-0007.jsonl``; a base ending in ``/`` is a folder."""
    name = f"segment-{segment:0{digits}d}"
    if base.endswith("/"):
        return f"{base}{name}{default_ext}"
    root, ext = os.path.splitext(base)
    if not ext or "/" in ext:
        root, ext = base, default_ext
    return f"{root}.{name}{ext}"


def _digits(total: int) -> int:
    return max(4, len(str(max(0, total - 1))))


def dead_letter_pattern(base: Optional[str], total: int) -> Optional[str]:
    """What the report shows as the dead-letter path: ``dead.segment-*.jsonl``."""
    if not base:
        return None
    d = _digits(total)
    return segment_file(base, 0, d).replace("segment-" + "0" * d, "segment-*")


def check_s3_key_url(url: str) -> Tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); a task's output file needs both, else UsageError."""
    rest = url[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise UsageError(f"{url!r}: expected s3://bucket/key")
    return bucket, key


def driver_s3_settings(ref: Optional[TableRef] = None) -> Any:
    """S3 settings for task outputs (dead letters, differences), captured on the driver.

    Executors may not share the driver's environment, so the S3 endpoint override
    (``AWS_ENDPOINT_URL_S3``) travels in the task instead of being looked up there.
    """
    from ..storage.stores import S3Settings

    return S3Settings(region=ref.region if ref else None, profile=ref.profile if ref else None,
                      endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3"))


def upload(local: str, url: str, s3: Any) -> None:
    from ..storage.stores import storage_for

    storage_for(url, s3).put_file(local, url)


class BudgetedDeadLetters(DeadLetters):
    """A task's dead letters whose ``--max-errors`` budget is the job's, kept by the driver.

    Each reservation asks the driver's :class:`ErrorBudget` (one short TCP exchange: dead letters
    are rare), so tasks running side by side never pass the limit together. When the driver
    cannot be reached, the task falls back to the count the job had when it was scheduled.
    """

    def __init__(self, path: Optional[str], budget_at: Optional[Tuple[str, int]], unit: int, attempt: int) -> None:
        super().__init__(path)
        self.budget_at = budget_at
        self.unit = unit
        self.attempt = attempt
        self._sock: Any = None

    def reserve(self, limit: Optional[int] = None) -> bool:
        if limit is None or self.budget_at is None:
            return super().reserve(limit)
        try:
            if self._sock is None:
                self._sock = socket.create_connection(self.budget_at, timeout=10)
                self._file = self._sock.makefile("rwb")
            self._file.write(f"{self.unit} {self.attempt}\n".encode())
            self._file.flush()
            granted = bool(self._file.readline().strip() == b"1")
        except OSError:
            self.budget_at = None  # unreachable: count locally from here on
            return super().reserve(limit)
        if granted:
            with self._lock:
                self.count += 1
        return granted

    def close(self) -> None:
        super().close()
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


class ErrorBudget:
    """The driver's side of :class:`BudgetedDeadLetters`: grants dead letters up to the limit.

    A unit's reservations count for its latest attempt only (an earlier, failed attempt's dead
    letters are thrown away with its file), so a Spark task retry does not use up the budget.
    """

    def __init__(self, limit: int, already: int, host: str) -> None:
        self.limit = limit
        self.already = already
        self.by_unit: Dict[int, Tuple[int, int]] = {}  # unit -> (attempt, reserved)
        self._lock = threading.Lock()
        self._server = socket.create_server(("", 0))
        self.address = (host, int(self._server.getsockname()[1]))
        self._thread = threading.Thread(target=self._serve, name="error-budget", daemon=True)
        self._thread.start()

    def grant(self, unit: int, attempt: int) -> bool:
        with self._lock:
            seen, n = self.by_unit.get(unit, (attempt, 0))
            if attempt < seen:
                return False  # a straggler of an attempt Spark already replaced
            if attempt > seen:
                n = 0  # a retry: the failed attempt's dead letters were thrown away with its file
            others = sum(c for u, (_, c) in self.by_unit.items() if u != unit)
            if self.already + others + n >= self.limit:
                return False
            self.by_unit[unit] = (attempt, n + 1)
            return True

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: Any) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                try:
                    unit, attempt = (int(x) for x in line.split())
                    ok = self.grant(unit, attempt)
                except ValueError:
                    ok = False
                try:
                    f.write(b"1\n" if ok else b"0\n")
                    f.flush()
                except OSError:
                    return

    def close(self) -> None:
        try:
            self._server.close()
        except OSError:
            pass


class SegmentDeadLetters:
    """A unit's dead-letter file: local (truncated per attempt) or S3 (uploaded at the end).

    Starting afresh on every attempt keeps invariant 2: lines of a failed attempt never add to
    the lines of the attempt that counts. ``already`` is the job's dead-letter count when the
    task was scheduled: ``--max-errors`` then counts over the job (invariant 4).
    """

    def __init__(self, base: Optional[str], segment: int, digits: int, s3: Any = None, already: int = 0,
                 budget_at: Optional[Tuple[str, int]] = None, attempt: int = 0) -> None:
        self.target = segment_file(base, segment, digits) if base else None
        self.s3 = s3
        self.already = already
        self._tmpdir: Optional[str] = None
        local: Optional[str] = None
        if self.target is not None and self.target.startswith("s3://"):
            check_s3_key_url(self.target)
            self._tmpdir = tempfile.mkdtemp(prefix="ddbmigrate-dead-")
            local = os.path.join(self._tmpdir, os.path.basename(self.target))
        elif self.target is not None:
            local = self.target
            try:
                os.unlink(local)
            except FileNotFoundError:
                pass
        self.local = local
        self.dead = BudgetedDeadLetters(local, budget_at, segment, attempt)
        self.dead.count = already  # the --max-errors budget is the job's (see DeadLetters.reserve)

    def publish(self) -> Optional[str]:
        """Close the file; upload it when the destination is S3. Returns where it is (or None)."""
        self.dead.close()
        if self.target is None or self.local is None or not os.path.exists(self.local):  # no line written
            self._cleanup()
            return None
        try:
            if self._tmpdir is not None and self.local is not None:
                upload(self.local, self.target, self.s3)
        finally:
            self._cleanup()
        return self.target

    def discard(self) -> None:
        """A failed attempt: close, drop the temporary copy (the next attempt starts afresh)."""
        self.dead.close()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def fault_hook(fault: Optional[Tuple[int, int, str]], segment: int) -> Callable[[str], None]:
    """The pipeline's crash hook for one unit: raises once for the unit ``FAIL_ONCE_ENV`` names."""
    if fault is None or fault[0] != segment:
        return crash_point
    _, after, marker = fault
    lock = threading.Lock()
    acks = [0]

    def hook(point: str) -> None:
        crash_point(point)
        if point != "after_batch_ack":
            return
        with lock:
            acks[0] += 1
            fire = acks[0] == after and not os.path.exists(marker)
            if fire:
                with open(marker, "w") as fh:
                    fh.write(f"segment {segment} failed once on purpose\n")
        if fire:
            raise RuntimeError(f"injected task failure in segment {segment} ({FAIL_ONCE_ENV})")

    return hook


def parse_fail_once(value: Optional[str]) -> Optional[Tuple[int, int, str]]:
    if not value:
        return None
    try:
        seg, after, marker = value.split(":", 2)
        return int(seg), max(1, int(after)), marker
    except ValueError:
        raise UsageError(f"{FAIL_ONCE_ENV}={value!r}: expected <segment>:<after_batches>:<marker file>") from None


def load_task_transform(ref: Optional[str], code_hash: Optional[str]) -> Optional[Transform]:
    """Load the transform on the executor and check it is the code the driver fingerprinted."""
    if not ref:
        return None
    tf = load_transform(ref)
    if code_hash and tf.code_hash != code_hash:
        raise UsageError(
            f"transform {ref} on this executor differs from the driver's copy (sha256 {tf.code_hash[:12]} != "
            f"{code_hash[:12]}): ship the same code to every node (--py-files / --additional-python-modules)"
        )
    return tf


def host_name() -> str:
    try:
        return os.uname().nodename
    except AttributeError:
        return ""


def spark_context(settings: SparkSettings) -> Tuple[Any, bool]:
    """The active SparkContext, or a new one on ``settings.master`` (default ``local[*]``).

    Returns (context, created): a context we created is stopped by the caller at the end;
    one that spark-submit / Glue / a notebook created is left alone.
    """
    try:
        from pyspark import SparkConf, SparkContext
    except ImportError:
        raise UsageError("--engine spark needs pyspark: pip install 'ddbmigrate[spark]' "
                         "(or run inside spark-submit / AWS Glue, which provide it)") from None
    active = SparkContext._active_spark_context
    if active is not None:
        return active, False
    conf = SparkConf().setAppName(settings.app_name)
    master = settings.master or conf.get("spark.master") or "local[*]"
    conf.setMaster(master)
    if master.startswith("local"):
        # Executors are Python workers on this machine: run them on this interpreter.
        import sys

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf.set("spark.ui.showConsoleProgress", "false")  # our own progress display is enough
    if not os.environ.get("DDBMIGRATE_SPARK_LOGS") and "SPARK_CONF_DIR" not in os.environ:
        # Spark's own INFO/WARN lines would bury the progress display: errors only, unless asked
        # (DDBMIGRATE_SPARK_LOGS=1) or the user has a Spark configuration of their own.
        os.environ["SPARK_CONF_DIR"] = os.path.join(os.path.dirname(os.path.dirname(__file__)), "integrations",
                                                    "spark", "conf")
    sc = SparkContext.getOrCreate(conf)
    sc.setLogLevel("ERROR")
    return sc, True


_ctx_lock = threading.Lock()
_ctx_users: Dict[int, int] = {}  # id(context we created) -> runs using it


def lease_context(settings: SparkSettings) -> Tuple[Any, Callable[[], None]]:
    """A SparkContext and the function that lets it go: one we created is stopped by the last
    run using it (jobs of a plan may run side by side on one context)."""
    with _ctx_lock:
        sc, created = spark_context(settings)
        key = id(sc)
        if not created and key not in _ctx_users:
            return sc, lambda: None
        _ctx_users[key] = _ctx_users.get(key, 0) + 1

    def release() -> None:
        with _ctx_lock:
            _ctx_users[key] -= 1
            if _ctx_users[key]:
                return
            del _ctx_users[key]
            try:
                sc.stop()
            except Exception:  # stopping a broken context must not hide the job's outcome
                pass

    return sc, release


def task_slots(sc: Any, todo: int, settings: SparkSettings) -> int:
    """How many units run at once: --spark-tasks, else the cluster's default parallelism."""
    slots = settings.max_tasks or int(getattr(sc, "defaultParallelism", 0) or 1)
    return max(1, min(slots, max(1, todo)))


def divide_rate(rate: Optional[float], slots: int) -> Optional[float]:
    """Each of ``slots`` concurrent tasks gets an equal share of the job's limit (however small:
    a floor per task would put the job over its limit)."""
    if not rate:
        return None
    return float(rate) / max(1, slots)


def java_error_line(e: BaseException) -> str:
    """The Python error inside a Py4JJavaError, as one line."""
    text = str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error:" in ln or "Exception:" in ln:
            if not ln.startswith("at ") and "py4j" not in ln.lower():
                return ln[:300]
    return (lines[0] if lines else type(e).__name__)[:300]


__all__ = ["FAIL_ONCE_ENV", "SegmentDeadLetters", "SparkSettings", "check_s3_key_url", "dead_letter_pattern",
           "divide_rate", "driver_s3_settings", "fault_hook", "host_name", "java_error_line",
           "lease_context", "load_task_transform", "parse_fail_once", "segment_file",
           "spark_context", "task_slots", "upload"]
