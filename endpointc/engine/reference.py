"""The reference engine: LANGUAGE.md sections 3 to 5 (and notes/SEMANTICS.md), row by row.

This is the oracle the Polars engine is tested against. It is written to be read next to
the language's text, step by step, and is never optimised: plain Python lists and dicts,
`CodeSet.matches` on every row. Use it on small tables only.

>>> import polars as pl
>>> from endpointc.compiler import compile_text
>>> program, _ = compile_text('endpoint A { hospital icd10 I21 }')
>>> events = pl.DataFrame({"FINNGENID": ["P1", "P1"], "SOURCE": ["INPAT", "OUTPAT"],
...     "EVENT_AGE": [61.5, 60.0], "APPROX_EVENT_DAY": [None, None], "CODE1": ["I219", "I21"],
...     "ICDVER": ["10", "10"]}, schema_overrides={"APPROX_EVENT_DAY": pl.Date})
>>> people = pl.DataFrame({"FINNGENID": ["P1", "P2"], "SEX": ["male", "female"]})
>>> evaluate_reference(program, events, people).rows()
[('P1', 'A', 'case', 60.0, None, 2)]
>>> counts_reference(evaluate_reference(program, events, people), people).rows()
[('A', 1, 1, 0)]
"""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any, Sequence

import polars as pl

from ..diagnostics import Diagnostic, DiagnosticError
from .schema import COUNTS_SCHEMA, LONG_SCHEMA
from ..plan import (
    AllOf, AnyOf, Branch, Cmp, Const, Count, EndpointPlan, EventField, FirstAge, FirstYear, IsCase,
    Negate, Program, RulePlan,
)

__all__ = ["evaluate_reference", "counts_reference"]


Row = dict[str, Any]

_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "==": operator.eq, "!=": operator.ne}


class _Case:
    """A case's facts that other endpoints may read: its event rows, AGE, YEAR, NEVT."""

    def __init__(self, rows: list[Row]):
        self.rows = rows
        first = min(rows, key=_event_order)
        self.age: float | None = first["EVENT_AGE"]
        day = first["APPROX_EVENT_DAY"]
        self.year: int | None = day.year if day is not None else None
        self.nevt = len(rows)


def _event_order(row: Row):
    # Earliest by EVENT_AGE, then APPROX_EVENT_DAY, missing values last; the row index
    # only makes the choice deterministic (equal keys give the same AGE and YEAR).
    age, day = row["EVENT_AGE"], row["APPROX_EVENT_DAY"]
    return (age is None, age or 0.0, day is None, day or dt.date.min, row["_ROW"])


def evaluate_reference(program: Program, events: pl.DataFrame, people: pl.DataFrame, *,
                       endpoints: Sequence[str] | None = None) -> pl.DataFrame:
    """The long results table: one row per case or excluded person and endpoint.

    `endpoints` selects endpoints by name (their dependencies are evaluated, not reported).
    """
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    if isinstance(people, pl.LazyFrame):
        people = people.collect()
    if endpoints is not None:
        program = program.subset(endpoints)
    reported = set(endpoints) if endpoints is not None else set(program.names)

    population: dict[str, Row] = {p["FINNGENID"]: p for p in people.to_dicts()}
    # Row identity is the position in the events table; events of people outside the
    # population are ignored.
    rows = [dict(r, _ROW=i) for i, r in enumerate(events.to_dicts()) if r["FINNGENID"] in population]
    for row in rows:
        for column in ("CODE1", "CODE2", "CODE3", "ICDVER", "CATEGORY", "APPROX_EVENT_DAY", "EVENT_AGE"):
            row.setdefault(column, None)

    if any(ep.uses_emergency for ep in program.endpoints) and "CODE9" not in events.columns:
        raise DiagnosticError([Diagnostic.error(
            "EP502", "the events table has no CODE9 column, which `when emergency` needs",
            None, "CODE9 is the service-sector urgency field of the longitudinal table")])
    urgent_visits = {(r["FINNGENID"], r["INDEX"]) for r in rows
                     if r.get("CODE9") == "1" and r.get("INDEX") is not None}

    def emergency(row: Row) -> bool:
        return row.get("CODE9") == "1" or (
            row.get("INDEX") is not None and (row["FINNGENID"], row["INDEX"]) in urgent_visits)

    cases: dict[str, dict[str, _Case]] = {}  # endpoint -> person -> case facts
    output: list[tuple] = []
    for endpoint in program.endpoints:
        cases[endpoint.name] = _evaluate_endpoint(endpoint, rows, population, cases, emergency)
        if endpoint.name not in reported:
            continue
        for person_id, person in population.items():
            case = cases[endpoint.name].get(person_id)
            if case is not None:
                output.append((person_id, endpoint.name, "case", case.age, case.year, case.nevt))
            elif _is_excluded_control(endpoint, person, cases):
                output.append((person_id, endpoint.name, "excluded", None, None, None))
    output.sort(key=lambda r: (r[1], r[0]))
    return pl.DataFrame(output, schema=LONG_SCHEMA, orient="row")


