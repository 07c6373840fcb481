"""Plain words for a plan: what `endpointc compile --explain NAME` shows.

Reads only the plan (meaning), so what it says is what the engines do.

>>> from endpointc.compiler import compile_text
>>> program, _ = compile_text('endpoint A { sex female  hospital main icd10 I21 | I22 except I219 }')
>>> print(describe_endpoint(program, "A"))
A
  rule 1 (hospital), at least 1 event:
    rows from INPAT, OUTPAT where CODE1 starts with I21 or I22, ICDVER is 10, CATEGORY is 0; not where CODE1 starts with I219
  sex: female only; other people are excluded
  dependency chain: A
"""

from __future__ import annotations

from typing import Iterable

import polars as pl

from .engine.matching import ENGINE, match_keys
from .index import KEY_COLUMNS
from .masking import MASK_THRESHOLD, mask_counts

from .plan import (
    AllOf, AnyOf, Between, Branch, Cmp, CodeSet, ColumnTest, Const, Count, DateConst, Duration, EndpointPlan,
    EventField, FirstAge, FirstDate, FirstYear, IsCase, Negate, Program, Relation, Shift,
)

__all__ = ["describe_endpoint", "describe_codeset", "describe_cond", "dependency_chain", "matched_codes",
           "code_keys", "duration_text"]


def describe_codeset(codes: CodeSet) -> str:
    if codes.prefixes == ("",):
        return "is filled (any code)"
    if codes.is_empty:
        return "matches nothing"
    parts = []
    if codes.prefixes:
        parts.append("starts with " + _alternatives(codes.prefixes))
    if codes.exact:
        parts.append("is exactly " + _alternatives(codes.exact))
    if codes.regexes:
        parts.append("matches the regex " + _alternatives(codes.regexes))
    return ", or ".join(parts)


def _alternatives(items: Iterable[str], limit: int = 12) -> str:
    items = list(items)
    shown = items[:limit]
    text = " or ".join(shown) if len(shown) <= 2 else ", ".join(shown[:-1]) + " or " + shown[-1]
    return text + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def _test(test: ColumnTest) -> str:
    if test.column in ("ICDVER", "CATEGORY") and test.codes.exact and not test.codes.prefixes:
        return f"{test.column} is " + _alternatives(test.codes.exact)
    return f"{test.column} " + describe_codeset(test.codes)


def describe_branch(branch: Branch) -> str:
    text = f"rows from {', '.join(branch.sources)}"
    if branch.tests:
        text += " where " + ", ".join(_test(t) for t in branch.tests)
    for conj in branch.excepts:
        text += "; not where " + " and ".join(_test(t) for t in conj)
    return text


_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "is not"}


# Durations are days in the plan; shown in the largest unit that divides them, as written.
_UNITS = (("year", 365.25), ("month", 30.4375), ("week", 7.0), ("day", 1.0))


def duration_text(days: float) -> str:
    """`365.25` -> `1 year`, `30` -> `30 days`, `45.5` -> `45.5 days`."""
    for unit, size in _UNITS:
        amount = days / size
        if amount >= 1 and amount.is_integer():
            return f"{amount:g} {unit}" + ("" if amount == 1 else "s")
    return f"{days:g} days"


_RELATIONS = {"within_after": "after", "within_before": "before", "after": "after", "before": "before"}


def describe_cond(cond) -> str:
    match cond:
        case Const(value=v):
            return f"{v:g}"
        case DateConst(value=v):
            return v.isoformat()
        case Duration(days=d):
            return duration_text(d)
        case EventField(name="date"):
            return "date of the event"
        case FirstDate(endpoint=e):
            return f"date of first {e} event"
        case Shift(date=d, sign=sign, by=b):
            return f"{describe_cond(d)} {'+' if sign > 0 else '-'} {describe_cond(b)}"
        case Between(later=a, earlier=b):
            return f"days from {describe_cond(b)} to {describe_cond(a)}"
        case Relation(subject=s, relation=r, anchor=a, window=w):
            subject = "the event" if isinstance(s, EventField) else f"the first {s.endpoint} event"
            within = f"within {duration_text(w.days)} " if w is not None else ""
            return f"{subject} is {within}{_RELATIONS[r]} the first {a.endpoint} event"
        case EventField(name="age"):
            return "age at the event"
        case EventField(name="year"):
            return "year of the event"
        case EventField(name="emergency"):
            return "the visit was an emergency"
        case IsCase(endpoint=e):
            return f"is a case of {e}"
        case Count(endpoint=e):
            return f"number of {e} events"
        case FirstAge(endpoint=e):
            return f"age at first {e} event"
        case FirstYear(endpoint=e):
            return f"year of first {e} event"
        case Cmp(op=op, left=l, right=r):
            return f"{describe_cond(l)} {_OPS[op]} {describe_cond(r)}"
        case AllOf(args=args):
            return " and ".join(_paren(a) for a in args)
        case AnyOf(args=args):
            return " or ".join(_paren(a) for a in args)
        case Negate(arg=a):
            return f"not ({describe_cond(a)})"
    raise TypeError(f"no description for plan node {type(cond).__name__}")


