"""Focused tests of the Polars engine's interface: schema, order, selection, warnings,
errors; and of time (dates, relations, person terms in `when`, an endpoint's own facts in
its `require`, spaced and clustered `min`) on plans built by hand, with results worked
out by hand and checked against the reference engine too."""

from __future__ import annotations

import datetime as dt
import itertools

import polars as pl
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from endpointc.engine.matching import match_keys, regex_filter
from endpointc.engine.polars import COUNTS_SCHEMA, LONG_SCHEMA, MissingColumnError, evaluate
from endpointc.engine.reference import evaluate_reference
from endpointc.plan import (
    AllOf, Between, Branch, Cmp, CodeSet, ColumnTest, Const, Count, DateConst, Duration, EndpointPlan,
    EventField, FirstDate, IsCase, Negate, Program, Relation, RulePlan, Shift,
)

from plan_strategies import EVENT_SCHEMA, PEOPLE_SCHEMA


def _rule(*prefixes: str, sources=("INPAT", "OUTPAT"), column="CODE1", index=0, **options) -> RulePlan:
    test = ColumnTest(column=column, codes=CodeSet(prefixes=prefixes))
    return RulePlan(index=index, source="hospital",
                    branches=(Branch(sources=sources, tests=(test,)),), **options)


def _events(rows: list[tuple]) -> pl.DataFrame:
    """rows: (FINNGENID, SOURCE, EVENT_AGE, CODE1[, INDEX, CODE9])."""
    full = []
    for r in rows:
        fid, source, age, code1, index, code9 = (*r, None, None)[:6]
        full.append({"FINNGENID": fid, "SOURCE": source, "EVENT_AGE": age,
                     "APPROX_EVENT_DAY": dt.date(2000, 1, 1) if age is not None else None,
                     "CODE1": code1, "CODE2": None, "CODE3": None, "CODE4": None, "ICDVER": "10",
                     "CATEGORY": "0", "INDEX": index, "CODE9": code9})
    return pl.DataFrame(full, schema=EVENT_SCHEMA) if full else pl.DataFrame(schema=EVENT_SCHEMA)


def _people(*ids: str, sex: str | None = "female") -> pl.DataFrame:
    return pl.DataFrame([{"FINNGENID": i, "SEX": sex, "APPROX_BIRTH_DATE": None,
                          "FU_END_AGE": 80.0, "DEATH": 0} for i in ids], schema=PEOPLE_SCHEMA)


PROGRAM = Program(endpoints=(
    EndpointPlan(name="B_DIAB", rules=(_rule("E11"),)),
    EndpointPlan(name="A_HEART", rules=(_rule("I2"),)),
    EndpointPlan(name="C_BOTH", includes=("B_DIAB", "A_HEART")),
))
EVENTS = _events([
    ("P3", "INPAT", 50.0, "E119"), ("P1", "OUTPAT", 40.0, "I21"), ("P1", "INPAT", 30.0, "E11"),
    ("P2", "INPAT", 20.0, "I10"), ("P9", "INPAT", 10.0, "E11"), ("P9", "INPAT", 11.0, "I21"),
])
PEOPLE = _people("P1", "P2", "P3")


def _run(program=PROGRAM, events=EVENTS, people=PEOPLE, **kw):
    return evaluate(program, events.lazy(), people.lazy(), **kw)


def test_results_are_lazy_with_the_documented_schema():
    res = _run()
    assert isinstance(res.long, pl.LazyFrame) and isinstance(res.counts, pl.LazyFrame)
    assert res.long.collect().schema == pl.Schema(LONG_SCHEMA)
    assert res.counts.collect().schema == pl.Schema(COUNTS_SCHEMA)


def test_long_is_sorted_by_endpoint_then_person_and_counts_by_endpoint():
    res = _run()
    long = res.long.collect()
    assert long.height == 5
    assert long.select("ENDPOINT", "FINNGENID").rows() == sorted(long.select("ENDPOINT", "FINNGENID").rows())
    assert res.counts.collect()["ENDPOINT"].to_list() == ["A_HEART", "B_DIAB", "C_BOTH"]


def test_union_of_included_rows_and_first_event():
    long = _run().long.collect().filter(pl.col("ENDPOINT") == "C_BOTH")
    assert long.select("FINNGENID", "AGE", "NEVT").rows() == [("P1", 30.0, 2), ("P3", 50.0, 1)]


