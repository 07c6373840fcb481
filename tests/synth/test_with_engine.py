"""Definition-awareness end to end: the starter library compiled, generated for, evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest

from endpointc.compiler import compile_paths
from endpointc.diagnostics import DiagnosticError
from endpointc.engine.polars import evaluate
from endpointc.synth import case_recipes, generate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def program():
    program, diagnostics = compile_paths([REPO / "definitions"])
    assert program is not None, [d.message for d in diagnostics][:3]
    return program


def test_every_starter_endpoint_gets_cases(program):
    events, people = generate(people=1200, seed=3, definitions=program, prevalence=0.05)
    counts = evaluate(program, events, people).counts.collect()
    without = counts.filter(counts["N_CASES"] == 0)["ENDPOINT"].to_list()
    assert not without, f"endpoints without cases: {without}"
    assert set(counts["ENDPOINT"]) == set(program.names)


def test_recipes_cover_every_endpoint(program):
    recipes = case_recipes(program)
    assert [r.endpoint for r in recipes] == list(program.names)
    assert all(r.rules for r in recipes), [r.endpoint for r in recipes if not r.rules]


def test_case_recipes_rejects_other_objects():
    with pytest.raises(TypeError, match="Program"):
        case_recipes(object())


def test_definitions_given_as_paths(program):
    from endpointc.synth.recipes import as_recipes
    recipes = as_recipes([REPO / "definitions"])
    assert [r.endpoint for r in recipes] == list(program.names)


def test_bad_definition_path_raises():
    with pytest.raises(DiagnosticError):
        generate(people=5, seed=1, definitions=[REPO / "no-such-definitions.ep"])
