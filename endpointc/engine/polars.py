"""The Polars engine: a whole program over the registry in one pass over the events.

Design (issue 3; memory bounded for issue 6):

* `prepare` matches every code pattern of the program ONCE against the distinct event keys
  (`matching.match_keys`), giving a small table key -> (endpoint, rule), and groups the
  keys into signatures (`signatures.signatures`): includes of pure endpoints are folded
  into the key table, and keys that then do the same thing share one signature.
* `evaluate_bucket` evaluates all endpoints for the people of one bucket (a FINNGENID
  range, `person_buckets`; one bucket = everyone). It joins the events to the matched keys
  once, keeping only matched rows, and folds them into *units* (`_units`): all rows of one
  person with one signature become one unit with a row count N and the earliest order
  key, except rows some `when` can read, which stay units of their own. One fan-out of
  units through the folded table gives every endpoint that is not complex its first event
  and NEVT per person. Complex endpoints (a `when`, a counted rule, an include of an
  impure endpoint) are resolved level by level on (endpoint, unit) pairs packed in one
  u64, with their counted own rows (mode, `when`, min, needs-other) and the case rows of
  the impure endpoints they include; `require` and sex apply per level on the
  (endpoint, person) case table; controls last. Row sets of an endpoint are dropped as
  soon as no later level includes them.
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
  they are written per bucket and merged by streaming, and the results do not depend on
  the bucket count.

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
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from polars.io.plugins import register_io_source

from ..plan import (
    AllOf, AnyOf, Cmp, Const, Count, EventField, FirstAge, FirstYear, IsCase, Negate,
    Program, cond_endpoints,
)
from ..diagnostics import Diagnostic, DiagnosticError
from ..registry import as_read
from .schema import COUNTS_SCHEMA, LONG_SCHEMA
from .matching import ENGINE as _ENGINE, KeyMapping, key_hash, match_keys
from .signatures import ALL_SEXES, SEX_BITS, Signatures, sex_bits, signatures

__all__ = [
    "MissingColumnError", "Results", "Prepared", "BucketResult", "evaluate", "prepare", "evaluate_bucket",
    "combine_buckets", "person_buckets", "case_events", "event_pass_plan", "LONG_SCHEMA", "COUNTS_SCHEMA",
]

_U32 = pl.UInt32
_CONCURRENT_BUCKETS = 2
_CASES_SCHEMA = {"EP": _U32, "PID": _U32, "AGE": pl.Float64, "YEAR": pl.Int32, "NEVT": pl.Int64}
_ROWS_SCHEMA = {"ROW": pl.UInt64, "EP": _U32, "PID": _U32}
# A row with a missing INDEX is its own visit: emergency never propagates through null INDEX.
_EMERGENCY_NULL_INDEX_EQUAL = False


class MissingColumnError(DiagnosticError, ValueError):
    """A column the program needs is absent from the events table (EP502)."""


@dataclass(frozen=True)
class Results:
    """`long`: FINNGENID, ENDPOINT, STATUS (case|excluded), AGE, YEAR, NEVT sorted by ENDPOINT,
    FINNGENID; `counts`: ENDPOINT, N_CASES, N_CONTROLS, N_EXCLUDED; `warnings`: aggregate
    notes about the data (never person-level values)."""

    long: pl.LazyFrame
    counts: pl.LazyFrame
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Prepared:
    """What every bucket shares: the program, the selection, the matched keys and their
    signatures, the levels."""

    program: Program
    selected: tuple[int, ...]  # positions in program.endpoints of the endpoints to return
    mapping: KeyMapping
    sigs: Signatures
    levels: tuple[tuple[int, ...], ...]  # endpoint positions, each level after its deps
    uses_emergency: bool
    uses_mode: bool
    tables: "_Tables"


@dataclass(frozen=True)
class _Tables:
    """Per-program constants every bucket reads, derived once (Python loops over thousands
    of endpoints would otherwise be a fixed cost of every bucket)."""

    pos: dict[str, int]
    ep_level: pl.Series  # level by endpoint position (u32)
    ep_sex: pl.Series  # the sex bits (u8) an endpoint's cases may have, by endpoint position
    name_rank: pl.Series  # rank of the endpoint's name by position (u64)
    # the last level that reads an impure endpoint's case rows (through an include)
    last_use: dict[int, int]
    simple_req: tuple[int, ...]  # endpoints with a `require` that are not complex
    read_by_require: frozenset[int]
    # per level: complex members, their includes of carried endpoints (child, endpoint)
    # and their `when` as one expression
    level_complex: tuple[tuple[int, ...], ...]
    level_edges: tuple[pl.DataFrame | None, ...]
    level_when: tuple[pl.Expr | None, ...]
    counted_when: pl.Expr | None
    mode_rules: pl.DataFrame  # (EP, RULE)
    mins: pl.DataFrame  # (EP, RULE, _MIN)
    needs: pl.DataFrame  # (EP, RULE)


def _tables(program: Program, sigs: Signatures, levels: tuple[tuple[int, ...], ...]) -> _Tables:
    eps = program.endpoints
    pos = {ep.name: i for i, ep in enumerate(eps)}
    level_of = {i: lv for lv, members in enumerate(levels) for i in members}
    last_use: dict[int, int] = {}
    for i in sigs.complex:
        for name in eps[i].includes:
            if pos[name] in sigs.carried:
                last_use[pos[name]] = max(last_use.get(pos[name], -1), level_of[i])
    by_name = sorted(range(len(eps)), key=lambda i: eps[i].name)
    level_complex = tuple(tuple(i for i in members if i in sigs.complex) for members in levels)
    edges = []
    for members in level_complex:
        pairs = [(pos[x], i) for i in members for x in eps[i].includes if pos[x] in sigs.carried]
        edges.append(pl.DataFrame(pairs, schema={"_CHILD": _U32, "EP": _U32}, orient="row") if pairs else None)
    counted = [i for i, ep in enumerate(eps) if ep.counted]
    rules = [(e, r, rule) for e, ep in enumerate(eps) for r, rule in enumerate(ep.rules)]
    return _Tables(
        pos=pos,
        ep_level=pl.Series([level_of[i] for i in range(len(eps))], dtype=_U32),
        ep_sex=pl.Series([ALL_SEXES if ep.sex is None else SEX_BITS[ep.sex] for ep in eps], dtype=pl.UInt8),
        name_rank=pl.Series(sorted(range(len(eps)), key=by_name.__getitem__), dtype=pl.UInt64),
        last_use=last_use,
        simple_req=tuple(i for i, ep in enumerate(eps) if ep.require is not None and i not in sigs.complex),
        read_by_require=frozenset(pos[n] for ep in eps for n in cond_endpoints(ep.require)),
        level_complex=level_complex, level_edges=tuple(edges),
        level_when=tuple(_when_filter(program, members) for members in level_complex),
        counted_when=_when_filter(program, counted),
        mode_rules=pl.DataFrame([(e, r) for e, r, rule in rules if rule.mode],
                                schema={"EP": _U32, "RULE": _U32}, orient="row"),
        mins=pl.DataFrame([(e, r, rule.min_events) for e, r, rule in rules if rule.min_events > 1],
                          schema={"EP": _U32, "RULE": _U32, "_MIN": pl.UInt32}, orient="row"),
        needs=pl.DataFrame([(e, r) for e, r, rule in rules if rule.needs_other],
                           schema={"EP": _U32, "RULE": _U32}, orient="row"),
    )


@dataclass(frozen=True)
class BucketResult:
    """One bucket's outputs. `long`: _KEY, CASE, AGE, YEAR, NEVT sorted by _KEY = rank of
    the endpoint's name << 32 | rank of the person's id in the bucket, so integers are
    sorted and the names are put in by `long_table` while writing; `ids`: the bucket's
    FINNGENIDs by rank; `counts`: ENDPOINT, N_CASES, N_EXCLUDED, N_POPULATION; aggregate
    numbers of ignored events/people."""

    long: pl.DataFrame
    ids: pl.Series
    counts: pl.DataFrame
    absent_events: int
    absent_people: int


# -- conditions -> expressions ------------------------------------------------------------

@dataclass(frozen=True)
class _Ctx:
    """How a condition reads its operands: event fields (for `when`) and endpoint columns
    (for `require`/controls); a missing mapping means the node is not allowed there."""

    field: Callable[[str], pl.Expr] | None = None
    endpoint: Callable[[str, str], pl.Expr] | None = None


def _value(node, ctx: _Ctx) -> pl.Expr:
    fn = _VALUE.get(type(node))
    if fn is None:
        return _bool(node, ctx).cast(pl.Float64)
    return fn(node, ctx)


def _bool(node, ctx: _Ctx) -> pl.Expr:
    fn = _BOOL.get(type(node))
    if fn is None:
        value = _value(node, ctx)
        # a number in a boolean position: Python truthiness, missing is false
        return (value.is_not_null() & (value != 0)).fill_null(False)
    return fn(node, ctx)


def _need(fn, what: str, node):
    if fn is None:
        raise ValueError(f"{type(node).__name__} cannot be used in {what} conditions")
    return fn


def _field(node: EventField, ctx: _Ctx) -> pl.Expr:
    return _need(ctx.field, "person-level", node)(node.name).cast(pl.Float64)


def _ep(attr: str):
    def read(node, ctx: _Ctx) -> pl.Expr:
        return _need(ctx.endpoint, "event-level", node)(node.endpoint, attr)
    return read


_CMP = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}

_VALUE: dict[type, Callable[..., pl.Expr]] = {
    Const: lambda n, ctx: pl.lit(float(n.value), dtype=pl.Float64),
    EventField: _field,
    Count: _ep("count"),
    FirstAge: _ep("age"),
    FirstYear: _ep("year"),
}
_BOOL: dict[type, Callable[..., pl.Expr]] = {
    EventField: lambda n, ctx: (_need(ctx.field, "person-level", n)(n.name) if n.name == "emergency"
                            else _bool_number(_field(n, ctx))),
    IsCase: _ep("case"),
    Cmp: lambda n, ctx: _CMP[n.op](_value(n.left, ctx), _value(n.right, ctx)).fill_null(False),
    AllOf: lambda n, ctx: (pl.all_horizontal([_bool(a, ctx) for a in n.args]) if n.args
                           else pl.lit(True)),
    AnyOf: lambda n, ctx: (pl.any_horizontal([_bool(a, ctx) for a in n.args]) if n.args
                           else pl.lit(False)),
    Negate: lambda n, ctx: ~_bool(n.arg, ctx),
}


def _bool_number(value: pl.Expr) -> pl.Expr:
    return (value.is_not_null() & (value != 0)).fill_null(False)


_EVENT_FIELDS = {"age": "AGE", "year": "YEAR", "emergency": "EMERG"}
_EVENT_CTX = _Ctx(field=lambda name: pl.col(_EVENT_FIELDS[name]))


def _person_columns(index: int) -> dict[str, str]:
    return {"case": f"_C{index}", "count": f"_N{index}", "age": f"_A{index}", "year": f"_Y{index}"}


# -- preparation ----------------------------------------------------------------------

def _levels(program: Program) -> tuple[tuple[int, ...], ...]:
    """Group endpoints so each one's case-relevant deps (include, require) are in earlier groups."""
    pos = {ep.name: i for i, ep in enumerate(program.endpoints)}
    level: dict[int, int] = {}
    for i, ep in enumerate(program.endpoints):
        deps = [*ep.includes, *cond_endpoints(ep.require)]
        level[i] = 1 + max((level[pos[d]] for d in deps), default=-1)
    out: dict[int, list[int]] = {}
    for i, lv in level.items():
        out.setdefault(lv, []).append(i)
    return tuple(tuple(out[lv]) for lv in sorted(out))