def test_endpoint_selection_returns_only_the_selected_but_evaluates_dependencies():
    res = _run(endpoints=["C_BOTH"])
    assert set(res.long.collect()["ENDPOINT"]) == {"C_BOTH"}
    assert res.counts.collect().rows() == [("C_BOTH", 2, 1, 0)]
    with pytest.raises(KeyError):
        _run(endpoints=["NOPE"])


def test_absent_people_are_ignored_and_counted_in_a_warning():
    res = _run()
    assert res.warnings == ("2 events of 1 people absent from the people table were ignored",)
    assert "P9" not in res.long.collect()["FINNGENID"].to_list()
    assert _run(events=EVENTS.filter(pl.col("FINNGENID") != "P9")).warnings == ()


def test_emergency_without_code9_is_a_clear_error():
    program = Program(endpoints=(
        EndpointPlan(name="URGENT", rules=(_rule("I2"),), when=EventField(name="emergency")),))
    with pytest.raises(ValueError, match="CODE9") as info:
        _run(program=program, events=EVENTS.drop("CODE9"))
    assert isinstance(info.value, MissingColumnError)
    assert info.value.diagnostics[0].code.startswith("EP5")
    # the same table without emergency in the plan is fine
    _run(events=EVENTS.drop("CODE9"))


def test_emergency_propagates_within_a_visit_but_not_through_missing_index():
    program = Program(endpoints=(
        EndpointPlan(name="URGENT", rules=(_rule("I2"),), when=EventField(name="emergency")),))
    events = _events([
        ("P1", "INPAT", 40.0, "I21", "v1", None), ("P1", "INPAT", 40.0, "Z00", "v1", "1"),
        ("P2", "INPAT", 40.0, "I21", None, None), ("P2", "INPAT", 40.0, "Z00", None, "1"),
        ("P3", "OUTPAT", 40.0, "I21", "v1", None), ("P3", "INPAT", 40.0, "Z00", "v1", "1"),
    ])
    long = _run(program=program, events=events).long.collect()
    # P3: the same INDEX under another SOURCE is still the same visit.
    assert long["FINNGENID"].to_list() == ["P1", "P3"]


def test_empty_events_give_no_cases_and_everyone_a_control():
    res = _run(events=_events([]))
    assert res.long.collect().height == 0
    assert res.counts.collect()["N_CONTROLS"].to_list() == [3, 3, 3]
    assert res.warnings == ()


def test_sex_require_and_controls():
    program = Program(endpoints=(
        EndpointPlan(name="DIAB", rules=(_rule("E11"),)),
        EndpointPlan(name="HEART", rules=(_rule("I2"),), sex="male",
                     require=Negate(arg=IsCase(endpoint="DIAB")),
                     control_exclude=("DIAB",),
                     control_require=AllOf(args=(Cmp(op="<", left=Const(value=1), right=Const(value=2)),))),
    ))
    people = pl.concat([_people("P1", "P3", sex="male"), _people("P2", sex=None)])
    long = _run(program=program, people=people, endpoints=["HEART"]).long.collect()
    # P1 is a male heart case but a DIAB case (require fails) -> excluded by control_exclude;
    # P2 has no sex -> excluded; P3 is a DIAB case -> excluded
    assert long.select("FINNGENID", "STATUS").rows() == [
        ("P1", "excluded"), ("P2", "excluded"), ("P3", "excluded")]


def test_min_needs_other_and_when():
    program = Program(endpoints=(EndpointPlan(
        name="X",
        rules=(_rule("E11", min_events=2), _rule("I2", index=1, needs_other=True)),
        when=Cmp(op=">=", left=EventField(name="age"), right=Const(value=15)),
    ),))
    events = _events([
        ("P1", "INPAT", 30.0, "E11"), ("P1", "INPAT", 31.0, "E11"), ("P1", "INPAT", 32.0, "I21"),
        ("P2", "INPAT", 30.0, "E11"), ("P2", "INPAT", 10.0, "E11"), ("P2", "INPAT", 32.0, "I21"),
    ])
    long = _run(program=program, events=events).long.collect()
    assert long.select("FINNGENID", "AGE", "NEVT").rows() == [("P1", 30.0, 3)]


