"""Whether a process still runs, and what one killed midway leaves behind: the temporary file of
an atomic write, a verify's spill folder (as large as both tables). Each is named for its owner
(``PREFIXHOST-PID-...``), so that the next run can tell a dead owner's from a live one's and
delete it: a kill -9, run after run, must not fill the disk.

Only this host's owners are judged by their pid: a folder shared with other hosts or pid
namespaces keeps their files (they may be in use) unless an age limit is given.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from typing import Any, List, Optional, Set, Tuple


def host_word(name: str, pid_space: Optional[str] = None) -> str:
    """Who can judge an owner's pid, as one word of its name (no '-', which parts it; no '/').

    A host name alone does not say it: a container on the host network has the host's name and
    pids of its own, judged dead here while it runs (the pid namespace is added), and Kubernetes
    pods of one workload differ only at the end of their names (a long one keeps a hash of it)."""
    word = re.sub(r"[^A-Za-z0-9_.]", "_", name or "host")
    if len(word) > 40:
        word = f"{word[:31]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return f"{word}.{pid_space}" if pid_space else word


def _pid_space() -> Optional[str]:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return None  # no /proc (macOS): the host name is all there is


HOST = host_word(os.uname().nodename if hasattr(os, "uname") else "", _pid_space())
_SWEPT: Set[Tuple[str, str]] = set()


def _proc_stat(pid: int) -> Optional[List[str]]:
    """The fields of /proc/PID/stat after the command name (state first), or None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def process_started(pid: Optional[int] = None) -> Optional[str]:
    """When the process started (clock ticks since boot, /proc's field 22): with the pid, who it is."""
    fields = _proc_stat(pid if pid is not None else os.getpid())
    return fields[19] if fields is not None and len(fields) > 19 else None


def pid_alive(pid: Any, started: Any = None) -> bool:
    """Whether the process that wrote a status still runs: not a zombie (killed, not yet reaped:
    ``kill(pid, 0)`` still succeeds) nor another process given its pid since (its start time)."""
    try:
        pid = int(pid)
        os.kill(pid, 0)
    except (TypeError, ValueError, OverflowError, ProcessLookupError):  # (a pid past C's int: no process)
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc here: kill(pid, 0) is all there is
    if fields[0] in ("Z", "X", "x"):
        return False
    return started is None or len(fields) <= 19 or fields[19] == str(started)


def owned(prefix: str) -> str:
    """The name prefix of this process's leftovers of a kind."""
    return f"{prefix}{HOST}-{os.getpid()}-"


def claim(folder: str, prefix: str, *, max_age: Optional[float] = None) -> str:
    """The name prefix for this process's leftover of a kind in ``folder``, after sweeping the
    dead owners' there: what a new temporary file or folder is made with."""
    sweep(folder, prefix, max_age=max_age)
    return owned(prefix)


def sweep(folder: str, prefix: str, *, max_age: Optional[float] = None, once: bool = True) -> int:
    """Delete the ``prefix`` files and folders in ``folder`` whose owner is a dead process of
    this host, or (``max_age``) that were last changed that many seconds ago; how many.
    ``once``: at most one look per folder and process."""
    if once:
        seen = (os.path.abspath(folder), prefix)  # (a relative folder is another after a chdir)
        if seen in _SWEPT:
            return 0
        _SWEPT.add(seen)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)]
    except OSError:
        return 0
    now, gone = time.time(), 0
    for n in names:
        host, _, rest = n[len(prefix):].partition("-")
        pid = rest.partition("-")[0]
        path = os.path.join(folder, n)
        try:
            old = max_age is not None and now - os.lstat(path).st_mtime > max_age
            dead = host == HOST and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid))
            if not (old or dead):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
            gone += 1
        except OSError:
            pass  # gone already (another sweeper), or not ours to delete
    return gone
