"""`attrition`: people per step on a hand-computed example, masking, and agreement with
the engines' counts on the spec cases."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

SPEC = Path(__file__).resolve().parent / "spec"
if str(SPEC) not in sys.path:
    sys.path.insert(0, str(SPEC))

from casefile import EVENT_COLUMNS, PEOPLE_COLUMNS, parse_table, read_case  # noqa: E402

from endpointc.attrition import COUNT_COLUMNS, attrition, attrition_counts  # noqa: E402
from endpointc.compiler import compile_text  # noqa: E402
from endpointc.engine.polars import evaluate  # noqa: E402
from endpointc.engine.reference import counts_reference, evaluate_reference  # noqa: E402
from endpointc.masking import suppress  # noqa: E402

DEFINITION = """
endpoint B { hospital icd10 E10 }
endpoint C { cancer topography C25 }
endpoint D { death icd10 X99 }
endpoint A {
  hospital main icd10 E11 except E119
  purchase min 2 needs other atc A10B
  include C
  when age < 60
  require not B
  sex female
  controls {
    exclude D
    require not B
  }
}
"""

# P1..P21; odd numbers are female. The comment on each person says what they show.
EVENTS = """
FINNGENID SOURCE EVENT_AGE CODE1   ICDVER CATEGORY
P1        INPAT  50.0      E110    10     0
P3        INPAT  50.0      E119    10     0
P5        INPAT  50.0      E110    10     1
P7        INPAT  65.0      E110    10     0
P9        PURCH  40.0      A10BA02 NA     NA
P9        PURCH  41.0      A10BA02 NA     NA
P9        INPAT  45.0      E110    10     0
P11       PURCH  40.0      A10BA02 NA     NA
P11       PURCH  41.0      A10BA02 NA     NA
P13       PURCH  40.0      A10BA02 NA     NA
P13       INPAT  45.0      E110    10     0
P2        INPAT  50.0      E110    10     0
P15       INPAT  50.0      E110    10     0
P15       INPAT  30.0      E10     10     0
P17       CANC   55.0      C25     NA     NA
P19       CANC   70.0      C25     NA     NA
P4        INPAT  50.0      E10     10     0
P6        DEATH  50.0      X99     10     U
P21       DEATH  50.0      X99     10     U
"""
# P3: except; P5: main; P7: when; P11: needs other; P13: min (but a case by rule 1);
# P2: male; P15: require (B); P17: included from C; P19: included event fails when;
# P4 (male, B), P6 (male, D), P21 (female, D): control exclusions.

# (SIDE, RULE, STEP, N_PEOPLE, N_ADDED_BACK), worked out by hand from the comments above.
EXPECTED = [
    ("cases", None, "population", 21, None),
    ("cases", None, "sex female", 11, 1),                                   # P2
    ("cases", 1, "rule 1 (hospital): events by pattern", 7, None),         # P1 P3 P5 P7 P9 P13 P15
    ("cases", 1, "rule 1 (hospital): after except, main", 5, 2),            # -P3 -P5
    ("cases", 1, "rule 1 (hospital): after when", 4, 2),                    # -P7; without when: P7, P19
    ("cases", 2, "rule 2 (purchase): events by pattern", 3, None),          # P9 P11 P13
    ("cases", 2, "rule 2 (purchase): after when", 3, 2),
    ("cases", 2, "rule 2 (purchase): after min 2, needs other", 1, 1),      # P9; P11 added back
    ("cases", None, "all rules", 4, None),                                  # P1 P9 P13 P15
    ("cases", None, "include C", 5, None),                                  # + P17
    ("cases", None, "require", 4, 1),                                       # - P15
    ("cases", None, "cases", 4, None),
    ("controls", None, "controls before control rules", 17, None),
    ("controls", None, "after sex female", 7, 8),                           # 10 males, 8 only for sex
    ("controls", None, "after exclude D", 6, 1),                            # P21
    ("controls", None, "after controls require", 5, 1),                     # P15
    ("controls", None, "controls", 5, None),
]


@pytest.fixture(scope="module")
def example():
    program, diagnostics = compile_text(DEFINITION)
    assert program is not None, diagnostics
    events = parse_table(EVENTS, EVENT_COLUMNS, fill=True)
    people = pl.DataFrame({
        "FINNGENID": [f"P{i}" for i in range(1, 22)],
        "SEX": ["female" if i % 2 else "male" for i in range(1, 22)],
        "APPROX_BIRTH_DATE": [None] * 21, "FU_END_AGE": [70.0] * 21, "DEATH": [0] * 21,
    }, schema=PEOPLE_COLUMNS)
    return program, events, people


def test_hand_computed_example(example):
    program, events, people = example
    table = attrition(program, events.lazy(), people.lazy(), endpoint="A", mask_threshold=None)
    assert table.columns == ["ENDPOINT", "SIDE", "RULE", "STEP", "N_PEOPLE", "N_ADDED_BACK"]
    assert table["ENDPOINT"].unique().to_list() == ["A"]
    assert table.select("SIDE", "RULE", "STEP", "N_PEOPLE", "N_ADDED_BACK").rows() == EXPECTED


def test_final_counts_are_the_engines(example):
    program, events, people = example
    table = attrition(program, events.lazy(), people.lazy(), endpoint="A", mask_threshold=None)
    counts = evaluate(program, events.lazy(), people.lazy(), endpoints=["A"]).counts.collect().row(0, named=True)
    steps = {(r["SIDE"], r["STEP"]): r["N_PEOPLE"] for r in table.to_dicts()}
    assert steps[("cases", "cases")] == counts["N_CASES"]
    assert steps[("controls", "controls")] == counts["N_CONTROLS"]


def test_masking_on_by_default(example):
    program, events, people = example
    masked = attrition(program, events.lazy(), people.lazy(), endpoint="A")
    plain = attrition(program, events.lazy(), people.lazy(), endpoint="A", mask_threshold=None)
    assert masked.schema["N_PEOPLE"] == pl.String
    secondary = []
    for step, m_people, m_added, p_people, p_added in zip(
            masked["STEP"], masked["N_PEOPLE"], masked["N_ADDED_BACK"], plain["N_PEOPLE"], plain["N_ADDED_BACK"]):
        for shown, value in ((m_people, p_people), (m_added, p_added)):
            if value is None:
                assert shown is None
            elif 1 <= value <= 4:
                assert shown == "<5"
            elif shown == "masked":
                secondary.append((step, value))
            else:
                assert shown == str(value)
    shown = dict(zip(masked["STEP"], masked["N_PEOPLE"]))
    assert shown["population"] == "21" and shown["cases"] == "<5" and shown["controls"] == "5"
    # 21 - cases, 11 women - cases, and 5 controls + 1 kept out by the last step
    assert secondary == [("controls before control rules", 17), ("after sex female", 7), ("after exclude D", 6)]
    tighter = attrition(program, events.lazy(), people.lazy(), endpoint="A", mask_threshold=10)
    assert dict(zip(tighter["STEP"], tighter["N_PEOPLE"]))["controls"] == "<10"


def test_unknown_endpoint(example):
    program, events, people = example
    with pytest.raises(KeyError):
        attrition(program, events.lazy(), people.lazy(), endpoint="NOPE")


def _steps(definition: str, events: str, n_people: int, endpoint: str) -> list[tuple]:
    """(SIDE, RULE, STEP, N_PEOPLE, N_ADDED_BACK) of an endpoint on a tiny table, unmasked."""
    program, diagnostics = compile_text(definition)
    assert program is not None, diagnostics
    people = pl.DataFrame({
        "FINNGENID": [f"P{i}" for i in range(1, n_people + 1)], "SEX": ["female"] * n_people,
        "APPROX_BIRTH_DATE": [None] * n_people, "FU_END_AGE": [90.0] * n_people, "DEATH": [0] * n_people,
    }, schema=PEOPLE_COLUMNS)
    table = attrition(program, parse_table(events, EVENT_COLUMNS, fill=True).lazy(), people.lazy(),
                      endpoint=endpoint, mask_threshold=None)
    return table.select("SIDE", "RULE", "STEP", "N_PEOPLE", "N_ADDED_BACK").rows()


SPACED = """
endpoint A {
  hospital min 2 apart 30 days icd10 E11
  purchase min 3 within 1 year needs other atc A10
}
"""
SPACED_EVENTS = """
FINNGENID SOURCE EVENT_AGE APPROX_EVENT_DAY CODE1   ICDVER
P1        INPAT  40.0      2000-01-01       E11     10
P1        INPAT  40.1      2000-01-31       E11     10
P2        INPAT  40.0      2000-01-01       E11     10
P2        INPAT  40.1      2000-01-30       E11     10
P3        INPAT  40.0      2000-01-01       E11     10
P4        INPAT  40.0      2000-01-01       E11     10
P4        INPAT  41.0      NA               E11     10
P5        INPAT  40.0      2000-01-01       E11     10
P5        INPAT  40.1      2000-02-15       E11     10
P5        PURCH  41.0      2001-01-01       A10BA02 NA
P5        PURCH  41.4      2001-06-01       A10BA02 NA
P5        PURCH  42.0      2001-12-31       A10BA02 NA
P6        INPAT  40.0      2000-01-01       E11     10
P6        INPAT  40.1      2000-01-31       E11     10
P6        PURCH  41.0      2001-01-01       A10BA02 NA
P6        PURCH  41.4      2001-06-01       A10BA02 NA
P6        PURCH  42.0      2002-01-02       A10BA02 NA
P7        PURCH  41.0      2001-01-01       A10BA02 NA
P7        PURCH  41.4      2001-06-01       A10BA02 NA
P7        PURCH  42.0      2001-12-31       A10BA02 NA
P8        INPAT  40.0      2000-01-01       E11     10
P8        PURCH  41.0      2001-01-01       A10BA02 NA
P8        PURCH  41.4      2001-06-01       A10BA02 NA
P8        PURCH  42.0      2002-01-02       A10BA02 NA
"""
# P1: 30 days apart; P2: 29 days; P3: one event; P4: one dated event; P5: both rules (45
# days apart, three purchases in 365 days); P6: purchases over 366 days, a case by rule 1;
# P7: purchases alone (needs other); P8: purchases over 366 days and one hospital event.
# Cases: P1, P5, P6.
SPACED_EXPECTED = [
    ("cases", None, "population", 8, None),
    ("cases", 1, "rule 1 (hospital): events by pattern", 7, None),              # all but P7
    ("cases", 1, "rule 1 (hospital): after min 2", 5, 4),                        # P1 P2 P4 P5 P6; min 1: +P2 P3 P4 P8
    ("cases", 1, "rule 1 (hospital): after min 2 apart 30 days", 3, 2),          # P1 P5 P6; plain min 2: +P2 P4
    ("cases", 2, "rule 2 (purchase): events by pattern", 4, None),               # P5 P6 P7 P8
    ("cases", 2, "rule 2 (purchase): after min 3, needs other", 2, 2),           # P5 P6; min 1: +P7 P8
    ("cases", 2, "rule 2 (purchase): after min 3 within 1 year", 1, 0),          # P5; plain min 3: P6 already
    ("cases", None, "all rules", 3, None),
    ("cases", None, "cases", 3, None),
    ("controls", None, "controls before control rules", 5, None),
    ("controls", None, "controls", 5, None),
]


def test_spaced_and_clustered_min_are_steps():
    assert _steps(SPACED, SPACED_EVENTS, 8, "A") == SPACED_EXPECTED


RELATED = """
endpoint MI { hospital icd10 I21 }
endpoint AF { hospital icd10 I48 }
endpoint HF { hospital icd10 I50 }
endpoint A {
  hospital icd10 I50
  when within 1 year after MI and age < 70 and before AF
}
endpoint B {
  include HF
  when within 1 year after MI
}
"""
RELATED_EVENTS = """
FINNGENID SOURCE EVENT_AGE APPROX_EVENT_DAY CODE1 ICDVER
P1        INPAT  50.0      2000-01-01       I21   10
P1        INPAT  55.0      2005-01-01       I48   10
P1        INPAT  50.4      2000-06-01       I50   10
P2        INPAT  50.0      2000-01-01       I21   10
P2        INPAT  55.0      2005-01-01       I48   10
P2        INPAT  52.0      2002-01-01       I50   10
P3        INPAT  50.0      2000-01-01       I21   10
P3        INPAT  50.2      2000-03-01       I48   10
P3        INPAT  50.4      2000-06-01       I50   10
P4        INPAT  70.0      2000-01-01       I21   10
P4        INPAT  75.0      2005-01-01       I48   10
P4        INPAT  70.4      2000-06-01       I50   10
P5        INPAT  50.4      2000-06-01       I50   10
P6        INPAT  50.0      2000-01-01       I21   10
"""
# P1: every condition holds; P2: heart failure two years after MI; P3: after AF; P4: at 70;
# P5: no MI and no AF; P6: MI only.
RELATED_EXPECTED = {
    "A": [
        ("cases", None, "population", 6, None),
        ("cases", 1, "rule 1 (hospital): events by pattern", 5, None),
        ("cases", 1, "rule 1 (hospital): after within 1 year after MI", 3, 1),   # P1 P3 P4; without it: +P2
        ("cases", 1, "rule 1 (hospital): after before AF", 2, 1),                 # P1 P4; without it: +P3
        ("cases", 1, "rule 1 (hospital): after when", 1, 4),                      # P1; without when: +P2 P3 P4 P5
        ("cases", None, "all rules", 1, None),
        ("cases", None, "cases", 1, None),
        ("controls", None, "controls before control rules", 5, None),
        ("controls", None, "controls", 5, None),
    ],
    # a `when` that is one relation: its row is the `when` row
    "B": [
        ("cases", None, "population", 6, None),
        ("cases", None, "include HF: case events", 5, None),
        ("cases", None, "include HF: after within 1 year after MI", 3, 2),         # P1 P3 P4; without it: +P2 P5
        ("cases", None, "include HF", 3, None),
        ("cases", None, "cases", 3, None),
        ("controls", None, "controls before control rules", 3, None),
        ("controls", None, "controls", 3, None),
    ],
}


@pytest.mark.parametrize("endpoint", ["A", "B"])
def test_time_relations_of_when_are_steps(endpoint):
    assert _steps(RELATED, RELATED_EVENTS, 6, endpoint) == RELATED_EXPECTED[endpoint]


def test_own_facts_in_require_follow_each_variant():
    # Without `when`, P2's events at 39 and 41 make X.count 2: P2 is added back.
    definition = "endpoint X {\n  hospital icd10 I21\n  when age >= 40\n  require X.count >= 2\n}"
    events = """
