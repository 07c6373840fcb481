"""Definition-aware generation for the time constructs: relations to another endpoint's
first date, calendar windows, spaced and clustered `min`, and first dates in `require`.

Each endpoint is checked with the Polars engine on one generated registry: it has cases,
people with events of its codes who are not cases, and people whose events sit one day
past the edge of what it asks (told by a probe endpoint written for that edge).
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from endpointc.compiler import compile_text
from endpointc.engine.polars import evaluate
from endpointc.synth import BLOCK_PEOPLE, Recipe, Relative, case_recipes, generate, write_registry

PROGRAM = """
endpoint MI { hospital icd10 I21 }
endpoint HF { hospital icd10 I50 }
endpoint DM { hospital icd10 E11 }
endpoint CKD { hospital icd10 N18 }
endpoint GDM { hospital icd10 O244 }
endpoint HF_AFTER_MI { include HF
  when within 1 year after MI }
endpoint FLU_BEFORE_MI { hospital icd10 J10 | J11
  when within 30 days before MI }
endpoint DEP_AFTER_MI { hospital icd10 F32
  when after MI }
endpoint EARLY_HF { include HF
  when date - MI.date <= 30 days and date >= MI.date }
endpoint DM_CONFIRMED { hospital min 2 apart 30 days icd10 E11
  when date >= 1998-01-01 }
endpoint PANDEMIC { hospital icd10 J10 | J11
  when 2009-04-01 <= date <= 2010-08-10 }
endpoint ASTHMA_DRUGS { purchase min 3 within 1 year atc R03 }
endpoint CKD_AFTER_DM { include CKD
  require CKD_AFTER_DM within 1 year after DM }
endpoint ANGINA_FIRST { hospital icd10 I20
  require ANGINA_FIRST before MI }
endpoint DM_AFTER_GDM { include DM
  sex female
  require DM within 5 years after GDM }