def test_buckets_give_identical_results():
    one = _run()
    for buckets in (2, 3, 7):
        many = _run(buckets=buckets)
        assert many.long.collect().equals(one.long.collect())
        assert many.counts.collect().equals(one.counts.collect())
        assert many.warnings == one.warnings


def test_patterns_are_matched_once_on_distinct_keys():
    mapping = match_keys(PROGRAM, EVENTS)
    # 6 event rows, 4 distinct matched keys (E119, I21/OUTPAT, E11, I21/INPAT)
    assert mapping.keys.height == 4
    assert mapping.rules.select("EP").unique().height == 2


def test_events_join_the_keys_on_one_hash_and_on_the_columns_after_a_collision(monkeypatch):
    from endpointc.engine import matching, units

    mapping = match_keys(PROGRAM, EVENTS)
    assert mapping.hash_unique and "_HASH" in mapping.keys.columns
    hashed = _run().long.collect()
    # a hash that maps every key to one of two values: collisions, so the columns are joined
    degenerate = lambda columns: (pl.col("SOURCE") == "INPAT").cast(pl.UInt64).alias("_HASH")
    monkeypatch.setattr(matching, "key_hash", degenerate)
    monkeypatch.setattr(units, "key_hash", degenerate)
    assert not match_keys(PROGRAM, EVENTS).hash_unique
    assert _run().long.collect().equals(hashed)
    assert hashed.height > 0


def _written(events: pl.DataFrame, tmp_path, *, missing: tuple) -> pl.LazyFrame:
    """`events` as a Parquet file that writes each missing text value as the next of
    `missing` in turn (a mix of null, "NA" and ""), read back by the registry with the
    columns as read."""
    from endpointc.registry import scan_events

    text = [c for c, t in events.schema.items() if t == pl.String and c != "FINNGENID"]
    forms = itertools.cycle(missing)
    rows = [{c: (next(forms) if c in text and v is None else v) for c, v in row.items()}
            for row in events.iter_rows(named=True)]
    path = tmp_path / "events.parquet"
    pl.DataFrame(rows, schema=events.schema).write_parquet(path)
    return scan_events(path, keep_as_read=True)


# E11 in hospital and any purchase, over events mostly of PRIM_OUT with an unmatched Z00 (so
# SOURCE and CODE1 get row filters; CODE1's matched values include the purchases' missing one)
WRITTEN_PROGRAM = Program(endpoints=(
    EndpointPlan(name="B_DIAB", rules=(_rule("E11"),)),
    EndpointPlan(name="D_PURCH", rules=(RulePlan(index=0, source="purchase",
                                                 branches=(Branch(sources=("PURCH",), tests=()),)),)),
    EndpointPlan(name="E_ANY", includes=("B_DIAB", "D_PURCH")),
))
WRITTEN = _events([
    *[(f"P{i % 3 + 1}", "PRIM_OUT", 30.0 + i, "Z00") for i in range(12)],
    ("P1", "INPAT", 40.0, "E11"), ("P2", "OUTPAT", 41.0, "E119"),
    ("P2", "PURCH", 42.0, None), ("P3", "PURCH", 43.0, None), ("P3", "PURCH", 44.0, "A10"),
    ("P1", "PURCH", 45.0, None),
])


@pytest.mark.parametrize("missing", [(None,), ("NA",), ("",), ("NA", None, "")])
def test_keys_as_read_give_the_results_of_the_normalised_keys(tmp_path, missing):
    from endpointc.engine import polars as engine

    events = _written(WRITTEN, tmp_path, missing=missing)
    mapping = match_keys(WRITTEN_PROGRAM, events)
    assert mapping.read_keys is not None and len(mapping.row_filters) == 2
    # one KEYID per key, however many ways the file writes it
    assert mapping.read_keys["KEYID"].n_unique() == mapping.keys.height
    expected = _run(WRITTEN_PROGRAM, WRITTEN)
    got = evaluate(WRITTEN_PROGRAM, events, PEOPLE.lazy())
    assert got.long.collect().equals(expected.long.collect())
    assert got.counts.collect().equals(expected.counts.collect())
    assert expected.long.collect().filter(pl.col("ENDPOINT") == "D_PURCH")["NEVT"].to_list() == [1, 1, 2]
    assert engine.event_pass_plan(WRITTEN_PROGRAM, events).count("(as read)") >= 2


