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
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .source import Span

__all__ = [
    "CodeSet", "ColumnTest", "Branch", "RulePlan",
    "Const", "Field_", "IsCase", "Count", "FirstAge", "FirstYear", "Cmp", "AllOf", "AnyOf", "Negate",
    "Cond", "EndpointPlan", "Program", "EVENT_FIELDS", "CODE_COLUMNS",
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


class ColumnTest(_Frozen):
    """The event's `column` is in `codes`."""

    column: Literal["CODE1", "CODE2", "CODE3", "ICDVER", "CATEGORY"]
    codes: CodeSet


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
    branches: tuple[Branch, ...]
    min_events: int = Field(1, ge=1)
    needs_other: bool = False
    # FinnGen `%`: keep an event only where its CODE1 is the person's most frequent code
    # among the codes (of this rule's sources) sharing all but the last character, with a
    # share above 0.5 of those events.
    mode: bool = False
    span: Span | None = None


# -- conditions: `when` (event level) and `require`/controls (person level) ---------

class Const(_Frozen):
    kind: Literal["const"] = "const"
    value: float


class Field_(_Frozen):
    """An event field: age (EVENT_AGE), year (of APPROX_EVENT_DAY), emergency (bool)."""
    kind: Literal["field"] = "field"
    name: Literal["age", "year", "emergency"]


class IsCase(_Frozen):
    kind: Literal["is_case"] = "is_case"
    endpoint: str


class Count(_Frozen):
    """Number of case events; 0 for a non-case."""
    kind: Literal["count"] = "count"
    endpoint: str


class FirstAge(_Frozen):
    """Age at first case event; missing for a non-case."""
    kind: Literal["first_age"] = "first_age"
    endpoint: str


class FirstYear(_Frozen):
    kind: Literal["first_year"] = "first_year"
    endpoint: str


class Cmp(_Frozen):
    """A binary comparison; false where either side is missing."""
    kind: Literal["cmp"] = "cmp"
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    left: "Cond"
    right: "Cond"


class AllOf(_Frozen):
    kind: Literal["all"] = "all"
    args: tuple["Cond", ...]


class AnyOf(_Frozen):
    kind: Literal["any"] = "any"
    args: tuple["Cond", ...]


class Negate(_Frozen):
    kind: Literal["not"] = "not"
    arg: "Cond"


Cond = Annotated[
    Union[Const, Field_, IsCase, Count, FirstAge, FirstYear, Cmp, AllOf, AnyOf, Negate],
    Field(discriminator="kind"),
]
for _model in (Cmp, AllOf, AnyOf, Negate):
    _model.model_rebuild()


def cond_endpoints(cond: Cond | None) -> tuple[str, ...]:
    """Endpoint names a condition reads, in first-seen order."""
    found: list[str] = []

    def walk(c):
        if c is None:
            return
        if isinstance(c, (IsCase, Count, FirstAge, FirstYear)):
            if c.endpoint not in found:
                found.append(c.endpoint)
        elif isinstance(c, Cmp):
            walk(c.left), walk(c.right)
        elif isinstance(c, (AllOf, AnyOf)):
            for a in c.args:
                walk(a)
        elif isinstance(c, Negate):
            walk(c.arg)

    walk(cond)
    return tuple(found)


def cond_fields(cond: Cond | None) -> tuple[str, ...]:
    found: list[str] = []

    def walk(c):
        if isinstance(c, Field_) and c.name not in found:
            found.append(c.name)
        elif isinstance(c, Cmp):
            walk(c.left), walk(c.right)
        elif isinstance(c, (AllOf, AnyOf)):
            for a in c.args:
                walk(a)
        elif isinstance(c, Negate):
            walk(c.arg)

    walk(cond)
    return tuple(found)


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

    @property
    def dependencies(self) -> tuple[str, ...]:
        deps = list(self.includes)
        for name in (*cond_endpoints(self.require), *self.control_exclude,
                     *cond_endpoints(self.control_require)):
            if name not in deps:
                deps.append(name)
        return tuple(deps)

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
