"""Why is this person (not) a case? One person and one endpoint, step by step.

`explain_person` walks the plan (LANGUAGE.md section 5, notes/SEMANTICS.md) over one
person's event rows in plain Python and records, for every rule, each of the person's
events of that rule's SOURCEs with the reason it was kept or discarded; then `min` and
`needs other`, the included endpoints (each explained recursively), sex, `require` with the
values it read, AGE/YEAR/NEVT, and the control rules for a non-case.

The statuses of the endpoints it depends on come from the reference engine run on this
person's rows only, and the walk's own conclusion is checked against it: an explanation
that disagrees with the engines is a bug and raises instead of misleading.

The output is individual-level data: `format_explanation` starts with a header that says so.

>>> import polars as pl
>>> from endpointc.compiler import compile_text
>>> program, _ = compile_text('endpoint A { hospital icd10 I21 except I219 }')
>>> events = pl.DataFrame({"FINNGENID": ["P1", "P1"], "SOURCE": ["INPAT", "OUTPAT"],
...     "EVENT_AGE": [61.5, 60.0], "CODE1": ["I219", "I210"], "ICDVER": ["10", "10"]})
>>> people = pl.DataFrame({"FINNGENID": ["P1"], "SEX": ["male"]})
>>> expl = explain_person(program, events, people, person="P1", endpoint="A")
>>> expl.status, expl.nevt
('case', 1)
>>> [e.reason for e in expl.steps[0].events]
['kept: matched pattern I21', 'discarded: except I219']
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import polars as pl

from .engine.reference import compare, evaluate_reference, truth
from .lower import MAIN_CATEGORIES, SOURCE_ROWS, VOCAB_COLUMNS
from .plan import (
    AllOf, AnyOf, Branch, Cmp, CodeSet, ColumnTest, Const, Count, EndpointPlan, EventField, FirstAge,
    FirstYear, IsCase, Negate, Program, RulePlan,
)

__all__ = [
    "EventNote", "Step", "Explanation", "ExplainError", "explain_person", "format_explanation",
    "format_cond", "INDIVIDUAL_DATA_HEADER", "option_tests",
]

INDIVIDUAL_DATA_HEADER = "This output contains individual-level data: do not share it."

Row = dict[str, Any]

_SHOWN_COLUMNS = ("CODE1", "CODE2", "CODE3", "ICDVER", "CATEGORY", "INDEX", "CODE9")


class ExplainError(ValueError):
    """The person or endpoint asked about does not exist. Never carries a person's values."""


@dataclass(frozen=True)
class EventNote:
    """One event row and what a step did with it. `row` is its position in the events table (from 0)."""

    row: int
    source: str
    age: float | None
    day: dt.date | None
    codes: str  # "CODE1=E119 ICDVER=10": the row's filled code columns
    kept: bool
    reason: str


@dataclass(frozen=True)
class Step:
    """A block of the explanation: a title, the events it judged, verdict lines, and the
    explanations of included endpoints (for `include` steps)."""

    title: str
    events: tuple[EventNote, ...] = ()
    notes: tuple[str, ...] = ()
    included: tuple["Explanation", ...] = ()


@dataclass(frozen=True)
class Explanation:
    """`status` is case, control or excluded; AGE/YEAR/NEVT as in the results (a control's
    AGE is FU_END_AGE and NEVT 0; an excluded person's are missing)."""

    person: str
    endpoint: str
    status: str
    age: float | None
    year: int | None
    nevt: int | None
    sex: str | None
    steps: tuple[Step, ...]

    @property
    def lines(self) -> tuple[str, ...]:
        """Every verdict line of every step (event reasons and notes), for searching."""
        found: list[str] = []
        for step in self.steps:
            found.append(step.title)
            found.extend(_event_line(e) for e in step.events)
            found.extend(step.notes)
        return tuple(found)


# -- entry point ------------------------------------------------------------------------

