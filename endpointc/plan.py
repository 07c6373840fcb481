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
from typing import Annotated, Iterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .source import Span

__all__ = [
    "CodeSet", "Written", "ColumnTest", "Branch", "RulePlan",
    "Const", "EventField", "EndpointFact", "IsCase", "Count", "FirstAge", "FirstYear", "Cmp", "AllOf",
    "AnyOf", "Negate", "Cond", "NUMBER", "TRUTH", "children", "walk", "cond_endpoints", "cond_fields",
    "EndpointPlan", "Program", "EVENT_FIELDS", "CODE_COLUMNS",
]

CODE_COLUMNS = ("CODE1", "CODE2", "CODE3", "ICDVER", "CATEGORY")
EVENT_FIELDS = ("age", "year", "emergency")


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

    @property
    def counted(self) -> bool:
        """Whether its events are counted per person (`min`, `needs other`, `mode`), so
        that a row alone does not decide whether it is kept."""
        return self.mode or self.min_events > 1 or self.needs_other


# -- conditions: `when` (event level) and `require`/controls (person level) ---------
#
# One small expression language. Every node knows its value type (a number or a truth
# value) and builds only when its operands have the types it needs, so a plan cannot hold
# `not B.count` or `A < B`; `EndpointPlan` further keeps event terms to `when` and
# endpoint terms to `require` and controls. `walk` is the one traversal every consumer
# uses; it is iterative, so deep nesting cannot exhaust the stack.

NUMBER = "number"
TRUTH = "truth value"


class Const(_Frozen):
    kind: Literal["const"] = "const"
    value: float

    @property
    def value_type(self) -> str:
        return NUMBER


class EventField(_Frozen):
    """An event field: age (EVENT_AGE), year (of APPROX_EVENT_DAY), emergency (a truth value)."""
    kind: Literal["field"] = "field"
    name: Literal["age", "year", "emergency"]

    @property
    def value_type(self) -> str:
        return TRUTH if self.name == "emergency" else NUMBER


class EndpointFact(_Frozen):
    """A fact about a person's status for another endpoint (the base of the four below)."""
    endpoint: str

    @property
    def value_type(self) -> str:
        return NUMBER


class IsCase(EndpointFact):
    kind: Literal["is_case"] = "is_case"

    @property
    def value_type(self) -> str:
        return TRUTH


class Count(EndpointFact):
    """Number of case events; 0 for a non-case."""
    kind: Literal["count"] = "count"


class FirstAge(EndpointFact):
    """Age at first case event; missing for a non-case."""
    kind: Literal["first_age"] = "first_age"


class FirstYear(EndpointFact):
    kind: Literal["first_year"] = "first_year"


def _expect(value_type: str, nodes, where: str) -> None:
    for node in nodes:
        if node.value_type != value_type:
            raise ValueError(f"{where} needs a {value_type}, not {type(node).__name__} (a {node.value_type})")


class Cmp(_Frozen):
    """A binary comparison of numbers; false where either side is missing."""
    kind: Literal["cmp"] = "cmp"
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    left: "Cond"
    right: "Cond"

    @model_validator(mode="after")
    def _numbers(self) -> "Cmp":
        _expect(NUMBER, (self.left, self.right), f"comparison {self.op}")
        return self

    @property
    def value_type(self) -> str:
        return TRUTH


class AllOf(_Frozen):
    kind: Literal["all"] = "all"
    args: tuple["Cond", ...]

    @model_validator(mode="after")
    def _truths(self) -> "AllOf":
        _expect(TRUTH, self.args, "and")
        return self

    @property
    def value_type(self) -> str:
        return TRUTH


class AnyOf(_Frozen):
    kind: Literal["any"] = "any"
    args: tuple["Cond", ...]

    @model_validator(mode="after")
    def _truths(self) -> "AnyOf":
        _expect(TRUTH, self.args, "or")
        return self

    @property
    def value_type(self) -> str:
        return TRUTH


class Negate(_Frozen):
    kind: Literal["not"] = "not"
    arg: "Cond"

    @model_validator(mode="after")
    def _truth(self) -> "Negate":
        _expect(TRUTH, (self.arg,), "not")
        return self

    @property
    def value_type(self) -> str:
        return TRUTH


Cond = Annotated[
    Union[Const, EventField, IsCase, Count, FirstAge, FirstYear, Cmp, AllOf, AnyOf, Negate],
    Field(discriminator="kind"),
]
for _model in (Cmp, AllOf, AnyOf, Negate):
    _model.model_rebuild()

_CHILDREN = {
    Const: lambda c: (), EventField: lambda c: (), IsCase: lambda c: (), Count: lambda c: (),
    FirstAge: lambda c: (), FirstYear: lambda c: (),
    Cmp: lambda c: (c.left, c.right), AllOf: lambda c: c.args, AnyOf: lambda c: c.args,
    Negate: lambda c: (c.arg,),
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
        for where, cond in (("when", self.when), ("require", self.require),
                            ("controls require", self.control_require)):
            if cond is None:
                continue
            _expect(TRUTH, (cond,), f"{self.name}: {where}")
            wrong = EndpointFact if where == "when" else EventField
            for node in walk(cond):
                if isinstance(node, wrong):
                    raise ValueError(f"{self.name}: {where} cannot read {type(node).__name__}")
        return self

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Every endpoint it reads: includes, and names in `when`, `require` and controls."""
        return tuple(dict.fromkeys((
            *self.includes, *cond_endpoints(self.when), *cond_endpoints(self.require),
            *self.control_exclude, *cond_endpoints(self.control_require))))

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
