"""Why is this person (not) a case? One person and one endpoint, step by step.

`explain_person` runs the reference engine (`engine.reference`) on one person's rows with an
observer that writes down what the engine tells of each step, then puts it in words: for
every rule, each of the person's events of that rule's SOURCEs with the reason it was kept
or discarded; then `min` and `needs other`, the included endpoints (each explained in
turn), sex, `require` with the values it read, AGE/YEAR/NEVT, and the control rules for a
non-case. The engine decides and explain only tells, so an explanation cannot disagree
with the results.

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
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from .engine.reference import (
    EXCEPT, OPTION, Case, Holds, Observer, Verdict, evaluate_reference, event_order,
)
from .describe import duration_text
from .plan import (
    AllOf, AnyOf, Between, Cmp, Const, Count, DateConst, Duration, EndpointFact, EndpointPlan, EventField,
    FirstAge, FirstDate, FirstYear, IsCase, Negate, Program, Relation, RulePlan, Shift,
)

__all__ = [
    "EventNote", "Step", "Explanation", "ExplainError", "explain_person", "format_explanation",
    "format_cond", "INDIVIDUAL_DATA_HEADER",
]

INDIVIDUAL_DATA_HEADER = "This output contains individual-level data: do not share it."

Row = dict[str, Any]

_SHOWN_COLUMNS = ("CODE1", "CODE2", "CODE3", "ICDVER", "CATEGORY", "INDEX", "CODE9")
_OPTION_NAMES = {"main": "main", "with_atc": "with atc"}


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
    # The engine numbers the person's rows from 0, in the same order.
    person_events = (events.lazy().with_row_index("_ROW").filter(pl.col("FINNGENID") == person)
                     .collect())
    positions = person_events["_ROW"].to_list()
    told = _Recorder()
    evaluate_reference(subset, person_events.drop("_ROW"), person_people, observer=told)

    words = _Words(person_people.to_dicts()[0], positions)
    explained: dict[str, Explanation] = {}
    for ep in subset.endpoints:  # dependencies first, so includes are explained already
        explained[ep.name] = words.explain(ep, told.endpoints[ep.name], explained)
    return explained[endpoint]


# -- what the engine told ------------------------------------------------------------------

@dataclass
class _Told:
    """What the engine told of one endpoint for the person, each judgement in words."""

    # rule index (step 1) or included name (step 3) -> row -> (passed, words) per stage
    stages: dict[Any, dict[int, list[tuple[bool, str]]]] = field(default_factory=dict)
    rows: dict[int, Row] = field(default_factory=dict)
    after_when: dict[int, tuple[int, bool]] = field(default_factory=dict)  # rule -> (events, min reached)
    others: dict[int, tuple[RulePlan, ...]] = field(default_factory=dict)  # rule -> rules that kept events
    added: dict[tuple[str, int], bool] = field(default_factory=dict)  # (included, row) -> new to the set
    case_rules: tuple[int, bool, Holds] | None = None
    case: Case | None = None
    control_rules: tuple[bool, tuple[str, ...], Holds, bool] | None = None


class _Recorder(Observer):
    """The observer explain gives the engine: it keeps what it hears, per endpoint."""

    def __init__(self):
        self.endpoints: dict[str, _Told] = defaultdict(_Told)

    def _stage(self, endpoint: EndpointPlan, where: Any, row: Row, passed: bool, words: str) -> None:
        told = self.endpoints[endpoint.name]
        told.rows[row["_ROW"]] = row
        told.stages.setdefault(where, {}).setdefault(row["_ROW"], []).append((passed, words))

    def row(self, endpoint, rule, row, verdict):
        self._stage(endpoint, rule.index, row, verdict.selected, _verdict_words(verdict))

    def mode(self, endpoint, rule, row, kept, share, total):
        code = row["CODE1"]
        words = ("mode (CODE1 is empty)" if code is None else
                 f"mode: {code} is {share} of {total} events among codes {code[:-1]}x"
                 + ("" if kept else ", not above one half"))
        self._stage(endpoint, rule.index, row, kept, words)

    def when(self, endpoint, where, row, when):
        values = _values(when.read)
        words = (f"when {format_cond(endpoint.when)} " + ("holds" if when.holds else "is false")
                 + (f" ({values})" if values else ""))
        self._stage(endpoint, where.index if isinstance(where, RulePlan) else where, row, when.holds, words)

    def min_events(self, endpoint, rule, person, count, reached):
        self.endpoints[endpoint.name].after_when[rule.index] = (count, reached)

    def needs_other(self, endpoint, rule, person, others):
        self.endpoints[endpoint.name].others[rule.index] = others

    def included(self, endpoint, included, row, added):
        # a stage without words: the row is listed also where no `when` judged it
        self._stage(endpoint, included, row, True, "")
        self.endpoints[endpoint.name].added[(included, row["_ROW"])] = added

    def case_rules(self, endpoint, person, events, sex_allowed, require):
        self.endpoints[endpoint.name].case_rules = (events, sex_allowed, require)

    def case(self, endpoint, person, case):
        self.endpoints[endpoint.name].case = case

    def control_rules(self, endpoint, person, sex_allowed, cases_of, require, excluded):
        self.endpoints[endpoint.name].control_rules = (sex_allowed, cases_of, require, excluded)


def _verdict_words(verdict: Verdict) -> str:
    if verdict.stage == OPTION:
        test = verdict.failed
        value = verdict.row[test.column]
        return f"{_OPTION_NAMES[test.role]} ({test.column} is {'empty' if value is None else value})"
    if verdict.stage == EXCEPT:
        return "except " + "&".join(written for _, written in verdict.matched)
    if not verdict.selected:
        return "pattern did not match"
    matched = verdict.matched
    if len(matched) == 1:
        words = f"matched pattern {matched[0][1]}"
    elif matched:
        words = "matched patterns " + ", ".join(f"{column} {written}" for column, written in matched)
    else:
        words = "matched"
    options = [_OPTION_NAMES[t.role] for t in verdict.branch.tests if t.role in _OPTION_NAMES]
    return words + (f" ({', '.join(options)})" if options else "")


# -- the explanation ----------------------------------------------------------------------

class _Words:
    """Puts what the engine told into the explanation's steps."""

    def __init__(self, person: Row, positions: list[int]):
        self.person = person
        self.positions = positions  # the engine's row number -> position in the events table

    def explain(self, ep: EndpointPlan, told: _Told, explained: dict[str, Explanation]) -> Explanation:
        steps: list[Step] = []

        # Step 1: each rule's candidate events (patterns, except, main, with atc, mode), then `when`.
        for rule in ep.rules:
            notes = self._events(told, rule.index)
            title = f"step 1, rule {rule.index + 1} ({rule.source}): events of {', '.join(rule.source_rows)}"
            steps.append(Step(title=title, events=notes,
                              notes=() if notes else ("the person has no events of these sources",)))

        # Step 2: min per rule, then needs other judged on what the others kept after min.
        if ep.rules:
            steps.append(Step(title="step 2: min and needs other", notes=_step2(ep, told)))

        # Step 3: included endpoints' case events, filtered by this endpoint's `when`.
        for included in ep.includes:
            inner = explained[included]
            notes = self._events(told, included)
            if inner.status == "case":
                head = f"the person is a case of {included} with {_n_events(inner.nevt or 0)}; its events:"
            else:
                head = f"the person is not a case of {included} ({inner.status}): it adds no events"
            steps.append(Step(title=f"step 3, include {included}", events=notes, notes=(head,),
                              included=(inner,)))

        # Step 4: sex and require.
        events, sex_allowed, require = told.case_rules
        sex = self.person.get("SEX")
        step4 = [f"event set: {_n_events(events)}" if events else "event set: empty, so not a case"]
        if ep.sex is None:
            step4.append("sex: any")
        else:
            step4.append(f"sex {ep.sex} required: the person's sex is {sex if sex is not None else 'missing'}: "
                         + ("allowed" if sex_allowed else "not allowed"))
        if ep.require is not None:
            step4.append(f"require {format_cond(ep.require)}: {_values(require.read) or 'no values'}: "
                         + ("holds" if require.holds else "fails"))
        steps.append(Step(title="step 4: sex and require", notes=tuple(step4)))

        # Step 5 (cases) or step 6 (everyone else).
        if told.case is not None:
            case = told.case
            status, age, year, nevt = "case", case.age, case.year, case.nevt
            step = [f"case: AGE {_num(age)} (earliest event: row {self.positions[case.first['_ROW']]}), "
                    f"YEAR {_num(year)}, NEVT {nevt}"]
            if ep.control_exclude or ep.control_require is not None:
                step.append("control rules never touch cases")
            steps.append(Step(title="step 5: AGE, YEAR, NEVT", notes=tuple(step)))
        else:
            step6, excluded = _step6(ep, told)
            if excluded:
                status, age, year, nevt = "excluded", None, None, None
                step6.append("excluded: AGE, YEAR and NEVT are empty")
            else:
                status, age, year, nevt = "control", self.person.get("FU_END_AGE"), None, 0
                step6.append(f"control: AGE {_num(age)} (FU_END_AGE), NEVT 0")
            steps.append(Step(title="step 6: not a case: control rules", notes=tuple(step6)))

        return Explanation(person=self.person["FINNGENID"], endpoint=ep.name, status=status, age=age,
                           year=year, nevt=nevt, sex=sex, steps=tuple(steps))

    def _events(self, told: _Told, where: Any) -> tuple[EventNote, ...]:
        """The rows judged at `where` (a rule's index, an included name), earliest first: kept
        if every stage passed, else discarded by the first that did not."""
        stages = told.stages.get(where, {})
        notes = []
        for row_id in sorted(stages, key=lambda r: event_order(told.rows[r])):
            failed = [words for passed, words in stages[row_id] if not passed]
            if failed:
                kept, reason = False, f"discarded: {failed[0]}"
            elif not told.added.get((where, row_id), True):
                kept, reason = True, "kept (already in the set: counted once)"
            else:
                passed = [words for _, words in stages[row_id] if words]
                kept, reason = True, "kept" + (f": {'; '.join(passed)}" if passed else "")
            notes.append(self._note(told.rows[row_id], kept, reason))
        return tuple(notes)

    def _note(self, row: Row, kept: bool, reason: str) -> EventNote:
        codes = " ".join(f"{c}={row[c]}" for c in _SHOWN_COLUMNS if row.get(c) is not None)
        return EventNote(row=self.positions[row["_ROW"]], source=row["SOURCE"], age=row["EVENT_AGE"],
                         day=row["APPROX_EVENT_DAY"], codes=codes, kept=kept, reason=reason)


