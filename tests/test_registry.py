"""Reading, normalising and checking the FinnGen registry tables (endpointc.registry)."""

from __future__ import annotations

import datetime as dt
import gzip
import re
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from endpointc.compiler import compile_text
from endpointc.engine.polars import evaluate
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
    # dropped here, so that the engine does not report them a second time
    assert reg.events.collect()["FINNGENID"].to_list() == ["FGQZID01", "FGQZID01", "FGQZID02"]


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


# --- broken files: each family of inputs is tested with hypothesis ---------------------

_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
person_ids = st.from_regex(r"FG[A-Z0-9_]{6,12}", fullmatch=True)
ages = st.floats(0, 120, allow_nan=False).map(lambda a: f"{a:.2f}")
days = st.dates(dt.date(1950, 1, 1), dt.date(2023, 12, 31)).map(str)
codes = st.from_regex(r"[A-Z][0-9]{2,5}[A-Z]?", fullmatch=True)


@st.composite
def event_rows(draw, ids=person_ids):
    return [draw(ids), draw(st.sampled_from(KNOWN_SOURCES)), draw(ages | st.just("NA")),
            draw(days | st.just("NA")), draw(codes), draw(codes | st.just("NA")), "NA", "NA",
            draw(st.sampled_from(["10", "9", "NA"])), "0", str(draw(st.integers(1, 10**6)))]


@st.composite
def people_rows(draw, ids=person_ids):
    return [draw(ids), draw(st.sampled_from(["female", "male", "1", "2", "NA", ""])),
            draw(days | st.just("NA")), draw(ages | st.just("NA")), draw(st.sampled_from(["0", "1", "NA"]))]


def _values(rows: list[list[str]]) -> set[str]:
    """The values of `rows` that a message could show recognisably."""
    return {v for r in rows for v in r if len(v) >= 3 and v not in ("NA", "female", "male")}


def _loaded(folder: Path, events=EVENTS, people=PEOPLE, *, events_text=None, people_text=None, **kw):
    e, p = folder / "ev.tsv", folder / "pp.tsv"
    e.write_text(events_text if events_text is not None else tsv(events, EVENT_HEADER), newline="")
    p.write_text(people_text if people_text is not None else tsv(people, PEOPLE_HEADER), newline="")
    return load_registry(e, p, **kw)


def _error(folder: Path, **kw) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        _loaded(folder, **kw)
    return info.value


def _texts(err: RegistryError) -> str:
    return "\n".join([str(err), *(d.message for d in err.diagnostics()), *(h for d in err.diagnostics() for h in d.hints)])


@_SETTINGS
@given(rows=st.lists(event_rows(), min_size=1, max_size=4), people=st.lists(people_rows(), min_size=1, max_size=4),
       which=st.sampled_from(["events", "people"]))
def test_a_file_without_header_line_is_named_as_such_and_its_first_row_never_printed(rows, people, which):
    with tempfile.TemporaryDirectory() as tmp:
        kw = {"events_text": "".join("\t".join(r) + "\n" for r in rows)} if which == "events" else \
             {"people_text": "".join("\t".join(r) + "\n" for r in people)}
        err = _error(Path(tmp), **kw)
    assert err.code == "EP502" and f"{which} file" in str(err) and "no header line" in str(err)
    shown = _texts(err).replace(err.file, "")
    leaked = {v for v in _values(rows if which == "events" else people) if v in shown}
    assert not leaked, shown


@_SETTINGS
@given(names=st.lists(st.from_regex(r"[A-Z][A-Z_]{1,10}[0-9]?", fullmatch=True), min_size=1, max_size=5, unique=True))
def test_header_names_that_look_like_names_are_listed(names):
    header = [n for n in names if n not in PEOPLE_HEADER and n.upper() not in ("NA", "MALE", "FEMALE")]
    assume(header)
    with tempfile.TemporaryDirectory() as tmp:
        err = _error(Path(tmp), people_text=tsv([["x"] * len(header)], header))
    assert err.code == "EP502" and "no header line" not in str(err)
    assert all(n in str(err) for n in header)


@_SETTINGS
@given(ids=st.lists(person_ids, min_size=2, max_size=6, unique=True), data=st.data())
def test_swapped_id_and_source_headers_are_an_error_that_shows_no_id(ids, data):
    rows = [[data.draw(st.sampled_from(ids)), *r[1:]] for r in data.draw(st.lists(event_rows(), min_size=2, max_size=8))]
    header = ["SOURCE", "FINNGENID", *EVENT_HEADER[2:]]
    people = [[i, "female", "NA", "50", "0"] for i in ids]
    with tempfile.TemporaryDirectory() as tmp:
        err = _error(Path(tmp), events_text=tsv(rows, header), people=people)
    assert err.code == "EP511" and err.column == "SOURCE" and "swapped" in str(err)
    assert not err.also  # not also EP514: the cause is named once
    shown = _texts(err)
    assert not [i for i in ids if i in shown], shown


