"""The Polars engine: a whole program over the registry in one pass over the events.

The public entry points; each step is a module of its own (ARCHITECTURE.md, "Engines"):

* `prepare` (engine/prepare.py) matches every code pattern of the program ONCE against
  the distinct event keys (`matching.match_keys`), giving a small table key -> (endpoint,
  rule), and groups the keys into signatures (`signatures.signatures`): includes of pure
  endpoints are folded into the key table, and keys that then do the same thing share one
  signature.
* `evaluate_bucket` evaluates all endpoints for the people of one bucket (a FINNGENID
  range, `person_buckets`, engine/buckets.py; one bucket = everyone). It joins the events
  to the matched keys once, keeping only matched rows, and folds them into *units*
  (engine/units.py): all rows of one person with one signature become one unit with a row
  count N and the earliest order key, except rows some `when` or spaced `min` can read,
  which stay units of their own. One fan-out of units through the folded table gives
  every endpoint that is not complex its first event and NEVT per person. Complex
  endpoints (a `when`, a counted rule, an include of an impure endpoint) are resolved
  level by level (engine/levels.py) on (endpoint, unit) pairs packed in one u64, with
  their counted own rows (engine/counted.py: mode, `when`, min, spaced and clustered min
  (engine/spacing.py), needs-other) and the case rows of the impure endpoints they
  include; `require` (engine/require.py) and sex apply per level on the (endpoint,
  person) case table; controls last (engine/outputs.py). The facts about other endpoints
  that a `when` or `require` reads are joined by person from the final cases of earlier
  levels (engine/conditions.py). Row sets of an endpoint are dropped as soon as no later
  level includes them.
* Cost: the events are read by one grouped pass (distinct keys with row counts, in
  `prepare`, in parts of ten buckets so that its memory does not grow with the registry)
  and, per bucket, one filtered join (single-column `is_in` pre-filters chosen
  from those counts, then the matched-key join on one u64 hash of the key columns).
  Everything after runs on units: each carries a u64 order key (AGE part, DAY) so the
  first event of any (endpoint, person) is a plain group min; groupings are on one u64
  key (a key of several columns is row-encoded, several times dearer); and the emergency
  visit lookup only touches rows an emergency `when` can read.
* `case_events` exposes each endpoint's case event rows (what NEVT counts) for reports.
* `evaluate` loops over buckets. Every step is per person and buckets are consecutive id
  ranges, so a bucket's sorted rows are a slice of the sorted whole: with a spill folder
  they are written per bucket and merged by streaming (engine/spill.py), and the results
  do not depend on the bucket count.

Example:
    >>> import polars as pl
    >>> from endpointc.plan import Program, EndpointPlan, RulePlan, Branch, ColumnTest, CodeSet
    >>> rule = RulePlan(index=0, source="hospital", branches=(Branch(sources=("INPAT",),
    ...     tests=(ColumnTest(column="CODE1", codes=CodeSet(prefixes=("E11",))),)),))
    >>> program = Program(endpoints=(EndpointPlan(name="T2D", rules=(rule,)),))
    >>> events = pl.LazyFrame({"FINNGENID": ["A", "A", "B"], "SOURCE": ["INPAT"] * 3,
    ...     "EVENT_AGE": [50.0, 40.0, 30.0], "APPROX_EVENT_DAY": [None] * 3,
    ...     "CODE1": ["E119", "E110", "I10"], "CODE2": [None] * 3, "CODE3": [None] * 3,
    ...     "CODE4": [None] * 3, "ICDVER": ["10"] * 3, "CATEGORY": ["0"] * 3, "INDEX": ["1", "2", "3"]},
    ...     schema_overrides={"APPROX_EVENT_DAY": pl.Date, "CODE2": pl.String, "CODE3": pl.String,
    ...                       "CODE4": pl.String})
    >>> people = pl.LazyFrame({"FINNGENID": ["A", "B"], "SEX": ["male", "female"]})
    >>> res = evaluate(program, events, people)
    >>> res.long.collect().select("FINNGENID", "STATUS", "AGE", "NEVT").rows()
    [('A', 'case', 40.0, 2)]
    >>> res.counts.collect().rows()
    [('T2D', 1, 1, 0)]
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ..plan import Program
from .buckets import id_ranges, person_buckets, range_starts
from .columns import U32
from .inputs import check_frames
from .levels import BucketLevels
from .matching import ENGINE
from .outputs import (
    BucketResult, Results, all_ids, bucket_outputs, combine_buckets, combine_counts, combine_warnings,
    long_table, offset_keys,
)
from .prepare import MissingColumnError, Prepared, prepare
from .schema import COUNTS_SCHEMA, LONG_SCHEMA
from .signatures import sex_bits
from .spill import merge_neighbours, stream_merged, write_spill
from .units import matched_query, matched_units

if TYPE_CHECKING:
    from ..index import EventIndex

__all__ = [
    "MissingColumnError", "Results", "Prepared", "BucketResult", "evaluate", "evaluate_buckets", "prepare",
    "evaluate_bucket",
    "combine_buckets", "person_buckets", "case_events", "evaluate_with_case_events", "event_pass_plan",
    "LONG_SCHEMA", "COUNTS_SCHEMA",
]

_CONCURRENT_BUCKETS = 2
_KEY_PART_BUCKETS = 10  # buckets per part of the key prepass: 5e7 events with `--buckets auto`


def evaluate_bucket(prep: Prepared, events: pl.LazyFrame, people: pl.LazyFrame) -> BucketResult:
    """Evaluate every endpoint of `prep` for one bucket of people (the caller filters both
    tables with one of `person_buckets`; `events` must carry a row index ROW, unique in the
    bucket)."""
    return _evaluate_bucket(prep, events, people)[0]


def _evaluate_bucket(prep: Prepared, events: pl.LazyFrame, people: pl.LazyFrame, *,
                     keep_rows: Sequence[int] = ()) -> tuple[BucketResult, pl.DataFrame]:
    """`evaluate_bucket`, plus the case event rows (EP, ROW, PID, FINNGENID; ROW as in
    `events`) of the endpoints at positions `keep_rows`."""
    ppl = (
        people.select("FINNGENID", "SEX").sort("FINNGENID").with_row_index("PID").collect(engine=ENGINE)
    )
    absent = (
        events.select("FINNGENID").join(ppl.lazy().select("FINNGENID"), on="FINNGENID", how="anti")
        .select(pl.len().alias("n"), pl.col("FINNGENID").n_unique().alias("m")).collect(engine=ENGINE)
    )
    units, decoding = matched_units(prep, events, ppl, by_row=bool(keep_rows))
    pid_sex = ppl.select(sex_bits(pl.col("SEX")).alias("_SEX_BIT"))["_SEX_BIT"]
    summaries, rows = BucketLevels(prep, units, decoding, pid_sex, keep_rows).run()
    out = bucket_outputs(prep, ppl, summaries, int(absent["n"][0]), int(absent["m"][0]))
    return out, rows.join(ppl.select("PID", "FINNGENID"), on="PID")


def evaluate(program: Program, events: pl.LazyFrame | EventIndex, people: pl.LazyFrame | None = None, *,
             endpoints: Sequence[str] | None = None, buckets: int = 1,
             spill_dir: str | os.PathLike[str] | None = None,
             on_bucket: Callable[[int, int], None] | None = None) -> Results:
    """Evaluate `program` over normalised `events` and `people` (see docs/language.md).

    `endpoints` selects endpoints by name (their dependencies are evaluated but not
    returned). `buckets` > 1 evaluates people in that many buckets (contiguous FINNGENID
    ranges, see `person_buckets`), one at a time, to bound memory; the results are the same
    for any bucket count. With `spill_dir` (an existing folder the caller owns and removes
    after using the results), each bucket's rows are written there sorted and `long` is a
    streaming merge of those files (past `spill.MERGE_FANIN` buckets, of merged groups of
    them), so no step holds more than one bucket in memory; without it the buckets' rows
    are concatenated in memory. `on_bucket(done, total)` is called after each bucket (e.g.
    to advance a progress bar). Frames that are not in the normalised schema (as
    `registry.scan_events` / `load_registry` give them) raise `inputs.NotNormalisedError`
    (a ValueError) naming the columns, before any work.

    `events` may instead be an event index (`endpointc.index.open_index`), without
    `people`: the results are those over the registry it was built from, as `load_registry`
    reads it (engine/indexed.py: the rows of the matched keys only, or the registry in
    `buckets` buckets when the selection matches most events).
    """
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    if not isinstance(events, (pl.LazyFrame, pl.DataFrame)):  # an EventIndex
        if people is not None:
            raise ValueError("an event index brings its own people table: pass no people")
        from .indexed import evaluate_indexed

        return evaluate_indexed(program, events, endpoints=endpoints, buckets=buckets, spill_dir=spill_dir,
                                on_bucket=on_bucket)
    if people is None:
        raise ValueError("people is needed with an events frame")
    events = events.lazy()
    people = people.lazy()
    check_frames(events, people)
    starts = range_starts(people, buckets)
    # the key prepass reads the events in groups of whole buckets (see `match_keys`)
    prep = prepare(program, events, endpoints=endpoints,
                   parts=id_ranges(starts[_KEY_PART_BUCKETS - 1::_KEY_PART_BUCKETS]))
    return evaluate_buckets(prep, events, people, starts, spill_dir=spill_dir, on_bucket=on_bucket)


def evaluate_buckets(prep: Prepared, events: pl.LazyFrame, people: pl.LazyFrame, starts: Sequence[str], *,
                     spill_dir: str | os.PathLike[str] | None = None,
                     on_bucket: Callable[[int, int], None] | None = None,
                     bucket: Callable[[int, pl.LazyFrame], BucketResult] | None = None) -> Results:
    """`evaluate`'s loop over the person buckets that `starts` begin (`range_starts`), once
    `prep` is known. `bucket(b, people of b)` evaluates bucket b another way than from
    `events` (engine/indexed.py)."""
    filters = id_ranges(starts)
    spill = Path(spill_dir) if spill_dir is not None and len(filters) > 1 else None
    if spill is not None:
        # each bucket's people come after all earlier buckets' (consecutive id ranges): a
        # spilled _KEY carries the person's rank among everyone, so the merge reads all
        # bucket files in one scan
        heads = people.select(*(f.sum().alias(str(b)) for b, f in enumerate(filters))).collect().row(0)
        people_before = list(itertools.accumulate(heads, initial=0))

    def run(b: int) -> BucketResult:
        pp = people if len(filters) == 1 else people.filter(filters[b])
        if bucket is not None:
            part = bucket(b, pp)
        else:
            ev = events if len(filters) == 1 else events.filter(filters[b])
            # ROW only needs to tell a bucket's rows apart: numbered after the filter, which
            # then still reaches the reader
            part = evaluate_bucket(prep, ev.with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64)), pp)
        if spill is not None:
            write_spill(offset_keys(part.long, people_before[b]), spill / f"bucket-{b:05d}.parquet")
            part = dataclasses.replace(part, long=part.long.clear())
        return part

    # Two buckets at a time: one bucket's single-threaded stretches (Python, small
    # collects) leave cores idle that the other's joins use.
    with ThreadPoolExecutor(max_workers=min(_CONCURRENT_BUCKETS, len(filters))) as pool:
        futures = [pool.submit(run, b) for b in range(len(filters))]
        for done, _ in enumerate(as_completed(futures), 1):
            if on_bucket is not None:
                on_bucket(done, len(filters))
        parts = [f.result() for f in futures]
    if spill is None:
        return combine_buckets(prep, parts)
    if [p.ids.len() for p in parts] != list(heads):
        raise RuntimeError("person buckets changed size between counting and evaluating")
    files = [spill / f"bucket-{b:05d}.parquet" for b in range(len(filters))]
    # each bucket's rows per endpoint in name order, the order of _KEY's high half
    # (unselected: none)
    names = sorted(ep.name for ep in prep.program.endpoints)
    sizes = []
    for p in parts:
        per_name = dict(p.counts.select("ENDPOINT", pl.col("N_CASES") + pl.col("N_EXCLUDED")).iter_rows())
        sizes.append([per_name.get(name, 0) for name in names])
    files, sizes = merge_neighbours(files, sizes, spill)
    return Results(long=long_table(stream_merged(files, sizes), prep, all_ids(parts)),
                   counts=combine_counts(prep, parts).lazy(), warnings=combine_warnings(parts))


def event_pass_plan(program: Program, events: pl.LazyFrame, *,
                    endpoints: Sequence[str] | None = None) -> str:
    """The optimised Polars plan of the pass over the events for `endpoints` (what
    `endpointc compile --explain` shows); the code keys are matched on `events`."""
    prep = prepare(program, events, endpoints=endpoints)
    indexed = events.with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64))
    people = pl.DataFrame(schema={"FINNGENID": pl.String, "PID": pl.UInt32})
    return matched_query(prep, indexed, people).explain()


def case_events(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
                endpoints: Sequence[str] | None = None) -> pl.LazyFrame:
    """The case events of each endpoint: exactly the rows its NEVT counts (own events after
    mode, `when`, min and needs-other, plus included case events), for its cases only.

    Columns: ROW (position in `events`), FINNGENID, ENDPOINT, SOURCE, EVENT_AGE,
    APPROX_EVENT_DAY; one row per (ROW, ENDPOINT), sorted by ENDPOINT, FINNGENID, ROW.
    `endpoints` selects endpoints by name (default: all).

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
    >>> case_events(program, events, people).select("ROW", "FINNGENID", "EVENT_AGE").collect().rows()
    [(0, 'A', 50.0), (2, 'B', 30.0)]
    """
    rows = evaluate_with_case_events(program, events, people, endpoints=endpoints)[1]
    return rows.sort("ENDPOINT", "FINNGENID", "ROW")


def evaluate_with_case_events(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
                              endpoints: Sequence[str] | None = None, case_events_of: Sequence[str] | None = None
                              ) -> tuple[Results, pl.LazyFrame]:
    """`evaluate` (in one bucket) and `case_events` of the endpoints `case_events_of` (default:
    all of `endpoints`; in no order), from one pass over the events."""
    events = events.lazy()
    check_frames(events, people.lazy())
    prep = prepare(program, events, endpoints=endpoints)
    indexed = events.with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64))
    keep = (prep.selected if case_events_of is None
            else [i for i, ep in enumerate(prep.program.endpoints) if ep.name in set(case_events_of)])
    part, rows = _evaluate_bucket(prep, indexed, people.lazy(), keep_rows=keep)
    names = pl.DataFrame({"EP": list(range(len(prep.program.endpoints))),
                          "ENDPOINT": [ep.name for ep in prep.program.endpoints]},
                         schema={"EP": U32, "ENDPOINT": pl.String})
    meta = (indexed.select("ROW", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY")
            .join(rows.lazy().select("ROW").unique(), on="ROW", how="semi"))
    return combine_buckets(prep, [part]), (
        rows.lazy().join(names.lazy(), on="EP").join(meta, on="ROW")
        .select("ROW", "FINNGENID", "ENDPOINT", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY")
    )