def explain_person(program: Program, events: pl.DataFrame | pl.LazyFrame, people: pl.DataFrame | pl.LazyFrame,
                   *, person: str, endpoint: str) -> Explanation:
    """Explain `person`'s status for `endpoint` (both must exist: else `ExplainError`)."""
    if endpoint not in program.names:
        raise ExplainError(f"unknown endpoint {endpoint}")
    subset = program.subset([endpoint])
    person_people = people.lazy().filter(pl.col("FINNGENID") == person).collect()
    if person_people.height == 0:
        raise ExplainError("the person is not in the people table (the population)")
    if person_people.height > 1:
        raise ExplainError("the person appears more than once in the people table")
    # Row identity is the position in the whole events table: number rows before filtering.
    person_events = (events.lazy().with_row_index("_ROW").filter(pl.col("FINNGENID") == person)
                     .collect())
    positions = person_events["_ROW"].to_list()
    person_events = person_events.drop("_ROW")
    long = evaluate_reference(subset, person_events, person_people)
    facts = {r["ENDPOINT"]: r for r in long.to_dicts()}

    rows = []
    for position, row in zip(positions, person_events.to_dicts()):
        for column in ("CODE1", "CODE2", "CODE3", "ICDVER", "CATEGORY", "INDEX", "APPROX_EVENT_DAY", "EVENT_AGE"):
            row.setdefault(column, None)
        row["_ROW"] = position
        rows.append(row)
    walker = _Walker(subset, rows, person_people.to_dicts()[0], facts)
    return walker.explain(endpoint)


# -- the walk -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Verdict:
    selected: bool
    stage: int  # how far the row got: 0 pattern, 1 options (main/with atc), 2 except, 3 selected
    reason: str


