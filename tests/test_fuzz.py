"""Mutation fuzzing: broken text yields diagnostics, never a traceback, and never slowly.

Valid texts (the language reference's examples, definitions/*.ep, random valid definitions) are
mutated at the character and token level; texts are also derived at random from the
grammar's own rules, and strung together from random tokens of its terminals. Parse must
return (File | None, diagnostics) with positioned diagnostics, check must return
diagnostics for whatever parses, the formatter must round-trip whatever parses, and no file
may take a second through all of it. The default suite runs a few hundred files; `-m slow`
runs thousands.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from endpointc import ast, parse
from endpointc.diagnostics import Diagnostic
from endpointc.fmt import ast_equal, format_file
from endpointc.parser import _lark
from endpointc.render import format_diagnostic
from endpointc.source import Source

from hangs import cpu_bound
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
    _, diagnostics = check([file])
    return tuple(diagnostics)


# No file may take longer than this through parse, check and format.
SECONDS_PER_FILE = 2.0


def assert_only_diagnostics(text: str) -> None:
    with cpu_bound(SECONDS_PER_FILE, f"file {text[:300]!r}"):
        _only_diagnostics(text)


def _only_diagnostics(text: str) -> None:
    file, diagnostics = parse(text, name="fuzz.ep")
    assert isinstance(diagnostics, tuple) and all(isinstance(d, Diagnostic) for d in diagnostics)
    if file is None:
        assert diagnostics and diagnostics[0].is_error
        span = diagnostics[0].span
        assert span is not None and span.file == "fuzz.ep"
        assert 0 <= span.offset <= len(text) and span.line >= 1 and span.column >= 1
        assert str(diagnostics[0])  # renders without raising
        assert format_diagnostic(diagnostics[0], Source("fuzz.ep", text))
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


# a few by default; test_many_mutations below draws 2000 with -m slow
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
parse(SEEDS[0])  # build the parser's tables once, outside any timed file


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


# -- texts from the grammar ------------------------------------------------------------------

@lru_cache(maxsize=None)
def _terminal(name: str) -> st.SearchStrategy[str]:
    """Texts the lexer reads as the terminal `name`."""
    (term,) = [t for t in _lark().terminals if t.name == name]
    if term.pattern.type == "str":
        return st.just(term.pattern.value)
    if name == "COMMENT":  # from_regex would put line breaks in it
        return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                       max_size=20).map(lambda t: "#" + t)
    return st.from_regex(term.pattern.to_regexp(), fullmatch=True).filter(lambda t: 0 < len(t) < 40)


@lru_cache(maxsize=None)
def _rules() -> dict[str, list[tuple]]:
    rules: dict[str, list[tuple]] = {}
    for rule in _lark().rules:
        rules.setdefault(rule.origin.name, []).append(tuple(rule.expansion))
    return rules


@lru_cache(maxsize=None)
def _sizes() -> dict[str, int]:
    """The fewest terminals each rule derives, so a derivation can always be finished."""
    size: dict[str, float] = {name: float("inf") for name in _rules()}
    changed = True
    while changed:
        changed = False
        for name, expansions in _rules().items():
            best = min(sum(1 if s.is_term else size[s.name] for s in e) for e in expansions)
            if best < size[name]:
                size[name], changed = best, True
    return {name: int(n) for name, n in size.items()}


@st.composite
def derived(draw, budget: int = 120) -> str:
    """A text derived at random from the grammar's rules: most of them parse."""
    tokens: list[str] = []
    todo = [("start", 0)]
    while todo:
        symbol, depth = todo.pop()
        if symbol not in _rules():
            tokens.append(draw(_terminal(symbol)))
            continue
        expansions = _rules()[symbol]
        if depth > 14 or len(tokens) > budget:
            expansion = min(expansions, key=lambda e: sum(1 if s.is_term else _sizes()[s.name] for s in e))
        else:
            expansion = draw(st.sampled_from(expansions))
        todo.extend((s.name, depth + 1) for s in reversed(expansion))
    gaps = st.sampled_from([" ", " ", "\n", "\n  ", "  # note\n", "\t"])
    return "".join(t + draw(gaps) for t in tokens)


TERMINAL_NAMES = sorted(t.name for t in _lark().terminals if t.name not in ("WS",))


@st.composite
def token_soup(draw) -> str:
    """Random tokens of the grammar's terminals: the lexer and parser's error paths."""
    names = draw(st.lists(st.sampled_from(TERMINAL_NAMES), max_size=30))
    gaps = st.sampled_from([" ", "", "\n", "\f", "\u2028"])
    return "".join(draw(_terminal(n)) + draw(gaps) for n in names)


@st.composite
def token_edited(draw, base: st.SearchStrategy[str]) -> str:
    """A text with some tokens replaced by, or given, random tokens of the grammar."""
    parts = tokens(draw(base)) or [""]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(parts) - 1))
        new = draw(_terminal(draw(st.sampled_from(TERMINAL_NAMES))))
        op = draw(st.sampled_from(["replace", "insert", "delete", "duplicate"]))
        if op == "replace":
            parts[i] = new
        elif op == "insert":
            parts[i:i] = [new, " "]
        elif op == "delete" and len(parts) > 1:
            del parts[i]
        else:
            j = draw(st.integers(i, min(len(parts), i + 20)))
            parts[j:j] = parts[i:j]
    return "".join(parts)


# Pieces of regular-expression syntax, for patterns that reach re and the automata of check.
REGEX_PIECES = ("(", ")", "(?:", "(?=", "(?!", "(?<=", "(?i)", "(?P<g>", "(?P=g)", "\\1", "{", "}", ",",
                "{2}", "{1,3}", "{0,}", "{4294967296}", "{99,9}", "*", "+", "?", "*?", "++", "|", "[", "]",
                "[^", "-", "^", "$", "\\", "\\d", "\\b", "\\Z", ".", "A", "E1", "0", "9", "Z", "a", "\u00e4")


@st.composite
def regex_rules(draw) -> str:
    body = "".join(draw(st.lists(st.sampled_from(REGEX_PIECES), max_size=25)))
    rule = draw(st.sampled_from(["hospital icd10", "purchase atc", "cancer topography", "primary icpc2"]))
    return f'endpoint A {{ {rule} re"{body}" }}'


GENERATED = st.one_of(derived(), token_soup(), token_edited(st.sampled_from(SEEDS)),
                      token_edited(derived()), mutated(derived()), regex_rules())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(GENERATED)
def test_grammar_generated_texts_give_diagnostics_quickly(text):
    assert_only_diagnostics(text)


def test_most_derived_texts_parse():
    # The derivations reach check and fmt, not just the parser's error paths.
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(derived())
    def count(text):
        parsed.append(parse(text)[0] is not None)

    parsed: list[bool] = []
    count()
    assert sum(parsed) >= len(parsed) // 2


@pytest.mark.slow
@settings(max_examples=4000, deadline=None, suppress_health_check=list(HealthCheck))
@given(GENERATED)
def test_many_grammar_generated_texts(text):
    assert_only_diagnostics(text)
