"""`explain_person`: the verdict lines on tiny tables, and agreement with the engines.

Tables are written in the spec case format (tests/spec/casefile.py); every expected line
was written by hand from the evaluation steps of docs/language.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

SPEC = Path(__file__).resolve().parent / "spec"
if str(SPEC) not in sys.path:
    sys.path.insert(0, str(SPEC))

from casefile import (  # noqa: E402
    DEFAULT_PEOPLE, DEFAULT_PEOPLE_TEXT, EVENT_COLUMNS, OPTIONAL_EVENT_COLUMNS, PEOPLE_COLUMNS, parse_table, read_case,
)

from endpointc.compiler import compile_text  # noqa: E402
from endpointc.engine.reference import evaluate_reference  # noqa: E402
from endpointc.explain import (  # noqa: E402
    INDIVIDUAL_DATA_HEADER, ExplainError, explain_person, format_explanation,
)


def _events(text: str) -> pl.DataFrame:
    return parse_table(text, EVENT_COLUMNS, optional=OPTIONAL_EVENT_COLUMNS, fill=True)


def _explain(definition: str, events: str, person: str, endpoint: str, people: pl.DataFrame = DEFAULT_PEOPLE):
    program, diagnostics = compile_text(definition)
    assert program is not None, diagnostics
    return explain_person(program, _events(events), people, person=person, endpoint=endpoint)


def _reasons(expl, title_start: str) -> list[str]:
    step = next(s for s in expl.steps if s.title.startswith(title_start))
    return [e.reason for e in step.events]


def _notes(expl, title_start: str) -> tuple[str, ...]:
    return next(s for s in expl.steps if s.title.startswith(title_start)).notes


def test_pattern_except_main_and_vocabulary():
    expl = _explain(
        "endpoint A { hospital main icd10 E11 except E119 }",
        """
        FINNGENID SOURCE EVENT_AGE CODE1 ICDVER CATEGORY
        P1        INPAT  50.0      E110  10     0
        P1        INPAT  51.0      E119  10     0
        P1        OUTPAT 52.0      E111  10     1
        P1        INPAT  53.0      I10   10     0
        P1        INPAT  54.0      E110  9      0
        P1        DEATH  55.0      E110  10     U
        """, "P1", "A")
    assert _reasons(expl, "step 1, rule 1") == [
        "kept: matched pattern E11 (main)",
        "discarded: except E119",
        "discarded: main (CATEGORY is 1)",
        "discarded: pattern did not match",
        "discarded: pattern did not match",  # ICD-9 row: icd10 addresses ICDVER 10 only
    ]
    # The DEATH row is of no source of the rule: not listed.
    assert [e.row for e in expl.steps[0].events] == [0, 1, 2, 3, 4]
    assert (expl.status, expl.age, expl.nevt) == ("case", 50.0, 1)


def test_with_atc_and_combination_except():
    expl = _explain(
        "endpoint A { hospital with atc icd10 T88 except T887&Y57 }",
        """
        FINNGENID SOURCE EVENT_AGE CODE1 CODE2 CODE3   ICDVER
        P1        INPAT  50.0      T881  NA    N02BE01 10
        P1        INPAT  51.0      T882  NA    NA      10
        P1        INPAT  52.0      T887  Y571  L01     10
        """, "P1", "A")
    assert _reasons(expl, "step 1, rule 1") == [
        "kept: matched pattern T88 (with atc)",
        "discarded: with atc (CODE3 is empty)",
        "discarded: except T887&Y57",
    ]


def test_when_with_values_and_year():
    expl = _explain(
        "endpoint A { hospital icd10 I21  when age < 40 and year >= 2000 }",
        """
        FINNGENID SOURCE EVENT_AGE APPROX_EVENT_DAY CODE1 ICDVER
        P2        INPAT  30.0      2001-05-01       I21   10
        P2        INPAT  45.0      2010-05-01       I21   10
        P2        INPAT  35.0      NA               I21   10
        """, "P2", "A")
    assert _reasons(expl, "step 1, rule 1") == [
        "kept: matched pattern I21; when age < 40 and year >= 2000 holds (age = 30.0, year = 2001)",
        "discarded: when age < 40 and year >= 2000 is false (age = 35.0, year = missing)",
        "discarded: when age < 40 and year >= 2000 is false (age = 45.0, year = 2010)",
    ]
    assert (expl.status, expl.age, expl.year, expl.nevt) == ("case", 30.0, 2001, 1)


def test_emergency_reads_the_visit():
    expl = _explain(
        "endpoint A { hospital icd10 I21  when emergency }",
        """
        FINNGENID SOURCE EVENT_AGE CODE1 ICDVER INDEX CODE9
        P1        INPAT  50.0      I21   10     V1    NA
        P1        INPAT  50.0      Z00   10     V1    1
        P1        INPAT  60.0      I21   10     V2    0
        """, "P1", "A")
    assert _reasons(expl, "step 1, rule 1") == [
        "kept: matched pattern I21; when emergency holds (emergency = yes)",
        "discarded: pattern did not match",
        "discarded: when emergency is false (emergency = no)",
    ]


def test_min_not_reached_and_reached():
    definition = "endpoint A { hospital min 2 icd10 E11 }"
    events = """
        FINNGENID SOURCE EVENT_AGE CODE1 ICDVER
        P1        INPAT  50.0      E11   10
        P2        INPAT  50.0      E11   10
        P2        INPAT  52.0      E11   10
        P2        INPAT  51.0      E11   10
        """
    one = _explain(definition, events, "P1", "A")
    assert "rule 1 (hospital): min 2 not reached (1 of 2): its 1 event dropped" in _notes(one, "step 2")
    assert one.status == "control"
    three = _explain(definition, events, "P2", "A")
    assert "rule 1 (hospital): min 2 reached (3 of 2)" in _notes(three, "step 2")
    assert (three.status, three.nevt) == ("case", 3)


def test_needs_other():
    definition = """endpoint X {
      hospital icd10 E11
      purchase single needs other atc A10B
    }"""
    events = """
        FINNGENID SOURCE EVENT_AGE CODE1   ICDVER
        P1        PURCH  45.0      A10BA02 NA
        P1        INPAT  50.0      E11     10
        P2        PURCH  46.0      A10BA02 NA
        """
    alone = _explain(definition, events, "P2", "X")
    assert ("rule 2 (purchase): needs other without another rule (no other rule kept an event): "
            "its 1 event dropped") in _notes(alone, "step 2")
    assert alone.status == "control"
    helped = _explain(definition, events, "P1", "X")
    assert "rule 2 (purchase): needs other: rule 1 kept events, so its events count" in _notes(helped, "step 2")
    assert (helped.status, helped.nevt) == ("case", 2)


def test_mode():
    expl = _explain(
        "endpoint X { hospital mode icd10 E11 }",
        """
        FINNGENID SOURCE EVENT_AGE CODE1 ICDVER
        P1        INPAT  50.0      E110  10
        P1        INPAT  51.0      E110  10
        P1        INPAT  49.0      E111  10
        """, "P1", "X")
    assert _reasons(expl, "step 1, rule 1") == [
        "discarded: mode: E111 is 1 of 3 events among codes E11x, not above one half",
        "kept: matched pattern E11; mode: E110 is 2 of 3 events among codes E11x",
        "kept: matched pattern E11; mode: E110 is 2 of 3 events among codes E11x",
    ]


def test_include_is_explained_recursively_and_filtered_by_when():
    definition = """
    endpoint A { hospital icd10 I21 }
    endpoint B {
      include A
      death icd10 I21
      when age < 60
    }"""
    events = """
        FINNGENID SOURCE EVENT_AGE CODE1 ICDVER
        P1        INPAT  50.0      I21   10
        P1        INPAT  70.0      I21   10
        P1        DEATH  50.0      I10   10
        P2        DEATH  55.0      I21   10
        """
    expl = _explain(definition, events, "P1", "B")
    step = next(s for s in expl.steps if s.title == "step 3, include A")
    assert step.notes == ("the person is a case of A with 2 events; its events:",)
    assert [e.reason for e in step.events] == ["kept: when age < 60 holds (age = 50.0)",
                                              "discarded: when age < 60 is false (age = 70.0)"]
    (inner,) = step.included
    assert (inner.endpoint, inner.status, inner.nevt) == ("A", "case", 2)
    assert _reasons(inner, "step 1, rule 1") == ["kept: matched pattern I21", "kept: matched pattern I21"]
    assert (expl.status, expl.nevt) == ("case", 1)
    other = _explain(definition, events, "P2", "B")
    step = next(s for s in other.steps if s.title == "step 3, include A")
    assert step.notes == ("the person is not a case of A (control): it adds no events",)
    text = format_explanation(expl)
    assert "    why A:" in text and "      P1 for A: case" in text


def test_require_shows_values():
    definition = """
    endpoint E4_DM1 { hospital icd10 E10 }
    endpoint K { hospital icd10 K50 }
    endpoint X {
      hospital icd10 E11
      require not E4_DM1 and K.count > 1
    }"""
    events = """
        FINNGENID SOURCE EVENT_AGE CODE1 ICDVER
        P1        INPAT  50.0      E11   10
        P1        INPAT  40.0      K50   10
        P1        INPAT  41.0      K50   10
        P2        INPAT  50.0      E11   10
        P2        INPAT  30.0      E10   10
        P2        INPAT  41.0      K50   10
        """
    case = _explain(definition, events, "P1", "X")
    assert ("require not E4_DM1 and K.count > 1: E4_DM1 = not a case, K.count = 2: holds"
            in _notes(case, "step 4"))
    assert case.status == "case"
    failed = _explain(definition, events, "P2", "X")
    assert "require not E4_DM1 and K.count > 1: E4_DM1 = case, K.count = 1: fails" in _notes(failed, "step 4")
    assert failed.status == "control"


def test_sex_and_controls():
    definition = """
    endpoint B { hospital icd10 B01 }
    endpoint R { hospital icd10 R01 }
    endpoint A {
      hospital icd10 C50
      sex female
      controls {
        exclude B
        require not R
      }
    }"""
    events = """
        FINNGENID SOURCE EVENT_AGE CODE1 ICDVER
        P1        INPAT  50.0      C50   10
        P1        INPAT  50.0      R01   10
        P2        INPAT  51.0      C50   10
        P3        INPAT  52.0      B01   10
        P5        INPAT  52.0      R01   10
        """
    male = _explain(definition, events, "P2", "A")
    assert "sex female required: the person's sex is male: not allowed" in _notes(male, "step 4")
    assert male.status == "excluded"
    assert "sex not allowed: excluded" in _notes(male, "step 6")
    case = _explain(definition, events, "P1", "A")
    assert case.status == "case"
    assert "control rules never touch cases" in _notes(case, "step 5")
    excluded = _explain(definition, events, "P3", "A")
    assert "controls exclude B: the person is a case of B: excluded" in _notes(excluded, "step 6")
    assert excluded.status == "excluded"
    failing = _explain(definition, events, "P5", "A")
    assert "controls require not R: R = case: fails: excluded" in _notes(failing, "step 6")
    control = _explain(definition, events, "P4", "A")
    assert "sex not allowed: excluded" in _notes(control, "step 6")
    female = _explain(definition, events, "P6", "A", people=parse_table(
        DEFAULT_PEOPLE_TEXT.replace("P6        male", "P6        female"), PEOPLE_COLUMNS, fill=True))
    assert female.status == "control" and female.age == 70.0 and female.nevt == 0
    assert _notes(female, "step 6")[-1] == "control: AGE 70.0 (FU_END_AGE), NEVT 0"


def test_rows_are_positions_in_the_whole_table():
    expl = _explain("endpoint A { hospital icd10 I21 }", """
        FINNGENID SOURCE EVENT_AGE CODE1 ICDVER
        P1        INPAT  50.0      I21   10
        P2        INPAT  50.0      I21   10
        P1        INPAT  40.0      I10   10
        P2        INPAT  60.0      I21   10
        """, "P2", "A")
    assert [e.row for e in expl.steps[0].events] == [1, 3]
    assert "case: AGE 50.0 (earliest event: row 1), YEAR missing, NEVT 2" in _notes(expl, "step 5")


def test_header_and_unknown_names():
    program, _ = compile_text("endpoint A { hospital icd10 I21 }")
    events = _events("FINNGENID SOURCE EVENT_AGE CODE1 ICDVER\nP1 INPAT 50.0 I21 10")
    expl = explain_person(program, events, DEFAULT_PEOPLE, person="P1", endpoint="A")
    text = format_explanation(expl)
    assert text.splitlines()[0] == INDIVIDUAL_DATA_HEADER
    assert INDIVIDUAL_DATA_HEADER not in format_explanation(expl, header=False)
    assert all(line in text for line in expl.lines)
    with pytest.raises(ExplainError, match="unknown endpoint B"):
        explain_person(program, events, DEFAULT_PEOPLE, person="P1", endpoint="B")
    with pytest.raises(ExplainError) as raised:
        explain_person(program, events, DEFAULT_PEOPLE, person="SECRET9", endpoint="A")
    assert "SECRET9" not in str(raised.value)  # never echo a person id into messages


CASE_FILES = sorted(SPEC.glob("*/*.case"))


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_agrees_with_the_reference_engine(path: Path):
    """Every spec case: each person's explained status/AGE/YEAR/NEVT is the engine's."""
    case = read_case(path)
    if case.error is not None:
        pytest.skip("an error case")
    program, _ = compile_text(case.definition)
    names = case.endpoints or program.names
    long = {(r["FINNGENID"], r["ENDPOINT"]): r
            for r in evaluate_reference(program, case.events, case.people).to_dicts()}
    for name in names:
        for person in case.people["FINNGENID"]:
            expl = explain_person(program, case.events, case.people, person=person, endpoint=name)
            fact = long.get((person, name))
            if fact is None:
                assert expl.status == "control"
            else:
                assert (expl.status, expl.age, expl.year, expl.nevt) == (
                    fact["STATUS"], fact["AGE"], fact["YEAR"], fact["NEVT"])


def test_cli(tmp_path: Path):
    from endpointc.cli import app

    (tmp_path / "defs.ep").write_text("endpoint A { hospital icd10 I21 }")
    _events("FINNGENID SOURCE EVENT_AGE CODE1 ICDVER\nP1 INPAT 50.0 I21 10\nP2 INPAT 51.0 I10 10").write_csv(
        tmp_path / "events.tsv", separator="\t", null_value="NA")
    DEFAULT_PEOPLE.write_csv(tmp_path / "people.tsv", separator="\t", null_value="NA")
    base = [str(tmp_path / "defs.ep"), "--events", str(tmp_path / "events.tsv"),
            "--people", str(tmp_path / "people.tsv")]
    runner = CliRunner()
    result = runner.invoke(app, ["explain", *base, "--person", "P1", "--endpoint", "A"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == INDIVIDUAL_DATA_HEADER
    assert "row 0: INPAT age 50.0 CODE1=I21 ICDVER=10 -> kept: matched pattern I21" in result.stdout
    assert runner.invoke(app, ["explain", *base, "--person", "P9", "--endpoint", "A"]).exit_code == 2
    assert runner.invoke(app, ["explain", *base, "--person", "P1", "--endpoint", "Z"]).exit_code == 2
