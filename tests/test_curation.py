"""Curation rule sets (endpointc/curation.py) on small hand-made libraries: each FinnGen rule
fires where the library breaks it and stays quiet where it does not; the project
configuration (endpointc/config.py) that selects rule sets; `check --rules`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from endpointc.check import check
from endpointc.cli import app
from endpointc.compiler import compile_files, compile_text
from endpointc.config import Config, ConfigError, load_config, read_config
from endpointc.curation import CODES
from endpointc.parser import parse


def findings(text: str) -> list[tuple[str, str]]:
    """(code, message) of every curation finding (EP8xx) of a one-file library."""
    tree, diags = parse(text, name="lib.ep")
    assert tree is not None, diags
    return [(d.code, d.message) for d in check([tree], rules=("finngen",))[1] if d.code.startswith("EP8")]


def codes(text: str) -> list[str]:
    return [code for code, _ in findings(text)]


# Endpoints that satisfy every rule, to build the cases on.
HEART = "endpoint I9_MI { hospital icd10 I21  death icd10 I21 }\n"
CANCERS = """
endpoint C3_CANCER { include C3_LUNG }
endpoint C3_CANCER_WIDE { include C3_LUNG_WIDE }
endpoint C3_LUNG { cancer topography C34  behaviour 3 }
endpoint C3_LUNG_WIDE { cancer topography C34  behaviour 3  hospital icd10 C34  death icd10 C34 }
"""


def test_a_curated_library_has_no_findings():
    assert findings(HEART + CANCERS) == []


def test_rules_run_only_when_selected():
    tree, _ = parse("endpoint A_COMORB { hospital icd10 I21 }", name="x.ep")
    assert check([tree])[1] == ()
    assert [d.code for d in check([tree], rules=("finngen",))[1]] == ["EP802", "EP811"]


def test_unknown_rule_set_is_refused():
    tree, _ = parse(HEART, name="x.ep")
    with pytest.raises(ValueError, match="unknown rule set fingen"):
        check([tree], rules=("fingen",))


def test_include_listed_twice():
    assert codes(HEART + "endpoint B { include I9_MI\n include I9_MI }") == ["EP801"]
    assert codes(HEART + "endpoint B { include I9_MI, I9_MI }") == ["EP801"]
    assert codes(HEART + "endpoint C { include I9_MI }\nendpoint B { include I9_MI, C }") == []


def test_missing_includes_are_the_checkers_each_one_flagged():
    tree, _ = parse(HEART + "endpoint B { include I9_MI, NOPE1, NOPE2 }", name="x.ep")
    diags = check([tree], rules=("finngen",))[1]
    assert [(d.code, d.message) for d in diags] == [
        ("EP201", "unknown endpoint NOPE1 (included by B)"), ("EP201", "unknown endpoint NOPE2 (included by B)")]


@pytest.mark.parametrize("omit, fires", [("", True), ("omit 1", True), ("omit 2", False)])
def test_comorb_must_be_omit_2(omit, fires):
    text = f"endpoint DM_COMORB {{ {omit}  hospital icd10 E11  death icd10 E11 }}"
    assert codes(text) == (["EP802"] if fires else [])


def test_comorb_anywhere_in_the_name():
    assert codes("endpoint ASTHMA_CVDMETABOCOMORB { hospital icd10 J45  death icd10 J45 }") == ["EP802"]
    assert codes("endpoint COMORBIDITY_X { omit 2  hospital icd10 J45  death icd10 J45 }") == []


def test_omit_2_included_directly_and_through_others():
    text = HEART.replace("{", "{ omit 2 ") + """