@_SETTINGS
@given(values=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\t\r\n\"\x00"), min_size=1, max_size=12)
                        .filter(lambda v: v.strip() not in ("", "NA") and v not in KNOWN_SOURCES),
                        min_size=1, max_size=8, unique=True))
def test_unknown_sources_are_listed_only_when_they_look_like_source_labels(values):
    unknown = [[EVENTS[0][0], v, *EVENTS[0][2:]] for v in values]
    # so that unknown rows are a minority (and no row is a repeat)
    known = [[*EVENTS[i % 3][:-1], str(i)] for i in range(2 * len(values))]
    with tempfile.TemporaryDirectory() as tmp:
        reg = _loaded(Path(tmp), events=[*known, *unknown])
        file = Path(tmp) / "ev.tsv"
    (d,) = reg.diagnostics
    n = len(values)
    head = (f"events file {file}: column SOURCE has unknown values in {n} row{'s' if n > 1 else ''}, "
            f"which {'are' if n > 1 else 'is'} ignored: {n} distinct value{'s' if n > 1 else ''}")
    if all(re.fullmatch(r"[A-Z][A-Z_]{1,15}", v) for v in values) and n <= 5:
        assert d.message.startswith(head + ": ") and all(f"{v} (1 row)" in d.message for v in values)
    else:  # the whole message, so that no value can be in it
        assert d.message == head + " (not listed: values are listed only when they are at most 5 short upper-case words)"
    assert d.code == "EP507"


def test_most_rows_of_unknown_source_is_an_error(tmp_path):
    rows = [[*r[:1], "HILMO", *r[2:]] for r in EVENTS] + [EVENTS[0]]
    err = _error(tmp_path, events=rows)
    assert err.code == "EP511" and "3 of 4 rows" in str(err) and "HILMO (3 rows)" in str(err)
    assert "swapped" not in str(err) and "INPAT" in str(err)  # the known values, as a hint


@_SETTINGS
@given(age=st.floats(allow_nan=False, allow_infinity=False).filter(lambda a: a < 0 or a > 130),
       column=st.sampled_from(["EVENT_AGE", "FU_END_AGE"]), n=st.integers(1, 3))
def test_impossible_ages_are_an_error_with_file_column_and_count(age, column, n):
    text = repr(age)
    with tempfile.TemporaryDirectory() as tmp:
        if column == "EVENT_AGE":
            events = [[*r[:2], text, *r[3:]] if i < n else r for i, r in enumerate(EVENTS)]
            err = _error(Path(tmp), events=events)
        else:
            people = [[*r[:3], text, *r[4:]] if i < n else r for i, r in enumerate(PEOPLE)]
            err = _error(Path(tmp), people=people)
    assert err.code == "EP512" and err.column == column and not err.also
    assert f"{n} value" in str(err) and ("ev.tsv" if column == "EVENT_AGE" else "pp.tsv") in str(err)
    assert text not in str(err).replace(err.file, "")
    assert_private(str(err))


@_SETTINGS
@given(age=st.floats(0, 130))
def test_every_possible_age_is_accepted(age):
    with tempfile.TemporaryDirectory() as tmp:
        reg = _loaded(Path(tmp), events=[[*EVENTS[0][:2], repr(age), *EVENTS[0][3:]], *EVENTS[1:]],
                      people=[[*PEOPLE[0][:3], repr(age), *PEOPLE[0][4:]], *PEOPLE[1:]])
        assert reg.events.collect()["EVENT_AGE"][0] == age


@pytest.mark.parametrize("fmt", ["tsv", "gz", "parquet"])
def test_an_events_table_without_rows_is_an_error_unless_allowed(tmp_path, fmt):
    e = write(tmp_path / f"ev.{fmt}", [], EVENT_HEADER, fmt=fmt)
    p = write(tmp_path / "pp.tsv", PEOPLE, PEOPLE_HEADER)
    with pytest.raises(RegistryError) as info:
        load_registry(e, p)
    assert info.value.code == "EP513" and "ev." in str(info.value) and "no rows" in str(info.value)
    assert "--allow-empty-events" in str(info.value)
    reg = load_registry(e, p, allow_empty_events=True)
    assert reg.events.collect().height == 0 and reg.warnings == ()


def test_a_people_table_without_rows_is_an_error(tmp_path):
    err = error_of(tmp_path, people=[])
    assert err.code == "EP513" and "pp.tsv" in str(err) and "population is empty" in str(err)


