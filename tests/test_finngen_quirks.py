"""Every real-world quirk of FinnGen spreadsheets, on tiny hand-made sheets.

Each test writes a sheet to tmp_path, imports it and checks three things: the AST says what
FinnGen meant, the quirk is reported (code, row, NAME, column), and nothing is lost: export
puts the column back.
"""

from __future__ import annotations

import re

import pytest

from endpointc import ast
from endpointc.check import check
from endpointc.finngen import ISSUE_KEY, NAME_KEY, export_rows, import_finngen, split_alternatives

from finngen_sheets import codes_of, endpoint, rules_of, write_sheet


def diags(result, code):
    return [d for d in result.diagnostics if d.code == code]


def exported(result) -> dict[str, dict[str, str]]:
    table = export_rows(result.files)
    assert table.diagnostics == ()
    return {row[table.header.index("NAME")]: dict(zip(table.header, row)) for row in table.rows}


def alternatives(text: str) -> set[str]:
    return {a[1:] if a.startswith("^") else a for a in split_alternatives(re.sub(r"\s", "", text))} if text else set()


def assert_checks_clean(result):
    _, found = check(result.files)
    assert [str(d) for d in found if d.is_error] == []


def test_banner_row_is_skipped_with_a_warning(tmp_path):
    path = write_sheet(tmp_path, [
        {"TAGS": "#ALL", "LEVEL": "#V1.2", "NAME": "#_This_follow-up_coding_is_the_work_of_..."},
        {"TAGS": "#I9", "NAME": "I9_MI", "HD_ICD_10": "I21"},
    ])
    result = import_finngen(path)
    assert [e.name for e in result.endpoints] == ["I9_MI"]
    (banner,) = diags(result, "EP602")
    assert banner.span.line == 2 and banner.span.file == str(path)
    assert result.report.rows_read == 2 and result.report.endpoints_written == 1
    assert dict(result.report.warnings_by_kind) == {"banner row skipped": 1}


def test_no_break_spaces_and_stray_whitespace_are_stripped_and_reported(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "KRA_PSY_DEMENTIA", "HD_ICD_9": "\u00a0290|2912A|4378A\u00a0",
                                   "COD_ICD_10": "F00 | F01"}])
    result = import_finngen(path)
    e = endpoint(result, "KRA_PSY_DEMENTIA")
    assert rules_of(e) == [("hospital", (), (("icd9", ("290", "2912A", "4378A"), ()),)),
                           ("death", (), (("icd10", ("F00", "F01"), ()),))]
    found = diags(result, "EP603")
    assert len(found) == 2
    assert "row 2, KRA_PSY_DEMENTIA, HD_ICD_9" in found[0].message and "no-break" in found[0].message
    assert found[0].span.line == 2 and found[0].span.column == 2  # NAME is column 1, HD_ICD_9 column 2


def test_none_and_any(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "DEATH", "COD_ICD_10": "ANY", "COD_ICD_9": "$!$", "KELA_REIMB": "ANY",
                                   "KELA_REIMB_ICD": "E10"}])
    result = import_finngen(path)
    assert rules_of(endpoint(result, "DEATH")) == [
        ("death", (), (("icd10", ("any",), ()), ("icd9", ("none",), ()))),
        ("reimbursement", (), (("kela", ("any",), ()), ("icd10", ("E10",), ()))),
    ]
    assert result.diagnostics == ()
    row = exported(result)["DEATH"]
    assert (row["COD_ICD_10"], row["COD_ICD_9"], row["KELA_REIMB"]) == ("ANY", "$!$", "ANY")


def test_percent_prefix_splits_off_a_mode_rule(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "ASTHMA_MODE", "HD_ICD_10": "%J45|J46", "HD_ICD_9": "493",
                                   "HD_ICD_10_EXCL": "J459", "COD_ICD_10": "%J44"}])
    result = import_finngen(path)
    assert rules_of(endpoint(result, "ASTHMA_MODE")) == [
        ("hospital", (), (("icd10", ("J46",), ("J459",)), ("icd9", ("493",), ()))),
        ("hospital", ("mode",), (("icd10", ("J45",), ("J459",)),)),
        ("death", ("mode",), (("icd10", ("J44",), ()),)),
    ]
    row = exported(result)["ASTHMA_MODE"]
    assert alternatives(row["HD_ICD_10"]) == {"%J45", "J46"} and row["HD_ICD_10_EXCL"] == "J459"
    assert row["COD_ICD_10"] == "%J44"
    assert_checks_clean(result)


