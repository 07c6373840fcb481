"""Program and events -> `Prepared`: what every bucket shares.

Input: the plan's program, the endpoints to return and the events table; output: the
endpoints with their dependencies, their matched code keys (`matching.match_keys`) and
signatures (`signatures.signatures`), their dependency levels, and `ProgramTables`, the
per-program constants every bucket reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..diagnostics import Diagnostic, DiagnosticError
from ..plan import Program, cond_endpoints
from .columns import U32
from .conditions import When, when_filter
from .matching import KeyMapping, match_keys
from .signatures import ALL_SEXES, SEX_BITS, Signatures, signatures

__all__ = ["MissingColumnError", "Prepared", "ProgramTables", "prepare"]


class MissingColumnError(DiagnosticError, ValueError):
    """A column the program needs is absent from the events table (EP502)."""


@dataclass(frozen=True)
class ProgramTables:
    """Per-program constants every bucket reads, derived once (Python loops over thousands
    of endpoints would otherwise be a fixed cost of every bucket)."""

    pos: dict[str, int]  # endpoint position by name
    ep_level: pl.Series  # level by endpoint position (u32)
    ep_sex: pl.Series  # the sex bits (u8) an endpoint's cases may have, by endpoint position
    name_rank: pl.Series  # rank of the endpoint's name by position (u64)
    # the last level that reads an impure endpoint's case rows (through an include)
    last_use: dict[int, int]
    simple_with_require: tuple[int, ...]  # endpoints with a `require` that are not complex
    # endpoints whose facts a `require` or a `when` of another endpoint reads
    read_by_conditions: frozenset[int]
    # per level: complex members, their includes of carried endpoints (_INCLUDED, EP)
    # and their `when` as one filter
    level_complex: tuple[tuple[int, ...], ...]
    level_edges: tuple[pl.DataFrame | None, ...]
    level_when: tuple[When | None, ...]
    # counted endpoints whose counted rows are found before the levels (their `when` reads
    # no endpoint facts) and that `when`; per level, the others (their `when` reads facts
    # of earlier levels) and theirs
    counted_early: tuple[int, ...]
    counted_when: When | None
    level_counted: tuple[tuple[int, ...], ...]
    level_counted_when: tuple[When | None, ...]
    mode_rules: pl.DataFrame  # (EP, RULE)
    mins: pl.DataFrame  # (EP, RULE, _MIN_EVENTS) of rules with a plain `min` above 1
    # (EP, RULE, _MIN_EVENTS, _APART, _GAP) of rules with a spaced (`apart`) or clustered
    # (`within`) `min`; _GAP is D in whole days: the least day difference of two picks
    # (ceil D) or the most within one window (floor D), as day differences are whole
    spaced: pl.DataFrame
    needs: pl.DataFrame  # (EP, RULE)


@dataclass(frozen=True)
class Prepared:
    """What every bucket shares: the program, the selection, the matched keys and their
    signatures, the levels."""

    program: Program
    selected: tuple[int, ...]  # positions in program.endpoints of the endpoints to return
    mapping: KeyMapping
    sigs: Signatures
    levels: tuple[tuple[int, ...], ...]  # endpoint positions, each level after its deps
    uses_emergency: bool
    uses_mode: bool
    tables: ProgramTables


def program_tables(program: Program, sigs: Signatures, levels: tuple[tuple[int, ...], ...]) -> ProgramTables:
    eps = program.endpoints
    pos = {ep.name: i for i, ep in enumerate(eps)}
    level_of = {i: lv for lv, members in enumerate(levels) for i in members}
    last_use: dict[int, int] = {}
    for i in sigs.complex:
        for name in eps[i].includes:
            if pos[name] in sigs.carried:
                last_use[pos[name]] = max(last_use.get(pos[name], -1), level_of[i])
    by_name = sorted(range(len(eps)), key=lambda i: eps[i].name)
    level_complex = tuple(tuple(i for i in members if i in sigs.complex) for members in levels)
    edges = []
    for members in level_complex:
        pairs = [(pos[x], i) for i in members for x in eps[i].includes if pos[x] in sigs.carried]
        edges.append(pl.DataFrame(pairs, schema={"_INCLUDED": U32, "EP": U32}, orient="row") if pairs else None)
    counted = [i for i, ep in enumerate(eps) if ep.counted]
    early = tuple(i for i in counted if not cond_endpoints(eps[i].when))
    late = [tuple(i for i in members if i in counted and i not in early) for members in levels]
    rules = [(e, r, rule) for e, ep in enumerate(eps) for r, rule in enumerate(ep.rules)]
    return ProgramTables(
        pos=pos,
        ep_level=pl.Series([level_of[i] for i in range(len(eps))], dtype=U32),
        ep_sex=pl.Series([ALL_SEXES if ep.sex is None else SEX_BITS[ep.sex] for ep in eps], dtype=pl.UInt8),
        name_rank=pl.Series(sorted(range(len(eps)), key=by_name.__getitem__), dtype=pl.UInt64),
        last_use=last_use,
        simple_with_require=tuple(i for i, ep in enumerate(eps)
                                  if ep.require is not None and i not in sigs.complex),
        read_by_conditions=frozenset(pos[n] for ep in eps for n in (*cond_endpoints(ep.require),
                                                                    *cond_endpoints(ep.when)) if n != ep.name),
        level_complex=level_complex, level_edges=tuple(edges),
        level_when=tuple(when_filter(program, members, pos) for members in level_complex),
        counted_early=early,
        counted_when=when_filter(program, early, pos),
        level_counted=tuple(late),
        level_counted_when=tuple(when_filter(program, members, pos) for members in late),
        mode_rules=pl.DataFrame([(e, r) for e, r, rule in rules if rule.mode],
                                schema={"EP": U32, "RULE": U32}, orient="row"),
        mins=pl.DataFrame([(e, r, rule.min_events) for e, r, rule in rules
                           if rule.min_events > 1 and rule.spacing is None],
                          schema={"EP": U32, "RULE": U32, "_MIN_EVENTS": pl.UInt32}, orient="row"),
        spaced=pl.DataFrame([(e, r, rule.min_events, rule.spacing == "apart", _whole_days(rule))
                             for e, r, rule in rules if rule.spacing is not None],
                            schema={"EP": U32, "RULE": U32, "_MIN_EVENTS": pl.UInt32, "_APART": pl.Boolean,
                                    "_GAP": pl.Int64}, orient="row"),
        needs=pl.DataFrame([(e, r) for e, r, rule in rules if rule.needs_other],
                           schema={"EP": U32, "RULE": U32}, orient="row"),
    )


_MAX_GAP = 2**40  # days: beyond any span of dates, and far from overflowing an i64 key


def _whole_days(rule) -> int:
    """A spaced or clustered `min`'s D as whole days (see `ProgramTables.spaced`)."""
    days = math.ceil(rule.spacing_days) if rule.spacing == "apart" else math.floor(rule.spacing_days)
    return min(days, _MAX_GAP)