def _paren(cond) -> str:
    text = describe_cond(cond)
    return f"({text})" if isinstance(cond, (AllOf, AnyOf)) else text


def dependency_chain(program: Program, name: str) -> tuple[str, ...]:
    """`name` and everything it depends on, in evaluation order."""
    return program.subset([name]).names


def describe_endpoint(program: Program, name: str) -> str:
    ep: EndpointPlan = program.get(name)
    lines = [ep.name]
    for rule in ep.rules:
        options = [f"at least {rule.min_events} event{'s' if rule.min_events > 1 else ''}"]
        if rule.spacing == "apart":
            options[0] += f" with dates each at least {duration_text(rule.spacing_days)} after the one before"
        elif rule.spacing == "within":
            options[0] += f" with dates within {duration_text(rule.spacing_days)} of each other"
        if rule.needs_other:
            options.append("counted only if another rule also has an event for the person")
        if rule.mode:
            options.append("only the person's most frequent code among its siblings (mode)")
        lines.append(f"  rule {rule.index + 1} ({rule.source}), {', '.join(options)}:")
        if not rule.branches:
            lines.append("    selects no rows (none)")
        lines.extend(f"    {describe_branch(b)}" for b in rule.branches)
    if ep.includes:
        lines.append(f"  plus the case events of: {', '.join(ep.includes)}")
    if ep.when is not None:
        lines.append(f"  events kept only where: {describe_cond(ep.when)}")
    if ep.require is not None:
        lines.append(f"  a case must satisfy: {describe_cond(ep.require)}")
    if ep.sex:
        lines.append(f"  sex: {ep.sex} only; other people are excluded")
    if ep.control_exclude:
        lines.append(f"  controls: cases of {', '.join(ep.control_exclude)} are excluded")
    if ep.control_require is not None:
        lines.append(f"  controls must satisfy: {describe_cond(ep.control_require)}; others are excluded")
    lines.append(f"  dependency chain: {' -> '.join(dependency_chain(program, name))}")
    return "\n".join(lines)


def code_keys(events: pl.LazyFrame) -> pl.DataFrame:
    """The distinct keys of an events table (SOURCE and the code columns) with the number of
    events of each (_ROWS): what `matched_codes` counts, as an event index's keys hold it."""
    schema = events.collect_schema()
    return (events.select([pl.col(c) if c in schema else pl.lit(None, pl.String).alias(c) for c in KEY_COLUMNS])
            .group_by(KEY_COLUMNS).agg(pl.len().cast(pl.UInt64).alias("_ROWS")).collect(engine=ENGINE))


def matched_codes(program: Program, name: str, events: pl.LazyFrame | pl.DataFrame, *,
                  mask_threshold: int | None = MASK_THRESHOLD) -> pl.DataFrame:
    """Distinct codes of `events` each rule of `name` selects (before per-person options).

    `events` is an events table, or its distinct keys counted already (`code_keys`, or
    `EventIndex.keys()`: a _ROWS column), so that many questions share one pass.
    Returns RULE, SOURCE, CODE1, CODE2, CODE3, N_EVENTS; an aggregate of the registry,
    never person-level. N_EVENTS is masked (`masking`, as text) unless `mask_threshold` is
    None; no total is shown, so no other count gives a masked one away.
    """
    endpoint = program.get(name)
    sources = sorted({s for rule in endpoint.rules for branch in rule.branches for s in branch.sources})
    keys = (events if "_ROWS" in events.collect_schema().names() else code_keys(events.lazy())).lazy()
    keys = keys.filter(pl.col("SOURCE").is_in(sources))  # what no rule reads is not matched at all
    # the engine's own matching, of this endpoint's rules only (its dependencies are not
    # matched: a plan of one endpoint, whose order nothing here reads)
    mapping = match_keys(Program.model_construct(endpoints=(endpoint,)), keys)
    on = list(mapping.columns)
    matched = mapping.keys.join(mapping.rules, on="KEYID").select(*on, (pl.col("RULE") + 1).cast(pl.Int64))
    table = (keys.select(*KEY_COLUMNS, "_ROWS").join(matched.lazy(), on=on, nulls_equal=True)
             .group_by("RULE", "SOURCE", "CODE1", "CODE2", "CODE3").agg(pl.col("_ROWS").sum().alias("N_EVENTS"))
             .sort("RULE", "SOURCE", "CODE1", "CODE2", "CODE3", nulls_last=True).collect(engine=ENGINE))
    return mask_counts(table, threshold=mask_threshold, columns=["N_EVENTS"])