def test_ampersand_is_a_combination_where_code2_is_a_diagnosis(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "PSORIARTH", "HD_ICD_10": "M07&L405|M07[1-3]",
                                   "OUTPAT_ICD": "N778&L439", "KELA_REIMB": "ANY",
                                   "KELA_REIMB_ICD": "M07&L405|M07[1-3]"}])
    result = import_finngen(path)
    e = endpoint(result, "PSORIARTH")
    assert rules_of(e)[0] == ("hospital", (), (("icd10", ("M07&L405", "M07[1-3]"), ()),))
    assert rules_of(e)[1] == ("primary", (), (("icd10", ("N778&L439",), ()),))
    # In the reimbursement register CODE2 is the ICD code itself: `&` has no second code to
    # pair with, so the regex keeps FinnGen's literal meaning, reported.
    assert rules_of(e)[2] == ("reimbursement", (), (("kela", ("any",), ()),
                                                     ("icd10", ("re:M07&L405", "M07[1-3]"), ())))
    assert [d.code for d in result.diagnostics if "KELA_REIMB_ICD" in d.message][0] == "EP604"
    assert alternatives(exported(result)["PSORIARTH"]["KELA_REIMB_ICD"]) == {"M07&L405", "M07[1-3]"}
    assert_checks_clean(result)


def test_anchors_in_operation_columns(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "I9_CABG", "OPER_HL": "^5311$|^527|^445[1-3]$", "OPER_HP1": "^11$|^25$",
                                   "OPER_HP2": "^AA1", "OPER_NOM": "FNA|FNB"}])
    result = import_finngen(path)
    assert rules_of(endpoint(result, "I9_CABG")) == [("operation", (), (
        ("nomesco", ("FNA", "FNB"), ()), ("hl", ("=5311", "527", "=445[1-3]"), ()),
        ("hp1", ("=11", "=25"), ()), ("hp2", ("AA1",), ())))]
    assert result.diagnostics == ()  # an anchor says what the code pattern says: no quirk
    row = exported(result)["I9_CABG"]
    assert alternatives(row["OPER_HL"]) == {"5311$", "527", "445[1-3]$"}
    assert_checks_clean(result)


@pytest.mark.parametrize(("column", "text", "why"), [
    ("COD_ICD_10", "W[0-1]*", "quantifier"),  # means every W code, not W0/W1
    ("HD_ICD_10", "P75*", "quantifier"),
    ("HD_ICD_10", "D01[7|9]", "`|` inside a character class"),
    ("HD_ICD_10", "X85-Y09", "range"),  # a regex reads the hyphen literally
    ("KELA_ATC", "N05C#", "no code characters"),
    ("COD_ICD_9", "4249/0932A", "no code characters"),
    ("OPER_NOM", "JK_", "no code characters"),
])
def test_regex_whose_meaning_differs_from_its_look_is_kept_as_regex(tmp_path, column, text, why):
    path = write_sheet(tmp_path, [{"NAME": "Q", column: f"{text}|A00"}])
    result = import_finngen(path)
    (rule,) = endpoint(result, "Q").rules
    assert codes_of(rule.clauses[0].patterns) == [f"re:{text}", "A00"]
    (warning,) = [d for d in diags(result, "EP604")]
    assert f"row 2, Q, {column}" in warning.message and why in warning.message
    assert alternatives(exported(result)["Q"][column]) == {text, "A00"}


def test_regex_keeps_finngen_meaning():
    # The language anchors re"..." at the code's start, as FinnGen anchors its columns.
    from endpointc.codes import pattern_regex
    from endpointc.source import Span
    span = Span(file="x", line=1, column=1, end_line=1, end_column=1)
    regex = pattern_regex(ast.Regex(span=span, regex="W[0-1]*"))
    assert all(re.match(regex, c) for c in ("W", "W2", "W99"))  # as FinnGen's ^(W[0-1]*) would
    assert not re.match(pattern_regex(ast.Regex(span=span, regex="X85-Y09")), "X86")


