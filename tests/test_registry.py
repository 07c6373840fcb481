"""Reading, normalising and checking the FinnGen registry tables (endpointc.registry)."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import polars as pl
import pytest

from endpointc.registry import (
    EVENTS_SCHEMA,
    KNOWN_SOURCES,
    PEOPLE_SCHEMA,
    Registry,
    RegistryError,
    as_read,
    load_registry,
    scan_events,
    scan_people,
)

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "finngen"

EVENT_HEADER = ["FINNGENID", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY", "CODE1", "CODE2", "CODE3",
                "CODE4", "ICDVER", "CATEGORY", "INDEX"]
# Person ids and values chosen to be unmistakable in a message if they ever leaked into one.
EVENTS = [
    ["FGQZID01", "INPAT", "45.25", "2001-02-03", "0101", "NA", "", "NA", "10", "0", "007"],
    ["FGQZID01", "PURCH", "46.5", "2002-03-04", "N05BA01", "", "NA", "NA", "NA", "NA", "008"],
    ["FGQZID02", "CANC", "61", "NA", "C509", "85003", "3", "NA", "NA", "NA", "009"],
]
PEOPLE_HEADER = ["FINNGENID", "SEX", "APPROX_BIRTH_DATE", "FU_END_AGE", "DEATH"]
PEOPLE = [
    ["FGQZID01", "female", "1955-06-07", "70.25", "0"],
    ["FGQZID02", "male", "NA", "80", "1"],
    ["FGQZID03", "NA", "", "NA", "NA"],
]
SENSITIVE = ("FGQZID", "45.25", "46.5", "2001-02-03", "1955-06-07", "N05BA01", "C509")


def tsv(rows: list[list[str]], header: list[str], eol: str = "\n") -> str:
    return eol.join("\t".join(r) for r in [header, *rows]) + eol


def write(path: Path, rows, header, *, fmt: str = "tsv") -> Path:
    if fmt == "tsv":
        path.write_text(tsv(rows, header), newline="")
    elif fmt == "crlf":
        path.write_text(tsv(rows, header, "\r\n"), newline="")
    elif fmt == "gz":
        path.write_bytes(gzip.compress(tsv(rows, header).encode()))
    elif fmt == "parquet":
        pl.DataFrame(rows, schema=header, orient="row").write_parquet(path)
    else:
        raise AssertionError(fmt)
    return path


def assert_private(message: str) -> None:
    for value in SENSITIVE:
        assert value not in message, f"message leaks {value!r}: {message}"


def error_of(tmp_path: Path, events=EVENTS, people=PEOPLE, *, events_header=EVENT_HEADER,
             people_header=PEOPLE_HEADER) -> RegistryError:
    e = write(tmp_path / "ev.tsv", events, events_header)
    p = write(tmp_path / "pp.tsv", people, people_header)
    with pytest.raises(RegistryError) as info:
        load_registry(e, p)
    for err in (info.value, *info.value.also):
        assert_private(str(err))
    return info.value


@pytest.mark.parametrize("fmt", ["tsv", "crlf", "gz", "parquet"])
def test_every_format_normalises_to_the_same_frames(tmp_path, fmt):
    e = write(tmp_path / f"ev.{fmt}", EVENTS, EVENT_HEADER, fmt=fmt)
    p = write(tmp_path / f"pp.{fmt}", PEOPLE, PEOPLE_HEADER, fmt=fmt)
    reg = load_registry(e, p)
    assert isinstance(reg, Registry) and reg.warnings == ()
    events = reg.events.collect()
    people = reg.people.collect()
    assert dict(events.schema) == {k: v for k, v in EVENTS_SCHEMA.items() if k in EVENT_HEADER}
    assert dict(people.schema) == PEOPLE_SCHEMA
    assert events["EVENT_AGE"].to_list() == [45.25, 46.5, 61.0]
    assert events["APPROX_EVENT_DAY"].to_list() == [dt.date(2001, 2, 3), dt.date(2002, 3, 4), None]
    # No CR may survive at the end of the last column.
    assert events["INDEX"].to_list() == ["007", "008", "009"]
    assert people["DEATH"].to_list() == [0, 1, None]
    assert people["FU_END_AGE"].to_list() == [70.25, 80.0, None]
    assert people["APPROX_BIRTH_DATE"].to_list() == [dt.date(1955, 6, 7), None, None]
    assert people["SEX"].to_list() == ["female", "male", None]


def test_na_and_empty_are_null_and_leading_zeros_stay(tmp_path):
    events = scan_events(write(tmp_path / "ev.tsv", EVENTS, EVENT_HEADER)).collect()
    assert events["CODE1"].to_list() == ["0101", "N05BA01", "C509"]
    assert events["CODE2"].to_list() == [None, None, "85003"]
    assert events["CODE3"].to_list() == [None, None, "3"]
    assert events["ICDVER"].to_list() == ["10", None, None]
    assert events.null_count()["CODE4"].item() == 3


def test_parquet_na_strings_are_null_too(tmp_path):
    df = pl.DataFrame(EVENTS, schema=EVENT_HEADER, orient="row")
    events = scan_events(write(tmp_path / "ev.parquet", EVENTS, EVENT_HEADER, fmt="parquet")).collect()
    assert df["CODE2"].to_list()[0] == "NA"
    assert events["CODE2"].to_list() == [None, None, "85003"]


@pytest.mark.parametrize("fmt", ["tsv", "parquet"])
def test_text_columns_as_read_are_kept_on_request_beside_the_normalised_ones(tmp_path, fmt):
    path = write(tmp_path / f"ev.{fmt}", EVENTS, EVENT_HEADER, fmt=fmt)
    plain = scan_events(path).collect()
    events = scan_events(path, keep_as_read=True).collect()
    text = [c for c in EVENT_HEADER if EVENTS_SCHEMA[c] == pl.String and c != "FINNGENID"]
    assert events.columns == _interleaved(plain.columns, text)
    assert events.select(plain.columns).equals(plain)
    # a TSV reader already reads "NA" and "" as missing; a Parquet file keeps them
    expected = [None, None, "85003"] if fmt == "tsv" else ["NA", "", "85003"]
    assert events[as_read("CODE2")].to_list() == expected
    assert events[as_read("CODE1")].to_list() == ["0101", "N05BA01", "C509"]
    reg = load_registry(path, write(tmp_path / f"pp.{fmt}", PEOPLE, PEOPLE_HEADER, fmt=fmt), keep_as_read=True)
    assert reg.events.collect().equals(events)


def _interleaved(columns: list[str], text: list[str]) -> list[str]:
    return [n for c in columns for n in ((c, as_read(c)) if c in text else (c,))]


def test_typed_parquet_columns_are_cast(tmp_path):
    df = pl.DataFrame({
        "FINNGENID": ["FGQZID01"], "SOURCE": ["INPAT"], "EVENT_AGE": [45],
        "APPROX_EVENT_DAY": [dt.datetime(2001, 2, 3, 12)], "CODE1": ["I21"], "CODE2": [None],
        "CODE3": [None], "CODE4": [None], "ICDVER": [10], "CATEGORY": ["0"], "INDEX": [7],
    })
    df.write_parquet(tmp_path / "ev.parquet")
    people = pl.DataFrame({"FINNGENID": ["FGQZID01"], "SEX": [2], "APPROX_BIRTH_DATE": [dt.date(1950, 1, 1)],
                           "FU_END_AGE": [70], "DEATH": [True]})
    people.write_parquet(tmp_path / "pp.parquet")
    reg = load_registry(tmp_path / "ev.parquet", tmp_path / "pp.parquet")
    ev, pp = reg.events.collect(), reg.people.collect()
    assert ev.row(0, named=True) | {} == {
        "FINNGENID": "FGQZID01", "SOURCE": "INPAT", "EVENT_AGE": 45.0, "APPROX_EVENT_DAY": dt.date(2001, 2, 3),
        "CODE1": "I21", "CODE2": None, "CODE3": None, "CODE4": None, "ICDVER": "10", "CATEGORY": "0",
        "INDEX": "7"}
    assert pp.row(0) == ("FGQZID01", "female", dt.date(1950, 1, 1), 70.0, 1)
    assert dict(pp.schema) == PEOPLE_SCHEMA
    as_text = scan_events(tmp_path / "ev.parquet", keep_as_read=True).collect()
    assert as_text.select(as_read("ICDVER"), as_read("INDEX")).row(0) == ("10", "7")


def test_parquet_column_of_wrong_type_is_an_error(tmp_path):
    df = pl.DataFrame(EVENTS, schema=EVENT_HEADER, orient="row").with_columns(
        pl.lit([1, 2]).alias("APPROX_EVENT_DAY"))
    df.write_parquet(tmp_path / "ev.parquet")
    with pytest.raises(RegistryError) as info:
        scan_events(tmp_path / "ev.parquet")
    assert info.value.column == "APPROX_EVENT_DAY"
    assert "ev.parquet" in str(info.value) and "APPROX_EVENT_DAY" in str(info.value)


def test_optional_code_columns_are_kept_only_when_present(tmp_path):
    header = EVENT_HEADER + ["CODE9", "CODE5"]
    rows = [r + ["1", "NA"] for r in EVENTS]
    events = scan_events(write(tmp_path / "ev.tsv", rows, header)).collect()
    assert events.columns == ["FINNGENID", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY", "CODE1", "CODE2",
                              "CODE3", "CODE4", "CODE5", "CODE9", "ICDVER", "CATEGORY", "INDEX"]
    assert events["CODE9"].to_list() == ["1"] * 3 and events["CODE5"].null_count() == 3
    plain = scan_events(write(tmp_path / "ev2.tsv", EVENTS, EVENT_HEADER)).collect()
    assert "CODE9" not in plain.columns


def test_extra_columns_are_dropped_with_a_warning(tmp_path):
    e = write(tmp_path / "ev.tsv", [r + ["x"] for r in EVENTS], EVENT_HEADER + ["NOTE"])
    p = write(tmp_path / "pp.tsv", [r + ["1.8"] for r in PEOPLE], PEOPLE_HEADER + ["HEIGHT"])
    reg = load_registry(e, p)
    assert "NOTE" not in reg.events.collect_schema().names()
    assert "HEIGHT" not in reg.people.collect_schema().names()
    assert len(reg.warnings) == 2
    assert "ev.tsv" in reg.warnings[0] and "NOTE" in reg.warnings[0]
    assert "pp.tsv" in reg.warnings[1] and "HEIGHT" in reg.warnings[1]
    assert [d.code for d in reg.diagnostics] == ["EP509", "EP509"]


def test_missing_required_column_names_file_column_and_lists_the_header(tmp_path):
    header = [c for c in EVENT_HEADER if c != "EVENT_AGE"]
    rows = [[v for c, v in zip(EVENT_HEADER, r) if c != "EVENT_AGE"] for r in EVENTS]
    err = error_of(tmp_path, events=rows, events_header=header)
    assert err.column == "EVENT_AGE" and err.file.endswith("ev.tsv") and err.code == "EP502"
    msg = str(err)
    assert "ev.tsv" in msg and "EVENT_AGE" in msg and "APPROX_EVENT_DAY" in msg  # what is there


def test_missing_people_columns(tmp_path):
    p = write(tmp_path / "pp.tsv", [r[:2] for r in PEOPLE], ["FINNGENID", "SEX"])
    with pytest.raises(RegistryError) as info:
        scan_people(p)
    assert info.value.column == "FU_END_AGE" and "pp.tsv" in str(info.value)
    assert_private(str(info.value))


def test_optional_people_columns_default_to_null_with_a_warning(tmp_path):
    e = write(tmp_path / "ev.tsv", EVENTS, EVENT_HEADER)
    p = write(tmp_path / "pp.tsv", [[r[0], r[1], r[3]] for r in PEOPLE], ["FINNGENID", "SEX", "FU_END_AGE"])
    reg = load_registry(e, p)
    people = reg.people.collect()
    assert dict(people.schema) == PEOPLE_SCHEMA
    assert people["APPROX_BIRTH_DATE"].null_count() == 3 and people["DEATH"].null_count() == 3
    assert sum("APPROX_BIRTH_DATE" in w for w in reg.warnings) == 1
    assert sum("DEATH" in w for w in reg.warnings) == 1


@pytest.mark.parametrize("bad", ["abc", "45,25", "nan", "inf"])
def test_non_numeric_event_age(tmp_path, bad):
    rows = [EVENTS[0], [*EVENTS[1][:2], bad, *EVENTS[1][3:]], [*EVENTS[2][:2], bad, *EVENTS[2][3:]]]
    err = error_of(tmp_path, events=rows)
    assert err.column == "EVENT_AGE" and err.code == "EP503" and not err.also
    msg = str(err)
    assert "ev.tsv" in msg and "EVENT_AGE" in msg and "2 values" in msg
    assert bad not in msg.replace(err.file, "").replace("a number", "")


def test_bad_dates(tmp_path):
    rows = [EVENTS[0], [*EVENTS[1][:3], "2002-13-04", *EVENTS[1][4:]], EVENTS[2]]
    err = error_of(tmp_path, events=rows)
    assert err.column == "APPROX_EVENT_DAY" and "1 value" in str(err) and "ev.tsv" in str(err)
    assert "2002-13-04" not in str(err)
    people = [PEOPLE[0], [*PEOPLE[1][:2], "07.06.1955", *PEOPLE[1][3:]], PEOPLE[2]]
    err = error_of(tmp_path, people=people)
    assert err.column == "APPROX_BIRTH_DATE" and "pp.tsv" in str(err) and "07.06.1955" not in str(err)


def test_every_problem_is_reported_at_once(tmp_path):
    rows = [[*EVENTS[0][:2], "x", "y", *EVENTS[0][4:]], *EVENTS[1:]]
    people = [PEOPLE[0], [*PEOPLE[1][:3], "old", *PEOPLE[1][4:]], PEOPLE[2]]
    err = error_of(tmp_path, events=rows, people=people)
    found = [(e.file.rsplit("/", 1)[-1], e.column) for e in (err, *err.also)]
    assert found == [("ev.tsv", "EVENT_AGE"), ("ev.tsv", "APPROX_EVENT_DAY"), ("pp.tsv", "FU_END_AGE")]
    assert "2 more problems" in str(err)
    assert [d.code for d in err.diagnostics()] == ["EP503"] * 3


def test_sex_codings(tmp_path):
    people = [["FGQZID01", "Female", "NA", "1", "0"], ["FGQZID02", "1", "NA", "1", "0"],
              ["FGQZID03", "2", "NA", "1", "0"], ["FGQZID04", " male ", "NA", "1", "0"]]
    got = scan_people(write(tmp_path / "pp.tsv", people, PEOPLE_HEADER)).collect()["SEX"].to_list()
    assert got == ["female", "male", "female", "male"]
    bad = [PEOPLE[0], ["FGQZID02", "F", "NA", "1", "0"]]
    err = error_of(tmp_path, people=bad)
    assert err.column == "SEX" and "pp.tsv" in str(err) and "1 value" in str(err)


def test_death_must_be_whole(tmp_path):
    people = [PEOPLE[0], [*PEOPLE[1][:4], "0.5"], PEOPLE[2]]
    err = error_of(tmp_path, people=people)
    assert err.column == "DEATH" and "pp.tsv" in str(err)


def test_duplicate_person_is_an_error(tmp_path):
    err = error_of(tmp_path, people=[*PEOPLE, PEOPLE[1], PEOPLE[1]])
    assert err.column == "FINNGENID" and err.code == "EP505"
    assert "pp.tsv" in str(err) and "2 rows" in str(err)


def test_person_without_id_is_an_error(tmp_path):
    err = error_of(tmp_path, people=[*PEOPLE, ["NA", "male", "NA", "50", "0"]])
    assert err.column == "FINNGENID" and err.code == "EP506" and "1 row" in str(err)
    assert not err.also  # one null id is not also a duplicate


def test_unknown_sources_warn_and_are_dropped(tmp_path):
    rows = [*EVENTS, [*EVENTS[0][:1], "MYSTERY", *EVENTS[0][2:]], [*EVENTS[2][:1], "MYSTERY", *EVENTS[2][2:]],
            [*EVENTS[0][:1], "NA", *EVENTS[0][2:]]]
    reg = load_registry(write(tmp_path / "ev.tsv", rows, EVENT_HEADER), write(tmp_path / "pp.tsv", PEOPLE, PEOPLE_HEADER))
    assert reg.events.collect()["SOURCE"].to_list() == ["INPAT", "PURCH", "CANC"]
    (warning,) = reg.warnings
    assert "ev.tsv" in warning and "SOURCE" in warning and "3 rows" in warning
    assert "MYSTERY (2 rows)" in warning and "(missing) (1 row)" in warning
    assert_private(warning)


def test_events_of_unknown_people_warn_with_counts(tmp_path):
    rows = [*EVENTS, ["FGQZID77", *EVENTS[0][1:]], ["FGQZID77", *EVENTS[1][1:]], ["NA", *EVENTS[1][1:]]]
    reg = load_registry(write(tmp_path / "ev.tsv", rows, EVENT_HEADER),
                        write(tmp_path / "pp.tsv", PEOPLE, PEOPLE_HEADER))
    (warning,) = reg.warnings
    assert reg.diagnostics[0].code == "EP508"
    assert "3 events of 1 person" in warning and "1 of them without a FINNGENID" in warning
    assert "ev.tsv" in warning and "pp.tsv" in warning and "FINNGENID" in warning
    assert_private(warning)
    assert reg.events.collect().height == 6  # kept: the engine ignores them and reports too


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage\xff\xfe", b"PAR1not really parquet"])
def test_unreadable_files(tmp_path, content):
    bad = tmp_path / "ev.tsv"
    bad.write_bytes(content)
    with pytest.raises(RegistryError) as info:
        load_registry(bad, write(tmp_path / "pp.tsv", PEOPLE, PEOPLE_HEADER))
    assert "ev.tsv" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(RegistryError) as info:
        scan_events(tmp_path / "nope.tsv")
    assert info.value.file.endswith("nope.tsv") and info.value.code == "EP501"


def test_registry_is_frozen(tmp_path):
    reg = load_registry(write(tmp_path / "ev.tsv", EVENTS, EVENT_HEADER), write(tmp_path / "pp.tsv", PEOPLE, PEOPLE_HEADER))
    with pytest.raises(AttributeError):
        reg.warnings = ("x",)  # type: ignore[misc]


def test_known_sources_cover_finngen_r12_summary():
    summary = REFERENCE / "LongitudinalDummyDataGenerator_summary_R12v1" / "SOURCE_VOCAB_EVENT_YEAR_summary.tsv"
    if not summary.exists():
        pytest.skip("FinnGen reference files not available")
    sources = set(pl.read_csv(summary, separator="\t", infer_schema=False)["SOURCE"].to_list())
    assert sources == set(KNOWN_SOURCES)


def test_ragged_line_blames_the_right_file(tmp_path):
    e = write(tmp_path / "ev.tsv", EVENTS, EVENT_HEADER)
    p = tmp_path / "pp.tsv"
    p.write_text(tsv(PEOPLE, PEOPLE_HEADER) + "FGQZID09\tmale\tNA\t50\t0\tsurplus\n")
    with pytest.raises(RegistryError) as info:
        load_registry(e, p)
    assert info.value.file == str(p) and info.value.code == "EP501"
    assert "ev.tsv" not in str(info.value)
    assert_private(str(info.value))
