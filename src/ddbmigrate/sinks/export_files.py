"""Write items as an export in DynamoDB's own Export-to-S3 layout (local folder or S3).

    DEST/AWSDynamoDB/<ExportId>/_started
    DEST/AWSDynamoDB/<ExportId>/data/<name>.json.gz        one {"Item": {...}} per line
                                     (or <name>.ion.gz: one ``$ion_1_0 {Item:{...}}`` per line)
    DEST/AWSDynamoDB/<ExportId>/manifest-files.json (+ .md5)  one line per data file
    DEST/AWSDynamoDB/<ExportId>/manifest-summary.json (+ .md5) written last of all

Each writer thread fills its own gzip file (so several files are written in parallel) and rolls
over to a new one past ``file_size`` uncompressed bytes. A file is finished (gzip trailer, fsync,
atomic rename or S3 upload) before it counts.

Invariants:
1. A checkpoint never counts an item that is not in a finished, durable file. The pipeline
   enters :meth:`FileSink.commit` around each save: it blocks writes, finishes every open file,
   moves the finished files to the *committed* list, and only then lets the checkpoint (whose
   extra state carries that list) be saved. Between commits (``commit_every`` seconds) it
   declines the save, so files are not cut every two seconds. With several workers (processes,
   Spark tasks) each commits its own files; :class:`ExportFilesSpec` merges their lists.
2. Files finished after the last committed checkpoint are orphans on --resume (their items will
   be read again from the checkpoint's positions): they are deleted, so no item is exported twice.
3. The manifests are written only when every item is committed, and the summary last of all, so
   an export without ``manifest-summary.json`` is recognisably torn.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import gzip
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
)

import orjson

from ..core.items import canonical_number
from ..core.protocols import SinkBase
from ..core.records import DELETE, BatchResult, Op
from ..core.specs import Resources
from ..formats import ion
from ..state import leftovers
from ..state.crashpoints import crash_point
from ..storage.stores import S3Settings, Storage, storage_for

if TYPE_CHECKING:
    from ..reporting.report import Report

DEFAULT_FILE_SIZE = 256 * 1024 * 1024
_CRASH_TESTING = os.environ.get("DDBMIGRATE_CRASH_AT") == "mid_export_line"
FORMATS = ("dynamodb-json", "json", "ion")
OUTPUT_FORMAT = {"dynamodb-json": "DYNAMODB_JSON", "json": "JSON", "ion": "ION"}
EXTENSION = {"dynamodb-json": ".json.gz", "json": ".json.gz", "ion": ".ion.gz"}
# A data file being written, named for its process (state/leftovers.py) in the temporary folder.
PART_PREFIX = "part-"


def new_export_id(now: Optional[float] = None) -> str:
    """``<14-digit epoch millis>-<8 hex>``, the shape of AWS ExportIds."""
    ms = int((now if now is not None else time.time()) * 1000)
    return f"{ms:014d}-{os.urandom(4).hex()}"


def _file_name() -> str:
    # 26 lowercase base32 characters, like the names AWS gives its data files.
    return base64.b32encode(os.urandom(16)).decode("ascii").lower().rstrip("=")


def iso_millis(t: float) -> str:
    d = _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------- plain JSON


def plain_json(item: Dict[str, Any]) -> bytes:
    """A wire item as plain JSON: numbers written as exact JSON numbers, binary as base64.

    Not lossless for every type (sets become lists, binary becomes a base64 string); the
    ``dynamodb-json`` format is.
    """
    parts: List[str] = []
    _plain_map(item, parts)
    return "".join(parts).encode("utf-8")


def _plain_map(m: Dict[str, Any], out: List[str]) -> None:
    out.append("{")
    first = True
    for k, v in m.items():
        if not first:
            out.append(",")
        first = False
        out.append(orjson.dumps(k).decode())
        out.append(":")
        _plain_value(v, out)
    out.append("}")


def _plain_value(v: Dict[str, Any], out: List[str]) -> None:
    if not v:  # an untagged empty map (DynamoDB Local stream quirk)
        out.append("{}")
        return
    ((t, x),) = v.items()
    if t == "S":
        out.append(orjson.dumps(x).decode())
    elif t == "N":
        out.append(canonical_number(x))
    elif t in ("B",):
        out.append(orjson.dumps(x).decode())
    elif t == "BOOL":
        out.append("true" if x else "false")
    elif t == "NULL":
        out.append("null")
    elif t in ("SS", "BS"):
        out.append(orjson.dumps(list(x)).decode())
    elif t == "NS":
        out.append("[" + ",".join(canonical_number(e) for e in x) + "]")
    elif t == "L":
        out.append("[")
        for i, e in enumerate(x):
            if i:
                out.append(",")
            _plain_value(e, out)
        out.append("]")
    elif t == "M":
        _plain_map(x, out)
    else:
        out.append("null")


# --------------------------------------------------------------------------- one data file


class _HashingWriter:
    """The raw file under the gzip stream: hashes exactly the bytes that land on disk."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.md5 = hashlib.md5()
        self.size = 0

    def write(self, b: bytes) -> int:
        self.md5.update(b)
        self.size += len(b)
        return int(self.fh.write(b))

    def flush(self) -> None:
        self.fh.flush()