class _Walker:
    def __init__(self, program: Program, rows: list[Row], person: Row, facts: dict[str, Row]):
        self.program = program
        self.rows = sorted(rows, key=_event_order)
        self.person = person
        self.facts = facts
        self.memo: dict[str, tuple[Explanation, dict[int, Row]]] = {}
        urgent = {r["INDEX"] for r in rows if r.get("CODE9") == "1" and r["INDEX"] is not None}
        self.urgent = urgent

    def emergency(self, row: Row) -> bool:
        return row.get("CODE9") == "1" or (row["INDEX"] is not None and row["INDEX"] in self.urgent)

    def explain(self, name: str) -> Explanation:
        return self._walk(name)[0]

    def _walk(self, name: str) -> tuple[Explanation, dict[int, Row]]:
        if name in self.memo:
            return self.memo[name]
        ep = self.program.get(name)
        steps: list[Step] = []

        # Step 1: each rule's candidate events (patterns, except, main, with atc, mode), then `when`.
        candidates: dict[int, list[Row]] = {}
        for rule in ep.rules:
            notes, kept = self._rule_events(ep, rule)
            candidates[rule.index] = kept
            sources = _rule_sources(rule)
            title = f"step 1, rule {rule.index + 1} ({rule.source}): events of {', '.join(sources)}"
            steps.append(Step(title=title, events=tuple(notes),
                              notes=() if notes else ("the person has no events of these sources",)))

        # Step 2: min per rule, then needs other judged on what the others kept after min.
        after_min: dict[int, list[Row]] = {}
        step2: list[str] = []
        for rule in ep.rules:
            kept = candidates[rule.index]
            label = f"rule {rule.index + 1} ({rule.source})"
            if not kept:
                after_min[rule.index] = []
                step2.append(f"{label}: no events")
            elif len(kept) < rule.min_events:
                after_min[rule.index] = []
                step2.append(f"{label}: min {rule.min_events} not reached ({len(kept)} of {rule.min_events}): "
                             f"its {_n_events(len(kept))} dropped")
            else:
                after_min[rule.index] = kept
                if rule.min_events > 1:
                    step2.append(f"{label}: min {rule.min_events} reached ({len(kept)} of {rule.min_events})")
                else:
                    step2.append(f"{label}: {_n_events(len(kept))} kept")
        final: dict[int, list[Row]] = {}
        for rule in ep.rules:
            kept = after_min[rule.index]
            final[rule.index] = kept
            if not (rule.needs_other and kept):
                continue
            label = f"rule {rule.index + 1} ({rule.source})"
            others = [o for o in ep.rules if o.index != rule.index and after_min[o.index]]
            if others:
                names = ", ".join(f"rule {o.index + 1}" for o in others)
                step2.append(f"{label}: needs other: {names} kept events, so its events count")
            else:
                final[rule.index] = []
                step2.append(f"{label}: needs other without another rule (no other rule kept an event): "
                             f"its {_n_events(len(kept))} dropped")
        if ep.rules:
            steps.append(Step(title="step 2: min and needs other", notes=tuple(step2)))

        event_set: dict[int, Row] = {}
        for rule in ep.rules:
            for row in final[rule.index]:
                event_set[row["_ROW"]] = row

        # Step 3: included endpoints' case events, filtered by this endpoint's `when`.
        for included in ep.includes:
            inner, inner_rows = self._walk(included)
            notes: list[EventNote] = []
            for row in sorted(inner_rows.values(), key=_event_order):
                holds, why = self._when(ep, row)
                if not holds:
                    notes.append(_note(row, False, f"discarded: {why}"))
                elif row["_ROW"] in event_set:
                    notes.append(_note(row, True, "kept (already in the set: counted once)"))
                else:
                    event_set[row["_ROW"]] = row
                    notes.append(_note(row, True, "kept" + (f": {why}" if why else "")))
            if inner.status == "case":
                head = f"the person is a case of {included} with {_n_events(inner.nevt or 0)}; its events:"
            else:
                head = f"the person is not a case of {included} ({inner.status}): it adds no events"
            steps.append(Step(title=f"step 3, include {included}", events=tuple(notes), notes=(head,),
                              included=(inner,)))

        # Step 4: sex and require.
        sex = self.person.get("SEX")
        step4: list[str] = [f"event set: {_n_events(len(event_set))}" if event_set
                            else "event set: empty, so not a case"]
        sex_ok = ep.sex is None or sex == ep.sex
        if ep.sex is None:
            step4.append("sex: any")
        else:
            shown = sex if sex is not None else "missing"
            step4.append(f"sex {ep.sex} required: the person's sex is {shown}: "
                         + ("allowed" if sex_ok else "not allowed"))
        require_ok = True
        if ep.require is not None:
            require_ok = truth(self._person_value(ep.require))
            step4.append(f"require {format_cond(ep.require)}: {self._values(ep.require)}: "
                         + ("holds" if require_ok else "fails"))
        is_case = bool(event_set) and sex_ok and require_ok
        steps.append(Step(title="step 4: sex and require", notes=tuple(step4)))

        # Step 5 (cases) or step 6 (everyone else).
        if is_case:
            first = min(event_set.values(), key=_event_order)
            age = first["EVENT_AGE"]
            day = first["APPROX_EVENT_DAY"]
            year = day.year if day is not None else None
            nevt = len(event_set)
            status = "case"
            step = [f"case: AGE {_num(age)} (earliest event: row {first['_ROW']}), YEAR {_num(year)}, NEVT {nevt}"]
            if ep.control_exclude or ep.control_require is not None:
                step.append("control rules never touch cases")
            steps.append(Step(title="step 5: AGE, YEAR, NEVT", notes=tuple(step)))
        else:
            age, year, nevt = None, None, None
            step6: list[str] = []
            excluded = False
            if not sex_ok:
                excluded = True
                step6.append("sex not allowed: excluded")
            for other in ep.control_exclude:
                if self._is_case(other):
                    excluded = True
                    step6.append(f"controls exclude {other}: the person is a case of {other}: excluded")
                else:
                    step6.append(f"controls exclude {other}: the person is not a case of {other}")
            if ep.control_require is not None:
                holds = truth(self._person_value(ep.control_require))
                excluded = excluded or not holds
                step6.append(f"controls require {format_cond(ep.control_require)}: "
                             f"{self._values(ep.control_require)}: " + ("holds" if holds else "fails: excluded"))
            if excluded:
                status = "excluded"
                step6.append("excluded: AGE, YEAR and NEVT are empty")
            else:
                status = "control"
                age, nevt = self.person.get("FU_END_AGE"), 0
                step6.append(f"control: AGE {_num(age)} (FU_END_AGE), NEVT 0")
            steps.append(Step(title="step 6: not a case: control rules", notes=tuple(step6)))

        self._check(name, status, age, year, nevt)
        explanation = Explanation(person=self.person["FINNGENID"], endpoint=name, status=status, age=age,
                                  year=year, nevt=nevt, sex=sex, steps=tuple(steps))
        result = (explanation, event_set if is_case else {})
        self.memo[name] = result
        return result

    def _check(self, name: str, status: str, age, year, nevt) -> None:
        fact = self.facts.get(name)
        expected = ("control", None, None, None) if fact is None else (
            fact["STATUS"], fact["AGE"], fact["YEAR"], fact["NEVT"])
        got = (status, age if status == "case" else None, year, nevt if status == "case" else None)
        if got != expected:
            raise RuntimeError(f"explain disagrees with the reference engine on endpoint {name}; "
                               "please report this as a bug")

    # -- step 1 for one rule -------------------------------------------------------------

    def _rule_events(self, ep: EndpointPlan, rule: RulePlan) -> tuple[list[EventNote], list[Row]]:
        sources = set(_rule_sources(rule))
        rows = [r for r in self.rows if r["SOURCE"] in sources]
        verdicts = {r["_ROW"]: _rule_verdict(rule, r) for r in rows}
        selected = [r for r in rows if verdicts[r["_ROW"]].selected]
        mode_notes = _mode(selected) if rule.mode else {}
        notes: list[EventNote] = []
        kept: list[Row] = []
        for row in rows:
            verdict = verdicts[row["_ROW"]]
            if not verdict.selected:
                notes.append(_note(row, False, f"discarded: {verdict.reason}"))
                continue
            reason = verdict.reason
            if rule.mode:
                ok, why = mode_notes[row["_ROW"]]
                if not ok:
                    notes.append(_note(row, False, f"discarded: {why}"))
                    continue
                reason += f"; {why}"
            holds, why = self._when(ep, row)
            if not holds:
                notes.append(_note(row, False, f"discarded: {why}"))
                continue
            if why:
                reason += f"; {why}"
            notes.append(_note(row, True, f"kept: {reason}"))
            kept.append(row)
        return notes, kept

    def _when(self, ep: EndpointPlan, row: Row) -> tuple[bool, str]:
        """Whether `when` keeps the row, and words with the values it read ('' without `when`)."""
        if ep.when is None:
            return True, ""
        holds = truth(self._event_value(ep.when, row))
        values = []
        for name in _fields(ep.when):
            if name == "age":
                values.append(f"age = {_num(row['EVENT_AGE'])}")
            elif name == "year":
                day = row["APPROX_EVENT_DAY"]
                values.append(f"year = {_num(day.year if day is not None else None)}")
            else:
                values.append(f"emergency = {'yes' if self.emergency(row) else 'no'}")
        text = f"when {format_cond(ep.when)} " + ("holds" if holds else "is false")
        return holds, text + (f" ({', '.join(values)})" if values else "")

    # -- conditions ------------------------------------------------------------------------

    def _event_value(self, cond, row: Row) -> Any:
        match cond:
            case Const(value=v):
                return v
            case EventField(name="age"):
                return row["EVENT_AGE"]
            case EventField(name="year"):
                day = row["APPROX_EVENT_DAY"]
                return day.year if day is not None else None
            case EventField(name="emergency"):
                return self.emergency(row)
            case Cmp(op=op, left=left, right=right):
                return compare(op, self._event_value(left, row), self._event_value(right, row))
            case AllOf(args=args):
                return all(truth(self._event_value(a, row)) for a in args)
            case AnyOf(args=args):
                return any(truth(self._event_value(a, row)) for a in args)
            case Negate(arg=arg):
                return not truth(self._event_value(arg, row))
        raise TypeError(f"{type(cond).__name__} is not an event condition")

    def _is_case(self, name: str) -> bool:
        fact = self.facts.get(name)
        return fact is not None and fact["STATUS"] == "case"

    def _person_value(self, cond) -> Any:
        match cond:
            case Const(value=v):
                return v
            case IsCase(endpoint=e):
                return self._is_case(e)
            case Count(endpoint=e):
                return self.facts[e]["NEVT"] if self._is_case(e) else 0
            case FirstAge(endpoint=e):
                return self.facts[e]["AGE"] if self._is_case(e) else None
            case FirstYear(endpoint=e):
                return self.facts[e]["YEAR"] if self._is_case(e) else None
            case Cmp(op=op, left=left, right=right):
                return compare(op, self._person_value(left), self._person_value(right))
            case AllOf(args=args):
                return all(truth(self._person_value(a)) for a in args)
            case AnyOf(args=args):
                return any(truth(self._person_value(a)) for a in args)
            case Negate(arg=arg):
                return not truth(self._person_value(arg))
        raise TypeError(f"{type(cond).__name__} is not a person condition")

    def _values(self, cond) -> str:
        """The operands a person condition read, e.g. `E4_DM1 = not a case, E4_DM1.count = 0`."""
        parts: list[str] = []
        for leaf in _leaves(cond):
            text = format_cond(leaf)
            value = self._person_value(leaf)
            if isinstance(leaf, IsCase):
                shown = "case" if value else "not a case"
            else:
                shown = _num(value)
            part = f"{text} = {shown}"
            if part not in parts:
                parts.append(part)
        return ", ".join(parts) if parts else "no values"


