"""Lower: the checked AST (`Library`) -> the plan (`Program`).

Everything about registries is decided here, once: which SOURCE rows a rule reads, which
column each vocabulary addresses, which extra tests (ICDVER, CATEGORY) pin a vocabulary
to its rows, how patterns become `CodeSet`s, and which clauses of a rule are alternatives
(same column) or must hold together on one row (different columns).

`lower` assumes `check` found no errors; where the AST still holds something it cannot
give a meaning to, it raises `LowerError` carrying an EP490 diagnostic (a gap in
`check`), which the compiler reports like any other.

>>> from endpointc.parser import parse
>>> from endpointc.check import index_library
>>> tree, _ = parse('endpoint A { hospital main icd10 I21 | I22 except I219 }')
>>> plan = lower(index_library([tree]))
>>> branch = plan.get("A").rules[0].branches[0]
>>> branch.sources, [t.column for t in branch.tests]
(('INPAT', 'OUTPAT'), ['CODE1', 'ICDVER', 'CATEGORY'])
"""

from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass
from typing import Iterable

from . import ast
from .check import Library
from .diagnostics import Diagnostic
from .fmt import pattern_text
from .plan import (
    DATE, DURATION, AllOf, AnyOf, Between, Branch, Cmp, CodeSet, ColumnTest, Cond, Const, Count, DateConst,
    Duration, EndpointPlan, EventField, FirstAge, FirstDate, FirstYear, IsCase, Negate, Program, Relation, RulePlan,
    Shift, Written,
)
from .registers import REGISTERS, Pin
from .source import Span

__all__ = [
    "lower", "lower_patterns", "LowerError", "EXPANSION_LIMIT", "CODE_ALPHABET", "DAYS_PER_UNIT", "duration_days",
]

# The characters of a well-formed stored code: FinnGen stores codes upper-case, without dots.
CODE_ALPHABET = string.digits + string.ascii_uppercase
# Character classes expand to plain prefixes (joinable) up to this many; beyond, a regex.
EXPANSION_LIMIT = 500
# A range is enumerated over at most this many candidate tails (guards against typos).
_RANGE_CANDIDATE_LIMIT = 1_000_000

# `with atc`: the adverse-effect ATC lives in CODE3 and only has to be filled.
_WITH_ATC = ColumnTest(column="CODE3", codes=CodeSet(prefixes=("",)), role="with_atc")


def _pin(pin: Pin) -> ColumnTest:
    return ColumnTest(column=pin.column, codes=CodeSet(prefixes=pin.prefixes, exact=pin.exact), role="pin")


class LowerError(Exception):
    """The AST holds something `check` should have rejected; carries the diagnostic."""

    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic
        super().__init__(str(diagnostic))


def _fail(code: str, message: str, span: Span | None, *hints: str) -> LowerError:
    return LowerError(Diagnostic.error(code, message, span, *hints))


# -- program ---------------------------------------------------------------------

def lower(library: Library) -> Program:
    """The plan of every endpoint of a checked library, in dependency order."""
    endpoints = tuple(_endpoint(library.endpoints[name], library) for name in library.order)
    try:
        return Program(endpoints=endpoints)
    except ValueError as error:  # unknown or misordered names: check's job, reported anyway
        raise _fail("EP490", f"cannot order the endpoints: {error}", None) from error


