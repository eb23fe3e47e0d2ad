"""The ``ddbmigrate`` command's entry point: the command line's modules (boto3, botocore, the
jobs) take a second or more to import, and a Ctrl-C in that second was a Python traceback.
Here it is the same one line and exit code as a Ctrl-C at any other moment."""

from __future__ import annotations

import os
import sys


def main() -> None:
    try:
        from .cli import main as cli
    except KeyboardInterrupt:
        # Nothing has run yet. os._exit, not sys.exit: an interrupt inside an import can leave
        # CPython's "unhandled KeyboardInterrupt" mark set, and it would then end the process by
        # SIGINT (status -2) whatever code it was given.
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    cli()


__all__ = ["main"]