@_SETTINGS
# below 10**6, so that "{:07d}" always adds a leading zero
@given(numbers=st.lists(st.integers(1, 10**6 - 1), min_size=1, max_size=5, unique=True),
       written=st.sampled_from(["{:07d}", "FG{:d}", "FG{:08d}", "{:d}.0"]), parquet=st.booleans())
def test_ids_written_differently_in_the_two_files_are_an_error(numbers, written, parquet):
    events = [[str(n), *EVENTS[i % 3][1:]] for i, n in enumerate(numbers)]
    people = [[written.format(n), *PEOPLE[i % 3][1:]] for i, n in enumerate(numbers)]
    with tempfile.TemporaryDirectory() as tmp:
        e = Path(tmp) / "ev.parquet"
        if parquet:  # ids stored as Int64 against text ids in the people file
            pl.DataFrame(events, schema=EVENT_HEADER, orient="row").with_columns(
                pl.col("FINNGENID").cast(pl.Int64)).write_parquet(e)
        else:
            e = write(Path(tmp) / "ev.tsv", events, EVENT_HEADER)
        with pytest.raises(RegistryError) as info:
            load_registry(e, write(Path(tmp) / "pp.tsv", people, PEOPLE_HEADER))
    err = info.value
    assert err.code == "EP514" and err.column == "FINNGENID" and "ids the same way" in str(err)
    assert ("stored as Int64" if parquet else "stored as text") in str(err)
    shown = _texts(err).replace(err.file, "")
    assert not [v for n in numbers for v in (str(n), written.format(n)) if len(v) >= 3 and v in shown]


@_SETTINGS
@given(n_people=st.integers(1, 5), n_others=st.integers(1, 30))
def test_a_sub_cohort_is_noted_once_and_its_outsiders_dropped(n_people, n_others):
    ids = [f"FGQZIDP{i:02d}" for i in range(n_people)]
    others = [f"FGQZIDO{i:02d}" for i in range(n_others)]
    events = [[i, *EVENTS[k % 3][1:-1], str(k)] for k, i in enumerate([*ids, *others, *others])]
    with tempfile.TemporaryDirectory() as tmp:
        reg = _loaded(Path(tmp), events=events, people=[[i, "male", "NA", "60", "0"] for i in ids])
        (d,) = reg.diagnostics
        assert d.code == "EP508" and f"{2 * n_others} events of {n_others} " in d.message
        assert reg.events.collect()["FINNGENID"].to_list() == ids
        program, _ = compile_text("endpoint A { hospital icd10 I21 }")
        assert evaluate(program, reg.events, reg.people).warnings == ()  # not reported a second time
    assert_private(d.message)


@_SETTINGS
@given(at=st.integers(0, 2), delta=st.sampled_from([-3, -1, 1, 2]), fmt=st.sampled_from(["tsv", "gz"]),
       which=st.sampled_from(["events", "people"]))