# -- rows and rules -------------------------------------------------------------------------

def _rule_sources(rule: RulePlan) -> tuple[str, ...]:
    found: list[str] = []
    for branch in rule.branches:
        found.extend(s for s in branch.sources if s not in found)
    return tuple(found) or SOURCE_ROWS.get(rule.source, ())


def option_tests(source: str) -> tuple[tuple[str, ColumnTest], ...]:
    """The column tests that `main` and `with atc` add to a rule of `source`, with their names.

    Lowering appends them to every branch; a CODE3 'any' test is `with atc` only where no
    vocabulary of the source addresses CODE3 (`cancer behaviour any` is a pattern).
    """
    found: list[tuple[str, ColumnTest]] = []
    if source in MAIN_CATEGORIES:
        found.append(("main", ColumnTest(column="CATEGORY", codes=MAIN_CATEGORIES[source])))
    if not any(s == source and column == "CODE3" for (s, _), (column, _) in VOCAB_COLUMNS.items()):
        found.append(("with atc", ColumnTest(column="CODE3", codes=CodeSet(prefixes=("",)))))
    return tuple(found)


def _pin_tests(source: str) -> set[ColumnTest]:
    """Tests that pin a vocabulary to its rows (ICDVER, CATEGORY prefixes): not patterns."""
    return {pin for (s, _), (_, pins) in VOCAB_COLUMNS.items() if s == source for pin in pins}


