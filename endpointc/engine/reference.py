"""The reference engine: the language reference (docs/language.md, sections 3 to 8), row by row.

This is the oracle the Polars engine is tested against. It is written to be read next to
the language's text, step by step, and is never optimised: plain Python lists and dicts,
`CodeSet.matches` on every row. Use it on small tables only.

It can also say what it does: an `Observer` hears each judgement as it is made (why a rule
selects or discards a row, what `mode`, `when`, `min`, `needs other`, the includes, sex,
`require` and the control rules decided, with the values they read). `explain` is this
engine run on one person with an observer that writes it all down.

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
>>> rule = program.get("A").rules[0]
>>> judge(rule, {"SOURCE": "INPAT", "CODE1": "I219", "ICDVER": "10"}).matched
(('CODE1', 'I21'),)
>>> judge(rule, {"SOURCE": "INPAT", "CODE1": "I219", "ICDVER": "9"}).stage == PATTERN
True
"""

from __future__ import annotations

import datetime as dt
import operator
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple, Sequence

import polars as pl

from ..diagnostics import Diagnostic, DiagnosticError
from .schema import COUNTS_SCHEMA, LONG_SCHEMA
from ..plan import (
    DATE, AllOf, AnyOf, Between, Branch, Cmp, ColumnTest, Const, Count, DateConst, Duration, EndpointFact,
    EndpointPlan, EventField, FirstAge, FirstDate, FirstYear, IsCase, Negate, Program, Relation, RulePlan, Shift,
)

__all__ = [
    "evaluate_reference", "counts_reference", "Observer", "Verdict", "Holds", "Case", "judge",
    "event_order", "day_number", "spaced_count", "PATTERN", "OPTION", "EXCEPT", "SELECTED",
]


Row = dict[str, Any]

_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "==": operator.eq, "!=": operator.ne}

# How far a row got in a branch: its patterns and vocabulary pins, the rule's options
# (`main`, `with atc`), its excepts.
PATTERN, OPTION, EXCEPT, SELECTED = range(4)
_OPTIONS = ("main", "with_atc")


class Case:
    """A case's facts that other endpoints may read: its event rows, AGE, YEAR, DATE, NEVT
    (and `first`, the earliest event, which gives AGE, YEAR and DATE)."""

    def __init__(self, rows: list[Row]):
        self.rows = rows
        self.first = min(rows, key=event_order)
        self.age: float | None = self.first["EVENT_AGE"]
        self.date: dt.date | None = self.first["APPROX_EVENT_DAY"]
        self.year: int | None = self.date.year if self.date is not None else None
        self.nevt = len(rows)


def event_order(row: Row):
    """Earliest by EVENT_AGE, then APPROX_EVENT_DAY, missing values last."""
    # The row index only makes the choice deterministic (equal keys give the same AGE and YEAR).
    age, day = row["EVENT_AGE"], row["APPROX_EVENT_DAY"]
    return (age is None, age or 0.0, day is None, day or dt.date.min, row["_ROW"])


@dataclass(slots=True, eq=False)
class Verdict:
    """A rule's judgement of one row: the engine selects on it, explain puts it in words.

    `stage` is how far the row got in the branch it got furthest in: PATTERN (a pattern or
    vocabulary pin did not match, or no branch reads the row's SOURCE), OPTION (`failed`,
    a `main` or `with atc` test, did not hold), EXCEPT (the conjunction `excepted` held),
    or SELECTED (by `branch`).
    """

    row: Row
    stage: int = PATTERN
    branch: Branch | None = None
    failed: ColumnTest | None = None
    excepted: tuple[ColumnTest, ...] = ()

    @property
    def selected(self) -> bool:
        return self.stage == SELECTED

    @property
    def matched(self) -> tuple[tuple[str, str], ...]:
        """(column, pattern as written) for each pattern that matched: those of the
        selecting branch, or of the except conjunction that held."""
        if self.stage == EXCEPT:
            tests = self.excepted
        elif self.selected:
            tests = tuple(t for t in self.branch.tests if t.role == "pattern")
        else:
            tests = ()
        # A plan built by hand may keep no written patterns: the value stands for its own.
        return tuple((t.column, t.written_match(self.row[t.column]) or self.row[t.column]) for t in tests)


