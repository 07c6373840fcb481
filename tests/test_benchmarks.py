"""The benchmark harness (benchmarks/) with DuckDB: the per-endpoint baseline means what
the engines mean, and (slow) the whole harness runs end to end at the small size. The
parts without DuckDB are tested in test_bench_harness.py."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from polars.testing import assert_frame_equal

from endpointc.compiler import compile_text
from endpointc.engine.reference import evaluate_reference

from bench_modules import BENCH, load
from plan_strategies import EVENT_SCHEMA, PEOPLE_SCHEMA, programs, registries

REPO = Path(__file__).resolve().parents[1]

duckdb = pytest.importorskip("duckdb", reason="duckdb is a benchmark-only dependency (extra `bench`)")


baseline = load("duckdb_baseline")


def _duckdb(program, events, people, endpoints=None):
    return baseline.evaluate_duckdb(program, events, people, endpoints=endpoints, threads=1)


def _reference(program, events, people, endpoints=None):
    return evaluate_reference(program, events, people, endpoints=endpoints)


# -- hand-written endpoints ----------------------------------------------------------------

DEFINITIONS = """
endpoint T2D { hospital icd10 E11 | E149 except E114  icd9 250.A }
endpoint T2D_MAIN { hospital main icd10 E11 }
endpoint T2D_MIN2 { primary min 2 icd10 E11 }
endpoint T2D_DRUG { hospital icd10 E11  purchase needs other atc A10B }
endpoint DM1 { hospital mode icd9 250.B }
endpoint EARLY { include T2D  when age < 40 }
endpoint RECENT { hospital icd10 E11  when year >= 2005 }
endpoint ACUTE { hospital icd10 E11  when emergency }
endpoint WOMEN { include T2D  sex female }
endpoint BOTH { include T2D  require DM1 or T2D_MIN2.count >= 3 }
endpoint LATE { include T2D_DRUG  require T2D.age > 30
  controls { exclude DM1  require not EARLY } }