def test_typo_is_kept_as_written_and_reported(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "RX_TYPO", "KELA_ATC": "N02AJ0[6-9]|N2AJ0[6-9]"}])
    result = import_finngen(path)
    assert rules_of(endpoint(result, "RX_TYPO")) == [("purchase", (), (("atc", ("N02AJ0[6-9]", "N2AJ0[6-9]"), ()),))]
    (typo,) = diags(result, "EP605")
    assert "N2AJ0[6-9]" in typo.message and "row 2, RX_TYPO, KELA_ATC" in typo.message


def test_conditions(tmp_path):
    rows = [{"NAME": n} for n in ("A", "B", "C", "GAST_OPER", "ABDOM_HERNIA", "K11_CROHN")]
    rows += [
        {"NAME": "NOT_A", "CONDITIONS": "!A"},
        {"NAME": "COUNT", "CONDITIONS": "A&K11_CROHN_NEVT>1"},
        {"NAME": "AGES", "CONDITIONS": "GAST_OPER==1&GAST_OPER_AGE<ABDOM_HERNIA_AGE"},
        {"NAME": "GROUP", "CONDITIONS": "(!A)&(B|C)"},
        {"NAME": "NONE_OF", "CONDITIONS": "!(A|B|C)"},
        {"NAME": "NOT_EQ", "CONDITIONS": "A==0"},
    ]
    result = import_finngen(write_sheet(tmp_path, rows))
    assert result.diagnostics == ()
    text = {e.name: _expr(e._of(ast.Require)[0].condition) for e in result.endpoints if e._of(ast.Require)}
    assert text == {
        "NOT_A": "not A", "COUNT": "A and K11_CROHN.count > 1",
        "AGES": "GAST_OPER and GAST_OPER.age < ABDOM_HERNIA.age", "GROUP": "not A and (B or C)",
        "NONE_OF": "not (A or B or C)", "NOT_EQ": "not A",
    }
    assert exported(result)["COUNT"]["CONDITIONS"] == "A&K11_CROHN_NEVT>1"
    assert_checks_clean(result)


def test_preconditions(tmp_path):
    rows = [{"NAME": "POAG", "HD_ICD_10": "H401"},
            {"NAME": "JOAG", "INCLUDE": "POAG", "PRE_CONDITIONS": "4<=EVENT_AGE<=40"},
            {"NAME": "OLD", "HD_ICD_10": "I21", "PRE_CONDITIONS": "EVENT_YEAR<1994"},
            {"NAME": "YOUNG", "HD_ICD_10": "I21", "PRE_CONDITIONS": "EVENT_AGE < 20"},
            {"NAME": "REVACS", "INCLUDE": "POAG", "PRE_CONDITIONS": "EMERG"}]
    result = import_finngen(write_sheet(tmp_path, rows))
    assert result.diagnostics == ()
    text = {e.name: _expr(e._of(ast.When)[0].condition) for e in result.endpoints if e._of(ast.When)}
    assert text == {"JOAG": "4 <= age <= 40", "OLD": "year < 1994", "YOUNG": "age < 20", "REVACS": "emergency"}
    table = exported(result)
    assert [table[n]["PRE_CONDITIONS"] for n in ("JOAG", "YOUNG", "REVACS")] == ["4<=EVENT_AGE<=40", "EVENT_AGE<20", "EMERG"]
    assert_checks_clean(result)


