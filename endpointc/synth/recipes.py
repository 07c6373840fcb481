"""Recipes: what the generator must produce so that an endpoint gets cases.

The generator never reads definitions itself. A recipe is the small, engine-independent
summary of one endpoint that case generation needs: for each rule, the shapes of registry
row that it selects (SOURCE, ICD version, anchored regexes per CODE column, CATEGORY), how
many such rows a case needs and how they are spaced in time, and the endpoint's filters
(sex, age, year and calendar-day windows, emergency, and where its events lie relative to
another endpoint's first event). `case_recipes(program)` turns compiled definitions into
recipes; tests and benchmarks may also write recipes by hand.

How the language's rules map (docs/language.md, rules and sources):

| rule | Alternative |
|---|---|
| `hospital icd10 P` | sources=("INPAT","OUTPAT"), icdver="10", code1=P; `main` adds category="0" |
| `death icd9 P` | sources=("DEATH",), icdver="9", code1=P; `main` adds category="U" |
| `primary icpc2 P` | sources=("PRIM_OUT",), category="ICP", code1=P |
| `operation nomesco P` | sources=("OPER_IN","OPER_OUT"), category="NOM", code1=P |
| `reimbursement kela K icd10 P` | sources=("REIMB",), code1=K, code2=P, icdver="10" |
| `purchase atc P vnr V` | sources=("PURCH",), code1=P, code3=V; min_events=3 by default |
| `cancer topography T behaviour B` | sources=("CANC",), code1=T, code3=B |
| `except Q` | exclude=(("CODE1", Q),) on the same alternative |
| `with atc` | code3="." (any ATC filled in) |

All regexes are matched with `re.match` (anchored at the code's start, like the language's
patterns); `=E119` becomes `E119$`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Alternative", "Rule", "Relative", "Recipe", "case_recipes", "as_recipes"]

_COLUMNS = ("CODE1", "CODE2", "CODE3")
_KNOWN_SOURCES = ("INPAT", "OUTPAT", "PRIM_OUT", "DEATH", "OPER_IN", "OPER_OUT", "REIMB", "PURCH", "CANC")


@dataclass(frozen=True)
class Alternative:
    """One shape of registry row that a rule selects."""

    sources: tuple[str, ...]
    icdver: str | None = None
    code1: str | None = None
    code2: str | None = None
    code3: str | None = None
    category: str | None = None
    # (column, regex) pairs: rows whose column matches are discarded by the rule.
    exclude: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("an Alternative needs at least one SOURCE")
        bad = [s for s in self.sources if s not in _KNOWN_SOURCES]
        if bad:
            raise ValueError(f"unknown SOURCE {bad[0]!r}; expected one of {', '.join(_KNOWN_SOURCES)}")
        for col, _ in self.exclude:
            if col not in _COLUMNS:
                raise ValueError(f"exclude column must be one of {_COLUMNS}, got {col!r}")

    def constraint(self, column: str) -> str | None:
        return {"CODE1": self.code1, "CODE2": self.code2, "CODE3": self.code3}[column]


@dataclass(frozen=True)
class Rule:
    """A rule: any of its alternatives selects an event; `min_events` of them make it count."""

    alternatives: tuple[Alternative, ...]
    min_events: int = 1
    needs_other: bool = False
    # `min N apart D` / `min N within D` (D in days), as in the plan's RulePlan.
    spacing: str | None = None
    spacing_days: float | None = None

    def __post_init__(self) -> None:
        if self.min_events < 1:
            raise ValueError(f"min_events must be >= 1, got {self.min_events}")
        if self.spacing not in (None, "apart", "within"):
            raise ValueError(f"spacing must be 'apart', 'within' or None, got {self.spacing!r}")
        if (self.spacing is None) != (self.spacing_days is None) or (self.spacing_days or 1) <= 0:
            raise ValueError("a spaced rule needs both its spacing and a positive number of days")


@dataclass(frozen=True)
class Relative:
    """Events placed relative to the first event of the case events of `anchor`: each event
    of `subject` (None: the endpoint's own) falls `lo` to `hi` whole days (inclusive, None
    unbounded) after that first day; `-30, 0` is "within 30 days before"."""

    anchor: str
    lo: int | None = None
    hi: int | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ValueError(f"an empty window relative to {self.anchor}: {self.lo} to {self.hi} days")
        if self.subject == self.anchor:
            raise ValueError(f"{self.anchor} cannot be placed relative to itself")


@dataclass(frozen=True)
class Recipe:
    """Everything the generator needs to give one endpoint cases."""

    endpoint: str
    rules: tuple[Rule, ...]
    sex: str | None = None                      # "female" | "male" | None (any)
    age: tuple[float | None, float | None] = (None, None)  # inclusive EVENT_AGE window
    year: tuple[int | None, int | None] = (None, None)     # inclusive calendar years
    dates: tuple[dt.date | None, dt.date | None] = (None, None)  # inclusive calendar days
    emergency: bool = False                     # the visit must be urgent (CODE9 = 1)
    prevalence: float | None = None             # overrides generate()'s prevalence
    # Endpoints a case must also be a case of (`require X`): their events are added too.
    also: tuple[str, ...] = ()
    relative: Relative | None = None

    def __post_init__(self) -> None:
        if self.sex not in (None, "female", "male"):
            raise ValueError(f"sex must be 'female', 'male' or None, got {self.sex!r}")
        if self.prevalence is not None and not 0 <= self.prevalence <= 1:
            raise ValueError(f"prevalence must be within [0, 1], got {self.prevalence}")
        if self.relative is not None and self.endpoint in (self.relative.anchor, self.relative.subject):
            raise ValueError(f"{self.endpoint} is placed relative to itself; its own events are subject None")


def as_recipes(definitions: Any) -> tuple[Recipe, ...]:
    """Recipes from whatever `generate(definitions=...)` was given: None, a Recipe or a
    list of them, a compiled Program, or definition file/folder paths (compiled here;
    compile errors raise endpointc.diagnostics.DiagnosticError)."""
    if definitions is None:
        return ()
    if isinstance(definitions, Recipe):
        return (definitions,)
    if isinstance(definitions, (str, os.PathLike)):
        definitions = [definitions]
    if isinstance(definitions, (list, tuple)):
        if all(isinstance(r, Recipe) for r in definitions):
            return tuple(definitions)
        if definitions and all(isinstance(d, (str, os.PathLike)) for d in definitions):
            from ..compiler import compile_program
            return tuple(case_recipes(compile_program(list(definitions))))
    return tuple(case_recipes(definitions))


def case_recipes(program: Any) -> list[Recipe]:
    """Recipes for every endpoint of a compiled `endpointc.plan.Program`.

    What a recipe cannot say is approximated on the generous side, so that endpoints still
    get cases: of `when`, only the terms of its top-level conjunction are followed
    (comparisons of age/year with numbers, `emergency`, `date` with calendar dates, and one
    relation of its events to another endpoint's first date); of `require`, endpoints that
    must be cases become `also` (their events are generated for the same people), one
    relation between first dates of its top-level conjunction is followed, and negations
    are ignored (at a low prevalence overlaps are rare); an endpoint made only of
    `include`s takes the rules of the endpoints it includes, inside its own windows.
    """
    from .. import plan as P  # imported here: the generator works without the compiler

    if not isinstance(program, P.Program):
        raise TypeError(f"case_recipes needs an endpointc.plan.Program, got {type(program).__name__}")
    done: dict[str, Recipe] = {}
    for ep in program.endpoints:
        rules = tuple(r for r in (_rule(rp) for rp in ep.rules) if r is not None)
        age, year, emergency = _windows(ep.when, P)
        dates, relative = _timing(ep, P)
        also = _positive_endpoints(ep.require, P) + _positive_endpoints(ep.when, P)
        sex = ep.sex
        if not rules and ep.includes:
            inherited = [done[name] for name in ep.includes if name in done and done[name].rules]
            rules = tuple(r for inc in inherited for r in inc.rules)
            for inc in inherited[:1]:
                age = _intersect(age, inc.age)
                year = _intersect(year, inc.year)
                dates = _intersect(dates, inc.dates)
                emergency = emergency or inc.emergency
                sex = sex or inc.sex
                also = also + inc.also
                relative = relative or inc.relative
        if relative is not None:
            also = also + tuple(n for n in (relative.anchor, relative.subject) if n is not None)
        done[ep.name] = Recipe(endpoint=ep.name, rules=rules, sex=sex, age=age, year=year, dates=dates,
                               emergency=emergency, also=tuple(a for a in dict.fromkeys(also) if a != ep.name),
                               relative=relative)
    return list(done.values())


def _intersect(a, b):
    lo = max((x for x in (a[0], b[0]) if x is not None), default=None)
    hi = min((x for x in (a[1], b[1]) if x is not None), default=None)
    return (lo, hi)


def _codeset_regex(cs) -> str | None:
    """An anchored regex (re.match) for a plan CodeSet; None when it matches nothing."""
    if "" in cs.prefixes:
        return ""
    parts = ([re.escape(p) for p in cs.prefixes] + [re.escape(e) + "$" for e in cs.exact]
             + [f"(?:{r})" for r in cs.regexes])
    return "|".join(parts) if parts else None


def _conjunction(regexes: list[str]) -> str:
    """All regexes must match at the code's start: lookaheads for all but the first."""
    if len(regexes) == 1:
        return regexes[0]
    first, rest = regexes[0], regexes[1:]
    return "".join(f"(?=(?:{r}))" for r in rest) + f"(?:{first})"


def _branch_alternatives(branch) -> list[Alternative]:
    by_col: dict[str, list[str]] = {}
    for test in branch.tests:
        rx = _codeset_regex(test.codes)
        if rx is None:
            return []          # `none`: this branch selects nothing
        by_col.setdefault(test.column, []).append(rx)
    exclude: list[tuple[str, str]] = []
    for conj in branch.excepts:
        # A multi-column except (I21&I10) is excluded column by column: stricter than the
        # rule, so sampled case codes never fall under it.
        for test in conj:
            rx = _codeset_regex(test.codes)
            if test.column in _COLUMNS and rx is not None:
                exclude.append((test.column, rx))
    cols = {c: (_conjunction(v) if v else None) for c, v in by_col.items()}
    versions: list[str | None] = [None]
    if "ICDVER" in cols:
        versions = [v for v in ("10", "9", "8") if re.match(cols["ICDVER"], v) and
                    all(re.match(r, v) for r in by_col["ICDVER"])]
        if not versions:
            return []
    return [Alternative(sources=tuple(branch.sources), icdver=v, code1=cols.get("CODE1"),
                        code2=cols.get("CODE2"), code3=cols.get("CODE3"), category=cols.get("CATEGORY"),
                        exclude=tuple(exclude)) for v in versions]


def _rule(rp) -> Rule | None:
    alts = tuple(a for b in rp.branches for a in _branch_alternatives(b))
    if not alts:
        return None
    return Rule(alternatives=alts, min_events=rp.min_events, needs_other=rp.needs_other,
                spacing=rp.spacing, spacing_days=rp.spacing_days)


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _windows(cond, P):
    """(age window, year window, emergency) implied by a `when` condition, where it can say."""
    age: list[float | None] = [None, None]
    year: list[int | None] = [None, None]
    emergency = False

    def bound(name, op, value):
        nonlocal emergency
        if name == "emergency":
            emergency = emergency or (op in ("==", ">=") and value >= 1) or (op in ("!=", ">") and value == 0)
            return
        target = age if name == "age" else year
        if name == "year":
            # Whole calendar years: `year < 2000` is at most 1999.
            value = int(value) + (1 if op == ">" else -1 if op == "<" else 0)
        if op in (">", ">="):
            target[0] = value if target[0] is None else max(target[0], value)
        elif op in ("<", "<="):
            target[1] = value if target[1] is None else min(target[1], value)
        elif op == "==":
            target[0] = target[1] = value

    def walk(c):
        if isinstance(c, P.AllOf):
            for a in c.args:
                walk(a)
        elif isinstance(c, P.EventField) and c.name == "emergency":
            bound("emergency", "==", 1)
        elif isinstance(c, P.Cmp):
            left, right, op = c.left, c.right, c.op
            if isinstance(left, P.Const) and isinstance(right, P.EventField):
                left, right, op = right, left, _FLIP[op]
            if isinstance(left, P.EventField) and isinstance(right, P.Const):
                bound(left.name, op, right.value)

    if cond is not None:
        walk(cond)
    return (age[0], age[1]), (year[0], year[1]), emergency


_OWN = ""  # in a linear form of dates: the endpoint's own events (key of no endpoint name)
_CONST = None
_UNBOUNDED = (None, None)


def _timing(ep, P) -> tuple[tuple[dt.date | None, dt.date | None], Relative | None]:
    """The calendar-day window of an endpoint's own events and the relation that places
    them (or another endpoint's) after or before an anchor endpoint's first event, as
    implied by the comparisons of dates in the top-level conjunctions of `when` and
    `require`.

    Only a conjunction can be targeted: under `or` or `not` a relation may hold or fail in
    other ways, so it is left alone and the generator places those events as it always
    did. Of several relations, those between the first pair of endpoints found are
    followed (a person's events can be placed against one anchor at a time)."""
    days = list(_UNBOUNDED)
    pairs: dict[tuple[str, str], list[int | None]] = {}
    for cond in (ep.when, ep.require):
        for term in _conjuncts(cond, P):
            if not isinstance(term, P.Cmp) or term.left.value_type not in (P.DATE, P.DURATION):
                continue
            left, right = _linear(term.left, ep.name, P), _linear(term.right, ep.name, P)
            if left is None or right is None:
                continue
            # the comparison as `form + const op 0`
            form = {k: v for k in {**left, **right} if (v := left.get(k, 0) - right.get(k, 0)) and k is not _CONST}
            const, op = left.get(_CONST, 0) - right.get(_CONST, 0), term.op
            if sorted(form.values()) not in ([1], [-1], [-1, 1]):
                continue
            # The subject gets coefficient +1: own events where they appear, else an included
            # endpoint (own events become its events too), else the first one seen.
            seen = next((pair[0] for pair in pairs if set(pair) == set(form)), None)
            included = [k for k in form if k in ep.includes]
            subject = (_OWN if _OWN in form else seen if seen is not None
                       else included[0] if len(included) == 1 else next(k for k, v in form.items() if v == 1))
            if form[subject] == -1:
                form, const, op = {k: -v for k, v in form.items()}, -const, _FLIP[op]
            if len(form) == 1:
                if subject == _OWN:
                    _bound(days, op, -const)
            else:
                anchor = next(k for k in form if k != subject)
                _bound(pairs.setdefault((subject, anchor), list(_UNBOUNDED)), op, -const)
    epoch = dt.date(1970, 1, 1)
    dates = tuple(None if d is None else epoch + dt.timedelta(days=d) for d in days)
    relative = None
    for (subject, anchor), (lo, hi) in pairs.items():
        if lo is None or hi is None or lo <= hi:
            relative = Relative(anchor=anchor, lo=lo, hi=hi, subject=None if subject == _OWN else subject)
            break
    return (dates[0], dates[1]), relative


def _conjuncts(cond, P):
    """The terms of a condition's top-level conjunction, relations as their meaning."""
    stack = [] if cond is None else [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, P.AllOf):
            stack.extend(reversed(node.args))
        elif isinstance(node, P.Relation):
            stack.append(node.meaning)
        else:
            yield node


def _linear(node, own: str, P) -> dict | None:
    """A date or duration as a sum of whole days: {endpoint: coefficient, _CONST: days},
    the endpoint's own event date (or own first date) under _OWN; None where it reads
    anything else."""
    if isinstance(node, P.DateConst):
        return {_CONST: (node.value - dt.date(1970, 1, 1)).days}
    if isinstance(node, P.Duration):
        return {_CONST: node.days}
    if isinstance(node, P.EventField) and node.name == "date":
        return {_OWN: 1}
    if isinstance(node, P.FirstDate):
        return {_OWN if node.endpoint == own else node.endpoint: 1}
    if isinstance(node, (P.Shift, P.Between)):
        first, second, sign = ((node.date, node.by, node.sign) if isinstance(node, P.Shift)
                               else (node.later, node.earlier, -1))
        a, b = _linear(first, own, P), _linear(second, own, P)
        if a is None or b is None:
            return None
        return {k: a.get(k, 0) + sign * b.get(k, 0) for k in {**a, **b}}
    return None


def _bound(window: list, op: str, value: float) -> None:
    """Narrow an inclusive window of whole days by `x op value`."""
    lo = {">=": math.ceil(value), ">": math.floor(value) + 1, "==": math.ceil(value)}.get(op)
    hi = {"<=": math.floor(value), "<": math.ceil(value) - 1, "==": math.floor(value)}.get(op)
    if lo is not None:
        window[0] = lo if window[0] is None else max(window[0], lo)
    if hi is not None:
        window[1] = hi if window[1] is None else min(window[1], hi)


def _positive_endpoints(cond, P) -> tuple[str, ...]:
    """Endpoints a `require` (or `when`) needs the person to be a case of: outside any
    negation, and of an `or` only its first operand (one way to satisfy it is enough)."""
    found: list[str] = []
    stack = [] if cond is None else [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, P.EndpointFact):
            found.append(node.endpoint)
        elif isinstance(node, (P.Cmp, P.AllOf)):
            stack.extend(reversed(P.children(node)))
        elif isinstance(node, P.AnyOf) and node.args:
            stack.append(node.args[0])
    return tuple(dict.fromkeys(found))
