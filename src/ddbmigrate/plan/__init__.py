"""Migration plans: many jobs over many tables, described in one YAML file, run concurrently.

A plan is loaded (:mod:`.load`: every problem names its ``file:line``), validated against this
build and AWS (:mod:`.validate`), then run (:mod:`.run`) with at most ``parallel`` jobs at a time,
one combined progress display (:mod:`.progress`), one combined report (:mod:`.report`) and one
resume. Each job is dispatched through :mod:`ddbmigrate.jobs.registry`, on the engine it names.
"""

from __future__ import annotations

from .load import load_plan
from .report import PlanReport
from .run import run_plan
from .validate import validate_plan
from .yaml_lines import PlanError

__all__ = ["PlanError", "PlanReport", "load_plan", "run_plan", "validate_plan"]
