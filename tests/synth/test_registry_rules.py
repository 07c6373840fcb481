"""Structural and realism rules every generated registry must satisfy."""

from __future__ import annotations

import polars as pl

from endpointc.synth import EVENT_SCHEMA, PEOPLE_SCHEMA
from endpointc.synth.codes import sex_of_code
from endpointc.synth.eras import ICD_ERAS, OPERATION_ERAS, REGISTER_START


def _with_year(events: pl.DataFrame) -> pl.DataFrame:
    return events.with_columns(pl.col("APPROX_EVENT_DAY").dt.year().alias("YEAR"))


def test_schemas(registry):
    events, people = registry
    assert events.schema == EVENT_SCHEMA
    assert people.schema == PEOPLE_SCHEMA
    assert events.height > 100 * people.height  # a lifetime of registry rows per person


def test_people_look_like_a_biobank(registry):
    _, people = registry
    years = people["APPROX_BIRTH_DATE"].dt.year()
    assert 1920 <= years.min() and years.max() <= 2004
    assert 1945 <= years.median() <= 1970
    assert set(people["SEX"].unique()) == {"female", "male"}
    assert 0.03 < people["DEATH"].mean() < 0.4
    assert people["FINNGENID"].is_unique().all()
    assert people["FINNGENID"][0] == "FG00000001"


def test_events_within_follow_up(registry):
    events, people = registry
    joined = events.join(people, on="FINNGENID", how="left")
    assert joined["FU_END_AGE"].null_count() == 0
    assert (joined["EVENT_AGE"] <= joined["FU_END_AGE"]).all()
    assert (joined["EVENT_AGE"] >= 0).all()
    assert events["APPROX_EVENT_DAY"].max().year <= 2023
    # EVENT_AGE agrees with the dates (two-decimal rounding of days / 365.25).
    days = (joined["APPROX_EVENT_DAY"] - joined["APPROX_BIRTH_DATE"]).dt.total_days()
    assert ((days / 365.25).round(2) - joined["EVENT_AGE"]).abs().max() < 1e-9


def test_sorted_by_person_and_age(registry):
    events, _ = registry
    assert events["FINNGENID"].is_sorted()
    key = events.select(pl.col("EVENT_AGE").is_sorted().over("FINNGENID").all())
    assert key.item()


def test_registers_only_when_they_existed(registry):
    events, _ = registry
    first = _with_year(events).group_by("SOURCE").agg(pl.col("YEAR").min())
    for source, year in first.iter_rows():
        assert year >= REGISTER_START[source], source
    assert set(events["SOURCE"].unique()) == set(REGISTER_START)


def test_icd_version_follows_calendar(registry):
    events = _with_year(registry[0])
    icd = events.filter(pl.col("SOURCE").is_in(["INPAT", "OUTPAT", "DEATH"]))
    for ver, (lo, hi) in ICD_ERAS.items():
        years = icd.filter(pl.col("ICDVER") == ver)["YEAR"]
        assert years.len() > 0, ver
        assert years.min() >= lo and years.max() <= hi, ver
    assert icd.filter(pl.col("YEAR") < 1996, pl.col("ICDVER") == "10").height == 0
    assert icd.filter(pl.col("YEAR") > 1986, pl.col("ICDVER") == "8").height == 0
    # Finnish ICD-9 codes end in a letter; ICD-8 codes are digits.
    icd9 = icd.filter(pl.col("ICDVER") == "9", pl.col("CATEGORY") != "EX1")["CODE1"]
    assert icd9.str.contains(r"^[0-9V]\d{3}[A-Z]$").mean() > 0.95
    icd10 = icd.filter(pl.col("ICDVER") == "10")["CODE1"]
    assert icd10.str.contains(r"^[A-Z]\d[0-9A-Z]\d{0,3}$").all()
    assert not icd10.str.contains(r"\.").any()


def test_operation_systems_by_era(registry):
    ops = _with_year(registry[0]).filter(pl.col("SOURCE").is_in(["OPER_IN", "OPER_OUT"]))
    assert ops.height > 0
    for prefix, (lo, hi) in OPERATION_ERAS.items():
        years = ops.filter(pl.col("CATEGORY").str.starts_with(prefix))["YEAR"]
        if years.len():
            assert years.min() >= lo and years.max() <= hi, prefix
    assert ops.filter(pl.col("CATEGORY").str.starts_with("NOM")).height > 0


