"""The replicator's status file: what a running (or stopped) replication last reported.

``StatusWriter`` rewrites ``<checkpoint base>.status.json`` every second from its own thread;
``read_status`` reads it back for ``replicate status`` and the cutover gate, and says whether the
replicator is still alive (a running state, a recent update and a live pid).

Invariants:
1. The file is replaced atomically (``checkpoint.atomic_write``), so a reader never sees a torn
   status; it holds counts and lag, never an item body.
2. A status problem never stops a replication: write errors are swallowed and the next write
   catches up.
3. One replicator per checkpoint: a second one is refused while another holds the checkpoint's
   lock (an exclusive ``flock``, released by the kernel however its holder ends, kill -9
   included), or while the status file shows a live one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import orjson

from ..config import TableRef
from ..errors import UsageError
from ..logs import redact_obj
from ..reporting.report import utcnow
from .checkpoint import atomic_write, default_path
from .leftovers import pid_alive, process_started
from .paths import output_path_problem


def status_path_for(source: TableRef, target: TableRef, checkpoint: Optional[str] = None) -> str:
    """Default status file: next to the replication checkpoint."""
    meta = checkpoint or default_path("replicate", replication_identity(source, target))
    base = meta[:-len(".checkpoint.json")] if meta.endswith(".checkpoint.json") else meta
    return base + ".status.json"


def stop_request_path(status_file: str) -> str:
    """The file ``replicate stop`` creates to ask the replicator of ``status_file`` to stop."""
    base = status_file[:-len(".status.json")] if status_file.endswith(".status.json") else status_file
    return base + ".stop"


def request_stop(status_file: str) -> None:
    atomic_write(stop_request_path(status_file), orjson.dumps({"requested_at": time.time(), "by": os.getpid()}))


def stop_requested(status_file: str) -> bool:
    return os.path.exists(stop_request_path(status_file))


def clear_stop_request(status_file: str) -> None:
    try:
        os.unlink(stop_request_path(status_file))
    except FileNotFoundError:
        pass


def _lock_now(fd: int) -> None:
    """Lock ``fd`` for this process, or raise BlockingIOError when another holds it. (fcntl is
    imported here, not at the top: ``import ddbmigrate`` must work where it does not exist.)"""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as e:
            raise BlockingIOError(*e.args) from None
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def check_status_path(path: str, given: bool) -> None:
    """Refuse, before any work, a status file that could never be written (its folder is a file,
    or not writable): the replication would otherwise fail later, or run with no status at all."""
    def refuse(why: str) -> None:
        raise UsageError(f"--status-file {path}: {why}" if given else
                         f"the status file {path} cannot be written ({why}); pass --status-file PATH", file=path)

    problem = output_path_problem(path, replaced=True)
    if problem:
        refuse(problem)


def replication_identity(source: TableRef, target: TableRef) -> Dict[str, Any]:
    """Which tables a replication joins: names its checkpoint and status file."""
    return {"job": "replicate", "names": [source.table, target.table], "source": source.identity(),
            "target": target.identity()}


class StatusWriter:
    """Writes the status file every ``every`` seconds from its own thread (atomic replace)."""

    def __init__(self, path: Optional[str], base: Dict[str, Any], every: float = 1.0) -> None:
        self.path = path
        self.base = base
        self.every = every
        self.state = "starting"
        self.error: Optional[str] = None
        self.fields: Callable[[], Dict[str, Any]] = lambda: {}
        self.state_fn: Optional[Callable[[], str]] = None  # live state while running
        self._final = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.started = False  # its first write is this run's: from then on the file is this run's

    def start(self) -> None:
        self.started = True
        if self.path is None:
            return
        self.write()
        self._thread = threading.Thread(target=self._loop, name="replicate-status", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.write()
            except Exception:  # a status problem must never stop a replication
                pass

    def set(self, state: str, fields: Optional[Callable[[], Dict[str, Any]]] = None,
            state_fn: Optional[Callable[[], str]] = None) -> None:
        self.state = state
        if fields is not None:
            self.fields = fields
        if state_fn is not None:
            self.state_fn = state_fn
        try:
            self.write()
        except OSError:
            pass

    def write(self) -> None:
        if self.path is None:
            return
        doc = dict(self.base)
        try:
            doc.update(self.fields())
        except Exception:  # a torn read of live metrics: the next write has them
            pass
        state = self.state_fn() if self.state_fn is not None and not self._final else self.state
        doc.update({"state": state, "updated_at": time.time(), "updated": utcnow(), "pid": os.getpid(),
                    "pid_started": process_started()})
        if self.error:
            doc["error"] = self.error
        atomic_write(self.path, orjson.dumps(redact_obj(doc), option=orjson.OPT_INDENT_2, default=str))

    def stop(self, state: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._final = True
        self.set(state)


def read_status(path: str) -> Dict[str, Any]:
    """The status a running (or stopped) replicator last wrote; ``alive`` tells whether it still runs."""
    try:
        with open(path, "rb") as fh:
            doc = orjson.loads(fh.read())
    except FileNotFoundError:
        raise UsageError(f"no replication status at {path}: is `ddbmigrate replicate` running in this folder? "
                         "(or pass --status-file)") from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise UsageError(f"replication status {path} is unreadable: {e}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"replication status {path} is not a JSON object")
    age = time.time() - float(doc.get("updated_at") or 0)
    doc["age_seconds"] = round(age, 1)
    running = doc.get("state") in ("starting", "backfill", "replaying", "tailing")
    doc["alive"] = running and age < max(10.0, 5 * float(doc.get("status_every") or 1.0)) and pid_alive(
        doc.get("pid"), doc.get("pid_started"))
    if not doc["alive"]:
        # A replicator that is not running has no lag to speak of: its last figures are history,
        # one stopped cleanly too (the source goes on changing after the stop: "caught up" at
        # its last figure read true while the table took hundreds of writes it never applied).
        doc["last_lag_seconds"] = doc.get("lag_seconds")
        doc["last_caught_up"] = bool(doc.get("caught_up"))
        doc["lag_seconds"] = None
        doc["caught_up"] = False
        if running:
            doc["state"] = "dead"  # it said it was running, but it no longer updates its status
    return doc


def note_refusal(path: str, error: str, resume: bool) -> None:
    """Say in the status file at ``path`` that a run of its replication was refused before it
    started (``error``: why), beside the state of the last run that did run, left as it was: its
    state, figures and ``updated_at`` (which tells whether it is alive) are that run's, and a
    refused ``--resume`` is neither "running" nor "caught up". ``refused`` holds ``at`` (UTC),
    ``at_epoch``, ``error``, ``resume`` and ``pid``; the next run that starts writes its own status,
    without it. Nothing is written when there is no status file (no run ever started here: there
    is nothing stale to correct) or while a replicator is alive (its own status stands, and the
    refusal was of a second one). Like every status write, a failure here is swallowed."""
    try:
        if not read_status(path).get("alive"):
            with open(path, "rb") as fh:
                doc = orjson.loads(fh.read())
            if isinstance(doc, dict):
                doc["refused"] = {"at": utcnow(), "at_epoch": time.time(), "error": error, "resume": resume,
                                  "pid": os.getpid()}
                atomic_write(path, orjson.dumps(redact_obj(doc), option=orjson.OPT_INDENT_2, default=str))
    except Exception:  # no status file, an unreadable one, a folder that takes no file
        pass


def refuse_second_replicator(status_file: str) -> None:
    """Two replicators on one checkpoint would fight over it: refuse while another one is alive."""
    if not os.path.exists(status_file):
        return
    try:
        st = read_status(status_file)
    except UsageError:
        return
    if st.get("alive") and int(st.get("pid") or 0) != os.getpid():
        raise UsageError(f"another replicator (pid {st.get('pid')}) is running for these tables (status "
                         f"{status_file}); stop it first")


class RunLock:
    """The exclusive lock of one job's checkpoint (a replication's: its journal too), held for the
    run's life: two runs of one job at once would each write its checkpoint and dead letters, and
    a --restart would empty the files the other is writing.

    For a replication the status file cannot be the guard: a second replicator given another
    --status-file would never see the first one's. ``flock`` on a file next to the checkpoint
    guards what the two would really share, and the kernel drops it when its holder dies (kill -9
    leaves no stale lock). ``busy``: the refusal, with ``{who}`` (the holder's pid) and ``{path}``.
    """

    # Held by this process: path -> [fd, holders]. A job's own phases (copy --clean-target takes
    # the copy's lock before its clean, then its driver takes it again) share one flock.
    _held: Dict[str, List[int]] = {}
    _guard = threading.Lock()

    def __init__(self, path: str, busy: str = "another replicator{who} is running for these tables (lock {path}); "
                                              "stop it first") -> None:
        self.path = path
        self.busy = busy
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        key = os.path.abspath(self.path)
        with RunLock._guard:
            held = RunLock._held.get(key)
            if held is not None:
                held[1] += 1
                self._fd = held[0]
                return
            self._take()
            assert self._fd is not None
            RunLock._held[key] = [self._fd, 1]

    def _take(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the checkpoint folder {folder}: {e.strerror}", file=folder) from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise UsageError(f"cannot open the lock {self.path}: {e.strerror}",
                                 file=self.path) from None
            try:
                _lock_now(fd)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f" (pid {holder})" if holder else ""
                raise UsageError(self.busy.format(who=who, path=self.path)) from None
            except OSError as e:
                os.close(fd)
                raise UsageError(f"cannot lock {self.path}: {e.strerror}", file=self.path) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            # The previous holder removed the file between our open and our lock: the lock we
            # hold is on a file nobody else will open. Take the one at the path.
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        fd = self._fd
        if fd is None:
            return
        key = os.path.abspath(self.path)
        with RunLock._guard:
            held = RunLock._held.get(key)
            self._fd = None
            if held is not None and held[1] > 1:
                held[1] -= 1
                return
            RunLock._held.pop(key, None)
            try:
                os.unlink(self.path)  # while still held: whoever opens the path now gets a new file
            except OSError:
                pass
            os.close(fd)


def _read_pid(fd: int) -> Optional[int]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)  # (not os.pread: Windows has none)
        return int(os.read(fd, 32).decode("ascii").strip() or 0) or None
    except (OSError, ValueError):
        return None


# A job's refusal of a second run of itself (the replicator says its own).
RUN_BUSY = "another run of this job{who} is running (lock {path}): wait for it to end, or stop it, then rerun"


def pair_lock(source: TableRef, target: TableRef) -> Optional[RunLock]:
    """The lock of a source/target pair on this machine, whatever checkpoint or folder a
    replicator was given (its checkpoint's lock alone let a second one run with another
    --checkpoint). The pair is the tables where they are (region, endpoint, role) and the profiles
    that reach them (same-named tables of two accounts are two pairs). In a folder of the user's
    own in the temp folder, one place whatever the environment (XDG_RUNTIME_DIR is set in a login
    shell and not under cron); None where there is none to be had (the checkpoint's lock still
    holds)."""
    import tempfile

    from .checkpoint import default_path

    folder = os.path.join(tempfile.gettempdir(), f"ddbmigrate-{os.getuid()}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if os.stat(folder).st_uid != os.getuid():
            return None  # another user's folder: not ours to lock in
    except OSError:
        return None
    pair = {**replication_identity(source, target), "profiles": [source.profile, target.profile]}
    name = os.path.basename(lock_path_for(default_path("replicate", pair)))
    return RunLock(os.path.join(folder, name), busy="another replicator{who} is running for these tables "
                   "(with another checkpoint or folder; lock {path}): stop it first")


def lock_path_for(checkpoint_meta: str) -> str:
    """A run's lock file: next to its checkpoint (a replication's, next to its journal state)."""
    return checkpoint_meta.removesuffix(".checkpoint.json") + ".lock"


__all__ = ["RUN_BUSY", "RunLock", "StatusWriter", "check_status_path", "clear_stop_request", "lock_path_for",
           "note_refusal", "pair_lock", "read_status",
           "refuse_second_replicator", "replication_identity", "request_stop", "status_path_for", "stop_request_path",
           "stop_requested"]