def test_a_ragged_line_is_an_error_naming_file_and_line(at, delta, fmt, which):
    rows = [list(r) for r in (EVENTS if which == "events" else PEOPLE)]
    rows[at] = rows[at] + ["FGQZIDX"] * delta if delta > 0 else rows[at][:delta]
    text = tsv(rows, EVENT_HEADER if which == "events" else PEOPLE_HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        e = Path(tmp) / f"ev.{fmt}"
        p = Path(tmp) / f"pp.{fmt}"
        for path, mine, other in ((e, "events", tsv(EVENTS, EVENT_HEADER)), (p, "people", tsv(PEOPLE, PEOPLE_HEADER))):
            data = (text if which == mine else other).encode()
            path.write_bytes(gzip.compress(data) if fmt == "gz" else data)
        with pytest.raises(RegistryError) as info:
            load_registry(e, p)
    err = info.value
    width = len(EVENT_HEADER if which == "events" else PEOPLE_HEADER)
    assert err.code == "EP501" and err.file == str(e if which == "events" else p) and not err.also
    assert f"line {at + 2} has {width + delta} fields where the header line has {width}" in str(err)
    assert_private(str(err))


def test_an_empty_line_is_a_ragged_line(tmp_path):
    err = error_of(tmp_path, events=[EVENTS[0], [""], *EVENTS[1:]])
    assert err.code == "EP501" and "line 3 is empty" in str(err)


def test_a_quoted_tab_is_no_ragged_line(tmp_path):
    rows = [[*EVENTS[0][:5], '"a\tb"', *EVENTS[0][6:]], *EVENTS[1:]]
    reg = load_registry(write(tmp_path / "ev.tsv", rows, EVENT_HEADER), write(tmp_path / "pp.tsv", PEOPLE, PEOPLE_HEADER))
    assert reg.events.collect()["CODE2"][0] == "a\tb"


@_SETTINGS
@given(copies=st.lists(st.integers(0, 2), min_size=3, max_size=3), fmt=st.sampled_from(["tsv", "parquet"]))
def test_repeated_event_rows_are_kept_and_counted_with_a_warning(copies, fmt):
    rows = [*EVENTS, *(EVENTS[i] for i, n in enumerate(copies) for _ in range(n))]
    # the same but for one column is no repeat
    rows.append([*EVENTS[0][:-1], "999"])
    with tempfile.TemporaryDirectory() as tmp:
        reg = load_registry(write(Path(tmp) / f"ev.{fmt}", rows, EVENT_HEADER, fmt=fmt),
                            write(Path(tmp) / "pp.tsv", PEOPLE, PEOPLE_HEADER))
        assert reg.events.collect().height == len(rows)
    repeated = [d for d in reg.diagnostics if d.code == "EP515"]
    if sum(copies):
        (d,) = repeated
        assert f"{sum(copies)} row" in d.message and "ev." in d.message and "kept" in d.message
        assert_private(d.message)
    else:
        assert not repeated


@pytest.mark.parametrize(("separator", "name"), [(",", "comma"), (";", "semicolon")])
@pytest.mark.parametrize("gz", [False, True])
def test_a_comma_or_semicolon_separated_file_is_named_as_such(tmp_path, separator, name, gz):
    text = "".join(separator.join(r) + "\n" for r in [EVENT_HEADER, *EVENTS]).encode()
    e = tmp_path / "ev.tsv"
    e.write_bytes(gzip.compress(text) if gz else text)
    with pytest.raises(RegistryError) as info:
        load_registry(e, write(tmp_path / "pp.tsv", PEOPLE, PEOPLE_HEADER))
    assert info.value.code == "EP501" and f"is {name}-separated, not tab-separated" in str(info.value)
    assert "ev.tsv" in str(info.value)
    assert_private(str(info.value))


def _compressible_events(n: int = 50_000) -> pl.DataFrame:
    return pl.DataFrame({
        "FINNGENID": [f"FGQZID{i // 5:05d}" for i in range(n)], "SOURCE": ["INPAT"] * n,
        "EVENT_AGE": [str(40 + i % 50) for i in range(n)], "APPROX_EVENT_DAY": ["2001-02-03"] * n,
        "CODE1": [f"I{(i * 7919) % 997:03d}" for i in range(n)], "CODE2": [f"C{(i * 31) % 991:03d}" for i in range(n)],
        "CODE3": ["NA"] * n, "CODE4": ["NA"] * n, "ICDVER": ["10"] * n, "CATEGORY": ["0"] * n,
        "INDEX": [str(i) for i in range(n)]})


# Also the guard against a hang: the reading of many corrupt files in one process left
# Polars' streaming executor broken, once in a few runs, when load_registry collected both
# files' checks together (see registry._collect).
def test_every_parquet_corruption_that_breaks_reading_is_an_error_naming_the_file(tmp_path):
    good = tmp_path / "good.parquet"
    _compressible_events().write_parquet(good)
    people = tmp_path / "pp.tsv"
    people.write_text(tsv([[f"FGQZID{i:05d}", "male", "NA", "60", "0"] for i in range(10_000)], PEOPLE_HEADER))
    data = good.read_bytes()
    broken = 0
    for at in range(len(data) // 10, len(data) - 600, len(data) // 25):
        bad = bytearray(data)
        bad[at:at + 512] = bytes((i * 37 + 11) % 256 for i in range(512))
        path = tmp_path / f"ev{at}.parquet"
        path.write_bytes(bytes(bad))
        try:
            scan_events(path).collect()
        except Exception:  # noqa: BLE001 - whatever Polars raises
            broken += 1
            with pytest.raises(RegistryError) as info:
                load_registry(path, people)
            assert info.value.code == "EP501" and info.value.file == str(path)
            assert "Parquet file that cannot be read" in str(info.value)
    assert broken >= 3  # the test corrupts data pages, not only values


def test_a_corrupt_page_of_a_column_the_checks_do_not_otherwise_need_is_found(tmp_path):
    # Bytes late in the file belong to the code columns, which no other check reads.
    path = tmp_path / "ev.parquet"
    _compressible_events().write_parquet(path)
    data = bytearray(path.read_bytes())
    at = int(len(data) * 0.6)
    data[at:at + 512] = bytes((i * 37 + 11) % 256 for i in range(512))
    path.write_bytes(bytes(data))
    people = write(tmp_path / "pp.tsv", [[f"FGQZID{i:05d}", "male", "NA", "60", "0"] for i in range(10_000)], PEOPLE_HEADER)
    with pytest.raises(RegistryError) as info:
        load_registry(path, people)
    assert info.value.code == "EP501" and info.value.file == str(path)