def prepare(program: Program, events: pl.LazyFrame, *,
            endpoints: Sequence[str] | None = None, parts: Sequence[pl.Expr] | None = None) -> Prepared:
    """Select endpoints (plus dependencies), check the event columns, match all patterns
    (`parts`: filters that split the events, read one at a time; see `match_keys`)."""
    if endpoints is not None:
        wanted = list(dict.fromkeys(endpoints))
        program = program.subset(wanted)
        selected = tuple(i for i, ep in enumerate(program.endpoints) if ep.name in set(wanted))
    else:
        selected = tuple(range(len(program.endpoints)))
    schema = events.collect_schema()
    uses_emergency = any(ep.uses_emergency for ep in program.endpoints)
    if uses_emergency and "CODE9" not in schema:
        users = [ep.name for ep in program.endpoints if ep.uses_emergency]
        raise MissingColumnError([Diagnostic.error(
            "EP502",
            "the events table has no CODE9 column (urgency), needed by `when emergency` in "
            f"{', '.join(users[:5])}{' ...' if len(users) > 5 else ''}",
            None, "CODE9 is the service-sector urgency field of the longitudinal table")])
    mapping = match_keys(program, events, parts=parts)
    uses_mode = any(r.mode for ep in program.endpoints for r in ep.rules)
    sigs = signatures(program, mapping)
    levels = _levels(program)
    return Prepared(program=program, selected=selected, mapping=mapping, sigs=sigs, levels=levels,
                    uses_emergency=uses_emergency, uses_mode=uses_mode,
                    tables=_tables(program, sigs, levels))


# -- one bucket -----------------------------------------------------------------------

def _when_filter(program: Program, eps: Sequence[int]) -> pl.Expr | None:
    """One expression applying the `when` of the endpoints at positions `eps` to rows with
    an EP column."""
    groups: dict[str, tuple[object, list[int]]] = {}
    for i in eps:
        ep = program.endpoints[i]
        if ep.when is None:
            continue
        key = repr(ep.when)
        groups.setdefault(key, (ep.when, []))[1].append(i)
    if not groups:
        return None
    chain = None
    for cond, members in groups.values():
        test = pl.col("EP").is_in(members)
        keep = _bool(cond, _EVENT_CTX)
        chain = pl.when(test).then(keep) if chain is None else chain.when(test).then(keep)
    return chain.otherwise(True)


def _matched_query(prep: Prepared, events: pl.LazyFrame, people: pl.DataFrame) -> pl.LazyFrame:
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


def _code1_of_row(prep: Prepared) -> bool:
    """Whether mode needs CODE1 carried on each row (it is not one of the key columns)."""
    return prep.uses_mode and "CODE1" not in prep.mapping.columns


