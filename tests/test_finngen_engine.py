"""The whole imported DF6 library runs on a definition-aware synthetic registry, and every
endpoint that is not omitted and has codes (or includes) gets cases (issue 5)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from endpointc.compiler import compile_files
from endpointc.engine import evaluate
from endpointc.finngen import import_finngen
from endpointc.synth import generate

DF6 = (Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "finngen"
       / "FINNGEN_ENDPOINTS_DF6_2020-06-08_public.csv")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not DF6.exists(), reason=f"{DF6} is absent")]


def test_every_df6_endpoint_with_codes_gets_cases():
    imported = import_finngen(DF6)
    program, diagnostics = compile_files(imported.files)
    assert program is not None, [str(d) for d in diagnostics if d.is_error][:5]
    events, people = generate(people=3000, seed=5, definitions=program)
    counts = evaluate(program, events, people).counts.collect()
    omitted = {e.name for e in imported.endpoints if e.meta.get("omit")}
    with_codes = {ep.name for ep in program.endpoints
                  if any(rule.branches for rule in ep.rules) or ep.includes} - omitted
    assert len(with_codes) > 4000
    without_cases = counts.filter(pl.col("ENDPOINT").is_in(sorted(with_codes)) & (pl.col("N_CASES") == 0))
    assert without_cases["ENDPOINT"].to_list() == []