class Holds(NamedTuple):
    """Whether a condition holds, with the values it read (each field or endpoint fact node
    with its value, in reading order)."""

    holds: bool
    read: dict


class Observer:
    """What the engine tells of each step as it takes it; this one listens to nothing.

    Rows are the engine's: the events table's columns, `_ROW` the position in it.
    """

    def row(self, endpoint: EndpointPlan, rule: RulePlan, row: Row, verdict: Verdict) -> None:
        """Step 1: the rule judged a row of its sources."""

    def mode(self, endpoint: EndpointPlan, rule: RulePlan, row: Row, kept: bool, share: int, total: int) -> None:
        """Step 1, `mode`: the row's CODE1 is `share` of the `total` selected events of its group."""

    def when(self, endpoint: EndpointPlan, where: RulePlan | str, row: Row, when: Holds) -> None:
        """Steps 1 and 3: `when` on a row the rule `where` kept, or a case event of the
        included endpoint named `where`."""

    def min_events(self, endpoint: EndpointPlan, rule: RulePlan, person: str, count: int, reached: bool) -> None:
        """Step 2, for each person with events left after `when`: `count` of them, and
        whether that reaches the rule's `min`."""

    def needs_other(self, endpoint: EndpointPlan, rule: RulePlan, person: str, others: tuple[RulePlan, ...]) -> None:
        """Step 2: the other rules that kept events of the person (none: the rule's are dropped)."""

    def included(self, endpoint: EndpointPlan, included: str, row: Row, added: bool) -> None:
        """Step 3: `when` kept a case event of `included`; not `added` if the set held it."""

    def case_rules(self, endpoint: EndpointPlan, person: str, events: int, sex_allowed: bool,
                   require: Holds) -> None:
        """Step 4: the size of the person's event set, sex and `require` (holding if absent)."""

    def case(self, endpoint: EndpointPlan, person: str, case: Case) -> None:
        """Step 5: the person is a case."""

    def control_rules(self, endpoint: EndpointPlan, person: str, sex_allowed: bool,
                      cases_of: tuple[str, ...], require: Holds, excluded: bool) -> None:
        """Step 6, for a non-case: sex, the excluded endpoints the person is a case of, and
        the controls' `require` (holding if absent)."""


def evaluate_reference(program: Program, events: pl.DataFrame, people: pl.DataFrame, *,
                       endpoints: Sequence[str] | None = None, observer: Observer | None = None) -> pl.DataFrame:
    """The long results table: one row per case or excluded person and endpoint.

    `endpoints` selects endpoints by name (their dependencies are evaluated, not reported).
    `observer` hears every step (see `Observer`); it changes nothing.
    """
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    if isinstance(people, pl.LazyFrame):
        people = people.collect()
    if endpoints is not None:
        program = program.subset(endpoints)
    reported = set(endpoints) if endpoints is not None else set(program.names)
    observer = observer if observer is not None else Observer()

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

    cases: dict[str, dict[str, Case]] = {}  # endpoint -> person -> case facts
    output: list[tuple] = []
    for endpoint in program.endpoints:
        cases[endpoint.name] = _evaluate_endpoint(endpoint, rows, population, cases, emergency, observer)
        if endpoint.name not in reported:
            continue
        for person_id, person in population.items():
            case = cases[endpoint.name].get(person_id)
            if case is not None:
                output.append((person_id, endpoint.name, "case", case.age, case.year, case.nevt))
            elif _is_excluded_control(endpoint, person, cases, observer):
                output.append((person_id, endpoint.name, "excluded", None, None, None))
    output.sort(key=lambda r: (r[1], r[0]))
    return pl.DataFrame(output, schema=LONG_SCHEMA, orient="row")


