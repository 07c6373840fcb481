"""The tools around the engines speak of the time constructs: describe, explain, diff, and
the FinnGen export (which warns for what its columns cannot hold, never drops silently)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from endpointc.compiler import compile_text
from endpointc.describe import describe_endpoint, duration_text
from endpointc.diff import diff_libraries, format_diff
from endpointc.explain import explain_person, format_explanation
from endpointc.finngen import export_rows
from endpointc.parser import parse

TEXT = '''endpoint MI { hospital icd10 I21 }
endpoint HF {
  hospital min 2 apart 30 days icd10 I50
  when within 1 year after MI and date >= 1998-01-01
  require not MI before HF
}'''


def test_durations_in_their_largest_whole_unit():
    assert [duration_text(d) for d in (365.25, 730.5, 30.4375, 14, 30, 45.5)] == [
        "1 year", "2 years", "1 month", "2 weeks", "30 days", "45.5 days"]


def test_describe_says_the_window_and_the_spacing():
    program, _ = compile_text(TEXT)
    text = describe_endpoint(program, "HF")
    assert "at least 2 events with dates each at least 30 days after the one before" in text
    assert "the event is within 1 year after the first MI event and date of the event >= 1998-01-01" in text
    assert "not (the first MI event is before the first HF event)" in text


def test_explain_shows_the_dates_a_relation_compared():
    program, _ = compile_text(TEXT)
    days = [dt.date(2000, 1, 1), dt.date(2000, 3, 1), dt.date(2000, 3, 20)]
    events = pl.DataFrame({"FINNGENID": ["P1"] * 3, "SOURCE": ["INPAT"] * 3, "EVENT_AGE": [50.0, 50.2, 50.3],
                           "APPROX_EVENT_DAY": days, "CODE1": ["I21", "I50", "I50"], "ICDVER": ["10"] * 3})
    people = pl.DataFrame({"FINNGENID": ["P1"], "SEX": ["male"], "FU_END_AGE": [70.0]})
    text = format_explanation(explain_person(program, events, people, person="P1", endpoint="HF"))
    assert "when within 1 year after MI and date >= 1998-01-01 holds (MI.date = 2000-01-01, date = 2000-03-01)" in text
    assert "min 2 apart 30 days not reached (1 of 2 dated events far enough apart)" in text


def test_diff_names_the_changed_window():
    old, _ = parse(TEXT)
    new, _ = parse(TEXT.replace("within 1 year", "within 2 years").replace("apart 30", "apart 60"))
    text = format_diff(diff_libraries([old], [new]))
    assert "HF: when changed from within 1 year after MI and date >= 1998-01-01" in text
    assert "HF: hospital: min changed from 2 apart 30 days to 2 apart 60 days" in text


def test_export_warns_for_what_finngen_cannot_hold():
    tree, _ = parse(TEXT)
    messages = [d.message for d in export_rows([tree]).diagnostics]
    assert any("`min 2 apart 30 days` of a hospital rule: FinnGen counts events, never their spacing" in m
               for m in messages)
    assert any("`when within 1 year after MI and date >= 1998-01-01` uses dates or time relations" in m
               for m in messages)
    assert any("`require not MI before HF` uses dates or time relations" in m for m in messages)
