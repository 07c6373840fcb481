"""Case events for recipes: every endpoint gets cases through codes its rules match.

Planning (once): each recipe's rules are flattened into *options*, one per (alternative,
SOURCE, code system), with the calendar years in which such a row can exist and a small
pool of sampled rows whose codes match the alternative's regexes (and none of its
`except` regexes). Per block (vectorised): a prevalence share of eligible people become
cases; each gets events of one rule (at least its `min`, spaced or clustered as it says),
placed in an option's register and era, inside the endpoint's age, year and calendar-day
windows and the person's follow-up. Where a recipe places its events relative to another
endpoint's first event, the person first gets that endpoint's events, the first of them on
an anchor day, and the events are placed in the window relative to that day.

Noise that must *not* make anyone a case is added on purpose, so engines are tested on
the hard paths too: rows with `except` codes, people one event short of `min N`, people
with only a `needs other` rule's events, people with `min N` events spaced or clustered
one day short of what the rule asks, and people with everything a case has but with the
events one day outside the relation or calendar window.
"""

from __future__ import annotations

import logging
import math
import random
import re
from dataclasses import dataclass, field, replace

import numpy as np

from . import codes as C
from .background import DAYS_PER_YEAR, People, Rows, death_visit, ver_id, within
from .eras import END_YEAR, days_from_epoch, icd_version, source_years, year_end_day, year_of, year_start_day
from .model import SRC, Model
from .recipes import Alternative, Recipe
from .sampler import sample_code

__all__ = ["RecipePlan", "plan_recipes", "case_events"]

log = logging.getLogger(__name__)

_POOL_ROWS = 8
_EXCEPT_ROWS = 4
# Stay this far inside an age window so that two-decimal EVENT_AGE rounding can never push
# an event across a strict (<) or inclusive (<=) bound.
_AGE_MARGIN_YEARS = 0.02
_NOISE_SHARE = 0.5          # noise people per case, for each kind of near miss

_HOSPITAL = ("INPAT", "OUTPAT")
_OPER = ("OPER_IN", "OPER_OUT")
# Code systems by CATEGORY for the registers whose vocabulary is told by CATEGORY.
_PRIMARY_SYSTEMS = {"ICD": ("ICD0", "ICD1"), "ICP": ("ICP0", "ICP1"), "OP": ("OP0",), "MOP": ("MOP0",)}
_PRIMARY_SHAPE = {"ICD": "icd10", "ICP": "icpc2", "OP": "procedure", "MOP": "procedure"}
_PRIMARY_VER = {"ICD": "10", "ICP": "ICP", "OP": "OP", "MOP": "MOP"}
_OPER_SYSTEMS = {"NOM": ("NOM1", "NOM2"), "MFHL": ("MFHL1",), "SFHL": ("SFHL1",), "HPO": ("HPO1",), "HPN": ("HPN1",)}
_OPER_SHAPE = {"NOM": "nomesco", "MFHL": "hl", "SFHL": "hl", "HPO": "hp1", "HPN": "hp2"}
_SEX_VOCAB = {"icd10": "icd10", "icd9": "icd9", "icd8": "icd8", "icpc2": "icpc2",
              "topography": "topography", "nomesco": "nomesco"}
_BUILTIN_ATC = sorted({a for c in C.CONDITIONS for a in c.atc})

# Family codes of an option: how its rows are laid out.
HOSP, DEATH, PRIM, OPER, REIMB, PURCH, CANC = range(7)

# A rule's spacing.
UNSPACED, APART, WITHIN = range(3)
_SPACING = {None: UNSPACED, "apart": APART, "within": WITHIN}
# An unbounded side of a window of days (far beyond any day number, far from overflow).
_FAR = 10**9


@dataclass
class _Option:
    recipe: int
    rule: int
    source: str
    family: int
    y0: int
    y1: int
    main_only: bool = False
    sex: int = 0                      # 1 female, 2 male: codes of one sex only
    pool: list[tuple] = field(default_factory=list)      # (c1, c2, c3, ver, cat) strings
    except_pool: list[tuple] = field(default_factory=list)


@dataclass
class RecipePlan:
    recipes: tuple[Recipe, ...]
    # per recipe
    rec_group: np.ndarray
    rec_prev: np.ndarray
    rec_age: np.ndarray               # (R, 2) day offsets from birth
    rec_years: np.ndarray             # (R, 2)
    rec_dates: np.ndarray             # (R, 2) day numbers, +-_FAR where unbounded
    rec_emergency: np.ndarray
    rec_prim: list[np.ndarray]
    rec_other: list[np.ndarray]
    rec_also: list[list[int]]
    rec_anchor: np.ndarray            # recipe placed against, -1 for none
    rec_subject: np.ndarray           # recipe whose events are placed, -1 for the own
    rec_feeds: np.ndarray             # its own events are also the subject's (a shared rule)
    rec_rel: np.ndarray               # (R, 2) days after the anchor day, +-_FAR where unbounded
    # per rule
    rule_recipe: np.ndarray
    rule_min: np.ndarray
    rule_needs_other: np.ndarray
    rule_spacing: np.ndarray
    rule_gap: np.ndarray              # whole days: at least this apart, or all within this
    rule_opts: list[np.ndarray]
    # per option
    opt_recipe: np.ndarray
    opt_src: np.ndarray
    opt_family: np.ndarray
    opt_y: np.ndarray                 # (O, 2)
    opt_main_only: np.ndarray
    opt_sex: np.ndarray
    opt_reimb_by_year: np.ndarray
    pool_start: np.ndarray
    pool_len: np.ndarray
    ex_start: np.ndarray
    ex_len: np.ndarray
    pool: np.ndarray                  # (P, 5) string ids: c1, c2, c3, ver, cat
    unreachable: list[str]