def test_keys_as_read_fall_back_to_the_normalised_keys_after_a_collision(tmp_path, monkeypatch):
    from endpointc.engine import matching

    events = _written(WRITTEN, tmp_path, missing=("NA", None))
    expected = evaluate(WRITTEN_PROGRAM, events, PEOPLE.lazy()).long.collect()
    # a hash telling apart the normalised keys but not "NA" from null: the written forms collide
    original = matching.key_hash
    monkeypatch.setattr(matching, "key_hash", lambda columns: original(
        tuple(c.removesuffix(" (as read)") for c in columns)) if all(
        c.endswith(" (as read)") for c in columns) else original(columns))
    assert match_keys(WRITTEN_PROGRAM, events).read_keys is None
    assert evaluate(WRITTEN_PROGRAM, events, PEOPLE.lazy()).long.collect().equals(expected)


@pytest.mark.parametrize("ages", [(30.25, 40.5), (30.123456789, 40.5), (1e-9, 40.5)])
def test_first_age_is_the_exact_float_with_or_without_whole_hundredths(ages):
    # whole hundredths order events by AGE * 100, any other age by AGE's rank: both give
    # back the first event's AGE bit for bit
    events = _events([("P1", "INPAT", ages[1], "E11"), ("P1", "INPAT", ages[0], "E11"),
                      ("P2", "INPAT", None, "E11")])
    long = _run(events=events).long.collect()
    assert long.filter(pl.col("ENDPOINT") == "B_DIAB").select("FINNGENID", "AGE", "NEVT").rows() == [
        ("P1", ages[0], 2), ("P2", None, 1)]


@pytest.mark.parametrize("days", [(dt.date(1969, 12, 31), dt.date(2000, 2, 29)),
                                  (dt.date(1, 1, 1), dt.date(9999, 12, 31))])
def test_first_year_is_the_days_year_within_or_beyond_the_table_of_years(days):
    # a span of days narrower than _MAX_DAYS reads YEAR from a table, a wider one from
    # the Date; both give the year of the first event's day
    events = _events([("P1", "INPAT", 40.0, "E11"), ("P1", "INPAT", 30.0, "E11"),
                      ("P2", "INPAT", 20.0, "E11")]).with_columns(
        pl.Series("APPROX_EVENT_DAY", [days[1], days[0], None], dtype=pl.Date))
    long = _run(events=events).long.collect()
    assert long.filter(pl.col("ENDPOINT") == "B_DIAB").select("FINNGENID", "YEAR").rows() == [
        ("P1", days[0].year), ("P2", None)]


def test_regex_fallback_for_patterns_rust_cannot_run():
    values = pl.Series(["A1", "A2", "B1", None])
    assert regex_filter(values, "A(?=1)").to_list() == [True, False, False, False]
    assert regex_filter(values, "[AB]1").to_list()[:3] == [True, False, True]


def test_mode_keeps_only_a_majority_code_of_its_group():
    program = Program(endpoints=(EndpointPlan(name="M", rules=(_rule("A", mode=True),)),))
    events = _events([
        # P1: A11 twice, A12 once -> A11 (2/3) kept, A12 dropped; A2 alone in group A -> kept
        ("P1", "INPAT", 30.0, "A11"), ("P1", "INPAT", 31.0, "A11"), ("P1", "INPAT", 20.0, "A12"),
        ("P1", "INPAT", 40.0, "A2"),
        # P2: a tie (1/2 each) keeps nothing
        ("P2", "INPAT", 30.0, "A11"), ("P2", "INPAT", 31.0, "A12"),
    ])
    long = _run(program=program, events=events, people=_people("P1", "P2")).long.collect()
    assert long.select("FINNGENID", "AGE", "NEVT").rows() == [("P1", 30.0, 3)]


class MadeUpNode:
    """A condition node no part of the engine knows."""

    value_type = "truth value"


@pytest.mark.parametrize("cond", [MadeUpNode(), AllOf.model_construct(args=(MadeUpNode(),)),
                                  Negate.model_construct(arg=MadeUpNode())],
                         ids=["alone", "in and", "in not"])
def test_an_unknown_condition_node_is_an_error_that_names_it(cond):
    # not a RecursionError from dispatch tables that hand a node back and forth
    from endpointc.engine.conditions import EVENT_OPERANDS, truth

    with pytest.raises((TypeError, ValueError), match="MadeUpNode"):
        truth(cond, EVENT_OPERANDS)


