"""The one rule for small counts in aggregate outputs (FinnGen's green-data rule).

A count from 1 to ``threshold - 1`` is shown as ``"<threshold"`` (``<5`` with the default
`MASK_THRESHOLD`); 0 and larger counts are shown as they are, and ``threshold=None`` turns
masking off. counts.tsv, the attrition table, the HTML report and the counts of a diff all
mask through `mask_count` (one number) or `mask_counts` (a table), so a change to the rule
is made here once and reaches every output.

Masking is per cell only: a reader who knows the population size can still recover a
masked cell from the other two (there is no secondary suppression).

>>> mask_count(3), mask_count(0), mask_count(12), mask_count(3, None)
('<5', '0', '12', '3')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

# Polars is imported only where a table is masked: the CLI reads MASK_THRESHOLD for its
# help texts before it has set the thread count polars starts with.
if TYPE_CHECKING:
    import polars as pl

    Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

__all__ = ["MASK_THRESHOLD", "check_threshold", "is_masked", "mask_count", "mask_counts"]

MASK_THRESHOLD = 5


def check_threshold(threshold: int | None) -> None:
    """Raise ValueError unless `threshold` is None or a whole number >= 1.

    >>> check_threshold(0)
    Traceback (most recent call last):
    ...
    ValueError: mask threshold must be a whole number >= 1, got 0
    """
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int)
                                  or threshold < 1):
        raise ValueError(f"mask threshold must be a whole number >= 1, got {threshold!r}")


def is_masked(n: int, threshold: int | None = MASK_THRESHOLD) -> bool:
    """Whether `mask_count` hides `n`: 1 <= n < threshold."""
    return threshold is not None and 1 <= n < threshold


def mask_count(n: int, threshold: int | None = MASK_THRESHOLD) -> str:
    """`n` as shown in an aggregate output: ``"<threshold"`` when small, else the number."""
    return f"<{threshold}" if is_masked(n, threshold) else str(n)


def mask_counts(df: Frame, *, threshold: int | None = MASK_THRESHOLD,
                columns: Sequence[str] | None = None) -> Frame:
    """Every count of `columns` through `mask_count`; nulls stay null.

    The masked columns become text. ``columns`` defaults to those of N_CASES, N_CONTROLS,
    N_EXCLUDED present in ``df``. ``threshold=None`` returns ``df`` unchanged. Works on
    DataFrames and LazyFrames.

    >>> import polars as pl
    >>> mask_counts(pl.DataFrame({"N_CASES": [0, 3, 5]})).rows()
    [('0',), ('<5',), ('5',)]
    """
    import polars as pl

    from .engine.schema import COUNT_COLUMNS

    check_threshold(threshold)
    if threshold is None:
        return df
    names = df.collect_schema().names()
    targets = [c for c in (columns if columns is not None else COUNT_COLUMNS) if c in names]
    if columns is not None and len(targets) != len(columns):
        raise ValueError(f"mask_counts: no column {', '.join(c for c in columns if c not in names)}")

    def mask_column(counts: pl.Series) -> pl.Series:
        return pl.Series(counts.name, [None if n is None else mask_count(n, threshold) for n in counts],
                         dtype=pl.String)

    return df.with_columns(pl.col(c).map_batches(mask_column, return_dtype=pl.String) for c in targets)
