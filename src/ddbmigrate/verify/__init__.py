"""Verify: prove a target equals transform(source), by key, with bounded memory; optionally repair.

    sides ──▶ side jobs (any local engine, into a compare sink) ──▶ compare (spill files, partition
          by partition) ──▶ report / differences file ──▶ repair
                    spark: its own scan (scan_sides) and the comparison spread over Spark tasks

Modules: :mod:`.job` (``verify_tables``), :mod:`.sides` (what a side reads), :mod:`.side_jobs`
(each side as a Job; dead letters as differences), :mod:`.scan` (Spark's reader), :mod:`.compare`
(the bounded-memory comparison), :mod:`.report` (``VerifyReport``, the differences file),
:mod:`.repair`, :mod:`.spark` (``verify_tables_spark``, imported on demand: it needs pyspark at run time).
"""

from __future__ import annotations

from .job import verify_tables
from .repair import batch_get, repair_differences
from .report import VerifyReport, iter_diffs, sample_confidence
from .sides import Side, files_side, is_files_location

__all__ = ["Side", "VerifyReport", "batch_get", "files_side", "is_files_location", "iter_diffs", "repair_differences",
           "sample_confidence", "verify_tables"]