def test_conditions_are_translated_by_their_type_without_conversions():
    from endpointc.engine.conditions import EVENT_OPERANDS, truth

    # a number where a truth value is needed is an error, not "nonzero and not missing"
    with pytest.raises(TypeError, match="Const"):
        truth(Const(value=1), EVENT_OPERANDS)
    frame = pl.DataFrame({"AGE": [10.0, 20.0, None], "YEAR": [2000, 2001, 2002], "EMERG": [True, False, True]})
    young = AllOf(args=(Cmp(op="<", left=EventField(name="age"), right=Const(value=15)),
                        EventField(name="emergency")))
    assert frame.select(truth(young, EVENT_OPERANDS).alias("KEEP"))["KEEP"].to_list() == [True, False, False]
    assert frame.select(truth(Negate(arg=young), EVENT_OPERANDS).alias("KEEP"))["KEEP"].to_list() == [False, True, True]


# -- time ---------------------------------------------------------------------------

D0 = dt.date(2000, 1, 1)


def _dated(rows: list[tuple]) -> pl.DataFrame:
    """rows: (FINNGENID, CODE1, EVENT_AGE, days after 2000-01-01 or None)."""
    return _events([(fid, "INPAT", age, code) for fid, code, age, _ in rows]).with_columns(
        pl.Series("APPROX_EVENT_DAY", [D0 + dt.timedelta(days=d) if d is not None else None
                                       for *_, d in rows], dtype=pl.Date))


def _cases(program: Program, events: pl.DataFrame, people: pl.DataFrame, endpoint: str) -> list[tuple]:
    """(FINNGENID, AGE, NEVT) of the endpoint's cases; both engines must agree."""
    long = _run(program=program, events=events, people=people).long.collect()
    assert_frame_equal(long, evaluate_reference(program, events, people))
    return long.filter(pl.col("ENDPOINT") == endpoint, pl.col("STATUS") == "case").select(
        "FINNGENID", "AGE", "NEVT").rows()


def test_min_apart_picks_the_earliest_then_each_first_event_at_least_d_later():
    program = Program(endpoints=(EndpointPlan(name="S", rules=(
        _rule("E11", min_events=2, spacing="apart", spacing_days=30),)),))
    events = _dated([
        ("P1", "E11", 40.0, 0), ("P1", "E11", 41.0, 29), ("P1", "E11", 42.0, 59),  # picks 0, 59
        ("P2", "E11", 40.0, 0), ("P2", "E11", 41.0, 29),  # one pick
        ("P3", "E11", 40.0, 0), ("P3", "E11", 41.0, 30), ("P3", "E11", 39.0, None),  # exactly D: two
        ("P4", "E11", 40.0, 0), ("P4", "E11", 41.0, None), ("P4", "E11", 42.0, None),  # undated: one
    ])
    # the kept rows are all of the rule's rows, undated ones too (P3's gives AGE)
    assert _cases(program, events, _people("P1", "P2", "P3", "P4"), "S") == [("P1", 40.0, 3), ("P3", 39.0, 3)]


def test_min_within_counts_the_events_of_one_window_from_an_event():
    program = Program(endpoints=(EndpointPlan(name="C", rules=(
        _rule("E11", min_events=3, spacing="within", spacing_days=30),)),))
    events = _dated([
        ("P1", "E11", 40.0, 0), ("P1", "E11", 41.0, 15), ("P1", "E11", 42.0, 30),  # [0, 30] holds 3
        ("P2", "E11", 40.0, 0), ("P2", "E11", 41.0, 15), ("P2", "E11", 42.0, 31),  # D + 1: 2 at most
        ("P3", "E11", 40.0, 5), ("P3", "E11", 40.0, 5), ("P3", "E11", 40.0, 5),  # one day, 3 events
        ("P4", "E11", 40.0, 0), ("P4", "E11", 41.0, 10), ("P4", "E11", 42.0, None),  # undated: no
    ])
    assert _cases(program, events, _people("P1", "P2", "P3", "P4"), "C") == [("P1", 40.0, 3), ("P3", 40.0, 3)]


_OFFSETS = st.sampled_from((0, 0, 1, 2, 3, 5, 8, 10, 30, 31, None))