def _endpoint(endpoint: ast.Endpoint, library: Library) -> EndpointPlan:
    rules = tuple(_rule(i, r, library) for i, r in enumerate(endpoint.rules))
    whens = [_cond(i.condition, event_level=True) for i in endpoint.items if isinstance(i, ast.When)]
    requires = [_cond(i.condition, event_level=False) for i in endpoint.items if isinstance(i, ast.Require)]
    control_exclude: list[str] = []
    control_require: list[Cond] = []
    for controls in (i for i in endpoint.items if isinstance(i, ast.Controls)):
        for item in controls.items:
            if isinstance(item, ast.ControlExclude):
                control_exclude.extend(n.name for n in item.names)
            else:
                control_require.append(_cond(item.condition, event_level=False))
    sex = endpoint.sex
    return _node(lambda: EndpointPlan(
        name=endpoint.name,
        rules=rules,
        includes=tuple(dict.fromkeys(n.name for n in endpoint.includes)),
        when=None if not whens else whens[0] if len(whens) == 1 else AllOf(args=tuple(whens)),
        require=AllOf(args=tuple(requires)) if requires else None,
        sex=None if sex == "any" else sex,
        control_exclude=tuple(dict.fromkeys(control_exclude)),
        control_require=AllOf(args=tuple(control_require)) if control_require else None,
        span=endpoint.span,
    ), endpoint.span)


# -- rules -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Alternative:
    """One way a clause matches a row: tests that must all hold, excepts that must not."""

    tests: tuple[ColumnTest, ...]
    excepts: tuple[tuple[ColumnTest, ...], ...]


def _rule(index: int, rule: ast.Rule, library: Library) -> RulePlan:
    register = REGISTERS.get(rule.source)
    if register is None:
        raise _fail("EP490", f"unknown rule source {rule.source!r}", rule.span)
    extra: list[ColumnTest] = []
    min_events = register.default_min
    spacing, spacing_days = None, None
    needs_other = mode = False
    for option in rule.options:
        if option.name == "main":
            if not register.main:
                raise _fail("EP490", f"`main` is not defined for `{rule.source}` rules", option.span)
            extra.append(ColumnTest(column="CATEGORY", codes=CodeSet(exact=register.main), role="main"))
        elif option.name == "with_atc":
            extra.append(_WITH_ATC)
        elif option.name == "single":
            min_events = 1
        elif option.name == "min":
            if option.value is None or option.value < 1:
                raise _fail("EP490", "`min` needs a whole number of at least 1", option.span)
            min_events = option.value
            if option.window is not None:
                spacing, spacing_days = option.spacing, duration_days(option.window)
        elif option.name == "needs_other":
            needs_other = True
        elif option.name == "mode":
            mode = True
        else:
            raise _fail("EP490", f"unknown rule option {option.name!r}", option.span)

    # Clauses on the same column are alternatives; different columns must hold together.
    groups: dict[str, list[_Alternative]] = {}
    for clause in ast.rule_clauses(rule, library.codelists):
        vocabulary = register.vocabularies.get(clause.vocab)
        if vocabulary is None:
            raise _fail("EP490", f"`{clause.vocab}` is not a vocabulary of `{rule.source}` rules", clause.span)
        pins = tuple(_pin(p) for p in vocabulary.pins)
        groups.setdefault(vocabulary.column, []).extend(_clause(clause, vocabulary.column, pins, library))

    branches: list[Branch] = []
    for combo in itertools.product(*groups.values()):
        tests = tuple(t for alt in combo for t in alt.tests) + tuple(extra)
        excepts = tuple(dict.fromkeys(e for alt in combo for e in alt.excepts))
        branch = Branch(sources=register.rows, tests=_dedupe(tests), excepts=excepts)
        if branch not in branches:
            branches.append(branch)
    return _node(lambda: RulePlan(
        index=index, source=rule.source, source_rows=register.rows, branches=tuple(branches), min_events=min_events,
        spacing=spacing, spacing_days=spacing_days, needs_other=needs_other, mode=mode, span=rule.span), rule.span)


def _dedupe(tests: Iterable[ColumnTest]) -> tuple[ColumnTest, ...]:
    return tuple(dict.fromkeys(tests))