def _step2(ep: EndpointPlan, told: _Told) -> tuple[str, ...]:
    lines: list[str] = []
    for rule in ep.rules:
        label = f"rule {rule.index + 1} ({rule.source})"
        if rule.index not in told.after_when:  # the engine counts only people with events
            lines.append(f"{label}: no events")
            continue
        count, reached = told.after_when[rule.index]
        option = f"min {rule.min_events}"
        if rule.spacing is not None:  # `count` is what the spacing counts: picks, or dated events in a window
            option += f" {rule.spacing} {duration_text(rule.spacing_days)}"
        counted = {"apart": "dated events far enough apart", "within": "dated events in one window"}.get(
            rule.spacing, "")
        of = f"{count} of {rule.min_events}" + (f" {counted}" if counted else "")
        if not reached:
            dropped = f"its {_n_events(count)}" if rule.spacing is None else "all its events are"
            lines.append(f"{label}: {option} not reached ({of}): {dropped} dropped")
        elif rule.counted and (rule.min_events > 1 or rule.spacing is not None):
            lines.append(f"{label}: {option} reached ({of})")
        else:
            lines.append(f"{label}: {_n_events(count)} kept")
    for rule in ep.rules:
        if rule.index not in told.others:
            continue
        label = f"rule {rule.index + 1} ({rule.source})"
        others = told.others[rule.index]
        if others:
            names = ", ".join(f"rule {o.index + 1}" for o in others)
            lines.append(f"{label}: needs other: {names} kept events, so its events count")
        else:
            lines.append(f"{label}: needs other without another rule (no other rule kept an event): "
                         f"its {_n_events(told.after_when[rule.index][0])} dropped")
    return tuple(lines)