# A few dozen examples by default, many more with -m slow.
_SPACED = dict(rows=st.lists(st.tuples(st.sampled_from(("P1", "P2", "P3")), st.sampled_from(("E11", "E119", "I21")),
                                       st.sampled_from((40.0, 41.0)), _OFFSETS), max_size=25),
               kind=st.sampled_from(("apart", "within")),
               days=st.sampled_from((0.5, 1, 2, 2.5, 3, 5, 7.9, 8, 30, 365.25)), n=st.integers(1, 5))


@settings(max_examples=80, deadline=None)
@given(**_SPACED)
def test_spaced_and_clustered_min_at_every_edge_equal_the_reference(rows, kind, days, n):
    _spaced_and_clustered(rows, kind, days, n)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(**_SPACED)
def test_many_spaced_and_clustered_min_equal_the_reference(rows, kind, days, n):
    _spaced_and_clustered(rows, kind, days, n)


def _spaced_and_clustered(rows, kind, days, n):
    # two rules on the same rows (E11) count apart; I21 rows reach `S` through a plain rule
    program = Program(endpoints=(EndpointPlan(name="S", rules=(
        _rule("E11", min_events=n, spacing=kind, spacing_days=days),
        _rule("E1", index=1, min_events=max(n - 1, 1), spacing="within" if kind == "apart" else "apart",
              spacing_days=days),
        _rule("I21", index=2))),))
    _cases(program, _dated(rows), _people("P1", "P2", "P3"), "S")


def _first_dates_program(when) -> Program:
    return Program(endpoints=(
        EndpointPlan(name="A", rules=(_rule("I21"),)),
        EndpointPlan(name="B", rules=(_rule("I50"),), when=when),
        # the same `when` on a counted rule: its rows are counted after A's level
        EndpointPlan(name="M", rules=(_rule("I50", min_events=2),), when=when),
    ))


def test_when_reads_the_first_date_of_another_endpoint():
    # within 365.25 days after A: A.date <= date <= A.date + 365.25
    within = Relation(subject=EventField(name="date"), relation="within_after",
                      anchor=FirstDate(endpoint="A"), window=Duration(days=365.25))
    events = _dated([
        # P1: A's first event is the one of the smallest AGE (day 10, not day 0)
        ("P1", "I21", 50.0, 0), ("P1", "I21", 49.0, 10),
        ("P1", "I50", 51.0, 10), ("P1", "I50", 52.0, 375), ("P1", "I50", 53.0, 376), ("P1", "I50", 48.0, 9),
        # P2: no A: no window (missing is false); P3: an undated first A event
        ("P2", "I50", 51.0, 10), ("P3", "I21", 40.0, None), ("P3", "I50", 51.0, 10),
        ("P3", "I50", 52.0, 11),
    ])
    people = _people("P1", "P2", "P3")
    assert _cases(_first_dates_program(within), events, people, "B") == [("P1", 51.0, 2)]
    assert _cases(_first_dates_program(within), events, people, "M") == [("P1", 51.0, 2)]
    # the same as comparisons: date - A.date <= 365 days and date >= A.date
    spelled = AllOf(args=(Cmp(op="<=", left=Between(later=EventField(name="date"), earlier=FirstDate(endpoint="A")),
                              right=Duration(days=365)),
                          Cmp(op=">=", left=EventField(name="date"), right=FirstDate(endpoint="A"))))
    assert _cases(_first_dates_program(spelled), events, people, "B") == [("P1", 51.0, 2)]
    # a person term alone: every event of a person who is a case of A
    assert _cases(_first_dates_program(IsCase(endpoint="A")), events, people, "M") == [
        ("P1", 48.0, 4), ("P3", 51.0, 2)]


def test_dates_shifts_and_constants():
    # from 2000-01-02 on, and before A.date - 1 week
    when = AllOf(args=(Cmp(op=">=", left=EventField(name="date"), right=DateConst(value=dt.date(2000, 1, 2))),
                       Cmp(op="<", left=EventField(name="date"),
                           right=Shift(date=FirstDate(endpoint="A"), sign=-1, by=Duration(days=7)))))
    events = _dated([("P1", "I21", 50.0, 20), ("P1", "I50", 40.0, 0), ("P1", "I50", 41.0, 1),
                     ("P1", "I50", 42.0, 12), ("P1", "I50", 43.0, 13), ("P1", "I50", 44.0, None)])
    assert _cases(_first_dates_program(when), events, _people("P1"), "B") == [("P1", 41.0, 2)]


