"""Plan conditions -> Polars expressions.

Input: a typed condition of the plan (`when`, `require`, controls) and where its operands
are read (`Operands`); output: one Boolean expression, over event rows for `when`
(`when_filter`) or over people for `require` and controls (`person_condition`). Facts
about endpoints (`X`, `X.count`, `X.age`, `X.year`, `X.date`) are columns that
`with_facts` joins to the rows by person first, in `when` as in `require`.

The plan's conditions are typed (every node is a number, a truth value, a date or a
duration, and each node type reads operands of given types), so each node type has one
translation per value type and no value is ever converted to another type. Dates are day
numbers and durations days, both as f64: a window edge such as `X.date + 1 year` (365.25
days after) is then compared exactly, as the reference engine does. Nodes are built
bottom-up over `plan.walk`, so deep nesting cannot exhaust the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from ..plan import (
    DATE, DURATION, NUMBER, TRUTH, AllOf, AnyOf, Between, Cmp, Const, Count, DateConst, Duration, EndpointFact,
    EventField, FirstAge, FirstDate, FirstYear, IsCase, Negate, Program, Relation, Shift, children,
    cond_endpoints, walk,
)
from .columns import CASES_SCHEMA, order_day
from .matching import ENGINE

__all__ = ["Operands", "EVENT_OPERANDS", "When", "truth", "when_filter", "with_facts", "person_condition"]


@dataclass(frozen=True)
class Operands:
    """Where a condition reads its operands: event fields (in `when`) from columns of the
    event rows, endpoint facts from the columns `with_facts` joins. The plan keeps event
    fields to `when`; a reader that is missing is a reader of a place the plan forbids."""

    field: Callable[[str], pl.Expr] | None = None
    endpoint: Callable[[str, str], pl.Expr] | None = None

    def read_field(self, node: EventField) -> pl.Expr:
        if self.field is None:
            raise ValueError(f"EventField {node.name} is an event field: only `when` can read it")
        return self.field(node.name)

    def read_fact(self, node: EndpointFact, fact: str) -> pl.Expr:
        if self.endpoint is None:
            raise ValueError(f"{type(node).__name__} of {node.endpoint} is a fact about an endpoint, "
                             "and these operands read none")
        return self.endpoint(node.endpoint, fact)


# A builder gets the node, the operands and the expressions of the node's children.
_Builder = Callable[[object, Operands, list[pl.Expr]], pl.Expr]


def _fact(fact: str) -> _Builder:
    return lambda node, operands, args: operands.read_fact(node, fact)


_COMPARE = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}


def _shift(node, operands, args) -> pl.Expr:
    date, by = args
    return date + by if node.sign == 1 else date - by


def _field(node, operands, args) -> pl.Expr:
    return operands.read_field(node).cast(pl.Float64)


_BUILDERS: dict[str, dict[type, _Builder]] = {
    NUMBER: {
        Const: lambda node, operands, args: pl.lit(float(node.value), dtype=pl.Float64),
        EventField: _field,  # age, year
        Count: _fact("count"),
        FirstAge: _fact("age"),
        FirstYear: _fact("year"),
    },
    DATE: {
        DateConst: lambda node, operands, args: pl.lit(node.value, dtype=pl.Date).cast(pl.Int32).cast(pl.Float64),
        EventField: _field,  # date
        FirstDate: _fact("date"),
        Shift: _shift,
    },
    DURATION: {
        Duration: lambda node, operands, args: pl.lit(float(node.days), dtype=pl.Float64),
        Between: lambda node, operands, args: args[0] - args[1],
    },
    TRUTH: {
        EventField: lambda node, operands, args: operands.read_field(node),  # emergency
        IsCase: _fact("case"),
        Cmp: lambda node, operands, args: _COMPARE[node.op](*args).fill_null(False),
        AllOf: lambda node, operands, args: pl.all_horizontal(args) if args else pl.lit(True),
        AnyOf: lambda node, operands, args: pl.any_horizontal(args) if args else pl.lit(False),
        Negate: lambda node, operands, args: ~args[0],
        # a relation's operands cannot hold a relation (they are dates): one level deep
        Relation: lambda node, operands, args: truth(node.meaning, operands),
    },
}


def _builder(node) -> _Builder:
    value_type = getattr(node, "value_type", None)
    build = _BUILDERS.get(value_type, {}).get(type(node))
    if build is None:
        raise TypeError(f"the Polars engine cannot translate {type(node).__name__} "
                        f"(value type {value_type!r})")
    return build


def truth(cond, operands: Operands) -> pl.Expr:
    """`cond`, a truth value, as a Boolean expression (a comparison with a missing side is
    false)."""
    if getattr(cond, "value_type", None) != TRUTH:
        raise TypeError(f"{type(cond).__name__} is not a truth value")
    nodes = list(walk(cond))
    built: dict[int, pl.Expr] = {}
    # walk gives parents before their operands: backwards, every operand is built first
    for node in reversed(nodes):
        args = [built[id(child)] for child in children(node)]
        built[id(node)] = _builder(node)(node, operands, args)
    return built[id(cond)]


_EVENT_COLUMNS = {"age": pl.col("AGE"), "year": pl.col("YEAR"), "emergency": pl.col("EMERG"),
                  # a row's own order key holds its day (rows a `when` reads are units of their own)
                  "date": order_day(pl.col("_ORDER_KEY"))}
EVENT_OPERANDS = Operands(field=_EVENT_COLUMNS.__getitem__)


def _fact_columns(index: int) -> dict[str, str]:
    """The columns holding the facts about endpoint `index` of each person."""
    return {"case": f"_CASE_{index}", "count": f"_COUNT_{index}", "age": f"_AGE_{index}",
            "year": f"_YEAR_{index}", "date": f"_DATE_{index}"}


def _fact_reader(pos: Mapping[str, int]) -> Callable[[str, str], pl.Expr]:
    def endpoint(name: str, fact: str) -> pl.Expr:
        col = pl.col(_fact_columns(pos[name])[fact])
        return col if fact == "case" else col.cast(pl.Float64)
    return endpoint


@dataclass(frozen=True)
class When:
    """The `when` of some endpoints, over rows with an EP column (rows of other endpoints
    pass). `keep` is one filter for the endpoints whose `when` reads event fields only;
    `by_facts` holds, per distinct `when` that reads facts about other endpoints, its
    endpoints, its filter and the positions of the endpoints it reads.

    A `when` that reads facts is applied to its own endpoints' rows only, with only its
    own facts joined: one filter over every row with every fact joined costs the rows
    times the number of such `when`s (500 endpoints relating their events to as many
    others were 3x a whole library)."""

    keep: pl.Expr
    by_facts: tuple[tuple[tuple[int, ...], pl.Expr, tuple[int, ...]], ...] = ()

    def apply(self, rows: pl.DataFrame, cases: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
        """The `rows` (EP, and PID where facts are read) that the `when` keeps; their order
        is not kept."""
        if not self.by_facts:
            return rows.filter(self.keep)
        factual = [i for members, _, _ in self.by_facts for i in members]
        kept = [rows.filter(~pl.col("EP").is_in(factual)).filter(self.keep)]
        group_of = pl.DataFrame({"EP": factual, "_WHEN_GROUP": [g for g, (members, _, _) in
                                                                enumerate(self.by_facts) for _ in members]},
                                schema={"EP": rows.schema["EP"], "_WHEN_GROUP": pl.UInt32})
        parts = rows.join(group_of, on="EP").partition_by("_WHEN_GROUP", as_dict=True, include_key=False)
        queries = [with_facts(part.lazy(), self.by_facts[g][2], cases).filter(self.by_facts[g][1])
                   .select(rows.columns) for (g,), part in parts.items()]
        kept.extend(pl.collect_all(queries, engine=ENGINE))
        return pl.concat(kept)


def when_filter(program: Program, eps: Sequence[int], pos: Mapping[str, int]) -> When | None:
    """The `when` of the endpoints at positions `eps` as one `When`, or None if none has one."""
    groups: dict[str, tuple[object, list[int]]] = {}
    for i in eps:
        ep = program.endpoints[i]
        if ep.when is not None:
            groups.setdefault(repr(ep.when), (ep.when, []))[1].append(i)
    if not groups:
        return None
    operands = Operands(field=EVENT_OPERANDS.field, endpoint=_fact_reader(pos))
    chain, by_facts = None, []
    for cond, members in groups.values():
        keep = truth(cond, operands)
        reads = tuple(pos[name] for name in cond_endpoints(cond))
        if reads:
            by_facts.append((tuple(members), keep, reads))
            continue
        test = pl.col("EP").is_in(members)
        chain = pl.when(test).then(keep) if chain is None else chain.when(test).then(keep)
    return When(chain.otherwise(True) if chain is not None else pl.lit(True), tuple(by_facts))


def with_facts(base: pl.LazyFrame, reads: Iterable[int], cases: Mapping[int, pl.DataFrame], *,
               itself: int | None = None) -> pl.LazyFrame:
    """`base` (with PID) with the columns of the facts about the endpoints at positions
    `reads`, from their `cases` (CASES_SCHEMA): a non-case is no case, with count 0 and
    no age, year or date. The endpoint `itself` reads its own facts from the columns of
    `base`, which are its candidate cases (CASES_SCHEMA)."""
    for x in reads:
        c = _fact_columns(x)
        facts = (pl.lit(True).alias(c["case"]), pl.col("NEVT").alias(c["count"]), pl.col("AGE").alias(c["age"]),
                 pl.col("YEAR").alias(c["year"]), pl.col("DAY").alias(c["date"]))
        if x == itself:
            base = base.with_columns(*facts)
            continue
        dep = cases.get(x)
        if dep is None:
            dep = pl.DataFrame(schema=CASES_SCHEMA)
        base = (base.join(dep.lazy().select("PID", *facts), on="PID", how="left")
                .with_columns(pl.col(c["case"]).fill_null(False), pl.col(c["count"]).fill_null(0)))
    return base


def person_condition(base: pl.LazyFrame, cond, cases: Mapping[int, pl.DataFrame], pos: Mapping[str, int], *,
                     itself: int | None = None) -> tuple[pl.LazyFrame, pl.Expr]:
    """`base` (with PID) joined with the facts `cond` reads (`with_facts`), and `cond`
    over those columns."""
    base = with_facts(base, (pos[name] for name in cond_endpoints(cond)), cases, itself=itself)
    return base, truth(cond, Operands(endpoint=_fact_reader(pos)))