def _clause(clause: ast.VocabClause, column: str, pins: tuple[ColumnTest, ...],
            library: Library) -> list[_Alternative]:
    simple, combos = _expand_codelists(clause.patterns, library, clause.vocab)
    simple_x, combos_x = _expand_codelists(clause.excepts, library, clause.vocab)
    excepts: list[tuple[ColumnTest, ...]] = []
    if simple_x:
        test = _pattern_test(column, simple_x, library)
        if not test.codes.is_empty:
            excepts.append((test,))
    for combo in combos_x:
        first, second = _combination_tests(combo, library)
        if not (first.codes.is_empty or second.codes.is_empty):
            excepts.append((first, second))

    alternatives: list[_Alternative] = []
    if simple:
        test = _pattern_test(column, simple, library)
        # `none` and empty sets select nothing: no branch is the same meaning, and cheaper.
        if not test.codes.is_empty:
            alternatives.append(_Alternative((test, *pins), tuple(excepts)))
    for combo in combos:
        first, second = _combination_tests(combo, library)
        if not (first.codes.is_empty or second.codes.is_empty):
            alternatives.append(_Alternative((first, second, *pins), tuple(excepts)))
    return alternatives


def _pattern_test(column: str, patterns: Iterable[ast.Pattern], library: Library) -> ColumnTest:
    """The test that `column` matches one of the (simple) patterns, each kept as written."""
    written = tuple(Written(text=pattern_text(p), codes=_codeset(p, library)) for p in patterns)
    return ColumnTest(column=column, codes=_union(w.codes for w in written), written=written)


def _expand_codelists(patterns: Iterable[ast.Pattern], library: Library, vocab: str | None,
                      seen: tuple[str, ...] = ()) -> tuple[list[ast.Pattern], list[ast.Combination]]:
    """Patterns with codelist references replaced by the codelists' patterns of `vocab`
    (None: of a codelist's only vocabulary): (simple patterns, combinations)."""
    simple: list[ast.Pattern] = []
    combos: list[ast.Combination] = []
    for pattern in patterns:
        if isinstance(pattern, ast.CodelistRef):
            codelist = _codelist(pattern, library, seen)
            inner = codelist.patterns_of(vocab) if vocab is not None else codelist.patterns
            if inner is None:
                raise _fail("EP490", f"codelist @{pattern.name} has no {vocab} codes", pattern.span)
            s, c = _expand_codelists(inner, library, vocab, (*seen, pattern.name))
            simple.extend(s)
            combos.extend(c)
        elif isinstance(pattern, ast.Combination):
            combos.append(pattern)
        else:
            simple.append(pattern)
    return simple, combos


def _codelist(ref: ast.CodelistRef, library: Library, seen: tuple[str, ...]) -> ast.Codelist:
    if ref.name in seen:
        raise _fail("EP490", f"codelist {ref.name} refers to itself", ref.span)
    if ref.name not in library.codelists:
        raise _fail("EP490", f"unknown codelist @{ref.name}", ref.span)
    return library.codelists[ref.name]


def _combination_tests(combo: ast.Combination, library: Library) -> tuple[ColumnTest, ColumnTest]:
    """`A&B`: CODE1 matches A and CODE2 matches B on the same row."""
    def side(column: str, pattern: ast.Pattern) -> ColumnTest:
        simple, combos = _expand_codelists((pattern,), library, "icd10")
        if combos:
            raise _fail("EP490", "a combination code cannot contain another combination", combo.span)
        return _pattern_test(column, simple, library)

    return side("CODE1", combo.first), side("CODE2", combo.second)


# -- patterns ----------------------------------------------------------------------

def lower_patterns(patterns: Iterable[ast.Pattern], library: Library | None = None) -> CodeSet:
    """The CodeSet of simple patterns (no combinations), codelists expanded.

    >>> from endpointc.source import Span
    >>> s = Span(file="x", line=1, column=1, end_line=1, end_column=1)
    >>> lower_patterns([ast.Range(span=s, start="E10", end="E12"), ast.Code(span=s, text="F3[2-3]")])
    CodeSet(prefixes=('E10', 'E11', 'E12', 'F32', 'F33'), exact=(), regexes=())
    """
    library = library or Library(files=(), endpoints={}, codelists={}, order=())
    simple, combos = _expand_codelists(patterns, library, None)
    if combos:
        raise _fail("EP490", "a combination code is not a simple pattern", combos[0].span)
    return _union(_codeset(p, library) for p in simple)