def _open_in(folder: str, path: str) -> BinaryIO:
    """``path`` opened for writing in the shared temporary ``folder``, made again if it is gone.

    Every sink of an export (one per Spark task, per process) removes that folder when it closes
    and finds it empty, so another sink may take it away between making it and opening a file in
    it. Once the file is there the folder is not empty and no sink can remove it.
    """
    for _ in range(10):
        try:
            return open(path, "wb")
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
    return open(path, "wb")


class _DataFile:
    def __init__(self, tmp_dir: str, export_id: str, level: int, ext: str = ".json.gz") -> None:
        self.name = _file_name()
        self.ext = ext
        self.tmp = os.path.join(tmp_dir, f"{leftovers.owned(PART_PREFIX)}{export_id}-{self.name}{ext}")
        self._fh = _open_in(tmp_dir, self.tmp)
        self._raw = _HashingWriter(self._fh)
        # mtime=0 and no file name in the header: the same items give the same bytes.
        self._gz = gzip.GzipFile(filename="", fileobj=self._raw, mode="wb", compresslevel=level, mtime=0)
        self.items = 0
        self.bytes = 0

    def write(self, line: bytes) -> None:
        if _CRASH_TESTING:
            # Crash tests kill the process with half a line in the file (see crashpoints.py).
            self._gz.write(line[: len(line) // 2])
            crash_point("mid_export_line")
            line = line[len(line) // 2:]
        self._gz.write(line)
        self.items += 1
        self.bytes += len(line)

    def finish(self) -> str:
        """Close the gzip stream and fsync; returns the base64 MD5 of the compressed file."""
        self._gz.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return base64.b64encode(self._raw.md5.digest()).decode("ascii")

    def discard(self) -> None:
        try:
            self._gz.close()
            self._fh.close()
        finally:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass


# --------------------------------------------------------------------------- the sink


class FileSink(SinkBase):
    """Pipeline sink writing data files of one export; see the module docstring."""

    buffers = True

    def __init__(
        self,
        storage: Storage,
        dest: str,
        *,
        fmt: str = "dynamodb-json",
        file_size: int = DEFAULT_FILE_SIZE,
        commit_every: float = 30.0,
        s3_prefix: Optional[str] = None,
        compresslevel: int = 6,
        clock: Callable[[], float] = time.monotonic,
        export_id: Optional[str] = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        self.storage = storage
        self.dest = dest
        self.fmt = fmt
        self.file_size = max(1, file_size)
        self.commit_every = commit_every
        self.s3_prefix = s3_prefix  # key prefix inside the bucket ("" for the root), None if local
        self.level = compresslevel
        self.clock = clock
        self.export_id = export_id or new_export_id()
        self.started_at = time.time()
        self._cond = threading.Condition()
        self._active = 0
        self._gating = False
        self._open: Dict[int, _DataFile] = {}
        self._pending: List[Dict[str, Any]] = []  # finished, not yet covered by a checkpoint
        self.committed: List[Dict[str, Any]] = []
        self._last_commit = clock()
        self._started_written = False
        self._tmp_dir: Optional[str] = None
        self.bytes_written = 0

    # ------------------------------------------------------------------ paths

    @property
    def root(self) -> str:
        return self.storage.join(self.dest, "AWSDynamoDB", self.export_id)

    def key_of(self, rel: str) -> str:
        """A path inside the export as AWS names it: relative to the bucket root."""
        k = f"AWSDynamoDB/{self.export_id}/{rel}"
        return f"{self.s3_prefix.strip('/')}/{k}" if self.s3_prefix else k

    def _tmp(self) -> str:
        if self._tmp_dir is None:
            self._tmp_dir = self.storage.temp_dir(self.dest)
            # Unfinished files of exports killed midway (this one's, resumed now, or any other's
            # restarted or given up): their process is gone, and nothing will finish them.
            leftovers.sweep(self._tmp_dir, PART_PREFIX)
        return self._tmp_dir

    def _ensure_started(self) -> None:
        if not self._started_written:
            self.storage.write_bytes(self.storage.join(self.root, "_started"), b"")
            self._started_written = True

    # ------------------------------------------------------------------ writes

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        with self._cond:
            while self._gating:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def write(self, ops: List[Op]) -> BatchResult:
        if not ops:
            return BatchResult()
        with self._writing():
            tid = threading.get_ident()
            f = self._open.get(tid)
            for op in ops:
                if op.kind == DELETE:
                    raise ValueError("an export only writes items")  # the export source never deletes
                if f is None:
                    with self._cond:
                        self._ensure_started()
                    f = self._open[tid] = _DataFile(self._tmp(), self.export_id, self.level, EXTENSION[self.fmt])
                if self.fmt == "dynamodb-json":
                    f.write(b'{"Item":' + op.enc + b"}\n")
                elif self.fmt == "ion":
                    f.write(ion.item_line(op.wire()))
                else:
                    f.write(plain_json(op.wire()) + b"\n")
                if f.bytes >= self.file_size:
                    del self._open[tid]
                    self._finish(f)
                    f = None
        return BatchResult(written=len(ops))

    def _finish(self, f: _DataFile) -> None:
        md5 = f.finish()
        rel = f"data/{f.name}{f.ext}"
        etag = self.storage.put_file(f.tmp, self.storage.join(self.root, rel))
        entry = {"itemCount": f.items, "md5Checksum": md5, "etag": etag, "dataFileS3Key": self.key_of(rel)}
        with self._cond:
            self._pending.append(entry)
            self.bytes_written += f.bytes

    def _finish_all(self) -> None:
        files, self._open = list(self._open.values()), {}
        for f in files:
            self._finish(f)
        with self._cond:
            self.committed.extend(self._pending)
            self._pending = []

    # ------------------------------------------------------------------ checkpoints

    def commit_due(self, final: bool) -> bool:
        return final or self.clock() - self._last_commit >= self.commit_every

    @contextlib.contextmanager
    def commit(self, final: bool) -> Iterator[Optional[Dict[str, Any]]]:
        """Around each checkpoint save (see invariant 1): yields the committed files, or None."""
        if not self.commit_due(final):
            yield None
            return
        with self._cond:
            self._gating = True
            while self._active:
                self._cond.wait()
        try:
            self._finish_all()
            self._last_commit = self.clock()
            yield self.checkpoint_extra()
        finally:
            with self._cond:
                self._gating = False
                self._cond.notify_all()

    def checkpoint_extra(self) -> Dict[str, Any]:
        return {"export_id": self.export_id, "started_at": self.started_at, "files": list(self.committed),
                "bytes": self.bytes_written}

    def restore(self, extra: Dict[str, Any]) -> None:
        """Continue the export a checkpoint describes; delete files it does not count."""
        if not extra.get("export_id"):
            return
        self.export_id = str(extra["export_id"])
        self.started_at = float(extra.get("started_at") or self.started_at)
        self.committed = list(extra.get("files") or [])
        self.bytes_written = int(extra.get("bytes") or 0)
        self._started_written = True
        self.delete_unlisted()  # finished after the last checkpoint: re-exported now
        tmp = self._tmp()
        if os.path.isdir(tmp):
            # This export's unfinished files, whoever wrote them (the sweep keeps those of another
            # host or pid namespace: a pod restarted as another, a container): no worker runs yet,
            # and nothing will finish them. Also as 0.1 named them, unowned.
            for n in os.listdir(tmp):
                # part-HOST-PID-<export id>-... (host and pid hold no '-'), or <export id>-...
                rest = n[len(PART_PREFIX):].split("-", 2)[-1] if n.startswith(PART_PREFIX) else n
                if rest.startswith(self.export_id + "-"):
                    try:
                        os.unlink(os.path.join(tmp, n))
                    except FileNotFoundError:
                        pass

    def delete_unlisted(self) -> int:
        """Delete the data files the committed list does not name (invariant 2); returns how many."""
        keep = {e["dataFileS3Key"].rsplit("/", 1)[-1] for e in self.committed}
        data = self.storage.join(self.root, "data")
        n = 0
        if self.storage.is_dir(data):
            for path, _size in self.storage.list_files(data):
                if path.rsplit("/", 1)[-1] not in keep:
                    self.storage.delete(path)
                    n += 1
        return n

    def close(self) -> None:
        """Finish every open file (idempotent). Without checkpoints, this commits them."""
        with self._cond:
            while self._active:
                self._cond.wait()
        self._finish_all()
        if self._tmp_dir is not None and os.path.isdir(self._tmp_dir):
            try:
                os.rmdir(self._tmp_dir)  # only when empty
            except OSError:
                pass

    # ------------------------------------------------------------------ manifests

    def ensure_a_file(self) -> None:
        """An export of no items still lists one (empty) data file, as AWS's does."""
        if not self.committed:
            self._ensure_started()
            self._finish(_DataFile(self._tmp(), self.export_id, self.level, EXTENSION[self.fmt]))
            with self._cond:
                self.committed.extend(self._pending)
                self._pending = []

    def write_manifests(self, summary: Dict[str, Any]) -> Dict[str, Any]:
        """Write manifest-files.json, then manifest-summary.json (the completion marker)."""
        self._ensure_started()
        files = sorted(self.committed, key=lambda e: e["dataFileS3Key"])
        lines = b"".join(orjson.dumps(e) + b"\n" for e in files)
        self._write_with_md5("manifest-files.json", lines)
        given = {
            "version": "2020-06-30",
            **summary,
            "manifestFilesS3Key": self.key_of("manifest-files.json"),
            "billedSizeBytes": self.bytes_written,
            "itemCount": sum(int(e["itemCount"]) for e in files),
            "outputFormat": OUTPUT_FORMAT[self.fmt],
        }
        # AWS's field order for the export type; any other field after them.
        order = SUMMARY_FIELDS.get(str(given.get("exportType")), SUMMARY_FIELDS["FULL_EXPORT"])
        full = {k: given[k] for k in order if k in given}
        full.update({k: v for k, v in given.items() if k not in full})
        self._write_with_md5("manifest-summary.json", orjson.dumps(full))
        return full

    def _write_with_md5(self, name: str, data: bytes) -> None:
        self.storage.write_bytes(self.storage.join(self.root, name), data)
        md5 = base64.b64encode(hashlib.md5(data).digest())
        self.storage.write_bytes(self.storage.join(self.root, name[: -len(".json")] + ".md5"), md5)


@dataclass(frozen=True)
class ExportFilesSpec:
    """An export's data files at ``dest`` (picklable). ``prepare`` fixes the ExportId once, on the
    driver, so every worker writes into the same export; ``finalize`` writes the manifests."""

    dest: str
    s3: Optional[S3Settings] = None
    fmt: str = "dynamodb-json"
    file_size: int = DEFAULT_FILE_SIZE
    commit_every: float = 30.0
    s3_prefix: Optional[str] = None
    # export_summary's table fields: table_arn, table_id, bucket, prefix
    summary: Mapping[str, Any] = field(default_factory=dict)
    export_id: Optional[str] = None
    started_at: Optional[float] = None
    # files and bytes a resumed export had committed before this run
    base_files: Sequence[Mapping[str, Any]] = ()
    base_bytes: int = 0

    def _sink(self, **kw: Any) -> FileSink:
        return FileSink(storage_for(self.dest, self.s3), self.dest, fmt=self.fmt, file_size=self.file_size,
                        commit_every=self.commit_every, s3_prefix=self.s3_prefix, export_id=self.export_id, **kw)

    def prepare(self, saved: Optional[Mapping[str, Any]]) -> "ExportFilesSpec":
        """Continue the export a checkpoint describes (deleting files it does not count), or start one."""
        sink = self._sink()
        if saved and saved.get("export_id"):
            sink.restore(dict(saved))
        return replace(self, export_id=sink.export_id, started_at=sink.started_at,
                       base_files=tuple(sink.committed), base_bytes=sink.bytes_written)

    def build(self, res: Resources) -> FileSink:
        sink = self._sink()
        sink.started_at = self.started_at or sink.started_at
        # A resumed export's folder already has its _started marker.
        sink._started_written = bool(self.base_files)
        return sink

    def merge(self, states: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        files = list(self.base_files)
        nbytes = self.base_bytes
        for st in states:
            files.extend(st.get("files") or [])
            nbytes += int(st.get("bytes") or 0)
        return {"export_id": self.export_id, "started_at": self.started_at, "files": files, "bytes": nbytes}

    def finalize(self, state: Mapping[str, Any], report: "Report") -> None:
        """Write the manifests (the summary last: the export is complete) and report them."""
        sink = self._sink()
        sink.started_at = float(state.get("started_at") or sink.started_at)
        sink.committed = list(state.get("files") or [])
        sink.bytes_written = int(state.get("bytes") or 0)
        # Files no worker committed (a Spark task attempt that failed after finishing one) are
        # in no manifest: delete them before the manifests say the export is complete.
        orphans = sink.delete_unlisted()
        if orphans:
            report.extra["orphan_files_deleted"] = orphans
        summary = export_summary(sink.export_id, sink.started_at, **self.summary)
        summary["exportType"] = "FULL_EXPORT"
        sink.ensure_a_file()
        sink.close()  # removes its temporary folder again
        manifest = sink.write_manifests(summary)
        report.extra.update({"export_id": sink.export_id, "export_path": sink.root, "files": len(sink.committed),
                             "items_exported": manifest["itemCount"]})


def export_summary(export_id: str, started_at: float, *, table_arn: str, table_id: Optional[str],
                   bucket: Optional[str], prefix: Optional[str], sse: Optional[str] = None,
                   sse_kms_key_id: Optional[str] = None) -> Dict[str, Any]:
    """The manifest-summary.json fields known before the manifests are written (AWS's names)."""
    return {
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": iso_millis(started_at),
        "endTime": iso_millis(time.time()),
        "tableArn": table_arn,
        "tableId": table_id,
        "exportTime": iso_millis(started_at),
        "s3Bucket": bucket,
        "s3Prefix": prefix or None,
        # S3 encrypts every new object: with the bucket's default (SSE-S3 unless it says KMS,
        # see bucket_encryption); a local folder has none.
        "s3SseAlgorithm": (sse or "AES256") if bucket else None,
        "s3SseKmsKeyId": sse_kms_key_id if bucket else None,
    }


# manifest-summary.json fields in AWS's order, per export type (docs/files.md lists them).
SUMMARY_FIELDS = {
    "FULL_EXPORT": ("version", "exportArn", "startTime", "endTime", "tableArn", "tableId", "exportTime", "s3Bucket",
                    "s3Prefix", "s3SseAlgorithm", "s3SseKmsKeyId", "manifestFilesS3Key", "billedSizeBytes",
                    "itemCount", "outputFormat", "exportType"),
    "INCREMENTAL_EXPORT": ("version", "exportArn", "startTime", "endTime", "tableArn", "tableId", "exportFromTime",
                           "exportToTime", "s3Bucket", "s3Prefix", "s3SseAlgorithm", "s3SseKmsKeyId",
                           "manifestFilesS3Key", "billedSizeBytes", "itemCount", "outputFormat", "outputView",
                           "exportType"),
}
