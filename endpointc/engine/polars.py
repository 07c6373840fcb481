"""The Polars engine: a whole program over the registry in one pass over the events.

Design (issue 3; memory bounded for issue 6):

* `prepare` matches every code pattern of the program ONCE against the distinct event keys
  (`matching.match_keys`), giving a small table key -> (endpoint, rule).
* `evaluate_bucket` evaluates all endpoints for the people of one bucket (hash of
  FINNGENID; one bucket = everyone). It joins the events to the matched keys once, keeping
  only matched rows (row id, person, age, day, emergency), fans them out to (row, endpoint,
  rule), applies mode, `when`, min and needs-other on that table, then resolves `include`,
  `require`, sex and controls level by level on (row, endpoint) membership and on the
  person x endpoint case table. Row sets of an endpoint are dropped as soon as no later
  endpoint includes them.
* Cost: the events are read by one grouped pass (distinct keys with row counts, in
  `prepare`) and one filtered join (single-column `is_in` pre-filters chosen from those
  counts, then the matched-key join). Everything after runs on matched rows only: each
  row gets a u64 order key (AGE rank, DAY) so the first event of any (endpoint, person)
  is a plain group min, per-level work is one group_by over all endpoints of the level,
  and the emergency visit lookup only touches rows an emergency `when` can read.
* `case_events` exposes each endpoint's case event rows (what NEVT counts) for reports.
* `evaluate` loops over buckets and concatenates. Every step is per person, and row ids
  are assigned before bucketing, so results do not depend on the bucket count.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from ..plan import (
    AllOf, AnyOf, Cmp, Const, Count, EndpointPlan, Field_, FirstAge, FirstYear, IsCase, Negate,
    Program, cond_endpoints,
)
from ..diagnostics import Diagnostic, DiagnosticError
from .matching import KeyMapping, match_keys

__all__ = [
    "MissingColumnError", "Results", "Prepared", "BucketResult", "evaluate", "prepare", "evaluate_bucket",
    "combine_buckets", "bucket_filter", "case_events", "event_pass_plan", "LONG_SCHEMA", "COUNTS_SCHEMA",
]

LONG_SCHEMA = {
    "FINNGENID": pl.String, "ENDPOINT": pl.String, "STATUS": pl.String,
    "AGE": pl.Float64, "YEAR": pl.Int32, "NEVT": pl.Int64,
}
COUNTS_SCHEMA = {
    "ENDPOINT": pl.String, "N_CASES": pl.Int64, "N_CONTROLS": pl.Int64, "N_EXCLUDED": pl.Int64,
}
_U32 = pl.UInt32
_CASES_SCHEMA = {"EP": _U32, "PID": _U32, "AGE": pl.Float64, "YEAR": pl.Int32, "NEVT": pl.Int64}
_ROWS_SCHEMA = {"ROW": pl.UInt64, "EP": _U32, "PID": _U32}
# A row with a missing INDEX is its own visit: emergency never propagates through null INDEX.
_EMERGENCY_NULL_INDEX_EQUAL = False
_BUCKET_SEED = 0x5EED


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
    """What every bucket shares: the program, the selection, the matched keys, the levels."""

    program: Program
    selected: tuple[int, ...]  # positions in program.endpoints of the endpoints to return
    mapping: KeyMapping
    levels: tuple[tuple[int, ...], ...]  # endpoint positions, each level after its deps
    uses_emergency: bool
    uses_mode: bool


@dataclass(frozen=True)
class BucketResult:
    """One bucket's outputs: `long` unsorted with ENDPOINT names; `counts` (ENDPOINT, N_CASES,
    N_EXCLUDED, N_POPULATION); aggregate numbers of ignored events/people."""

    long: pl.DataFrame
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


def _field(node: Field_, ctx: _Ctx) -> pl.Expr:
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
    Field_: _field,
    Count: _ep("count"),
    FirstAge: _ep("age"),
    FirstYear: _ep("year"),
}
_BOOL: dict[type, Callable[..., pl.Expr]] = {
    Field_: lambda n, ctx: (_need(ctx.field, "person-level", n)(n.name) if n.name == "emergency"
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
            endpoints: Sequence[str] | None = None) -> Prepared:
    """Select endpoints (plus dependencies), check the event columns, match all patterns."""
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
    mapping = match_keys(program, events)
    uses_mode = any(r.mode for ep in program.endpoints for r in ep.rules)
    return Prepared(program=program, selected=selected, mapping=mapping,
                    levels=_levels(program), uses_emergency=uses_emergency, uses_mode=uses_mode)


def bucket_filter(bucket: int, buckets: int) -> pl.Expr:
    """Rows of people in `bucket` out of `buckets` (by hash of FINNGENID)."""
    return (pl.col("FINNGENID").hash(_BUCKET_SEED) % buckets) == bucket


# -- one bucket -----------------------------------------------------------------------

def _when_filter(program: Program, eps: Sequence[int] | None = None) -> pl.Expr | None:
    """One expression applying each endpoint's `when` to rows with an EP column."""
    groups: dict[str, tuple[object, list[int]]] = {}
    for i, ep in enumerate(program.endpoints):
        if ep.when is None or (eps is not None and i not in eps):
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
    if prep.uses_emergency:
        extra += ["INDEX", "CODE9"]
    selected = events.filter(*prep.mapping.row_filters) if prep.mapping.row_filters else events
    lf = (
        selected.select("ROW", "FINNGENID", "EVENT_AGE", "APPROX_EVENT_DAY", *cols, *extra)
        .join(prep.mapping.keys.lazy(), on=cols, nulls_equal=True)
        .join(people.lazy().select("FINNGENID", "PID"), on="FINNGENID")
        .with_columns(
            pl.col("EVENT_AGE").alias("AGE"),
            pl.col("APPROX_EVENT_DAY").alias("DAY"),
            pl.col("APPROX_EVENT_DAY").dt.year().cast(pl.Int32).alias("YEAR"),
        )
    )
    return lf


