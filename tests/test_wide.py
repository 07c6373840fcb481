"""The wide table (endpointc.results): `wide_table` and the file `write_results` writes, against
a reference built from the long table by plain Python, one cell at a time."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import endpointc.results as results
from endpointc.compiler import compile_files, definition_files
from endpointc.engine.polars import evaluate
from endpointc.parser import parse_file
from endpointc.results import LONG_SCHEMA, WIDE_FILE, wide_table, write_results
from endpointc.synth import generate

ROOT = Path(__file__).resolve().parents[1]
VALUES = (("", pl.Int8), ("_NEVT", pl.Int64), ("_AGE", pl.Float64), ("_YEAR", pl.Int32))


def reference(long: pl.DataFrame, people: pl.DataFrame, endpoints) -> pl.DataFrame:
    """The wide table as its docstring says, cell by cell."""
    order = list(dict.fromkeys(endpoints))
    found = {(r["FINNGENID"], r["ENDPOINT"]): r for r in long.iter_rows(named=True) if r["STATUS"] is not None}
    rows = []
    for person in sorted(people.iter_rows(named=True), key=lambda p: p["FINNGENID"]):
        age, birth = person["FU_END_AGE"], person.get("APPROX_BIRTH_DATE")
        year = None if age is None or birth is None else (birth + dt.timedelta(days=math.floor(age * 365.25))).year
        row = [person["FINNGENID"]]
        for endpoint in order:
            found_row = found.get((person["FINNGENID"], endpoint))
            if found_row is None:
                row += [0, 0, age, year]
            elif found_row["STATUS"] == "case":
                row += [1, found_row["NEVT"], found_row["AGE"], found_row["YEAR"]]
            else:
                row += [None] * 4
        rows.append(row)
    schema = {"FINNGENID": pl.String, **{f"{e}{suffix}": dtype for e in order for suffix, dtype in VALUES}}
    return pl.DataFrame(rows, schema=schema, orient="row")


# ids that the TSV writer must quote (tab, quote, line break, empty) next to plain ones
IDS = st.text(alphabet=st.sampled_from("ab1 é\t\"\n\r,"), max_size=4)
# and names the header must quote
ENDPOINTS = ("E1", "E2", "E_3", "LONGER_NAME", 'Q"\tX')


@st.composite
def tables(draw):
    ids = draw(st.lists(IDS, unique=True, max_size=12))
    people = pl.DataFrame({
        "FINNGENID": ids,
        "FU_END_AGE": draw(st.lists(st.none() | st.floats(0, 110), min_size=len(ids), max_size=len(ids))),
        "APPROX_BIRTH_DATE": draw(st.lists(st.none() | st.dates(dt.date(1900, 1, 1), dt.date(2020, 12, 31)),
                                           min_size=len(ids), max_size=len(ids))),
    }, schema={"FINNGENID": pl.String, "FU_END_AGE": pl.Float64, "APPROX_BIRTH_DATE": pl.Date})
    # rows of people and endpoints outside the table too: the wide table leaves them out
    pairs = draw(st.lists(st.tuples(st.sampled_from(ids) if ids and draw(st.booleans()) else IDS,
                                    st.sampled_from(ENDPOINTS + ("OTHER",))), unique=True, max_size=30))
    n = len(pairs)
    long = pl.DataFrame({
        "FINNGENID": [p for p, _ in pairs], "ENDPOINT": [e for _, e in pairs],
        # the engine writes case and excluded only; a row without status counts as none
        "STATUS": draw(st.lists(st.sampled_from(["case", "excluded", None]), min_size=n, max_size=n)),
        # ages at the second decimal's rounding edges, and any others
        "AGE": draw(st.lists(st.none() | st.sampled_from([0.125, 50.005, 61.115, 2.675]) | st.floats(0, 120),
                             min_size=n, max_size=n)),
        "YEAR": draw(st.lists(st.none() | st.integers(1900, 2030), min_size=n, max_size=n)),
        "NEVT": draw(st.lists(st.none() | st.integers(1, 10_000), min_size=n, max_size=n)),
    }, schema=LONG_SCHEMA)
    endpoints = draw(st.lists(st.sampled_from(ENDPOINTS), max_size=6))
    return long, people, endpoints


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.sampled_from([1, 2, 5, 1 << 20]), st.sampled_from([0, 2, None]))
def test_wide_table_and_file_match_the_reference(tmp_path_factory, table, block, decimals):
    long, people, endpoints = table
    expected = reference(long, people, endpoints)
    assert_frame_equal(wide_table(long.lazy(), people.lazy(), endpoints), expected)
    folder = tmp_path_factory.mktemp("wide")
    results._write_tsv(expected, folder / "expected.tsv", float_precision=decimals)
    # small blocks: people are written a few long table rows at a time
    with mock.patch.object(results, "_WIDE_BLOCK_ROWS", block):
        results._write_wide(long.lazy(), people.lazy(), endpoints, folder / "written.tsv", float_precision=decimals)
    assert (folder / "written.tsv").read_bytes() == (folder / "expected.tsv").read_bytes()


def test_a_repeated_person_and_endpoint_is_an_error():
    long = pl.LazyFrame({"FINNGENID": ["a", "a"], "ENDPOINT": ["E", "E"], "STATUS": ["case", "excluded"],
                         "AGE": [1.0, None], "YEAR": [2000, None], "NEVT": [1, None]})
    people = pl.LazyFrame({"FINNGENID": ["a"], "FU_END_AGE": [50.0]})
    with pytest.raises(ValueError, match="1 rows of the long table repeat a"):
        wide_table(long, people, ["E"])


def test_the_written_file_is_the_engines_long_table_made_wide(tmp_path):
    """The starter library evaluated by the engine: every endpoint, every person."""
    files = [parse_file(p)[0] for p in definition_files([ROOT / "definitions"])]
    program, diagnostics = compile_files(files)
    assert program is not None, diagnostics
    events, people = generate(people=200, seed=5, definitions=program)
    people = people.collect()
    res = evaluate(program, events.collect().lazy(), people.lazy())
    write_results(res.long, res.counts, tmp_path, people=people.lazy(), wide=True)
    expected = reference(res.long.collect(), people, sorted(program.names))
    results._write_tsv(expected, tmp_path / "expected.tsv", float_precision=2)
    assert (tmp_path / WIDE_FILE).read_bytes() == (tmp_path / "expected.tsv").read_bytes()
    assert expected.select(pl.sum_horizontal(pl.col(sorted(program.names)) == 1).sum()).item() > 0
