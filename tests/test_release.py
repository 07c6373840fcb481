"""FinnGen release files: the endpoint longitudinal file and the intermediate counts.

Hand-computed tiny tables pin both files; random programs and registries check that the
longitudinal file holds exactly each case's NEVT events and that the intermediate counts
are steps of one chain ending in N_CASES; masking and the TSV.gz round trip; `run`.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

SPEC = Path(__file__).resolve().parent / "spec"
if str(SPEC) not in sys.path:
    sys.path.insert(0, str(SPEC))

from casefile import EVENT_COLUMNS, PEOPLE_COLUMNS, parse_table  # noqa: E402
from plan_strategies import programs, registries  # noqa: E402

from endpointc.cli import app  # noqa: E402
from endpointc.compiler import compile_program, compile_text  # noqa: E402
from endpointc.engine.polars import evaluate  # noqa: E402
from endpointc.release import (  # noqa: E402
    INTERMEDIATE_STEPS, LONGITUDINAL_SCHEMA, intermediate_counts, longitudinal_parts, longitudinal_table,
    write_longitudinal,
)
from endpointc.results import INTERMEDIATE_FILE, LONGITUDINAL_FILES, remove_stale  # noqa: E402
from endpointc.synth import generate  # noqa: E402

DEFINITION = """
endpoint B { hospital icd10 E10 }
endpoint C { cancer topography C25 }
endpoint A {
  hospital main icd10 E11 except E119
  purchase min 2 needs other atc A10B
  include C
  when age < 60
  require not B
  sex female
}
endpoint R {
  hospital icd10 E11
  include C
  require not B and R.count >= 2
}
"""

# P1..P20; odd numbers are female. The comment says what each person shows for A.
EVENTS = """
FINNGENID SOURCE EVENT_AGE APPROX_EVENT_DAY CODE1   ICDVER CATEGORY
P1        INPAT  50.0      2000-03-01       E110    10     0
P3        INPAT  50.0      2000-03-01       E119    10     0
P5        INPAT  50.0      2000-03-01       E110    10     1
P7        INPAT  65.0      2015-03-01       E110    10     0
P9        PURCH  40.0      1990-03-01       A10BA02 NA     NA
P9        PURCH  41.0      1991-03-01       A10BA02 NA     NA
P9        INPAT  45.0      1995-03-01       E110    10     0
P11       PURCH  40.0      1990-03-01       A10BA02 NA     NA
P11       PURCH  41.0      NA               A10BA02 NA     NA
P13       PURCH  40.0      1990-03-01       A10BA02 NA     NA
P13       INPAT  45.0      1995-03-01       E110    10     0
P13       INPAT  45.0      1995-03-01       E110    10     0
P2        INPAT  50.0      2000-03-01       E110    10     0
P15       INPAT  50.0      2000-03-01       E110    10     0
P15       INPAT  30.0      1980-03-01       E10     10     0
P17       CANC   55.0      2005-03-01       C25     NA     NA
P17       INPAT  56.0      2006-03-01       E110    10     0
P19       CANC   70.0      2020-03-01       C25     NA     NA
P4        INPAT  50.0      2000-03-01       E10     10     0
"""
# For A -- P3: except; P5: not main; P7: when; P9: both rules; P11: needs other (its second
# purchase has no day); P13: min 2 fails for purchases, a case by its two hospital rows;
# P2: male; P15: a case of B (conditions); P17: C's event and an own one; P19: C's
# event fails `when`.

# A's steps, worked out from the comments above.
A_STEPS = (
    20,  # N(all)
    10,  # N(-sex): the women
    9,   # N(-conditions): not P15, a case of B
    8,   # N(-regex): P1 P3 P5 P7 P9 P11 P13 P17
    5,   # N(-pre_conditions/...): P1 P9 P11 P13 P17 (except, main, when)
    4,   # N(-nevt): P1 P9 P13 P17 (P11's purchases need another rule)
    4,   # N(pass+include_unique): P17 is a case through C and its own row alike
)
# R: everyone; not B leaves 18 (P4, P15); E11 rows: P1 P3 P5 P7 P9 P13 P17 P2 (P15 is B);
# no options, no min; R.count >= 2 (own rows + C's) only in the last step: P13 (two
# rows), P17 (C25 and E110).
R_STEPS = (20, 20, 18, 8, 8, 8, 2)

# A's rows, then B's, C's and R's: every event its NEVT counts, for its cases only.
EXPECTED_LONGITUDINAL = """
FINNGENID EVENT_AGE EVENT_YEAR ENDPOINT
P1        50.0      2000       A
P13       45.0      1995       A
P13       45.0      1995       A
P13       45.0      1995       R
P13       45.0      1995       R
P15       30.0      1980       B
P17       55.0      2005       A
P17       55.0      2005       C
P17       55.0      2005       R
P17       56.0      2006       A
P17       56.0      2006       R
P19       70.0      2020       C
P4        50.0      2000       B
P9        40.0      1990       A
P9        41.0      1991       A
P9        45.0      1995       A
"""


@pytest.fixture(scope="module")
def example():
    program, diagnostics = compile_text(DEFINITION)
    assert program is not None, diagnostics
    events = parse_table(EVENTS, EVENT_COLUMNS, fill=True)
    people = pl.DataFrame({
        "FINNGENID": [f"P{i}" for i in range(1, 21)],
        "SEX": ["female" if i % 2 else "male" for i in range(1, 21)],
        "APPROX_BIRTH_DATE": [None] * 20, "FU_END_AGE": [80.0] * 20, "DEATH": [0] * 20,
    }, schema=PEOPLE_COLUMNS)
    return program, events.lazy(), people.lazy()


def _expected_longitudinal() -> pl.DataFrame:
    rows = [line.split() for line in EXPECTED_LONGITUDINAL.strip().splitlines()[1:]]
    return pl.DataFrame([(f, float(a), int(y), e) for f, a, y, e in rows], schema=LONGITUDINAL_SCHEMA,
                        orient="row")


# -- the endpoint longitudinal file -------------------------------------------------------------

def test_longitudinal_rows_of_the_hand_computed_example(example):
    program, events, people = example
    table = longitudinal_table(program, events, people)
    assert table.schema == LONGITUDINAL_SCHEMA
    assert_frame_equal(table, _expected_longitudinal())


def test_longitudinal_selected_endpoints_and_missing_year(example):
    program, events, people = example
    # P11 is no case of A; a purchase without a day gives a missing EVENT_YEAR
    wanted = compile_text("endpoint P { purchase single atc A10B }")[0]
    table = longitudinal_table(wanted, events, people)
    assert table.filter(pl.col("FINNGENID") == "P11").rows() == [("P11", 40.0, 1990, "P"), ("P11", 41.0, None, "P")]
    assert longitudinal_table(program, events, people, endpoints=["C"])["ENDPOINT"].unique().to_list() == ["C"]


def test_longitudinal_does_not_depend_on_buckets(example):
    program, events, people = example
    whole = longitudinal_table(program, events, people)
    parts = list(longitudinal_parts(program, events, people, buckets=4))
    assert len(parts) == 4
    assert_frame_equal(pl.concat(parts), whole)


def test_longitudinal_tsv_gz_round_trip(example, tmp_path):
    program, events, people = example
    parquet = write_longitudinal(longitudinal_parts(program, events, people, buckets=3), tmp_path / "l.parquet")
    packed = write_longitudinal(longitudinal_parts(program, events, people, buckets=2), tmp_path / "l.tsv.gz",
                                fmt="tsv.gz")
    from_parquet = pl.read_parquet(parquet)
    assert_frame_equal(from_parquet, _expected_longitudinal())
    text = gzip.decompress(packed.read_bytes()).decode()
    assert text.splitlines()[0] == "FINNGENID\tEVENT_AGE\tEVENT_YEAR\tENDPOINT"
    assert "P1\t50.00\t2000\tA" in text.splitlines()
    back = pl.read_csv(packed, separator="\t", null_values="NA", schema=LONGITUDINAL_SCHEMA)
    assert_frame_equal(back, from_parquet)
    # the same rows give the same bytes: no time or name in the gzip header
    again = write_longitudinal(longitudinal_parts(program, events, people), tmp_path / "again.tsv.gz",
                               fmt="tsv.gz")
    assert again.read_bytes() == packed.read_bytes()


def test_longitudinal_without_cases_has_a_header(example, tmp_path):
    program, events, people = example
    nobody = compile_text("endpoint N { hospital icd10 Z99 }")[0]
    packed = write_longitudinal(longitudinal_parts(nobody, events, people, buckets=2), tmp_path / "n.tsv.gz",
                                fmt="tsv.gz")
    assert gzip.decompress(packed.read_bytes()).decode() == "FINNGENID\tEVENT_AGE\tEVENT_YEAR\tENDPOINT\n"
    empty = write_longitudinal(longitudinal_parts(nobody, events, people), tmp_path / "n.parquet")
    assert pl.read_parquet(empty).schema == LONGITUDINAL_SCHEMA
    with pytest.raises(ValueError, match="unknown format"):
        write_longitudinal([], tmp_path / "x.csv", fmt="csv")


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _longitudinal_holds_each_cases_nevt_events(program, registry):
    """Differential: per endpoint, the people of the longitudinal file are the cases of the
    long table, each with NEVT rows, and their first row is the case's AGE."""
    events, people = registry
    long = evaluate(program, events.lazy(), people.lazy()).long.collect()
    table = pl.concat(list(longitudinal_parts(program, events.lazy(), people.lazy(), buckets=3)))
    assert_frame_equal(table, longitudinal_table(program, events.lazy(), people.lazy()))
    # sorted by its content, so the events' order does not matter
    assert_frame_equal(table, table.sort("FINNGENID", "EVENT_AGE", "ENDPOINT", "EVENT_YEAR", nulls_last=True))
    shuffled = events.sample(fraction=1.0, shuffle=True, seed=1)
    assert_frame_equal(longitudinal_table(program, shuffled.lazy(), people.lazy()), table)
    per_case = (table.group_by("ENDPOINT", "FINNGENID")
                .agg(pl.len().cast(pl.Int64).alias("ROWS"), pl.col("EVENT_AGE").min().alias("FIRST")))
    cases = long.filter(pl.col("STATUS") == "case").select("ENDPOINT", "FINNGENID", "NEVT", "AGE")
    joined = cases.join(per_case, on=["ENDPOINT", "FINNGENID"], how="full", coalesce=True)
    assert joined.filter(pl.col("NEVT").is_null() | pl.col("ROWS").is_null()).is_empty()
    assert (joined["NEVT"] == joined["ROWS"]).all()
    assert joined.filter(pl.col("AGE").ne_missing(pl.col("FIRST"))).is_empty()


