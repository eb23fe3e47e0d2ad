"""Can a file the job will write be written? Asked before the job reads anything.

One answer for every file a job writes beside its data (dead letters, reports, differences,
status): a job that learns midway that its report or dead-letter file cannot be written has
already read records whose only trace it was to be.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional


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


__all__ = ["nearest_existing", "output_path_problem"]