endpoint A { include I9_MI }
endpoint B { include A }
endpoint C { omit 2  include I9_MI }
endpoint D { omit 1  include B }
"""
    found = findings(text)
    assert found == [
        ("EP803", "A is not omit 2 but includes I9_MI, which is omit 2"),
        ("EP803", "B is not omit 2 but includes A, which includes omit 2 endpoint I9_MI (A -> I9_MI)"),
        ("EP803", "D is not omit 2 but includes B, which includes omit 2 endpoint I9_MI (B -> A -> I9_MI)"),
    ]


def test_every_basic_c3_in_c3_cancer():
    assert codes(CANCERS + "endpoint C3_BREAST { cancer topography C50 }") == ["EP804"]
    # Reached through another endpoint: fine; C3_CANCER itself and the _WIDE ones are not asked.
    assert codes(CANCERS.replace("include C3_LUNG }", "include C3_LUNG, GROUP }")
                 + "endpoint GROUP { include C3_BREAST }\nendpoint C3_BREAST { cancer topography C50 }") == []
    found = findings("endpoint C3_BREAST { cancer topography C50 }")
    assert found == [("EP804", "C3_BREAST is not reached through the includes of C3_CANCER")]


def test_c3_cancer_wide_holds_exactly_the_wide_ones():
    extra = CANCERS.replace("include C3_LUNG_WIDE }", "include C3_LUNG_WIDE, C3_LUNG }")
    assert findings(extra) == [
        ("EP805", "C3_LUNG is in the include tree of C3_CANCER_WIDE but is not a C3_..._WIDE endpoint")]
    missing = CANCERS + """
endpoint C3_BREAST { cancer topography C50 }
endpoint C3_BREAST_WIDE { cancer topography C50  hospital icd10 C50  death icd10 C50 }
"""
    assert findings(missing.replace("include C3_LUNG }", "include C3_LUNG, C3_BREAST }")) == [
        ("EP805", "C3_BREAST_WIDE is not reached through the includes of C3_CANCER_WIDE")]


def test_wide_needs_its_basic_endpoint():
    text = CANCERS + "endpoint C3_BREAST_WIDE { cancer topography C50  hospital icd10 C50  death icd10 C50 }"
    text = text.replace("include C3_LUNG_WIDE }", "include C3_LUNG_WIDE, C3_BREAST_WIDE }")
    assert findings(text) == [("EP806", "C3_BREAST_WIDE has no basic endpoint C3_BREAST")]


def test_wide_and_basic_same_cancer_rule_as_sets():
    assert codes(CANCERS.replace("C34  behaviour 3  hospital", "C34 | C33  behaviour 3  hospital")) == ["EP807"]
    assert codes(CANCERS.replace("behaviour 3  hospital", "hospital")) == ["EP807"]
    # The order of the patterns is not a difference.
    same = CANCERS.replace("topography C34  behaviour 3 }", "topography C33 | C34  behaviour 3 }")
    assert codes(same.replace("C34  behaviour 3  hospital", "C34 | C33  behaviour 3  hospital")) == []


def test_wide_and_basic_same_controls():
    text = CANCERS + HEART
    different = text.replace("C34  behaviour 3 }", "C34  behaviour 3  controls { exclude I9_MI } }")
    assert codes(different) == ["EP808"]
    same = different.replace("death icd10 C34 }", "death icd10 C34  controls { exclude I9_MI } }")
    assert codes(same) == []


def test_wide_has_a_hospital_rule_in_its_tree_basic_none():
    no_hospital = CANCERS.replace("hospital icd10 C34  death icd10 C34", "")
    assert sorted(codes(no_hospital)) == ["EP809", "EP809"]  # C3_LUNG_WIDE, and so C3_CANCER_WIDE
    through_include = no_hospital.replace("C3_LUNG_WIDE { cancer", "C3_LUNG_WIDE { include I9_MI  cancer") + HEART
    # A hospital rule in an include counts (that the include is no _WIDE endpoint is EP805's).
    assert codes(through_include) == ["EP805"]
    assert findings(CANCERS.replace("C3_LUNG { cancer topography C34", "C3_LUNG { hospital icd10 C34  "
                                    "death icd10 C34  cancer topography C34")) == [
        ("EP810", "C3_CANCER has a hospital rule (in C3_LUNG, through C3_CANCER -> C3_LUNG), but hospital "
                  "diagnoses belong in C3_CANCER_WIDE only"),
        ("EP810", "C3_LUNG has a hospital rule, but hospital diagnoses belong in C3_LUNG_WIDE only"),
    ]
    # `none` ($!$ in FinnGen) is no hospital definition.
    assert codes(CANCERS.replace("C3_LUNG { cancer", "C3_LUNG { hospital icd10 none  death icd10 none  cancer")) == []


def test_hospital_and_death_list_the_same_icd_patterns():
    assert codes("endpoint A { hospital icd10 I21 | I22  death icd10 I22 | I21 }") == []
    assert findings("endpoint A { hospital icd10 I21  icd9 410  death icd10 I21 }") == [
        ("EP811", "the hospital and death rules of A list different ICD patterns: icd9 410 only in hospital")]
    assert findings("endpoint A { hospital icd10 I2 except I20  death icd10 I2 }") == [
        ("EP811", "the hospital and death rules of A list different ICD patterns: icd10 except I20 only in hospital")]
    assert codes("endpoint A { death icd10 I21 }") == ["EP811"]
    assert codes("endpoint A { hospital mode icd10 J45  death icd10 J45 }") == ["EP811"]
    # Options are not ICD patterns; other sources are not compared.
    assert codes("endpoint A { hospital main icd10 I21  death icd10 I21  primary icd10 I22 }") == []


def test_codelists_are_compared_by_their_patterns():
    text = "codelist MI icd10 I21 | I22\nendpoint A { hospital @MI  death icd10 I22 | I21 }"
    assert codes(text) == []


def test_allow_comment_silences_one_endpoint():
    text = """
