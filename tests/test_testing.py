"""Tests inside definition files: made-up registries, verdicts on both engines, the CLI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from endpointc.cli import app
from endpointc.compiler import compile_text
from endpointc.parser import parse
from endpointc.testing import registry_of, run_tests

REPO = Path(__file__).resolve().parents[1]

TEXT = '''endpoint A { hospital main icd10 I21  death icd10 I21 }
endpoint B { primary icd10 E11  purchase atc A10 }
test "placing codes" {
  person P1 female born 1950-01-01 followed until 2020-06-30 {
    1990-03-01 INPAT icd10 I21
    1990-03-02 OUTPAT icd10 I21 CATEGORY=1 INDEX=V7
    2001-01-01 DEATH icd10 I21
    2000-05-05 PRIM_OUT icd10 E11
    2000-05-06 PURCH atc A10BA02
  }
  expect P1 case of A at 1990-03-01 nevt 2
  expect P1 case of B at 50.34 nevt 1
}
'''


def blocks(text: str = TEXT):
    tree, diagnostics = parse(text)
    assert tree is not None, diagnostics
    return tree.tests


def test_event_lines_become_rows_as_the_registers_place_them():
    events, people = registry_of(blocks()[0])
    rows = events.select("SOURCE", "CODE1", "ICDVER", "CATEGORY", "INDEX", "EVENT_AGE").rows()
    assert rows == [
        ("INPAT", "I21", "10", "0", "P1#1", 40.16),     # a hospital row is a main diagnosis
        ("OUTPAT", "I21", "10", "1", "V7", 40.16),      # unless it says otherwise
        ("DEATH", "I21", "10", "U", "P1#3", 51.0),      # a death row is the underlying cause
        ("PRIM_OUT", "E11", None, "ICD0", "P1#4", 50.34),
        ("PURCH", "A10BA02", None, None, "P1#5", 50.34),
    ]
    assert people.row(0) == ("P1", "female", dt.date(1950, 1, 1), 70.49, None)


def test_expectations_are_judged_on_both_engines():
    program, _ = compile_text(TEXT)
    verdicts = run_tests(program, blocks())
    assert [(v.engine, v.passed) for v in verdicts] == [("reference", True)] * 2 + [("polars", True)] * 2


# The Polars engine reports the first event's age, not its date: a date one day off can
# round to the same age (two decimals), and only the reference engine sees it.
@pytest.mark.parametrize("line, got, engines", [
    ("expect P1 control of A", "case at 1990-03-01 nevt 2", ["reference", "polars"]),
    ("expect P1 case of A at 1990-03-10", "case at 1990-03-01 nevt 2", ["reference", "polars"]),
    ("expect P1 case of A at 1990-03-02", "case at 1990-03-01 nevt 2", ["reference"]),
    ("expect P1 case of A nevt 3", "case at 1990-03-01 nevt 2", ["reference", "polars"]),
    ("expect P1 excluded of B", "case at 2000-05-05 nevt 1", ["reference", "polars"]),
])
def test_a_wrong_expectation_fails(line, got, engines):
    text = TEXT.replace("  expect P1 case of A at 1990-03-01 nevt 2\n", f"  {line}\n")
    program, _ = compile_text(text)
    failed = [v for v in run_tests(program, blocks(text)) if not v.passed]
    assert [v.engine for v in failed] == engines
    assert failed[0].actual.describe() == got  # the reference engine knows the first event's date


def test_cli_exit_codes_messages_and_junit(tmp_path):
    runner = CliRunner()
    good = tmp_path / "good.ep"
    good.write_text(TEXT)
    assert runner.invoke(app, ["test", str(good)]).exit_code == 0
    bad = tmp_path / "bad.ep"
    bad.write_text(TEXT.replace("nevt 2", "nevt 5"))
    junit = tmp_path / "results.xml"
    result = runner.invoke(app, ["test", str(bad), "--junit", str(junit)])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert (f"{bad}:11:3: FAIL [reference] test 'placing codes': expected P1 case of A at 1990-03-01 nevt 5, "
            "got case at 1990-03-01 nevt 2") in message
    suites = ElementTree.parse(junit).getroot()
    assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in suites] == [
        ("reference", "2", "1"), ("polars", "2", "1")]
    broken = tmp_path / "broken.ep"
    broken.write_text(TEXT.replace("of B", "of NO_SUCH"))
    assert runner.invoke(app, ["test", str(broken)]).exit_code == 2


def test_the_starter_library_passes_its_tests():
    result = CliRunner().invoke(app, ["test", str(REPO / "definitions")])
    assert result.exit_code == 0, result.stderr
    assert "all pass" in result.stderr


def test_every_starter_endpoint_has_a_test_with_a_case_and_a_non_case():
    from endpointc.parser import parse_file

    trees = [parse_file(p)[0] for p in sorted((REPO / "definitions").glob("*.ep"))]
    names = {e.name for t in trees for e in t.endpoints}
    seen: dict[str, set[str]] = {}
    for tree in trees:
        for block in tree.tests:
            for expect in block.expects:
                seen.setdefault(expect.endpoint.name, set()).add(expect.status)
    lacking = sorted(n for n in names if "case" not in seen.get(n, ()) or not seen[n] - {"case"})
    assert not lacking, lacking
