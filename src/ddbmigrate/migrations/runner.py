"""``migrations status | up | down | history | verify``: the folder against the history table.

    files (migrations/NNNN_*.py) ──┐
                                   ├─▶ status: pending | running | interrupted | applied | failed | reverted
                                   │           | reverting | revert_interrupted | revert_failed | changed | missing
    history table ─────────────────┘
    up:   check every file ─▶ create the history table ─▶ take the lock ─▶ refuse changed applied files
          ─▶ refuse a pending one whose revert is unfinished
          ─▶ for each pending (in order, up to --to): record running ─▶ upgrade(ctx)
          ─▶ applied | failed (stop)
    down: check every file ─▶ take the lock ─▶ for each to revert (newest first): record reverting
          ─▶ downgrade(ctx) ─▶ reverted | revert_failed (stop)

Invariants:
1. Every file is loaded and checked, and every applied one compared with its checksum, before
   the first migration runs.
2. ``up`` with nothing pending changes nothing (no history write, no job) and says so.
3. A failed (or interrupted, or crashed "running") migration is resumed by the next ``up``:
   its steps' checkpoints are kept, and each is resumed only by the job that made it (an edited
   file may have put another job at a step's place: see context.py); a migration applied afresh
   (never run, or reverted) starts from clean step checkpoints.
4. Only the lock holder writes migration records: each write is conditional on the lock (see
   history.py); a runner that lost it writes nothing more and stops (LockLostError, exit 75).
5. Migrations are applied in number order: one numbered below the highest applied migration is
   refused (exit 2) unless ``out_of_order`` (``--out-of-order``) says it is meant. A number is
   one migration's for good: a new file with the number of a recorded one whose file is gone (a
   rename) is refused, whatever the flags.
6. A revert is recorded as ``up`` is: ``reverting`` before the downgrade's first step, so a
   runner killed in it leaves a record that says so. A migration whose revert did not finish
   (``reverting``, ``revert_failed``) is finished by ``down`` (its downgrade's finished steps
   are no-ops) and refused by ``up``: its upgrade run afresh over half-reverted data would apply
   a second time what the downgrade had not undone yet.
7. A step that dead-lettered items fails its migration (recorded ``failed``, or
   ``revert_failed``: never ``applied``/``reverted``, its data is not all there) with exit 3;
   a ``ctx.verify`` that found differences, with exit 4 (see context.py).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import socket
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ..config import RunOptions
from ..errors import (
    EXIT_DIFFERENCES,
    EXIT_OK,
    DdbMigrateError,
    FatalError,
    InterruptedError_,
    UsageError,
)
from .context import _JOB_RESUME, RUN_AGAIN, AwsSettings, MigrationContext
from .files import MigrationFile, find, load_all
from .history import DEFAULT_HISTORY_TABLE, DEFAULT_LEASE_SECONDS, History, LockLostError, clip

log = logging.getLogger("ddbmigrate.migrations")

Confirm = Callable[[str], bool]
T = TypeVar("T")
DEFAULT_STATE_DIR = os.path.join(".ddbmigrate", "migrations")


@dataclass
class MigrationStatus:
    """One migration as the folder and the history table see it."""

    id: str
    description: str = ""
    # pending | running | interrupted | applied | failed | reverted | reverting | revert_interrupted |
    # revert_failed | changed | missing
    state: str = "pending"
    checksum: Optional[str] = None  # the file's
    recorded_checksum: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    who: Optional[str] = None
    attempts: int = 0
    error: Optional[str] = None
    summary: List[Dict[str, Any]] = field(default_factory=list)  # the latest run's steps (bounded)
    steps: Dict[str, Any] = field(default_factory=dict)  # totals over all of them (see history.py)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class RunResult:
    """What ``up`` / ``down`` did."""

    action: str
    done: List[str] = field(default_factory=list)
    status: List[MigrationStatus] = field(default_factory=list)
    message: str = ""
    exit_code: int = EXIT_OK

    def to_dict(self) -> Dict[str, Any]:
        return {"action": self.action, "done": self.done, "message": self.message, "exit_code": self.exit_code,
                "migrations": [s.to_dict() for s in self.status]}


@dataclass
class VerifyResult:
    problems: List[str] = field(default_factory=list)
    checked: List[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_DIFFERENCES if self.problems else EXIT_OK

    def to_dict(self) -> Dict[str, Any]:
        return {"problems": self.problems, "checked": self.checked, "exit_code": self.exit_code}


def _history(settings: AwsSettings, table: str, history: Optional[History]) -> History:
    return history if history is not None else History(settings.ref(table))


# A record in one of these states had its data changed by a run, and was not reverted since.
TOUCHED = ("applied", "failed", "running", "reverting", "revert_failed")
# A revert began and did not finish: `down` finishes it, `up` refuses it.
UNFINISHED_REVERT = ("reverting", "revert_failed")


def _runner_gone(lock: Optional[Dict[str, Any]], now: float) -> Optional[str]:
    """Why a migration recorded "running" (or "reverting") is not running now, or None when its
    runner may be: the lock is free (its lease ran out), or its holder was a process of this
    host that is gone. What to run is the caller's to add (see _gone_advice)."""
    if lock is None or float(lock.get("expires_at") or 0) <= now:
        return "its runner is gone (the migrations lock is free)"
    who = str(lock.get("who") or "")
    m = re.fullmatch(r".*@(?P<host>\S+) pid (?P<pid>\d+)", who)
    if m and m.group("host") == socket.gethostname():
        try:
            os.kill(int(m.group("pid")), 0)
        except ProcessLookupError:
            return (f"its runner ({who}) is gone; the lock's lease ends in "
                    f"{float(lock.get('expires_at') or 0) - now:.0f} s")
        except (PermissionError, OverflowError):
            pass
    return None


