"""Durable job state: per-unit positions and committed counters, saved atomically.

On disk (JSON, versioned)::

    {"version": 1, "fingerprint": "<sha256 of the job identity>", "job": {...identity...},
     "positions": {"<unit>": <LastEvaluatedKey | line | sequence number>},
     "done": ["<unit>", ...], "counters": {...}, "state": "running" | "done", "extra": {...},
     "checksum": "sha256:<of all the above>", "saved_at": ...}

The checksum makes a hand-edited checkpoint (a position moved, units marked done) a refused
resume instead of thousands of silently skipped items; ``--force`` resumes from it anyway.

Saving is temp file -> fsync -> os.replace -> fsync of the folder, so a crash (even kill -9 in
the middle of a save) leaves either the old or the new checkpoint, never a torn one.
Invariant: a position is only written after every item before it was acknowledged by the sink
(the pipeline's tickets guarantee it; see pipeline.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

import orjson

from ..errors import FingerprintMismatchError, UsageError
from . import leftovers
from .crashpoints import crash_point

VERSION = 1


def fingerprint(identity: Dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()


# Identity fields that are *how* a job runs rather than *what* it moves. They stay in the
# fingerprint but not in the default path, so changing one and running --resume meets the old
# checkpoint and is refused with a clear message (instead of silently starting a fresh run).
HOW_FIELDS = frozenset(("transform", "transform_hash", "mode", "dry_run", "segments", "options", "format",
                        "compression", "on_error", "inputs", "input_format", "csv_header", "csv_delimiter"))


def default_path(kind: str, identity: Dict[str, Any]) -> str:
    """``.ddbmigrate/<kind>-<names>-<hash8>.checkpoint.json`` in the working directory.

    The hash covers where the data comes from and goes to (tables, endpoints, files), not the
    options (see HOW_FIELDS): one job has one default checkpoint whatever options it is rerun with.
    """
    names = "-".join(str(v) for v in identity.get("names", []))[:80] or kind
    names = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in names)
    where = {k: v for k, v in identity.items() if k not in HOW_FIELDS}
    return os.path.join(".ddbmigrate", f"{kind}-{names}-{fingerprint(where)[:8]}.checkpoint.json")


@dataclass
class CheckpointState:
    fingerprint: str
    job: Dict[str, Any]
    positions: Dict[str, Any] = field(default_factory=dict)
    done: List[str] = field(default_factory=list)
    counters: Dict[str, int] = field(default_factory=dict)
    state: str = "running"
    extra: Dict[str, Any] = field(default_factory=dict)


class CheckpointStore:
    def __init__(self, path: str) -> None:
        self.path = path

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def load(self, *, verify: bool = True) -> Optional[CheckpointState]:
        """The saved state, or None. ``verify``: refuse one whose checksum does not match."""
        try:
            with open(self.path, "rb") as fh:
                data = orjson.loads(fh.read())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as e:
            raise UsageError(f"checkpoint {self.path} is unreadable: {e}; use --restart to start over") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise UsageError(f"checkpoint {self.path} has version {version}, expected {VERSION}; "
                             "use --restart to start over")
        saved_sum = data.get("checksum")
        # A checkpoint from before checksums (0.1) has none: it is read as it is.
        if verify and saved_sum is not None and saved_sum != _checksum(data):
            raise CheckpointTamperedError(
                f"checkpoint {self.path} does not match its checksum (edited by hand, or damaged): its "
                "positions cannot be trusted; use --restart to start over, or --force to resume from it anyway",
                file=self.path)
        try:
            return CheckpointState(
                fingerprint=str(data["fingerprint"]), job=dict(data.get("job") or {}),
                positions=dict(data.get("positions") or {}), done=list(data.get("done") or []),
                counters={str(k): int(v) for k, v in (data.get("counters") or {}).items()},
                state=str(data.get("state", "running")), extra=dict(data.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"checkpoint {self.path} is malformed ({type(e).__name__}: {e}); "
                             "use --restart to start over") from None

    def save(self, st: CheckpointState) -> None:
        body = {
            "version": VERSION,
            "fingerprint": st.fingerprint,
            "job": st.job,
            "positions": st.positions,
            "done": sorted(st.done),
            "counters": st.counters,
            "state": st.state,
            "extra": st.extra,
        }
        data = orjson.loads(orjson.dumps(body, default=str))  # exactly what a load will see
        data["checksum"] = _checksum(data)
        data["saved_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        atomic_write(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2))

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _checksum(data: Dict[str, Any]) -> str:
    """sha256 of everything a resume trusts (all but the checksum itself and the save time)."""
    body = {k: v for k, v in data.items() if k not in ("checksum", "saved_at")}
    return "sha256:" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class CheckpointTamperedError(UsageError):
    """A checkpoint whose content no longer matches the checksum it was saved with."""


# The temporary file of an atomic write is named for its writer (state/leftovers.py): one that a
# kill -9 left is deleted by the next process writing in that folder. A write takes milliseconds:
# one an hour old has no writer left, whatever its name says.
TORN_PREFIX = ".tmp-ddbmigrate-"
TORN_AGE_S = 3600.0


def atomic_write(path: str, data: bytes) -> None:
    if path.startswith(("/dev/", "/proc/")):
        # /dev/stdout, /dev/null, a terminal: written into, never replaced (as root, a rename over
        # /dev/full made it a regular file), and appended to: /dev/stdout of `>> run.log` is that
        # file, which "wb" would empty.
        with open(path, "ab") as fh:
            fh.write(data)
        return
    try:
        special = os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path)
    except OSError:
        special = False
    if special:  # a FIFO: written into
        with open(path, "wb") as fh:
            fh.write(data)
        return
    # Through a symbolic link to the file it names: renamed over, the link itself would become a
    # file and the file the user pointed at would never be written.
    path = os.path.realpath(path) if os.path.islink(path) else path
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=leftovers.claim(folder, TORN_PREFIX, max_age=TORN_AGE_S), dir=folder)
    # mkstemp creates 0600; a report or manifest should get the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as fh:
            half = len(data) // 2
            fh.write(data[:half])
            fh.flush()  # so a crash here really leaves a torn half on disk (one extra syscall)
            crash_point("mid_checkpoint_write")
            fh.write(data[half:])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


_WARNED_FRESH: Set[str] = set()


# What --force may change under a resume: how items are transformed and written, which the user
# may fix mid-job on purpose (a transform bug, a mode). Anything else (source, target, folder,
# format, files, CSV parsing) makes the saved positions point at other data.
FORCEABLE = frozenset(("transform", "transform_hash", "mode", "dry_run", "on_error", "version_attribute"))


_SAID = {"dest": "destination",
         "csv_header": "--csv-header", "csv_delimiter": "--csv-delimiter", "input_format": "--input-format"}


def _inputs_changed(old: Any, new: Any) -> str:
    """Which input files changed between two identities' ``inputs`` (unit -> version)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "the input files are not known to be the ones it read (it was made by an earlier version)"
    changed = sorted(u for u in new if u in old and old[u] != new[u])
    added, gone = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    parts = []
    for what, units in (("rewritten", changed), ("added", added), ("removed", gone)):
        if units:
            more = f" and {len(units) - 3} more" if len(units) > 3 else ""
            parts.append(f"{', '.join(units[:3])}{more} {what}")
    return "the input files changed (" + "; ".join(parts) + ")" if parts else "the input files changed"


