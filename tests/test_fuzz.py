"""Mutation fuzzing: broken text yields diagnostics, never a traceback.

Valid texts (LANGUAGE.md's examples, definitions/*.ep, random valid definitions) are
mutated at the character and token level; parse must return (File | None, diagnostics)
with positioned diagnostics, check must return diagnostics for whatever parses, and the
formatter must round-trip whatever parses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from endpointc import ast, parse
from endpointc.diagnostics import Diagnostic
from endpointc.fmt import ast_equal, format_file

from strategies import VALID_EXAMPLES, definition_texts

ROOT = Path(__file__).resolve().parents[1]
SEEDS = VALID_EXAMPLES + tuple(p.read_text(encoding="utf-8") for p in sorted((ROOT / "definitions").glob("*.ep")))
TOKEN = re.compile(r"\s+|#[^\n]*|re\"(?:[^\"\\\n]|\\.)*\"|\"(?:[^\"\\\n]|\\.)*\"|[A-Za-z0-9_.\[\]]+|.", re.S)
# Fragments that steer mutations towards the grammar's corners.
FRAGMENTS = (
    "{", "}", "(", ")", "|", "&", "=", "@", "-", ",", ".", "#", '"', "\\", "\n", "re\"", "<=", "==", "!",
    "endpoint", "codelist", "hospital", "purchase", "cancer", "icd10", "atc", "kela", "except", "include",
    "when", "require", "controls", "exclude", "sex", "min", "min 2.5", "needs other", "with atc", "with kela",
    "level", "tags", "meta", "not", "and", "or", "age", "emergency", ".count", "any", "none", "A.B",
    "I21", "[1-3]", "[", "]", "0", "99999999999999999999", "\u00e4", "\u2028", "\x00", "\ufeff", "\U0001F600",
)


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


@st.composite
def mutated(draw, base: st.SearchStrategy[str]) -> str:
    text = draw(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["del_char", "ins_char", "ins_frag", "dup", "swap_tok", "del_tok",
                                   "dup_tok", "truncate", "case"]))
        parts = tokens(text)
        if not parts:
            parts = [""]
        if op == "del_char" and text:
            i = draw(st.integers(0, len(text) - 1))
            text = text[:i] + text[i + 1:]
        elif op == "ins_char":
            i = draw(st.integers(0, len(text)))
            text = text[:i] + draw(st.characters(blacklist_categories=("Cs",))) + text[i:]
        elif op == "ins_frag":
            i = draw(st.integers(0, len(text)))
            text = text[:i] + draw(st.sampled_from(FRAGMENTS)) + text[i:]
        elif op == "dup" and text:
            i = draw(st.integers(0, len(text) - 1))
            j = draw(st.integers(i, min(len(text), i + 40)))
            text = text[:j] + text[i:j] + text[j:]
        elif op == "swap_tok" and len(parts) > 1:
            i, j = draw(st.integers(0, len(parts) - 1)), draw(st.integers(0, len(parts) - 1))
            parts[i], parts[j] = parts[j], parts[i]
            text = "".join(parts)
        elif op == "del_tok":
            del parts[draw(st.integers(0, len(parts) - 1))]
            text = "".join(parts)
        elif op == "dup_tok":
            i = draw(st.integers(0, len(parts) - 1))
            parts.insert(i, parts[i])
            text = "".join(parts)
        elif op == "truncate":
            text = text[:draw(st.integers(0, len(text)))]
        elif op == "case" and text:
            i = draw(st.integers(0, len(text) - 1))
            text = text[:i] + text[i].swapcase() + text[i + 1:]
    return text


def run_check(file: ast.File) -> tuple[Diagnostic, ...]:
    from endpointc.check import check
    try:
        _, diagnostics = check([file])
    except NotImplementedError:  # check is still being written
        return ()
    return tuple(diagnostics)


def assert_only_diagnostics(text: str) -> None:
    file, diagnostics = parse(text, name="fuzz.ep")
    assert isinstance(diagnostics, tuple) and all(isinstance(d, Diagnostic) for d in diagnostics)
    if file is None:
        assert diagnostics and diagnostics[0].is_error
        span = diagnostics[0].span
        assert span is not None and span.file == "fuzz.ep"
        assert 0 <= span.offset <= len(text) and span.line >= 1 and span.column >= 1
        assert str(diagnostics[0])  # renders without raising
        return
    assert diagnostics == ()
    checked = run_check(file)
    assert all(isinstance(d, Diagnostic) for d in checked)
    # Whatever parses, the formatter prints back to the same tree.
    out = format_file(file)
    again, diagnostics = parse(out)
    assert again is not None, (diagnostics, out)
    assert ast_equal(file, again)
    assert format_file(again) == out


SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@SETTINGS
@given(mutated(st.sampled_from(SEEDS)))
def test_mutated_seed_texts_give_diagnostics_not_tracebacks(text):
    assert_only_diagnostics(text)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(definition_texts(max_endpoints=2)))
def test_mutated_random_definitions_give_diagnostics_not_tracebacks(text):
    assert_only_diagnostics(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_gives_diagnostics_not_tracebacks(text):
    assert_only_diagnostics(text)


def test_valid_seeds_check_without_raising():
    for seed in SEEDS:
        file, diagnostics = parse(seed)
        assert file is not None, diagnostics
        run_check(file)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(st.sampled_from(SEEDS)))
def test_many_mutations(text):
    assert_only_diagnostics(text)
