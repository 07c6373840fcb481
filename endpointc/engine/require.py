"""Cases -> the cases that satisfy their endpoint's `require`.

Input: (endpoint, person) cases (CASES_SCHEMA) of endpoints with a `require`, before it
(the candidate cases, whose facts an endpoint naming itself reads), and the final cases
of the other endpoints those requires read; output: the cases that satisfy their
`require`, as lazy frames. Most FinnGen requires are conjunctions of "is a case of X" and
"is not": those are checked together by one membership test of packed (X, PID) pairs;
any other condition gets a query of its own (`conditions.person_condition`).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ..plan import AllOf, EndpointPlan, IsCase, Negate, cond_endpoints, walk
from .columns import CASES_SCHEMA, U32, pack
from .conditions import person_condition

__all__ = ["case_literals", "meeting_require"]


def case_literals(cond) -> tuple[tuple[str, bool], ...] | None:
    """`cond` as a conjunction of (endpoint, is a case) literals, or None if it is not one."""
    literals = []
    nodes = walk(cond)
    for node in nodes:
        if isinstance(node, AllOf):
            continue
        if isinstance(node, IsCase):
            literals.append((node.endpoint, True))
        elif isinstance(node, Negate) and isinstance(node.arg, IsCase):
            next(nodes)  # the negated IsCase: walk gives a node's operands right after it
            literals.append((node.arg.endpoint, False))
        else:
            return None
    return tuple(literals)


def meeting_require(rows: pl.DataFrame, eps: Sequence[EndpointPlan], cases: dict[int, pl.DataFrame],
                    pos: dict[str, int]) -> list[pl.LazyFrame]:
    """The `rows` (cases, CASES_SCHEMA, of endpoints with a `require`) that satisfy their
    endpoint's `require`; `cases`: the final cases of the endpoints those read, by position."""
    out: list[pl.LazyFrame] = []
    literal: list[tuple[int, int, bool]] = []  # (EP, other endpoint, must be a case)
    other, conjunctions = [], []
    for i in rows["EP"].unique().to_list():
        # an endpoint's own facts are the columns of its rows, not a membership
        lits = None if eps[i].name in cond_endpoints(eps[i].require) else case_literals(eps[i].require)
        if lits is None:
            other.append(i)
        else:
            conjunctions.append(i)
            literal.extend((i, pos[name], positive) for name, positive in lits)
    if other:
        for (i,), part in rows.filter(pl.col("EP").is_in(other)).partition_by("EP", as_dict=True).items():
            frame, cond = person_condition(part.lazy(), eps[i].require, cases, pos, itself=i)
            out.append(frame.filter(cond).select(list(CASES_SCHEMA)))
    if conjunctions:
        table = pl.DataFrame(literal, schema={"EP": U32, "_OTHER_EP": U32, "_MUST_BE_CASE": pl.Boolean},
                             orient="row")
        known = [cases[x] for x in sorted(set(table["_OTHER_EP"])) if x in cases]
        pairs = (pl.concat(known).select(pack("EP", pl.col("PID")))["EP"] if known
                 else pl.Series("EP", [], pl.UInt64))
        mine = rows.lazy().filter(pl.col("EP").is_in(conjunctions))
        failing = (mine.select("EP", "PID").join(table.lazy(), on="EP")
                   .filter(pack("_OTHER_EP", pl.col("PID")).is_in(pairs.implode()) != pl.col("_MUST_BE_CASE"))
                   .select(pack("EP", pl.col("PID")).alias("_EP_PID")))
        out.append(mine.join(failing, left_on=pack("EP", pl.col("PID")), right_on="_EP_PID", how="anti")
                   .select(list(CASES_SCHEMA)))
    return out