def test_needother_values(tmp_path):
    rows = [{"NAME": "DEFAULT", "KELA_ATC": "A10"},
            {"NAME": "OTHER", "KELA_ATC": "C03CA01", "KELA_ATC_NEEDOTHER": "YES", "KELA_REIMB": "201"},
            {"NAME": "SINGLE", "KELA_ATC": "N02CC", "KELA_ATC_NEEDOTHER": "SINGLE_OK"},
            {"NAME": "VNR", "KELA_ATC": "A10", "KELA_VNRO": "123456", "KELA_VNRO_NEEDOTHER": "YES"}]
    result = import_finngen(write_sheet(tmp_path, rows))
    assert result.diagnostics == ()
    assert rules_of(endpoint(result, "DEFAULT")) == [("purchase", (), (("atc", ("A10",), ()),))]
    assert rules_of(endpoint(result, "OTHER"))[1] == ("purchase", ("needs_other",), (("atc", ("C03CA01",), ()),))
    assert rules_of(endpoint(result, "SINGLE")) == [("purchase", ("single",), (("atc", ("N02CC",), ()),))]
    # ATC and VNR become two rules: in one purchase rule vocabularies would have to match together.
    assert rules_of(endpoint(result, "VNR")) == [("purchase", (), (("atc", ("A10",), ()),)),
                                                 ("purchase", ("needs_other",), (("vnr", ("123456",), ()),))]
    table = exported(result)
    assert [table[n]["KELA_ATC_NEEDOTHER"] for n in ("DEFAULT", "OTHER", "SINGLE")] == ["", "YES", "SINGLE_OK"]
    assert table["VNR"]["KELA_VNRO_NEEDOTHER"] == "YES"
    assert_checks_clean(result)


def test_unknown_needother_value_marks_the_endpoint(tmp_path):
    result = import_finngen(write_sheet(tmp_path, [{"NAME": "ANY_ATC", "KELA_ATC_NEEDOTHER": "ANY"}]))
    e = endpoint(result, "ANY_ATC")
    assert e.meta["KELA_ATC_NEEDOTHER"] == "ANY" and ISSUE_KEY in e.meta
    assert result.report.marked == ("ANY_ATC",)
    assert exported(result)["ANY_ATC"]["KELA_ATC_NEEDOTHER"] == "ANY"


def test_missing_names_are_dropped_kept_in_meta_and_marked(tmp_path):
    rows = [{"NAME": "I9_MI", "HD_ICD_10": "I21"},
            {"NAME": "I9_CHD_NOREV", "INCLUDE": "K.I9_MI|I9_MI|NOT_HERE", "HD_ICD_10": "I200"},
            {"NAME": "REQ", "HD_ICD_10": "I21", "CONDITIONS": "I9_MI&!GONE"}]
    result = import_finngen(write_sheet(tmp_path, rows))
    e = endpoint(result, "I9_CHD_NOREV")
    assert [n.name for n in e.includes] == ["I9_MI"]
    assert e.meta["INCLUDE"] == "K.I9_MI|NOT_HERE" and "K.I9_MI" in e.meta[ISSUE_KEY]
    req = endpoint(result, "REQ")
    assert not req._of(ast.Require) and req.meta["CONDITIONS"] == "I9_MI&!GONE"
    assert result.report.marked == ("I9_CHD_NOREV", "REQ")
    found = diags(result, "EP606")
    assert len(found) == 2 and "row 3, I9_CHD_NOREV, INCLUDE" in found[0].message
    assert any("K." in h for h in found[0].hints)
    table = exported(result)
    assert alternatives(table["I9_CHD_NOREV"]["INCLUDE"]) == {"K.I9_MI", "I9_MI", "NOT_HERE"}
    assert table["REQ"]["CONDITIONS"] == "I9_MI&!GONE"
    assert_checks_clean(result)


def test_construct_without_meaning_is_imported_marked(tmp_path):
    rows = [{"NAME": "I9_HEARTFAIL", "HD_ICD_10": "I50"},
            {"NAME": "I9_HEARTFAIL_AND_OVERWEIGHT", "INCLUDE": "I9_HEARTFAIL", "CONDITIONS": "BMI>25"}]
    result = import_finngen(write_sheet(tmp_path, rows))
    e = endpoint(result, "I9_HEARTFAIL_AND_OVERWEIGHT")
    assert [n.name for n in e.includes] == ["I9_HEARTFAIL"]
    assert e.meta["CONDITIONS"] == "BMI>25" and "measurement" in e.meta[ISSUE_KEY]
    (problem,) = diags(result, "EP607")
    assert "row 3, I9_HEARTFAIL_AND_OVERWEIGHT, CONDITIONS" in problem.message
    assert result.report.marked == ("I9_HEARTFAIL_AND_OVERWEIGHT",)
    assert exported(result)["I9_HEARTFAIL_AND_OVERWEIGHT"]["CONDITIONS"] == "BMI>25"
    assert_checks_clean(result)