endpoint A {
  hospital icd10 I21  # endpointc: allow EP811, EP801 (deaths are in A_DEATH)
}
endpoint B { hospital icd10 I21 }
endpoint C {
  # endpointc: allow EP801
  hospital icd10 I21
}
"""
    assert findings(text) == [
        ("EP811", "the hospital and death rules of B list different ICD patterns: icd10 I21 only in hospital"),
        ("EP811", "the hospital and death rules of C list different ICD patterns: icd10 I21 only in hospital"),
    ]
    # A comment outside the braces, or without the prefix, allows nothing.
    assert codes("# endpointc: allow EP811\nendpoint D { hospital icd10 I21 }") == ["EP811"]
    assert codes("endpoint D { hospital icd10 I21  # allow EP811\n}") == ["EP811"]


def test_curation_survives_cycles_and_unknown_names():
    text = "endpoint A { omit 2  include B }\nendpoint B { include A, C }\nendpoint C_COMORB { include NOPE }"
    tree, _ = parse(text, name="x.ep")
    diags = check([tree], rules=("finngen",))[1]
    assert {d.code for d in diags} >= {"EP206", "EP201", "EP802", "EP803"}


def test_compile_entry_points_take_rules():
    tree, _ = parse("endpoint A_COMORB { hospital icd10 I21  death icd10 I21 }", name="x.ep")
    assert compile_files([tree])[0] is not None
    program, diags = compile_files([tree], rules=("finngen",))
    assert program is None and [d.code for d in diags] == ["EP802"]
    assert compile_text("endpoint A_COMORB { hospital icd10 I21 }")[0] is not None


# -- configuration ------------------------------------------------------------------------

def test_config_found_upward_paths_relative_to_it(tmp_path):
    (tmp_path / "endpointc.toml").write_text('rules = ["finngen"]\nevents = "reg/e.parquet"\npeople = "p.tsv"\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "x.ep").write_text("")
    for start in (deep, deep / "x.ep"):
        config = load_config(start)
        assert config == Config(rules=("finngen",), events=tmp_path / "reg" / "e.parquet",
                                people=tmp_path / "p.tsv", file=tmp_path / "endpointc.toml")


def test_pyproject_table_and_precedence(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.endpointc]\nrules = "finngen"\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')  # no table: passed over
    assert load_config(inner).rules == ("finngen",)
    assert load_config(inner).file == tmp_path / "pyproject.toml"
    (inner / "endpointc.toml").write_text("rules = []\n")
    assert load_config(inner) == Config(file=inner / "endpointc.toml")


def test_no_config_is_empty(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert read_config(tmp_path / "pyproject.toml") is None
    config = load_config(tmp_path)
    assert config.file is None or tmp_path not in config.file.parents


@pytest.mark.parametrize("text, message", [
    ('rules = ["finngen"', "endpointc.toml: not valid TOML"),
    ('rule = ["finngen"]', "endpointc.toml: unknown key rule (known: rules, events, people, index)"),
    ('rules = ["fingen"]', "endpointc.toml: rules: unknown rule set 'fingen' (known: finngen)"),
    ("rules = [1]", "endpointc.toml: rules: a list of rule set names"),
    ("events = 3", "endpointc.toml: events: a file path in quotes"),
    ('people = ""', "endpointc.toml: people: a file path in quotes"),
])
def test_bad_config_names_file_and_key(tmp_path, text, message):
    (tmp_path / "endpointc.toml").write_text(text + "\n")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert str(tmp_path) in str(error.value) and message in str(error.value)


def test_bad_pyproject_table_names_the_key(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool]\nendpointc = 3\n')
    with pytest.raises(ConfigError, match="tool.endpointc must be a table"):
        load_config(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.endpointc]\nrulez = []\n')
    with pytest.raises(ConfigError, match="unknown key tool.endpointc.rulez"):
        load_config(tmp_path)


# -- command line ----------------------------------------------------------------------------

def _check(*args: str):
    return CliRunner().invoke(app, ["check", *args])


def _said(result) -> str:
    return " ".join(result.stderr.split())  # rich wraps long lines


@pytest.fixture
def project(tmp_path):
    defs = tmp_path / "definitions"
    defs.mkdir()
    (defs / "a.ep").write_text("endpoint DM_COMORB { hospital icd10 E11  death icd10 E11 }\n")
    return tmp_path


def test_cli_rules_option_and_config_default(project):
    defs = str(project / "definitions")
    assert _check(defs).exit_code == 0
    result = _check(defs, "--rules", "finngen", "--json")
    assert result.exit_code == 1
    assert [d["code"] for d in json.loads(result.stdout)["diagnostics"]] == ["EP802"]
    (project / "endpointc.toml").write_text('rules = ["finngen"]\n')
    assert _check(defs).exit_code == 1
    assert _check(defs, "--rules", "none").exit_code == 0


def test_cli_bad_rules_and_bad_config_are_usage_errors(project):
    defs = str(project / "definitions")
    result = _check(defs, "--rules", "fingen")
    assert result.exit_code == 2 and "unknown rule set fingen" in _said(result)
    (project / "endpointc.toml").write_text("rules = 3\n")
    result = _check(defs)
    assert result.exit_code == 2 and "endpointc.toml: rules: a list of rule set names" in _said(result)
    assert _check(defs, "--rules", "finngen").exit_code == 1  # an explicit choice does not read the file


def test_starter_library_has_no_curation_errors():
    result = _check(str(Path(__file__).resolve().parents[1] / "definitions"), "--rules", "finngen", "--json")
    payload = json.loads(result.stdout)
    assert result.exit_code == 0 and payload["ok"]
    assert {d["code"] for d in payload["diagnostics"]} <= {"EP804", "EP811"}


def test_every_curation_code_is_documented():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    section = docs[docs.index("## FinnGen curation rules"):]
    assert [code for code in CODES if f"| {code} |" not in section] == []
