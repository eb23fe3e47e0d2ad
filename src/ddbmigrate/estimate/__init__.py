"""Know before you run: units, dollars and time of a job for every lane that can do it.

    estimate_copy / estimate_replicate / estimate_import / estimate_export   (api.py: the inputs)
        -> SampleStats (sample.py: sizes, fan-out, drops, key spread, CPU per item)
        -> estimate_job (lanes.py: each lane; model.py: the formulas, capacity, the Estimate)
        -> Estimate (to_dict: one JSON document; render.py: the table)
    enforce_max_cost / attach_estimate (guard.py: the cost cap, estimate vs actual)

Prices come from the dated ``prices.json`` next to this file, or ``--prices FILE`` over it.
"""

from .api import estimate_copy, estimate_export, estimate_import, estimate_replicate
from .guard import CostCapExceeded, attach_estimate, enforce_max_cost
from .model import (
    BULK_PUT,
    ENGINE,
    IMPORT_TABLE,
    NATIVE_EXPORT,
    REPLICA,
    Estimate,
    Lane,
    fmt_duration,
)
from .prices import Prices, load_prices

__all__ = [
    "BULK_PUT", "ENGINE", "IMPORT_TABLE", "NATIVE_EXPORT", "REPLICA", "CostCapExceeded", "Estimate", "Lane",
    "Prices", "attach_estimate", "enforce_max_cost", "estimate_copy", "estimate_export", "estimate_import",
    "estimate_replicate", "fmt_duration", "load_prices",
]