def test_omitted_endpoints_sex_and_metadata_are_kept(tmp_path):
    rows = [{"TAGS": "#N14,#FEMALE", "LEVEL": "2", "OMIT": "1", "NAME": "N14_X", "LONGNAME": 'Odd "quoted" name',
             "SEX": "2", "HD_ICD_10": "N97", "Special": "note here", "version": "DF2, additional",
             "PARENT": "N97-N98", "Latin": "Infertilitas", "Modification_date": "11.15.2021",
             "Modified_by": "Clin. Team /EL", "Future_column": "x"},
            {"TAGS": "#N14", "LEVEL": "C", "NAME": "N14_MALE", "SEX": "1", "PARENT": "N14_X", "HD_ICD_10": "N46"}]
    result = import_finngen(write_sheet(tmp_path, rows))
    e = endpoint(result, "N14_X")
    assert e.meta == {"tags": ("N14", "FEMALE"), "level": "2", "omit": "1", "title": 'Odd "quoted" name',
                      "note": "note here", "version": "DF2, additional", "PARENT": "N97-N98",
                      "latin": "Infertilitas", "Modification_date": "11.15.2021",
                      "Modified_by": "Clin. Team /EL", "Future_column": "x"}
    assert e.sex == "female" and endpoint(result, "N14_MALE").sex == "male"
    assert endpoint(result, "N14_MALE").meta["parent"] == "N14_X"  # a name of the file
    assert result.diagnostics == ()
    table = exported(result)
    for column, value in rows[0].items():
        assert table["N14_X"][column] == value, column
    assert_checks_clean(result)


def test_reimbursement_is_one_conjunctive_rule_with_icd_versions_split(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "PDSTRICT", "KELA_REIMB": "110", "KELA_REIMB_ICD": "G20|3320A"},
                                  {"NAME": "K11_KELACROHN", "KELA_REIMB": "208", "KELA_REIMB_ICD": "K50|555"}])
    result = import_finngen(path)
    assert rules_of(endpoint(result, "PDSTRICT")) == [
        ("reimbursement", (), (("kela", ("110",), ()), ("icd10", ("G20",), ()), ("icd9", ("3320A",), ())))]
    assert alternatives(exported(result)["K11_KELACROHN"]["KELA_REIMB_ICD"]) == {"K50", "555"}
    assert_checks_clean(result)


def test_cancer_columns_make_one_rule(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "C3_BREAST", "CANC_TOPO": "C50", "CANC_TOPO_EXCL": "C509",
                                   "CANC_MORPH": "8500|85[2-4]", "CANC_MORPH_EXCL": "8520", "CANC_BEHAV": "3"}])
    result = import_finngen(path)
    assert rules_of(endpoint(result, "C3_BREAST")) == [("cancer", (), (
        ("topography", ("C50",), ("C509",)), ("morphology", ("8500", "85[2-4]"), ("8520",)),
        ("behaviour", ("3",), ())))]
    row = exported(result)["C3_BREAST"]
    assert (row["CANC_TOPO_EXCL"], row["CANC_MORPH_EXCL"], row["CANC_BEHAV"]) == ("C509", "8520", "3")
    assert_checks_clean(result)


def test_hospital_atc_and_main_only(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "ADVERSE", "HD_MAINONLY": "YES", "HD_ICD_10_ATC": "ANY",
                                   "HD_ICD_10": "T88", "HD_ICD_9": "995"}])
    result = import_finngen(path)
    # HD_ICD_10_ATC is about ICD-10 events only: the ICD-9 codes get a rule without `with atc`.
    assert rules_of(endpoint(result, "ADVERSE")) == [
        ("hospital", ("main", "with_atc"), (("icd10", ("T88",), ()),)),
        ("hospital", ("main",), (("icd9", ("995",), ()),))]
    row = exported(result)["ADVERSE"]
    assert (row["HD_MAINONLY"], row["HD_ICD_10_ATC"]) == ("YES", "ANY")
    assert_checks_clean(result)


