"""Background codes drawn from a FinnGen summary file (read from shared/, never copied)."""

from __future__ import annotations

import polars as pl
import pytest

from endpointc.synth import generate
from endpointc.synth.codes import sex_of_code
from endpointc.synth.frequencies import read_code_frequencies


@pytest.fixture(scope="module")
def freq_registry(summary_path):
    events, people = generate(people=800, seed=2, code_frequencies=summary_path)
    return events.collect(), people.collect()


def test_tables_by_source_and_vocabulary(summary_path):
    tables = read_code_frequencies(summary_path)
    assert ("INPAT", "10") in tables and ("PURCH", "purch") in tables and ("PRIM_OUT", "ICP") in tables
    t = tables[("INPAT", "10")]
    assert t.cdf_female[-1] == pytest.approx(1.0) and t.cdf_male[-1] == pytest.approx(1.0)


def test_codes_come_from_the_file(freq_registry, summary_path):
    events, _ = freq_registry
    summary = pl.read_csv(summary_path, separator="\t", infer_schema=False, null_values=["NA"], quote_char=None)
    known = set(summary.filter(pl.col("SOURCE") == "INPAT", pl.col("vocabulary") == "10")["CODE1"])
    inpat = events.filter(pl.col("SOURCE") == "INPAT", pl.col("ICDVER") == "10", pl.col("CATEGORY") == "0")
    assert inpat.height > 0
    assert inpat["CODE1"].is_in(list(known)).all()
    purch = events.filter(pl.col("SOURCE") == "PURCH")
    pairs = set(summary.filter(pl.col("SOURCE") == "PURCH").select("CODE1", "CODE3").iter_rows())
    assert set(purch.select("CODE1", "CODE3").iter_rows()) <= pairs


def test_rules_still_hold(freq_registry):
    events, people = freq_registry
    year = pl.col("APPROX_EVENT_DAY").dt.year()
    hosp = events.filter(pl.col("SOURCE").is_in(["INPAT", "OUTPAT", "DEATH"]))
    assert hosp.filter((pl.col("ICDVER") == "10") & (year < 1996)).height == 0
    assert hosp.filter((pl.col("ICDVER") == "8") & (year > 1986)).height == 0
    joined = events.filter(pl.col("ICDVER") == "10").join(people.select("FINNGENID", "SEX"), on="FINNGENID")
    wrong = [(c, s) for c, s in joined.select("CODE1", "SEX").unique().iter_rows()
             if (owner := sex_of_code("icd10", c)) is not None and owner != s]
    assert not wrong, wrong[:5]


def test_deterministic_with_frequencies(summary_path):
    a = generate(people=60, seed=4, code_frequencies=summary_path)[0].collect()
    b = generate(people=60, seed=4, code_frequencies=summary_path)[0].collect()
    assert a.equals(b)
