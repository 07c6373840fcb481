"""Output tables, masking and atomic writes (endpointc.results, endpointc.masking)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import endpointc.results as results
from endpointc.results import (
    COUNTS_FILE,
    LONG_FILE,
    LONG_SCHEMA,
    WIDE_FILE,
    counts_table,
    wide_table,
    write_results,
)
from endpointc.masking import MASK_THRESHOLD, check_threshold, is_masked, mask_count, mask_counts

# Population p1..p9. E1: 2 cases, 1 excluded. E2: 5 cases. E3 (zero cases) only via the endpoint list.
LONG = pl.LazyFrame(
    {
        "FINNGENID": ["p3", "p1", "p2", "p1", "p2", "p3", "p4", "p5"],
        "ENDPOINT": ["E1", "E1", "E1", "E2", "E2", "E2", "E2", "E2"],
        "STATUS": ["case", "case", "excluded", "case", "case", "case", "case", "case"],
        "AGE": [61.123, 50.5, None, 40.0, 41.0, 42.0, 43.0, 44.0],
        "YEAR": [2011, 2000, None, 1990, 1991, 1992, 1993, 1994],
        "NEVT": [1, 3, None, 1, 1, 2, 1, 1],
    },
    schema_overrides={"YEAR": pl.Int32},
)
PEOPLE = pl.LazyFrame({
    "FINNGENID": [f"p{i}" for i in range(9, 0, -1)],
    "SEX": ["female"] * 9,
    "APPROX_BIRTH_DATE": [dt.date(1950, 1, 1)] * 8 + [None],   # p1 has no birth date
    "FU_END_AGE": [70.5, 71.0, 72.0, 73.0, 74.0, 75.0, 76.0, 77.0, 78.0],
    "DEATH": [0] * 9,
})


def counts(endpoints=("E1", "E2", "E3")) -> pl.LazyFrame:
    return counts_table(LONG, PEOPLE, endpoints=endpoints)


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().split("\n")[:-1]]


# --- counts and masking ------------------------------------------------------------------

def test_counts_table_values_and_zero_case_endpoints():
    df = counts().collect()
    assert df.columns == ["ENDPOINT", "N_CASES", "N_CONTROLS", "N_EXCLUDED"]
    assert all(t == pl.Int64 for t in df.schema.values() if t != pl.String)
    assert df.rows() == [("E1", 2, 6, 1), ("E2", 5, 4, 0), ("E3", 0, 9, 0)]
    # Without the list, only endpoints of the long table are known.
    assert counts_table(LONG, PEOPLE).collect()["ENDPOINT"].to_list() == ["E1", "E2"]


def test_mask_counts_threshold():
    df = pl.DataFrame({"ENDPOINT": list("abcdef"), "N_CASES": [0, 1, 4, 5, 6, None]})
    assert mask_counts(df)["N_CASES"].to_list() == ["0", "<5", "<5", "5", "6", None]
    assert mask_counts(df, threshold=6)["N_CASES"].to_list() == ["0", "<6", "<6", "<6", "6", None]
    assert mask_counts(df, threshold=1)["N_CASES"].to_list() == ["0", "1", "4", "5", "6", None]
    assert mask_counts(df, threshold=None) is df
    assert mask_counts(df.lazy()).collect()["ENDPOINT"].to_list() == list("abcdef")
    assert mask_counts(df, columns=["N_CASES"]).equals(mask_counts(df))


@pytest.mark.parametrize("threshold", [1, 5, 6])
def test_a_table_is_masked_cell_by_cell_like_a_number(threshold):
    values = [0, 1, 4, 5, 6, 120]
    table = mask_counts(pl.DataFrame({"N_CASES": values}), threshold=threshold)
    assert table["N_CASES"].to_list() == [mask_count(n, threshold) for n in values]
    assert [is_masked(n, threshold) for n in values] == [mask_count(n, threshold) != str(n) for n in values]


def test_mask_count_defaults_and_no_masking():
    assert MASK_THRESHOLD == 5
    assert [mask_count(n) for n in (0, 1, 4, 5)] == ["0", "<5", "<5", "5"]
    assert mask_count(3, None) == "3" and not is_masked(3, None)
    assert results.mask_counts is mask_counts  # attrition and older callers import it from here


@pytest.mark.parametrize("threshold", [0, -5, 2.5, True, "5"])
def test_mask_counts_rejects_bad_thresholds(threshold):
    with pytest.raises(ValueError):
        mask_counts(pl.DataFrame({"N_CASES": [1]}), threshold=threshold)
    with pytest.raises(ValueError, match="mask threshold"):
        check_threshold(threshold)


def test_mask_counts_unknown_column():
    with pytest.raises(ValueError, match="N_OTHER"):
        mask_counts(pl.DataFrame({"N_CASES": [1]}), columns=["N_OTHER"])


# --- files -----------------------------------------------------------------------------

def test_write_results_long_and_masked_counts(tmp_path):
    written = write_results(LONG, counts(), tmp_path / "out", people=PEOPLE)
    out = tmp_path / "out"
    assert written == (out / LONG_FILE, out / COUNTS_FILE)
    assert sorted(os.listdir(out)) == [COUNTS_FILE, LONG_FILE]
    long = pl.read_parquet(out / LONG_FILE)
    assert dict(long.schema) == LONG_SCHEMA
    assert long.select("ENDPOINT", "FINNGENID").rows() == sorted(LONG.collect().select("ENDPOINT", "FINNGENID").rows())
    assert long.filter(FINNGENID="p2", ENDPOINT="E1").row(0) == ("p2", "E1", "excluded", None, None, None)
    assert read_tsv(out / COUNTS_FILE) == [
        ["ENDPOINT", "N_CASES", "N_CONTROLS", "N_EXCLUDED"],
        ["E1", "<5", "6", "<5"],      # 2 + 1 or 1 + 2: both masked cells stay unknown
        ["E2", "masked", "<5", "0"],  # 9 - 5 - 0 would give the 4 controls away
        ["E3", "0", "9", "0"],
    ]


def test_counts_tsv_masked_cell_is_not_a_subtraction_away(tmp_path):
    # 20 people; A: 3 cases, 17 controls, 0 excluded. The cases used to be 20 - 17 - 0.
    long = pl.LazyFrame({"FINNGENID": ["p0", "p1", "p2"], "ENDPOINT": ["A"] * 3, "STATUS": ["case"] * 3,
                         "AGE": [50.0] * 3, "YEAR": [2000] * 3, "NEVT": [1] * 3},
                        schema_overrides={"YEAR": pl.Int32})
    people = pl.LazyFrame({"FINNGENID": [f"p{i}" for i in range(20)], "FU_END_AGE": [80.0] * 20})
    write_results(long, counts_table(long, people), tmp_path, people=people)
    assert read_tsv(tmp_path / COUNTS_FILE)[1] == ["A", "<5", "masked", "0"]
    write_results(long, counts_table(long, people), tmp_path, people=people, mask_threshold=None)
    assert read_tsv(tmp_path / COUNTS_FILE)[1] == ["A", "3", "17", "0"]


def test_masking_can_be_turned_off(tmp_path):
    write_results(LONG, counts(), tmp_path, people=PEOPLE, mask_threshold=None)
    assert read_tsv(tmp_path / COUNTS_FILE)[1:] == [["E1", "2", "6", "1"], ["E2", "5", "4", "0"], ["E3", "0", "9", "0"]]


def test_wide_table_layout(tmp_path):
    write_results(LONG, counts(), tmp_path, people=PEOPLE, wide=True, wide_endpoints=["E3", "E1"])
    rows = read_tsv(tmp_path / WIDE_FILE)
    assert rows[0] == ["FINNGENID", "E3", "E3_NEVT", "E3_AGE", "E3_YEAR", "E1", "E1_NEVT", "E1_AGE", "E1_YEAR"]
    by_id = {r[0]: r[1:] for r in rows[1:]}
    assert [r[0] for r in rows[1:]] == [f"p{i}" for i in range(1, 10)]
    # p1: case of E1 (birth date unknown, so a control YEAR would be NA); p2 excluded from E1;
    # p3 case with AGE rounded to 2 decimals; p9 control: 1950-01-01 + 70.5 years is in 2020.
    assert by_id["p1"] == ["0", "0", "78.00", "NA", "1", "3", "50.50", "2000"]
    assert by_id["p2"] == ["0", "0", "77.00", "2027", "NA", "NA", "NA", "NA"]
    assert by_id["p3"] == ["0", "0", "76.00", "2026", "1", "1", "61.12", "2011"]
    assert by_id["p9"] == ["0", "0", "70.50", "2020", "0", "0", "70.50", "2020"]


def test_wide_defaults_to_all_endpoints_sorted_and_checks_names(tmp_path):
    df = wide_table(LONG, PEOPLE, ["E2", "E1"])
    assert df.columns[1::4] == ["E2", "E1"]
    write_results(LONG, counts(), tmp_path, people=PEOPLE, wide=True)
    assert read_tsv(tmp_path / WIDE_FILE)[0][1::4] == ["E1", "E2", "E3"]
    with pytest.raises(ValueError, match="NOPE"):
        write_results(LONG, counts(), tmp_path / "x", people=PEOPLE, wide=True, wide_endpoints=["E1", "NOPE"])
    assert not (tmp_path / "x").exists()


def test_wide_rejects_clashing_column_names():
    with pytest.raises(ValueError, match="E_AGE"):
        wide_table(LONG, PEOPLE, ["E", "E_AGE"])


def test_wide_control_year_boundary():
    # Ages are years of 365.25 days: 1 day short of the 50th birthday stays in the old year.
    people = pl.LazyFrame({"FINNGENID": ["a", "b"], "APPROX_BIRTH_DATE": [dt.date(1950, 1, 1)] * 2,
                           "FU_END_AGE": [50.0 - 2 / 365.25, 50.0]})
    df = wide_table(LONG.filter(pl.lit(False)), people, ["E1"])
    assert df["E1_YEAR"].to_list() == [1999, 2000]


def test_output_bytes_are_deterministic(tmp_path):
    shuffled = LONG.collect().sample(fraction=1.0, shuffle=True, seed=3).lazy()
    people = PEOPLE.collect().reverse().lazy()
    write_results(LONG, counts(), tmp_path / "a", people=PEOPLE, wide=True)
    write_results(shuffled, counts(), tmp_path / "b", people=people, wide=True)
    for name in (LONG_FILE, COUNTS_FILE, WIDE_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_rejects_unknown_status(tmp_path):
    bad = LONG.with_columns(pl.lit("control").alias("STATUS"))
    with pytest.raises(ValueError, match="STATUS"):
        write_results(bad, counts(), tmp_path, people=PEOPLE)
    assert os.listdir(tmp_path) == []


# --- atomicity ---------------------------------------------------------------------------

def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.fixture
def previous_run(tmp_path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    old_long = LONG.filter(pl.col("ENDPOINT") == "E1")
    write_results(old_long, counts_table(old_long, PEOPLE), out, people=PEOPLE, wide=True)
    before = snapshot(out)
    assert set(before) == {LONG_FILE, COUNTS_FILE, WIDE_FILE}
    return out, before


def test_failure_while_renaming_restores_previous_files(previous_run, monkeypatch):
    out, before = previous_run
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(Path(dst).name)
        # Let the first target go through, then fail: the first must be rolled back.
        if len(calls) == 2:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(results.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        write_results(LONG, counts(), out, people=PEOPLE, wide=True)
    assert calls[:2] == [LONG_FILE, COUNTS_FILE] and len(calls) == 3  # 3rd call = the rollback
    assert snapshot(out) == before  # same files, same bytes, no temp or backup files


def test_failure_while_writing_leaves_nothing(previous_run, monkeypatch):
    out, before = previous_run

    def broken_write_csv(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pl.DataFrame, "write_csv", broken_write_csv)
    with pytest.raises(RuntimeError, match="boom"):
        write_results(LONG, counts(), out, people=PEOPLE, wide=True)
    assert snapshot(out) == before


def test_failure_in_a_fresh_directory_leaves_no_files(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(results.os, "replace", flaky_replace)
    with pytest.raises(OSError):
        write_results(LONG, counts(), tmp_path, people=PEOPLE)
    assert os.listdir(tmp_path) == []


def test_bad_counts_frame_fails_before_writing(previous_run):
    out, before = previous_run
    with pytest.raises(pl.exceptions.PolarsError):
        write_results(LONG, counts().drop("N_EXCLUDED"), out, people=PEOPLE, wide=True)
    assert snapshot(out) == before


def test_success_leaves_only_the_outputs(previous_run):
    out, before = previous_run
    write_results(LONG, counts(), out, people=PEOPLE, wide=True)
    after = snapshot(out)
    assert set(after) == set(before)
    assert after[COUNTS_FILE] != before[COUNTS_FILE]


# --- interruptions and leftovers ---------------------------------------------------------

def test_interrupt_during_the_wide_write_leaves_nothing(previous_run, monkeypatch):
    out, before = previous_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    real_unlink = Path.unlink

    def unlink_after_a_second_interrupt(self, *args, **kwargs):
        signal.raise_signal(signal.SIGINT)   # Ctrl-C again, while the temporaries go
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(results, "_write_wide", interrupted)
    monkeypatch.setattr(Path, "unlink", unlink_after_a_second_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_results(LONG, counts(), out, people=PEOPLE, wide=True)
    monkeypatch.undo()
    assert snapshot(out) == before


def test_interrupt_inside_a_spill_folder_removes_it(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with results.spill_folder(tmp_path) as spill:
            assert (spill / results.SPILL_MARKER).is_file()
            (spill / "bucket-00000.parquet").write_bytes(b"rows")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftovers(folder: Path) -> tuple[set[str], set[str]]:
    """Files and folders a killed run leaves (ours) and look-alikes that are not ours."""
    host, dead, alive = results._HOST, dead_pid(), os.getppid()
    ours = {f".endpointc-tmp-{host}-{dead}-endpoints.parquet.a1b2_c3d.tmp",
            f".endpointc-tmp-{host}-{dead}-counts.tsv.zz9y8x7w.tmp",
            f".endpointc-bak-{host}-{dead}-endpoints_wide.tsv.0123456789ab.bak",
            f".endpointc-buckets-{host}-{dead}-k3j4h5g6"}
    foreign = {f".endpointc-tmp-{host}-{alive}-counts.tsv.abcdefgh.tmp",     # a live run's
               f".endpointc-tmp-ffffffff-{dead}-counts.tsv.abcdefgh.tmp",    # another host's
               f".endpointc-tmp-{host}-{dead}-notes.txt.abcdefgh.tmp",        # not an output
               f".endpointc-bak-{host}-{dead}-counts.tsv.abcdefgh.tmp",       # kind and suffix differ
               f".endpointc-buckets-{host}-{dead}-nomarker1",                 # no marker inside
               f".endpointc-tmp-{host}-{dead}-counts.tsv.isafolder.tmp",      # a folder, not a file
               ".counts.tsv.abcdefgh.tmp", "endpointc-tmp-x", "notes.txt"}
    for name in ours | foreign:
        path = folder / name
        if "buckets" in name or "isafolder" in name:
            path.mkdir()
            (path / "bucket-00000.parquet").write_bytes(b"rows")
            if "nomarker" not in name:
                (path / results.SPILL_MARKER).write_text("")
        else:
            path.write_text("individual-level rows")
    target = folder / "elsewhere"
    target.mkdir()
    (target / results.SPILL_MARKER).write_text("")
    link = folder / f".endpointc-buckets-{host}-{dead}-symlinked"
    link.symlink_to(target)
    return ours, foreign | {"elsewhere", link.name}


def test_a_run_removes_only_its_own_stale_leftovers(tmp_path):
    ours, foreign = leftovers(tmp_path)
    write_results(LONG, counts(), tmp_path, people=PEOPLE)
    assert set(os.listdir(tmp_path)) == foreign | {LONG_FILE, COUNTS_FILE}
    assert (tmp_path / "elsewhere" / results.SPILL_MARKER).exists()
    assert results.remove_stale(tmp_path) == []


def test_live_spill_folder_of_this_process_is_kept(tmp_path):
    with results.spill_folder(tmp_path) as spill:
        assert results.remove_stale(tmp_path) == []
        assert spill.is_dir()
    assert not spill.exists()


def test_uninterrupted_holds_ctrl_c_back_until_the_end():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with results.uninterrupted():
            with results.uninterrupted():
                signal.raise_signal(signal.SIGINT)
                done.append("inner")
            done.append("outer")
    assert done == ["inner", "outer"]