def _rule_verdict(rule: RulePlan, row: Row) -> _Verdict:
    """The most telling verdict over the rule's branches: selected if any selects the row,
    else the branch that got furthest (an `except` says more than a pattern miss)."""
    options = dict((t, name) for name, t in option_tests(rule.source))
    pins = _pin_tests(rule.source)
    best = _Verdict(False, 0, "pattern did not match")
    for branch in rule.branches:
        if row["SOURCE"] not in branch.sources:
            continue
        verdict = _branch_verdict(branch, row, options, pins)
        if verdict.selected:
            return verdict
        if verdict.stage > best.stage:
            best = verdict
    return best


def _branch_verdict(branch: Branch, row: Row, options: dict[ColumnTest, str], pins: set[ColumnTest]) -> _Verdict:
    patterns = [t for t in branch.tests if t not in options and t not in pins]
    if not all(t.codes.matches(row[t.column]) for t in branch.tests if t not in options):
        return _Verdict(False, 0, "pattern did not match")
    for test in branch.tests:
        if test in options and not test.codes.matches(row[test.column]):
            value = row[test.column]
            shown = "empty" if value is None else value
            return _Verdict(False, 1, f"{options[test]} ({test.column} is {shown})")
    for conjunction in branch.excepts:
        if all(t.codes.matches(row[t.column]) for t in conjunction):
            return _Verdict(False, 2, "except " + "&".join(_matched(t.codes, row[t.column]) for t in conjunction))
    matched = [_matched(t.codes, row[t.column]) for t in patterns]
    if len(patterns) == 1:
        reason = f"matched pattern {matched[0]}"
    elif patterns:
        reason = "matched patterns " + ", ".join(f"{t.column} {m}" for t, m in zip(patterns, matched))
    else:
        reason = "matched"
    used = [options[t] for t in branch.tests if t in options]
    if used:
        reason += f" ({', '.join(used)})"
    return _Verdict(True, 3, reason)


def _matched(codes: CodeSet, value: str) -> str:
    """The pattern of `codes` that `value` matched, written as in the language."""
    for prefix in codes.prefixes:
        if value.startswith(prefix):
            return prefix or "any"
    if value in codes.exact:
        return f"={value}"
    for regex in codes.regexes:
        if re.match(regex, value):
            return f're"{regex}"'
    return value


def _mode(selected: list[Row]) -> dict[int, tuple[bool, str]]:
    """FinnGen `%` among the rule's selected rows, with the share each code had."""
    groups: dict[str, Counter] = {}
    for row in selected:
        code = row["CODE1"]
        if code is not None:
            groups.setdefault(code[:-1], Counter())[code] += 1
    verdicts: dict[int, tuple[bool, str]] = {}
    for row in selected:
        code = row["CODE1"]
        if code is None:
            verdicts[row["_ROW"]] = (False, "mode (CODE1 is empty)")
            continue
        group = groups[code[:-1]]
        share, total = group[code], sum(group.values())
        ok = share / total > 0.5
        verdicts[row["_ROW"]] = (ok, f"mode: {code} is {share} of {total} events among codes {code[:-1]}x"
                                 + ("" if ok else ", not above one half"))
    return verdicts


