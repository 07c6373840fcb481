"""The plan: what each endpoint means, with nothing of how it was written.

Lowered from the checked AST by `lower`; read by both engines (`engine.polars`,
`engine.reference`), by the synthetic generator and by `explain`. Frozen and
self-validating: a plan that exists is a plan the engines can run.

Everything about registries is resolved here: a rule is a union of `Branch`es, each a
set of SOURCE values and a conjunction of column tests on one event row. Code patterns
keep their structure (prefixes, exact codes, regexes) so an engine can match prefixes by
join instead of running thousands of regexes.
"""

from __future__ import annotations

import re
import datetime as dt
from typing import Annotated, ClassVar, Iterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .source import Span

__all__ = [
    "CodeSet", "Written", "ColumnTest", "Branch", "RulePlan",
    "Const", "DateConst", "Duration", "EventField", "EndpointFact", "IsCase", "Count", "FirstAge", "FirstYear",
    "FirstDate", "Shift", "Between", "Cmp", "AllOf", "AnyOf", "Negate", "Relation", "Cond",
    "NUMBER", "TRUTH", "DATE", "DURATION", "children", "walk", "cond_endpoints", "cond_fields",
    "EndpointPlan", "Program", "EVENT_FIELDS", "CODE_COLUMNS",
]

CODE_COLUMNS = ("CODE1", "CODE2", "CODE3", "ICDVER", "CATEGORY")
EVENT_FIELDS = ("age", "year", "emergency", "date")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodeSet(_Frozen):
    """A union of code descriptions. A missing (null) value is in no CodeSet.

    `prefixes=("",)` is every code (`any`); an empty CodeSet is no code (`none`).
    Regexes are matched from the code's start (Python `re.match` semantics).
    """

    prefixes: tuple[str, ...] = ()
    exact: tuple[str, ...] = ()
    regexes: tuple[str, ...] = ()

    @field_validator("regexes")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            re.compile(pattern)
        return value

    @property
    def is_empty(self) -> bool:
        return not (self.prefixes or self.exact or self.regexes)

    def matches(self, code: str | None) -> bool:
        """The meaning, written plainly; the reference engine calls this row by row."""
        if code is None:
            return False
        return (
            any(code.startswith(p) for p in self.prefixes)
            or code in self.exact
            or any(re.match(r, code) for r in self.regexes)
        )


class Written(_Frozen):
    """One pattern as the author wrote it (`I2[12]`, `E10-E14`, `=E119`, `any`), with its
    own codes: for showing which pattern selected a row, never for matching."""

    text: str
    codes: CodeSet


class ColumnTest(_Frozen):
    """The event's `column` is in `codes`; `role` says what the test is for.

    - `pattern`: the author's codes (`written` lists them, each with its codes, so that
      tools can say which one a value matched);
    - `pin`: keeps a vocabulary to its rows (ICDVER 10 for icd10, a CATEGORY prefix);
    - `main`: the rule's `main` option (CATEGORY of a main diagnosis);
    - `with_atc`: the rule's `with atc` option (CODE3 filled).
    """

    column: Literal["CODE1", "CODE2", "CODE3", "ICDVER", "CATEGORY"]
    codes: CodeSet
    role: Literal["pattern", "pin", "main", "with_atc"] = "pattern"
    written: tuple[Written, ...] = ()

    def written_match(self, value: str) -> str | None:
        """The first written pattern that `value` matches."""
        return next((w.text for w in self.written if w.codes.matches(value)), None)


class Branch(_Frozen):
    """One way a rule selects an event row: SOURCE in `sources`, every test holds, and
    no conjunction of `excepts` holds."""

    sources: tuple[str, ...]
    tests: tuple[ColumnTest, ...]
    excepts: tuple[tuple[ColumnTest, ...], ...] = ()