# About 0.45 s an example: a few by default, many with -m slow.
@settings(max_examples=8, **_SETTINGS)
@given(programs(), registries())
def test_longitudinal_holds_each_cases_nevt_events(program, registry):
    _longitudinal_holds_each_cases_nevt_events(program, registry)


@pytest.mark.slow
@settings(max_examples=150, **_SETTINGS)
@given(programs(), registries())
def test_many_longitudinal_files_hold_each_cases_nevt_events(program, registry):
    _longitudinal_holds_each_cases_nevt_events(program, registry)


def test_longitudinal_of_the_starter_library():
    """Differential on the starter library (purchases with `min 3`, `needs other`, `mode`,
    `when`, chains of includes) over a definition-aware synthetic registry."""
    program = compile_program([Path(__file__).resolve().parents[1] / "endpointc" / "definitions"])
    events, people = (frame.collect().lazy() for frame in generate(people=600, seed=5, definitions=program))
    results = evaluate(program, events, people)
    table = longitudinal_table(program, events, people)
    cases = results.long.filter(pl.col("STATUS") == "case").collect()
    per_case = table.group_by("ENDPOINT", "FINNGENID").agg(pl.len().cast(pl.Int64).alias("NEVT"))
    assert_frame_equal(per_case.sort("ENDPOINT", "FINNGENID"), cases.select("ENDPOINT", "FINNGENID", "NEVT"))
    counted = [ep.name for ep in program.endpoints if any(r.min_events > 1 or r.needs_other for r in ep.rules)]
    assert set(counted) & set(cases["ENDPOINT"])   # the counted rules were exercised
    steps = intermediate_counts(program, events, people, mask_threshold=None, buckets=3)
    assert steps["N(pass+include_unique)"].to_list() == results.counts.collect()["N_CASES"].to_list()


