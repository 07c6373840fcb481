"""Plan conditions -> Polars expressions.

Input: a typed condition of the plan (`when`, `require`, controls) and where its operands
are read (`Operands`); output: one Boolean expression, over event rows for `when`
(`when_filter`) or over people for `require` and controls (`person_condition`).

The plan's conditions are typed (every node is a number or a truth value, and each node
type reads operands of one type), so each node type has one translation per value type
and no value is ever converted to the other type. Nodes are built bottom-up over
`plan.walk`, so deep nesting cannot exhaust the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from ..plan import (
    NUMBER, TRUTH, AllOf, AnyOf, Cmp, Const, Count, EndpointFact, EventField, FirstAge, FirstYear, IsCase,
    Negate, Program, children, cond_endpoints, walk,
)
from .columns import CASES_SCHEMA

__all__ = ["Operands", "EVENT_OPERANDS", "truth", "when_filter", "person_condition"]


@dataclass(frozen=True)
class Operands:
    """Where a condition reads its operands: event fields (in `when`) from columns of the
    event rows, endpoint facts (in `require` and controls) from columns of a person's
    cases of other endpoints. The plan keeps each kind to its place; the reader of the
    other kind is missing."""

    field: Callable[[str], pl.Expr] | None = None
    endpoint: Callable[[str, str], pl.Expr] | None = None

    def read_field(self, node: EventField) -> pl.Expr:
        if self.field is None:
            raise ValueError(f"EventField {node.name} is an event field: only `when` can read it")
        return self.field(node.name)

    def read_fact(self, node: EndpointFact, fact: str) -> pl.Expr:
        if self.endpoint is None:
            raise ValueError(f"{type(node).__name__} of {node.endpoint} is a fact about an endpoint: "
                             "`when` cannot read it")
        return self.endpoint(node.endpoint, fact)


# A builder gets the node, the operands and the expressions of the node's children.
_Builder = Callable[[object, Operands, list[pl.Expr]], pl.Expr]


def _fact(fact: str) -> _Builder:
    return lambda node, operands, args: operands.read_fact(node, fact)


_COMPARE = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}

_BUILDERS: dict[str, dict[type, _Builder]] = {
    NUMBER: {
        Const: lambda node, operands, args: pl.lit(float(node.value), dtype=pl.Float64),
        EventField: lambda node, operands, args: operands.read_field(node).cast(pl.Float64),
        Count: _fact("count"),
        FirstAge: _fact("age"),
        FirstYear: _fact("year"),
    },
    TRUTH: {
        EventField: lambda node, operands, args: operands.read_field(node),  # emergency
        IsCase: _fact("case"),
        Cmp: lambda node, operands, args: _COMPARE[node.op](*args).fill_null(False),
        AllOf: lambda node, operands, args: pl.all_horizontal(args) if args else pl.lit(True),
        AnyOf: lambda node, operands, args: pl.any_horizontal(args) if args else pl.lit(False),
        Negate: lambda node, operands, args: ~args[0],
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


_EVENT_COLUMNS = {"age": "AGE", "year": "YEAR", "emergency": "EMERG"}
EVENT_OPERANDS = Operands(field=lambda name: pl.col(_EVENT_COLUMNS[name]))


def when_filter(program: Program, eps: Sequence[int]) -> pl.Expr | None:
    """One expression applying the `when` of the endpoints at positions `eps` to rows with
    an EP column (rows of other endpoints pass)."""
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
        keep = truth(cond, EVENT_OPERANDS)
        chain = pl.when(test).then(keep) if chain is None else chain.when(test).then(keep)
    return chain.otherwise(True)


def _fact_columns(index: int) -> dict[str, str]:
    """The columns holding the facts about endpoint `index` of each person."""
    return {"case": f"_CASE_{index}", "count": f"_COUNT_{index}", "age": f"_AGE_{index}",
            "year": f"_YEAR_{index}"}


def person_condition(base: pl.LazyFrame, cond, cases: dict[int, pl.DataFrame],
                     pos: dict[str, int]) -> tuple[pl.LazyFrame, pl.Expr]:
    """`base` (with PID) joined with the facts `cond` reads about other endpoints (from
    their `cases`, CASES_SCHEMA, by endpoint position), and `cond` over those columns."""
    for name in cond_endpoints(cond):
        x = pos[name]
        c = _fact_columns(x)
        dep = cases.get(x)
        if dep is None:
            dep = pl.DataFrame(schema=CASES_SCHEMA)
        base = base.join(
            dep.lazy().select(
                "PID", pl.lit(True).alias(c["case"]), pl.col("NEVT").alias(c["count"]),
                pl.col("AGE").alias(c["age"]), pl.col("YEAR").alias(c["year"])),
            on="PID", how="left",
        ).with_columns(pl.col(c["case"]).fill_null(False), pl.col(c["count"]).fill_null(0))

    def endpoint(name: str, fact: str) -> pl.Expr:
        col = pl.col(_fact_columns(pos[name])[fact])
        return col if fact == "case" else col.cast(pl.Float64)

    return base, truth(cond, Operands(endpoint=endpoint))