def _event_order(row: Row):
    age, day = row["EVENT_AGE"], row["APPROX_EVENT_DAY"]
    return (age is None, age or 0.0, day is None, day or dt.date.min, row["_ROW"])


def _note(row: Row, kept: bool, reason: str) -> EventNote:
    codes = " ".join(f"{c}={row[c]}" for c in _SHOWN_COLUMNS if row.get(c) is not None)
    return EventNote(row=row["_ROW"], source=row["SOURCE"], age=row["EVENT_AGE"], day=row["APPROX_EVENT_DAY"],
                     codes=codes, kept=kept, reason=reason)


# -- conditions in words ------------------------------------------------------------------

def _fields(cond) -> tuple[str, ...]:
    found: list[str] = []
    for leaf in _leaves(cond):
        if isinstance(leaf, EventField) and leaf.name not in found:
            found.append(leaf.name)
    return tuple(found)


def _leaves(cond) -> list:
    """Operands (fields, endpoint facts) of a condition, in reading order; constants left out."""
    match cond:
        case Cmp(left=left, right=right):
            return _leaves(left) + _leaves(right)
        case AllOf(args=args) | AnyOf(args=args):
            return [leaf for a in args for leaf in _leaves(a)]
        case Negate(arg=arg):
            return _leaves(arg)
        case Const():
            return []
    return [cond]


_SYNTAX_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "!="}


def format_cond(cond) -> str:
    """A plan condition in the language's own syntax (`not E4_DM1`, `X.count > 1`)."""
    match cond:
        case Const(value=v):
            return f"{v:g}"
        case EventField(name=name):
            return name
        case IsCase(endpoint=e):
            return e
        case Count(endpoint=e):
            return f"{e}.count"
        case FirstAge(endpoint=e):
            return f"{e}.age"
        case FirstYear(endpoint=e):
            return f"{e}.year"
        case Cmp(op=op, left=left, right=right):
            return f"{format_cond(left)} {_SYNTAX_OPS[op]} {format_cond(right)}"
        case AllOf(args=(single,)) | AnyOf(args=(single,)):
            return format_cond(single)
        case AllOf(args=args):
            return " and ".join(_operand(a) for a in args)
        case AnyOf(args=args):
            return " or ".join(_operand(a) for a in args)
        case Negate(arg=arg):
            return f"not ({format_cond(arg)})" if isinstance(arg, Cmp) else f"not {_operand(arg)}"
    raise TypeError(f"no syntax for plan node {type(cond).__name__}")


def _operand(cond) -> str:
    # Comparisons bind tighter than `and`/`or`; nested `and`/`or` get parentheses for the reader.
    text = format_cond(cond)
    compound = isinstance(cond, (AllOf, AnyOf)) and len(cond.args) > 1
    return f"({text})" if compound else text


def _num(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}" if value != int(value) else f"{value:.1f}"
    return str(value)


def _n_events(n: int) -> str:
    return f"{n} event" + ("" if n == 1 else "s")


# -- text ---------------------------------------------------------------------------------

def _event_line(note: EventNote) -> str:
    day = f" {note.day.isoformat()}" if note.day is not None else ""
    return f"row {note.row}: {note.source} age {_num(note.age)}{day} {note.codes} -> {note.reason}"


def format_explanation(expl: Explanation, *, header: bool = True) -> str:
    """Plain text, one verdict per line; starts with the individual-level data warning."""
    lines: list[str] = []
    if header:
        lines.append(INDIVIDUAL_DATA_HEADER)
        lines.append("Rows are positions in the events table, counting from 0.")
    lines.extend(_body(expl, indent=""))
    return "\n".join(lines)


def _body(expl: Explanation, *, indent: str) -> list[str]:
    status = expl.status
    if status == "case":
        status += f" (AGE {_num(expl.age)}, YEAR {_num(expl.year)}, NEVT {expl.nevt})"
    lines = [f"{indent}{expl.person} for {expl.endpoint}: {status}"]
    for step in expl.steps:
        lines.append(f"{indent}  {step.title}")
        lines.extend(f"{indent}    {note}" for note in step.notes)
        lines.extend(f"{indent}    {_event_line(e)}" for e in step.events)
        for inner in step.included:
            lines.append(f"{indent}    why {inner.endpoint}:")
            lines.extend(_body(inner, indent=indent + "      "))
    return lines
