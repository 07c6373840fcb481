"""Hypothesis strategies for random valid plans (endpointc.plan) and small registries.

Alphabets are tiny so that patterns hit: codes are short strings over "AB12", ages and
years come from a few values (ties happen), a few INDEX values are shared so emergency
propagates, some events belong to people absent from the people table, and every column
may be null. Days are few and a whole number of days apart that the drawn durations hit
exactly, or miss by one (1, 30, 31, 365 and 366 days; 365.25 lies between), and some rows
come again on other days, so that windows, spaced and clustered `min` meet their edges.
Random programs hold every plan node: dates, durations, shifts, day differences and
relations in `when` and `require`, other endpoints' facts in `when`, an endpoint's own
facts in its `require`, spaced and clustered `min`; `programs(kind="time")` keeps rules
broad and conditions about dates only, so that most rows reach a window.

`NODE_STRATEGIES` maps every plan model class to a strategy producing it;
`tests/test_differential.py` fails when endpointc.plan grows a class missing here.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import strategies as st
from pydantic import BaseModel

from endpointc import plan as P

__all__ = [
    "NODE_STRATEGIES", "code_sets", "column_tests", "branches", "rule_plans", "event_conds",
    "person_conds", "endpoint_plans", "programs", "registries", "EVENT_SCHEMA", "PEOPLE_SCHEMA",
]

# few values everywhere, so that random patterns select rows and people have many events
SOURCES = ("INPAT", "OUTPAT", "PURCH")
CODES = ("A", "A1", "A2", "A11", "A12", "A21", "B", "B1", "B12", "", "1")
ALPHABET = {
    "CODE1": CODES, "CODE2": CODES, "CODE3": CODES,
    "ICDVER": ("9", "10"),
    "CATEGORY": ("0", "1", "ICP"),
}
# the patterns drawn: short prefixes hit often, long ones rarely
PATTERN_CODES = ("", "A", "A", "A1", "A1", "B", "B1", "A11", "A2", "1")
# regexes over the alphabet, incl. constructs Rust's regex cannot run (lookahead) or reads
# differently, so the engine's Python fallback is exercised too
REGEXES = ("A[12]", "B.?1", "A1|B", "[AB]2$", "A1{2}", "1", ".*2", "A(?=1)", "(?!A)", "$",
           "[^A]", "ICD|IC", "1?0", "[89]")
# 47.123456789 is no whole number of hundredths: such a table orders events by AGE rank
AGES = (None, 10.0, 20.5, 20.5, 35.0, 40.0, 60.25, 47.123456789)
_D0 = dt.date(2000, 1, 1)  # 2000 is a leap year: 2001-01-01 is 366 days after it
DATES = tuple(_D0 + dt.timedelta(days=d) for d in (-1, 0, 1, 30, 31, 365, 366)) + (dt.date(2005, 6, 1),)
DAYS = (None, None, _D0, *DATES)  # ties: the same day twice as often
# durations in days: differences of DATES, one less or more, and between (365.25)
DURATIONS = (0.0, 0.5, 1.0, 29.0, 30.0, 31.0, 365.0, 365.25, 366.0, 2000.0)
SPACINGS = (0.5, 1.0, 30.0, 31.0, 365.0, 365.25, 366.0)
PEOPLE_IDS = tuple(f"P{i}" for i in range(4))
EVENT_IDS = PEOPLE_IDS + ("X1",)  # X*: absent from the people table

EVENT_SCHEMA = {
    "FINNGENID": pl.String, "SOURCE": pl.String, "EVENT_AGE": pl.Float64,
    "APPROX_EVENT_DAY": pl.Date, "CODE1": pl.String, "CODE2": pl.String, "CODE3": pl.String,
    "CODE4": pl.String, "ICDVER": pl.String, "CATEGORY": pl.String, "INDEX": pl.String,
    "CODE9": pl.String,
}
PEOPLE_SCHEMA = {
    "FINNGENID": pl.String, "SEX": pl.String, "APPROX_BIRTH_DATE": pl.Date,
    "FU_END_AGE": pl.Float64, "DEATH": pl.Int64,
}


def _tuple(elements, *, max_size: int, min_size: int = 0):
    return st.lists(elements, min_size=min_size, max_size=max_size, unique=True).map(tuple)


def code_sets(column: str = "CODE1") -> st.SearchStrategy[P.CodeSet]:
    return _CODE_SETS[column]


def _code_sets(column: str) -> st.SearchStrategy[P.CodeSet]:
    values = PATTERN_CODES if column.startswith("CODE") else ALPHABET[column]
    some = _tuple(st.sampled_from(values), min_size=1, max_size=2)
    sets = st.one_of(
        st.builds(P.CodeSet, prefixes=some),
        st.builds(P.CodeSet, prefixes=some, exact=some),
        st.builds(P.CodeSet, exact=some),
        st.builds(P.CodeSet, prefixes=some, regexes=_tuple(st.sampled_from(REGEXES), min_size=1, max_size=1)),
        st.builds(P.CodeSet, regexes=_tuple(st.sampled_from(REGEXES), min_size=1, max_size=2)),
    )
    return st.one_of(*[sets] * 19, st.just(P.CodeSet()))  # `none` (empty) now and then


# strategies are built once: building them inside draws makes generation 10x slower
_CODE_SETS = {column: _code_sets(column) for column in P.CODE_COLUMNS}
_ROLES = st.sampled_from(("pattern",) * 5 + ("pin", "main", "with_atc"))


def _column_test(column: str) -> st.SearchStrategy[P.ColumnTest]:
    # A pattern test keeps its codes as one written pattern: `written` is for display only.
    def build(codes: P.CodeSet, role: str) -> P.ColumnTest:
        written = (P.Written(text=f"pattern of {column}", codes=codes),) if role == "pattern" else ()
        return P.ColumnTest(column=column, codes=codes, role=role, written=written)
    return st.builds(build, _CODE_SETS[column], _ROLES)


_COLUMN_TESTS = st.sampled_from(("CODE1",) * 4 + P.CODE_COLUMNS).flatmap(_column_test)


def column_tests() -> st.SearchStrategy[P.ColumnTest]:
    return _COLUMN_TESTS


branches = st.builds(
    P.Branch,
    sources=_tuple(st.sampled_from(SOURCES), min_size=2, max_size=3) | _tuple(
        st.sampled_from(SOURCES), min_size=1, max_size=1),
    tests=_tuple(_COLUMN_TESTS, min_size=1, max_size=1) | _tuple(_COLUMN_TESTS, max_size=2),
    # an empty conjunction is valid in the plan (it discards everything); keep it rare
    excepts=st.just(()) | _tuple(
        st.one_of(*[_tuple(_COLUMN_TESTS, min_size=1, max_size=2)] * 9, st.just(())), max_size=2),
)


def _rule_plan(*, branches: tuple[P.Branch, ...], **fields) -> P.RulePlan:
    rows = tuple(dict.fromkeys(s for b in branches for s in b.sources))
    return P.RulePlan(branches=branches, source_rows=rows, **fields)


def _spaced_rule(*, spacing: tuple[str | None, float | None, int | None], min_events: int,
                 **fields) -> P.RulePlan:
    kind, days, spaced_min = spacing
    return _rule_plan(spacing=kind, spacing_days=days, min_events=spaced_min or min_events, **fields)


# (kind, D, N): a spaced or clustered `min` of 1 only asks for a dated event, so N is
# mostly 2 or 3, where the edges of D decide
_SPACING = st.one_of(*[st.just((None, None, None))] * 3,
                     st.tuples(st.sampled_from(("apart", "within")), st.sampled_from(SPACINGS),
                               st.sampled_from((1, 2, 2, 2, 3))))


def rule_plans(index: int = 0, *, spacing: st.SearchStrategy = _SPACING) -> st.SearchStrategy[P.RulePlan]:
    return st.builds(
        _spaced_rule, index=st.just(index),
        source=st.sampled_from(("hospital", "purchase", "cancer", "death")),
        branches=_tuple(branches, min_size=1, max_size=2),
        min_events=st.sampled_from((1, 1, 1, 1, 2, 3)),
        spacing=spacing,
        needs_other=st.sampled_from((False, False, True)),
        mode=st.sampled_from((False, False, True)),
    )


_RULES = [rule_plans(i) for i in range(3)]

# -- conditions ---------------------------------------------------------------------

consts = st.builds(P.Const, value=st.sampled_from((0.0, 1.0, 2.0, 20.5, 30.0, 2000.0, 2005.0)))
event_values = st.one_of(consts, st.builds(P.EventField, name=st.sampled_from(("age", "year"))))
_OPS = st.sampled_from(("<", "<=", ">", ">=", "==", "!="))


def _logic(atoms):
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            st.builds(P.AllOf, args=_tuple(inner, max_size=3)),
            st.builds(P.AnyOf, args=_tuple(inner, max_size=3)),
            st.builds(P.Negate, arg=inner),
        ),
        max_leaves=4,
    )


# person terms are drawn over placeholder names #0..#4, then renamed to real endpoints
_SLOTS = tuple(f"#{i}" for i in range(5))
_slot = st.sampled_from(_SLOTS)
_person_values = st.one_of(
    consts, st.builds(P.Count, endpoint=_slot), st.builds(P.FirstAge, endpoint=_slot),
    st.builds(P.FirstYear, endpoint=_slot),
)
durations = st.builds(P.Duration, days=st.sampled_from(DURATIONS))
date_consts = st.builds(P.DateConst, value=st.sampled_from(DATES))
_first_dates = st.builds(P.FirstDate, endpoint=_slot)
_EVENT_DATE = st.just(P.EventField(name="date"))


def _time(subjects, anchors):
    """Truth values about dates: a subject (the event's date in `when`) against an anchor
    (a date constant, another endpoint's first date), shifted or not: comparisons, day
    differences against durations, relations."""
    shifted = st.one_of(anchors, st.builds(P.Shift, date=anchors, sign=st.sampled_from((1, -1)), by=durations))
    between = st.one_of(st.builds(P.Between, later=subjects, earlier=anchors),
                        st.builds(P.Between, later=anchors, earlier=subjects))
    return st.one_of(
        st.builds(P.Cmp, op=_OPS, left=subjects, right=shifted),
        st.builds(P.Cmp, op=_OPS, left=shifted, right=subjects),
        st.builds(P.Cmp, op=_OPS, left=between, right=durations),
        st.builds(P.Cmp, op=_OPS, left=durations, right=between),
        st.builds(P.Relation, subject=subjects, relation=st.sampled_from(("within_after", "within_before")),
                  anchor=shifted, window=durations),
        st.builds(P.Relation, subject=subjects, relation=st.sampled_from(("after", "before")), anchor=shifted),
    )


_EVENT_ATOMS = (
    st.builds(P.Cmp, op=_OPS, left=event_values, right=event_values),
    st.just(P.EventField(name="emergency")),
)
_PERSON_ATOMS = (
    st.builds(P.IsCase, endpoint=_slot),
    st.builds(P.Cmp, op=_OPS, left=_person_values, right=_person_values),
)
_EVENT_TIME = _time(_EVENT_DATE | date_consts, date_consts | _EVENT_DATE)
# `when` about the event's date and the person's other endpoints' first dates
_WHEN_TIME = _time(_EVENT_DATE, st.one_of(date_consts, _first_dates, _first_dates, _EVENT_DATE))
_PERSON_TIME = _time(_first_dates, date_consts | _first_dates)
_EVENT_CONDS = _logic(st.one_of(*_EVENT_ATOMS, _EVENT_TIME))
# `when` over event fields and the person's facts about other endpoints
_WHEN_TEMPLATES = _logic(st.one_of(*_EVENT_ATOMS, *_PERSON_ATOMS, _WHEN_TIME))
_PERSON_TEMPLATES = _logic(st.one_of(*_PERSON_ATOMS, _PERSON_TIME))


def event_conds() -> st.SearchStrategy:
    """`when` conditions without endpoint facts: comparisons of age/year/date/constants,
    day differences, relations, emergency, and logic."""
    return _EVENT_CONDS


def _rename(cond, names: tuple[str, ...]):
    if isinstance(cond, P.EndpointFact):
        return cond.model_copy(update={"endpoint": names[int(cond.endpoint[1:]) % len(names)]})
    update = {}
    for field in type(cond).model_fields:
        value = getattr(cond, field)
        if isinstance(value, BaseModel):
            update[field] = _rename(value, names)
        elif isinstance(value, tuple):
            update[field] = tuple(_rename(v, names) for v in value)
    return cond.model_copy(update=update) if update else cond


def person_conds(names: tuple[str, ...]) -> st.SearchStrategy:
    """`require`/controls conditions over the endpoints `names` (non-empty)."""
    return _PERSON_TEMPLATES.map(lambda c: _rename(c, names))


# -- endpoints and programs -------------------------------------------------------------

_MAYBE_WHEN = st.one_of(st.none(), st.none(), _EVENT_CONDS)
_MAYBE_PERSON_WHEN = st.one_of(st.none(), st.none(), _EVENT_CONDS, _WHEN_TEMPLATES)
_MAYBE_PERSON = st.one_of(st.none(), st.none(), _PERSON_TEMPLATES)
_SEXES = st.sampled_from((None, None, None, "female", "male"))
_PICKS = st.lists(st.integers(0, 10), max_size=3)

# Time programs: broad rules (every code, or those starting with A or B) so that most rows
# reach `when`, and conditions about dates only, so that window edges decide.
_BROAD_BRANCHES = st.sampled_from(("", "A", "B")).map(lambda prefix: (P.Branch(
    sources=SOURCES, tests=(P.ColumnTest(column="CODE1", codes=P.CodeSet(prefixes=(prefix,))),)),))
_BROAD_RULES = [st.builds(_spaced_rule, index=st.just(i), source=st.just("hospital"), branches=_BROAD_BRANCHES,
                          min_events=st.sampled_from((1, 1, 2)), spacing=_SPACING) for i in range(3)]
_TIME_WHEN = st.one_of(st.none(), _EVENT_TIME, _logic(_EVENT_TIME))
_TIME_PERSON_WHEN = st.one_of(st.none(), _WHEN_TIME, _logic(_WHEN_TIME))
_TIME_PERSON = st.one_of(st.none(), _PERSON_TIME, _logic(_PERSON_TIME))
# Plain programs: no dates, time relations or spaced `min` (what the SQL baseline translates).
_PLAIN_RULES = [rule_plans(i, spacing=st.just((None, None, None))) for i in range(3)]
_PLAIN_WHEN = st.one_of(st.none(), st.none(), _logic(st.one_of(*_EVENT_ATOMS)))
_PLAIN_PERSON_WHEN = st.one_of(_PLAIN_WHEN, _logic(st.one_of(*_EVENT_ATOMS, *_PERSON_ATOMS)))
_PLAIN_PERSON = st.one_of(st.none(), st.none(), _logic(st.one_of(*_PERSON_ATOMS)))
# per kind of program: rules by index, `when` of the first endpoint and of the others,
# `require` and controls' `require`
_DRAWS = {
    "any": (_RULES, _MAYBE_WHEN, _MAYBE_PERSON_WHEN, _MAYBE_PERSON),
    "time": (_BROAD_RULES, _TIME_WHEN, _TIME_PERSON_WHEN, _TIME_PERSON),
    "plain": (_PLAIN_RULES, _PLAIN_WHEN, _PLAIN_PERSON_WHEN, _PLAIN_PERSON),
}


@st.composite
def endpoint_plans(draw, name: str = "E0", earlier: tuple[str, ...] = (), kind: str = "any") -> P.EndpointPlan:
    rule_draws, first_when, when_draws, person_draws = _DRAWS[kind]
    n_rules = draw(st.sampled_from((0, 1, 1, 2, 3) if earlier else (1, 1, 2, 3)))
    rules = tuple(draw(rule_draws[i]) for i in range(n_rules))

    def pick(k: int) -> tuple[str, ...]:
        if not earlier:
            return ()
        return tuple(dict.fromkeys(earlier[i % len(earlier)] for i in draw(_PICKS)[:k]))

    def person(names: tuple[str, ...]):
        cond = draw(person_draws)
        return _rename(cond, names) if (cond is not None and names) else None

    # `when` may read other endpoints' facts; `require` its own too (its candidate events)
    when = draw(when_draws if earlier else first_when)
    return P.EndpointPlan(
        name=name, rules=rules, includes=pick(3), when=_rename(when, earlier) if when is not None else None,
        require=person(earlier + (name,)), sex=draw(_SEXES), control_exclude=pick(2),
        control_require=person(earlier),
    )


@st.composite
def programs(draw, max_endpoints: int = 5, kind: str = "any") -> P.Program:
    """Endpoints E0..En, each depending only on earlier ones (so chains of includes).
    `kind` "time": broad rules and conditions about dates only (see `_BROAD_RULES`);
    "plain": no dates, time relations or spaced `min` (see `_PLAIN_RULES`)."""
    n = draw(st.integers(1, max_endpoints))
    eps = []
    for i in range(n):
        eps.append(draw(endpoint_plans(f"E{i}", tuple(ep.name for ep in eps), kind)))
    return P.Program(endpoints=tuple(eps))


NODE_STRATEGIES: dict[type, st.SearchStrategy] = {
    P.CodeSet: code_sets(),
    P.ColumnTest: column_tests(),
    P.Written: st.builds(P.Written, text=st.just("E11"), codes=code_sets()),
    P.Branch: branches,
    P.RulePlan: rule_plans(),
    P.Const: consts,
    P.EventField: st.builds(P.EventField, name=st.sampled_from(P.EVENT_FIELDS)),
    P.IsCase: st.builds(P.IsCase, endpoint=st.just("E0")),
    P.Count: st.builds(P.Count, endpoint=st.just("E0")),
    P.FirstAge: st.builds(P.FirstAge, endpoint=st.just("E0")),
    P.FirstYear: st.builds(P.FirstYear, endpoint=st.just("E0")),
    P.FirstDate: st.builds(P.FirstDate, endpoint=st.just("E0")),
    P.DateConst: date_consts,
    P.Duration: durations,
    P.Shift: st.builds(P.Shift, date=_EVENT_DATE | date_consts, sign=st.sampled_from((1, -1)), by=durations),
    P.Between: st.builds(P.Between, later=_EVENT_DATE, earlier=date_consts),
    P.Relation: st.builds(P.Relation, subject=_EVENT_DATE, relation=st.just("within_after"), anchor=date_consts,
                          window=durations),
    P.Cmp: st.builds(P.Cmp, op=_OPS, left=event_values, right=event_values),
    P.AllOf: st.builds(P.AllOf, args=_tuple(_EVENT_CONDS, max_size=2)),
    P.AnyOf: st.builds(P.AnyOf, args=_tuple(_EVENT_CONDS, max_size=2)),
    P.Negate: st.builds(P.Negate, arg=_EVENT_CONDS),
    P.EndpointPlan: endpoint_plans("E1", ("E0",)),
    P.Program: programs(),
}


# -- registries ---------------------------------------------------------------------

def _maybe(values):
    # null as one value among many (st.none() | ... would make null half of all draws)
    return st.sampled_from((*values, None))


_EVENT_ROWS = st.fixed_dictionaries({
    "FINNGENID": st.sampled_from(EVENT_IDS),
    "SOURCE": st.sampled_from(SOURCES * 3 + ("OPER_IN", None)),
    "EVENT_AGE": st.sampled_from(AGES),
    "APPROX_EVENT_DAY": st.sampled_from(DAYS),
    "CODE1": _maybe(CODES),
    "CODE2": _maybe(CODES),
    "CODE3": _maybe(CODES),
    "CODE4": st.none(),
    "ICDVER": _maybe(ALPHABET["ICDVER"]),
    "CATEGORY": _maybe(ALPHABET["CATEGORY"]),
    "INDEX": _maybe(("1", "2")),
    "CODE9": _maybe(("1", "0")),
})
_PEOPLE_IDS = st.one_of(
    st.just(list(PEOPLE_IDS)), st.just(list(PEOPLE_IDS)),
    st.lists(st.sampled_from(PEOPLE_IDS), unique=True, max_size=len(PEOPLE_IDS)))
_SEX = st.sampled_from(("female", "male", None))
_FU = st.sampled_from((None, 50.0, 70.0))


@st.composite
def registries(draw, *, max_events: int = 50) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, people) in the normalised schema of `endpointc.registry`."""
    # hypothesis keeps lists near their least size; most registries need many rows to be
    # useful, so the size is drawn first
    size = draw(st.integers(min(15, max_events), max_events) | st.integers(0, min(5, max_events)))
    rows = draw(st.lists(_EVENT_ROWS, min_size=size, max_size=size))
    # the same code of a person again on other days (and ages), as registries repeat
    # diagnoses and purchases: what spaced and clustered `min` and time windows count
    if rows:
        repeats = draw(st.lists(st.tuples(st.integers(0, len(rows) - 1), st.sampled_from(DAYS),
                                          st.sampled_from(AGES)), max_size=max_events // 2))
        rows += [{**rows[i], "APPROX_EVENT_DAY": day, "EVENT_AGE": age} for i, day, age in repeats]
    ids = draw(_PEOPLE_IDS)
    people = [
        {"FINNGENID": pid, "SEX": draw(_SEX), "APPROX_BIRTH_DATE": None, "FU_END_AGE": draw(_FU),
         "DEATH": 0}
        for pid in ids
    ]
    return (pl.DataFrame(rows, schema=EVENT_SCHEMA) if rows
            else pl.DataFrame(schema=EVENT_SCHEMA),
            pl.DataFrame(people, schema=PEOPLE_SCHEMA) if people
            else pl.DataFrame(schema=PEOPLE_SCHEMA))