def _evaluate_endpoint(endpoint: EndpointPlan, rows: list[Row], population: dict[str, Row],
                       cases: dict[str, dict[str, Case]], emergency, observer: Observer) -> dict[str, Case]:
    def when_holds(where: RulePlan | str, row: Row) -> bool:
        if endpoint.when is None:
            return True
        when = _holds(endpoint.when, _event_fields(row, emergency, _endpoint_facts(row["FINNGENID"], cases)))
        observer.when(endpoint, where, row, when)
        return when.holds

    # Step 1: own candidate events of each rule: rows of its sources that a branch selects
    # (patterns, except, main, with atc), then `mode`, then filtered by `when`.
    kept: dict[int, dict[str, list[Row]]] = {}  # rule index -> person -> rows
    for rule in endpoint.rules:
        selected = []
        for row in rows:
            if row["SOURCE"] in rule.source_rows:
                verdict = judge(rule, row)
                observer.row(endpoint, rule, row, verdict)
                if verdict.selected:
                    selected.append(row)
        if rule.mode:
            selected = _keep_mode(selected, partial(observer.mode, endpoint, rule))
        by_person: dict[str, list[Row]] = {}
        for row in selected:
            if when_holds(rule, row):
                by_person.setdefault(row["FINNGENID"], []).append(row)
        # Step 2a: fewer than `min` events of this rule count for nothing; a spaced or
        # clustered `min` counts only dated events, picked as the language says.
        kept[rule.index] = {}
        for person_id, person_rows in by_person.items():
            count = len(person_rows) if rule.spacing is None else spaced_count(rule, person_rows)
            reached = count >= rule.min_events
            observer.min_events(endpoint, rule, person_id, count, reached)
            if reached:
                kept[rule.index][person_id] = person_rows

    # Step 2b: `needs other`, judged on what every rule kept after the min step.
    final: dict[int, dict[str, list[Row]]] = {}
    for rule in endpoint.rules:
        final[rule.index] = {}
        for person_id, person_rows in kept[rule.index].items():
            if rule.needs_other:
                others = tuple(o for o in endpoint.rules if o.index != rule.index and person_id in kept[o.index])
                observer.needs_other(endpoint, rule, person_id, others)
                if not others:
                    continue
            final[rule.index][person_id] = person_rows

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
                if when_holds(included, row):
                    events = event_sets.setdefault(person_id, {})
                    observer.included(endpoint, included, row, row["_ROW"] not in events)
                    events[row["_ROW"]] = row

    # Step 4: a case has an event, an allowed sex, and satisfies every `require`. Everyone
    # is judged, so that an observer hears why a person is not a case.
    result: dict[str, Case] = {}
    for person_id, person in population.items():
        events = event_sets.get(person_id, {})
        sex_allowed = _sex_allowed(endpoint, person)
        # An endpoint naming itself in `require` reads these candidate events.
        candidate = Case(list(events.values())) if events else None
        require = _holds(endpoint.require, _endpoint_facts(person_id, cases, itself=(endpoint.name, candidate)))
        observer.case_rules(endpoint, person_id, len(events), sex_allowed, require)
        if candidate is not None and sex_allowed and require.holds:
            # Step 5: AGE, YEAR and NEVT come from the event set (computed in Case).
            result[person_id] = candidate
            observer.case(endpoint, person_id, candidate)
    return result


def _is_excluded_control(endpoint: EndpointPlan, person: Row, cases: dict[str, dict[str, Case]],
                         observer: Observer) -> bool:
    """Step 6, for a non-case of the population: excluded by sex, by being a case of an
    endpoint the controls exclude, or by failing the controls' `require`."""
    person_id = person["FINNGENID"]
    sex_allowed = _sex_allowed(endpoint, person)
    cases_of = tuple(name for name in endpoint.control_exclude if person_id in cases[name])
    require = _holds(endpoint.control_require, _endpoint_facts(person_id, cases))
    excluded = not sex_allowed or bool(cases_of) or not require.holds
    observer.control_rules(endpoint, person_id, sex_allowed, cases_of, require, excluded)
    return excluded