def _family(source: str) -> int:
    if source in _HOSPITAL:
        return HOSP
    return {"DEATH": DEATH, "PRIM_OUT": PRIM, "OPER_IN": OPER, "OPER_OUT": OPER,
            "REIMB": REIMB, "PURCH": PURCH, "CANC": CANC}[source]


def _matches(regex: str | None, value: str | None) -> bool:
    return regex is None or (value is not None and re.match(regex, value) is not None)


def _allowed(candidates, regex):
    return [c for c in candidates if _matches(regex, c)]


def _column_shapes(family: int, system: str | None, icdver: str | None) -> tuple[str, str, str]:
    icd = f"icd{icdver}" if icdver in ("10", "9", "8") else "icd10"
    if family in (HOSP, DEATH):
        return icd, "icd10", "atc"
    if family == PRIM:
        return _PRIMARY_SHAPE[system], "any", "any"
    if family == OPER:
        return _OPER_SHAPE[system], "any", "any"
    if family == REIMB:
        return "kela", icd, "any"
    if family == PURCH:
        return "atc", "kela", "vnr"
    return "topography", "morphology", "behaviour"


def _default(family: int, col: int, rnd: random.Random, row: list) -> str | None:
    """A realistic value for an unconstrained column (None: leave it missing)."""
    if family == PURCH:
        if col == 0:
            return rnd.choice(_BUILTIN_ATC)
        if col == 2:
            return rnd.choice(C.vnrs_for(row[0]))
        return None
    if family == CANC:
        return (None, rnd.choice(("8140", "8500", "8070", "8000")), "3")[col] if col else None
    return None


def _sample_row(alt: Alternative, family: int, shapes, rnd: random.Random, *,
                override: tuple[int, str] | None = None) -> list | None:
    """One (c1, c2, c3) satisfying the alternative and none of its excludes; with
    `override=(column, regex)` that column is instead sampled from an `except` regex (and
    must still match the alternative), giving a row the rule selects and then discards."""
    cons = (alt.code1, alt.code2, alt.code3)
    excludes: dict[int, tuple[str, ...]] = {0: (), 1: (), 2: ()}
    for col_name, rx in alt.exclude:
        col = int(col_name[-1]) - 1
        excludes[col] = excludes[col] + (rx,)
    row: list[str | None] = [None, None, None]
    for col in range(3):
        rx = cons[col]
        if override is not None and override[0] == col:
            code = sample_code(override[1], shapes[col], rnd)
            if code is None or not _matches(rx, code):
                return None
        elif rx is not None:
            code = sample_code(rx, shapes[col], rnd, excludes=excludes[col])
            if code is None:
                return None
        else:
            code = _default(family, col, rnd, row)
            if code is None and col == 0:
                code = sample_code("", shapes[0], rnd, excludes=excludes[0])
            if code is not None and any(re.match(e, code) for e in excludes[col]):
                return None
        row[col] = code
    return row


def _known_codes() -> dict[str, tuple[str, ...]]:
    """Codes of the built-in mix per shape: real codes are preferred when they match."""
    out: dict[str, set[str]] = {k: set() for k in ("icd10", "icd9", "icd8", "icpc2", "atc", "kela",
                                                    "nomesco", "hl", "topography")}
    for c in C.CONDITIONS:
        out["icd10"].update(c.icd10)
        out["icd9"].update(c.icd9)
        out["icd8"].update(c.icd8)
        out["icpc2"].update(c.icpc2)
        out["atc"].update(c.atc)
        out["kela"].update(c.kela)
        out["nomesco"].update(c.nomesco + C.GENERIC_OPERATIONS)
        out["hl"].update(c.hl)
        if c.cancer:
            out["topography"].add(c.cancer[0])
    return {k: tuple(sorted(v)) for k, v in out.items()}


_KNOWN = _known_codes()


def _known_matching(shape: str, regex: str, excludes: tuple[str, ...]) -> tuple[str, ...]:
    """Built-in codes of `shape` that `regex` matches and no exclude does."""
    rx = re.compile(regex)
    ex = [re.compile(e) for e in excludes]
    return tuple(c for c in _KNOWN[shape] if rx.match(c) and not any(e.match(c) for e in ex))