def _union(sets: Iterable[CodeSet]) -> CodeSet:
    sets = list(sets)
    return CodeSet(
        prefixes=tuple(dict.fromkeys(p for s in sets for p in s.prefixes)),
        exact=tuple(dict.fromkeys(e for s in sets for e in s.exact)),
        regexes=tuple(dict.fromkeys(r for s in sets for r in s.regexes)),
    )


def _codeset(pattern: ast.Pattern, library: Library) -> CodeSet:
    if isinstance(pattern, ast.Code):
        return _classes(pattern.text, pattern.span, exact=False)
    if isinstance(pattern, ast.Exact):
        return _classes(pattern.text, pattern.span, exact=True)
    if isinstance(pattern, ast.Range):
        return CodeSet(prefixes=_range(pattern))
    if isinstance(pattern, ast.AnyCode):
        return CodeSet(prefixes=("",))
    if isinstance(pattern, ast.NoCode):
        return CodeSet()
    if isinstance(pattern, ast.Regex):
        try:
            return CodeSet(regexes=(pattern.regex,))
        except ValueError as error:
            raise _fail("EP490", f"invalid regular expression: {error}", pattern.span) from error
    raise _fail("EP490", f"cannot lower pattern {type(pattern).__name__}", pattern.span)


def _parse_classes(text: str, span: Span) -> list[str]:
    """A FinnGen code pattern as one string of allowed characters per position."""
    positions: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == ".":
            positions.append(CODE_ALPHABET)
            i += 1
        elif char == "[":
            end = text.find("]", i)
            if end < 0:
                raise _fail("EP490", f"unclosed character class in {text!r}", span)
            positions.append(_class_members(text[i + 1:end], text, span))
            i = end + 1
        else:
            positions.append(char)
            i += 1
    return positions


def _class_members(body: str, text: str, span: Span) -> str:
    negate = body.startswith("^")
    if negate:
        body = body[1:]
    members: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if low > high:
                raise _fail("EP490", f"reversed character range {low}-{high} in {text!r}", span)
            members.extend(chr(c) for c in range(ord(low), ord(high) + 1))
            i += 3
        else:
            members.append(body[i])
            i += 1
    if negate:
        members = [c for c in CODE_ALPHABET if c not in members]
    result = "".join(dict.fromkeys(members))
    if not result:
        raise _fail("EP490", f"empty character class in {text!r}", span)
    return result


def _classes(text: str, span: Span, *, exact: bool) -> CodeSet:
    positions = _parse_classes(text, span)
    size = 1
    for members in positions:
        size *= len(members)
    if size <= EXPANSION_LIMIT:
        codes = tuple("".join(p) for p in itertools.product(*positions))
        return CodeSet(exact=codes) if exact else CodeSet(prefixes=codes)
    # Too many to list: one regex with the same meaning (`.` stays the code alphabet).
    regex = "^" + "".join(re.escape(m) if len(m) == 1 else _regex_class(m) for m in positions)
    return CodeSet(regexes=(regex + ("$" if exact else ""),))


def _regex_class(members: str) -> str:
    return "[" + "".join(re.escape(c) for c in members) + "]"


def _range(pattern: ast.Range) -> tuple[str, ...]:
    start, end = pattern.start, pattern.end
    if len(start) != len(end):
        raise _fail("EP490", f"range ends {start} and {end} differ in length", pattern.span,
                    "write both ends with the same number of characters, e.g. E10-E14")
    if start > end:
        raise _fail("EP490", f"range {start}-{end} runs backwards", pattern.span)
    common = len(start)
    for i, (a, b) in enumerate(zip(start, end)):
        if a != b:
            common = i
            break
    head, low, high = start[:common], start[common:], end[common:]
    alphabets = [string.digits if a.isdigit() and b.isdigit() else CODE_ALPHABET for a, b in zip(low, high)]
    candidates = 1
    for alphabet in alphabets:
        candidates *= len(alphabet)
    if candidates > _RANGE_CANDIDATE_LIMIT:
        raise _fail("EP490", f"range {start}-{end} is too wide to list", pattern.span)
    tails = ("".join(t) for t in itertools.product(*alphabets))
    return tuple(head + t for t in tails if low <= t <= high)