def _revert_to(rec: Dict[str, Any]) -> str:
    """The ``down --to`` of the revert ``rec`` records (the last run's), ``ID`` when unknown."""
    runs = rec.get("runs") or []
    return str(runs[-1].get("to") or "ID") if runs and runs[-1].get("kind") == "down" else "ID"


def _finish_revert(rec: Dict[str, Any]) -> str:
    return f"run `ddbmigrate migrations down --to {_revert_to(rec)}` again to finish its revert"


def _gone_advice(rec: Dict[str, Any], gone: str) -> str:
    """``gone`` (see _runner_gone) with what to run for the record ``rec``."""
    if rec.get("state") == "reverting":
        return f"{gone}; {_finish_revert(rec)}"
    return f"{gone}; the next `migrations up` resumes it"


def _status(migs: List[MigrationFile], recs: Dict[str, Dict[str, Any]],
            gone: Optional[str] = None) -> List[MigrationStatus]:
    """``gone``: why a migration recorded "running" (or "reverting") is not (see _runner_gone);
    it is then "interrupted" (or "revert_interrupted")."""
    out: List[MigrationStatus] = []
    for m in migs:
        r = recs.get(m.id) or {}
        state = str(r.get("state") or "pending")
        if state == "applied" and r.get("checksum") != m.checksum:
            state = "changed"
        if state in ("running", "reverting") and gone is not None:
            shown = "interrupted" if state == "running" else "revert_interrupted"
            state, r = shown, dict(r, error=r.get("error") or _gone_advice(r, gone))
        out.append(MigrationStatus(
            id=m.id, description=m.description, state=state, checksum=m.checksum,
            recorded_checksum=r.get("checksum"), started_at=r.get("started_at"), finished_at=r.get("finished_at"),
            who=r.get("who"), attempts=int(r.get("attempts") or 0), error=r.get("error"),
            summary=list(r.get("summary") or []), steps=dict(r.get("steps") or {})))
    ids = {m.id for m in migs}
    for mid, r in sorted(recs.items()):
        if mid not in ids:
            out.append(MigrationStatus(id=mid, description=str(r.get("description") or ""), state="missing",
                                       recorded_checksum=r.get("checksum"), started_at=r.get("started_at"),
                                       finished_at=r.get("finished_at"), who=r.get("who"), error=r.get("error")))
    return out


def status(directory: str, settings: AwsSettings, *, history_table: str = DEFAULT_HISTORY_TABLE,
           history: Optional[History] = None) -> List[MigrationStatus]:
    """Each migration of ``directory`` with its state in the history table (nothing is created)."""
    migs = load_all(directory)
    h = _history(settings, history_table, history)
    try:
        recs = h.records()
        gone = None
        if any(r.get("state") in ("running", "reverting") for r in recs.values()):
            # "running" is what the record said when its runner began: the lock says whether it still is.
            gone = _runner_gone(h.lock_item(), h.clock())
        return _status(migs, recs, gone)
    finally:
        if history is None:
            h.close()


