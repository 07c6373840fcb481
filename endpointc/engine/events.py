"""Two more passes of the Polars engine, bucket by bucket: case event rows, and counts only.

`evaluate` (engine/polars.py) returns one row per (endpoint, person). FinnGen's release
files need two other shapes of the same evaluation, both for registries larger than
memory, so both go through person buckets (consecutive FINNGENID ranges, `person_buckets`)
with one `prepare` shared by every bucket, as `evaluate` does:

* `case_event_parts`: each selected endpoint's case event rows, exactly the rows its NEVT
  counts (own events after mode, `when`, `min` and `needs other`, plus included case
  events, for its cases only; `polars.case_events` is the same for everyone at once), one
  frame per bucket in FINNGENID order;
* `counts_only`: the counts table of `evaluate` (COUNTS_SCHEMA) without its long table:
  each bucket's rows are dropped once counted, so a program whose endpoints exclude most
  of the population (the plan variants of `endpointc.release`) costs no spill.

Example (the `case_events` example, in two buckets):
    >>> import polars as pl
    >>> from endpointc.plan import Program, EndpointPlan, RulePlan, Branch, ColumnTest, CodeSet
    >>> rule = RulePlan(index=0, source="hospital", branches=(Branch(sources=("INPAT",),
    ...     tests=(ColumnTest(column="CODE1", codes=CodeSet(prefixes=("E11",))),)),))
    >>> program = Program(endpoints=(EndpointPlan(name="T2D", rules=(rule,)),))
    >>> events = pl.LazyFrame({"FINNGENID": ["A", "A", "B"], "SOURCE": ["INPAT"] * 3,
    ...     "EVENT_AGE": [50.0, 40.0, 30.0], "APPROX_EVENT_DAY": [None] * 3,
    ...     "CODE1": ["E119", "I10", "E110"], "CODE2": [None] * 3, "CODE3": [None] * 3,
    ...     "CODE4": [None] * 3, "ICDVER": ["10"] * 3, "CATEGORY": ["0"] * 3, "INDEX": ["1", "2", "3"]},
    ...     schema_overrides={"APPROX_EVENT_DAY": pl.Date, "CODE2": pl.String, "CODE3": pl.String,
    ...                       "CODE4": pl.String})
    >>> people = pl.LazyFrame({"FINNGENID": ["A", "B"], "SEX": ["male", "female"]})
    >>> [part.select("FINNGENID", "EVENT_AGE").rows() for part in case_event_parts(program, events, people, buckets=2)]
    [[('A', 50.0)], [('B', 30.0)]]
    >>> counts_only(program, events, people, buckets=2).rows()
    [('T2D', 2, 0, 0)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from ..plan import Program
from .buckets import id_ranges, range_starts
from .columns import MISSING_PART, pack
from .inputs import check_frames
from .outputs import combine_counts
from .prepare import Prepared, prepare
# the engine's own bucket step (with the case rows it can keep) and its key-prepass grouping
from .polars import _CONCURRENT_BUCKETS, _KEY_PART_BUCKETS, _evaluate_bucket, evaluate_bucket

__all__ = ["CASE_EVENT_COLUMNS", "case_event_parts", "counts_only"]

CASE_EVENT_COLUMNS = ("FINNGENID", "ENDPOINT", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY")


def _buckets(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, endpoints: Sequence[str] | None,
             buckets: int) -> tuple[Prepared, list[tuple[pl.LazyFrame, pl.LazyFrame]]]:
    """What `evaluate` does before its bucket loop: the shared `Prepared` and each bucket's
    (events with a row index ROW, people)."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    events, people = events.lazy(), people.lazy()
    check_frames(events, people)
    starts = range_starts(people, buckets)
    filters = id_ranges(starts)
    prep = prepare(program, events, endpoints=endpoints,
                   parts=id_ranges(starts[_KEY_PART_BUCKETS - 1::_KEY_PART_BUCKETS]))
    pairs = [(events, people) if len(filters) == 1 else (events.filter(f), people.filter(f)) for f in filters]
    # ROW only tells a bucket's rows apart: numbered after the filter, which still reaches the reader
    return prep, [(ev.with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64)), pp) for ev, pp in pairs]


def case_event_parts(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
                     endpoints: Sequence[str] | None = None, buckets: int = 1) -> Iterator[pl.DataFrame]:
    """The case event rows of the selected endpoints (default: all), one DataFrame per
    person bucket, buckets in FINNGENID order; only one bucket is evaluated at a time.

    Columns `CASE_EVENT_COLUMNS`: FINNGENID, ENDPOINT, SOURCE, EVENT_AGE, APPROX_EVENT_DAY;
    one row per (event row, endpoint), sorted by FINNGENID, EVENT_AGE, ENDPOINT,
    APPROX_EVENT_DAY (missing ones last), then the row's place in `events`: a person's
    events in time. Their concatenation does not depend on `buckets`.
    """
    prep, parts = _buckets(program, events, people, endpoints, buckets)
    names = pl.Series([ep.name for ep in prep.program.endpoints], dtype=pl.String)
    name_rank = pl.lit(prep.tables.name_rank).gather(pl.col("EP"))
    for indexed, pp in parts:
        _, rows = _evaluate_bucket(prep, indexed, pp, keep_rows=prep.selected)
        # ROW numbers the bucket's events from 0 and PID follows the FINNGENID order, so the
        # fields are gathered and the order is two packed u64 keys: (person, age's rank),
        # (name's rank, day), missing last: a join and a sort on names and floats with
        # missing values last took several times as long (DF12, 3.4e6 rows: 17 s against 4 s)
        fields = indexed.select("ROW", *CASE_EVENT_COLUMNS[2:]).sort("ROW").collect()
        age = pl.lit(fields["EVENT_AGE"].rank("dense").fill_null(MISSING_PART)).gather(pl.col("ROW"))
        day = pl.lit((fields["APPROX_EVENT_DAY"].cast(pl.Int64) + 2**31).fill_null(MISSING_PART)).gather(pl.col("ROW"))
        rows = rows.sort(pack("PID", age), name_rank * 2**32 + day.cast(pl.UInt64), pl.col("ROW"))
        yield rows.select(
            "FINNGENID", pl.lit(names).gather(pl.col("EP")).alias("ENDPOINT"),
            *(pl.lit(fields[c]).gather(pl.col("ROW")).alias(c) for c in CASE_EVENT_COLUMNS[2:]))


def counts_only(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
                endpoints: Sequence[str] | None = None, buckets: int = 1) -> pl.DataFrame:
    """`evaluate(...).counts` (ENDPOINT, N_CASES, N_CONTROLS, N_EXCLUDED, sorted by
    ENDPOINT), collected; no more rows are held than those of the two buckets evaluated
    together (as in `evaluate`), never the long table."""
    prep, parts = _buckets(program, events, people, endpoints, buckets)

    def run(pair: tuple[pl.LazyFrame, pl.LazyFrame]):
        return dataclasses.replace(evaluate_bucket(prep, *pair), long=pl.DataFrame())

    with ThreadPoolExecutor(max_workers=min(_CONCURRENT_BUCKETS, len(parts))) as pool:
        results = list(pool.map(run, parts))
    return combine_counts(prep, results)