_NO_PART = 2**32 - 1  # a missing AGE part or DAY: after every real one (nulls last)


def _units(prep: Prepared, events: pl.LazyFrame, people: pl.DataFrame, *,
           by_row: bool) -> tuple[pl.DataFrame, _Decoding]:
    """The events' matched rows as units, numbered UNIT 0..n-1: the unit of work of
    everything after. (The matched rows are collected, then grouped: measured cheaper than
    one streaming query doing both.)

    A unit is one row when some `when` can read its fields (the row's signature reaches an
    endpoint with a `when`), or all rows of one person with one signature otherwise (N
    rows; see `signatures`: the keys of a signature do the same thing, and mode's CODE1 is
    part of it). Step 5's row sets then hold whole units: nothing but a `when` ever splits
    a person's rows of one signature (mode, min and needs-other count rows per person and
    rule, include/require/sex keep or drop whole (endpoint, person) sets), so NEVT is the
    sum of N and the first event the smallest order key over a set's units.
    `by_row` makes every row its own unit (for `case_events`, which returns rows).

    The order key _K packs (AGE part, DAY) in a u64, missing parts last: the earliest
    event of any set is its smallest _K, a plain min instead of a sort (see `_age_parts`).
    Returns the units (UNIT, PID, SIG, N, _K, AGE, YEAR, [EMERG], [CODE1], [ORIG]; AGE and
    YEAR are those of the earliest row) and the `_Decoding` of their order keys."""
    sigs = prep.sigs
    code1 = ["CODE1"] if _code1_of_row(prep) else []
    matched = (_matched_query(prep, events, people)
               .select("ROW", "PID", "SIG", *code1, "AGE", "DAY").collect(engine=_ENGINE))
    if prep.uses_emergency:
        matched = matched.with_columns(_emergency(prep, events, people, matched))
    part, ages = _age_parts(matched)
    decoding = _Decoding(ages, *_years(matched))
    matched = matched.with_columns(
        (part.fill_null(_NO_PART) * 2**32
         + (pl.col("DAY").cast(pl.Int64) + 2**31).fill_null(_NO_PART).cast(pl.UInt64)).alias("_K"),
    ).drop("AGE", "DAY")
    if by_row:
        units = matched.rename({"ROW": "ORIG"}).with_columns(pl.lit(1, dtype=pl.UInt32).alias("N"))
    else:
        single = pl.col("SIG").is_in(list(sigs.single))
        rest = matched.lazy().filter(~single)
        if code1:
            grouped = rest.group_by("PID", "SIG", "CODE1").agg(pl.len().cast(pl.UInt32).alias("N"), pl.col("_K").min())
        else:
            # on one u64 key: a key of several columns is row-encoded, about 3x dearer here
            grouped = (rest.group_by(_pack("PID", pl.col("SIG")).alias("_PS"))
                       .agg(pl.len().cast(pl.UInt32).alias("N"), pl.col("_K").min())
                       .select(*_unpack("_PS", "PID", "SIG"), "N", "_K"))
        units = pl.concat([matched.filter(single).drop("ROW").with_columns(pl.lit(1, dtype=pl.UInt32).alias("N")),
                           grouped.collect(engine=_ENGINE)], how="diagonal")
    # one chunk: everything after gathers from units at UNIT, 2-3x faster from one chunk than
    # from the ~70 a streaming collect returns (a 5e6-event bucket's gathers: 0.6 s -> 0.25 s)
    units = units.rechunk().with_row_index("UNIT")
    units = _decode_first(units, decoding)
    if prep.uses_emergency:
        units = units.with_columns(pl.col("EMERG").fill_null(False))  # grouped units: never read
    return units, decoding


def _emergency(prep: Prepared, events: pl.LazyFrame, people: pl.DataFrame,
               matched: pl.DataFrame) -> pl.Expr:
    """EMERG of the `matched` rows (ROW, PID, SIG): an emergent row (one an emergency `when`
    reads) whose CODE9 is 1 or whose visit has a row with CODE9 1 (LANGUAGE.md: "the same
    INDEX" -- one visit's rows, e.g. INPAT and its OPER_IN operations, share an INDEX whatever
    their SOURCE). INDEX and CODE9 are read here once, for the urgent and the emergent rows,
    and not by the matched query, which would carry them for every row."""
    emergent = matched.filter(pl.col("SIG").is_in(list(prep.sigs.emergency)))["ROW"].implode()
    urgent = (pl.col("CODE9") == "1").fill_null(False)
    rows = (events.filter(urgent | pl.col("ROW").is_in(emergent))
            .select("ROW", "FINNGENID", "INDEX", urgent.alias("_E9"))
            .join(people.lazy().select("FINNGENID", "PID"), on="FINNGENID")
            .collect(engine=_ENGINE).lazy())
    own = rows.filter(pl.col("ROW").is_in(emergent))
    visits = rows.filter(pl.col("_E9")).select("PID", "INDEX").unique()
    hits = pl.concat([
        own.filter(pl.col("_E9")).select("ROW"),
        own.join(visits, on=["PID", "INDEX"], how="semi", nulls_equal=_EMERGENCY_NULL_INDEX_EQUAL).select("ROW"),
    ]).collect(engine=_ENGINE)
    return pl.col("ROW").is_in(hits["ROW"].implode()).alias("EMERG")


_MAX_HUNDREDTHS = 2**22  # widest AGE range (in hundredths) decoded by a table, not a rank


def _age_parts(matched: pl.DataFrame) -> tuple[pl.Expr, pl.Series]:
    """An AGE part for the order key: an expression on AGE giving a u64 from 1 that orders
    like AGE (null when AGE is), and AGE by part - 1 to decode it, from the distinct AGE
    values of the `matched` rows.

    The part is AGE in hundredths, shifted to start at 1, when no two ages share a number
    of hundredths (FinnGen's EVENT_AGE has two decimals) and their range is narrow.
    Otherwise it is AGE's position among the distinct ages, found by binary search."""
    pairs = (matched.lazy().select("AGE").drop_nulls().unique()
             .collect(engine=_ENGINE).with_columns((pl.col("AGE") * 100).round().alias("_H")))
    if pairs.height and pairs["AGE"].is_finite().all() and pairs["_H"].n_unique() == pairs.height:
        low, high = int(pairs["_H"].min()), int(pairs["_H"].max())
        if high - low < _MAX_HUNDREDTHS:
            index = (pairs["_H"] - low).cast(pl.Int64)
            ages = pl.repeat(None, high - low + 1, dtype=pl.Float64, eager=True).scatter(index, pairs["AGE"])
            return ((pl.col("AGE") * 100).round() - (low - 1)).cast(pl.UInt64), ages
    ages = pairs["AGE"].sort()
    position = pl.lit(ages).search_sorted(pl.col("AGE"), side="left").cast(pl.UInt64) + 1
    return pl.when(pl.col("AGE").is_not_null()).then(position), ages


_MAX_DAYS = 2**20  # widest DAY range (about 2,900 years) decoded by a table of years


