"""ddbmigrate: move data between Amazon DynamoDB tables and files, safely and fast.

The library API (the CLI is a thin layer over it)::

    from ddbmigrate import TableRef, RunOptions, copy_table
    report = copy_table(TableRef("old"), TableRef("new", region="eu-west-1"), RunOptions(segments=8))
    assert report.balanced()
"""

from __future__ import annotations

from .clean import clean_table
from .config import RetryPolicy, RunOptions, TableRef
from .copy import copy_table
from .errors import (
    DdbMigrateError,
    FatalError,
    InterruptedError_,
    RetriableError,
    RetriesExhaustedError,
    SkippableError,
    UsageError,
)
from .items import KeySchema, from_python, to_python
from .report import Report
from .transform import Transform, TransformContext, load_transform

__version__ = "0.1.0"

__all__ = [
    "DdbMigrateError",
    "FatalError",
    "InterruptedError_",
    "KeySchema",
    "Report",
    "RetriableError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "RunOptions",
    "SkippableError",
    "TableRef",
    "Transform",
    "TransformContext",
    "UsageError",
    "clean_table",
    "copy_table",
    "from_python",
    "load_transform",
    "to_python",
]
