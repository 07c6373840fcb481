"""Compiling some endpoints parses only what they need, and gives the plans a whole
compile gives them."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from endpointc.compiler import compile_paths
from endpointc.selection import compile_selection

from strategies import library_texts

DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"


def _same_plans(selected, whole, names) -> None:
    expected = whole.subset(names)
    assert {ep.name: ep for ep in selected.endpoints} == {ep.name: ep for ep in expected.endpoints}


def _a_selection_compiles_to_the_whole_librarys_plans(texts, data):
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            (Path(tmp) / f"f{i}.ep").write_text(text)
        whole, diagnostics = compile_paths([tmp])
        assume(whole is not None and whole.names)
        names = data.draw(st.lists(st.sampled_from(whole.names), min_size=1, max_size=2, unique=True))
        selected, _ = compile_selection([tmp], names)
        _same_plans(selected, whole, names)


# About 0.15 s an example: a few by default, many with -m slow.
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(library_texts(files=3, max_endpoints=3, messy=True, comments=True), st.data())
def test_a_selection_compiles_to_the_whole_librarys_plans(texts, data):
    _a_selection_compiles_to_the_whole_librarys_plans(texts, data)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(library_texts(files=3, max_endpoints=3, messy=True, comments=True), st.data())
def test_many_selections_compile_to_the_whole_librarys_plans(texts, data):
    _a_selection_compiles_to_the_whole_librarys_plans(texts, data)


def test_the_starter_library():
    whole, _ = compile_paths([DEFINITIONS])
    for names in [[n] for n in random.Random(1).sample(whole.names, 15)] + [list(whole.names)]:
        selected, diagnostics = compile_selection([DEFINITIONS], names)
        assert not [d for d in diagnostics if d.is_error]
        _same_plans(selected, whole, names)


def test_files_the_selection_does_not_need_are_not_parsed(tmp_path):
    (tmp_path / "good.ep").write_text("codelist MI_CODES { icd10 I21 }\n"
                                      "endpoint MI { hospital @MI_CODES }\nendpoint MI_EARLY { include MI  when age < 50 }\n")
    (tmp_path / "broken.ep").write_text("endpoint OTHER { hospital icd10 I21 I22 }\n")  # a syntax error
    program, diagnostics = compile_selection([tmp_path], ["MI_EARLY"])
    assert program is not None and program.names == ("MI", "MI_EARLY") and not diagnostics
    assert compile_paths([tmp_path])[0] is None


def test_what_the_scan_cannot_resolve_is_compiled_whole(tmp_path):
    (tmp_path / "a.ep").write_text("endpoint MI { hospital icd10 I21 }\n")
    (tmp_path / "b.ep").write_text("endpoint CHD { include MI, NOWHERE }\n")
    whole = compile_paths([tmp_path])
    assert compile_selection([tmp_path], ["CHD"]) == whole   # NOWHERE is declared nowhere: an error
    assert compile_selection([tmp_path], ["NO_SUCH"]) == whole
    (tmp_path / "b.ep").write_text("endpoint CHD { include MI }\nendpoint # a comment between\n ALSO { hospital icd10 I22 }\n")
    (tmp_path / "c.ep").write_text("endpoint CHD_ALSO { include CHD, ALSO }\n")
    selected, _ = compile_selection([tmp_path], ["CHD_ALSO"])
    assert selected.names == compile_paths([tmp_path])[0].subset(["CHD_ALSO"]).names
    (tmp_path / "a.ep").write_text("endpoint MI { hospital icd10 I21 I22 }\n")  # a needed file that does not parse
    assert compile_selection([tmp_path], ["MI"]) == compile_paths([tmp_path])