# -- the intermediate counts --------------------------------------------------------------------

def test_intermediate_counts_of_the_hand_computed_example(example):
    program, events, people = example
    table = intermediate_counts(program, events, people, mask_threshold=None)
    assert table.columns == ["ENDPOINT", "SOURCE", "N(all)", "N(-sex)", "N(-conditions)", "N(-regex)",
                             "N(-pre_conditions/mainonly/mode/icdver/reimb_icd)", "N(-nevt)",
                             "N(pass+include_unique)"]
    rows = {r[0]: r[1:] for r in table.rows()}
    assert rows["A"] == ("ALL", *A_STEPS)
    assert rows["R"] == ("ALL", *R_STEPS)
    assert rows["B"] == rows["C"] == ("ALL", 20, 20, 20, 2, 2, 2, 2)
    assert table["ENDPOINT"].to_list() == ["A", "B", "C", "R"]
    counts = evaluate(program, events, people).counts.collect()
    assert table["N(pass+include_unique)"].to_list() == counts["N_CASES"].to_list()


def test_intermediate_counts_of_selected_endpoints(example):
    program, events, people = example
    table = intermediate_counts(program, events, people, endpoints=["R", "A"], mask_threshold=None, buckets=3)
    assert table.rows() == [("A", "ALL", *A_STEPS), ("R", "ALL", *R_STEPS)]
    with pytest.raises(KeyError, match="NOPE"):
        intermediate_counts(program, events, people, endpoints=["NOPE"])