def _matched_rows(prep: Prepared, events: pl.LazyFrame, people: pl.DataFrame) -> pl.DataFrame:
    """Event rows selected by some rule of some endpoint, for people of the population:
    ROW, PID, KEYID, AGE, DAY, YEAR (+ EMERG, CODE1 when the program needs them)."""
    lf = _matched_query(prep, events, people)
    keep = ["ROW", "PID", "KEYID", "AGE", "DAY", "YEAR"]
    if prep.uses_mode:
        keep.append("CODE1")
    if not prep.uses_emergency:
        return lf.select(keep).collect()
    matched = lf.select(*keep, "FINNGENID", "INDEX", "CODE9").collect()
    visits = (
        events.filter(pl.col("CODE9") == "1")
        .select("FINNGENID", "INDEX").unique()
        .with_columns(pl.lit(True).alias("_EV"))
    )
    # EMERG is only ever read on rows of endpoints whose `when` uses it (own or included
    # rows): the visit lookup is done for those rows' keys only, the rest stay False
    wanted = _emergency_keys(prep)
    # LANGUAGE.md: "the same INDEX" -- one visit's rows (e.g. INPAT and its OPER_IN
    # operations) share an INDEX whatever their SOURCE.
    emergent = (
        matched.lazy().filter(pl.col("KEYID").is_in(wanted))
        .join(visits, on=["FINNGENID", "INDEX"], how="left",
              nulls_equal=_EMERGENCY_NULL_INDEX_EQUAL)
        .filter((pl.col("CODE9") == "1").fill_null(False) | pl.col("_EV").fill_null(False))
        .select("ROW").collect()
    )
    # the emergent rows are few: a membership test, not a join of every matched row on ROW
    return matched.select(*keep, pl.col("ROW").is_in(emergent["ROW"].implode()).alias("EMERG"))


def _emergency_keys(prep: Prepared) -> list[int]:
    """KEYIDs of rows whose emergency flag can be read: keys of the endpoints whose `when`
    uses it and of every endpoint they include, directly or not."""
    eps = prep.program.endpoints
    pos = {ep.name: i for i, ep in enumerate(eps)}
    todo = [i for i, ep in enumerate(eps) if ep.uses_emergency]
    seen: set[int] = set()
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo.extend(pos[name] for name in eps[i].includes)
    rules = prep.mapping.rules
    return rules.filter(pl.col("EP").is_in(sorted(seen)))["KEYID"].unique().to_list()