def _evaluate_endpoint(endpoint: EndpointPlan, rows: list[Row], population: dict[str, Row],
                       cases: dict[str, dict[str, _Case]], emergency) -> dict[str, _Case]:
    def when_holds(row: Row) -> bool:
        if endpoint.when is None:
            return True
        return truth(_event_value(endpoint.when, row, emergency))

    # Step 1: own candidate events of each rule (patterns, except, main, with atc, mode),
    # then filtered by `when`.
    kept: dict[int, dict[str, list[Row]]] = {}  # rule index -> person -> rows
    for rule in endpoint.rules:
        selected = [r for r in rows if _rule_selects(rule, r)]
        if rule.mode:
            selected = _keep_mode(selected)
        by_person: dict[str, list[Row]] = {}
        for row in selected:
            if when_holds(row):
                by_person.setdefault(row["FINNGENID"], []).append(row)
        # Step 2a: fewer than `min` events of this rule count for nothing.
        kept[rule.index] = {p: rs for p, rs in by_person.items() if len(rs) >= rule.min_events}

    # Step 2b: `needs other`, judged on what every rule kept after the min step.
    final: dict[int, dict[str, list[Row]]] = {}
    for rule in endpoint.rules:
        if rule.needs_other:
            final[rule.index] = {
                p: rs for p, rs in kept[rule.index].items()
                if any(p in kept[other.index] for other in endpoint.rules if other.index != rule.index)
            }
        else:
            final[rule.index] = kept[rule.index]

    # Step 3: add included endpoints' case events, filtered by this endpoint's `when`.
    # The set is a union of rows: a row counts once.
    event_sets: dict[str, dict[int, Row]] = {}
    for by_person in final.values():
        for person_id, person_rows in by_person.items():
            for row in person_rows:
                event_sets.setdefault(person_id, {})[row["_ROW"]] = row
    for included in endpoint.includes:
        for person_id, case in cases[included].items():
            for row in case.rows:
                if when_holds(row):
                    event_sets.setdefault(person_id, {})[row["_ROW"]] = row

    # Step 4: a case has an event, an allowed sex, and satisfies every `require`.
    result: dict[str, _Case] = {}
    for person_id, events in event_sets.items():
        if not events:
            continue
        person = population[person_id]
        if not _sex_allowed(endpoint, person):
            continue
        if endpoint.require is not None and not truth(_person_value(endpoint.require, person_id, cases)):
            continue
        # Step 5: AGE, YEAR and NEVT come from the event set (computed in _Case).
        result[person_id] = _Case(list(events.values()))
    return result


def _is_excluded_control(endpoint: EndpointPlan, person: Row, cases: dict[str, dict[str, _Case]]) -> bool:
    """Step 6, for a non-case of the population."""
    person_id = person["FINNGENID"]
    if not _sex_allowed(endpoint, person):
        return True
    if any(person_id in cases[name] for name in endpoint.control_exclude):
        return True
    if endpoint.control_require is not None:
        return not truth(_person_value(endpoint.control_require, person_id, cases))
    return False


def _sex_allowed(endpoint: EndpointPlan, person: Row) -> bool:
    return endpoint.sex is None or person.get("SEX") == endpoint.sex


# -- rows ------------------------------------------------------------------------------

def _rule_selects(rule: RulePlan, row: Row) -> bool:
    return any(_branch_selects(branch, row) for branch in rule.branches)


def _branch_selects(branch: Branch, row: Row) -> bool:
    if row["SOURCE"] not in branch.sources:
        return False
    if not all(test.codes.matches(row[test.column]) for test in branch.tests):
        return False
    return not any(all(test.codes.matches(row[test.column]) for test in conjunction)
                   for conjunction in branch.excepts)