def test_intermediate_counts_masked(example):
    program, events, people = example
    shown = {r[0]: r[2:] for r in intermediate_counts(program, events, people).rows()}
    plain = {r[0]: r[2:] for r in intermediate_counts(program, events, people, mask_threshold=None).rows()}
    # every count of 1-4 is <5, N(all) and N(-sex) are shown, and no two neighbouring
    # steps shown as numbers differ by 1 to 4 (what Risteys refuses on import)
    for name, texts in shown.items():
        numbers = [int(t) if t.isdigit() else None for t in texts]
        assert numbers[0] == 20 and numbers[1] is not None
        for text, value in zip(texts, plain[name]):
            assert text in ("<5", "masked", str(value)) and (text == "<5") == (1 <= value <= 4)
        for a, b in zip(numbers[1:], numbers[2:]):
            assert a is None or b is None or not 1 <= abs(a - b) <= 4, (name, texts)
    # A: 9 after conditions, one fewer than the 10 women (known), cannot be shown
    assert shown["A"][:3] == ("20", "10", "masked")


def test_intermediate_counts_hide_small_differences():
    program = compile_text("endpoint A { hospital main icd10 E11 }")[0]
    events = parse_table("\n".join(["FINNGENID SOURCE EVENT_AGE CODE1 ICDVER CATEGORY"]
                                   + [f"P{i} INPAT 50.0 E11 10 {'1' if i <= 3 else '0'}" for i in range(1, 41)]),
                         EVENT_COLUMNS, fill=True)
    people = pl.DataFrame({"FINNGENID": [f"P{i}" for i in range(1, 101)], "SEX": ["female"] * 100,
                           "APPROX_BIRTH_DATE": [None] * 100, "FU_END_AGE": [80.0] * 100, "DEATH": [0] * 100},
                          schema=PEOPLE_COLUMNS)
    plain = intermediate_counts(program, events.lazy(), people.lazy(), mask_threshold=None).row(0)[2:]
    assert plain == (100, 100, 100, 40, 37, 37, 37)
    # `main` drops 3 people: 40 or 37 after it must go, the smaller; 37 to 39 fit the rest
    shown = intermediate_counts(program, events.lazy(), people.lazy()).row(0)[2:]
    assert shown == ("100", "100", "100", "40", "masked", "37", "37")
    assert intermediate_counts(program, events.lazy(), people.lazy(), mask_threshold=10).row(0)[2:] == shown


def test_intermediate_counts_small_differences_on_both_sides_of_a_step():
    # `min 2` drops 2 people and the include adds them back: two hidden differences
    program = compile_text("endpoint B { hospital icd10 E10 }\nendpoint A { hospital min 2 icd10 E11  include B }")[0]
    lines = ["FINNGENID SOURCE EVENT_AGE CODE1 ICDVER"]
    lines += [f"P{i} INPAT {age} E11 10" for i in range(1, 11) for age in (50.0, 51.0)]
    lines += [f"P{i} INPAT 50.0 {code} 10" for i in (11, 12) for code in ("E11", "E10")]
    events = parse_table("\n".join(lines), EVENT_COLUMNS, fill=True).lazy()
    people = pl.DataFrame({"FINNGENID": [f"P{i}" for i in range(1, 41)], "SEX": ["female"] * 40,
                           "APPROX_BIRTH_DATE": [None] * 40, "FU_END_AGE": [80.0] * 40, "DEATH": [0] * 40},
                          schema=PEOPLE_COLUMNS).lazy()
    plain = intermediate_counts(program, events, people, endpoints=["A"], mask_threshold=None).row(0)[2:]
    assert plain == (40, 40, 40, 12, 12, 10, 12)
    shown = intermediate_counts(program, events, people, endpoints=["A"]).row(0)[2:]
    # 12 cases are in counts.tsv: the 10 between the twelves must go
    assert shown == ("40", "40", "40", "12", "12", "masked", "12")