class RulePlan(_Frozen):
    """A rule: the union of its branches, then its per-person options."""

    index: int  # position among the endpoint's rules, for explain/attrition
    source: str  # the language's source word, e.g. "hospital"
    # the SOURCE values of the rows it reads, also when no branch is left (as for `none`);
    # by default those of its branches
    source_rows: tuple[str, ...]
    branches: tuple[Branch, ...]
    min_events: int = Field(1, ge=1)
    # `min N apart D` / `min N within D`: the N events must be spaced (each picked one at
    # least D after the previous pick) or clustered (N in some window [day, day + D]);
    # only dated events count. D in days.
    spacing: Literal["apart", "within"] | None = None
    spacing_days: float | None = Field(None, gt=0)
    needs_other: bool = False
    # FinnGen `%`: keep an event only where its CODE1 is the person's most frequent code
    # among the codes (of this rule's sources) sharing all but the last character, with a
    # share above 0.5 of those events.
    mode: bool = False
    span: Span | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_rows(cls, data):
        if isinstance(data, dict) and "source_rows" not in data:
            rows = [s for b in data.get("branches", ()) for s in (b.sources if isinstance(b, Branch) else b["sources"])]
            data = {**data, "source_rows": tuple(dict.fromkeys(rows))}
        return data

    @model_validator(mode="after")
    def _rows_cover_branches(self) -> "RulePlan":
        outside = {s for b in self.branches for s in b.sources} - set(self.source_rows)
        if outside:
            raise ValueError(f"rule {self.index + 1} has branches on rows it does not read: {sorted(outside)}")
        return self

    @model_validator(mode="after")
    def _spacing_has_days(self) -> "RulePlan":
        if (self.spacing is None) != (self.spacing_days is None):
            raise ValueError(f"rule {self.index + 1}: a spaced or clustered `min` needs both its kind and its days")
        return self

    @property
    def counted(self) -> bool:
        """Whether its events are counted per person (`min`, spacing, `needs other`,
        `mode`), so that a row alone does not decide whether it is kept."""
        return self.mode or self.min_events > 1 or self.needs_other or self.spacing is not None


# -- conditions: `when` (event level) and `require`/controls (person level) ---------
#
# One small expression language. Every node knows its value type (a number, a truth
# value, a date or a duration) and builds only when its operands have the types it needs,
# so a plan cannot hold `not B.count`, `A < B` or `A.age + 1 year`; `EndpointPlan` further
# keeps event terms to `when` and endpoint facts out of its own `when` and controls.
# `walk` is the one traversal every consumer uses; it is iterative, so deep nesting cannot
# exhaust the stack.
#
# Dates are day numbers and durations are days (1 year = 365.25, 1 month = 30.4375), so
# that windows are exact on dates: `date <= X.date + 1 year` is "at most 365.25 days
# after", never a rounding of ages.

NUMBER = "number"
TRUTH = "truth value"
DATE = "date"
DURATION = "duration"


class Const(_Frozen):
    kind: Literal["const"] = "const"
    value: float

    value_type: ClassVar[str] = NUMBER


class DateConst(_Frozen):
    """A calendar date (`1998-01-01`)."""
    kind: Literal["date"] = "date"
    value: dt.date

    value_type: ClassVar[str] = DATE


class Duration(_Frozen):
    """A length of time in days (`30 days`, `1 year` = 365.25)."""
    kind: Literal["duration"] = "duration"
    days: float = Field(ge=0)

    value_type: ClassVar[str] = DURATION


_FIELD_TYPES = {"age": NUMBER, "year": NUMBER, "emergency": TRUTH, "date": DATE}


class EventField(_Frozen):
    """An event field: age (EVENT_AGE), year (of APPROX_EVENT_DAY), emergency (a truth
    value), date (APPROX_EVENT_DAY)."""
    kind: Literal["field"] = "field"
    name: Literal["age", "year", "emergency", "date"]

    @property
    def value_type(self) -> str:
        return _FIELD_TYPES[self.name]


class EndpointFact(_Frozen):
    """A fact about a person's status for another endpoint (the base of the four below)."""
    endpoint: str

    value_type: ClassVar[str] = NUMBER


class IsCase(EndpointFact):
    kind: Literal["is_case"] = "is_case"

    value_type: ClassVar[str] = TRUTH


class Count(EndpointFact):
    """Number of case events; 0 for a non-case."""
    kind: Literal["count"] = "count"


class FirstAge(EndpointFact):
    """Age at first case event; missing for a non-case."""
    kind: Literal["first_age"] = "first_age"


class FirstYear(EndpointFact):
    kind: Literal["first_year"] = "first_year"


class FirstDate(EndpointFact):
    """APPROX_EVENT_DAY of the first case event (the one that gives AGE); missing for a
    non-case or an undated first event."""
    kind: Literal["first_date"] = "first_date"

    value_type: ClassVar[str] = DATE


def _expect(value_type: str, nodes, where: str) -> None:
    for node in nodes:
        if node.value_type != value_type:
            raise ValueError(f"{where} needs a {value_type}, not {type(node).__name__} (a {node.value_type})")


