"""Spilled buckets -> one stream of rows sorted by _KEY.

Input: per bucket, its coded rows (LONG_CODED, sorted by _KEY with global person ranks)
written to a spill file (`write_spill`), and its row count per endpoint; output: one lazy
frame of all rows in _KEY order (`stream_merged`), read in slices of whole endpoints so
that no more than a slice is in memory. Past MERGE_FANIN files, groups of neighbouring
files are merged into one first (`merge_neighbours`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from .columns import LONG_CODED
from .matching import ENGINE

__all__ = ["MERGE_ROWS", "MERGE_FANIN", "write_spill", "merge_neighbours", "stream_merged"]

MERGE_ROWS = 2_000_000  # rows per merged slice: a slice is all that is ever in memory
# Most files one merge reads. Each slice of `stream_merged` reads from every file, at ~1 ms
# a read whatever its size, so merging B files in one pass takes (rows / MERGE_ROWS) * B
# reads: quadratic in the registry (FinRegistry, ~900 buckets and ~4e9 rows: ~1.8e6 reads,
# half an hour). Past MERGE_FANIN files, groups of about sqrt(B) neighbours are merged into
# one file first: one more write and read of every row for sqrt(B) reads a slice
# (benchmarks/merge_fanin.py: 400 files of 8e7 rows 1.4x faster, 900 of 1.5e8 1.9x).
MERGE_FANIN = 128


def write_spill(rows: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """Rows sorted by _KEY as a spill file. Small row groups: a merge slice reads a few
    endpoints' rows at a time; not compressed: 2.3e8 rows were merged in 11.5 s, against
    16.5 s from lz4."""
    rows.lazy().sink_parquet(path, compression="uncompressed", row_group_size=65_536)


def merge_neighbours(files: list[Path], sizes: list[list[int]], spill: Path
                     ) -> tuple[list[Path], list[list[int]]]:
    """At most MERGE_FANIN spill files with the same rows, and their `sizes` (see
    `stream_merged`): while there are more, each group of consecutive files is merged into
    one (consecutive person ranges make a file of the same kind) and the group's files
    removed."""
    level = 0
    while len(files) > MERGE_FANIN:
        level += 1
        width = max(2, math.isqrt(len(files) - 1) + 1)  # ceil(sqrt(B))
        merged, merged_sizes = [], []
        for g in range(0, len(files), width):
            group, group_sizes = files[g:g + width], sizes[g:g + width]
            path = spill / f"merged-{level}-{g // width:05d}.parquet"
            write_spill(stream_merged(group, group_sizes), path)
            for f in group:
                f.unlink()
            merged.append(path)
            merged_sizes.append([sum(col) for col in zip(*group_sizes)])
        files, sizes = merged, merged_sizes
    return files, sizes


def stream_merged(files: Sequence[Path], sizes: Sequence[Sequence[int]]) -> pl.LazyFrame:
    """The spilled buckets' rows (_KEY with global person ranks) as one stream sorted by
    _KEY, in slices of whole endpoints (about MERGE_ROWS rows; `sizes[b][r]` are bucket
    b's rows of the endpoint of name rank r).

    A slice reads from every bucket file only the row groups of its endpoints (the files
    are sorted by _KEY, so their statistics say which). Its rows come bucket after bucket;
    as one endpoint's rows are bucket after bucket in person order, cutting them into
    (bucket, endpoint) pieces and putting those endpoint after endpoint gives _KEY order
    without a sort (the merge of 2.3e8 rows: 11.3 s with a sort, 6.1 s). Polars'
    merge_sorted and a concat of sorted slices both hold about the whole output at once
    (measured: memory grows with total rows), hence a Python source that yields one slice
    at a time."""
    totals = [sum(col) for col in zip(*sizes)] or [0]
    bounds, rows = [0], 0
    for rank, n in enumerate(totals):
        if rows and rows + n > MERGE_ROWS:
            bounds.append(rank)
            rows = 0
        rows += n
    bounds.append(len(totals))

    def ordered(df: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
        starts, pieces, at = [], [], 0
        for bucket in sizes:
            starts.append(list(itertools.accumulate(bucket[lo:hi], initial=at)))
            at = starts[-1][-1]
        if at != df.height:
            raise RuntimeError("a spilled bucket's rows differ from its counts")
        for r in range(hi - lo):
            for b, bucket in enumerate(sizes):
                if n := bucket[lo + r]:
                    pieces.append(df.slice(starts[b][r], n))
        out = pl.concat(pieces, rechunk=False) if pieces else df.clear()
        # the pieces are the rows, in some order: a reader that did not keep the files'
        # order only costs a sort
        return out if out["_KEY"].is_sorted() else out.sort("_KEY")

    def slices(with_columns, predicate, n_rows, batch_size):
        for lo, hi in zip(bounds, bounds[1:]):
            keep = pl.col("_KEY").is_between(lo * 2**32, hi * 2**32, closed="left")
            df = ordered(pl.scan_parquet(files, glob=False).filter(keep).collect(engine=ENGINE), lo, hi)
            if predicate is not None:
                df = df.filter(predicate)
            if with_columns is not None:
                df = df.select(with_columns)
            yield df

    return register_io_source(slices, schema=LONG_CODED)