def test_controls_columns_and_controls_workbook(tmp_path):
    rows = [{"NAME": "E4_DM1", "HD_ICD_10": "E10"}, {"NAME": "E4_DM2", "HD_ICD_10": "E11"},
            {"NAME": "T2D", "INCLUDE": "E4_DM2", "CONTROL_EXCLUDE": "E4_DM1"}]
    result = import_finngen(write_sheet(tmp_path, rows))
    (controls,) = endpoint(result, "T2D")._of(ast.Controls)
    assert [n.name for n in controls.items[0].names] == ["E4_DM1"]
    workbook = write_sheet(tmp_path, [{"NAME": "T2D", "CONTROL_CONDITIONS": "!E4_DM1",
                                       "CONTROL_PRECONDITIONS": "EVENT_AGE<40"},
                                      {"NAME": "NOWHERE", "CONTROL_EXCLUDE": "E4_DM1"}], name="controls.tsv")
    merged = import_finngen(write_sheet(tmp_path, rows[:2] + [{"NAME": "T2D", "INCLUDE": "E4_DM2"}]),
                            controls=workbook)
    e = endpoint(merged, "T2D")
    (controls,) = e._of(ast.Controls)
    assert _expr(controls.items[0].condition) == "not E4_DM1"
    assert controls.items[0].span.file == str(workbook)
    assert e.meta["CONTROL_PRECONDITIONS"] == "EVENT_AGE<40" and ISSUE_KEY in e.meta
    assert sorted(d.code for d in merged.diagnostics) == ["EP607", "EP613"]
    row = exported(merged)["T2D"]
    assert (row["CONTROL_CONDITIONS"], row["CONTROL_PRECONDITIONS"]) == ("!E4_DM1", "EVENT_AGE<40")
    assert_checks_clean(merged)


def test_invalid_names_are_renamed_and_restored_on_export(tmp_path):
    rows = [{"NAME": "Q17_DOWN'S_SYNDR", "HD_ICD_10": "Q90"}, {"NAME": "*EMERG", "LONGNAME": "Emergency"},
            {"NAME": "Q17_TRISO", "INCLUDE": "Q17_DOWN'S_SYNDR", "CONDITIONS": "!Q17_DOWN'S_SYNDR"}]
    result = import_finngen(write_sheet(tmp_path, rows))
    assert [e.name for e in result.endpoints] == ["Q17_DOWNS_SYNDR", "EMERG", "Q17_TRISO"]
    assert endpoint(result, "Q17_DOWNS_SYNDR").meta[NAME_KEY] == "Q17_DOWN'S_SYNDR"
    assert [n.name for n in endpoint(result, "Q17_TRISO").includes] == ["Q17_DOWNS_SYNDR"]
    assert len(diags(result, "EP608")) == 2
    table = exported(result)
    assert set(table) == {"Q17_DOWN'S_SYNDR", "*EMERG", "Q17_TRISO"}
    assert table["Q17_TRISO"]["CONDITIONS"] == "!Q17_DOWN'S_SYNDR"
    assert_checks_clean(result)


def test_self_include_is_dropped_with_a_warning(tmp_path):
    result = import_finngen(write_sheet(tmp_path, [{"NAME": "A", "INCLUDE": "A|B", "HD_ICD_10": "A00"},
                                                   {"NAME": "B", "HD_ICD_10": "B00"}]))
    assert [n.name for n in endpoint(result, "A").includes] == ["B"]
    assert [d.code for d in result.diagnostics] == ["EP614"]
    assert alternatives(exported(result)["A"]["INCLUDE"]) == {"A", "B"}
    assert_checks_clean(result)


def test_tag_quirks_and_line_breaks_in_text(tmp_path):
    path = write_sheet(tmp_path, [{"TAGS": "#I9, #OPER", "NAME": "A", "LONGNAME": "two\nlines", "HD_ICD_10": "I21"},
                                  {"TAGS": "L12", "NAME": "B", "HD_ICD_10": "L10"}])
    result = import_finngen(path)
    assert endpoint(result, "A").meta["tags"] == ("I9", "OPER") and endpoint(result, "A").meta["title"] == "two lines"
    assert endpoint(result, "B").meta["tags"] == ("L12",)
    assert sorted(d.code for d in result.diagnostics) == ["EP603", "EP612", "EP612"]
    assert [f.name for f in result.files] == ["I9.ep", "L12.ep"]


