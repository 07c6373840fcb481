"""The spec suite: every `tests/spec/<feature>/*.case` through both engines.

Each case's expected table was computed by hand from the language reference (docs/language.md);
both the reference engine and the Polars engine must reproduce it exactly (values,
dtypes, row order).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from casefile import Case, read_case
from endpointc.compiler import compile_text
from endpointc.engine.polars import evaluate
from endpointc.engine.reference import counts_reference, evaluate_reference

HERE = Path(__file__).resolve().parent
CASE_FILES = sorted(HERE.glob("*/*.case"))


def _compile(case: Case):
    program, diagnostics = compile_text(case.definition, name=case.name)
    assert program is not None, "\n".join(map(str, diagnostics))
    assert not [d for d in diagnostics if d.is_error]
    return program


def _expected(case: Case) -> pl.DataFrame:
    return case.expected.sort("ENDPOINT", "FINNGENID")


def _reference(case: Case, program) -> pl.DataFrame:
    return evaluate_reference(program, case.events, case.people, endpoints=case.endpoints)


def _polars(case: Case, program) -> pl.DataFrame:
    results = evaluate(program, case.events.lazy(), case.people.lazy(), endpoints=case.endpoints)
    return results.long.collect()


ENGINES = {"reference": _reference, "polars": _polars}


def test_cases_exist():
    assert len(CASE_FILES) >= 60
    for path in CASE_FILES:
        read_case(path)  # every file parses


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_case(path: Path, engine: str):
    case = read_case(path)
    program = _compile(case)
    run = ENGINES[engine]
    if case.error is not None:
        with pytest.raises(Exception) as raised:
            run(case, program)
        assert case.error in str(raised.value)
        return
    assert_frame_equal(run(case, program), _expected(case), check_exact=True)


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_counts(path: Path):
    """Counts follow from the expected long table (controls are the rest of the population),
    and the Polars engine's counts agree."""
    case = read_case(path)
    if case.error is not None:
        pytest.skip("an error case has no counts")
    program = _compile(case)
    names = case.endpoints or program.names
    counts = counts_reference(_expected(case), case.people, endpoints=names)
    assert counts["ENDPOINT"].to_list() == sorted(names)
    for row in counts.iter_rows(named=True):
        mine = case.expected.filter(pl.col("ENDPOINT") == row["ENDPOINT"])
        assert row["N_CASES"] == mine.filter(pl.col("STATUS") == "case").height
        assert row["N_EXCLUDED"] == mine.filter(pl.col("STATUS") == "excluded").height
        assert row["N_CASES"] + row["N_CONTROLS"] + row["N_EXCLUDED"] == case.people.height
    results = evaluate(program, case.events.lazy(), case.people.lazy(), endpoints=case.endpoints)
    assert_frame_equal(results.counts.collect(), counts, check_exact=True)
