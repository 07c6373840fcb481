"""The importer's surface: file formats, spans into the spreadsheet, the report, writing the
library, and export -> import round trips."""

from __future__ import annotations

import importlib.util

import pytest

from endpointc import parse_file
from endpointc.check import check
from endpointc.finngen import (
    EXPORT_COLUMNS, ISSUE_KEY, export_finngen, import_finngen, read_table, write_library,
)
from endpointc.fmt import ast_equal

from finngen_sheets import endpoint, rules_of, write_sheet

ROWS = [
    {"TAGS": "#ALL", "LEVEL": "#V1.2", "NAME": "#_credits"},
    {"TAGS": "#I9,#CARDIO", "LEVEL": "3", "NAME": "I9_MI", "LONGNAME": "Myocardial infarction, acute",
     "HD_ICD_10": "I21|I22", "HD_ICD_9": "410", "COD_ICD_10": "I21|I22", "version": "DF2"},
    {},
    {"TAGS": "#E4", "NAME": "E4_DM1", "LONGNAME": "Type 1 diabetes", "HD_ICD_10": "E10", "KELA_REIMB": "103"},
    {"TAGS": "#E4", "NAME": "T2D_EARLY", "OMIT": "2", "INCLUDE": "E4_DM2", "PRE_CONDITIONS": "EVENT_AGE<40",
     "CONDITIONS": "!E4_DM1", "SEX": "1"},
    {"TAGS": "#I9", "NAME": "I9_MI_WIDE", "INCLUDE": "I9_MI", "KELA_ATC": "C01DA", "KELA_ATC_NEEDOTHER": "YES"},
]


def sheet(tmp_path, **kwargs):
    return write_sheet(tmp_path, ROWS, columns=["TAGS", "LEVEL", "OMIT", "NAME"], **kwargs)


def test_import_builds_endpoints_with_spans_into_the_sheet(tmp_path):
    path = sheet(tmp_path)
    result = import_finngen(path)
    assert [e.name for e in result.endpoints] == ["I9_MI", "I9_MI_WIDE", "E4_DM1", "T2D_EARLY"]
    assert [f.name for f in result.files] == ["I9.ep", "E4.ep"]
    mi = endpoint(result, "I9_MI")
    assert (mi.span.file, mi.span.line) == (str(path), 3)
    assert mi.name_span.column == 4  # NAME is the 4th column
    rule = mi.rules[0]
    header, _, _ = read_table(path)
    assert (rule.span.line, rule.span.column) == (3, header.index("HD_ICD_10") + 1)
    assert rules_of(mi) == [("hospital", (), (("icd10", ("I21", "I22"), ()), ("icd9", ("410",), ()))),
                            ("death", (), (("icd10", ("I21", "I22"), ()),))]


def test_report_counts_rows_endpoints_warnings_and_marks(tmp_path):
    result = import_finngen(sheet(tmp_path))
    report = result.report
    assert (report.rows_read, report.endpoints_written, report.skipped_rows) == (6, 4, 2)
    # E4_DM2 is not in the sheet: T2D_EARLY is imported, marked, and the name kept verbatim.
    assert dict(report.warnings_by_kind) == {"banner row skipped": 1, "reference to a missing name": 1}
    assert report.marked == ("T2D_EARLY",) and report.warnings == 2
    assert endpoint(result, "T2D_EARLY").meta["INCLUDE"] == "E4_DM2"


@pytest.mark.parametrize("variant", [
    {"name": "defs.csv"}, {"name": "defs.tsv", "crlf": True}, {"name": "defs.txt", "crlf": True, "bom": True},
    {"name": "defs.csv", "bom": True, "crlf": True},
])
def test_csv_and_tsv_variants_give_the_same_library(tmp_path, variant):
    reference = import_finngen(sheet(tmp_path / "ref" if (tmp_path / "ref").mkdir() is None else tmp_path))
    other = import_finngen(sheet(tmp_path, **variant))
    assert len(other.files) == len(reference.files)
    assert all(ast_equal(a, b) for a, b in zip(reference.files, other.files))
    header, rows, _ = read_table(tmp_path / variant["name"])
    assert header[3] == "NAME" and not any(cell.endswith("\r") for row in rows for cell in row)