_NO_PART = 2**32 - 1  # a missing AGE rank or DAY: after every real one (nulls last)


def _ordered(matched: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Number rows 0..n-1 (ROW; the events' row number moves to ORIG) and give each row
    an order key _K = (dense rank of AGE, DAY) packed in a u64, missing parts last: the
    earliest event of any row set (Step 5) is then its smallest _K, a plain min per group
    instead of a sort or a filtered aggregation. Also returns the rank -> AGE table."""
    out = matched.with_columns(
        pl.col("ROW").alias("ORIG"),
        pl.int_range(pl.len(), dtype=pl.UInt64).alias("ROW"),
        pl.col("AGE").rank("dense").cast(pl.UInt64).alias("_R"),
    ).with_columns(
        (pl.col("_R").fill_null(_NO_PART) * 2**32
         + (pl.col("DAY").cast(pl.Int64) + 2**31).fill_null(_NO_PART).cast(pl.UInt64)).alias("_K"),
    )
    ages = out.select("_R", "AGE").drop_nulls("_R").unique("_R")
    return out.drop("_R"), ages


def _decode_first(first: pl.DataFrame, ages: pl.DataFrame) -> pl.DataFrame:
    """AGE and YEAR of the earliest event from its order key _K (see `_ordered`)."""
    day = pl.col("_K") % 2**32
    return (
        first.with_columns((pl.col("_K") // 2**32).alias("_R"))
        .join(ages, on="_R", how="left")
        .with_columns(
            pl.when(day == _NO_PART).then(None).otherwise(day.cast(pl.Int64) - 2**31)
            .cast(pl.Int32).cast(pl.Date).dt.year().cast(pl.Int32).alias("YEAR"))
    )


def _own_rows(prep: Prepared, matched: pl.DataFrame) -> pl.DataFrame:
    """(ROW, EP, PID) of each endpoint's own events after mode, when, min and needs-other."""
    program = prep.program
    rows = matched.lazy().join(prep.mapping.rules.lazy(), on="KEYID")
    if prep.uses_mode:
        mode_rules = pl.LazyFrame(
            [(e, r) for e, ep in enumerate(program.endpoints) for r, rule in enumerate(ep.rules)
             if rule.mode], schema={"EP": _U32, "RULE": _U32}, orient="row")
        per = ["PID", "EP", "RULE"]
        moded = rows.join(mode_rules, on=["EP", "RULE"], how="semi")
        winners = (
            moded.filter(pl.col("CODE1").is_not_null())
            .group_by(*per, "CODE1").agg(pl.len().alias("_N"))
            .with_columns(pl.col("CODE1").str.head(-1).alias("_G"))
            .with_columns(pl.col("_N").sum().over(*per, "_G").alias("_T"))
            .filter(pl.col("_N") * 2 > pl.col("_T"))  # share > 0.5 implies the single most frequent
            .select(*per, "CODE1")
        )
        rows = pl.concat([
            rows.join(mode_rules, on=["EP", "RULE"], how="anti"),
            moded.join(winners, on=[*per, "CODE1"], how="semi"),
        ])
    when = _when_filter(program)
    if when is not None:
        rows = rows.filter(when)

    mins = [(e, r, rule.min_events) for e, ep in enumerate(program.endpoints)
            for r, rule in enumerate(ep.rules) if rule.min_events > 1]
    needs = [(e, r) for e, ep in enumerate(program.endpoints)
             for r, rule in enumerate(ep.rules) if rule.needs_other]
    rows = rows.select("ROW", "PID", "EP", "RULE")
    if mins or needs:
        # only endpoints with a min or needs-other rule are counted (needs-other looks at
        # every rule of its endpoint); the others pass through untouched
        counted_eps = sorted({e for e, *_ in mins} | {e for e, _ in needs})
        plain = rows.filter(~pl.col("EP").is_in(counted_eps))
        rows = rows.filter(pl.col("EP").is_in(counted_eps))
        kept = rows.group_by("PID", "EP", "RULE").agg(pl.len().alias("_N"))
        if mins:
            mt = pl.LazyFrame(mins, schema={"EP": _U32, "RULE": _U32, "_MIN": pl.UInt32},
                              orient="row")
            kept = kept.join(mt, on=["EP", "RULE"], how="left").filter(
                pl.col("_N") >= pl.col("_MIN").fill_null(1))
        if needs:
            nt = pl.LazyFrame(needs, schema={"EP": _U32, "RULE": _U32}, orient="row").with_columns(
                pl.lit(True).alias("_NO"))
            kept = (
                kept.with_columns(pl.len().over("PID", "EP").alias("_R"))
                .join(nt, on=["EP", "RULE"], how="left")
                .filter(pl.col("_NO").is_null() | (pl.col("_R") >= 2))
            )
        rows = pl.concat([
            plain,
            rows.join(kept.select("PID", "EP", "RULE"), on=["PID", "EP", "RULE"], how="semi"),
        ])
    rows = rows.select("ROW", "EP", "PID")
    # a row repeats for an endpoint only if its key is selected by two of the endpoint's rules
    repeats = prep.mapping.rules.select(pl.struct("KEYID", "EP").is_duplicated().any()).item()
    return (rows.unique() if repeats else rows).collect()


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


def evaluate_bucket(prep: Prepared, events: pl.LazyFrame, people: pl.LazyFrame) -> BucketResult:
    """Evaluate every endpoint of `prep` for one bucket of people (the caller filters both
    tables with `bucket_filter`; `events` must already carry the global row index ROW)."""
    return _evaluate_levels(prep, events, people)[0]


def _evaluate_levels(prep: Prepared, events: pl.LazyFrame, people: pl.LazyFrame, *,
                     keep_rows: Sequence[int] = ()) -> tuple[BucketResult, pl.DataFrame]:
    """`evaluate_bucket`, plus the case event rows (EP, ROW, PID; ROW as in `events`) of
    the endpoints at positions `keep_rows`."""
    program = prep.program
    eps = program.endpoints
    pos = {ep.name: i for i, ep in enumerate(eps)}
    ppl = (
        people.select("FINNGENID", "SEX").sort("FINNGENID").with_row_index("PID").collect()
    )
    absent = (
        events.select("FINNGENID").join(ppl.lazy().select("FINNGENID"), on="FINNGENID", how="anti")
        .select(pl.len().alias("n"), pl.col("FINNGENID").n_unique().alias("m")).collect()
    )
    matched, ages = _ordered(_matched_rows(prep, events, ppl))
    own = _own_rows(prep, matched)
    # fields[ROW] is row ROW's: a gather, never a join
    fields = matched.select("ROW", "ORIG", "_K", "AGE", "DAY", "YEAR",
                            *(["EMERG"] if prep.uses_emergency else []))

    # which levels still need an endpoint's case rows (for includes)
    level_of = {i: lv for lv, members in enumerate(prep.levels) for i in members}
    last_use: dict[int, int] = {}
    for i, ep in enumerate(eps):
        for name in ep.includes:
            last_use[pos[name]] = max(last_use.get(pos[name], -1), level_of[i])

    level_table = pl.DataFrame([(i, lv) for lv, members in enumerate(prep.levels) for i in members],
                               schema={"EP": _U32, "_LV": _U32}, orient="row")
    own_by_level = (own.join(level_table, on="EP")
                    .partition_by("_LV", as_dict=True, include_key=False))
    case_rows: dict[int, pl.DataFrame] = {}
    cases: dict[int, pl.DataFrame] = {}
    empty_rows = pl.DataFrame(schema=_ROWS_SCHEMA)
    sex_table = [(i, ep.sex) for i, ep in enumerate(eps) if ep.sex is not None]
    keep = set(keep_rows)
    kept_rows: list[pl.DataFrame] = []

    for lv, members in enumerate(prep.levels):
        parts = [own_by_level.get((lv,), empty_rows).lazy()]
        edges = [(i, pos[x]) for i in members for x in eps[i].includes]
        if edges:
            inc = pl.concat([
                case_rows.get(x, empty_rows).lazy().with_columns(pl.lit(i, dtype=_U32).alias("EP"))
                for i, x in edges
            ])
            when = _when_filter(program, members)
            if when is not None:
                inc = inc.join(fields.lazy(), on="ROW").filter(when)
            parts.append(inc.select("ROW", "EP", "PID"))
        # own rows are unique per (ROW, EP) already; only included rows can repeat them
        lr = (pl.concat(parts).unique(["ROW", "EP"]) if len(parts) > 1 else parts[0]).collect()
        level_rows = lr.lazy()
        first = (
            lr.select("EP", "PID", fields["_K"].gather(lr["ROW"]).alias("_K"))
            .group_by("EP", "PID")
            .agg(pl.col("_K").min(), pl.len().cast(pl.Int64).alias("NEVT"))
        )
        summary = _decode_first(first, ages).lazy()
        sexes = [(i, s) for i, s in sex_table if i in members]
        if sexes:
            st = pl.LazyFrame(sexes, schema={"EP": _U32, "_SEX": pl.String}, orient="row")
            summary = (
                summary.join(st, on="EP", how="left")
                .join(ppl.lazy().select("PID", "SEX"), on="PID", how="left")
                .filter(pl.col("_SEX").is_null() | (pl.col("SEX") == pl.col("_SEX")).fill_null(False))
                .drop("_SEX", "SEX")
            )
        summary = summary.select(list(_CASES_SCHEMA)).collect()
        with_req = [i for i in members if eps[i].require is not None]
        if with_req:
            plain = summary.filter(~pl.col("EP").is_in(with_req))
            checks = []
            for i in with_req:
                frame, cond = _person_frame(summary.lazy().filter(pl.col("EP") == i),
                                            eps[i].require, cases, pos)
                checks.append(frame.filter(cond).select(list(_CASES_SCHEMA)))
            summary = pl.concat([plain, *pl.collect_all(checks)])
        for (i,), part in summary.partition_by("EP", as_dict=True).items():
            cases[i] = part
        wanted = [i for i in members if i in keep]
        if wanted:
            got = (
                level_rows.filter(pl.col("EP").is_in(wanted))
                .join(summary.lazy().select("EP", "PID"), on=["EP", "PID"], how="semi")
                .collect()
            )
            kept_rows.append(got.with_columns(fields["ORIG"].gather(got["ROW"]).alias("ROW")))
        needed = [i for i in members if last_use.get(i, -1) > lv]
        if needed:
            kept = (
                level_rows.filter(pl.col("EP").is_in(needed))
                .join(summary.lazy().select("EP", "PID"), on=["EP", "PID"], how="semi")
                .collect()
            )
            for (i,), part in kept.partition_by("EP", as_dict=True).items():
                case_rows[i] = part
        for x in [x for x in case_rows if last_use.get(x, -1) <= lv]:
            del case_rows[x]

    out = _bucket_outputs(prep, ppl, cases, pos, int(absent["n"][0]), int(absent["m"][0]))
    rows = (pl.concat(kept_rows) if kept_rows else pl.DataFrame(schema=_ROWS_SCHEMA))
    return out, rows.select("EP", "ROW", "PID").join(ppl.select("PID", "FINNGENID"), on="PID")


def _bucket_outputs(prep: Prepared, ppl: pl.DataFrame, cases: dict[int, pl.DataFrame],
                    pos: dict[str, int], absent_events: int, absent_people: int) -> BucketResult:
    eps = prep.program.endpoints
    empty_cases = pl.DataFrame(schema=_CASES_SCHEMA)
    selected_cases = pl.concat([cases.get(i, empty_cases) for i in prep.selected] or [empty_cases])
    pop = ppl.lazy().select("PID", "SEX")
    excluded: list[pl.LazyFrame] = []
    for i in prep.selected:
        ep: EndpointPlan = eps[i]
        parts: list[pl.LazyFrame] = []
        if ep.sex is not None:
            parts.append(pop.filter((pl.col("SEX") != ep.sex).fill_null(True)).select("PID"))
        for name in ep.control_exclude:
            parts.append(cases.get(pos[name], empty_cases).lazy().select("PID"))
        if ep.control_require is not None:
            frame, cond = _person_frame(pop.select("PID"), ep.control_require, cases, pos)
            parts.append(frame.filter(~cond).select("PID"))
        if parts:
            excluded.append(
                pl.concat(parts).unique()
                .join(cases.get(i, empty_cases).lazy().select("PID"), on="PID", how="anti")
                .with_columns(pl.lit(i, dtype=_U32).alias("EP"))
                .select("EP", "PID")
            )
    excl = (pl.concat(pl.collect_all(excluded)) if excluded
            else pl.DataFrame(schema={"EP": _U32, "PID": _U32}))

    names = pl.DataFrame({"EP": list(range(len(eps))), "ENDPOINT": [ep.name for ep in eps]},
                         schema={"EP": _U32, "ENDPOINT": pl.String})
    ids = ppl.select("PID", "FINNGENID")
    long = pl.concat([
        selected_cases.with_columns(pl.lit("case").alias("STATUS")),
        excl.with_columns(
            pl.lit("excluded").alias("STATUS"), pl.lit(None, pl.Float64).alias("AGE"),
            pl.lit(None, pl.Int32).alias("YEAR"), pl.lit(None, pl.Int64).alias("NEVT")),
    ], how="diagonal").join(ids, on="PID").join(names, on="EP").select(list(LONG_SCHEMA))

    sel = pl.DataFrame({"EP": list(prep.selected)}, schema={"EP": _U32}).join(names, on="EP")
    n_cases = selected_cases.group_by("EP").agg(pl.len().cast(pl.Int64).alias("N_CASES"))
    n_excl = excl.group_by("EP").agg(pl.len().cast(pl.Int64).alias("N_EXCLUDED"))
    counts = (
        sel.join(n_cases, on="EP", how="left").join(n_excl, on="EP", how="left")
        .select("ENDPOINT", pl.col("N_CASES").fill_null(0), pl.col("N_EXCLUDED").fill_null(0),
                pl.lit(ppl.height, dtype=pl.Int64).alias("N_POPULATION"))
    )
    return BucketResult(long=long, counts=counts, absent_events=absent_events,
                        absent_people=absent_people)


# -- driver ---------------------------------------------------------------------------

def combine_buckets(prep: Prepared, parts: Sequence[BucketResult]) -> Results:
    """Concatenate bucket results into sorted outputs; independent of the bucket count."""
    long = (pl.concat([p.long for p in parts]) if parts
            else pl.DataFrame(schema=LONG_SCHEMA)).sort("ENDPOINT", "FINNGENID")
    names = pl.DataFrame({"ENDPOINT": [prep.program.endpoints[i].name for i in prep.selected]},
                         schema={"ENDPOINT": pl.String})
    summed = (
        pl.concat([p.counts for p in parts]).group_by("ENDPOINT").agg(
            pl.col("N_CASES").sum(), pl.col("N_EXCLUDED").sum(), pl.col("N_POPULATION").sum())
        if parts else pl.DataFrame(schema={"ENDPOINT": pl.String, "N_CASES": pl.Int64,
                                           "N_EXCLUDED": pl.Int64, "N_POPULATION": pl.Int64})
    )
    counts = (
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
    warnings = []
    n_events = sum(p.absent_events for p in parts)
    n_people = sum(p.absent_people for p in parts)
    if n_events:
        warnings.append(f"{n_events} events of {n_people} people absent from the people table "
                        "were ignored")
    return Results(long=long.lazy(), counts=counts.lazy(), warnings=tuple(warnings))


def evaluate(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
             endpoints: Sequence[str] | None = None, buckets: int = 1,
             on_bucket: Callable[[int, int], None] | None = None) -> Results:
    """Evaluate `program` over normalised `events` and `people` (see notes/SEMANTICS.md).

    `endpoints` selects endpoints by name (their dependencies are evaluated but not
    returned). `buckets` > 1 evaluates people in that many hash buckets, one at a time, to
    bound memory; the results are the same for any bucket count. `on_bucket(done, total)`
    is called after each bucket (e.g. to advance a progress bar).
    """
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    events = events.lazy()
    people = people.lazy()
    prep = prepare(program, events, endpoints=endpoints)
    indexed = events.with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64))
    parts = []
    for b in range(buckets):
        if buckets == 1:
            ev, pp = indexed, people
        else:
            ev, pp = indexed.filter(bucket_filter(b, buckets)), people.filter(bucket_filter(b, buckets))
        parts.append(evaluate_bucket(prep, ev, pp))
        if on_bucket is not None:
            on_bucket(b + 1, buckets)
    return combine_buckets(prep, parts)


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