def test_require_reads_the_endpoints_own_candidate_events():
    program = Program(endpoints=(
        EndpointPlan(name="A", rules=(_rule("I21"),)),
        # two events or more of its own (after when), and no A before its first event
        EndpointPlan(name="E", rules=(_rule("I50"),), when=Cmp(op=">", left=EventField(name="age"),
                                                               right=Const(value=30)),
                     require=AllOf(args=(
                         Cmp(op=">=", left=Count(endpoint="E"), right=Const(value=2)),
                         Negate(arg=Relation(subject=FirstDate(endpoint="A"), relation="before",
                                             anchor=FirstDate(endpoint="E"))))),
                     sex="female"),
        EndpointPlan(name="F", includes=("E",)),
    ))
    events = _dated([
        ("P1", "I50", 40.0, 5), ("P1", "I50", 41.0, 6), ("P1", "I21", 42.0, 5),  # A on the same day: not before
        ("P2", "I50", 40.0, 5), ("P2", "I50", 20.0, 6),  # one event after `when`
        ("P3", "I50", 40.0, 5), ("P3", "I50", 41.0, 6), ("P3", "I21", 42.0, 4),  # A a day before
        ("P4", "I50", 40.0, 5), ("P4", "I50", 41.0, None),  # no A: `A before E` is false
    ])
    people = pl.concat([_people("P1", "P2", "P3", "P4"), _people("P5", sex="male")])
    assert _cases(program, events, people, "E") == [("P1", 40.0, 2), ("P4", 40.0, 2)]
    assert _cases(program, events, people, "F") == [("P1", 40.0, 2), ("P4", 40.0, 2)]


_WINDOWS = st.sampled_from((0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 8.0, 30.0, 30.4375))
_RELATIONS = st.sampled_from(("within_after", "within_before", "after", "before"))


def _relation(subject, relation: str, anchor, days: float) -> Relation:
    return Relation(subject=subject, relation=relation, anchor=anchor,
                    window=Duration(days=days) if relation.startswith("within") else None)


@st.composite
def _time_conditions(draw, subject, anchors):
    """A relation, a shifted comparison or a day difference of `subject` and an anchor."""
    anchor = draw(st.sampled_from(anchors))
    days = draw(_WINDOWS)
    shifted = Shift(date=anchor, sign=draw(st.sampled_from((1, -1))), by=Duration(days=days))
    op = draw(st.sampled_from(("<", "<=", ">", ">=", "==", "!=")))
    return draw(st.sampled_from((
        _relation(subject, draw(_RELATIONS), anchor, days),
        Cmp(op=op, left=subject, right=shifted),
        Cmp(op=op, left=Between(later=subject, earlier=anchor), right=Duration(days=days)),
    )))


_WINDOW_CASES = dict(
    rows=st.lists(st.tuples(st.sampled_from(("P1", "P2", "P3")), st.sampled_from(("I21", "I50", "I50")),
                            st.sampled_from((40.0, 41.0)), _OFFSETS), max_size=25),
    when=_time_conditions(EventField(name="date"), (FirstDate(endpoint="A"), DateConst(value=D0))),
    require=_time_conditions(FirstDate(endpoint="R"), (FirstDate(endpoint="A"),)))


@settings(max_examples=80, deadline=None)
@given(**_WINDOW_CASES)
def test_time_windows_at_every_edge_equal_the_reference(rows, when, require):
    _time_windows(rows, when, require)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(**_WINDOW_CASES)
def test_many_time_windows_equal_the_reference(rows, when, require):
    _time_windows(rows, when, require)


def _time_windows(rows, when, require):
    # `when` on plain and counted rules, and an endpoint's own first date against A's in
    # its `require`; ages tie, so that the first event is the earliest day among them
    program = Program(endpoints=(
        EndpointPlan(name="A", rules=(_rule("I21"),)),
        EndpointPlan(name="E", rules=(_rule("I50"),), when=when),
        EndpointPlan(name="M", rules=(_rule("I50", min_events=2),), when=when),
        EndpointPlan(name="R", rules=(_rule("I50"),), includes=("E",), require=require),
    ))
    _cases(program, _dated(rows), _people("P1", "P2", "P3"), "E")