def test_xlsx_gives_the_same_library(tmp_path):
    if importlib.util.find_spec("fastexcel") is None or importlib.util.find_spec("xlsxwriter") is None:
        pytest.skip("reading XLSX needs fastexcel (writing the test sheet needs xlsxwriter)")
    import polars as pl

    header, rows, _ = read_table(sheet(tmp_path))
    # Numbers stored as numbers in the workbook must come back as the same text.
    frame = pl.DataFrame([list(r) for r in rows], schema=list(header), orient="row")
    frame = frame.with_columns(pl.col("OMIT").replace("", None).cast(pl.Int64))
    xlsx = tmp_path / "defs.xlsx"
    frame.write_excel(xlsx)
    a, b = import_finngen(sheet(tmp_path)), import_finngen(xlsx)
    assert all(ast_equal(x, y) for x, y in zip(a.files, b.files)) and len(a.files) == len(b.files)


def test_unreadable_or_foreign_files_give_an_error_not_an_exception(tmp_path):
    missing = import_finngen(tmp_path / "nope.tsv")
    assert missing.files == () and [d.code for d in missing.diagnostics] == ["EP601"]
    foreign = tmp_path / "people.tsv"
    foreign.write_text("FINNGENID\tSEX\nFG1\tfemale\n")
    result = import_finngen(foreign)
    assert result.files == () and result.diagnostics[-1].is_error and "NAME" in result.diagnostics[-1].message


def test_write_library_writes_formatted_files_that_parse_back(tmp_path):
    result = import_finngen(sheet(tmp_path))
    out = tmp_path / "lib"
    written = write_library(result, out)
    assert [p.name for p in written] == ["I9.ep", "E4.ep"]
    assert sorted(p.name for p in out.iterdir()) == ["E4.ep", "I9.ep"]  # no temporary files left
    parsed = []
    for path, file in zip(written, result.files):
        tree, diagnostics = parse_file(path)
        assert tree is not None, diagnostics
        assert ast_equal(tree, file)
        parsed.append(tree)
    _, found = check(parsed)
    assert [d for d in found if d.is_error] == []
    text = (out / "E4.ep").read_text()
    assert "when age < 40" in text and "require not E4_DM1" in text and f'meta "{ISSUE_KEY}"' in text


def test_export_then_import_gives_the_same_asts(tmp_path):
    result = import_finngen(sheet(tmp_path))
    out = tmp_path / "export.tsv"
    exported = export_finngen(result.files, out)
    assert exported.diagnostics == ()
    header = out.read_text().splitlines()[0].split("\t")
    assert header[:4] == ["TAGS", "LEVEL", "OMIT", "NAME"] and set(header) <= set(EXPORT_COLUMNS)
    again = import_finngen(out)
    assert [e.name for e in again.endpoints] == [e.name for e in result.endpoints]
    assert all(ast_equal(a, b) for a, b in zip(result.endpoints, again.endpoints))


def test_export_of_hand_written_definitions(tmp_path):
    from endpointc import parse
    tree, _ = parse('''
      endpoint E4_DM2 { title "Type 2 diabetes" tags E4 hospital icd10 E11 | E10-E12 except =E119
                        purchase single atc A10B include E4_DM2COMA }
      endpoint E4_DM2COMA { hospital icd10 E110  death main icd10 E110 }
      endpoint OUTP { outpatient icd10 I21 }
    ''')
    result = export_finngen([tree], tmp_path / "x.tsv")
    rows = {r[result.header.index("NAME")]: dict(zip(result.header, r)) for r in result.rows}
    assert rows["E4_DM2"]["HD_ICD_10"] == "E11|E1[0-2]" and rows["E4_DM2"]["HD_ICD_10_EXCL"] == "^E119$"
    assert rows["E4_DM2"]["KELA_ATC_NEEDOTHER"] == "SINGLE_OK" and rows["E4_DM2COMA"]["COD_MAINONLY"] == "YES"
    # `outpatient` has no FinnGen column: said, not silently lost.
    assert [d.code for d in result.diagnostics] == ["EP620"] and "outpatient" in result.diagnostics[0].message
