"""People -> person buckets: filters on FINNGENID, one per consecutive id range.

Input: the people table and a bucket count; output: one filter expression per bucket
(`person_buckets`), which the Parquet reader applies with row-group statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from .matching import ENGINE

__all__ = ["person_buckets", "range_starts", "id_ranges"]


def person_buckets(people: pl.LazyFrame, buckets: int) -> tuple[pl.Expr, ...]:
    """Filters on FINNGENID splitting the people into `buckets` contiguous id ranges of
    (nearly) equal head count -- fewer when there are fewer people.

    Ranges rather than hash classes: registry files are written sorted by person (FinnGen's
    are), so the Parquet reader skips every row group whose FINNGENID statistics fall
    outside a bucket's range and each bucket reads only its own share of the file. On an
    unsorted file a bucket reads the whole file, but still keeps only its own rows. Rows
    with a missing FINNGENID go to the first bucket (they match no person)."""
    return id_ranges(range_starts(people, buckets))


def range_starts(people: pl.LazyFrame, buckets: int) -> list[str]:
    """The first id of each of `person_buckets`' ranges but the first."""
    if buckets <= 1:
        return []
    ids = people.select(pl.col("FINNGENID").drop_nulls().unique().sort()).collect(engine=ENGINE)["FINNGENID"]
    return sorted({ids[k * len(ids) // buckets] for k in range(1, buckets)} - {ids[0]}) if len(ids) else []


def id_ranges(starts: Sequence[str]) -> tuple[pl.Expr, ...]:
    """A FINNGENID filter per range: before the first of `starts` (and missing ids), from
    each start to the next, from the last on."""
    if not starts:
        return (pl.lit(True),)
    fid = pl.col("FINNGENID")
    bounds = [None, *starts, None]
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        test = (fid >= lo) if lo is not None else None
        if hi is not None:
            test = (fid < hi) if test is None else test & (fid < hi)
        out.append(test | fid.is_null() if lo is None else test)
    return tuple(out)
