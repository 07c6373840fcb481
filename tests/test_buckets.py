"""Bucketed execution from the command line: same bytes whatever the bucket count, a
progress callback per bucket, and the --buckets/--threads options."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from endpointc import cli
from endpointc.cli import app, auto_buckets
from endpointc.compiler import compile_paths
from endpointc.engine import polars as engine_polars
from endpointc.engine import prepare as engine_prepare
from endpointc.engine import spill
from endpointc.engine.columns import LONG_CODED
from endpointc.engine.matching import match_keys
from endpointc.engine.polars import evaluate, person_buckets
from endpointc.registry import load_registry
from endpointc.synth import write_registry

ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = ROOT / "definitions"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def program():
    program, diagnostics = compile_paths(sorted(DEFINITIONS.rglob("*.ep")))
    assert program is not None, diagnostics
    return program


@pytest.fixture(scope="module")
def registry(tmp_path_factory, program) -> Path:
    out = tmp_path_factory.mktemp("bucket_registry")
    write_registry(out, people=300, seed=2, fmt="parquet", definitions=program)
    return out


def _run(registry: Path, out: Path, *extra):
    result = invoke("run", DEFINITIONS, "--events", registry / "events.parquet",
                    "--people", registry / "people.parquet", "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return result


def test_outputs_are_byte_identical_whatever_the_bucket_count(registry, tmp_path):
    one, three = tmp_path / "one", tmp_path / "three"
    _run(registry, one, "--buckets", "1")
    _run(registry, three, "--buckets", "3")
    for name in ("endpoints.parquet", "counts.tsv"):
        assert (one / name).read_bytes() == (three / name).read_bytes(), name
    # the comparison means something only if there are cases to compare
    assert pl.read_parquet(one / "endpoints.parquet").filter(pl.col("STATUS") == "case").height > 0


def test_progress_callback_once_per_bucket(registry, program):
    reg = load_registry(registry / "events.parquet", registry / "people.parquet")
    calls = []
    evaluate(program, reg.events, reg.people, buckets=4, on_bucket=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_auto_buckets_one_per_chunk_of_events(monkeypatch):
    events = pl.LazyFrame({"FINNGENID": ["A"] * 25})
    assert auto_buckets(events) == 1
    monkeypatch.setattr(cli, "EVENTS_PER_BUCKET", 10)
    assert auto_buckets(events) == 3
    assert auto_buckets(events.head(0)) == 1


def test_auto_is_the_default_and_accepted(registry, tmp_path):
    _run(registry, tmp_path / "auto", "--buckets", "auto")
    assert (tmp_path / "auto" / "counts.tsv").exists()


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_bucket_count_is_a_usage_error(registry, tmp_path, value):
    result = invoke("run", DEFINITIONS, "--events", registry / "events.parquet",
                    "--people", registry / "people.parquet", "--out", tmp_path, "--buckets", value)
    assert result.exit_code == 2
    assert "--buckets" in result.output


def test_threads_matching_the_pool_runs_without_warning(registry, tmp_path):
    result = _run(registry, tmp_path / "t", "--threads", str(pl.thread_pool_size()))
    assert "--threads" not in result.output


def test_threads_other_than_the_pool_warns_in_process(registry, tmp_path):
    # polars is already running in this process, so its pool cannot be resized: say so
    other = pl.thread_pool_size() + 1
    result = _run(registry, tmp_path / "t", "--threads", str(other))
    assert f"POLARS_MAX_THREADS={other}" in result.output


def test_threads_must_be_positive(registry, tmp_path):
    result = invoke("run", DEFINITIONS, "--events", registry / "events.parquet",
                    "--people", registry / "people.parquet", "--out", tmp_path, "--threads", "0")
    assert result.exit_code == 2


def test_person_buckets_cover_everyone_once_in_id_order():
    people = pl.LazyFrame({"FINNGENID": [f"P{i:03d}" for i in range(10)] + [None]})
    filters = person_buckets(people, 3)
    assert len(filters) == 3
    ids = people.select("FINNGENID").collect()
    parts = [ids.filter(f)["FINNGENID"].to_list() for f in filters]
    assert sorted(sum(parts, []), key=str) == sorted(ids["FINNGENID"].to_list(), key=str)
    # consecutive ranges, the missing id in the first one
    assert None in parts[0]
    assert max(p for p in parts[0] if p) < min(parts[1]) and max(parts[1]) < min(parts[2])
    # never more buckets than people
    assert len(person_buckets(people.head(2), 5)) == 2
    assert len(person_buckets(people.head(1), 5)) == 1


@pytest.mark.parametrize("slice_rows", [2_000_000, 50])
def test_spilled_buckets_merge_to_the_in_memory_result(registry, program, tmp_path, monkeypatch,
                                                       slice_rows):
    # 50 rows per merged slice: many slices, some of a single endpoint larger than that
    monkeypatch.setattr(spill, "MERGE_ROWS", slice_rows)
    reg = load_registry(registry / "events.parquet", registry / "people.parquet")
    one = evaluate(program, reg.events, reg.people)
    spilled = evaluate(program, reg.events, reg.people, buckets=4, spill_dir=tmp_path)
    assert len(list(tmp_path.glob("bucket-*.parquet"))) == 4
    assert spilled.long.collect().equals(one.long.collect())
    assert spilled.counts.collect().equals(one.counts.collect())


@pytest.mark.parametrize("fanin", [2, 1])
def test_many_buckets_merge_in_steps_to_the_same_result(registry, program, tmp_path, monkeypatch, fanin):
    # 5 buckets, at most `fanin` files per merge: groups of 3 neighbours are merged first
    # (fan-in 1: then those 2 into 1); slices of 20 rows cut every group's endpoints
    monkeypatch.setattr(spill, "MERGE_FANIN", fanin)
    monkeypatch.setattr(spill, "MERGE_ROWS", 20)
    reg = load_registry(registry / "events.parquet", registry / "people.parquet")
    one = evaluate(program, reg.events, reg.people)
    spilled = evaluate(program, reg.events, reg.people, buckets=5, spill_dir=tmp_path)
    assert not list(tmp_path.glob("bucket-*.parquet"))
    assert sorted(p.name for p in tmp_path.glob("merged-*.parquet")) == (
        ["merged-1-00000.parquet", "merged-1-00001.parquet"] if fanin == 2
        else ["merged-2-00000.parquet"])
    assert spilled.long.collect().equals(one.long.collect())
    assert spilled.counts.collect().equals(one.counts.collect())


@pytest.mark.parametrize("keep_as_read", [False, True])
def test_key_prepass_in_parts_matches_the_keys_of_one_pass(registry, program, monkeypatch, keep_as_read):
    # parts of 2 buckets: evaluate's key prepass reads the events part by part
    reg = load_registry(registry / "events.parquet", registry / "people.parquet", keep_as_read=keep_as_read)
    one = match_keys(program, reg.events)
    parts = match_keys(program, reg.events, parts=person_buckets(reg.people, 4))
    assert parts.keys.equals(one.keys) and parts.rules.equals(one.rules)
    assert (parts.hash_unique, len(parts.row_filters)) == (one.hash_unique, len(one.row_filters))
    assert (parts.read_keys is None) == (one.read_keys is None) == (not keep_as_read)
    if keep_as_read:
        assert parts.read_keys.sort("_HASH").equals(one.read_keys.sort("_HASH"))  # a join table: any order

    monkeypatch.setattr(engine_polars, "_KEY_PART_BUCKETS", 2)
    seen = []
    real = engine_prepare.match_keys
    monkeypatch.setattr(engine_prepare, "match_keys", lambda *a, **kw: seen.append(kw["parts"]) or real(*a, **kw))
    whole = evaluate(program, reg.events, reg.people)
    bucketed = evaluate(program, reg.events, reg.people, buckets=5)
    assert [len(p) for p in seen] == [1, 3]  # 5 buckets: parts of 2, 2 and 1
    assert bucketed.long.collect().equals(whole.long.collect())
    assert bucketed.counts.collect().equals(whole.counts.collect())


def test_a_bucket_filter_reaches_the_parquet_reader(registry):
    # so that on a file sorted by person the reader skips the other buckets' row groups
    reg = load_registry(registry / "events.parquet", registry / "people.parquet")
    plan = reg.events.filter(person_buckets(reg.people, 10)[1]).explain()
    scan = plan[plan.index("Parquet SCAN"):]
    assert "SELECTION" in scan and "FINNGENID" in scan[scan.index("SELECTION"):]


def test_run_leaves_no_bucket_files_behind(registry, tmp_path):
    _run(registry, tmp_path / "out", "--buckets", "3")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["counts.tsv", "endpoints.parquet",
                                                                    "manifest.json"]


@pytest.mark.parametrize("buckets", [1, 3])
def test_long_is_sorted_by_endpoint_then_person(registry, program, tmp_path, buckets):
    reg = load_registry(registry / "events.parquet", registry / "people.parquet")
    long = evaluate(program, reg.events, reg.people, buckets=buckets, spill_dir=tmp_path).long.collect()
    assert long["ENDPOINT"].n_unique() > 10
    assert long.equals(long.sort("ENDPOINT", "FINNGENID"))


def test_spilled_buckets_with_selected_endpoints(registry, program, tmp_path, monkeypatch):
    # selected endpoints pull in dependencies that are evaluated but not returned
    monkeypatch.setattr(spill, "MERGE_ROWS", 20)
    reg = load_registry(registry / "events.parquet", registry / "people.parquet")
    wanted = [ep.name for ep in program.endpoints if ep.includes][:3]
    wanted += [program.endpoints[-1].name]
    one = evaluate(program, reg.events, reg.people, endpoints=wanted)
    spilled = evaluate(program, reg.events, reg.people, endpoints=wanted, buckets=3, spill_dir=tmp_path)
    assert one.long.collect().height > 0
    assert spilled.long.collect().equals(one.long.collect())


def key(ep: int, pid: int) -> int:
    return ep * 2**32 + pid


def _spill(path: Path, keys: list[int]) -> Path:
    pl.DataFrame({"_KEY": keys, "CASE": [True] * len(keys), "AGE": [1.0] * len(keys),
                  "YEAR": [2000] * len(keys), "NEVT": [1] * len(keys)},
                 schema=LONG_CODED).write_parquet(path)
    return path


def test_merge_puts_bucket_pieces_in_key_order(tmp_path, monkeypatch):
    # two buckets (persons 0-1, 2-3) of three endpoints: the merge interleaves them
    # endpoint by endpoint, in slices of 3 rows
    monkeypatch.setattr(spill, "MERGE_ROWS", 3)
    files = [_spill(tmp_path / "b0.parquet", [key(0, 0), key(0, 1), key(2, 1)]),
             _spill(tmp_path / "b1.parquet", [key(0, 2), key(1, 3), key(2, 2), key(2, 3)])]
    merged = spill.stream_merged(files, [[2, 0, 1], [1, 1, 2]]).collect()
    assert merged["_KEY"].to_list() == [key(0, 0), key(0, 1), key(0, 2), key(1, 3),
                                        key(2, 1), key(2, 2), key(2, 3)]


def test_merge_sorts_a_slice_whose_rows_came_out_of_order(tmp_path):
    # a file not in _KEY order (as if the reader had not kept the order) is still merged right
    files = [_spill(tmp_path / "b0.parquet", [key(1, 0), key(0, 0)]),
             _spill(tmp_path / "b1.parquet", [key(0, 1), key(1, 1)])]
    merged = spill.stream_merged(files, [[1, 1], [1, 1]]).collect()
    assert merged["_KEY"].to_list() == [key(0, 0), key(0, 1), key(1, 0), key(1, 1)]


def test_merge_refuses_counts_that_do_not_match_the_files(tmp_path):
    files = [_spill(tmp_path / "b0.parquet", [0, 1]), _spill(tmp_path / "b1.parquet", [2])]
    with pytest.raises(Exception, match="differ from its counts"):
        spill.stream_merged(files, [[1], [1]]).collect()