# -- conditions --------------------------------------------------------------------

# Days in a unit of duration: a month and a year are their mean lengths in the Gregorian
# calendar, so that `1 year` after a date is the same instant whatever the date.
DAYS_PER_UNIT = {"day": 1.0, "week": 7.0, "month": 30.4375, "year": 365.25}

_FACTS = {"count": Count, "age": FirstAge, "year": FirstYear, "date": FirstDate}


def duration_days(duration: ast.DurationLit) -> float:
    """`30 days` -> 30.0, `1 year` -> 365.25 (units may be singular or plural)."""
    return duration.amount * DAYS_PER_UNIT[duration.unit.rstrip("s")]


def _node(build, span: Span | None):
    """A plan node from `build()`; a node the plan rejects (an operand of the wrong type)
    is something `check` should have reported."""
    try:
        return build()
    except ValueError as error:
        raise _fail("EP490", f"cannot lower the condition: {error}", span) from error


def _cond(expr: ast.Expr, *, event_level: bool) -> Cond:
    """`when` (event level) reads event fields and facts about other endpoints;
    `require` and controls read facts about endpoints only."""
    def lowered(e: ast.Expr) -> Cond:
        return _cond(e, event_level=event_level)

    if isinstance(expr, ast.Number):
        return Const(value=expr.value)
    if isinstance(expr, ast.DateLit):
        return DateConst(value=expr.value)
    if isinstance(expr, ast.DurationLit):
        return Duration(days=duration_days(expr))
    if isinstance(expr, ast.Var):
        if not event_level:
            raise _fail("EP490", f"`{expr.name}` is an event field; use it in `when`", expr.span)
        return EventField(name=expr.name)
    if isinstance(expr, ast.EndpointRef):
        return IsCase(endpoint=expr.name)
    if isinstance(expr, ast.Attr):
        return _FACTS[expr.attr](endpoint=expr.name)
    if isinstance(expr, ast.Arith):
        left, right = lowered(expr.left), lowered(expr.right)
        if expr.op == "-" and left.value_type == DATE and right.value_type == DATE:
            return _node(lambda: Between(later=left, earlier=right), expr.span)
        if expr.op == "+" and left.value_type == DURATION:  # `1 year + X.date`
            left, right = right, left
        return _node(lambda: Shift(date=left, sign=1 if expr.op == "+" else -1, by=right), expr.span)
    if isinstance(expr, ast.Relation):
        if expr.subject is None and not event_level:
            raise _fail("EP490", "a time relation in `require` needs an endpoint before it", expr.span)
        subject = EventField(name="date") if expr.subject is None else FirstDate(endpoint=expr.subject.name)
        window = None if expr.window is None else Duration(days=duration_days(expr.window))
        return _node(lambda: Relation(subject=subject, relation=expr.relation,
                                      anchor=FirstDate(endpoint=expr.anchor.name), window=window), expr.span)
    if isinstance(expr, ast.Compare):
        operands = [lowered(o) for o in expr.operands]
        pairs = tuple(_node(lambda i=i, op=op: Cmp(op=op, left=operands[i], right=operands[i + 1]), expr.span)
                      for i, op in enumerate(expr.ops))
        return pairs[0] if len(pairs) == 1 else AllOf(args=pairs)
    if isinstance(expr, ast.And):
        return _node(lambda: AllOf(args=tuple(lowered(a) for a in expr.args)), expr.span)
    if isinstance(expr, ast.Or):
        return _node(lambda: AnyOf(args=tuple(lowered(a) for a in expr.args)), expr.span)
    if isinstance(expr, ast.Not):
        return _node(lambda: Negate(arg=lowered(expr.arg)), expr.span)
    raise _fail("EP490", f"cannot lower condition {type(expr).__name__}", getattr(expr, "span", None))