def dependency_levels(program: Program) -> tuple[tuple[int, ...], ...]:
    """Group endpoints so each one's case-relevant deps (include, and the endpoints whose
    facts its `require` or `when` reads) are in earlier groups; its own facts in `require`
    are those of its candidate events, read in its own group."""
    pos = {ep.name: i for i, ep in enumerate(program.endpoints)}
    level: dict[int, int] = {}
    for i, ep in enumerate(program.endpoints):
        deps = [d for d in (*ep.includes, *cond_endpoints(ep.require), *cond_endpoints(ep.when)) if d != ep.name]
        level[i] = 1 + max((level[pos[d]] for d in deps), default=-1)
    out: dict[int, list[int]] = {}
    for i, lv in level.items():
        out.setdefault(lv, []).append(i)
    return tuple(tuple(out[lv]) for lv in sorted(out))


def prepare(program: Program, events: pl.LazyFrame, *,
            endpoints: Sequence[str] | None = None, parts: Sequence[pl.Expr] | None = None,
            keys: pl.LazyFrame | None = None) -> Prepared:
    """Select endpoints (plus dependencies), check the event columns, match all patterns
    (`parts`: filters that split the events, read one at a time; see `match_keys`).
    `keys`: the events' distinct keys with their row counts (_ROWS), counted before (an
    event index, endpointc/index.py): matched instead, and `events` is only asked its
    columns."""
    if endpoints is not None:
        wanted = list(dict.fromkeys(endpoints))
        program = program.subset(wanted)
        selected = tuple(i for i, ep in enumerate(program.endpoints) if ep.name in set(wanted))
    else:
        selected = tuple(range(len(program.endpoints)))
    schema = events.collect_schema()
    uses_emergency = any(ep.uses_emergency for ep in program.endpoints)
    if uses_emergency and "CODE9" not in schema:
        users = [ep.name for ep in program.endpoints if ep.uses_emergency]
        raise MissingColumnError([Diagnostic.error(
            "EP502",
            "the events table has no CODE9 column (urgency), needed by `when emergency` in "
            f"{', '.join(users[:5])}{' ...' if len(users) > 5 else ''}",
            None, "CODE9 is the service-sector urgency field of the longitudinal table")])
    mapping = match_keys(program, events, parts=parts) if keys is None else match_keys(program, keys)
    uses_mode = any(r.mode for ep in program.endpoints for r in ep.rules)
    sigs = signatures(program, mapping)
    levels = dependency_levels(program)
    return Prepared(program=program, selected=selected, mapping=mapping, sigs=sigs, levels=levels,
                    uses_emergency=uses_emergency, uses_mode=uses_mode,
                    tables=program_tables(program, sigs, levels))
