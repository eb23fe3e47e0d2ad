"""The curated public API is pinned: changing it is a deliberate act."""

from __future__ import annotations

import ddbmigrate

EXPECTED = {
    "DdbMigrateError", "FatalError", "InterruptedError_", "KeySchema", "Report", "RetriableError",
    "RetriesExhaustedError", "RetryPolicy", "RunOptions", "SkippableError", "TableRef", "Transform",
    "TransformContext", "UsageError", "clean_table", "copy_table", "from_python", "load_transform", "to_python",
    "create_table_from_spec", "export_table", "import_files", "verify_tables", "replicate", "cutover",
    "run_plan", "validate_plan", "CutoverReport", "PlanReport", "ResyncNeededError", "VerifyReport", "read_status",
    "native_export", "native_import", "update_table",
}


def test_exported_members() -> None:
    assert set(ddbmigrate.__all__) == EXPECTED
    for name in ddbmigrate.__all__:
        assert getattr(ddbmigrate, name) is not None


def test_core_does_not_import_spark_or_click() -> None:
    import subprocess
    import sys

    code = ("import sys, ddbmigrate; import ddbmigrate.jobs.copy, ddbmigrate.engine.pipeline; "
            "print('pyspark' in sys.modules, 'click' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