def _intermediate_counts_are_one_chain(program, registry):
    """Each step keeps at most the people of the one before; the last is N_CASES, within
    those after conditions, and past the nevt step unless `require` reads the endpoint."""
    events, people = registry
    table = intermediate_counts(program, events.lazy(), people.lazy(), mask_threshold=None, buckets=2)
    counts = evaluate(program, events.lazy(), people.lazy()).counts.collect()
    assert table["ENDPOINT"].to_list() == counts["ENDPOINT"].to_list()
    assert table["N(pass+include_unique)"].to_list() == counts["N_CASES"].to_list()
    for row in table.iter_rows(named=True):
        steps = [row[s] for s in INTERMEDIATE_STEPS]
        assert all(a >= b for a, b in zip(steps[:-2], steps[1:-1])), steps
        assert steps[-1] <= steps[2]
        ep = program.get(row["ENDPOINT"])
        reads_itself = ep.require is not None and ep.name in {n.endpoint for n in _facts(ep.require)}
        if not reads_itself:
            assert steps[-1] >= steps[-2], steps
        if not ep.rules:
            assert steps[3:6] == [0, 0, 0]
    # masked, the same steps as text
    masked = intermediate_counts(program, events.lazy(), people.lazy())
    for plain_row, shown_row in zip(table.rows(), masked.rows()):
        for value, text in zip(plain_row[2:], shown_row[2:]):
            assert text in ("<5", "masked", str(value)) and (text == "<5") == (1 <= value <= 4)


# About 0.4 s an example: a few by default, many with -m slow.
@settings(max_examples=8, **_SETTINGS)
@given(programs(), registries())
def test_intermediate_counts_are_one_chain(program, registry):
    _intermediate_counts_are_one_chain(program, registry)


@pytest.mark.slow
@settings(max_examples=150, **_SETTINGS)
@given(programs(), registries())
def test_many_intermediate_counts_are_one_chain(program, registry):
    _intermediate_counts_are_one_chain(program, registry)


def _facts(cond):
    from endpointc.plan import EndpointFact, walk

    return [n for n in walk(cond) if isinstance(n, EndpointFact)]


# -- `run` ------------------------------------------------------------------------------------

@pytest.fixture
def registry_files(example, tmp_path):
    _, events, people = example
    events.collect().write_parquet(tmp_path / "events.parquet")
    people.collect().write_parquet(tmp_path / "people.parquet")
    (tmp_path / "defs.ep").write_text(DEFINITION)
    return tmp_path


def _run(folder: Path, *options: str):
    return CliRunner().invoke(app, ["run", str(folder / "defs.ep"), "--events", str(folder / "events.parquet"),
                                    "--people", str(folder / "people.parquet"), "--out", str(folder / "out"),
                                    *options])


def test_run_writes_the_release_files(registry_files, example):
    folder = registry_files
    result = _run(folder, "--longitudinal", "tsv.gz", "--intermediate-counts", "--buckets", "2")
    assert result.exit_code == 0, result.output
    out = folder / "out"
    back = pl.read_csv(out / LONGITUDINAL_FILES["tsv.gz"], separator="\t", null_values="NA",
                       schema=LONGITUDINAL_SCHEMA)
    assert_frame_equal(back, _expected_longitudinal())
    counts = pl.read_csv(out / INTERMEDIATE_FILE, separator="\t", infer_schema=False)
    program, events, people = example
    assert_frame_equal(counts, intermediate_counts(program, events, people))
    assert not (out / LONGITUDINAL_FILES["parquet"]).exists()

    result = _run(folder, "--longitudinal", "parquet", "--no-mask", "--intermediate-counts")
    assert result.exit_code == 0, result.output
    assert_frame_equal(pl.read_parquet(out / LONGITUDINAL_FILES["parquet"]), _expected_longitudinal())
    plain = pl.read_csv(out / INTERMEDIATE_FILE, separator="\t")
    assert plain.filter(pl.col("ENDPOINT") == "A").row(0)[2:] == A_STEPS


def test_run_release_options(registry_files):
    folder = registry_files
    assert _run(folder).exit_code == 0
    assert {p.name for p in (folder / "out").iterdir()}.isdisjoint({INTERMEDIATE_FILE, *LONGITUDINAL_FILES.values()})
    result = _run(folder, "--longitudinal", "csv")
    assert result.exit_code == 2


def test_leftovers_of_release_files_are_removed(tmp_path):
    # what a killed run left while writing a release file goes with the next run
    from endpointc.results import _HOST

    from test_results import dead_pid

    dead = dead_pid()
    stale = [tmp_path / f".endpointc-tmp-{_HOST}-{dead}-{name}.a1b2c3.tmp"
             for name in (INTERMEDIATE_FILE, *LONGITUDINAL_FILES.values())]
    for path in stale:
        path.write_text("")
    assert sorted(remove_stale(tmp_path)) == sorted(stale)
