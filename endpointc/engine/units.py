"""A bucket's events -> units.

Input: one bucket's events (with a row index ROW) and people (with PID), and `Prepared`;
output: the events' matched rows as units (UNIT, PID, SIG, N, _ORDER_KEY, AGE, YEAR, ...)
and the `OrderDecoding` that turns an order key back into AGE and YEAR. On the way: the
one join of the events with the matched keys (`matched_query`), the emergency of the rows
an emergency `when` reads (`emergency_column`), and the AGE and DAY parts of the order key
(`age_parts`, `years_by_day`, `decode_first`).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ..registry import as_read
from .columns import MISSING_PART, order_day, pack, unpack
from .matching import ENGINE, key_hash
from .prepare import Prepared

__all__ = ["matched_query", "code1_per_row", "matched_units", "units_of", "visit_emergency", "OrderDecoding",
           "decode_first"]

# A row with a missing INDEX is its own visit: emergency never propagates through null INDEX.
_EMERGENCY_NULL_INDEX_EQUAL = False
_MAX_HUNDREDTHS = 2**22  # widest AGE range (in hundredths) decoded by a table, not a rank
_MAX_DAYS = 2**20  # widest DAY range (about 2,900 years) decoded by a table of years


def matched_query(prep: Prepared, events: pl.LazyFrame, people: pl.DataFrame) -> pl.LazyFrame:
    """The one pass over the events: every rule of every endpoint matched by a join of the
    events with the table of matched code keys."""
    cols = list(prep.mapping.columns)
    extra = []
    if prep.uses_mode and "CODE1" not in cols:
        extra.append("CODE1")
    selected = events.filter(*prep.mapping.row_filters) if prep.mapping.row_filters else events
    keys = prep.sigs.keys.lazy()
    if prep.sigs.read_keys is not None:
        lf = (selected.select("ROW", "FINNGENID", "EVENT_AGE", "APPROX_EVENT_DAY", *extra,
                              key_hash(tuple(as_read(c) for c in cols)))
              .join(prep.sigs.read_keys.lazy(), on="_HASH"))
    elif prep.mapping.hash_unique:
        lf = (selected.select("ROW", "FINNGENID", "EVENT_AGE", "APPROX_EVENT_DAY", *extra, key_hash(cols))
              .join(keys.select("_HASH", "SIG"), on="_HASH"))
    else:
        lf = (selected.select("ROW", "FINNGENID", "EVENT_AGE", "APPROX_EVENT_DAY", *cols, *extra)
              .join(keys, on=cols, nulls_equal=True))
    lf = (
        lf.join(people.lazy().select("FINNGENID", "PID"), on="FINNGENID")
        .with_columns(
            pl.col("EVENT_AGE").alias("AGE"),
            pl.col("APPROX_EVENT_DAY").alias("DAY"),
        )
    )
    return lf


def code1_per_row(prep: Prepared) -> bool:
    """Whether mode needs CODE1 carried on each row (it is not one of the key columns)."""
    return prep.uses_mode and "CODE1" not in prep.mapping.columns


@dataclass(frozen=True)
class OrderDecoding:
    """What turns an order key _ORDER_KEY back into AGE and YEAR: AGE by AGE part - 1 (see
    `age_parts`) and, when the days span a narrow range, the YEAR of each day from
    `first_day` on (a gather: 3e6 keys in 0.03 s, against 0.10 s for a Date's year)."""

    ages: pl.Series
    first_day: int = 0
    years: pl.Series | None = None


def matched_units(prep: Prepared, events: pl.LazyFrame, people: pl.DataFrame, *,
                  by_row: bool) -> tuple[pl.DataFrame, OrderDecoding]:
    """The events' matched rows as units, numbered UNIT 0..n-1: the unit of work of
    everything after. (The matched rows are collected, then grouped: measured cheaper than
    one streaming query doing both.)

    A unit is one row when some `when` can read its fields (the row's signature reaches an
    endpoint with a `when`), or all rows of one person with one signature otherwise (N
    rows; see `signatures`: the keys of a signature do the same thing, and mode's CODE1 is
    part of it). The levels' row sets then hold whole units: nothing but a `when` ever
    splits a person's rows of one signature (mode, min and needs-other count rows per
    person and rule, include/require/sex keep or drop whole (endpoint, person) sets), so
    NEVT is the sum of N and the first event the smallest order key over a set's units.
    `by_row` makes every row its own unit (for `case_events`, which returns rows).

    The order key _ORDER_KEY packs (AGE part, DAY) in a u64, missing parts last: the
    earliest event of any set is its smallest key, a plain min instead of a sort (see
    `age_parts`). Returns the units (UNIT, PID, SIG, N, _ORDER_KEY, AGE, YEAR, [EMERG],
    [CODE1], [ORIG]; AGE and YEAR are those of the earliest row) and the `OrderDecoding` of
    their order keys."""
    code1 = ["CODE1"] if code1_per_row(prep) else []
    matched = (matched_query(prep, events, people)
               .select("ROW", "PID", "SIG", *code1, "AGE", "DAY").collect(engine=ENGINE))
    if prep.uses_emergency:
        matched = matched.with_columns(emergency_column(prep, events, people, matched))
    return units_of(prep, matched, by_row=by_row)


def units_of(prep: Prepared, matched: pl.DataFrame, *, by_row: bool) -> tuple[pl.DataFrame, OrderDecoding]:
    """`matched_units` from the matched rows (ROW, PID, SIG, [CODE1], AGE, DAY, [EMERG]),
    however they were found (engine/indexed.py reads them from an event index)."""
    sigs = prep.sigs
    code1 = ["CODE1"] if code1_per_row(prep) else []
    part, ages = age_parts(matched)
    decoding = OrderDecoding(ages, *years_by_day(matched))
    matched = matched.with_columns(
        (part.fill_null(MISSING_PART) * 2**32
         + (pl.col("DAY").cast(pl.Int64) + 2**31).fill_null(MISSING_PART).cast(pl.UInt64)).alias("_ORDER_KEY"),
    ).drop("AGE", "DAY")
    if by_row:
        units = matched.rename({"ROW": "ORIG"}).with_columns(pl.lit(1, dtype=pl.UInt32).alias("N"))
    else:
        single = pl.col("SIG").is_in(list(sigs.single))
        rest = matched.lazy().filter(~single)
        if code1:
            grouped = rest.group_by("PID", "SIG", "CODE1").agg(pl.len().cast(pl.UInt32).alias("N"),
                                                               pl.col("_ORDER_KEY").min())
        else:
            # on one u64 key: a key of several columns is row-encoded, about 3x dearer here
            grouped = (rest.group_by(pack("PID", pl.col("SIG")).alias("_PID_SIG"))
                       .agg(pl.len().cast(pl.UInt32).alias("N"), pl.col("_ORDER_KEY").min())
                       .select(*unpack("_PID_SIG", "PID", "SIG"), "N", "_ORDER_KEY"))
        units = pl.concat([matched.filter(single).drop("ROW").with_columns(pl.lit(1, dtype=pl.UInt32).alias("N")),
                           grouped.collect(engine=ENGINE)], how="diagonal")
    # one chunk: everything after gathers from units at UNIT, 2-3x faster from one chunk than
    # from the ~70 a streaming collect returns (a 5e6-event bucket's gathers: 0.6 s -> 0.25 s)
    units = units.rechunk().with_row_index("UNIT")
    units = decode_first(units, decoding)
    if prep.uses_emergency:
        units = units.with_columns(pl.col("EMERG").fill_null(False))  # grouped units: never read
    return units, decoding


def emergency_column(prep: Prepared, events: pl.LazyFrame, people: pl.DataFrame,
                     matched: pl.DataFrame) -> pl.Expr:
    """EMERG of the `matched` rows (ROW, PID, SIG): an emergent row (one an emergency `when`
    reads) whose CODE9 is 1 or whose visit has a row with CODE9 1 (docs/language.md: "the same
    INDEX" -- one visit's rows, e.g. INPAT and its OPER_IN operations, share an INDEX whatever
    their SOURCE). INDEX and CODE9 are read here once, for the urgent and the emergent rows,
    and not by the matched query, which would carry them for every row."""
    emergent = matched.filter(pl.col("SIG").is_in(list(prep.sigs.emergency)))["ROW"].implode()
    urgent = (pl.col("CODE9") == "1").fill_null(False)
    rows = (events.filter(urgent | pl.col("ROW").is_in(emergent))
            .select("ROW", "FINNGENID", "INDEX", urgent.alias("_URGENT"))
            .join(people.lazy().select("FINNGENID", "PID"), on="FINNGENID")
            .collect(engine=ENGINE).lazy())
    return visit_emergency(rows.filter(pl.col("ROW").is_in(emergent)),
                           rows.filter(pl.col("_URGENT")).select("PID", "INDEX"))


def visit_emergency(own: pl.LazyFrame, visits: pl.LazyFrame) -> pl.Expr:
    """EMERG from the emergent rows `own` (ROW, PID, INDEX, _URGENT) and the urgent rows'
    visits (PID, INDEX) of the same people: the row is urgent or shares a visit with one."""
    visits = visits.unique()
    hits = pl.concat([
        own.filter(pl.col("_URGENT")).select("ROW"),
        own.join(visits, on=["PID", "INDEX"], how="semi", nulls_equal=_EMERGENCY_NULL_INDEX_EQUAL).select("ROW"),
    ]).collect(engine=ENGINE)
    return pl.col("ROW").is_in(hits["ROW"].implode()).alias("EMERG")


def age_parts(matched: pl.DataFrame) -> tuple[pl.Expr, pl.Series]:
    """An AGE part for the order key: an expression on AGE giving a u64 from 1 that orders
    like AGE (null when AGE is), and AGE by part - 1 to decode it, from the distinct AGE
    values of the `matched` rows.

    The part is AGE in hundredths, shifted to start at 1, when no two ages share a number
    of hundredths (FinnGen's EVENT_AGE has two decimals) and their range is narrow.
    Otherwise it is AGE's position among the distinct ages, found by binary search."""
    pairs = (matched.lazy().select("AGE").drop_nulls().unique()
             .collect(engine=ENGINE).with_columns((pl.col("AGE") * 100).round().alias("_HUNDREDTHS")))
    if (pairs.height and pairs["AGE"].is_finite().all()
            and pairs["_HUNDREDTHS"].n_unique() == pairs.height):
        low, high = int(pairs["_HUNDREDTHS"].min()), int(pairs["_HUNDREDTHS"].max())
        if high - low < _MAX_HUNDREDTHS:
            index = (pairs["_HUNDREDTHS"] - low).cast(pl.Int64)
            ages = pl.repeat(None, high - low + 1, dtype=pl.Float64, eager=True).scatter(index, pairs["AGE"])
            return ((pl.col("AGE") * 100).round() - (low - 1)).cast(pl.UInt64), ages
    ages = pairs["AGE"].sort()
    position = pl.lit(ages).search_sorted(pl.col("AGE"), side="left").cast(pl.UInt64) + 1
    return pl.when(pl.col("AGE").is_not_null()).then(position), ages


def years_by_day(matched: pl.DataFrame) -> tuple[int, pl.Series | None]:
    """(first day, YEAR of each day from it) over the DAY range of the `matched` rows, or
    (0, None) when there are no days or they span more than _MAX_DAYS."""
    days = matched["DAY"].cast(pl.Int64)
    low, high = days.min(), days.max()
    if low is None or high - low >= _MAX_DAYS:
        return 0, None
    return low, (pl.int_range(low, high + 1, dtype=pl.Int32, eager=True)
                 .cast(pl.Date).dt.year().cast(pl.Int32))


def decode_first(first: pl.DataFrame, decoding: OrderDecoding, *, day: bool = False) -> pl.DataFrame:
    """AGE and YEAR (and with `day`, DAY) of the earliest event from its order key _ORDER_KEY."""
    part = pl.col("_ORDER_KEY") // 2**32
    days = order_day(pl.col("_ORDER_KEY"))
    if decoding.years is None:
        year = days.cast(pl.Int32).cast(pl.Date).dt.year().cast(pl.Int32)
    else:
        year = pl.lit(decoding.years).gather(days - decoding.first_day)
    return first.with_columns(
        pl.lit(decoding.ages).gather(pl.when(part == MISSING_PART).then(None).otherwise(part - 1)).alias("AGE"),
        year.alias("YEAR"),
        *([days.cast(pl.Int32).alias("DAY")] if day else []),
    )
