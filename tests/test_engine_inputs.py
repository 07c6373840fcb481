"""`evaluate` on frames that are not normalised: a clear error naming the columns and the
functions that normalise a table, before any Polars query runs."""

from __future__ import annotations

import polars as pl
import pytest

import endpointc
from endpointc.engine.inputs import NotNormalisedError, check_frames
from endpointc.registry import EVENTS_SCHEMA, PEOPLE_SCHEMA

PROGRAM = endpointc.compile_program_text("endpoint MI { hospital icd10 I21 }")
HEADER = [c for c in EVENTS_SCHEMA if not c.startswith("CODE") or c in ("CODE1", "CODE2", "CODE3", "CODE4")]
ROW = {"FINNGENID": "FG_SECRET_1", "SOURCE": "INPAT", "EVENT_AGE": "61.5", "APPROX_EVENT_DAY": "1987-02-03",
       "CODE1": "I219", "CODE2": "NA", "CODE3": "NA", "CODE4": "NA", "ICDVER": "10", "CATEGORY": "0", "INDEX": "7"}


def normalised():
    events = pl.LazyFrame({c: [ROW[c]] for c in HEADER}).with_columns(
        pl.col("EVENT_AGE").cast(pl.Float64), pl.col("APPROX_EVENT_DAY").str.to_date(),
        *(pl.lit(None, pl.String).alias(c) for c in ("CODE2", "CODE3", "CODE4")))
    people = pl.LazyFrame({"FINNGENID": ["FG_SECRET_1", "FG_SECRET_2"], "SEX": ["male", "female"],
                           "FU_END_AGE": [70.0, 65.0]})
    return events, people


@pytest.fixture
def tsv_registry(tmp_path):
    events, people = tmp_path / "events.tsv", tmp_path / "people.tsv"
    events.write_text("\t".join(HEADER) + "\n" + "\t".join(ROW[c] for c in HEADER) + "\n")
    people.write_text("FINNGENID\tSEX\tAPPROX_BIRTH_DATE\tFU_END_AGE\nFG_SECRET_1\tmale\t1926-01-01\t70.0\n")
    return events, people


def test_scan_csv_of_a_tsv_registry_is_refused_with_the_columns_and_the_way_out(tsv_registry, monkeypatch):
    import endpointc.engine.polars as engine

    def no_work(*args, **kwargs):
        raise AssertionError("evaluate started working on frames it should have refused")

    monkeypatch.setattr(engine, "prepare", no_work)
    events, people = tsv_registry
    with pytest.raises(NotNormalisedError) as raised:
        endpointc.evaluate(PROGRAM, pl.scan_csv(events, separator="\t"), pl.scan_csv(people, separator="\t"))
    message = str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert "the events frame is not normalised: APPROX_EVENT_DAY is String, not Date" in message
    assert "ICDVER is Int64, not String" in message and "INDEX is Int64, not String" in message
    assert "the people frame is not normalised: APPROX_BIRTH_DATE is String, not Date" in message
    assert "endpointc.load_registry" in message and "endpointc.scan_events / endpointc.scan_people" in message
    assert raised.value.problems.keys() == {"events", "people"}
    assert "SECRET" not in message and "1987" not in message   # only the schemas were read


def test_the_same_files_read_by_scan_events_evaluate(tsv_registry):
    events, people = tsv_registry
    counts = endpointc.evaluate(PROGRAM, endpointc.scan_events(events), endpointc.scan_people(people)).counts
    assert counts.collect().rows() == [("MI", 1, 0, 0)]


def test_missing_columns_string_ages_and_a_comma_read_tsv(tsv_registry):
    events, people = normalised()
    with pytest.raises(NotNormalisedError, match="no column SOURCE, INDEX; EVENT_AGE is String, not Float64"):
        check_frames(events.drop("SOURCE", "INDEX").with_columns(pl.col("EVENT_AGE").cast(pl.String)), people)
    with pytest.raises(NotNormalisedError, match="the people frame is not normalised: no column SEX"):
        check_frames(events, people.drop("SEX"))
    comma = pl.scan_csv(tsv_registry[0])   # the default separator: one column, named by the whole header
    with pytest.raises(NotNormalisedError, match="its one column's name holds tabs"):
        check_frames(comma, people)


def test_what_the_engine_accepts(tsv_registry):
    events, people = normalised()
    check_frames(events, people)
    check_frames(events.collect(), people.collect())                    # DataFrames too
    check_frames(events.with_columns(pl.lit(None).alias("CODE2")), people.select("FINNGENID", "SEX"))  # Null, minimal
    check_frames(endpointc.scan_events(tsv_registry[0], keep_as_read=True), people)   # "(as read)" columns
    assert dict(endpointc.scan_people(tsv_registry[1]).collect_schema()).items() <= PEOPLE_SCHEMA.items()