def test_sex_specific_codes(registry):
    events, people = registry
    joined = events.join(people.select("FINNGENID", "SEX"), on="FINNGENID")
    vocab = (pl.when(pl.col("SOURCE") == "CANC").then(pl.lit("topography"))
             .when(pl.col("ICDVER") == "10").then(pl.lit("icd10"))
             .when(pl.col("ICDVER") == "9").then(pl.lit("icd9"))
             .when(pl.col("ICDVER") == "8").then(pl.lit("icd8"))
             .when(pl.col("ICDVER") == "ICP").then(pl.lit("icpc2"))
             .otherwise(None))
    checked = joined.with_columns(vocab.alias("V")).filter(pl.col("V").is_not_null(),
                                                          pl.col("CATEGORY").fill_null("") != "EX1")
    wrong = [(v, c, s) for v, c, s in checked.select("V", "CODE1", "SEX").unique().iter_rows()
             if (owner := sex_of_code(v, c)) is not None and owner != s]
    assert not wrong, wrong[:10]
    # Both sexes do get their own codes.
    assert joined.filter(pl.col("CODE1") == "C61")["SEX"].unique().to_list() in ([], ["male"])
    assert joined.filter(pl.col("CODE1").str.starts_with("O80"))["SEX"].unique().to_list() == ["female"]


def test_hospital_visit_structure(registry):
    events, _ = registry
    hosp = events.filter(pl.col("SOURCE").is_in(["INPAT", "OUTPAT"]))
    per_visit = hosp.group_by("FINNGENID", "INDEX").agg(
        (pl.col("CATEGORY") == "0").sum().alias("mains"),
        pl.col("APPROX_EVENT_DAY").n_unique().alias("days"),
        pl.col("SOURCE").n_unique().alias("sources"))
    assert (per_visit["mains"] == 1).all()
    assert (per_visit["days"] == 1).all()
    assert (per_visit["sources"] == 1).all()
    cats = set(hosp["CATEGORY"].unique())
    assert {"0", "1", "EX1"} <= cats
    assert cats <= {str(i) for i in range(10)} | {"EX1"}
    # Operations share their visit's INDEX.
    ops = events.filter(pl.col("SOURCE") == "OPER_IN").select("FINNGENID", "INDEX").unique()
    linked = ops.join(hosp.filter(pl.col("SOURCE") == "INPAT").select("FINNGENID", "INDEX").unique(),
                      on=["FINNGENID", "INDEX"])
    assert linked.height == ops.height
    # INDEX is unique to a person.
    assert events.group_by("INDEX").agg(pl.col("FINNGENID").n_unique())["FINNGENID"].max() == 1


def test_urgency_only_on_hospital_rows(registry):
    events = _with_year(registry[0])
    assert set(events.filter(pl.col("CODE9").is_not_null())["SOURCE"].unique()) <= {
        "INPAT", "OUTPAT", "OPER_IN", "OPER_OUT"}
    hosp = events.filter(pl.col("SOURCE") == "INPAT", pl.col("YEAR") >= 1996)
    assert (hosp["CODE9"] == "1").mean() > 0.2


def test_deaths(registry):
    events, people = registry
    deaths = events.filter(pl.col("SOURCE") == "DEATH")
    per = deaths.group_by("FINNGENID").agg(
        (pl.col("CATEGORY") == "U").sum().alias("u"), (pl.col("CATEGORY") == "I").sum().alias("i"),
        pl.col("INDEX").n_unique().alias("idx"))
    assert (per["u"] == 1).all() and (per["i"] <= 1).all() and (per["idx"] == 1).all()
    assert set(deaths["CATEGORY"].unique()) <= {"U", "I", "c1", "c2", "c3", "c4"}
    dead = people.filter(pl.col("DEATH") == 1)
    assert per.height > 0.8 * dead.height
    assert set(per["FINNGENID"]) <= set(dead["FINNGENID"])
    at = deaths.join(people, on="FINNGENID")
    assert (at["EVENT_AGE"] == at["FU_END_AGE"]).all()


def test_other_registers_layout(registry):
    events, _ = registry
    purch = events.filter(pl.col("SOURCE") == "PURCH")
    assert purch["CODE1"].str.contains(r"^[A-Z]\d\d[A-Z]{2}\d\d$").all()
    assert purch["CODE3"].str.contains(r"^\d{6}$").all()
    assert purch["CODE4"].cast(pl.Int64).min() >= 1
    assert purch["CODE2"].drop_nulls().str.contains(r"^\d{3}$").all()
    assert purch["CODE2"].null_count() < purch.height  # some purchases are reimbursed
    canc = events.filter(pl.col("SOURCE") == "CANC")
    assert canc["CODE1"].str.contains(r"^C\d{3}$").all()
    assert canc["CODE2"].str.contains(r"^\d{4}$").all()
    assert (canc["ICDVER"] == "O3").all()
    reimb = events.filter(pl.col("SOURCE") == "REIMB")
    assert reimb["CODE1"].str.contains(r"^\d{3}$").all()
    assert set(reimb["ICDVER"].unique()) <= {"8", "9", "10"}
    prim = events.filter(pl.col("SOURCE") == "PRIM_OUT")
    assert set(prim["CATEGORY"].str.replace(r"\d+$", "").unique()) <= {"ICD", "ICP", "OP", "MOP"}


def test_chronic_disease_repeats(registry):
    events, _ = registry
    e11 = events.filter(pl.col("CODE1").str.starts_with("E11"))
    per = e11.group_by("FINNGENID").len()
    assert per["len"].median() >= 2