def test_not_utf8_file_is_decoded_and_reported(tmp_path):
    path = write_sheet(tmp_path, [{"NAME": "F5_ALCO", "LONGNAME": "Alcohol withdrawal\u00a0délirium, ä"}],
                       encoding="mac_roman", crlf=True)
    result = import_finngen(path)
    assert endpoint(result, "F5_ALCO").meta["title"] == "Alcohol withdrawal\u00a0délirium, ä"
    assert [d.code for d in result.diagnostics] == ["EP609"]


def _expr(expr) -> str:
    from endpointc.fmt import expr_text as render
    return render(expr)


def test_duplicate_alternatives_are_dropped_with_a_warning(tmp_path):
    result = import_finngen(write_sheet(tmp_path, [{"NAME": "C3_AML", "HD_ICD_9": "2060A|2070A|2060A"}]))
    assert rules_of(endpoint(result, "C3_AML")) == [("hospital", (), (("icd9", ("2060A", "2070A"), ()),))]
    (warning,) = diags(result, "EP615")
    assert "row 2, C3_AML, HD_ICD_9" in warning.message and "2060A" in warning.message


def test_a_name_repeated_in_include_is_dropped_with_a_warning(tmp_path):
    rows = [{"NAME": "T2D_WIDE", "INCLUDE": "T2D|E4_DM2|T2D"}, {"NAME": "T2D", "HD_ICD_10": "E11"},
            {"NAME": "E4_DM2", "HD_ICD_10": "E14"}]
    result = import_finngen(write_sheet(tmp_path, rows))
    assert [n.name for n in endpoint(result, "T2D_WIDE").includes] == ["T2D", "E4_DM2"]
    (warning,) = diags(result, "EP615")
    assert "row 2, T2D_WIDE, INCLUDE" in warning.message and "T2D" in warning.message


def test_dependency_cycles_are_broken_at_the_closing_reference(tmp_path):
    rows = [{"NAME": "KRA_PSY_ANYMENTAL", "INCLUDE": "KRA_PSY_DEMENTIA|KRA_PSY_ANYMENTAL_SUICID"},
            {"NAME": "KRA_PSY_ANYMENTAL_SUICID", "INCLUDE": "KRA_PSY_ANYMENTAL", "HD_ICD_10": "X6"},
            {"NAME": "KRA_PSY_DEMENTIA", "HD_ICD_10": "F00"},
            {"NAME": "MIGRAINE", "INCLUDE": "MIGRAINE_TRIPTAN", "HD_ICD_10": "G43"},
            {"NAME": "MIGRAINE_TRIPTAN", "INCLUDE": "TRIPTAN", "CONDITIONS": "MIGRAINE&TRIPTAN"},
            {"NAME": "TRIPTAN", "KELA_ATC": "N02CC"}]
    result = import_finngen(write_sheet(tmp_path, rows))
    suicid = endpoint(result, "KRA_PSY_ANYMENTAL_SUICID")
    assert not suicid.includes and suicid.meta["INCLUDE"] == "KRA_PSY_ANYMENTAL" and ISSUE_KEY in suicid.meta
    assert [n.name for n in endpoint(result, "KRA_PSY_ANYMENTAL").includes] == ["KRA_PSY_DEMENTIA",
                                                                                "KRA_PSY_ANYMENTAL_SUICID"]
    triptan = endpoint(result, "MIGRAINE_TRIPTAN")
    assert not triptan._of(ast.Require) and triptan.meta["CONDITIONS"] == "MIGRAINE&TRIPTAN"
    assert [d.code for d in result.diagnostics] == ["EP616", "EP616"]
    assert "KRA_PSY_ANYMENTAL -> KRA_PSY_ANYMENTAL_SUICID -> KRA_PSY_ANYMENTAL" in result.diagnostics[0].message
    assert result.report.marked == ("KRA_PSY_ANYMENTAL_SUICID", "MIGRAINE_TRIPTAN")
    table = exported(result)
    assert table["KRA_PSY_ANYMENTAL_SUICID"]["INCLUDE"] == "KRA_PSY_ANYMENTAL"
    assert table["MIGRAINE_TRIPTAN"]["CONDITIONS"] == "MIGRAINE&TRIPTAN"
    assert_checks_clean(result)
