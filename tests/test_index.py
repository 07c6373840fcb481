"""The event index: the same results with it as without, byte for byte; a changed registry
is refused, naming the file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

import endpointc
from endpointc import index as index_module
from endpointc.cli import app
from endpointc.engine import indexed
from endpointc.engine.polars import evaluate
from endpointc.index import EventIndexError, build_index, open_index
from endpointc.registry import RegistryError, load_registry
from endpointc.synth import write_registry

from plan_strategies import programs, registries

DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                       HealthCheck.filter_too_much])


def _same(got, expected) -> None:
    assert_frame_equal(got.long.collect(), expected.long.collect())
    assert_frame_equal(got.counts.collect(), expected.counts.collect())
    assert got.warnings == expected.warnings


def _index_equals_the_registry(program, registry, data):
    """Random programs and registries, through every path of the index: several row files,
    ranges read as one across gaps or not, several buckets of index rows, or a pass over
    the registry with the index's keys (tiny sizes so that a few rows reach them all)."""
    events, people = registry
    selection = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(program.names), min_size=1, max_size=2,
                                                         unique=True)), label="endpoints")
    rows_per_file = data.draw(st.sampled_from([4, 16, 10**6]), label="rows per file")
    gap = data.draw(st.sampled_from([1, 8]), label="gap")
    bucket_rows = data.draw(st.sampled_from([3, 20, 10**6]), label="matched rows per bucket")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        events.write_parquet(folder / "events.parquet")
        people.write_parquet(folder / "people.parquet")
        try:
            loaded = load_registry(folder / "events.parquet", folder / "people.parquet", allow_empty_events=True)
        except RegistryError:
            assume(False)
        with mock.patch.object(index_module, "ROWS_PER_FILE", rows_per_file), \
                mock.patch.object(index_module, "ROW_GROUP", 4):
            build_index(folder / "events.parquet", folder / "people.parquet", folder / "idx",
                        allow_empty_events=True)
        expected = evaluate(program, loaded.events, loaded.people, endpoints=selection)
        with mock.patch.object(indexed, "_BUCKET_ROWS", bucket_rows), mock.patch.object(indexed, "_GAP", gap):
            got = evaluate(program, open_index(folder / "idx"), endpoints=selection, buckets=2)
        _same(got, expected)


# About 0.7 s an example: a few by default (the starter library's tests below take the same
# paths), many with -m slow.
@settings(max_examples=10, **_SETTINGS)
@given(programs(), registries(), st.data())
def test_index_equals_the_registry(program, registry, data):
    _index_equals_the_registry(program, registry, data)


@pytest.mark.slow
@settings(max_examples=100, **_SETTINGS)
@given(programs(), registries(), st.data())
def test_many_programs_index_equals_the_registry(program, registry, data):
    _index_equals_the_registry(program, registry, data)


@pytest.fixture(scope="module")
def starter(tmp_path_factory):
    """The starter library, a synthetic registry made for it (TSV, so that the registry
    pass of the index reads what load_registry reads) and its index."""
    root = tmp_path_factory.mktemp("index")
    program = endpointc.compile_program([DEFINITIONS])
    write_registry(root / "reg", people=300, seed=5, fmt="tsv", definitions=program)
    events, people = sorted((root / "reg").glob("events.*"))[0], sorted((root / "reg").glob("people.*"))[0]
    build_index(events, people, root / "idx")
    return root, program, events, people


@pytest.mark.parametrize("selection", [None, ["I9_MI"], ["E4_DM2", "I9_STROKE_EMERG"], ["J10_ASTHMA_EMERG"]])
def test_starter_library(starter, selection):
    root, program, events, people = starter
    registry = load_registry(events, people, keep_as_read=True)
    with tempfile.TemporaryDirectory() as spill:
        expected = evaluate(program, registry.events, registry.people, endpoints=selection, buckets=3,
                            spill_dir=spill)
        _same(evaluate(program, open_index(root / "idx", events=events, people=people), endpoints=selection,
                       buckets=3, spill_dir=spill), expected)