def _sex_allowed(endpoint: EndpointPlan, person: Row) -> bool:
    return endpoint.sex is None or person.get("SEX") == endpoint.sex


# -- rows ------------------------------------------------------------------------------

def judge(rule: RulePlan, row: Row) -> Verdict:
    """A rule selects a row when one of its branches does. Otherwise the verdict is that of
    the branch the row got furthest in: an `except` says more than a pattern miss."""
    best = Verdict(row)
    for branch in rule.branches:
        if row["SOURCE"] not in branch.sources:
            continue
        verdict = _judge_branch(branch, row)
        if verdict.selected:
            return verdict
        if verdict.stage > best.stage:
            best = verdict
    return best


def _judge_branch(branch: Branch, row: Row) -> Verdict:
    # A branch selects a row when every test holds and no except conjunction does. Patterns
    # and pins come first, so that an option is said to discard only rows they select.
    for test in branch.tests:
        if test.role not in _OPTIONS and not test.codes.matches(row[test.column]):
            return Verdict(row, PATTERN, branch, failed=test)
    for test in branch.tests:
        if test.role in _OPTIONS and not test.codes.matches(row[test.column]):
            return Verdict(row, OPTION, branch, failed=test)
    for conjunction in branch.excepts:
        if all(test.codes.matches(row[test.column]) for test in conjunction):
            return Verdict(row, EXCEPT, branch, excepted=conjunction)
    return Verdict(row, SELECTED, branch)


def _keep_mode(selected: list[Row], told: Callable[[Row, bool, int, int], None]) -> list[Row]:
    """FinnGen `%`: per person, among codes sharing all but the last character, keep a
    code only if it is the most frequent one with a share above one half."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for row in selected:
        code = row["CODE1"]
        if code is not None:
            group = counts.setdefault((row["FINNGENID"], code[:-1]), {})
            group[code] = group.get(code, 0) + 1

    kept = []
    for row in selected:
        code = row["CODE1"]
        group = counts[(row["FINNGENID"], code[:-1])] if code is not None else {}
        share, total = group.get(code, 0), sum(group.values())
        is_mode = code is not None and share / total > 0.5
        told(row, is_mode, share, total)
        if is_mode:
            kept.append(row)
    return kept


def spaced_count(rule: RulePlan, rows: list[Row]) -> int:
    """How many of a person's events a spaced or clustered `min` counts; undated events
    count for neither.

    `apart D`: pick the earliest dated event, then repeatedly the earliest one at least D
    after the last pick; the number of picks. `within D`: the most events in one window
    [day, day + D] that starts at an event."""
    days = sorted(day_number(r["APPROX_EVENT_DAY"]) for r in rows if r["APPROX_EVENT_DAY"] is not None)
    if rule.spacing == "apart":
        picks, last = 0, None
        for day in days:
            if last is None or day - last >= rule.spacing_days:
                picks, last = picks + 1, day
        return picks
    if rule.spacing == "within":
        return max((sum(1 for other in days[i:] if other - day <= rule.spacing_days)
                    for i, day in enumerate(days)), default=0)
    raise ValueError(f"unknown spacing {rule.spacing!r}")


# -- conditions ------------------------------------------------------------------------

_EPOCH = dt.date(1970, 1, 1)


def day_number(day: dt.date) -> int:
    """A date as a number of days (since 1970-01-01), so that dates and durations add up."""
    return (day - _EPOCH).days


def truth(value: Any) -> bool:
    """A condition's value as a yes/no: missing is no."""
    return value is not None and bool(value)