def open_checkpoint(path: str, identity: Dict[str, Any], *, resume: bool, restart: bool, force: bool) -> tuple[CheckpointStore, Optional[CheckpointState]]:
    """Open the job's checkpoint: the state to resume from, or None to start fresh.

    An existing checkpoint without --resume or --restart is refused (so a second run never
    silently starts over nor silently continues); a fingerprint or checksum mismatch needs --force.
    """
    store = CheckpointStore(path)
    fp = fingerprint(identity)
    try:
        existing = store.load(verify=not force and not restart)
    except CheckpointTamperedError:
        if resume:
            raise
        existing = store.load(verify=False)  # not resumed from: the usual refusal below says what to do
    if existing is None or restart:
        if resume and existing is None and not restart and path not in _WARNED_FRESH:
            # Nothing to resume: start fresh, which is what the user wants anyway, but said (run
            # from another folder, or a --checkpoint mistyped, this redoes the whole job). Once:
            # a job's builder and its driver both open the same path.
            _WARNED_FRESH.add(path)
            logging.getLogger("ddbmigrate").warning(
                "--resume: no checkpoint at %s, so this run starts from the beginning", path)
        return store, None
    if existing.state == "done" and not resume:
        return store, None
    if not resume:
        raise UsageError(
            f"a checkpoint of an unfinished run exists at {path}: add --resume to continue it or "
            "--restart to start over"
        )
    if existing.fingerprint != fp and existing.state == "done":
        # Not even with --force: resuming a finished run of another definition (another target,
        # say) would report its counts as this job's and write nothing.
        diff = sorted(k for k in set(identity) | set(existing.job) if identity.get(k) != existing.job.get(k))
        raise FingerprintMismatchError(
            f"checkpoint {path} is of a finished run of a different job (differs in: {', '.join(diff) or 'identity'}); "
            "use --restart to run this one"
        )
    old_seg, new_seg = existing.job.get("segments"), identity.get("segments")
    if old_seg is not None and new_seg is not None and old_seg != new_seg and existing.state != "done":
        # Not even with --force: a position (and a finished segment) is a place in a scan of that
        # many segments. Read as another count's, whole ranges are skipped as done, silently.
        raise FingerprintMismatchError(
            f"checkpoint {path} was made with {old_seg} scan segments, and its positions mean nothing for "
            f"{new_seg}: resume with --segments {old_seg} (or without --segments), or --restart to start over")
    if existing.fingerprint != fp:
        diff = sorted(k for k in set(identity) | set(existing.job) if identity.get(k) != existing.job.get(k))
        # Input files changed: refused unless --force says it is on purpose (a file that failed its
        # checks replaced by its fixed copy is read on from where it stopped); see _inputs_changed.
        fixed = [k for k in diff if k not in FORCEABLE and k not in ("inputs", "files")]
        if fixed:
            # Not even with --force: the positions are places in *that* source, and what was
            # written went to *that* target or folder, in *that* format. Resumed elsewhere, the
            # items before the positions are never written where this job writes, and the run
            # says done (a copy to another table left 326 items out of it, exit 0).
            raise FingerprintMismatchError(
                f"checkpoint {path} is of a job with another {', '.join(_SAID.get(k, k) for k in fixed if k != 'names' or len(fixed) == 1)}: its "
                "positions mean nothing for this one, even with --force; use --restart to start over (or the "
                "old options to resume it)")
        if not force and "inputs" in diff and all(k in ("inputs", "files") for k in diff):
            raise FingerprintMismatchError(
                f"checkpoint {path}: {_inputs_changed(existing.job.get('inputs'), identity.get('inputs'))} since "
                "it was saved. A resume reads each file on from the record it stopped at, so a file rewritten "
                "with other records would lose some: --restart to start over, or, if you replaced a file that "
                "failed its checks with its fixed copy, --resume --force")
        if not force:
            raise FingerprintMismatchError(
                f"checkpoint {path} belongs to a different job (differs in: {', '.join(diff) or 'identity'}); "
                "use --force to resume anyway or --restart to start over"
            )
    if existing.state == "done":
        # Resuming a finished job: nothing left, but keep its counters for the report.
        return store, existing
    return store, existing


def dumps_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