@dataclass(frozen=True)
class _Decoding:
    """What turns an order key _K back into AGE and YEAR: AGE by AGE part - 1 (see
    `_age_parts`) and, when the days span a narrow range, the YEAR of each day from
    `first_day` on (a gather: 3e6 keys in 0.03 s, against 0.10 s for a Date's year)."""

    ages: pl.Series
    first_day: int = 0
    years: pl.Series | None = None


def _years(matched: pl.DataFrame) -> tuple[int, pl.Series | None]:
    """(first day, YEAR of each day from it) over the DAY range of the `matched` rows, or
    (0, None) when there are no days or they span more than _MAX_DAYS."""
    days = matched["DAY"].cast(pl.Int64)
    low, high = days.min(), days.max()
    if low is None or high - low >= _MAX_DAYS:
        return 0, None
    return low, (pl.int_range(low, high + 1, dtype=pl.Int32, eager=True)
                 .cast(pl.Date).dt.year().cast(pl.Int32))


def _decode_first(first: pl.DataFrame, decoding: _Decoding) -> pl.DataFrame:
    """AGE and YEAR of the earliest event from its order key _K (see `_units`)."""
    part, day = pl.col("_K") // 2**32, pl.col("_K") % 2**32
    days = pl.when(day == _NO_PART).then(None).otherwise(day.cast(pl.Int64) - 2**31)
    if decoding.years is None:
        year = days.cast(pl.Int32).cast(pl.Date).dt.year().cast(pl.Int32)
    else:
        year = pl.lit(decoding.years).gather(days - decoding.first_day)
    return first.with_columns(
        pl.lit(decoding.ages).gather(pl.when(part == _NO_PART).then(None).otherwise(part - 1)).alias("AGE"),
        year.alias("YEAR"),
    )


def _counted_rows(prep: Prepared, units: pl.DataFrame) -> pl.DataFrame:
    """(UNIT, EP) of the own units of endpoints with counted rules (see `Signatures`),
    after mode, when, min and needs-other. Every other endpoint's own units are folded."""
    tables = prep.tables
    rows = units.lazy().join(prep.sigs.counted.lazy(), on="SIG")
    if prep.uses_mode:
        mode_rules = tables.mode_rules.lazy()
        per = ["PID", "EP", "RULE"]
        moded = rows.join(mode_rules, on=["EP", "RULE"], how="semi")
        if not _code1_of_row(prep):  # CODE1 is a key column: one per moded signature
            moded = moded.join(prep.sigs.code1.lazy(), on="SIG")
        winners = (
            moded.filter(pl.col("CODE1").is_not_null())
            .group_by(*per, "CODE1").agg(pl.col("N").sum().alias("_N"))
            .with_columns(pl.col("CODE1").str.head(-1).alias("_G"))
            .with_columns(pl.col("_N").sum().over(*per, "_G").alias("_T"))
            .filter(pl.col("_N") * 2 > pl.col("_T"))  # share > 0.5 implies the single most frequent
            .select(*per, "CODE1")
        )
        rows = pl.concat([
            rows.join(mode_rules, on=["EP", "RULE"], how="anti"),
            moded.join(winners, on=[*per, "CODE1"], how="semi").select(pl.exclude("CODE1")),
        ], how="diagonal")
    if tables.counted_when is not None:
        rows = rows.filter(tables.counted_when)

    mins, needs = tables.mins, tables.needs
    rows = rows.select("UNIT", "PID", "EP", "RULE", "N")
    if mins.height or needs.height:
        # only endpoints with a min or needs-other rule are counted (needs-other looks at
        # every rule of its endpoint); the others pass through untouched
        counted_eps = sorted(set(mins["EP"]) | set(needs["EP"]))
        plain = rows.filter(~pl.col("EP").is_in(counted_eps))
        rows = rows.filter(pl.col("EP").is_in(counted_eps))
        kept = rows.group_by("PID", "EP", "RULE").agg(pl.col("N").sum().alias("_N"))
        if mins.height:
            kept = kept.join(mins.lazy(), on=["EP", "RULE"], how="left").filter(
                pl.col("_N") >= pl.col("_MIN").fill_null(1))
        if needs.height:
            nt = needs.lazy().with_columns(pl.lit(True).alias("_NO"))
            kept = (
                kept.with_columns(pl.len().over("PID", "EP").alias("_R"))
                .join(nt, on=["EP", "RULE"], how="left")
                .filter(pl.col("_NO").is_null() | (pl.col("_R") >= 2))
            )
        rows = pl.concat([
            plain,
            rows.join(kept.select("PID", "EP", "RULE"), on=["PID", "EP", "RULE"], how="semi"),
        ])
    rows = rows.select("UNIT", "EP")
    return (rows.unique() if prep.sigs.counted_repeat else rows).collect(engine=_ENGINE)


def _person_frame(base: pl.LazyFrame, cond, cases: dict[int, pl.DataFrame],
                  pos: dict[str, int]) -> tuple[pl.LazyFrame, pl.Expr]:
    """`base` (with PID) joined with the case columns `cond` reads, and the condition."""
    for name in cond_endpoints(cond):
        x = pos[name]
        c = _person_columns(x)
        dep = cases.get(x)
        if dep is None:
            dep = pl.DataFrame(schema=_CASES_SCHEMA)
        base = base.join(
            dep.lazy().select(
                "PID", pl.lit(True).alias(c["case"]), pl.col("NEVT").alias(c["count"]),
                pl.col("AGE").alias(c["age"]), pl.col("YEAR").alias(c["year"])),
            on="PID", how="left",
        ).with_columns(pl.col(c["case"]).fill_null(False), pl.col(c["count"]).fill_null(0))

    def endpoint(name: str, attr: str) -> pl.Expr:
        col = pl.col(_person_columns(pos[name])[attr])
        return col if attr == "case" else col.cast(pl.Float64)

    return base, _bool(cond, _Ctx(endpoint=endpoint))


def _literals(cond) -> tuple[tuple[str, bool], ...] | None:
    """`cond` as a conjunction of (endpoint, is a case) literals, or None if it is not one."""
    if isinstance(cond, IsCase):
        return ((cond.endpoint, True),)
    if isinstance(cond, Negate) and isinstance(cond.arg, IsCase):
        return ((cond.arg.endpoint, False),)
    if isinstance(cond, AllOf):
        parts = [_literals(a) for a in cond.args]
        return None if any(p is None for p in parts) else tuple(x for p in parts for x in p)
    return None


