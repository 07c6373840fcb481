"""Engines: run a `Program` over registry tables.

Two engines read the same plan: `engine.polars` (fast, lazy Polars; `evaluate`) and
`engine.reference` (the plain-Python oracle; `evaluate_reference`, `counts_reference`).
Both return the long results table described in docs/language.md: FINNGENID, ENDPOINT,
STATUS ("case" | "excluded"), AGE, YEAR, NEVT, sorted by ENDPOINT then FINNGENID.
"""

from .polars import MissingColumnError, Results, evaluate
from .reference import counts_reference, evaluate_reference
from .schema import COUNTS_SCHEMA, LONG_SCHEMA

__all__ = [
    "evaluate", "Results", "MissingColumnError",
    "evaluate_reference", "counts_reference", "LONG_SCHEMA", "COUNTS_SCHEMA",
]