def _step6(ep: EndpointPlan, told: _Told) -> tuple[list[str], bool]:
    sex_allowed, cases_of, require, excluded = told.control_rules
    lines: list[str] = []
    if not sex_allowed:
        lines.append("sex not allowed: excluded")
    for other in ep.control_exclude:
        if other in cases_of:
            lines.append(f"controls exclude {other}: the person is a case of {other}: excluded")
        else:
            lines.append(f"controls exclude {other}: the person is not a case of {other}")
    if ep.control_require is not None:
        lines.append(f"controls require {format_cond(ep.control_require)}: "
                     f"{_values(require.read) or 'no values'}: " + ("holds" if require.holds else "fails: excluded"))
    return lines, excluded


# -- conditions in words ------------------------------------------------------------------

def _values(read: dict) -> str:
    """The values a condition read, e.g. `age = 30.0, year = missing` or `E4_DM1 = not a case`."""
    return ", ".join(f"{format_cond(node)} = {_shown(node, value)}" for node, value in read.items())


def _shown(node, value: Any) -> str:
    if isinstance(node, IsCase):
        return "case" if value else "not a case"
    if isinstance(node, (EventField, EndpointFact)):
        return _num(value)
    raise TypeError(f"{type(node).__name__} is not a value a condition reads")


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
        case FirstDate(endpoint=e):
            return f"{e}.date"
        case DateConst(value=v):
            return v.isoformat()
        case Duration(days=d):
            return duration_text(d)
        case Shift(date=d, sign=sign, by=b):
            return f"{format_cond(d)} {'+' if sign > 0 else '-'} {format_cond(b)}"
        case Between(later=a, earlier=b):
            return f"{format_cond(a)} - {format_cond(b)}"
        case Relation(subject=s, relation=r, anchor=a, window=w):
            subject = [] if isinstance(s, EventField) else [format_cond(s).removesuffix(".date")]
            words = ["within", duration_text(w.days), r.removeprefix("within_")] if w is not None else [r]
            return " ".join([*subject, *words, format_cond(a).removesuffix(".date")])
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