def _required(rows: pl.DataFrame, eps, cases: dict[int, pl.DataFrame],
              pos: dict[str, int]) -> list[pl.LazyFrame]:
    """The `rows` (cases, _CASES_SCHEMA, of endpoints with a `require`) that satisfy their
    endpoint's `require`, as lazy frames. Most FinnGen requires are conjunctions of
    "is a case of X" and "is not": those are checked together by one membership test of
    packed (X, PID) pairs; any other condition gets a query of its own."""
    out: list[pl.LazyFrame] = []
    literal: list[tuple[int, int, bool]] = []  # (EP, X, positive)
    other, conjunctions = [], []
    for i in rows["EP"].unique().to_list():
        lits = _literals(eps[i].require)
        if lits is None:
            other.append(i)
        else:
            conjunctions.append(i)
            literal.extend((i, pos[name], positive) for name, positive in lits)
    if other:
        for (i,), part in rows.filter(pl.col("EP").is_in(other)).partition_by("EP", as_dict=True).items():
            frame, cond = _person_frame(part.lazy(), eps[i].require, cases, pos)
            out.append(frame.filter(cond).select(list(_CASES_SCHEMA)))
    if conjunctions:
        table = pl.DataFrame(literal, schema={"EP": _U32, "_X": _U32, "_POS": pl.Boolean}, orient="row")
        known = [cases[x] for x in sorted(set(table["_X"])) if x in cases]
        pairs = (pl.concat(known).select(_pack("EP", pl.col("PID")))["EP"] if known
                 else pl.Series("EP", [], pl.UInt64))
        mine = rows.lazy().filter(pl.col("EP").is_in(conjunctions))
        failing = (mine.select("EP", "PID").join(table.lazy(), on="EP")
                   .filter(_pack("_X", pl.col("PID")).is_in(pairs.implode()) != pl.col("_POS"))
                   .select(_pack("EP", pl.col("PID")).alias("_EPID")))
        out.append(mine.join(failing, left_on=_pack("EP", pl.col("PID")), right_on="_EPID", how="anti")
                   .select(list(_CASES_SCHEMA)))
    return out


def evaluate_bucket(prep: Prepared, events: pl.LazyFrame, people: pl.LazyFrame) -> BucketResult:
    """Evaluate every endpoint of `prep` for one bucket of people (the caller filters both
    tables with one of `person_buckets`; `events` must carry a row index ROW, unique in the
    bucket)."""
    return _evaluate_levels(prep, events, people)[0]


def _pack(high: str, low: pl.Expr) -> pl.Expr:
    """Two u32 in one u64: `high` << 32 | `low`."""
    return pl.col(high).cast(pl.UInt64) * 2**32 + low.cast(pl.UInt64)