"""


def _hand_registry():
    d = dt.date
    rows = [
        # person, source, age, day, code1, code2, icdver, index, code9
        ("P1", "INPAT", 35.0, d(2001, 1, 1), "E119", None, "10", "1", "0"),
        ("P1", "INPAT", 36.0, d(2002, 1, 1), "E114", None, "10", "2", "1"),
        ("P1", "PURCH", 37.0, d(2003, 1, 1), "A10BA02", None, None, "3", None),
        ("P2", "INPAT", 50.0, None, "250A", None, "9", "4", None),
        ("P2", "OUTPAT", 51.0, d(2006, 5, 5), "I10", "E119", "10", "5", "1"),
        ("P2", "OUTPAT", 51.0, d(2006, 5, 5), "E110", None, "10", "5", "0"),
        ("P3", "PRIM_OUT", 20.0, d(1990, 1, 1), "E11", None, "10", None, None),
        ("P3", "PRIM_OUT", 21.0, d(1991, 1, 1), "E11", None, "10", None, None),
        ("P3", "PRIM_OUT", 22.0, d(1992, 1, 1), "E118", None, "10", None, None),
        ("P3", "PURCH", 23.0, d(1993, 1, 1), "A10BB01", None, None, None, None),
        ("P4", "INPAT", 60.0, d(2010, 1, 1), "250B", None, "9", "6", None),
        ("P4", "INPAT", 61.0, d(2011, 1, 1), "250B", None, "9", "7", None),
        ("P4", "INPAT", 62.0, d(2012, 1, 1), "250A", None, "9", "8", None),
        ("P4", "INPAT", None, d(2012, 2, 1), "E1490", None, "10", "9", None),
        ("P5", "INPAT", 30.0, d(2000, 1, 1), "250B", None, "9", "10", None),
        ("P5", "INPAT", 30.0, d(2000, 1, 1), "250A", None, "9", "11", None),
        # urgency is per visit (person + INDEX), whatever the SOURCE of the urgent row
        ("P5", "INPAT", 31.0, d(2001, 1, 1), "E111", None, "10", "13", None),
        ("P5", "PRIM_OUT", 31.0, d(2001, 1, 1), "R07", None, "10", "13", "1"),
        ("X9", "INPAT", 30.0, d(2000, 1, 1), "E11", None, "10", "12", None),  # not in people
    ]
    cols = ("FINNGENID", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY", "CODE1", "CODE2", "ICDVER",
            "INDEX", "CODE9")
    events = pl.DataFrame([dict(zip(cols, r)) for r in rows]).with_columns(
        pl.lit(None, pl.String).alias("CODE3"), pl.lit(None, pl.String).alias("CODE4"),
        pl.when(pl.col("SOURCE").is_in(["INPAT", "OUTPAT"]))
        .then(pl.when(pl.col("CODE2").is_null()).then(pl.lit("0")).otherwise(pl.lit("1")))
        .alias("CATEGORY"),
    ).select(list(EVENT_SCHEMA)).cast(EVENT_SCHEMA)
    people = pl.DataFrame({
        "FINNGENID": ["P1", "P2", "P3", "P4", "P5", "P6"],
        "SEX": ["female", "male", "female", None, "male", "female"],
    }).with_columns(pl.lit(None, pl.Date).alias("APPROX_BIRTH_DATE"),
                    pl.lit(80.0).alias("FU_END_AGE"), pl.lit(0, pl.Int64).alias("DEATH"))
    return events, people.select(list(PEOPLE_SCHEMA))


def test_hand_written_endpoints_equal_reference():
    program, diags = compile_text(DEFINITIONS)
    assert program is not None, [str(d) for d in diags]
    events, people = _hand_registry()
    expected = _reference(program, events, people)
    assert expected.height > 10  # the registry exercises the rules, not only empty sets
    assert_frame_equal(_duckdb(program, events, people), expected)


def test_sql_reads_like_a_user_query():
    program, _ = compile_text(DEFINITIONS)
    sql = baseline.endpoint_sql(program, "T2D_MIN2")
    assert "LIKE 'E11%'" in sql and "HAVING count(*) >= 2" in sql
    late = baseline.endpoint_sql(program, "LATE")
    # the include chain is evaluated inside the query
    assert "e0_cases" in late and late.count("AS (") > 5


def test_lookahead_regex_is_refused_not_rewritten():
    program, _ = compile_text('endpoint A { hospital icd10 re"E1(?!1)" }')
    with pytest.raises(baseline.UnsupportedSQL):
        baseline.endpoint_sql(program, "A")


def test_parquet_views_number_rows_like_the_engines(tmp_path):
    program, _ = compile_text(DEFINITIONS)
    events, people = _hand_registry()
    events.write_parquet(tmp_path / "events.parquet")
    people.write_parquet(tmp_path / "people.parquet")
    got = _duckdb(program, tmp_path / "events.parquet", tmp_path / "people.parquet")
    assert_frame_equal(got, _reference(program, events, people))


# -- random plans ----------------------------------------------------------------------------

def _translatable(program) -> bool:
    try:
        for name in program.names:
            baseline.endpoint_sql(program, name)
    except baseline.UnsupportedSQL:
        return False
    return True


# Plain programs: the SQL translation leaves out time constructs and spaced `min`; the
# few others it cannot translate (an endpoint reading its own events) are filtered.
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                       HealthCheck.filter_too_much])


def _random_plan_equals_reference(program, registry):
    assume(_translatable(program))
    events, people = registry
    assert_frame_equal(_duckdb(program, events, people), _reference(program, events, people))


# a DuckDB connection and a query per endpoint make an example cost ~0.3 s: a few by default
@settings(max_examples=12, **_SETTINGS)
@given(programs(max_endpoints=4, kind="plain"), registries())
def test_random_plans_equal_reference(program, registry):
    _random_plan_equals_reference(program, registry)


@pytest.mark.slow
@settings(max_examples=300, **_SETTINGS)
@given(programs(max_endpoints=5, kind="plain"), registries())
def test_many_random_plans_equal_reference(program, registry):
    _random_plan_equals_reference(program, registry)


# -- end to end ------------------------------------------------------------------------------

@pytest.mark.slow
def test_harness_small_size_end_to_end(tmp_path):
    out = tmp_path / "run.json"
    cmd = [sys.executable, str(BENCH / "run.py"), "--sizes", "small", "--data-dir", str(tmp_path / "data"),
           "--json", str(out), "--duckdb-sample", "8", "--scaling-endpoints", "50,all", "--threads", "2", "--repeats", "2"]
    subprocess.run(cmd, check=True, cwd=REPO, timeout=3600)
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1
    (size,) = report["sizes"]
    assert size["size"] == "small" and 5e5 <= size["events"] <= 5e6
    assert size["endpoints"] > 0 and report["library"]["endpoints"] == size["endpoints"]
    engine, grouped, duck = size["engine"], size["grouped"], size["duckdb"]
    for contender in (engine, grouped, duck):
        assert contender["wall_s"] > 0 and contender["peak_rss_mb"] > 0
    assert duck["sampled"] == 8 and duck["ok"] + duck["failed"] + duck["timed_out"] == 8
    # DuckDB and the engine agree on the sampled endpoints' counts
    assert duck["agree"] == duck["ok"] > 0
    assert size["ratio_grouped"] == pytest.approx(engine["wall_s"] / grouped["wall_s"])
    assert len(engine["runs"]) == len(grouped["runs"]) == 2 and report["settings"]["repeats"] == 2
    assert engine["wall_s"] == min(r["wall_s"] for r in engine["runs"])
    series = report["scaling"]
    assert [s["requested"] for s in series][-1] == "all" and all(s["wall_s"] > 0 for s in series)
    assert 0 < size["events_in_memory_gib"] < 5

    # the engine alone, on the registry just generated
    only = tmp_path / "engine.json"
    subprocess.run([*cmd[:cmd.index("--json")], "--json", str(only), "--contenders", "engine",
                    "--scaling-endpoints", ""], check=True, cwd=REPO, timeout=3600)
    (size,) = json.loads(only.read_text())["sizes"]
    assert size["engine"]["wall_s"] > 0 and size["grouped"] == size["duckdb"] == {"skipped": True}
    assert size["ratio_grouped"] is None and size["speedup_duckdb"] is None
