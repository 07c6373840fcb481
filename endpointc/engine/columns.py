"""The frames that pass between the Polars engine's steps, and packed pairs.

Input: none; output: the schemas of those frames; `pack`/`unpack`, which put two u32
in one u64 so that a group-by, a unique or a membership test runs on one integer column
(a key of several columns is row-encoded, several times dearer); and `order_day`, the DAY
half of an order key (units.py writes the keys).
"""

from __future__ import annotations

import polars as pl

__all__ = ["U32", "CASES_SCHEMA", "CASE_ROWS_SCHEMA", "LONG_CODED", "MISSING_PART", "pack", "unpack", "order_day"]

U32 = pl.UInt32
# (endpoint, person) cases: first event (AGE, YEAR, DAY: APPROX_EVENT_DAY as days since
# 1970-01-01) and NEVT
CASES_SCHEMA = {"EP": U32, "PID": U32, "AGE": pl.Float64, "YEAR": pl.Int32, "DAY": pl.Int32, "NEVT": pl.Int64}
# the event rows of cases (ROW as in the events table)
CASE_ROWS_SCHEMA = {"ROW": pl.UInt64, "EP": U32, "PID": U32}
# a bucket's sorted output rows, as spilled: _KEY = endpoint name rank << 32 | person rank
LONG_CODED = {"_KEY": pl.UInt64, "CASE": pl.Boolean, "AGE": pl.Float64, "YEAR": pl.Int32,
              "NEVT": pl.Int64}
# an order key is (AGE part) << 32 | (DAY + 2**31); a missing part is this, after every
# real one (nulls last)
MISSING_PART = 2**32 - 1


def pack(high: str, low: pl.Expr) -> pl.Expr:
    """Two u32 in one u64: `high` << 32 | `low`."""
    return pl.col(high).cast(pl.UInt64) * 2**32 + low.cast(pl.UInt64)


def unpack(packed: str, high: str, low: str) -> tuple[pl.Expr, pl.Expr]:
    """The two u32 halves of a `pack`ed column, named `high` and `low`."""
    return ((pl.col(packed) // 2**32).cast(U32).alias(high),
            (pl.col(packed) % 2**32).cast(U32).alias(low))


def order_day(key: pl.Expr) -> pl.Expr:
    """The DAY (i64, days since 1970-01-01; null when missing) of an order key."""
    day = key % 2**32
    return pl.when(day == MISSING_PART).then(None).otherwise(day.cast(pl.Int64) - 2**31)