class Shift(_Frozen):
    """A date moved by a duration: `date + by` (sign 1) or `date - by` (sign -1)."""
    kind: Literal["shift"] = "shift"
    date: "Cond"
    sign: Literal[1, -1]
    by: "Cond"

    @model_validator(mode="after")
    def _date_and_duration(self) -> "Shift":
        _expect(DATE, (self.date,), "a date shifted by a duration")
        _expect(DURATION, (self.by,), "a date shifted by a duration")
        return self

    value_type: ClassVar[str] = DATE


class Between(_Frozen):
    """`later - earlier`: the whole days from one date to another (negative when `later`
    is earlier)."""
    kind: Literal["between"] = "between"
    later: "Cond"
    earlier: "Cond"

    @model_validator(mode="after")
    def _dates(self) -> "Between":
        _expect(DATE, (self.later, self.earlier), "a date minus a date")
        return self

    value_type: ClassVar[str] = DURATION


class Cmp(_Frozen):
    """A binary comparison of two numbers, two dates or two durations; false where either
    side is missing."""
    kind: Literal["cmp"] = "cmp"
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    left: "Cond"
    right: "Cond"

    @model_validator(mode="after")
    def _same_kind(self) -> "Cmp":
        if self.left.value_type not in (NUMBER, DATE, DURATION):
            _expect(NUMBER, (self.left,), f"comparison {self.op}")
        _expect(self.left.value_type, (self.right,), f"comparison {self.op} of a {self.left.value_type}")
        return self

    value_type: ClassVar[str] = TRUTH


class _Junction(_Frozen):
    """`and` / `or` of truth values."""
    args: tuple["Cond", ...]
    value_type: ClassVar[str] = TRUTH

    @model_validator(mode="after")
    def _truths(self):
        _expect(TRUTH, self.args, "and" if isinstance(self, AllOf) else "or")
        return self


class AllOf(_Junction):
    kind: Literal["all"] = "all"


class AnyOf(_Junction):
    kind: Literal["any"] = "any"


class Negate(_Frozen):
    kind: Literal["not"] = "not"
    arg: "Cond"

    @model_validator(mode="after")
    def _truth(self) -> "Negate":
        _expect(TRUTH, (self.arg,), "not")
        return self

    value_type: ClassVar[str] = TRUTH


class Relation(_Frozen):
    """`subject within D after anchor` and its kin, as written; `meaning` says what it
    means in comparisons of dates, and that is what engines evaluate:

    - `within D after`: anchor <= subject <= anchor + D
    - `within D before`: anchor - D <= subject <= anchor
    - `after`: subject > anchor; `before`: subject < anchor
    """
    kind: Literal["relation"] = "relation"
    subject: "Cond"
    relation: Literal["within_after", "within_before", "after", "before"]
    anchor: "Cond"
    window: Duration | None = None

    @model_validator(mode="after")
    def _dates(self) -> "Relation":
        _expect(DATE, (self.subject, self.anchor), "a time relation")
        if (self.window is None) == self.relation.startswith("within"):
            raise ValueError(f"`{self.relation}` {'needs' if self.window is None else 'takes no'} window")
        return self

    value_type: ClassVar[str] = TRUTH

    @property
    def meaning(self) -> "Cond":
        subject, anchor, window = self.subject, self.anchor, self.window
        if self.relation == "after":
            return Cmp(op=">", left=subject, right=anchor)
        if self.relation == "before":
            return Cmp(op="<", left=subject, right=anchor)
        if self.relation == "within_after":
            low, high = anchor, Shift(date=anchor, sign=1, by=window)
        else:
            low, high = Shift(date=anchor, sign=-1, by=window), anchor
        return AllOf(args=(Cmp(op="<=", left=low, right=subject), Cmp(op="<=", left=subject, right=high)))


Cond = Annotated[
    Union[Const, DateConst, Duration, EventField, IsCase, Count, FirstAge, FirstYear, FirstDate, Shift, Between,
          Cmp, AllOf, AnyOf, Negate, Relation],
    Field(discriminator="kind"),
]
for _model in (Shift, Between, Cmp, AllOf, AnyOf, Negate, Relation):
    _model.model_rebuild()

