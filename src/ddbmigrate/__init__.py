"""ddbmigrate: move data between Amazon DynamoDB tables and files, safely and fast.

The library API (the CLI is a thin layer over it)::

    from ddbmigrate import TableRef, RunOptions, copy_table
    report = copy_table(TableRef("old"), TableRef("new", region="eu-west-1"), RunOptions(segments=8))
    assert report.balanced()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers; at run time each loads on first use
    from .aws.managed import native_export, native_import
    from .schema.apply import create_table_from_spec
    from .config import RetryPolicy, RunOptions, TableRef
    from .core.items import KeySchema, from_python, to_python
    from .core.transform import Transform, TransformContext, load_transform
    from .errors import (
        DdbMigrateError,
        FatalError,
        InterruptedError_,
        ResyncNeededError,
        RetriableError,
        RetriesExhaustedError,
        SkippableError,
        UsageError,
    )
    from .jobs.clean import clean_table
    from .jobs.copy import copy_table
    from .jobs.cutover import CutoverReport, cutover
    from .jobs.export import export_table
    from .jobs.import_files import import_files
    from .jobs.replicate import replicate
    from .jobs.update import update_table
    from .plan import PlanReport, run_plan, validate_plan
    from .reporting.report import Report
    from .state.status import read_status
    from .verify import VerifyReport, verify_tables

# Loaded on first use (PEP 562): `import ddbmigrate` costs next to nothing, so the command line
# can start (and answer a Ctrl-C at once) before the jobs' modules and boto3 are imported.
_LAZY = {
    "CutoverReport": ".jobs.cutover",
    "DdbMigrateError": ".errors",
    "FatalError": ".errors",
    "InterruptedError_": ".errors",
    "KeySchema": ".core.items",
    "PlanReport": ".plan",
    "Report": ".reporting.report",
    "ResyncNeededError": ".errors",
    "RetriableError": ".errors",
    "RetriesExhaustedError": ".errors",
    "RetryPolicy": ".config",
    "RunOptions": ".config",
    "SkippableError": ".errors",
    "TableRef": ".config",
    "Transform": ".core.transform",
    "TransformContext": ".core.transform",
    "UsageError": ".errors",
    "VerifyReport": ".verify",
    "clean_table": ".jobs.clean",
    "copy_table": ".jobs.copy",
    "create_table_from_spec": ".schema.apply",
    "cutover": ".jobs.cutover",
    "export_table": ".jobs.export",
    "from_python": ".core.items",
    "import_files": ".jobs.import_files",
    "load_transform": ".core.transform",
    "native_export": ".aws.managed",
    "native_import": ".aws.managed",
    "read_status": ".state.status",
    "replicate": ".jobs.replicate",
    "run_plan": ".plan",
    "to_python": ".core.items",
    "update_table": ".jobs.update",
    "validate_plan": ".plan",
    "verify_tables": ".verify",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "CutoverReport",
    "DdbMigrateError",
    "FatalError",
    "InterruptedError_",
    "KeySchema",
    "PlanReport",
    "Report",
    "ResyncNeededError",
    "RetriableError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "RunOptions",
    "SkippableError",
    "TableRef",
    "Transform",
    "TransformContext",
    "UsageError",
    "VerifyReport",
    "clean_table",
    "copy_table",
    "create_table_from_spec",
    "cutover",
    "export_table",
    "from_python",
    "import_files",
    "load_transform",
    "native_export",
    "native_import",
    "read_status",
    "replicate",
    "run_plan",
    "to_python",
    "update_table",
    "validate_plan",
    "verify_tables",
]