def _keep_mode(selected: list[Row]) -> list[Row]:
    """FinnGen `%`: per person, among codes sharing all but the last character, keep a
    code only if it is the most frequent one with a share above one half."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for row in selected:
        code = row["CODE1"]
        if code is not None:
            group = counts.setdefault((row["FINNGENID"], code[:-1]), {})
            group[code] = group.get(code, 0) + 1

    def is_mode(row: Row) -> bool:
        code = row["CODE1"]
        if code is None:
            return False
        group = counts[(row["FINNGENID"], code[:-1])]
        return group[code] / sum(group.values()) > 0.5

    return [row for row in selected if is_mode(row)]


# -- conditions ------------------------------------------------------------------------

def truth(value: Any) -> bool:
    """A condition's value as a yes/no: missing is no (shared with explain)."""
    return value is not None and bool(value)


def compare(op: str, left: Any, right: Any) -> bool:
    # A comparison with a missing side is false.
    if left is None or right is None:
        return False
    return _COMPARE[op](left, right)


def _event_value(cond, row: Row, emergency) -> Any:
    """A `when` condition on one event row."""
    if isinstance(cond, Const):
        return cond.value
    if isinstance(cond, EventField):
        if cond.name == "age":
            return row["EVENT_AGE"]
        if cond.name == "year":
            day = row["APPROX_EVENT_DAY"]
            return day.year if day is not None else None
        return emergency(row)
    if isinstance(cond, Cmp):
        return compare(cond.op, _event_value(cond.left, row, emergency), _event_value(cond.right, row, emergency))
    if isinstance(cond, AllOf):
        return all(truth(_event_value(a, row, emergency)) for a in cond.args)
    if isinstance(cond, AnyOf):
        return any(truth(_event_value(a, row, emergency)) for a in cond.args)
    if isinstance(cond, Negate):
        return not truth(_event_value(cond.arg, row, emergency))
    raise TypeError(f"{type(cond).__name__} is not an event condition")


def _person_value(cond, person_id: str, cases: dict[str, dict[str, _Case]]) -> Any:
    """A `require` / controls condition for one person."""
    if isinstance(cond, Const):
        return cond.value
    if isinstance(cond, IsCase):
        return person_id in cases[cond.endpoint]
    if isinstance(cond, Count):
        case = cases[cond.endpoint].get(person_id)
        return case.nevt if case is not None else 0
    if isinstance(cond, FirstAge):
        case = cases[cond.endpoint].get(person_id)
        return case.age if case is not None else None
    if isinstance(cond, FirstYear):
        case = cases[cond.endpoint].get(person_id)
        return case.year if case is not None else None
    if isinstance(cond, Cmp):
        return compare(cond.op, _person_value(cond.left, person_id, cases),
                        _person_value(cond.right, person_id, cases))
    if isinstance(cond, AllOf):
        return all(truth(_person_value(a, person_id, cases)) for a in cond.args)
    if isinstance(cond, AnyOf):
        return any(truth(_person_value(a, person_id, cases)) for a in cond.args)
    if isinstance(cond, Negate):
        return not truth(_person_value(cond.arg, person_id, cases))
    raise TypeError(f"{type(cond).__name__} is not a person condition")


# -- counts ----------------------------------------------------------------------------

def counts_reference(long: pl.DataFrame, people: pl.DataFrame, *,
                     endpoints: Sequence[str] | None = None) -> pl.DataFrame:
    """Per endpoint: cases, controls (population - cases - excluded) and excluded.

    `endpoints` lists every endpoint to report, including those with no case and no
    excluded person (which do not appear in the long table); by default the long table's.
    """
    if isinstance(long, pl.LazyFrame):
        long = long.collect()
    if isinstance(people, pl.LazyFrame):
        people = people.collect()
    population = people.height
    tally: dict[str, dict[str, int]] = {}
    if endpoints is not None:
        for name in endpoints:
            tally[name] = {"case": 0, "excluded": 0}
    for row in long.to_dicts():
        counts = tally.setdefault(row["ENDPOINT"], {"case": 0, "excluded": 0})
        counts[row["STATUS"]] += 1
    output = [(name, c["case"], population - c["case"] - c["excluded"], c["excluded"])
              for name, c in sorted(tally.items())]
    return pl.DataFrame(output, schema=COUNTS_SCHEMA, orient="row")
