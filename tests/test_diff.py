"""diff_libraries / format_diff on hand-made pairs of libraries, and the `diff` command."""

from __future__ import annotations

import textwrap
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from endpointc.cli import app
from endpointc.diagnostics import DiagnosticError
from endpointc.diff import CountChange, Diff, diff_libraries, format_diff
from endpointc.parser import parse


def lib(text: str, name: str = "lib.ep"):
    tree, diagnostics = parse(textwrap.dedent(text), name=name)
    assert tree is not None, diagnostics
    return [tree]


def lines(old: str, new: str) -> list[str]:
    return format_diff(diff_libraries(lib(old), lib(new))).splitlines()


def test_patterns_options_and_conditions_in_words():
    old = """
        endpoint I9_MI {
          title "Myocardial infarction"
          tags I9, CARDIO
          meta "Owner team" "cardio"
          hospital icd10 I21 | I22 | I24  icd9 410
          death icd10 I21
          when age < 40
        }
    """
    new = """
        endpoint I9_MI {
          title "Myocardial infarction (any)"
          tags I9, HEART
          meta "Owner team" "heart"
          level 3
          hospital main icd10 I22 | I21 | I23  icd8 410 except 4109
          when age < 45
          sex female
        }
    """
    assert lines(old, new) == [
        "1 endpoint changed",
        "",
        "changed:",
        "  I9_MI: hospital: options: added main",
        "  I9_MI: hospital icd10: added I23; removed I24",
        "  I9_MI: hospital icd9: removed 410",
        "  I9_MI: hospital icd8: added 410",
        "  I9_MI: hospital icd8 except: added 4109",
        "  I9_MI: removed rule: death icd10 I21",
        "  I9_MI: when changed from age < 40 to age < 45",
        "  I9_MI: sex changed from any to female",
        "",
        "metadata changed:",
        '  I9_MI: title changed from "Myocardial infarction" to "Myocardial infarction (any)"',
        "  I9_MI: tags: added HEART; removed CARDIO",
        '  I9_MI: meta "Owner team" changed from "cardio" to "heart"',
        "  I9_MI: level added: 3",
    ]


def test_added_removed_includes_controls_min_and_codelists():
    old = """
        codelist CHD icd10 I20-I25
        codelist GONE icd10 I10
        endpoint A { hospital icd10 @CHD }
        endpoint B { purchase min 2 atc C01  include A  controls { exclude A } }
        endpoint OLD { hospital icd10 I50 }
    """
    new = """
        codelist CHD icd10 I20-I25 | I26
        codelist NEW icd10 I11
        endpoint A { hospital icd10 @CHD }
        endpoint B {
          purchase min 3 atc C01
          include A, C
          require A.count >= 2
          controls { exclude C  require not A }
        }
        endpoint C { hospital icd10 I48 }
    """
    assert lines(old, new) == [
        "1 endpoint added, 1 endpoint removed, 2 endpoints changed",
        "",
        "added:",
        "  C",
        "",
        "removed:",
        "  OLD",
        "",
        "changed:",
        "  A: uses codelist @CHD, which changed",
        "  B: purchase: min changed from 2 to 3",
        "  B: include: added C",
        "  B: require added: A.count >= 2",
        "  B: controls exclude: added C; removed A",
        "  B: controls require added: not A",
        "",
        "codelists:",
        "  @NEW: added",
        "  @GONE: removed",
        "  @CHD: icd10: added I26",
    ]


def test_layout_comments_and_order_are_not_changes():
    old = "endpoint A { hospital icd10 I21 | I22  include B }\nendpoint B { death icd10 I21 }"
    new = """
        # a comment
        endpoint B {
          death icd10 I21  # why
        }

        endpoint A {
          include B
          hospital icd10 I22 | I21
        }
    """
    diff = diff_libraries(lib(old), lib(new))
    assert diff == Diff()
    assert format_diff(diff) == "no endpoint changed"


def test_several_rules_of_one_source_are_paired_in_order():
    old = "endpoint A { hospital icd10 I21  hospital main icd10 I22 }"
    new = "endpoint A { hospital icd10 I21  hospital main icd10 I22 | I23  hospital icd9 410 }"
    assert lines(old, new)[3:] == [
        "  A: hospital rule 2 icd10: added I23",
        "  A: added rule: hospital icd9 410",
    ]


def test_unparsable_library_raises(tmp_path: Path):
    (tmp_path / "bad.ep").write_text("endpoint A { hospital icd10 I21 I22 }")
    with pytest.raises(DiagnosticError):
        diff_libraries([tmp_path], lib("endpoint A { hospital icd10 I21 }"))