_CHILDREN = {
    Const: lambda c: (), DateConst: lambda c: (), Duration: lambda c: (), EventField: lambda c: (),
    IsCase: lambda c: (), Count: lambda c: (), FirstAge: lambda c: (), FirstYear: lambda c: (),
    FirstDate: lambda c: (),
    Shift: lambda c: (c.date, c.by), Between: lambda c: (c.later, c.earlier),
    Cmp: lambda c: (c.left, c.right), AllOf: lambda c: c.args, AnyOf: lambda c: c.args,
    Negate: lambda c: (c.arg,), Relation: lambda c: (c.subject, c.anchor) + ((c.window,) if c.window else ()),
}


def children(cond: Cond) -> tuple[Cond, ...]:
    """A condition node's operands, in reading order."""
    try:
        return _CHILDREN[type(cond)](cond)
    except KeyError:
        raise TypeError(f"{type(cond).__name__} is not a condition node") from None


def walk(cond: Cond | None) -> Iterator[Cond]:
    """Every node of a condition, parents before their operands, in reading order."""
    stack = [] if cond is None else [cond]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def cond_endpoints(cond: Cond | None) -> tuple[str, ...]:
    """Endpoint names a condition reads, in first-seen order."""
    return tuple(dict.fromkeys(n.endpoint for n in walk(cond) if isinstance(n, EndpointFact)))


def cond_fields(cond: Cond | None) -> tuple[str, ...]:
    """Event fields a condition reads, in first-seen order."""
    return tuple(dict.fromkeys(n.name for n in walk(cond) if isinstance(n, EventField)))


class EndpointPlan(_Frozen):
    name: str
    rules: tuple[RulePlan, ...] = ()
    includes: tuple[str, ...] = ()
    when: Cond | None = None  # filters own and included events
    require: Cond | None = None  # every case must satisfy it
    sex: Literal["female", "male"] | None = None  # None: any
    control_exclude: tuple[str, ...] = ()
    control_require: Cond | None = None
    span: Span | None = None

    @model_validator(mode="after")
    def _conditions(self) -> "EndpointPlan":
        # Event fields exist only for `when`; the endpoint's own facts only in `require`
        # (those of its candidate events), anywhere else they would be a cycle.
        for where, cond in (("when", self.when), ("require", self.require),
                            ("controls require", self.control_require)):
            if cond is None:
                continue
            _expect(TRUTH, (cond,), f"{self.name}: {where}")
            for node in walk(cond):
                if isinstance(node, EventField) and where != "when":
                    raise ValueError(f"{self.name}: {where} cannot read the event field {node.name}")
                if isinstance(node, EndpointFact) and node.endpoint == self.name and where != "require":
                    raise ValueError(f"{self.name}: {where} cannot read the endpoint itself")
        return self

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Every other endpoint it reads: includes, and names in `when`, `require` and
        controls (its own name in `require` reads its candidate events, no dependency)."""
        names = (*self.includes, *cond_endpoints(self.when), *cond_endpoints(self.require),
                 *self.control_exclude, *cond_endpoints(self.control_require))
        return tuple(dict.fromkeys(n for n in names if n != self.name))

    @property
    def counted(self) -> bool:
        """Whether some rule of it is counted per person (see `RulePlan.counted`)."""
        return any(rule.counted for rule in self.rules)

    @property
    def uses_emergency(self) -> bool:
        return "emergency" in cond_fields(self.when)


class Program(_Frozen):
    """Endpoints in dependency order: each one's dependencies come before it."""

    endpoints: tuple[EndpointPlan, ...]

    @model_validator(mode="after")
    def _ordered(self) -> "Program":
        seen: set[str] = set()
        for ep in self.endpoints:
            if ep.name in seen:
                raise ValueError(f"endpoint {ep.name} appears twice in the plan")
            missing = [d for d in ep.dependencies if d not in seen]
            if missing:
                raise ValueError(f"endpoint {ep.name} comes before its dependencies {missing}")
            seen.add(ep.name)
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(ep.name for ep in self.endpoints)

    def get(self, name: str) -> EndpointPlan:
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        raise KeyError(name)

    def subset(self, names) -> "Program":
        """The named endpoints and everything they depend on, still in order."""
        by_name = {ep.name: ep for ep in self.endpoints}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise KeyError(f"unknown endpoint(s): {', '.join(unknown)}")
        wanted: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack.extend(by_name[name].dependencies)
        return Program(endpoints=tuple(ep for ep in self.endpoints if ep.name in wanted))