"""

# Per endpoint: its codes alone (what a near miss has), and the edge one day past what it
# asks (what a targeted near miss has).
PROBES = {
    "HF_AFTER_MI": ("include HF",
                    "include HF  when date - MI.date == 366 days or MI.date - date == 1 day"),
    "FLU_BEFORE_MI": ("hospital icd10 J10 | J11",
                      "hospital icd10 J10 | J11  when MI.date - date == 31 days or date - MI.date == 1 day"),
    "DEP_AFTER_MI": ("hospital icd10 F32", "hospital icd10 F32  when date == MI.date"),
    "EARLY_HF": ("include HF", "include HF  when date - MI.date == 31 days or MI.date - date == 1 day"),
    "DM_CONFIRMED": ("hospital icd10 E11", "hospital icd10 E11  when date == 1997-12-31"),
    "PANDEMIC": ("hospital icd10 J10 | J11",
                 "hospital icd10 J10 | J11  when date == 2009-03-31 or date == 2010-08-11"),
    "ASTHMA_DRUGS": ("purchase atc R03", "purchase min 3 within 366 days atc R03"),
    "CKD_AFTER_DM": ("include CKD",
                     "include CKD  require SELF.date - DM.date == 366 days or DM.date - SELF.date == 1 day"),
    "ANGINA_FIRST": ("hospital icd10 I20", "hospital icd10 I20  require SELF.date == MI.date"),
    "DM_AFTER_GDM": ("include DM",
                     "include DM  sex female  require DM.date - GDM.date == 1827 days or GDM.date - DM.date == 1 day"),
}
# `min 2 apart 30 days` also has misses 29 days apart
SPACING_PROBE = "hospital min 2 within 29 days icd10 E11  when date >= 1998-01-01"

N = 2000
PREV = 0.05


def _probe_text() -> str:
    blocks = []
    for name, (codes, edge) in PROBES.items():
        blocks.append(f"endpoint CODES_{name} {{ {codes} }}")
        blocks.append(f"endpoint EDGE_{name} {{ {edge.replace('SELF', f'EDGE_{name}')} }}")
    blocks.append(f"endpoint CLOSE_DM_CONFIRMED {{ {SPACING_PROBE} }}")
    return "\n".join(blocks)


@pytest.fixture(scope="module")
def program():
    program, diagnostics = compile_text(PROGRAM)
    assert program is not None, diagnostics
    return program


def _case_sets(events, people) -> dict[str, set[str]]:
    """The cases of every endpoint and probe, by name."""
    probes, diagnostics = compile_text(PROGRAM + _probe_text())
    assert probes is not None, diagnostics
    long = evaluate(probes, events, people).long.filter(pl.col("STATUS") == "case").collect()
    found = {name: set(group["FINNGENID"]) for (name,), group in long.group_by("ENDPOINT")}
    return {name: found.get(name, set()) for name in probes.names}


def _on_edges(cases_of) -> dict[str, int]:
    """How many people are one day past the edge of what each endpoint asks, and not its
    cases (under the probe's name)."""
    edges = {f"EDGE_{name}": name for name in PROBES} | {"CLOSE_DM_CONFIRMED": "DM_CONFIRMED"}
    return {probe: len(cases_of[probe] - cases_of[name]) for probe, name in edges.items()}


@pytest.fixture(scope="module")
def cases_of(program):
    return _case_sets(*generate(people=N, seed=17, definitions=program, prevalence=PREV))


def test_recipes_read_the_time_constructs(program):
    recipes = {r.endpoint: r for r in case_recipes(program)}
    assert recipes["HF_AFTER_MI"].relative == Relative("MI", 0, 365)
    assert recipes["FLU_BEFORE_MI"].relative == Relative("MI", -30, 0)
    assert recipes["DEP_AFTER_MI"].relative == Relative("MI", 1, None)
    assert recipes["EARLY_HF"].relative == Relative("MI", 0, 30)
    assert recipes["DM_CONFIRMED"].dates == (dt.date(1998, 1, 1), None)
    assert (recipes["DM_CONFIRMED"].rules[0].spacing, recipes["DM_CONFIRMED"].rules[0].spacing_days) == ("apart", 30)
    assert recipes["PANDEMIC"].dates == (dt.date(2009, 4, 1), dt.date(2010, 8, 10))
    assert recipes["ASTHMA_DRUGS"].rules[0].spacing == "within"
    assert recipes["CKD_AFTER_DM"].relative == Relative("DM", 0, 365)
    assert recipes["ANGINA_FIRST"].relative == Relative("MI", None, -1)
    # the included endpoint is the one placed: the endpoint's own events are its events
    assert recipes["DM_AFTER_GDM"].relative == Relative("GDM", 0, 1826, subject="DM")
    assert {"DM", "GDM"} <= set(recipes["DM_AFTER_GDM"].also)
    assert recipes["HF_AFTER_MI"].also == ("MI",)


def test_untargeted_relations_fall_back():
    program, _ = compile_text("""
        endpoint MI { hospital icd10 I21 }
        endpoint EITHER { hospital icd10 I50
          when within 1 year before MI or within 1 year after MI }
        endpoint NOT_BEFORE { hospital icd10 I20
          require not NOT_BEFORE before MI }
    """)
    recipes = {r.endpoint: r for r in case_recipes(program)}
    assert recipes["EITHER"].relative is None and recipes["NOT_BEFORE"].relative is None
    events, people = generate(people=300, seed=2, definitions=program, prevalence=0.1)
    assert evaluate(program, events, people).counts.collect().height == 3


@pytest.mark.parametrize("name", list(PROBES))
def test_cases_and_near_misses(cases_of, name):
    cases = cases_of[name]
    assert len(cases) >= 0.2 * PREV * N, (name, len(cases))
    near = cases_of[f"CODES_{name}"] - cases
    assert len(near) >= 0.05 * PREV * N, (name, len(near))
    assert _on_edges(cases_of)[f"EDGE_{name}"] >= 0.05 * PREV * N


def test_spacing_near_misses(cases_of):
    assert _on_edges(cases_of)["CLOSE_DM_CONFIRMED"] >= 0.05 * PREV * N


def test_edges_do_not_come_by_chance():
    """Without definitions next to nobody is one day past an edge: the near misses above
    were placed there."""
    assert sum(_on_edges(_case_sets(*generate(people=N, seed=17))).values()) <= 2


def test_chunking_with_time_constructs(tmp_path, program):
    n = BLOCK_PEOPLE + 10
    one = generate(people=n, seed=8, definitions=program)[0].collect()
    out = write_registry(tmp_path, people=n, seed=8, definitions=program, chunk_people=BLOCK_PEOPLE)
    assert_frame_equal(pl.read_parquet(out["events"]), one)
    again = generate(people=n, seed=8, definitions=program)[0].collect()
    assert_frame_equal(again, one)


def test_bad_relative():
    with pytest.raises(ValueError, match="empty window"):
        Relative("MI", 5, 1)
    with pytest.raises(ValueError, match="itself"):
        Relative("MI", 0, 1, subject="MI")
    with pytest.raises(ValueError, match="itself"):
        Recipe("MI", (), relative=Relative("MI", 0, 1))