def _pool(alt, family, system, seed, k, override=None) -> list[list]:
    """Up to k distinct sampled rows for an alternative (or its `except` rows).

    Identical alternatives recur across endpoints (includes, INPAT and OUTPAT of one rule,
    the same codes in many FinnGen rows), so pools are cached; each is seeded by its own
    description, which keeps them deterministic whatever the order they are asked for in."""
    key = (alt, family, system, k, override, seed)
    hit = _POOL_CACHE.get(key)
    if hit is not None:
        return hit
    rnd = random.Random(f"{seed}|{family}|{system}|{k}|{override}|{alt!r}")
    shapes = _column_shapes(family, system, alt.icdver)
    rows, seen = [], set()
    if override is None and alt.code1 is not None and shapes[0] in _KNOWN:
        # Half the pool from real codes that match, so cases look like real patients.
        excludes = tuple(rx for col, rx in alt.exclude if col == "CODE1")
        known = _known_matching(shapes[0], alt.code1, excludes)
        for code in rnd.sample(known, min(len(known), k // 2)):
            row = _sample_row(replace(alt, code1=re.escape(code) + "$"), family, shapes, rnd)
            if row is not None and tuple(row) not in seen:
                seen.add(tuple(row))
                rows.append(row)
    for _ in range(k * 8):
        if len(rows) >= k:
            break
        row = _sample_row(alt, family, shapes, rnd, override=override)
        if row is not None and tuple(row) not in seen:
            seen.add(tuple(row))
            rows.append(row)
    if len(_POOL_CACHE) > 100_000:
        _POOL_CACHE.clear()
    _POOL_CACHE[key] = rows
    return rows


_POOL_CACHE: dict = {}


def _row_sex(family: int, system: str | None, icdver: str | None, row) -> int:
    shape = _column_shapes(family, system, icdver)[0]
    vocab = _SEX_VOCAB.get(shape)
    s = C.sex_of_code(vocab, row[0]) if vocab and row[0] else None
    return {None: 0, "female": 1, "male": 2}[s]


def _options_for(alt: Alternative, recipe: Recipe, r: int, j: int, seed: int) -> list[_Option]:
    out = []
    # A calendar window leaves a year on each side, for the near misses just outside it.
    first, last = recipe.dates
    y_lo = max(recipe.year[0] if recipe.year[0] is not None else 0, first.year - 1 if first else 0)
    y_hi = min(recipe.year[1] if recipe.year[1] is not None else END_YEAR, last.year + 1 if last else END_YEAR)
    for source in alt.sources:
        family = _family(source)
        if recipe.emergency and family != HOSP and family != OPER:
            continue  # urgency exists only on hospital visits
        if family in (PRIM, OPER):
            table = _PRIMARY_SYSTEMS if family == PRIM else _OPER_SYSTEMS
            systems = [(s, _allowed(cats, alt.category)) for s, cats in table.items()]
        elif family == HOSP:
            systems = [(None, _allowed([str(i) for i in range(4)], alt.category))]
        elif family == DEATH:
            systems = [(None, _allowed(["U", "I", "c1", "c2"], alt.category))]
        else:
            systems = [(None, [None] if alt.category is None else [])]
        for system, cats in systems:
            if not cats:
                continue
            years = source_years(source, alt.icdver, cats[0] if family == OPER else None)
            if years is None:
                continue
            y0, y1 = max(years[0], y_lo), min(years[1], y_hi)
            if recipe.emergency:
                y0 = max(y0, 1996)   # CODE9 is recorded from the ICD-10 era on
            if y0 > y1:
                continue
            opt = _Option(recipe=r, rule=j, source=source, family=family, y0=y0, y1=y1,
                          main_only=(family == HOSP and cats == ["0"]) or (family == DEATH and cats == ["U"]))
            rows = _pool(alt, family, system, seed, _POOL_ROWS)
            if not rows:
                continue
            ver = alt.icdver
            if family == PRIM:
                ver = _PRIMARY_VER[system]
            elif family == OPER:
                ver = system
            elif family == PURCH:
                ver = "ATC"
            elif family == CANC:
                ver = "O3"
            elif family in (HOSP, DEATH) and ver is None:
                ver = "10"
            fixed_cat = cats[0] if family in (PRIM, OPER) else None
            sexes = {_row_sex(family, system, alt.icdver, row) for row in rows}
            opt.sex = sexes.pop() if len(sexes) == 1 else 0
            opt.pool = [(*row, ver, fixed_cat) for row in rows]
            for col, rx in alt.exclude:
                ex_rows = _pool(alt, family, system, seed, _EXCEPT_ROWS, override=(int(col[-1]) - 1, rx))
                opt.except_pool += [(*row, ver, fixed_cat) for row in ex_rows]
            out.append(opt)
    return out


def _recipe_group(recipe: Recipe, death_only: bool) -> int:
    sex = {None: 0, "female": 1, "male": 2}[recipe.sex]
    return sex + (3 if death_only else 0)


def plan_recipes(m: Model, recipes, *, prevalence: float, seed: int) -> RecipePlan:
    names = {rc.endpoint: i for i, rc in enumerate(recipes)}
    opts: list[_Option] = []
    rule_recipe, rule_min, rule_needs, rule_opts, rule_spacing, rule_gap = [], [], [], [], [], []
    rec_prim, rec_other, rec_group, unreachable = [], [], [], []
    for r, rc in enumerate(recipes):
        prim, other = [], []
        death_only = True
        for rule in rc.rules:
            j = len(rule_recipe)
            o0 = len(opts)
            for alt in rule.alternatives:
                opts += _options_for(alt, rc, r, j, seed)
            mine = np.arange(o0, len(opts))
            rule_recipe.append(r)
            rule_min.append(rule.min_events)
            rule_needs.append(rule.needs_other)
            rule_spacing.append(_SPACING[rule.spacing])
            # `apart D` needs whole days >= D between picks; `within D` whole days <= D
            rule_gap.append(0 if rule.spacing is None else
                            math.ceil(rule.spacing_days) if rule.spacing == "apart" else math.floor(rule.spacing_days))
            rule_opts.append(mine)
            if len(mine):
                (other if rule.needs_other else prim).append(j)
                if rule.needs_other is False and any(opts[o].family != DEATH for o in mine):
                    death_only = False
        if not prim:          # only `needs other` rules: let them stand for themselves
            prim, other = other, []
            death_only = death_only and bool(prim)
        if not prim:
            unreachable.append(rc.endpoint)
            log.warning("synthetic data: no registry row can satisfy %s", rc.endpoint)
        rec_prim.append(np.array(prim, dtype=np.int64))
        rec_other.append(np.array(other, dtype=np.int64))
        rec_group.append(_recipe_group(rc, death_only and bool(prim)))

    s = m.strings
    pool_rows, pool_start, pool_len, ex_start, ex_len = [], [], [], [], []
    for o in opts:
        pool_start.append(len(pool_rows))
        pool_len.append(len(o.pool))
        pool_rows += o.pool
        ex_start.append(len(pool_rows))
        ex_len.append(len(o.except_pool))
        pool_rows += o.except_pool
    pool = np.array([[s.id(x) for x in row] for row in pool_rows], dtype=np.int64).reshape(-1, 5)

    def age_days(rc: Recipe) -> tuple[float, float]:
        lo, hi = rc.age
        return ((lo + _AGE_MARGIN_YEARS) * DAYS_PER_YEAR if lo is not None else -1e12,
                (hi - _AGE_MARGIN_YEARS) * DAYS_PER_YEAR if hi is not None else 1e12)

    def day_window(lo, hi) -> tuple[int, int]:
        return (-_FAR if lo is None else lo, _FAR if hi is None else hi)

    relatives = [rc.relative if rc.relative is not None and rc.relative.anchor in names
                 and rc.relative.subject in (None, *names) else None for rc in recipes]
    return RecipePlan(
        recipes=tuple(recipes),
        rec_group=np.array(rec_group, dtype=np.int64),
        rec_prev=np.array([rc.prevalence if rc.prevalence is not None else prevalence for rc in recipes]),
        rec_age=np.array([age_days(rc) for rc in recipes]).reshape(-1, 2),
        rec_years=np.array([(rc.year[0] or 0, rc.year[1] or END_YEAR) for rc in recipes]).reshape(-1, 2),
        rec_dates=np.array([day_window(*(None if d is None else days_from_epoch(d) for d in rc.dates))
                            for rc in recipes], dtype=np.int64).reshape(-1, 2),
        rec_emergency=np.array([rc.emergency for rc in recipes]),
        rec_prim=rec_prim, rec_other=rec_other,
        # the anchor and the endpoint placed against it are endpoints a case also needs
        rec_also=[[names[a] for a in dict.fromkeys(
            (*rc.also, *((rel.anchor, rel.subject) if rel is not None else ()))) if a in names]
            for rc, rel in zip(recipes, relatives)],
        rec_anchor=np.array([names[rel.anchor] if rel is not None else -1 for rel in relatives], dtype=np.int64),
        rec_subject=np.array([names[rel.subject] if rel is not None and rel.subject is not None else -1
                              for rel in relatives], dtype=np.int64),
        rec_rel=np.array([day_window(rel.lo, rel.hi) if rel is not None else (-_FAR, _FAR) for rel in relatives],
                         dtype=np.int64).reshape(-1, 2),
        rec_feeds=np.array([rel is not None and rel.subject is not None
                            and bool(set(rc.rules) & set(recipes[names[rel.subject]].rules))
                            for rc, rel in zip(recipes, relatives)], dtype=bool),
        rule_recipe=np.array(rule_recipe, dtype=np.int64),
        rule_min=np.array(rule_min, dtype=np.int64),
        rule_needs_other=np.array(rule_needs, dtype=bool),
        rule_spacing=np.array(rule_spacing, dtype=np.int64),
        rule_gap=np.array(rule_gap, dtype=np.int64),
        rule_opts=rule_opts,
        opt_recipe=np.array([o.recipe for o in opts], dtype=np.int64),
        opt_src=np.array([SRC[o.source] for o in opts], dtype=np.int64),
        opt_family=np.array([o.family for o in opts], dtype=np.int64),
        opt_y=np.array([(o.y0, o.y1) for o in opts], dtype=np.int64).reshape(-1, 2),
        opt_main_only=np.array([o.main_only for o in opts], dtype=bool),
        opt_sex=np.array([o.sex for o in opts], dtype=np.int64),
        opt_reimb_by_year=np.array([o.family == REIMB and o.pool[0][3] is None for o in opts], dtype=bool),
        pool_start=np.array(pool_start, dtype=np.int64), pool_len=np.array(pool_len, dtype=np.int64),
        ex_start=np.array(ex_start, dtype=np.int64), ex_len=np.array(ex_len, dtype=np.int64),
        pool=pool, unreachable=unreachable,
    )


# --- per block ----------------------------------------------------------------------

def _ragged_pick(rng, lists: list[np.ndarray], which: np.ndarray) -> np.ndarray:
    """For each index in `which`, a random element of lists[which] (-1 when empty)."""
    counts = np.array([len(x) for x in lists], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    flat = np.concatenate(lists + [np.array([-1], dtype=np.int64)]).astype(np.int64)
    c = counts[which]
    idx = offsets[which] + (rng.random(len(which)) * c).astype(np.int64)
    return np.where(c > 0, flat[np.where(c > 0, idx, len(flat) - 1)], -1)


def _pick_people(rng, groups: list[np.ndarray], group: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n[i] random people (with replacement) from groups[group[i]]; returns (owner i, person)."""
    owner = np.repeat(np.arange(len(n)), n)
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate(groups + [np.zeros(1, dtype=np.int64)])
    g = group[owner]
    person = flat[offs[g] + (rng.random(len(owner)) * sizes[g]).astype(np.int64)]
    return owner, person


# Kinds of instance (the events of one rule for one person): what its events are for.
# EXTRA is a case's `needs other` rule until an option is found (it keeps its rule).
CASE, SHORT, ALONE, EXCEPT, EXTRA, SPACED = range(6)
# Kinds of group (the instances one person gets for one recipe) besides CASE, SHORT, ALONE
# and SPACED: everything a case has, with the events one day past the edge of the relation
# (OUT_REL) or calendar (OUT_DATES) window.
OUT_REL, OUT_DATES = 6, 7
# Roles of an instance in its group: events placed against the anchor day (the SUBJECT
# sets where, SUBJECT2 follow), or the anchor's events, the first of them on that day.
PLAIN, SUBJECT, SUBJECT2, ANCHOR = range(4)


class _Instances(Rows):
    """Instances being assembled, and their groups."""

    FIELDS = ("person", "rule", "kind", "rec", "group", "role")

    def __init__(self) -> None:
        super().__init__()
        self.group_rec: list[np.ndarray] = []
        self.group_kind: list[np.ndarray] = []
        self.n_groups = 0

    def new_groups(self, rec: np.ndarray, kind: int) -> np.ndarray:
        self.group_rec.append(rec)
        self.group_kind.append(np.full(len(rec), kind, dtype=np.int64))
        self.n_groups += len(rec)
        return np.arange(self.n_groups - len(rec), self.n_groups, dtype=np.int64)


def _noise_counts(rng, wanted: np.ndarray, size: np.ndarray, prevalence: np.ndarray) -> np.ndarray:
    """Near misses of one kind per recipe or rule. Drawn only where wanted, so that
    definitions without time constructs get the registry they got before them."""
    k = np.zeros(len(wanted), dtype=np.int64)
    k[wanted] = rng.binomial(size[wanted], prevalence[wanted] * _NOISE_SHARE)
    return k


def _add_cases(rng, plan: RecipePlan, inst: _Instances, kind: int, rec: np.ndarray, person: np.ndarray) -> None:
    """Groups of people who are cases of their recipe, or near misses that lack only a
    window: the recipe's own events (one primary rule), those of the endpoints it also
    needs, sometimes plus a `needs other` rule."""
    group = inst.new_groups(rec, kind)
    # Own events are placed where they are the subject's: they are, or they feed it (an
    # endpoint made of `include S` has the rules of S, and its events make S's first date).
    role = np.where(plan.rec_anchor[rec] < 0, PLAIN, np.where(
        plan.rec_subject[rec] < 0, SUBJECT, np.where(plan.rec_feeds[rec], SUBJECT2, PLAIN)))
    parts = [(rec, person, group, role)]
    for r, also in enumerate(plan.rec_also):
        mine = rec == r
        for t in also:
            placed = ANCHOR if t == plan.rec_anchor[r] else SUBJECT if t == plan.rec_subject[r] else PLAIN
            parts.append((np.full(int(mine.sum()), t), person[mine], group[mine], np.full(int(mine.sum()), placed)))
    rec, person, group, role = (np.concatenate(x) for x in zip(*parts))
    rule = _ragged_pick(rng, plan.rec_prim, rec)
    inst.add(person=person, rule=rule, kind=CASE, rec=rec, group=group, role=role)
    other = _ragged_pick(rng, plan.rec_other, rec)
    # an anchor's first event sets the anchor day: no other rule may come before it
    add = (other >= 0) & (rng.random(len(rec)) < 0.4) & (role != ANCHOR)
    inst.add(person=person[add], rule=other[add], kind=EXTRA, rec=rec[add], group=group[add],
             role=np.where(role[add] == SUBJECT, SUBJECT2, role[add]))


def case_events(m: Model, plan: RecipePlan, rng: np.random.Generator, people: People, rows: Rows) -> None:
    R = len(plan.recipes)
    if R == 0:
        return
    n = len(people)
    fem, dead = people.female, people.dead
    everyone = np.arange(n, dtype=np.int64)
    groups = [everyone, everyone[fem], everyone[~fem], everyone[dead], everyone[dead & fem], everyone[dead & ~fem]]
    sizes = np.array([len(g) for g in groups])
    reachable = np.array([len(p) > 0 for p in plan.rec_prim])
    inst = _Instances()

    # --- cases ---------------------------------------------------------------------
    n_case = rng.binomial(sizes[plan.rec_group], plan.rec_prev)
    n_case[~reachable] = 0
    rec, person = _pick_people(rng, groups, plan.rec_group, n_case)
    _add_cases(rng, plan, inst, CASE, rec, person)

    # --- near misses: one event short of `min`; a `needs other` rule on its own; `min`
    # events one day short of their spacing or clustering. Where the recipe places its own
    # events against an anchor, these are placed as a case's would be.
    near = plan.rec_group % 3        # near misses need not be dead
    rule_group = near[plan.rule_recipe]
    rule_prev = plan.rec_prev[plan.rule_recipe]
    has_opts = np.array([len(o) > 0 for o in plan.rule_opts], dtype=bool)
    spaced = (plan.rule_spacing != UNSPACED) & (plan.rule_min > 1)
    for kind, wanted in ((SHORT, plan.rule_min > 1), (ALONE, plan.rule_needs_other), (SPACED, spaced)):
        k = (_noise_counts(rng, wanted & has_opts, sizes[rule_group], rule_prev) if kind == SPACED else
             np.where(wanted & has_opts, rng.binomial(sizes[rule_group], rule_prev * _NOISE_SHARE), 0))
        j, p = _pick_people(rng, groups, rule_group, k)
        r = plan.rule_recipe[j]
        group = inst.new_groups(r, kind)
        placed = (plan.rec_anchor[r] >= 0) & (plan.rec_subject[r] < 0)
        inst.add(person=p, rule=j, kind=kind, rec=r, group=group, role=np.where(placed, SUBJECT, PLAIN))
        anchor = plan.rec_anchor[r[placed]]
        inst.add(person=p[placed], rule=_ragged_pick(rng, plan.rec_prim, anchor), kind=CASE, rec=anchor,
                 group=group[placed], role=ANCHOR)
    # ... and everything a case has, with the events one day outside the window
    dated = (plan.rec_dates[:, 0] > -_FAR) | (plan.rec_dates[:, 1] < _FAR)
    for kind, wanted in ((OUT_REL, plan.rec_anchor >= 0), (OUT_DATES, dated)):
        rec, person = _pick_people(rng, groups, near, _noise_counts(rng, wanted & reachable, sizes[near], plan.rec_prev))
        _add_cases(rng, plan, inst, kind, rec, person)

    cols = {k: v.astype(np.int64) for k, v in inst.concat().items()}
    ok = cols["rule"] >= 0
    person, rule, kind, rec, group, role = (cols[f][ok] for f in _Instances.FIELDS)
    g_rec = np.concatenate(inst.group_rec) if inst.group_rec else np.zeros(0, dtype=np.int64)
    g_kind = np.concatenate(inst.group_kind) if inst.group_kind else np.zeros(0, dtype=np.int64)

    # --- an option (register, era) that fits each person, tried a few times --------
    # Anchors come after the others: their day depends on where the group's events can go.
    opt = np.full(len(rule), -1, dtype=np.int64)
    lo = np.zeros(len(rule), dtype=np.int64)
    hi = np.zeros(len(rule), dtype=np.int64)
    pin = np.zeros(len(rule), dtype=np.int64)
    beside = (g_kind[group] == OUT_DATES) & (rec == g_rec[group])
    for attempt in range(8):
        todo = np.nonzero((opt < 0) & (role != ANCHOR))[0]
        if not len(todo):
            break
        if attempt:
            # A case whose rule fits nobody like this person (a death rule for someone
            # alive, ICD-10 for someone who died in 1990) tries another of its rules.
            again = todo[kind[todo] == CASE]
            rule[again] = _ragged_pick(rng, plan.rec_prim, rec[again])
        cand = _ragged_pick(rng, plan.rule_opts, rule[todo])
        l, h, p, feasible = _window(plan, people, person[todo], cand, _need(plan, rule[todo], kind[todo]),
                                    beside[todo], rng)
        good = feasible & (cand >= 0)
        opt[todo[good]], lo[todo[good]], hi[todo[good]], pin[todo[good]] = cand[good], l[good], h[good], p[good]
    kind = np.where(kind == EXTRA, CASE, kind)
    _place_against_anchors(rng, plan, people, (person, rule, kind, rec, group, role), g_rec, g_kind,
                           opt, lo, hi, pin)
    use_except = np.zeros(len(opt), dtype=bool)

    # --- `except` noise: rows the rule selects but then discards -------------------
    has_ex = np.nonzero(plan.ex_len > 0)[0]
    if len(has_ex):
        g = plan.rec_group[plan.opt_recipe[has_ex]] % 3
        k = rng.binomial(sizes[g], plan.rec_prev[plan.opt_recipe[has_ex]] * _NOISE_SHARE)
        which, p = _pick_people(rng, groups, g, k)
        o = has_ex[which]
        l, h, _, feasible = _window(plan, people, p, o)
        f = int(feasible.sum())
        person = np.concatenate([person, p[feasible]])
        kind = np.concatenate([kind, np.full(f, EXCEPT)])
        rule = np.concatenate([rule, np.full(f, -1)])
        opt = np.concatenate([opt, o[feasible]])
        lo = np.concatenate([lo, l[feasible]])
        hi = np.concatenate([hi, h[feasible]])
        pin = np.concatenate([pin, np.zeros(f, dtype=np.int64)])
        use_except = np.concatenate([use_except, np.ones(f, dtype=bool)])
    keep = opt >= 0
    person, rule, kind, opt, lo, hi, pin, use_except = (
        x[keep] for x in (person, rule, kind, opt, lo, hi, pin, use_except))
    if not len(opt):
        return
    _emit(m, plan, rng, people, rows, person, rule, kind, opt, lo, hi, pin, use_except)


def _sides(rng, below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Which side of a window each near miss goes to, where its lower (`below`) and upper
    (`above`) edges are bounded: -1 before it, 1 after it, at random where both are, 0
    where neither is."""
    after = np.where(below & above, rng.random(len(below)) < 0.5, above)
    return np.where(below | above, np.where(after, 1, -1), 0)


def _need(plan: RecipePlan, rule: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Whole days the events of each instance need: the first and last of a spaced `min`
    are (min - 1) gaps apart (a miss one day less), a clustering miss spans one day more
    than its window; everything else fits in a day."""
    r = np.maximum(rule, 0)
    n, gap = plan.rule_min[r], plan.rule_gap[r]
    spacing = np.where((rule >= 0) & (kind != SHORT), plan.rule_spacing[r], UNSPACED)
    miss = kind == SPACED
    return np.select([spacing == APART, (spacing == WITHIN) & miss], [(n - 1) * gap - miss, gap + 1], 0)


def _place_against_anchors(rng, plan: RecipePlan, people: People, inst, g_rec, g_kind, opt, lo, hi, pin) -> None:
    """Give each group's anchor its option and day, and the group's placed events their
    windows against that day (in place).

    The group's SUBJECT already has an option; the anchor day is drawn so that the
    subject's window against it (in a near miss, the window beyond its edge, with the
    first event on the day past it) still holds the subject's events and, from that day
    on, the anchor's. A group whose anchor finds no day loses its placed events."""
    person, rule, kind, rec, group, role = inst
    anc = np.nonzero(role == ANCHOR)[0]
    first = np.full(len(g_rec), -1, dtype=np.int64)
    subject = np.nonzero(role == SUBJECT)[0]
    first[group[subject]] = subject
    s = np.maximum(first[group[anc]], 0)
    rel = plan.rec_rel[g_rec[group[anc]]]
    r_lo, r_hi = rel[:, 0], rel[:, 1]
    side = np.where(g_kind[group[anc]] == OUT_REL, _sides(rng, r_lo > -_FAR, r_hi < _FAR), 0)
    e_lo = np.select([side > 0, side < 0], [r_hi + 1, -_FAR], r_lo)
    e_hi = np.select([side > 0, side < 0], [_FAR, r_lo - 1], r_hi)
    s_lo, s_hi, s_pin, s_need = lo[s], hi[s], pin[s], _need(plan, rule[s], kind[s])
    # The subject's window against day a is [max(s_lo, a + e_lo), min(s_hi, a + e_hi)]: it
    # must hold s_need days, reach the edge of a near miss (side), and keep a day already
    # pinned beside a calendar window (s_pin).
    low = np.maximum.reduce([s_lo + s_need - e_hi, np.where(side > 0, s_lo - e_lo, -_FAR),
                             np.where(s_pin == 2, s_hi - e_hi, -_FAR)])
    high = np.minimum.reduce([s_hi - s_need - e_lo, np.where(side < 0, s_hi - e_hi, _FAR),
                              np.where(s_pin == 1, s_lo - e_lo, _FAR)])
    live = (first[group[anc]] >= 0) & (opt[s] >= 0) & (e_hi - e_lo >= s_need)
    day = np.zeros(len(anc), dtype=np.int64)
    for attempt in range(8):
        todo = np.nonzero(live & (opt[anc] < 0))[0]
        if not len(todo):
            break
        i = anc[todo]
        if attempt:
            rule[i] = _ragged_pick(rng, plan.rec_prim, rec[i])
        cand = _ragged_pick(rng, plan.rule_opts, rule[i])
        l, h, _, feasible = _window(plan, people, person[i], cand)
        a_lo = np.maximum(l, low[todo])
        a_hi = np.minimum(h - _need(plan, rule[i], kind[i]), high[todo])
        a = np.minimum(a_lo + (rng.random(len(i)) * (a_hi - a_lo + 1)).astype(np.int64), a_hi)
        good = feasible & (cand >= 0) & (a_lo <= a_hi)
        opt[i[good]], lo[i[good]], hi[i[good]], pin[i[good]] = cand[good], a[good], h[good], 1
        day[todo[good]] = a[good]

    placed = opt[anc] >= 0
    g_day = np.zeros(len(g_rec), dtype=np.int64)
    g_lo = np.full(len(g_rec), _FAR, dtype=np.int64)   # an empty window: nothing fits
    g_hi = np.full(len(g_rec), -_FAR, dtype=np.int64)
    g_side = np.zeros(len(g_rec), dtype=np.int64)
    at = group[anc[placed]]
    g_day[at], g_lo[at], g_hi[at], g_side[at] = day[placed], e_lo[placed], e_hi[placed], side[placed]
    j = np.nonzero((role == SUBJECT) | (role == SUBJECT2))[0]
    gj = group[j]
    new_lo = np.maximum(lo[j], g_day[gj] + g_lo[gj])
    new_hi = np.minimum(hi[j], g_day[gj] + g_hi[gj])
    fits = (opt[j] >= 0) & (new_hi - new_lo >= _need(plan, rule[j], kind[j]))
    lo[j], hi[j] = new_lo, new_hi
    edge = (role[j] == SUBJECT) & (g_side[gj] != 0)
    pin[j] = np.where(edge, np.where(g_side[gj] > 0, 1, 2), pin[j])
    opt[j[~fits]] = -1


def _window(plan: RecipePlan, people: People, person: np.ndarray, opt: np.ndarray, need=0,
            beside: np.ndarray | None = None, rng=None):
    """Feasible day range of each (person, option): age and calendar windows, era,
    follow-up, sex, room for `need` days; and the day pinned (1 first, 2 last) where a near
    miss goes `beside` the calendar window, from the day past its edge on."""
    o = np.maximum(opt, 0)
    r = plan.opt_recipe[o]
    birth, fu_end = people.birth[person], people.fu_end[person]
    first, last = plan.rec_dates[r, 0], plan.rec_dates[r, 1]
    side = np.zeros(len(o), dtype=np.int64)
    if beside is not None and beside.any():
        side = np.where(beside, _sides(rng, first > -_FAR, last < _FAR), 0)
        first, last = (np.select([side > 0, side < 0], [last + 1, -_FAR], first),
                       np.select([side > 0, side < 0], [_FAR, first - 1], last))
    lo = np.maximum.reduce([birth + np.ceil(plan.rec_age[r, 0]).clip(-1e9, 1e9).astype(np.int64),
                            year_start_day(plan.opt_y[o, 0]), birth, first])
    hi = np.minimum.reduce([birth + np.floor(plan.rec_age[r, 1]).clip(-1e9, 1e9).astype(np.int64),
                            year_end_day(plan.opt_y[o, 1]), fu_end, last])
    sex = plan.opt_sex[o]
    fem = people.female[person]
    ok = (lo <= hi) & ((sex == 0) | ((sex == 1) & fem) | ((sex == 2) & ~fem))
    ok &= ((side <= 0) | (lo == first)) & ((side >= 0) | (hi == last))
    # A death row sits on the day of death, of people who died.
    is_death = plan.opt_family[o] == DEATH
    ok &= ~is_death | (people.dead[person] & (fu_end >= lo) & (fu_end <= hi))
    lo = np.where(is_death, fu_end, lo)
    hi = np.where(is_death, fu_end, hi)
    ok &= hi - lo >= need
    return lo, hi, np.select([side > 0, side < 0], [1, 2], 0), ok & (opt >= 0)


def _lay_out(rng, plan: RecipePlan, day, e, n_ev, rule, kind, lo, hi, pin):
    """Days of the events that may not fall just anywhere in their window: the first `min`
    of a spaced or clustered rule, laid out as it asks (SPACED: one day short of it), and
    the pinned first (pin 1) or last (pin 2) day of an anchor or near miss."""
    r = np.maximum(rule, 0)
    n, gap = plan.rule_min[r], plan.rule_gap[r]
    spacing = np.where((rule >= 0) & (kind != SHORT), plan.rule_spacing[r], UNSPACED)
    if not (pin.any() or (spacing != UNSPACED).any()):
        return day
    room, miss = hi - lo, kind == SPACED
    shape = rng.random((3, len(lo)))
    # `apart`: picks `gap` days apart, stretched at random but for half of them, which sit
    # exactly on the bound; a miss has its last gap one day short.
    stretch = np.where(shape[0] < 0.5, 0, (shape[1] * (room - _need(plan, rule, kind) + 1)
                                           / np.maximum(n - 1, 1)).astype(np.int64))
    step = gap + stretch
    # `within`: a cluster as long as the window (half of them) or shorter; a miss has its
    # last event one day too far.
    longest = np.minimum(gap, room)
    cluster = np.where(miss, gap + 1, np.where(shape[0] < 0.5, longest, (shape[1] * (longest + 1)).astype(np.int64)))
    span = np.select([spacing == APART, spacing == WITHIN],
                     [np.where(miss, (n - 2) * step + gap - 1, (n - 1) * step), cluster], 0)
    start = np.select([pin == 1, pin == 2], [lo, hi - span],
                      lo + (shape[2] * (room - span + 1)).astype(np.int64))
    k = within(n_ev)
    last = k == n[e] - 1
    middle = (rng.random(len(e)) * (np.where(miss, gap, span)[e] + 1)).astype(np.int64)
    offset = np.select([spacing[e] == APART, spacing[e] == WITHIN],
                       [np.where(miss[e] & last, (n[e] - 2) * step[e] + gap[e] - 1, k * step[e]),
                        np.where(k == 0, 0, np.where(last, span[e], middle))], 0)
    laid = (spacing[e] != UNSPACED) & (k < n[e])
    day = np.where(laid, start[e] + offset, day)
    return np.where(~laid & (k == 0) & (pin[e] == 1), lo[e], np.where(~laid & (k == 0) & (pin[e] == 2), hi[e], day))


def _emit(m, plan, rng, people, rows, person, rule, kind, opt, lo, hi, pin, use_except) -> None:
    fam = plan.opt_family[opt]
    mins = np.where(rule >= 0, plan.rule_min[np.maximum(rule, 0)], 1)
    n_ev = np.where(kind == SHORT, mins - 1, mins) + np.where(kind == CASE, rng.poisson(0.3, len(opt)), 0)
    n_ev = np.where(fam == DEATH, 1, np.maximum(n_ev, 1))
    # One code row per person and option: a `min 3` purchase repeats the same drug.
    start = np.where(use_except, plan.ex_start[opt], plan.pool_start[opt])
    length = np.where(use_except, plan.ex_len[opt], plan.pool_len[opt])
    prow = start + (rng.random(len(opt)) * length).astype(np.int64)

    e = np.repeat(np.arange(len(opt)), n_ev)
    p = person[e]
    f = fam[e]
    day = lo[e] + (rng.random(len(e)) * (hi[e] - lo[e] + 1)).astype(np.int64)
    day = np.minimum(day, hi[e])
    day = _lay_out(rng, plan, day, e, n_ev, rule, kind, lo, hi, pin)
    year = year_of(day)
    ver_num = icd_version(year).astype(np.int64)
    c1, c2, c3, ver, cat = (plan.pool[prow[e], i] for i in range(5))
    ver = np.where(plan.opt_reimb_by_year[opt[e]], ver_id(m, ver_num), ver)
    src = plan.opt_src[opt[e]]
    emergency = plan.rec_emergency[plan.opt_recipe[opt[e]]]
    visit = np.where(f == DEATH, death_visit(people)[p], rows.visits(len(e)))

    hosp = f == HOSP
    main = hosp & (plan.opt_main_only[opt[e]] | (rng.random(len(e)) < 0.75))
    cat = np.where(hosp, np.where(main, m.hosp_cat[0], m.hosp_cat[1]), cat)
    urg = np.where(emergency | (rng.random(len(e)) < 0.2), m.urgency[1], m.urgency[0])
    c9 = np.where((hosp | (f == OPER)) & (year >= 1996), urg, 0)
    c4 = np.where(f == PURCH, m.num[1], np.where(src == SRC["INPAT"], m.num[3], 0))
    # Death rows: a `main` rule needs the underlying cause; others take any role.
    dpref = np.where(f == DEATH, np.where(plan.opt_main_only[opt[e]], 0,
                                          np.where(rng.random(len(e)) < 0.5, 1, 3)), 0)
    order = np.where(hosp & ~main, 1, np.where(f == OPER, 30, 0))
    rows.add(person=p, day=day, src=src, c1=c1, c2=c2, c3=c3, c4=c4, ver=ver, cat=cat,
             c9=c9, visit=visit, order=order, dpref=dpref)

    # Side diagnoses and operations need the visit's main diagnosis beside them.
    need = np.nonzero((hosp & ~main) | (f == OPER))[0]
    if len(need):
        v = ver_num[need]
        filler = np.zeros(len(need), dtype=np.int64)
        for k in (10, 9, 8):
            s = v == k
            filler[s] = m.filler[k][rng.integers(0, len(m.filler[k]), int(s.sum()))]
        fsrc = np.where(src[need] == SRC["OPER_IN"], SRC["INPAT"],
                        np.where(src[need] == SRC["OPER_OUT"], SRC["OUTPAT"], src[need]))
        rows.add(person=p[need], day=day[need], src=fsrc, c1=filler, ver=ver_id(m, v),
                 cat=m.hosp_cat[0], c9=c9[need], visit=visit[need], order=0,
                 c4=np.where(fsrc == SRC["INPAT"], m.num[3], 0))
