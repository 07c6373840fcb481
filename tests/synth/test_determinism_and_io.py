"""Same arguments, same bytes; chunking never changes the data; clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from endpointc.registry import load_registry
from endpointc.synth import BLOCK_PEOPLE, generate, write_registry


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["parquet", "tsv"])
def test_two_runs_are_byte_identical(tmp_path, fmt):
    a = write_registry(tmp_path / "a", people=300, seed=5, fmt=fmt)
    b = write_registry(tmp_path / "b", people=300, seed=5, fmt=fmt)
    for key in ("events", "people"):
        assert _digest(a[key]) == _digest(b[key])
    # Only the two files are left behind (no temporary parts).
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([a["events"].name, a["people"].name])


def test_different_seeds_differ():
    a = generate(people=50, seed=1)[0].collect()
    b = generate(people=50, seed=2)[0].collect()
    assert not a.equals(b)


def test_chunked_equals_one_shot(tmp_path):
    n = BLOCK_PEOPLE + 37
    events, people = generate(people=n, seed=3)
    out = write_registry(tmp_path, people=n, seed=3, chunk_people=BLOCK_PEOPLE)
    assert_frame_equal(pl.read_parquet(out["events"]), events.collect())
    assert_frame_equal(pl.read_parquet(out["people"]), people.collect())
    assert out["n_events"] == events.collect().height


def test_tsv_layout(tmp_path):
    out = write_registry(tmp_path, people=80, seed=4, fmt="tsv")
    text = out["events"].read_text().splitlines()
    header = text[0].split("\t")
    assert header[:11] == ["FINNGENID", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY", "CODE1", "CODE2",
                           "CODE3", "CODE4", "ICDVER", "CATEGORY", "INDEX"]
    assert header[-1] == "CODE9"
    row = text[1].split("\t")
    assert len(row) == len(header)
    assert "NA" in row and "" not in row
    back = pl.read_csv(out["events"], separator="\t", null_values="NA", infer_schema=False)
    parquet_like = generate(people=80, seed=4)[0].collect()
    assert back.height == parquet_like.height
    assert back["CODE1"].equals(parquet_like["CODE1"])
    people = out["people"].read_text().splitlines()
    assert people[0].split("\t") == ["FINNGENID", "SEX", "APPROX_BIRTH_DATE", "FU_END_AGE", "DEATH"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(people=0, seed=1), "people must be >= 1"),
    (dict(people=-5, seed=1), "people must be >= 1"),
    (dict(people=2.5, seed=1), "people must be an integer"),
    (dict(people=10, seed=-1), "seed must be >= 0"),
    (dict(people=10, seed=1, prevalence=1.5), "prevalence"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(**kwargs)


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        write_registry(tmp_path, people=10, seed=1, fmt="csv")


def test_missing_frequency_file_names_path(tmp_path):
    missing = tmp_path / "nope" / "summary.tsv"
    with pytest.raises(ValueError, match=str(missing).replace("\\", "\\\\")):
        generate(people=10, seed=1, code_frequencies=missing)
    with pytest.raises(ValueError, match="summary.tsv"):
        write_registry(tmp_path / "out", people=10, seed=1, code_frequencies=missing)
    assert not (tmp_path / "out").exists()


def test_frequency_file_without_columns(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("SOURCE\tCODE1\nINPAT\tI10\n")
    with pytest.raises(ValueError, match="lacks column"):
        generate(people=10, seed=1, code_frequencies=bad)


def test_output_path_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        write_registry(f, people=10, seed=1)


@pytest.mark.parametrize("fmt", ["parquet", "tsv"])
def test_registry_reader_accepts_the_files(tmp_path, fmt):
    out = write_registry(tmp_path, people=120, seed=6, fmt=fmt)
    reg = load_registry(out["events"], out["people"])
    assert reg.warnings == ()
    back = reg.events.collect()
    assert back.height == out["n_events"]
    original = generate(people=120, seed=6)[0].collect()
    assert back["CODE1"].equals(original["CODE1"])
    assert back["EVENT_AGE"].equals(original["EVENT_AGE"])