def history_records(settings: AwsSettings, *, history_table: str = DEFAULT_HISTORY_TABLE,
                    history: Optional[History] = None, directory: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every record of the history table, in id order (the lock left out). With ``directory``,
    each record also says whether its ``file`` is there: ``same``, ``changed`` or ``missing``."""
    files = {m.id: m.checksum for m in load_all(directory)} if directory else None
    h = _history(settings, history_table, history)
    try:
        recs = h.records()
    finally:
        if history is None:
            h.close()
    out = [recs[k] for k in sorted(recs)]
    if files is not None:
        for r in out:
            r["file"] = "missing" if r["id"] not in files else "same" if files[r["id"]] == r.get("checksum") \
                else "changed"
    return out



def _set_message(e: DdbMigrateError, message: str) -> None:
    e.message = message
    e.args = (message,)


def _done_before(err: BaseException, done: List[str]) -> None:
    """What the run had applied (or reverted) before ``err`` stopped it, kept on the error: the
    command's --json says it on failure too (a CI step reads that, not the error line)."""
    err.done = list(done)  # type: ignore[attr-defined]


def _failed(m: MigrationFile, e: BaseException, again: str = RUN_AGAIN) -> BaseException:
    """The error ``up`` (or ``down``: ``again`` says to run it again) ends with, naming the
    migration; the exit code stays the original's."""
    if isinstance(e, InterruptedError_):
        _set_message(e, f"migration {m.id} interrupted; {again} to resume it")
        e.hint = None
        return e
    if isinstance(e, DdbMigrateError):
        msg = _JOB_RESUME.sub(again, e.message)
        if e.hint:
            e.hint = _JOB_RESUME.sub(again, e.hint)
        _set_message(e, msg if msg.startswith(f"migration {m.id}") else f"migration {m.id} failed: {msg}")
        return e
    if isinstance(e, KeyboardInterrupt):
        return InterruptedError_(f"migration {m.id} interrupted; {again} to resume it")
    where = ""  # the innermost line of the migration file the exception passed through
    frames = e.__traceback__
    while frames is not None:
        if os.path.abspath(frames.tb_frame.f_code.co_filename) == os.path.abspath(m.path):
            where = f" at {m.path}:{frames.tb_lineno}"
        frames = frames.tb_next
    err = FatalError(f"migration {m.id} failed: {type(e).__name__}: {e}{where}")
    err.__cause__ = e
    return err


def _write(m: MigrationFile, when: str, write: Callable[[], T], again: str = RUN_AGAIN) -> T:
    """A history write of ``m`` by this runner; when the lock turned out lost, the one line says
    which migration, what this runner did not record, and that it stops."""
    try:
        return write()
    except LockLostError as e:
        _set_message(e, f"migration {m.id}: the migrations lock was lost ({e.reason}) {when}; this runner "
                        f"recorded nothing, the lock holder's record stands; stopping ({again} once the "
                        "other runner is done)")
        raise e from None


def _fresh_state(state_dir: str, mid: str) -> None:
    path = os.path.join(state_dir, mid)
    if os.path.isdir(path):
        shutil.rmtree(path)


# The lock is renewed every max(1 s, lease / 3): a shorter lease could run out between renewals
# (the run then stops as if another runner took the lock); a day is more than any crash should
# hold the lock for.
MIN_LEASE_SECONDS = 3.0
MAX_LEASE_SECONDS = 86400.0


def check_lock_times(lease: float, wait: float) -> None:
    """Refuse, naming the option, a lease or wait ``up`` and ``down`` cannot run with, before
    anything is read or locked (library callers and the CLI alike)."""
    if not (math.isfinite(lease) and MIN_LEASE_SECONDS <= lease <= MAX_LEASE_SECONDS):
        raise UsageError(f"--lease must be between {MIN_LEASE_SECONDS:g} and {MAX_LEASE_SECONDS:g} seconds, "
                         f"not {lease:g}")
    if math.isnan(wait) or wait < 0:
        raise UsageError(f"--wait must be 0 or more seconds, not {wait:g}")


def _lock_lost_before_next(again: str = RUN_AGAIN) -> LockLostError:
    return LockLostError("the migrations lock was lost (another runner took it, or its lease ran out without a "
                         f"renewal); stopping before the next migration ({again} once the other runner is done)",
                         code="LockLost")


def _number(mid: str) -> int:
    head = mid.split("_", 1)[0]
    return int(head) if head.isdigit() else -1


def _out_of_order(pending: List[MigrationFile],
                  recs: Dict[str, Dict[str, Any]]) -> Tuple[List[MigrationFile], Optional[str]]:
    """The pending migrations numbered below the highest applied one (its file there or not), and
    that one's id. One already begun (failed, interrupted) was let through when it began: resuming
    it is not a new choice to run it out of order."""
    applied = [mid for mid, r in recs.items() if r.get("state") == "applied" and _number(mid) >= 0]
    if not applied:
        return [], None
    top = max(applied, key=_number)
    return [m for m in pending if m.number < _number(top) and m.id not in recs], top


def _reused_numbers(migs: List[MigrationFile], recs: Dict[str, Dict[str, Any]]) -> List[str]:
    """Files never recorded whose number is a recorded migration's (its file gone): most often that
    migration renamed. Applied under its new id it would run again on data it already changed, so
    neither the number nor --allow-changed may let it through; a reverted one left nothing behind."""
    taken = {_number(mid): (mid, r.get("state")) for mid, r in recs.items()
             if _number(mid) >= 0 and r.get("state") in TOUCHED}
    ids = {m.id for m in migs}
    out = []
    for m in migs:
        if m.id not in recs and m.number in taken and taken[m.number][0] not in ids:
            mid, state = taken[m.number]
            out.append(f"{m.path} has the number of the {state} migration {mid}, whose file is not in the folder "
                       f"(renamed? give it back its name, {mid}.py)")
    return out


def up(directory: str, settings: AwsSettings, *, to: Optional[str] = None, allow_changed: bool = False,
       confirm: Optional[Confirm] = None, options: Optional[RunOptions] = None,
       history_table: str = DEFAULT_HISTORY_TABLE, state_dir: str = DEFAULT_STATE_DIR, wait: float = 0.0,
       lease: float = DEFAULT_LEASE_SECONDS, history: Optional[History] = None,
       out_of_order: bool = False) -> RunResult:
    """Apply the pending migrations of ``directory`` in order (up to ``to``); see the module docstring.

    ``confirm(message)`` is asked once, naming what will be applied (pass ``lambda m: True`` for
    --yes). Raises the failing migration's error (its exit code) after recording it as failed.
    A pending migration numbered below the highest applied one is refused (UsageError) unless
    ``out_of_order``. LockLostError (nothing more written) when another runner took the lock.
    """
    check_lock_times(lease, wait)
    migs = load_all(directory)
    last = find(migs, to) if to else None
    h = _history(settings, history_table, history)
    try:
        h.ensure()
        with h.acquire(lease=lease, wait=wait) as lock:
            recs = h.records()
            st = _status(migs, recs)
            reused = _reused_numbers(migs, recs)
            if reused:
                raise UsageError("; ".join(reused) + "; refusing to apply it again under another name")
            changed = [s for s in st if s.state in ("changed", "missing")]
            if changed and not allow_changed:
                raise UsageError("; ".join(
                    f"applied migration {s.id} " + ("changed since it was applied (checksum "
                                                    f"{(s.recorded_checksum or '')[:12]} -> {(s.checksum or '')[:12]})"
                                                    if s.state == "changed" else "has no file in the folder")
                    for s in changed) + "; refusing to go on (--allow-changed accepts the files as they are)")
            for s in changed:
                if s.state == "changed":
                    rec = dict(recs[s.id])
                    rec["previous_checksums"] = list(rec.get("previous_checksums") or []) + [rec.get("checksum")]
                    rec["checksum"] = s.checksum
                    h.put(rec, lock=lock)
                    log.warning("migration %s: accepting its changed file (--allow-changed)", s.id)
            pending = [m for m in migs if (recs.get(m.id) or {}).get("state") != "applied"
                       and (last is None or m.number <= last.number)]
            if not pending:
                return RunResult("up", status=_status(migs, h.records()), message="nothing to apply")
            reverting = [m for m in pending if (recs.get(m.id) or {}).get("state") in UNFINISHED_REVERT]
            if reverting:
                raise UsageError("; ".join(
                    f"migration {m.id} is being reverted (recorded {recs[m.id].get('state')}: its downgrade began "
                    f"and did not finish), so its data is partly reverted; {_finish_revert(recs[m.id])}, then "
                    "`migrations up` applies it afresh" for m in reverting) + "; nothing was applied")
            early, top = _out_of_order(pending, recs)
            if early and not out_of_order:
                raise UsageError(", ".join(m.path for m in early) + (" are" if len(early) > 1 else " is")
                                 + f" numbered below {top}, the highest applied migration: refusing to apply "
                                 + ("them" if len(early) > 1 else "it") + " out of order (--out-of-order "
                                 "applies " + ("them" if len(early) > 1 else "it") + " anyway)")
            late = f" (out of order, below the applied {top}: {', '.join(m.id for m in early)})" if early else ""
            for m in early:
                log.warning("migration %s: applying it out of order, after the applied %s (--out-of-order)", m.id, top)
            where = settings.endpoint_url or settings.region or "the default region"
            msg = (f"Apply {len(pending)} migration(s) at {where}: " + ", ".join(m.id for m in pending) + late + "?")
            if confirm is None or not confirm(msg):
                raise UsageError("not applying migrations: not confirmed (pass --yes to skip the prompt)")
            done: List[str] = []
            for m in pending:
                if lock.lost:
                    raise _lock_lost_before_next()
                prev = recs.get(m.id)
                if (prev or {}).get("state") not in ("failed", "running"):
                    _fresh_state(state_dir, m.id)  # applied afresh: no step checkpoint of an earlier life
                    _fresh_state(state_dir, f"{m.id}.down")  # (nor of a downgrade recorded but not cleaned)
                rec = _write(m, "before it started",
                             lambda: h.start(m.id, m.checksum, m.description, prev, lock=lock))
                ctx = MigrationContext(m.id, settings, state_dir=state_dir, options=options, confirm=confirm)
                log.info("migration %s: applying (%s)", m.id, m.description)
                try:
                    m.upgrade(ctx)
                except BaseException as e:
                    err = _failed(m, e)
                    _done_before(err, done)
                    line = err.one_line() if isinstance(err, DdbMigrateError) else str(err)
                    cause = line.removeprefix(f"migration {m.id} failed: ")
                    _write(m, f"while it ran, and its upgrade failed: {cause}",
                           lambda: h.finish(rec, "failed", ctx.summary, error=line, lock=lock))
                    if err is e:
                        raise
                    raise err from (e if not isinstance(e, KeyboardInterrupt) else None)
                _write(m, "while it ran (its upgrade returned)",
                       lambda: h.finish(rec, "applied", ctx.summary, lock=lock))
                done.append(m.id)
            return RunResult("up", done=done, status=_status(migs, h.records()),
                             message=f"applied {len(done)} migration(s){late}")
    finally:
        if history is None:
            h.close()


def down(directory: str, settings: AwsSettings, *, to: str, confirm: Optional[Confirm] = None,
         options: Optional[RunOptions] = None, history_table: str = DEFAULT_HISTORY_TABLE,
         state_dir: str = DEFAULT_STATE_DIR, wait: float = 0.0, lease: float = DEFAULT_LEASE_SECONDS,
         history: Optional[History] = None) -> RunResult:
    """Revert the applied migrations after ``to`` (``0`` reverts all), newest first, with their
    ``downgrade(ctx)``; refused up front when one of them has none."""
    check_lock_times(lease, wait)
    migs = load_all(directory)
    floor = 0 if to in ("0", "0000") else find(migs, to).number
    h = _history(settings, history_table, history)
    try:
        h.ensure()
        with h.acquire(lease=lease, wait=wait) as lock:
            recs = h.records()
            todo = [m for m in reversed(migs) if m.number > floor and (recs.get(m.id) or {}).get("state") in TOUCHED]
            # A recorded migration above the floor without its file cannot be reverted: passed
            # over, the ones below it would be undone under it, and the run would say "reverted".
            ids = {m.id for m in migs}
            gone = sorted(mid for mid, r in recs.items() if mid not in ids and _number(mid) > floor
                          and r.get("state") in TOUCHED)
            if gone:
                raise UsageError(f"cannot revert {', '.join(gone)}: recorded "
                                 f"{'/'.join(sorted({str(recs[mid].get('state')) for mid in gone}))} but no file in "
                                 f"{directory} (restore the file to revert it); nothing was reverted")
            if not todo:
                return RunResult("down", status=_status(migs, recs), message="nothing to revert")
            lacking = [m.id for m in todo if m.downgrade is None]
            if lacking:
                raise UsageError(f"cannot revert {', '.join(lacking)}: no downgrade(ctx) in the file")
            msg = f"Revert {len(todo)} migration(s): " + ", ".join(m.id for m in todo) + "?"
            if confirm is None or not confirm(msg):
                raise UsageError("not reverting migrations: not confirmed (pass --yes to skip the prompt)")
            done: List[str] = []
            # A downgrade stopped midway goes on with `down` (its record says reverting or
            # revert_failed: `up` refuses it), so that is what every message of this run says to run.
            again = f"run `ddbmigrate migrations down --to {to}` again"
            for m in todo:
                if lock.lost:
                    raise _lock_lost_before_next(again)
                down_id = f"{m.id}.down"
                prev = recs[m.id]
                rec = _write(m, "before its downgrade started", lambda: h.start_revert(prev, to, lock=lock), again)
                ctx = MigrationContext(down_id, settings, state_dir=state_dir, options=options, confirm=confirm,
                                       again=again)
                log.info("migration %s: reverting (%s)", m.id, m.description)
                try:
                    assert m.downgrade is not None
                    m.downgrade(ctx)
                except BaseException as e:
                    err = _failed(m, e, again)
                    _done_before(err, done)
                    line = clip(err.one_line() if isinstance(err, DdbMigrateError) else str(err))
                    _write(m, f"while it was reverted, and its downgrade failed: {line}",
                           lambda: h.finish(rec, "revert_failed", ctx.summary, error=line, lock=lock), again)
                    if err is e:
                        raise
                    raise err from None
                _write(m, "while it was reverted (its downgrade returned)",
                       lambda: h.finish(rec, "reverted", ctx.summary, lock=lock), again)
                # Only once "reverted" is recorded: not recorded (the lock lost, a crash), the next
                # `down` must find the finished steps done, not run the downgrade a second time.
                _fresh_state(state_dir, down_id)
                done.append(m.id)
            return RunResult("down", done=done, status=_status(migs, h.records()),
                             message=f"reverted {len(done)} migration(s)")
    finally:
        if history is None:
            h.close()


def verify(directory: str, settings: AwsSettings, *, history_table: str = DEFAULT_HISTORY_TABLE,
           options: Optional[RunOptions] = None, state_dir: str = DEFAULT_STATE_DIR,
           history: Optional[History] = None) -> VerifyResult:
    """Check the folder against the history: every applied file unchanged and present, none left
    failed or running, and each applied migration's own ``verify(ctx)`` (when it has one) passing."""
    migs = load_all(directory)
    h = _history(settings, history_table, history)
    res = VerifyResult()
    try:
        st = _status(migs, h.records())
    finally:
        if history is None:
            h.close()
    by_id = {m.id: m for m in migs}
    for s in st:
        if s.state == "changed":
            res.problems.append(f"{s.id}: file changed since it was applied (checksum "
                                f"{(s.recorded_checksum or '')[:12]} -> {(s.checksum or '')[:12]})")
        elif s.state == "missing":
            res.problems.append(f"{s.id}: recorded as {s.state} but has no file in {directory}")
        elif s.state in ("failed", "running", "interrupted", "reverting", "revert_interrupted", "revert_failed"):
            res.problems.append(f"{s.id}: {s.state}" + (f" ({s.error})" if s.error else ""))
        elif s.state == "applied":
            m = by_id[s.id]
            if m.verify is not None:
                ctx = MigrationContext(f"{m.id}.verify", settings, state_dir=state_dir, options=options)
                try:
                    m.verify(ctx)
                except BaseException as e:
                    if isinstance(e, (KeyboardInterrupt, InterruptedError_)):
                        # Ctrl-C/SIGTERM stops the check (exit 130): not a difference, nor a reason
                        # to go on to the next migration's verify.
                        raise InterruptedError_(f"migrations verify interrupted in the verify(ctx) of {m.id}") \
                            from None
                    err = _failed(m, e)
                    res.problems.append(f"{s.id}: verify: " + (err.one_line() if isinstance(err, DdbMigrateError)
                                                               else str(err)))
            res.checked.append(s.id)
    return res


__all__ = ["MigrationStatus", "RunResult", "VerifyResult", "down", "history_records", "status", "up", "verify"]