def _unpack(packed: str, high: str, low: str) -> tuple[pl.Expr, pl.Expr]:
    """The two u32 halves of a `_pack`ed column, named `high` and `low`."""
    return ((pl.col(packed) // 2**32).cast(_U32).alias(high),
            (pl.col(packed) % 2**32).cast(_U32).alias(low))


def _evaluate_levels(prep: Prepared, events: pl.LazyFrame, people: pl.LazyFrame, *,
                     keep_rows: Sequence[int] = ()) -> tuple[BucketResult, pl.DataFrame]:
    """`evaluate_bucket`, plus the case event rows (EP, ROW, PID; ROW as in `events`) of
    the endpoints at positions `keep_rows`.

    First one fan-out of units through the folded signature table gives every endpoint
    that is not complex its cases (`Signatures`); then the complex endpoints are resolved
    level by level on sets of (endpoint, unit) pairs packed in one u64, _UE = EP << 32 |
    UNIT, so that a union is a unique over one integer column; (endpoint, person) pairs
    likewise as _EPID = EP << 32 | PID. `require` is checked per level for both kinds."""
    program = prep.program
    eps = program.endpoints
    sigs, tables = prep.sigs, prep.tables
    pos, ep_level, last_use = tables.pos, tables.ep_level, tables.last_use
    ppl = (
        people.select("FINNGENID", "SEX").sort("FINNGENID").with_row_index("PID").collect(engine=_ENGINE)
    )
    absent = (
        events.select("FINNGENID").join(ppl.lazy().select("FINNGENID"), on="FINNGENID", how="anti")
        .select(pl.len().alias("n"), pl.col("FINNGENID").n_unique().alias("m")).collect(engine=_ENGINE)
    )
    units, decoding = _units(prep, events, ppl, by_row=bool(keep_rows))
    # per-unit columns are read by gathering at UNIT (units are numbered 0..n-1), never a join
    unit_pid = units["PID"]
    fields = units.select("_K", "N", "AGE", "YEAR", *(["EMERG"] if prep.uses_emergency else []))
    pid_sex = ppl.select(sex_bits(pl.col("SEX")).alias("_SB"))["_SB"]
    unit_sex = pl.lit(pid_sex).gather(pl.col("PID")).alias("_SB")
    ue_unit = (pl.col("_UE") % 2**32).cast(_U32)
    ue_ep = (pl.col("_UE") // 2**32).cast(_U32)

    keep = set(keep_rows)
    rowed = sigs.carried | keep  # endpoints whose case rows are kept as rows
    ep_sex = tables.ep_sex

    def sexed(first: pl.DataFrame) -> pl.DataFrame:
        # an endpoint's own sex, per endpoint and per person by position: two gathers of
        # sex bits, no join (bits, not strings: 3e6 pairs in 0.03 s, against 0.14 s)
        if ep_sex.min() == ALL_SEXES:
            return first
        return first.filter((pl.lit(ep_sex).gather(pl.col("EP")) & pl.lit(pid_sex).gather(pl.col("PID"))) != 0)

    def folded(table: pl.DataFrame) -> pl.LazyFrame:
        # units x (SIG, EP, MASK): the folded rows, for people of the allowed sexes
        lf = units.lazy().with_columns(unit_sex).join(table.lazy(), on="SIG")
        if table.height and table["MASK"].min() != ALL_SEXES:
            lf = lf.filter((pl.col("MASK") & pl.col("_SB")) != 0)
        return lf

    def cases_of(pairs: pl.LazyFrame) -> pl.DataFrame:
        # (EP, PID, _K, N) of a set's units -> each (endpoint, person)'s first event and
        # NEVT, people of the endpoint's sex only
        first = (pairs.group_by(_pack("EP", pl.col("PID")).alias("_EPID"))
                 .agg(pl.col("_K").min(), pl.col("N").sum().cast(pl.Int64).alias("NEVT"))
                 .select(*_unpack("_EPID", "EP", "PID"), "_K", "NEVT")
                 .collect(engine=_ENGINE))
        return _decode_first(sexed(first), decoding).select(list(_CASES_SCHEMA))

    def by_level(frame: pl.DataFrame) -> dict[int, pl.DataFrame]:
        parts = (frame.select(pl.lit(ep_level).gather(pl.col("EP")).alias("_LV"),
                              _pack("EP", pl.col("UNIT")).alias("_UE"))
                 .partition_by("_LV", as_dict=True, include_key=False))
        return {lv: part for (lv,), part in parts.items()}

    # 1. every endpoint that is not complex: its cases from one fan-out and group-by
    flat_summary = cases_of(folded(sigs.flat_simple))
    simple_req = list(tables.simple_req)
    pending: dict[int, pl.DataFrame] = {}  # per level: simple endpoints' cases before their `require`
    if simple_req:
        pending = {lv: part.drop("_LV") for (lv,), part in flat_summary.filter(pl.col("EP").is_in(simple_req))
                   .with_columns(pl.lit(ep_level).gather(pl.col("EP")).alias("_LV"))
                   .partition_by("_LV", as_dict=True).items()}
        flat_summary = flat_summary.filter(~pl.col("EP").is_in(simple_req))
    summaries: list[pl.DataFrame] = [flat_summary]
    read_by_require = tables.read_by_require
    cases: dict[int, pl.DataFrame] = {}  # final cases of the endpoints a require reads

    def remember(summary: pl.DataFrame, among: set[int]) -> None:
        if read := sorted(read_by_require & among):
            cases.update({i: part for (i,), part in summary.filter(pl.col("EP").is_in(read))
                          .partition_by("EP", as_dict=True).items()})

    remember(flat_summary, set(range(len(eps))) - sigs.complex - set(simple_req))

    # 2. rows: the folded rows of complex endpoints and of simple ones kept as rows, and
    # the counted own rows
    rowed_simple = sorted(rowed - sigs.complex)
    flat_complex = by_level(folded(sigs.flat_complex).select("UNIT", "EP").collect(engine=_ENGINE))
    flat_rowed = (by_level(folded(sigs.flat.filter(pl.col("EP").is_in(rowed_simple)))
                           .select("UNIT", "EP").collect(engine=_ENGINE)) if rowed_simple else {})
    counted = by_level(_counted_rows(prep, units)) if sigs.counted.height else {}

    empty_ue = pl.DataFrame(schema={"_UE": pl.UInt64})
    carried = empty_ue  # case rows of impure endpoints that a later level includes
    kept_rows: list[pl.DataFrame] = []

    for lv, members in enumerate(prep.levels):
        unchecked = [pending.pop(lv)] if lv in pending else []
        checks = []
        level = empty_ue
        level_complex = tables.level_complex[lv]
        if level_complex:
            edges = tables.level_edges[lv]
            reads = [flat_complex.get(lv, empty_ue).lazy()]
            if edges is not None:
                reads.append(carried.lazy().with_columns(ue_ep.alias("_CHILD"))
                             .join(edges.lazy(), on="_CHILD")
                             .select(_pack("EP", pl.col("_UE") % 2**32).alias("_UE")))
            read = pl.concat(reads)
            when = tables.level_when[lv]
            if when is not None:  # counted rows had theirs in `_counted_rows`
                read = read.collect(engine=_ENGINE)
                unit = read.select(ue_unit)["_UE"]
                read = (read.with_columns(ue_ep.alias("EP"), *(fields[c].gather(unit) for c in fields.columns))
                        .lazy().filter(when).select("_UE"))
            # the parts overlap (one unit can reach an endpoint by several includes)
            level = pl.concat([counted.get(lv, empty_ue).lazy(), read]).unique().collect(engine=_ENGINE)
            unit = level.select(ue_unit)["_UE"]
            per_ep = pl.DataFrame({"EP": level.select(ue_ep)["_UE"], "PID": unit_pid.gather(unit),
                                   "_K": fields["_K"].gather(unit), "N": fields["N"].gather(unit)})
            summary = cases_of(per_ep.lazy())
            with_req = [i for i in level_complex if eps[i].require is not None]
            if with_req:
                unchecked.append(summary.filter(pl.col("EP").is_in(with_req)))
                summary = summary.filter(~pl.col("EP").is_in(with_req))
            checks.append(summary.lazy())
        if unchecked:
            checks.extend(_required(pl.concat(unchecked), eps, cases, pos))
        finals = [flat_summary]  # where this level's endpoints' final cases are
        if checks:
            summary = pl.concat(pl.collect_all(checks, engine=_ENGINE))
            summaries.append(summary)
            remember(summary, set(members))
            finals.append(summary)

        needed = [i for i in members if i in rowed and (last_use.get(i, -1) > lv or i in keep)]
        if needed:
            # the level's rows of the needed endpoints, as (EP, UNIT, PID)
            rows = pl.concat([level.lazy().select(ue_ep.alias("EP"), ue_unit.alias("UNIT")),
                              flat_rowed.get(lv, empty_ue).lazy().select(ue_ep.alias("EP"), ue_unit.alias("UNIT"))])
            kept = rows.filter(pl.col("EP").is_in(needed)).collect(engine=_ENGINE)
            kept = kept.with_columns(unit_pid.gather(kept["UNIT"]).alias("PID"))
            # only sex and require make a person with rows a non-case
            narrowed = [i for i in needed if eps[i].sex is not None or eps[i].require is not None]
            if narrowed:
                case_pairs = pl.concat([f.filter(pl.col("EP").is_in(narrowed))
                                        .select(_pack("EP", pl.col("PID")).alias("_EPID")) for f in finals])
                kept = kept.filter(~pl.col("EP").is_in(narrowed)
                                   | _pack("EP", pl.col("PID")).is_in(case_pairs["_EPID"].implode()))
            wanted = [i for i in needed if i in keep]
            if wanted:
                got = kept.filter(pl.col("EP").is_in(wanted))
                kept_rows.append(got.select("EP", units["ORIG"].gather(got["UNIT"]).alias("ROW"), "PID"))
            later = [i for i in needed if last_use.get(i, -1) > lv]
            if later:
                carried = pl.concat([carried, kept.filter(pl.col("EP").is_in(later))
                                     .select(_pack("EP", pl.col("UNIT")).alias("_UE"))])
        # drop the rows no later level reads
        done = [x for x, last in last_use.items() if last == lv]
        if done and carried.height:
            carried = carried.filter(~ue_ep.is_in(done))

    out = _bucket_outputs(prep, ppl, summaries, pos, int(absent["n"][0]), int(absent["m"][0]))
    rows = (pl.concat(kept_rows) if kept_rows else pl.DataFrame(schema=_ROWS_SCHEMA))
    return out, rows.select("EP", "ROW", "PID").join(ppl.select("PID", "FINNGENID"), on="PID")


def _bucket_outputs(prep: Prepared, ppl: pl.DataFrame, summaries: list[pl.DataFrame],
                    pos: dict[str, int], absent_events: int, absent_people: int) -> BucketResult:
    eps = prep.program.endpoints
    all_cases = pl.concat(summaries) if summaries else pl.DataFrame(schema=_CASES_SCHEMA)
    everything = len(prep.selected) == len(eps)
    sel = pl.DataFrame({"EP": list(prep.selected)}, schema={"EP": _U32})
    selected_cases = all_cases if everything else all_cases.join(sel, on="EP", how="semi")
    pop = ppl.lazy().select("PID", "SEX")
    chosen = set(prep.selected)
    # PIDs number the sorted ids, so _KEY orders by ENDPOINT then FINNGENID
    key = (pl.lit(prep.tables.name_rank).gather(pl.col("EP")) * 2**32 + pl.col("PID")).alias("_KEY")
    # excluded from controls: wrong sex, a case of a control_exclude endpoint, or failing
    # control_require -- unless a case. Nobody of the wrong sex is a case, so those
    # exclusions need no check against the cases.
    wrong_sex: list[pl.LazyFrame] = []
    for sex in sorted({eps[i].sex for i in prep.selected if eps[i].sex is not None}):
        st = pl.LazyFrame({"EP": [i for i in prep.selected if eps[i].sex == sex]}, schema={"EP": _U32})
        others = pop.filter((pl.col("SEX") != sex).fill_null(True)).select("PID")
        wrong_sex.append(st.join(others, how="cross"))
    parts: list[pl.LazyFrame] = []
    pairs = [(i, pos[name]) for i in prep.selected for name in eps[i].control_exclude]
    if pairs:
        pt = pl.LazyFrame(pairs, schema={"EP": _U32, "_OF": _U32}, orient="row")
        parts.append(pt.join(all_cases.lazy().select(pl.col("EP").alias("_OF"), "PID"), on="_OF")
                     .select("EP", "PID"))
    case_of = {i: all_cases.filter(pl.col("EP") == i)
               for i in {pos[n] for j in chosen for n in cond_endpoints(eps[j].control_require)}}
    for i in prep.selected:
        if eps[i].control_require is not None:
            frame, cond = _person_frame(pop.select("PID"), eps[i].control_require, case_of, pos)
            parts.append(frame.filter(~cond).select(pl.lit(i, dtype=_U32).alias("EP"), "PID"))
    excl_parts = [lf.select("EP", key) for lf in wrong_sex]
    if parts:
        excl_parts.append(pl.concat(parts).select("EP", key).unique("_KEY")
                          .join(selected_cases.lazy().select(key), on="_KEY", how="anti"))
    excl = (pl.concat(excl_parts).unique("_KEY") if parts and wrong_sex
            else pl.concat(excl_parts)).collect(engine=_ENGINE) if excl_parts else \
        pl.DataFrame(schema={"EP": _U32, "_KEY": pl.UInt64})

    # the streaming engine's sort: 0.22 s against 0.36 s in memory for a bucket's 4.5e6 rows
    long = pl.concat([
        selected_cases.lazy().select(key, pl.lit(True).alias("CASE"), "AGE", "YEAR", "NEVT"),
        excl.lazy().select("_KEY", pl.lit(False).alias("CASE")),
    ], how="diagonal").sort("_KEY").collect(engine=_ENGINE)

    # a bincount: 0.01 s for a bucket's 3e6 cases, against 0.1 s for a group-by
    def per_endpoint(rows: pl.DataFrame) -> np.ndarray:
        return np.bincount(rows["EP"].to_numpy(), minlength=len(eps))[list(prep.selected)]

    counts = pl.DataFrame({
        "ENDPOINT": pl.Series([eps[i].name for i in prep.selected], dtype=pl.String),
        "N_CASES": per_endpoint(selected_cases).astype(np.int64),
        "N_EXCLUDED": per_endpoint(excl).astype(np.int64),
        "N_POPULATION": np.full(len(prep.selected), ppl.height, dtype=np.int64),
    })
    return BucketResult(long=long, ids=ppl["FINNGENID"], counts=counts,
                        absent_events=absent_events, absent_people=absent_people)


# -- driver ---------------------------------------------------------------------------

def combine_buckets(prep: Prepared, parts: Sequence[BucketResult]) -> Results:
    """Concatenate bucket results (consecutive id ranges, in order) into sorted outputs;
    independent of the bucket count."""
    offsets = [0]
    for p in parts:
        offsets.append(offsets[-1] + p.ids.len())
    long = pl.concat([_offset(p.long, off) for p, off in zip(parts, offsets)]
                     or [pl.DataFrame(schema=_LONG_CODED)]).sort("_KEY")
    return Results(long=_long_table(long.lazy(), prep, _ids(parts)),
                   counts=_combine_counts(prep, parts).lazy(), warnings=_combine_warnings(parts))


_LONG_CODED = {"_KEY": pl.UInt64, "CASE": pl.Boolean, "AGE": pl.Float64, "YEAR": pl.Int32,
               "NEVT": pl.Int64}


def _offset(long: pl.DataFrame, people_before: int) -> pl.DataFrame:
    """A bucket's `long` with its sort key made global: buckets are consecutive id ranges,
    so a person's rank among everyone is their rank in the bucket plus the people of
    earlier buckets."""
    return long.with_columns(pl.col("_KEY") + people_before)


def _ids(parts: Sequence[BucketResult]) -> pl.Series:
    return pl.concat([p.ids for p in parts]) if parts else pl.Series("FINNGENID", [], pl.String)


def _long_table(coded: pl.LazyFrame, prep: Prepared, ids: pl.Series) -> pl.LazyFrame:
    """Integer-coded rows (sorted _KEY with global person ranks, CASE, ...) as the long
    table (LONG_SCHEMA): names are gathered by rank, which streams."""
    names = pl.Series(sorted(ep.name for ep in prep.program.endpoints), dtype=pl.String)
    return coded.select(
        pl.lit(ids).gather(pl.col("_KEY") % 2**32).alias("FINNGENID"),
        pl.lit(names).gather(pl.col("_KEY") // 2**32).alias("ENDPOINT"),
        pl.when(pl.col("CASE")).then(pl.lit("case")).otherwise(pl.lit("excluded")).alias("STATUS"),
        "AGE", "YEAR", "NEVT",
    )


def _combine_counts(prep: Prepared, parts: Sequence[BucketResult]) -> pl.DataFrame:
    names = pl.DataFrame({"ENDPOINT": [prep.program.endpoints[i].name for i in prep.selected]},
                         schema={"ENDPOINT": pl.String})
    summed = (
        pl.concat([p.counts for p in parts]).group_by("ENDPOINT").agg(
            pl.col("N_CASES").sum(), pl.col("N_EXCLUDED").sum(), pl.col("N_POPULATION").sum())
        if parts else pl.DataFrame(schema={"ENDPOINT": pl.String, "N_CASES": pl.Int64,
                                           "N_EXCLUDED": pl.Int64, "N_POPULATION": pl.Int64})
    )
    return (
        names.join(summed, on="ENDPOINT", how="left")
        .select(
            "ENDPOINT",
            pl.col("N_CASES").fill_null(0).cast(pl.Int64),
            (pl.col("N_POPULATION") - pl.col("N_CASES") - pl.col("N_EXCLUDED"))
            .fill_null(0).cast(pl.Int64).alias("N_CONTROLS"),
            pl.col("N_EXCLUDED").fill_null(0).cast(pl.Int64),
        )
        .sort("ENDPOINT")
    )


def _combine_warnings(parts: Sequence[BucketResult]) -> tuple[str, ...]:
    n_events = sum(p.absent_events for p in parts)
    n_people = sum(p.absent_people for p in parts)
    if n_events:
        return (f"{n_events} events of {n_people} people absent from the people table "
                "were ignored",)
    return ()


def person_buckets(people: pl.LazyFrame, buckets: int) -> tuple[pl.Expr, ...]:
    """Filters on FINNGENID splitting the people into `buckets` contiguous id ranges of
    (nearly) equal head count -- fewer when there are fewer people.

    Ranges rather than hash classes: registry files are written sorted by person (FinnGen's
    are), so the Parquet reader skips every row group whose FINNGENID statistics fall
    outside a bucket's range and each bucket reads only its own share of the file. On an
    unsorted file a bucket reads the whole file, but still keeps only its own rows. Rows
    with a missing FINNGENID go to the first bucket (they match no person)."""
    return _ranges(_cuts(people, buckets))


def _cuts(people: pl.LazyFrame, buckets: int) -> list[str]:
    """The first id of each of `person_buckets`' ranges but the first."""
    if buckets <= 1:
        return []
    ids = people.select(pl.col("FINNGENID").drop_nulls().unique().sort()).collect(engine=_ENGINE)["FINNGENID"]
    return sorted({ids[k * len(ids) // buckets] for k in range(1, buckets)} - {ids[0]}) if len(ids) else []


def _ranges(cuts: Sequence[str]) -> tuple[pl.Expr, ...]:
    if not cuts:
        return (pl.lit(True),)
    fid = pl.col("FINNGENID")
    bounds = [None, *cuts, None]
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        test = (fid >= lo) if lo is not None else None
        if hi is not None:
            test = (fid < hi) if test is None else test & (fid < hi)
        out.append(test | fid.is_null() if lo is None else test)
    return tuple(out)


def evaluate(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
             endpoints: Sequence[str] | None = None, buckets: int = 1,
             spill_dir: str | os.PathLike[str] | None = None,
             on_bucket: Callable[[int, int], None] | None = None) -> Results:
    """Evaluate `program` over normalised `events` and `people` (see notes/SEMANTICS.md).

    `endpoints` selects endpoints by name (their dependencies are evaluated but not
    returned). `buckets` > 1 evaluates people in that many buckets (contiguous FINNGENID
    ranges, see `person_buckets`), one at a time, to bound memory; the results are the same
    for any bucket count. With `spill_dir` (an existing folder the caller owns and removes
    after using the results), each bucket's rows are written there sorted and `long` is a
    streaming merge of those files (past _MERGE_FANIN buckets, of merged groups of them),
    so no step holds more than one bucket in memory; without it the buckets' rows are
    concatenated in memory. `on_bucket(done, total)` is called after each bucket (e.g. to
    advance a progress bar).
    """
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    events = events.lazy()
    people = people.lazy()
    cuts = _cuts(people, buckets)
    filters = _ranges(cuts)
    # the key prepass reads the events in groups of whole buckets (see `match_keys`)
    prep = prepare(program, events, endpoints=endpoints,
                   parts=_ranges(cuts[_KEY_PART_BUCKETS - 1::_KEY_PART_BUCKETS]))
    spill = Path(spill_dir) if spill_dir is not None and len(filters) > 1 else None
    if spill is not None:
        # each bucket's people come after all earlier buckets' (consecutive id ranges): a
        # spilled _KEY carries the person's rank among everyone, so the merge reads all
        # bucket files in one scan
        heads = people.select(*(f.sum().alias(str(b)) for b, f in enumerate(filters))).collect().row(0)
        starts = list(itertools.accumulate(heads, initial=0))

    def run(b: int) -> BucketResult:
        ev, pp = (events, people) if len(filters) == 1 else (events.filter(filters[b]), people.filter(filters[b]))
        # ROW only needs to tell a bucket's rows apart: numbered after the filter, which
        # then still reaches the reader
        part = evaluate_bucket(prep, ev.with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64)), pp)
        if spill is not None:
            _write_spill(_offset(part.long, starts[b]), spill / f"bucket-{b:05d}.parquet")
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
    files, sizes = _merge_down(files, sizes, spill)
    return Results(long=_long_table(_merged(files, sizes), prep, _ids(parts)),
                   counts=_combine_counts(prep, parts).lazy(), warnings=_combine_warnings(parts))


_KEY_PART_BUCKETS = 10  # buckets per part of the key prepass: 5e7 events with `--buckets auto`
_MERGE_ROWS = 2_000_000  # rows per merged slice: a slice is all that is ever in memory
# Most files one merge reads. Each slice of `_merged` reads from every file, at ~1 ms a
# read whatever its size, so merging B files in one pass takes (rows / _MERGE_ROWS) * B
# reads: quadratic in the registry (FinRegistry, ~900 buckets and ~4e9 rows: ~1.8e6 reads,
# half an hour). Past _MERGE_FANIN files, groups of about sqrt(B) neighbours are merged into
# one file first: one more write and read of every row for sqrt(B) reads a slice
# (benchmarks/merge_fanin.py: 400 files of 8e7 rows 1.4x faster, 900 of 1.5e8 1.9x).
_MERGE_FANIN = 128


def _write_spill(rows: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """Rows sorted by _KEY as a spill file. Small row groups: a merge slice reads a few
    endpoints' rows at a time; not compressed: 2.3e8 rows were merged in 11.5 s, against
    16.5 s from lz4."""
    rows.lazy().sink_parquet(path, compression="uncompressed", row_group_size=65_536)


def _merge_down(files: list[Path], sizes: list[list[int]], spill: Path
                ) -> tuple[list[Path], list[list[int]]]:
    """At most _MERGE_FANIN spill files with the same rows, and their `sizes` (see
    `_merged`): while there are more, each group of consecutive files is merged into one
    (consecutive person ranges make a file of the same kind) and the group's files removed."""
    level = 0
    while len(files) > _MERGE_FANIN:
        level += 1
        width = max(2, math.isqrt(len(files) - 1) + 1)  # ceil(sqrt(B))
        merged, merged_sizes = [], []
        for g in range(0, len(files), width):
            group, group_sizes = files[g:g + width], sizes[g:g + width]
            path = spill / f"merged-{level}-{g // width:05d}.parquet"
            _write_spill(_merged(group, group_sizes), path)
            for f in group:
                f.unlink()
            merged.append(path)
            merged_sizes.append([sum(col) for col in zip(*group_sizes)])
        files, sizes = merged, merged_sizes
    return files, sizes


def _merged(files: Sequence[Path], sizes: Sequence[Sequence[int]]) -> pl.LazyFrame:
    """The spilled buckets' rows (_KEY with global person ranks) as one stream sorted by
    _KEY, in slices of whole endpoints (about _MERGE_ROWS rows; `sizes[b][r]` are bucket
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
        if rows and rows + n > _MERGE_ROWS:
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
            df = ordered(pl.scan_parquet(files).filter(keep).collect(engine=_ENGINE), lo, hi)
            if predicate is not None:
                df = df.filter(predicate)
            if with_columns is not None:
                df = df.select(with_columns)
            yield df

    return register_io_source(slices, schema=_LONG_CODED)


def event_pass_plan(program: Program, events: pl.LazyFrame, *,
                    endpoints: Sequence[str] | None = None) -> str:
    """The optimised Polars plan of the pass over the events for `endpoints` (what
    `endpointc compile --explain` shows); the code keys are matched on `events`."""
    prep = prepare(program, events, endpoints=endpoints)
    indexed = events.with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64))
    people = pl.DataFrame(schema={"FINNGENID": pl.String, "PID": pl.UInt32})
    return _matched_query(prep, indexed, people).explain()


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
    events = events.lazy()
    prep = prepare(program, events, endpoints=endpoints)
    indexed = events.with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64))
    _, rows = _evaluate_levels(prep, indexed, people.lazy(), keep_rows=prep.selected)
    names = pl.DataFrame({"EP": list(range(len(prep.program.endpoints))),
                          "ENDPOINT": [ep.name for ep in prep.program.endpoints]},
                         schema={"EP": _U32, "ENDPOINT": pl.String})
    meta = (indexed.select("ROW", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY")
            .join(rows.lazy().select("ROW").unique(), on="ROW", how="semi"))
    return (
        rows.lazy().join(names.lazy(), on="EP").join(meta, on="ROW")
        .select("ROW", "FINNGENID", "ENDPOINT", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY")
        .sort("ENDPOINT", "FINNGENID", "ROW")
    )
