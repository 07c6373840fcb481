"""Hypothesis strategies for random valid plans (endpointc.plan) and small registries.

Alphabets are tiny so that patterns hit: codes are short strings over "AB12", ages and
years come from a few values (ties happen), a few INDEX values are shared so emergency
propagates, some events belong to people absent from the people table, and every column
may be null.

`NODE_STRATEGIES` maps every plan model class to a strategy producing it;
`tests/test_differential.py` fails when endpointc.plan grows a class missing here.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import strategies as st

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
DAYS = (None, dt.date(1999, 12, 31), dt.date(2000, 1, 1), dt.date(2005, 6, 1), dt.date(2010, 3, 3))
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


def rule_plans(index: int = 0) -> st.SearchStrategy[P.RulePlan]:
    return st.builds(
        _rule_plan, index=st.just(index),
        source=st.sampled_from(("hospital", "purchase", "cancer", "death")),
        branches=_tuple(branches, min_size=1, max_size=2),
        min_events=st.sampled_from((1, 1, 1, 1, 2, 3)),
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


_EVENT_CONDS = _logic(st.one_of(
    st.builds(P.Cmp, op=_OPS, left=event_values, right=event_values),
    st.just(P.EventField(name="emergency")),
))


def event_conds() -> st.SearchStrategy:
    """`when` conditions: comparisons of age/year/constants, emergency, and logic."""
    return _EVENT_CONDS


# person conditions are drawn over placeholder names #0..#4, then renamed to real endpoints
_SLOTS = tuple(f"#{i}" for i in range(5))
_slot = st.sampled_from(_SLOTS)
_person_values = st.one_of(
    consts, st.builds(P.Count, endpoint=_slot), st.builds(P.FirstAge, endpoint=_slot),
    st.builds(P.FirstYear, endpoint=_slot),
)
_PERSON_TEMPLATES = _logic(st.one_of(
    st.builds(P.IsCase, endpoint=_slot),
    st.builds(P.Cmp, op=_OPS, left=_person_values, right=_person_values),
))


def _rename(cond, names: tuple[str, ...]):
    if isinstance(cond, (P.IsCase, P.Count, P.FirstAge, P.FirstYear)):
        return cond.model_copy(update={"endpoint": names[int(cond.endpoint[1:]) % len(names)]})
    if isinstance(cond, P.Cmp):
        return cond.model_copy(update={"left": _rename(cond.left, names),
                                       "right": _rename(cond.right, names)})
    if isinstance(cond, (P.AllOf, P.AnyOf)):
        return cond.model_copy(update={"args": tuple(_rename(a, names) for a in cond.args)})
    if isinstance(cond, P.Negate):
        return cond.model_copy(update={"arg": _rename(cond.arg, names)})
    return cond


def person_conds(names: tuple[str, ...]) -> st.SearchStrategy:
    """`require`/controls conditions over the endpoints `names` (non-empty)."""
    return _PERSON_TEMPLATES.map(lambda c: _rename(c, names))


# -- endpoints and programs -------------------------------------------------------------

_MAYBE_WHEN = st.one_of(st.none(), st.none(), _EVENT_CONDS)
_MAYBE_PERSON = st.one_of(st.none(), st.none(), _PERSON_TEMPLATES)
_SEXES = st.sampled_from((None, None, None, "female", "male"))
_PICKS = st.lists(st.integers(0, 10), max_size=3)


@st.composite
def endpoint_plans(draw, name: str = "E0", earlier: tuple[str, ...] = ()) -> P.EndpointPlan:
    n_rules = draw(st.sampled_from((0, 1, 1, 2, 3) if earlier else (1, 1, 2, 3)))
    rules = tuple(draw(_RULES[i]) for i in range(n_rules))

    def pick(k: int) -> tuple[str, ...]:
        if not earlier:
            return ()
        return tuple(dict.fromkeys(earlier[i % len(earlier)] for i in draw(_PICKS)[:k]))

    def person():
        cond = draw(_MAYBE_PERSON)
        return _rename(cond, earlier) if (cond is not None and earlier) else None

    return P.EndpointPlan(
        name=name, rules=rules, includes=pick(3), when=draw(_MAYBE_WHEN),
        require=person(), sex=draw(_SEXES), control_exclude=pick(2), control_require=person(),
    )


@st.composite
def programs(draw, max_endpoints: int = 5) -> P.Program:
    """Endpoints E0..En, each depending only on earlier ones (so chains of includes)."""
    n = draw(st.integers(1, max_endpoints))
    eps = []
    for i in range(n):
        eps.append(draw(endpoint_plans(f"E{i}", tuple(ep.name for ep in eps))))
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
    # hypothesis keeps lists short by default; most registries need many rows to be useful
    rows = draw(st.lists(_EVENT_ROWS, min_size=min(15, max_events), max_size=max_events)
                | st.lists(_EVENT_ROWS, max_size=5))
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
