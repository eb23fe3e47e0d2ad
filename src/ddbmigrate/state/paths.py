"""Can a file the job will write be written? Asked before the job reads anything.

One answer for every file a job writes beside its data (dead letters, reports, differences,
status): a job that learns midway that its report or dead-letter file cannot be written has
already read records whose only trace it was to be.
"""

from __future__ import annotations

import os
import tempfile
from typing import Dict, Optional, Sequence


def nearest_existing(folder: str) -> str:
    """``folder``, or its nearest ancestor that exists (a missing folder is made when written)."""
    while not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def output_path_problem(path: str, *, replaced: bool) -> Optional[str]:
    """Why ``path`` cannot be written, or None. Only probes: a missing folder is checked, not made.

    ``replaced``: the file is written beside and renamed over (a report, a status file), so only
    its folder must take a new file; otherwise it is opened in place (dead letters, differences),
    so an existing file must be writable too."""
    if os.path.isdir(path):
        return "it is a folder"
    existing = nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder"
    # A real file, not os.access: root passes os.access everywhere, and /proc or a read-only
    # mount refuse new files whatever the mode bits say.
    try:
        fd, probe = tempfile.mkstemp(prefix=".ddbmigrate-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"{existing} does not take new files ({e.strerror or e})"
    if not replaced and os.path.isfile(path):
        try:
            open(path, "ab").close()
        except OSError as e:
            return f"it is not writable ({e.strerror or e})"
    return None


def _same(a: str, b: str) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def outputs_problem(outputs: Dict[str, Optional[str]], inputs: Sequence[str]) -> Optional[str]:
    """Why the files a command writes (option name -> path) cannot be written as given, or None:
    two options naming one file (the report written last would replace the dead letters, items
    that were never written), one naming a file the command reads (an import's data), or a
    report in a place that takes no file (said after the whole job, it was an internal error)."""
    named = [(opt, p) for opt, p in outputs.items() if p and "://" not in p and p != "-"]
    for i, (opt, p) in enumerate(named):
        for other, q in named[i + 1:]:
            if _same(p, q):
                return f"{opt} and {other} name the same file {p}: each needs its own"
        for src in inputs:
            if src and "://" not in src and os.path.isfile(src) and _same(p, src):
                return f"{opt} {p} is a file this command reads: it would be written over"
    report = outputs.get("--report")
    if report and "://" not in report:
        if report.startswith(("/dev/", "/proc/")):
            return None if os.path.exists(report) else f"cannot write the report {report}: it does not exist"
        target = os.path.realpath(report)
        if os.path.exists(target) and not os.path.isfile(target) and not os.path.isdir(target):
            return None  # a FIFO: written into, not replaced
        problem = output_path_problem(target, replaced=True)
        if problem:
            return f"cannot write the report {report}: {problem}"
    return None


__all__ = ["nearest_existing", "output_path_problem", "outputs_problem"]
