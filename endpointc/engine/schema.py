"""The tables every engine returns, so that engines and result writers agree on one shape.

The long table has one row per case or excluded person and endpoint (controls are everyone
else in the people table); the counts table one row per endpoint.
"""

from __future__ import annotations

import polars as pl

__all__ = ["LONG_SCHEMA", "COUNTS_SCHEMA", "COUNT_COLUMNS"]

LONG_SCHEMA = pl.Schema({
    "FINNGENID": pl.String, "ENDPOINT": pl.String, "STATUS": pl.String,
    "AGE": pl.Float64, "YEAR": pl.Int32, "NEVT": pl.Int64,
})
COUNT_COLUMNS: tuple[str, ...] = ("N_CASES", "N_CONTROLS", "N_EXCLUDED")
COUNTS_SCHEMA = pl.Schema({"ENDPOINT": pl.String, **{c: pl.Int64 for c in COUNT_COLUMNS}})