def compare(op: str, left: Any, right: Any) -> bool:
    # A comparison with a missing side is false.
    if left is None or right is None:
        return False
    return _COMPARE[op](left, right)


def _holds(cond, fact: Callable[[Any], Any]) -> Holds:
    """Whether a condition holds (one that is absent does), with the values it read."""
    if cond is None:
        return Holds(True, {})
    read: dict = {}
    return Holds(truth(_value(cond, fact, read)), read)


def _value(cond, fact: Callable[[Any], Any], read: dict) -> Any:
    """A condition's value. `fact` gives the value of a field (in `when`) or of a fact about
    another endpoint (in `require` and controls); `read` collects them."""
    if isinstance(cond, Const):
        return cond.value
    if isinstance(cond, DateConst):
        return day_number(cond.value)
    if isinstance(cond, Duration):
        return cond.days
    if isinstance(cond, (EventField, EndpointFact)):
        read[cond] = value = fact(cond)
        # dates are read (and shown) as dates and computed with as day numbers
        return day_number(value) if cond.value_type == DATE and value is not None else value
    if isinstance(cond, Shift):
        date, by = _value(cond.date, fact, read), _value(cond.by, fact, read)
        return None if date is None or by is None else date + cond.sign * by
    if isinstance(cond, Between):
        later, earlier = _value(cond.later, fact, read), _value(cond.earlier, fact, read)
        return None if later is None or earlier is None else later - earlier
    if isinstance(cond, Relation):
        return _value(cond.meaning, fact, read)
    if isinstance(cond, Cmp):
        return compare(cond.op, _value(cond.left, fact, read), _value(cond.right, fact, read))
    # Every operand is evaluated, none short-circuits (conditions have no side effects), so
    # that `read` holds every value the condition depends on.
    if isinstance(cond, AllOf):
        return all([truth(_value(a, fact, read)) for a in cond.args])
    if isinstance(cond, AnyOf):
        return any([truth(_value(a, fact, read)) for a in cond.args])
    if isinstance(cond, Negate):
        return not truth(_value(cond.arg, fact, read))
    raise TypeError(f"{type(cond).__name__} is not a condition node")


def _event_fields(row: Row, emergency: Callable[[Row], bool],
                  person_facts: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """What `when` reads: the fields of one event row, and facts about the person's other
    endpoints (the same for all of the person's events)."""
    def value(field):
        if isinstance(field, EndpointFact):
            return person_facts(field)
        if isinstance(field, EventField):
            day = row["APPROX_EVENT_DAY"]
            if field.name == "age":
                return row["EVENT_AGE"]
            if field.name == "year":
                return day.year if day is not None else None
            if field.name == "date":
                return day
            if field.name == "emergency":
                return emergency(row)
        raise TypeError(f"{type(field).__name__} is not an event field")
    return value


def _endpoint_facts(person_id: str, cases: dict[str, dict[str, Case]],
                    itself: tuple[str, Case | None] | None = None) -> Callable[[Any], Any]:
    """The facts `require`, controls and `when` read about the person's status for other
    endpoints; `itself` is (the endpoint's name, the person's candidate events) where the
    endpoint may read its own."""
    def value(fact):
        if not isinstance(fact, EndpointFact):
            raise TypeError(f"{type(fact).__name__} is not a fact about an endpoint")
        if itself is not None and fact.endpoint == itself[0]:
            case = itself[1]
        else:
            case = cases[fact.endpoint].get(person_id)
        if isinstance(fact, IsCase):
            return case is not None
        if isinstance(fact, Count):
            return case.nevt if case is not None else 0
        if isinstance(fact, FirstAge):
            return case.age if case is not None else None
        if isinstance(fact, FirstYear):
            return case.year if case is not None else None
        if isinstance(fact, FirstDate):
            return case.date if case is not None else None
        raise TypeError(f"{type(fact).__name__} is not an endpoint fact the engine knows")
    return value


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
