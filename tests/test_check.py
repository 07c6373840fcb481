"""Semantic checks: one test per diagnostic code, plus the guarantees of `check`."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from endpointc import ast, codes
from endpointc.check import MAX_MIN, check
from endpointc.fmt import format_file
from endpointc.parser import parse
from endpointc.source import Span

from hangs import cpu_bound


def run(*texts: str, strict: bool = False):
    files = []
    for i, text in enumerate(texts):
        tree, diags = parse(text, name=f"f{i}.ep")
        assert diags == (), diags
        files.append(tree)
    return check(files, strict=strict)


def codes_of(*texts: str) -> list[tuple[str, str]]:
    return [(d.code, d.severity.value) for d in run(*texts)[1]]


CLEAN = """
codelist DM icd10 E10 | E11
endpoint A {
  title "A"
  hospital main min 2 icd10 @DM | E10-E14 | =E119 | I21&I10 except E119
  death with atc icd10 I21 icd9 410 icd8 410
  purchase atc A10 vnr 012345
  cancer topography C50 behaviour 3
  reimbursement kela 103 icd10 E11
  operation nomesco FNA00 hl 5311 hp1 82 hp2 AN2
  primary icpc2 T90 procedure SAA02
  when 4 <= age <= 40 and (year >= 2000 or not emergency)
  require B and B.count > 1 and B.age < 50
  sex female
  controls { exclude B require not B }
}
endpoint B { include C  parent A }
endpoint C { inpatient icd10 I21 }
"""


def test_clean_library_has_no_diagnostics_and_orders_dependencies():
    library, diags = run(CLEAN)
    assert diags == ()
    assert library.order.index("C") < library.order.index("B") < library.order.index("A")
    assert set(library.codelists) == {"DM"}


@pytest.mark.parametrize("text, expected", [
    # EP2xx names and structure
    ("endpoint A { include B }", [("EP201", "error")]),
    ("endpoint A { hospital icd10 I21 require B.count > 1 }", [("EP201", "error")]),
    ("endpoint A { hospital icd10 I21 controls { exclude B } }", [("EP201", "error")]),
    ("endpoint A { hospital icd10 I21 parent B }", [("EP202", "warning")]),
    ("endpoint A { hospital icd10 @DM }", [("EP203", "error")]),
    ("endpoint A { hospital icd10 I21 } endpoint A { hospital icd10 I22 }", [("EP204", "error")]),
    ("codelist L icd10 I21 codelist L icd10 I22", [("EP205", "error")]),
    ("endpoint A { include B } endpoint B { include A }", [("EP206", "error")]),
    ("endpoint A { hospital icd10 I21 when A.count > 1 }", [("EP206", "error")]),
    ("endpoint A { hospital icd10 I21 require A.count > 1 }", []),
    ("endpoint A { title \"x\" }", [("EP207", "warning")]),
    ("endpoint A { hospital icd10 I21 include A }", [("EP208", "error")]),
    ("endpoint A { hospital icd10 I21 title \"x\" title \"y\" }", [("EP209", "warning")]),
    ("endpoint A { hospital icd10 I21 omit 3 }", [("EP210", "error")]),
    ("endpoint A { hospital icd10 I21 sex female sex male }", [("EP211", "error")]),
    ("endpoint A { sex female hospital icd10 I21 include B } endpoint B { sex male hospital icd10 N40 }",
     [("EP212", "warning")]),
    ("endpoint A { sex female hospital icd10 I21 require B } endpoint B { sex male hospital icd10 N40 }",
     [("EP212", "warning")]),
    # EP3xx codes and patterns
    ("endpoint A { purchase icd10 E11 }", [("EP301", "error")]),
    ("endpoint A { hospital icd10 4109A }", [("EP302", "warning")]),
    ("endpoint A { hospital icd10 E10-E1 }", [("EP303", "error")]),
    ("endpoint A { hospital icd10 E14-E10 }", [("EP303", "error")]),
    ('endpoint A { hospital icd10 re"E1[" }', [("EP304", "error")]),
    ("endpoint A { hospital icd10 E1[9-0] }", [("EP304", "error")]),
    ("codelist L icd9 410 endpoint A { hospital icd10 @L }", [("EP305", "error")]),
    ("endpoint A { reimbursement icd10 M07&L405 }", [("EP306", "error")]),
    ("endpoint A { hospital icd10 I21 icd10 I22 }", [("EP307", "warning")]),
    ("endpoint A { hospital icd10 " + "A" * 201 + " }", [("EP308", "error")]),
    ('endpoint A { hospital icd10 re"A{1,65535}" }', [("EP308", "error")]),
    ('endpoint A { hospital icd10 re"((A{1,9}){1,9}){1,9}" }', [("EP308", "error")]),
    # EP4xx rules, options, conditions
    ("endpoint A { purchase min 0 atc A10 }", [("EP401", "error")]),
    ("endpoint A { purchase min 2.5 atc A10 }", [("EP401", "error")]),
    ("endpoint A { purchase min 4294967296 atc A10 }", [("EP401", "error")]),
    ("endpoint A { purchase single min 2 atc A10 }", [("EP402", "error")]),
    ("endpoint A { purchase main atc A10 }", [("EP403", "error")]),
    ("endpoint A { primary with atc icd10 I21 }", [("EP404", "error")]),
    ("endpoint A { hospital with icd9 icd10 I21 }", [("EP405", "error")]),
    ("endpoint A { hospital main main icd10 I21 }", [("EP406", "warning")]),
    ("endpoint A { hospital icd10 I21 when B } endpoint B { hospital icd10 I22 }", []),
    ("endpoint A { hospital icd10 I21 when B.age < 3 } endpoint B { hospital icd10 I22 }", []),
    ("endpoint A { hospital icd10 I21 when EVENT_AGE < 3 }", [("EP407", "error")]),
    ("endpoint A { hospital icd10 I21 when A.age - 3 > 1 }", [("EP206", "error"), ("EP412", "error")]),
    ("endpoint A { hospital icd10 I21 when date < 2000 }", [("EP413", "error")]),
    ("endpoint A { hospital icd10 I21 when date }", [("EP410", "error")]),
    ("endpoint A { hospital icd10 I21 require before B } endpoint B { hospital icd10 I22 }", [("EP414", "error")]),
    ("endpoint A { hospital icd10 I21 require age < 40 }", [("EP408", "error")]),
    ("endpoint A { hospital icd10 I21 controls { require emergency } }", [("EP408", "error")]),
    ("endpoint A { hospital icd10 I21 require B > 1 } endpoint B { hospital icd10 I22 }", [("EP409", "error")]),
    ("endpoint A { hospital icd10 I21 when emergency == 1 }", [("EP409", "error")]),
    ("endpoint A { hospital icd10 I21 when age }", [("EP410", "error")]),
    ("endpoint A { hospital icd10 I21 when not year }", [("EP410", "error")]),
    ("endpoint A { hospital icd10 I21 require B.count } endpoint B { hospital icd10 I22 }", [("EP410", "error")]),
    ("endpoint A { hospital icd10 I21 when age < 3 when year > 2000 }", [("EP411", "error")]),
])
def test_each_code(text, expected):
    assert codes_of(text) == expected


@pytest.mark.parametrize("text", [
    "endpoint A { hospital icd10 I21 when emergency }",
    "endpoint A { hospital icd10 I21 when not emergency and age > 3 }",
    "endpoint A { hospital icd10 I21 require not B or B.year >= 2000 } endpoint B { hospital icd10 I22 }",
    "endpoint A { sex female hospital icd10 I21 require not B } endpoint B { sex male hospital icd10 N40 }",
    "endpoint A { sex male hospital icd10 I21 include B } endpoint B { sex male hospital icd10 N40 }",
    "endpoint A { hospital icd10 any except none }",
    "endpoint A { reimbursement kela 103 icd10 E11 }",
    "endpoint A { primary main icd10 I21 }",
])
def test_valid_uses_are_not_flagged(text):
    assert codes_of(text) == []


def test_all_problems_are_collected_and_sorted():
    text = ("endpoint A {\n  purchase icd10 E11\n  include NOPE\n  hospital min 0 icd10 4109A\n}\n"
            "endpoint B { include A, MISSING }\n")
    _, diags = run(text)
    assert [d.code for d in diags] == ["EP301", "EP201", "EP401", "EP302", "EP201"]
    assert [d.span.line for d in diags] == [2, 3, 4, 4, 6]


def test_duplicate_cites_both_files():
    _, diags = run("endpoint A { hospital icd10 I21 }", "\nendpoint A { hospital icd10 I22 }")
    (d,) = diags
    assert d.span.file == "f1.ep" and d.span.line == 2
    assert [(s.file, s.line) for _, s in d.related] == [("f0.ep", 1)]


def test_unknown_name_suggests_a_close_one():
    _, diags = run("endpoint I9_MI { hospital icd10 I21 }\nendpoint B { include I9_MII }")
    (d,) = diags
    assert d.code == "EP201" and d.hints == ("did you mean I9_MI?",)
    assert (d.span.column, d.span.end_column) == (22, 28)


def test_codelist_suggestion_and_vocabulary_span():
    _, diags = run("codelist DIAB icd10 E11\nendpoint A { hospital icd10 @DIAN\n purchase icd10 E11 }")
    assert [(d.code, d.hints[:1]) for d in diags] == [
        ("EP203", ("did you mean DIAB?",)), ("EP301", ("purchase rows are matched by atc, vnr, kela",))]
    assert (diags[1].span.column, diags[1].span.end_column) == (11, 16)


def test_cycle_is_named_and_reported_once():
    _, diags = run("endpoint A { include B }\nendpoint B { hospital icd10 I21 require C }\n"
                   "endpoint C { include A }\nendpoint D { include A }")
    (d,) = diags
    assert d.code == "EP206" and d.message == "dependency cycle: A -> B -> C -> A"


def test_two_cycles_in_separate_components_are_both_reported():
    _, diags = run("endpoint A { include B } endpoint B { include A } "
                   "endpoint C { include D } endpoint D { include C }")
    assert [d.message for d in diags] == ["dependency cycle: A -> B -> A", "dependency cycle: C -> D -> C"]


def test_cycles_do_not_stop_the_library_from_building():
    library, diags = run("endpoint A { include B } endpoint B { include A } endpoint C { include A }")
    assert sorted(library.order) == ["A", "B", "C"] and library.order[-1] == "C"
    assert diags[0].code == "EP206"


def test_long_chain_does_not_recurse_too_deep():
    text = "\n".join(f"endpoint E{i} {{ include E{i + 1} }}" for i in range(1200)) + "\nendpoint E1200 { include E0 }"
    _, diags = run(text)
    assert [d.code for d in diags] == ["EP206"]


def test_vocabulary_hint_names_the_sources_that_use_it():
    (d,) = run("endpoint A { cancer atc A10 }")[1]
    assert d.hints == ("cancer rows are matched by topography, morphology, behaviour", "atc is used by purchase")


def test_pattern_warning_suggests_the_vocabulary_it_looks_like():
    (d,) = run("endpoint A { hospital icd10 4109 }")[1]
    assert d.code == "EP302" and "icd9" in d.hints[-1]


def test_strict_changes_nothing_in_the_library():
    text = "endpoint A { hospital icd10 4109A }"
    assert run(text, strict=True)[1] == run(text, strict=False)[1]


def test_no_cascade_after_a_misplaced_event_field():
    assert codes_of("endpoint A { hospital icd10 I21 require emergency > 1 }") == [("EP408", "error")]


# -- limits: min, and the size of patterns ----------------------------------------------

@given(st.one_of(st.integers(-5, 5), st.integers(MAX_MIN - 5, MAX_MIN + 5), st.integers(0, 10 ** 40)))
@example(2 ** 32)
def test_min_is_checked_against_the_engines_limit(n):
    diags = run(f"endpoint A {{ purchase min {n} atc A10 }}")[1] if n >= 0 else ()
    assert [d.code for d in diags] == ([] if 1 <= n <= MAX_MIN else ["EP401"]) or n < 0
    if n > MAX_MIN:
        assert diags[0].message == f"min must be at most {MAX_MIN:,}"


def test_a_pattern_too_big_to_check_says_why_and_where():
    (d,) = run('endpoint A {\n  hospital icd10 I21 | re"A{1,65535}"\n}')[1]
    assert (d.code, d.message) == ("EP308", "repetition count 65,535 is larger than 100")
    assert (d.span.line, d.span.column, d.span.end_column) == (2, 24, 38) and d.hints


# One-line files built to make checking slow: long codes and classes, big and nested counts,
# long alternations, patterns whose deterministic automaton is exponential.
_ADVERSARIAL = st.one_of(
    st.builds(lambda n: "A" * n, st.integers(1, 20_000)),
    st.builds(lambda n: "[" + "A" * n + "]", st.integers(1, 20_000)),
    st.builds(lambda n: "[0-9]" * n, st.integers(1, 500)),
    st.builds(lambda n, m: "A" * n + "-" + "B" * m, st.integers(1, 3000), st.integers(1, 3000)),
    st.builds(lambda n: f're"A{{1,{n}}}"', st.integers(1, 10 ** 30)),
    st.builds(lambda n: f're"[0-9]{{{n}}}"', st.integers(1, 100_000)),
    st.builds(lambda k, n, tail: 're"' + "(" * k + "A" + f"{{1,{n}}})" * k + tail + '"',
              st.integers(1, 8), st.integers(1, 120), st.sampled_from(["", "Q", "a", "$"])),
    st.builds(lambda k, n, tail: 're"' + "(" * k + ".?" + f"){{{n}}}" * k + tail + '"',
              st.integers(1, 4), st.integers(1, 120), st.sampled_from(["", "Q", "a"])),
    st.builds(lambda n: 're"(A|B)*A(A|B){' + str(n) + '}"', st.integers(1, 200)),
    st.builds(lambda n: 're"(.*A){' + str(n) + '}"', st.integers(1, 200)),
    st.builds(lambda n: 're"' + "|".join(f"A{i:03d}" for i in range(n)) + '"', st.integers(1, 3000)),
    st.builds(lambda n: " | ".join(f"A{i:03d}" for i in range(n)), st.integers(1, 3000)),
    st.builds(lambda n: 're"[' + "A-Z0-9" * n + ']"', st.integers(1, 3000)),
    st.builds(lambda n: 're"' + "(.*)" * n + 'a"', st.integers(1, 200)),
    st.builds(lambda n: 're"' + "(A|B|C|.)" * n + 'a"', st.integers(1, 100)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ADVERSARIAL, st.sampled_from(["hospital icd10", "purchase atc", "operation nomesco", "cancer morphology"]))
@example('re"A{1,65535}"', "hospital icd10").via("the report")
@example('re"A{4294967296}"', "hospital icd10").via("beyond what re reads")
@example("A" * 8000, "hospital icd10").via("the report")
@example('re"(A|B)*A(A|B){12}"', "hospital icd10").via("exponential for a deterministic automaton")
def test_no_one_line_file_takes_a_second_to_check(patterns, rule):
    text = f"endpoint A {{ {rule} {patterns} }}"
    codes._can_match.cache_clear()
    with cpu_bound(1.0, text[:200]):
        tree, diags = parse(text, name="x.ep")
        if tree is not None:
            diags = check([tree])[1]
            format_file(tree)
    assert all(d.span is not None for d in diags)


# -- EP302 is exact: the automaton search agrees with re on every code of small vocabularies

SMALL_VOCABULARIES = {
    "behaviour": [str(d) for d in range(10)],
    "topography": [f"C{n:02d}" for n in range(100)] + [f"C{n:03d}" for n in range(1000)],
    "icpc2": [a + f"{n:02d}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ-" for n in range(100)],
}


def test_the_small_vocabularies_are_listed_whole():
    for vocab, every in SMALL_VOCABULARIES.items():
        assert all(codes.is_well_formed(vocab, c) for c in every)
    assert not any(codes.is_well_formed("topography", f"C{n}") for n in range(10))


_ATOMS = st.sampled_from(["0", "1", "9", "C", "A", "Z", "-", ".", "[0-4]", "[^0-4]", "[A-C]", "[C-]", r"\d",
                          r"\D", r"\w", r"\W", "[^C]", "[a-z]"])


def _regexes(inner):
    return st.one_of(
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "*?", "{2}", "{1,3}", "{0,2}", "{2,}", "{3}?"]))
        .map(lambda t: f"(?:{t[0]}){t[1]}"),
        st.tuples(st.sampled_from(["^", ""]), inner, st.sampled_from(["$", ""])).map("".join),
    )


REGEXES = st.recursive(_ATOMS, _regexes, max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SMALL_VOCABULARIES)), REGEXES)
@example("topography", "C(?:1|2$)").via("an anchor inside an alternative")
@example("icpc2", "-^1").via("a start anchor after a character")
def test_can_match_agrees_with_re_on_every_code(vocab, regex):
    codes._can_match.cache_clear()
    expected = any(re.match(regex, code) for code in SMALL_VOCABULARIES[vocab])
    assert codes.can_match(vocab, ast.Regex(span=_S, regex=regex)) is expected


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(SMALL_VOCABULARIES)), REGEXES,
       st.sampled_from(["(?=C)", "(?!1)", r"\b", "(?i)", "(?>1)", "1++"]))
def test_what_the_automaton_cannot_read_is_assumed_to_match(vocab, regex, unreadable):
    pattern = ast.Regex(span=_S, regex=unreadable + regex)
    if not any(re.match(pattern.regex, code) for code in SMALL_VOCABULARIES[vocab]):
        assert codes.can_match(vocab, pattern)  # no warning that is a guess


_S = Span(file="x", line=1, column=1, end_line=1, end_column=1)