FINNGENID SOURCE EVENT_AGE CODE1 ICDVER
P1        INPAT  39.0      I21   10
P1        INPAT  41.0      I21   10
P1        INPAT  42.0      I21   10
P2        INPAT  39.0      I21   10
P2        INPAT  41.0      I21   10
"""
    steps = {step: (people, back) for _, _, step, people, back in _steps(definition, events, 2, "X")}
    assert steps["rule 1 (hospital): after when"] == (2, 1)
    assert steps["require"] == (1, 1)


CASE_FILES = sorted(SPEC.glob("*/*.case"))


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_spec_cases_agree_with_the_reference(path: Path):
    """The last endpoint of each spec case: cases and controls match the reference engine,
    the cumulative control steps end at the controls, and removing a filter never loses people."""
    case = read_case(path)
    if case.error is not None:
        pytest.skip("an error case")
    program, _ = compile_text(case.definition)
    name = (case.endpoints or program.names)[-1]
    long = evaluate_reference(program, case.events, case.people)
    counts = counts_reference(long, case.people, endpoints=[name]).filter(pl.col("ENDPOINT") == name).row(0)
    table, relations = attrition_counts(program, case.events.lazy(), case.people.lazy(), endpoint=name)
    # what the masking assumes the steps imply holds on every case (suppress checks it)
    suppress({(i, c): n for c in COUNT_COLUMNS for i, n in enumerate(table[c]) if n is not None}, relations)
    steps = {(r["SIDE"], r["STEP"]): r["N_PEOPLE"] for r in table.to_dicts()}
    assert steps[("cases", "cases")] == counts[1]
    assert steps[("controls", "controls")] == counts[2]
    controls = table.filter(pl.col("SIDE") == "controls")["N_PEOPLE"].to_list()
    assert controls[-2] == controls[-1]
    assert controls == sorted(controls, reverse=True)
    assert table["N_ADDED_BACK"].drop_nulls().min() is None or table["N_ADDED_BACK"].drop_nulls().min() >= 0
    for rule in table["RULE"].drop_nulls().unique():
        per_rule = table.filter(pl.col("RULE") == rule)["N_PEOPLE"].to_list()
        assert per_rule == sorted(per_rule, reverse=True)


def test_cli(example, tmp_path: Path):
    from endpointc.cli import app

    program, events, people = example
    (tmp_path / "defs.ep").write_text(DEFINITION)
    events.write_csv(tmp_path / "events.tsv", separator="\t", null_value="NA")
    people.write_csv(tmp_path / "people.tsv", separator="\t", null_value="NA")
    base = ["attrition", str(tmp_path / "defs.ep"), "--events", str(tmp_path / "events.tsv"),
            "--people", str(tmp_path / "people.tsv"), "--endpoint", "A"]
    runner = CliRunner()
    out = tmp_path / "attrition.tsv"
    result = runner.invoke(app, [*base, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "--no-mask" not in result.stderr
    written = pl.read_csv(out, separator="\t", null_values="NA", infer_schema=False)
    assert written.columns == ["ENDPOINT", "SIDE", "RULE", "STEP", "N_PEOPLE", "N_ADDED_BACK"]
    assert dict(zip(written["STEP"], written["N_PEOPLE"]))["cases"] == "<5"
    assert not list(tmp_path.glob(".*.tmp"))
    result = runner.invoke(app, [*base, "--no-mask", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: --no-mask" in result.stderr
    written = pl.read_csv(out, separator="\t", null_values="NA", infer_schema=False)
    assert dict(zip(written["STEP"], written["N_PEOPLE"]))["cases"] == "4"
    assert runner.invoke(app, [*base[:-1], "NOPE"]).exit_code == 2
