"""Recipes: what the generator must produce so that an endpoint gets cases.

The generator never reads definitions itself. A recipe is the small, engine-independent
summary of one endpoint that case generation needs: for each rule, the shapes of registry
row that it selects (SOURCE, ICD version, anchored regexes per CODE column, CATEGORY), how
many such rows a case needs, and the endpoint's person-level filters (sex, age and year
windows, emergency). `case_recipes(program)` turns compiled definitions into recipes; tests
and benchmarks may also write recipes by hand.

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

import os
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Alternative", "Rule", "Recipe", "case_recipes", "as_recipes"]

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

    def __post_init__(self) -> None:
        if self.min_events < 1:
            raise ValueError(f"min_events must be >= 1, got {self.min_events}")


@dataclass(frozen=True)
class Recipe:
    """Everything the generator needs to give one endpoint cases."""

    endpoint: str
    rules: tuple[Rule, ...]
    sex: str | None = None                      # "female" | "male" | None (any)
    age: tuple[float | None, float | None] = (None, None)  # inclusive EVENT_AGE window
    year: tuple[int | None, int | None] = (None, None)     # inclusive calendar years
    emergency: bool = False                     # the visit must be urgent (CODE9 = 1)
    prevalence: float | None = None             # overrides generate()'s prevalence
    # Endpoints a case must also be a case of (`require X`): their events are added too.
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sex not in (None, "female", "male"):
            raise ValueError(f"sex must be 'female', 'male' or None, got {self.sex!r}")
        if self.prevalence is not None and not 0 <= self.prevalence <= 1:
            raise ValueError(f"prevalence must be within [0, 1], got {self.prevalence}")


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
    get cases: `when` conditions other than (chained) comparisons of age/year with numbers
    and `emergency` are ignored; in `require`, endpoints that must be cases become `also`
    (their events are generated for the same people) and negations are ignored (at a low
    prevalence overlaps are rare); an endpoint made only of `include`s takes the rules of
    the endpoints it includes, inside its own age and year windows.
    """
    from .. import plan as P  # imported here: the generator works without the compiler

    if not isinstance(program, P.Program):
        raise TypeError(f"case_recipes needs an endpointc.plan.Program, got {type(program).__name__}")
    done: dict[str, Recipe] = {}
    for ep in program.endpoints:
        rules = tuple(r for r in (_rule(rp) for rp in ep.rules) if r is not None)
        age, year, emergency = _windows(ep.when, P)
        also = _positive_endpoints(ep.require, P)
        sex = ep.sex
        if not rules and ep.includes:
            inherited = [done[name] for name in ep.includes if name in done and done[name].rules]
            rules = tuple(r for inc in inherited for r in inc.rules)
            for inc in inherited[:1]:
                age = _intersect(age, inc.age)
                year = _intersect(year, inc.year)
                emergency = emergency or inc.emergency
                sex = sex or inc.sex
                also = tuple(dict.fromkeys(also + inc.also))
        done[ep.name] = Recipe(endpoint=ep.name, rules=rules, sex=sex, age=age, year=year,
                               emergency=emergency, also=tuple(a for a in also if a != ep.name))
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
    return Rule(alternatives=alts, min_events=rp.min_events, needs_other=rp.needs_other)


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


def _positive_endpoints(cond, P) -> tuple[str, ...]:
    """Endpoints a `require` needs the person to be a case of: outside any negation, and
    of an `or` only its first operand (one way to satisfy it is enough)."""
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