def test_run_with_the_index_writes_the_same_files(starter):
    root, _, events, people = starter
    runner = CliRunner()
    common = [str(DEFINITIONS), "--events", str(events), "--people", str(people), "--endpoints", "I9_MI,E4_DM2"]
    assert runner.invoke(app, ["run", *common, "--out", str(root / "plain")]).exit_code == 0
    result = runner.invoke(app, ["run", *common, "--out", str(root / "indexed"), "--index", str(root / "idx")])
    assert result.exit_code == 0, result.output
    for name in ("endpoints.parquet", "counts.tsv"):
        assert (root / "plain" / name).read_bytes() == (root / "indexed" / name).read_bytes(), name


# -- a changed registry ---------------------------------------------------------------------

@pytest.fixture
def small(tmp_path):
    """A registry of 30 people and its index."""
    write_registry(tmp_path / "reg", people=30, seed=2, fmt="parquet")
    events, people = tmp_path / "reg" / "events.parquet", tmp_path / "reg" / "people.parquet"
    build_index(events, people, tmp_path / "idx")
    return tmp_path, events, people


def test_a_rewritten_file_of_the_same_size_is_refused(small):
    root, events, _ = small
    data = bytearray(events.read_bytes())
    data[len(data) // 2] ^= 0xFF
    events.write_bytes(bytes(data))
    with pytest.raises(EventIndexError, match=f"events file {events}.* has changed"):
        open_index(root / "idx")


def test_a_file_of_another_size_is_refused(small):
    root, _, people = small
    people.write_bytes(people.read_bytes() + b"\0")
    with pytest.raises(EventIndexError, match=f"people file {people}.* has changed"):
        open_index(root / "idx")


def test_a_touched_file_with_the_same_content_is_served(small):
    root, events, _ = small
    os.utime(events, ns=(1, 1))
    assert open_index(root / "idx").manifest.rows > 0


def test_an_index_of_other_files_or_of_another_format_is_refused(small, tmp_path):
    root, events, people = small
    other = tmp_path / "other.parquet"
    other.write_bytes(events.read_bytes())
    with pytest.raises(EventIndexError, match="was built from events file"):
        open_index(root / "idx", events=other, people=people)
    with pytest.raises(EventIndexError, match="not an event index"):
        open_index(root / "reg")
    manifest = json.loads((root / "idx" / "index.json").read_text())
    (root / "idx" / "index.json").write_text(json.dumps({**manifest, "format": 999}))
    with pytest.raises(EventIndexError, match="index format 999"):
        open_index(root / "idx")


def test_a_folder_that_is_not_an_index_is_not_replaced(small):
    root, events, people = small
    with pytest.raises(EventIndexError, match="not an event index"):
        build_index(events, people, root / "reg")
    assert (root / "reg" / "events.parquet").exists()


def test_rebuilding_replaces_the_index(small):
    root, events, people = small
    before = open_index(root / "idx").manifest
    write_registry(root / "reg", people=40, seed=3, fmt="parquet")
    with pytest.raises(EventIndexError):
        open_index(root / "idx")
    after = build_index(events, people, root / "idx").manifest
    assert after.people_count == 40 != before.people_count
    assert not [p for p in root.iterdir() if p.name.startswith(".idx")]


def test_cli_refuses_a_changed_registry(small):
    root, events, people = small
    write_registry(root / "other", people=30, seed=9, fmt="parquet")
    events.write_bytes((root / "other" / "events.parquet").read_bytes())
    result = CliRunner().invoke(app, ["run", str(DEFINITIONS), "--events", str(events), "--people", str(people),
                                      "--out", str(root / "out"), "--index", str(root / "idx")])
    assert result.exit_code == 2
    stderr = result.stderr.replace("\n", "")  # rich wraps long lines
    assert f"events file {events} has changed" in stderr
    assert not (root / "out" / "endpoints.parquet").exists()


def test_the_index_holds_every_checked_event(small):
    root, events, people = small
    index = open_index(root / "idx")
    registry = load_registry(events, people)
    rows = pl.concat([index.row_file(f.name).collect() for f in index.manifest.files])
    assert rows.height == index.manifest.rows == registry.events.select(pl.len()).collect().item()
    assert rows.select(pl.col("KEY").is_sorted()).item()
    keys = index.keys().collect()
    assert keys["_ROWS"].sum() == rows.height
    assert (rows["KEY"].value_counts().sort("KEY")["count"].to_list()
            == keys.filter(pl.col("_ROWS") > 0)["_ROWS"].to_list())
