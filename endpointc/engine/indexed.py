"""An event index -> the engine's matched rows, without a pass over the registry.

Input: a program, an `EventIndex` (endpointc/index.py) and the endpoints asked for; output:
the same `Results` as `polars.evaluate` over the registry the index was built from.

The index replaces the two passes over the events (ARCHITECTURE.md, "Engines"):

* match: `prepare` matches the index's distinct keys (with their row counts) instead of
  counting them in the events;
* units: each matched key is one range of the index's rows (sorted by key), so a bucket
  reads those ranges (neighbouring ones read as one when the gap is shorter than a row
  group), keeps its people's rows, and gets each row's signature by a join on the key
  number. What follows (units, levels, outputs, merge) is the engine's own.

The matched keys' row counts say beforehand how many rows that reads. When they are too
many for reading them once per bucket to beat one pass over the registry (most of a
library), the registry is read as without the index, in `buckets` buckets, and only the
key prepass is saved.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from ..index import ROW_GROUP, EventIndex
from ..plan import Program
from ..registry import EVENTS_SCHEMA
from .buckets import range_starts
from .levels import BucketLevels
from .matching import ENGINE
from .outputs import BucketResult, Results, bucket_outputs
from .polars import evaluate_buckets
from .prepare import Prepared, prepare
from .signatures import sex_bits
from .units import code1_per_row, units_of, visit_emergency

__all__ = ["evaluate_indexed"]

# matched rows per bucket: twice the events of a `run --buckets auto` bucket, as a few
# endpoints hold far fewer units and pairs per row than a whole library does
_BUCKET_ROWS = 10_000_000
# rows of unmatched keys read rather than starting another range read (see index.ROW_GROUP)
_GAP = ROW_GROUP


def evaluate_indexed(program: Program, index: EventIndex, *, endpoints: Sequence[str] | None = None,
                     buckets: int = 1, spill_dir: str | os.PathLike[str] | None = None,
                     on_bucket: Callable[[int, int], None] | None = None) -> Results:
    """`polars.evaluate` of `program` over the registry of `index` (the arguments as there;
    `buckets` only counts when the registry is read, see the module docstring)."""
    columns = pl.LazyFrame(schema={c: EVENTS_SCHEMA[c] for c in index.manifest.columns})
    prep = prepare(program, columns, endpoints=endpoints, keys=index.keys())
    cols = list(prep.mapping.columns)
    code1 = ["CODE1"] if code1_per_row(prep) else []
    key_sig = (index.keys().select("KEY", "START", "_ROWS", *cols, *code1)
               .join(prep.sigs.keys.lazy().select(*cols, "SIG"), on=cols, nulls_equal=True)
               .select("KEY", "START", "_ROWS", "SIG", *code1).sort("KEY").collect(engine=ENGINE))
    people = index.people
    matched = int(key_sig["_ROWS"].sum() or 0)
    n = max(1, math.ceil(matched / _BUCKET_ROWS))
    if n * matched > index.manifest.rows:
        return evaluate_buckets(prep, index.events, people, range_starts(people, buckets),
                                spill_dir=spill_dir, on_bucket=on_bucket)
    starts = range_starts(people, n)
    ids = people.select("FINNGENID").collect(engine=ENGINE)["FINNGENID"]
    # bucket b's people are ranks bounds[b] .. bounds[b + 1] - 1 (consecutive id ranges)
    bounds = [0, *ids.search_sorted(pl.Series(starts, dtype=pl.String)).to_list(), ids.len()]
    reads = _reads(index, key_sig)

    def bucket(b: int, pp: pl.LazyFrame) -> BucketResult:
        return _bucket(prep, index, key_sig, reads, bounds[b], bounds[b + 1], pp, whole=len(starts) == 0)

    return evaluate_buckets(prep, index.events, people, starts, spill_dir=spill_dir, on_bucket=on_bucket,
                            bucket=bucket)


def _reads(index: EventIndex, key_sig: pl.DataFrame) -> list[tuple[str, int, int]]:
    """(row file, offset, length) of the row ranges to read: each matched key's rows, joined
    with the next range when the gap between them is shorter than _GAP, split at files."""
    if not key_sig.height:
        return []
    lo = key_sig["START"].to_numpy().astype(np.int64)
    hi = lo + key_sig["_ROWS"].to_numpy().astype(np.int64)
    # a new range starts where the gap from everything before is at least _GAP
    new = np.concatenate([[True], lo[1:] - hi[:-1] >= _GAP])  # keys are consecutive ranges
    starts, ends = lo[new], np.maximum.reduceat(hi, np.flatnonzero(new))
    out = []
    for f in index.manifest.files:
        f_lo, f_hi = f.first_row, f.first_row + f.rows
        for a, z in zip(starts, ends):
            a, z = max(int(a), f_lo), min(int(z), f_hi)
            if a < z:
                out.append((f.name, a - f_lo, z - a))
    return out


def _bucket(prep: Prepared, index: EventIndex, key_sig: pl.DataFrame, reads: list[tuple[str, int, int]],
            lo: int, hi: int, people: pl.LazyFrame, *, whole: bool) -> BucketResult:
    """One bucket (people of ranks lo .. hi - 1) from the index's rows: `_evaluate_bucket`
    with the matched rows read from the index."""
    emergency = prep.uses_emergency
    wanted = ["KEY", "PERSON", "EVENT_AGE", "APPROX_EVENT_DAY", *(["URGENT", "INDEX"] if emergency else [])]
    frames = [index.row_file(name).select(wanted).slice(offset, length) for name, offset, length in reads]
    rows = (pl.concat(pl.collect_all(frames, engine=ENGINE)) if frames else
            pl.DataFrame(schema={"KEY": pl.UInt32, "PERSON": pl.UInt32, "EVENT_AGE": pl.Float64,
                                 "APPROX_EVENT_DAY": pl.Date, "URGENT": pl.Boolean, "INDEX": pl.String}
                         ).select(wanted))
    if not whole:
        rows = rows.filter(pl.col("PERSON").is_between(lo, hi, closed="left"))
    code1 = ["CODE1"] if code1_per_row(prep) else []
    rows = (rows.join(key_sig.select("KEY", "SIG", *code1), on="KEY")
            .with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64),
                                                (pl.col("PERSON") - lo).cast(pl.UInt32).alias("PID")))
    matched = rows.select("ROW", "PID", "SIG", *code1, pl.col("EVENT_AGE").alias("AGE"),
                          pl.col("APPROX_EVENT_DAY").alias("DAY"))
    if emergency:
        own = (rows.filter(pl.col("SIG").is_in(list(prep.sigs.emergency)))
               .select("ROW", "PID", "INDEX", pl.col("URGENT").alias("_URGENT")))
        visits = (index.urgent().filter(pl.col("PERSON").is_between(lo, hi, closed="left"))
                  .select((pl.col("PERSON") - lo).cast(pl.UInt32).alias("PID"), "INDEX"))
        matched = matched.with_columns(visit_emergency(own.lazy(), visits))
    units, decoding = units_of(prep, matched, by_row=False)
    ppl = people.select("FINNGENID", "SEX").sort("FINNGENID").with_row_index("PID").collect(engine=ENGINE)
    pid_sex = ppl.select(sex_bits(pl.col("SEX")).alias("_SEX_BIT"))["_SEX_BIT"]
    summaries, _ = BucketLevels(prep, units, decoding, pid_sex).run()
    # the index holds no events of people outside the people table (the registry check dropped them)
    return bucket_outputs(prep, ppl, summaries, 0, 0)
