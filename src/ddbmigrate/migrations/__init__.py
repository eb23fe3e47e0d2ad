"""Migrations as code: a folder of versioned Python migrations, a history table, a lock.

    ddbmigrate migrations init migrations/
    ddbmigrate migrations new "add user alias" --dir migrations/    -> migrations/0003_add_user_alias.py
    ddbmigrate migrations up --dir migrations/ --yes                  applies what is pending, in order

Modules: :mod:`.files` (the folder, loading without running), :mod:`.history` (the history
table and its lease lock), :mod:`.context` (``ctx``: the library's jobs bound to the run's AWS
settings), :mod:`.runner` (status, up, down, history, verify), :mod:`.upgrade` (item-level
schema versions: :func:`upgrade_item`, the same functions as the backfill). docs/migrations.md
has the guide.
"""

from __future__ import annotations

from .context import AwsSettings, MigrationContext, StepFailed
from .files import MigrationFile, load_all
from .history import DEFAULT_HISTORY_TABLE, History, LockHeldError, LockLostError
from .runner import (
    MigrationStatus,
    RunResult,
    VerifyResult,
    down,
    history_records,
    status,
    up,
    verify,
)
from .upgrade import UpgradeRegistry, upgrade_item

__all__ = [
    "DEFAULT_HISTORY_TABLE",
    "AwsSettings",
    "History",
    "LockHeldError",
    "LockLostError",
    "MigrationContext",
    "MigrationFile",
    "MigrationStatus",
    "RunResult",
    "StepFailed",
    "UpgradeRegistry",
    "VerifyResult",
    "down",
    "history_records",
    "load_all",
    "status",
    "up",
    "upgrade_item",
    "verify",
]