# -- with data ------------------------------------------------------------------------

def registry(n_i21: int, n_i22: int, n_i23: int, n_other: int):
    """People with one INPAT event each: n_i21 with I21, ..., n_other with nothing."""
    codes = ["I21"] * n_i21 + ["I22"] * n_i22 + ["I23"] * n_i23
    ids = [f"P{i:03d}" for i in range(len(codes) + n_other)]
    events = pl.LazyFrame({
        "FINNGENID": ids[:len(codes)], "SOURCE": ["INPAT"] * len(codes),
        "EVENT_AGE": [50.0] * len(codes), "APPROX_EVENT_DAY": [None] * len(codes),
        "CODE1": codes, "CODE2": [None] * len(codes), "CODE3": [None] * len(codes),
        "CODE4": [None] * len(codes), "ICDVER": ["10"] * len(codes), "CATEGORY": ["0"] * len(codes),
        "INDEX": [str(i) for i in range(len(codes))],
    }, schema_overrides={"APPROX_EVENT_DAY": pl.Date, "CODE2": pl.String, "CODE3": pl.String,
                         "CODE4": pl.String})
    people = pl.LazyFrame({"FINNGENID": ids, "SEX": ["female"] * len(ids), "FU_END_AGE": [80.0] * len(ids)})
    return events, people


def test_counts_change_sorted_by_absolute_change_and_masked():
    events, people = registry(n_i21=20, n_i22=3, n_i23=9, n_other=30)
    old = """
        endpoint BIG { hospital icd10 I21 }
        endpoint SMALL { hospital icd10 I21 }
        endpoint SAME { hospital icd10 I22 }
        endpoint GONE { hospital icd10 I23 }
    """
    new = """
        endpoint BIG { hospital icd10 I21 | I23 }
        endpoint SMALL { hospital icd10 I21 | I22 }
        endpoint SAME { hospital icd10 I22 }
        endpoint FEW { hospital icd10 I22 }
    """
    diff = diff_libraries(lib(old), lib(new), events=events, people=people)
    population = 62
    assert diff.counts == (
        # ties on cases are broken by the change in controls (a removed endpoint loses them all)
        CountChange("GONE", (9, population - 9, 0), None),
        CountChange("BIG", (20, population - 20, 0), (29, population - 29, 0)),
        CountChange("FEW", None, (3, population - 3, 0)),
        CountChange("SMALL", (20, population - 20, 0), (23, population - 23, 0)),
    )
    assert diff.unchanged_counts == 1
    table = format_diff(diff).split("cases and controls", 1)[1].splitlines()
    assert table[0] == (" on the same registry (old -> new; counts under 5 masked, and 'masked' where one "
                        "would give a small count away):")
    rows = [line.split() for line in table[2:]]
    assert rows == [
        ["GONE", "9", "-", "-9", "53", "-", "-53"],
        ["BIG", "20", "29", "+9", "42", "33", "-9"],
        ["FEW", "-", "<5", "+<5", "-", "59", "+59"],          # an absent side is 0: change = new
        # both sides next to a small change gave it away (23 - 20); one of them is hidden
        ["SMALL", "masked", "23", "+<5", "42", "masked", "-<5"],
        ["(1", "other", "endpoint", "with", "the", "same", "counts)"],
    ]
    unmasked = format_diff(diff, mask_threshold=None)
    assert [line.split() for line in unmasked.splitlines() if line.startswith("  SMALL ")] == [
        ["SMALL", "20", "23", "+3", "42", "39", "-3"]]
    assert "not masked" in unmasked and "<5" not in unmasked


def test_cli_diff(tmp_path: Path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "a.ep").write_text("endpoint A { hospital icd10 I21 | I24 }\n")
    (new / "a.ep").write_text("endpoint A { hospital icd10 I21 | I23 }\n")
    result = CliRunner().invoke(app, ["diff", str(old), str(new)])
    assert result.exit_code == 0, result.output
    assert "A: hospital icd10: added I23; removed I24" in result.output

    events, people = registry(n_i21=6, n_i22=0, n_i23=7, n_other=4)
    events.collect().write_parquet(tmp_path / "events.parquet")
    people.collect().write_parquet(tmp_path / "people.parquet")
    result = CliRunner().invoke(app, ["diff", str(old / "a.ep"), str(new / "a.ep"),
                                      "--events", str(tmp_path / "events.parquet"),
                                      "--people", str(tmp_path / "people.parquet")])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip().startswith("A ")]
    assert rows == [["A", "6", "13", "+7", "11", "<5", "masked"]]
