"""Program and events -> `Prepared`: what every bucket shares.

Input: the plan's program, the endpoints to return and the events table; output: the
endpoints with their dependencies, their matched code keys (`matching.match_keys`) and
signatures (`signatures.signatures`), their dependency levels, and `ProgramTables`, the
per-program constants every bucket reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..diagnostics import Diagnostic, DiagnosticError
from ..plan import Program, cond_endpoints
from .columns import U32
from .conditions import when_filter
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
    read_by_require: frozenset[int]
    # per level: complex members, their includes of carried endpoints (_INCLUDED, EP)
    # and their `when` as one expression
    level_complex: tuple[tuple[int, ...], ...]
    level_edges: tuple[pl.DataFrame | None, ...]
    level_when: tuple[pl.Expr | None, ...]
    counted_when: pl.Expr | None
    mode_rules: pl.DataFrame  # (EP, RULE)
    mins: pl.DataFrame  # (EP, RULE, _MIN_EVENTS)
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
    rules = [(e, r, rule) for e, ep in enumerate(eps) for r, rule in enumerate(ep.rules)]
    return ProgramTables(
        pos=pos,
        ep_level=pl.Series([level_of[i] for i in range(len(eps))], dtype=U32),
        ep_sex=pl.Series([ALL_SEXES if ep.sex is None else SEX_BITS[ep.sex] for ep in eps], dtype=pl.UInt8),
        name_rank=pl.Series(sorted(range(len(eps)), key=by_name.__getitem__), dtype=pl.UInt64),
        last_use=last_use,
        simple_with_require=tuple(i for i, ep in enumerate(eps)
                                  if ep.require is not None and i not in sigs.complex),
        read_by_require=frozenset(pos[n] for ep in eps for n in cond_endpoints(ep.require)),
        level_complex=level_complex, level_edges=tuple(edges),
        level_when=tuple(when_filter(program, members) for members in level_complex),
        counted_when=when_filter(program, counted),
        mode_rules=pl.DataFrame([(e, r) for e, r, rule in rules if rule.mode],
                                schema={"EP": U32, "RULE": U32}, orient="row"),
        mins=pl.DataFrame([(e, r, rule.min_events) for e, r, rule in rules if rule.min_events > 1],
                          schema={"EP": U32, "RULE": U32, "_MIN_EVENTS": pl.UInt32}, orient="row"),
        needs=pl.DataFrame([(e, r) for e, r, rule in rules if rule.needs_other],
                           schema={"EP": U32, "RULE": U32}, orient="row"),
    )


def dependency_levels(program: Program) -> tuple[tuple[int, ...], ...]:
    """Group endpoints so each one's case-relevant deps (include, require) are in earlier groups."""
    pos = {ep.name: i for i, ep in enumerate(program.endpoints)}
    level: dict[int, int] = {}
    for i, ep in enumerate(program.endpoints):
        deps = [*ep.includes, *cond_endpoints(ep.require)]
        level[i] = 1 + max((level[pos[d]] for d in deps), default=-1)
    out: dict[int, list[int]] = {}
    for i, lv in level.items():
        out.setdefault(lv, []).append(i)
    return tuple(tuple(out[lv]) for lv in sorted(out))


def prepare(program: Program, events: pl.LazyFrame, *,
            endpoints: Sequence[str] | None = None, parts: Sequence[pl.Expr] | None = None) -> Prepared:
    """Select endpoints (plus dependencies), check the event columns, match all patterns
    (`parts`: filters that split the events, read one at a time; see `match_keys`)."""
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
    mapping = match_keys(program, events, parts=parts)
    uses_mode = any(r.mode for ep in program.endpoints for r in ep.rules)
    sigs = signatures(program, mapping)
    levels = dependency_levels(program)
    return Prepared(program=program, selected=selected, mapping=mapping, sigs=sigs, levels=levels,
                    uses_emergency=uses_emergency, uses_mode=uses_mode,
                    tables=program_tables(program, sigs, levels))
