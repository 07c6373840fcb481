"""The canonical formatter: idempotent, AST-preserving, comment-preserving, and its layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from endpointc import parse
from endpointc.fmt import MAX_WIDTH, ast_equal, format_file, format_text, strip_spans

from strategies import VALID_EXAMPLES, definition_texts, library_texts

DEFINITIONS = sorted((Path(__file__).resolve().parents[1] / "definitions").glob("*.ep"))


def comment_texts(text: str) -> Counter:
    file, diagnostics = parse(text)
    assert file is not None, diagnostics
    return Counter(c.text.rstrip() for c in file.comments)


def assert_round_trip(text: str) -> str:
    before, diagnostics = parse(text)
    assert before is not None, diagnostics
    out = format_file(before)
    after, diagnostics = parse(out)
    assert after is not None, (diagnostics, out)
    assert ast_equal(before, after), out
    assert format_file(after) == out, "not idempotent"
    assert comment_texts(out) == comment_texts(text)
    return out


def fmt(text: str) -> str:
    out, diagnostics = format_text(text)
    assert out is not None, diagnostics
    return out


# -- the properties -------------------------------------------------------------------

@pytest.mark.parametrize("text", VALID_EXAMPLES)
def test_language_examples_round_trip(text):
    assert_round_trip(text)


@pytest.mark.skipif(not DEFINITIONS, reason="no definitions/*.ep yet")
@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_definitions_round_trip(path):
    assert_round_trip(path.read_text(encoding="utf-8"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definition_texts())
def test_random_definitions_round_trip(text):
    assert_round_trip(text)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definition_texts(max_endpoints=6))
def test_many_random_definitions_round_trip(text):
    assert_round_trip(text)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(library_texts(files=2))
def test_random_tidy_libraries_round_trip(texts):
    for text in texts:
        assert_round_trip(text)


def test_format_text_reports_syntax_errors_instead_of_text():
    out, diagnostics = format_text("endpoint A { hospital I21 }", name="x.ep")
    assert out is None
    assert diagnostics and diagnostics[0].is_error and diagnostics[0].span.file == "x.ep"


def test_ast_equal_ignores_spans_only():
    a, _ = parse("endpoint A { hospital icd10 I21 }")
    b, _ = parse("\n\nendpoint   A {\n  hospital icd10\n I21\n}")
    c, _ = parse("endpoint A { hospital icd10 I22 }")
    assert ast_equal(a, b)
    assert not ast_equal(a, c)
    assert "span" not in repr(strip_spans(a.declarations))


# -- layout ------------------------------------------------------------------------------

def test_canonical_layout_of_a_messy_file():
    text = ('codelist CL icd10 I21|I22 endpoint B{title "Hi"  tags I9,"two words" level C\n'
            'hospital main min 2 icd10 I21&I10|=E119|E10-E14 except F3[2-3]  icd9 410 death icd10 @CL\n'
            'when 4<=age<=40 and (emergency or year>2000)\n require not (A or C) and A.count>=2}')
    assert fmt(text) == (
        "codelist CL icd10 I21 | I22\n"
        "\n"
        "endpoint B {\n"
        '  title "Hi"\n'
        '  tags I9, "two words"\n'
        "  level C\n"
        "  hospital main min 2 icd10 I21&I10 | =E119 | E10-E14 except F3[2-3]  icd9 410\n"
        "  death    icd10 @CL\n"
        "  when 4 <= age <= 40 and (emergency or year > 2000)\n"
        "  require not (A or C) and A.count >= 2\n"
        "}\n"
    )


def test_items_keep_the_authors_order_and_blank_lines():
    text = "endpoint A {\n  sex female\n\n\n\n  hospital icd10 I21\n  title \"x\"\n}\n"
    assert fmt(text) == "endpoint A {\n  sex female\n\n  hospital icd10 I21\n  title \"x\"\n}\n"


def test_declarations_are_separated_by_one_blank_line():
    assert fmt("endpoint A {} endpoint B {}\n\n\n\ncodelist C atc A10") == (
        "endpoint A {\n}\n\nendpoint B {\n}\n\ncodelist C atc A10\n")


def test_empty_file_formats_to_empty_text():
    assert fmt("") == ""
    assert fmt("# only a comment") == "# only a comment\n"


def test_every_option_and_pattern_kind_prints_back():
    text = ('endpoint A { hospital main min 3 single mode needs other with atc '
            'icd10 E11 | E10-E14 | F3[2-3] | C34.[123457] | =E119 | any | none | re"^C34.?[12]" | I21&I10 | @CL }')
    line = fmt(text).splitlines()[1]
    assert line == ('  hospital main min 3 single mode needs other with atc icd10 E11 | E10-E14 | F3[2-3] | '
                    'C34.[123457] | =E119 | any | none | re"^C34.?[12]" | I21&I10 | @CL') or "(" in line
    assert_round_trip(text)


def test_long_pattern_lists_wrap_one_per_line():
    codes = " | ".join(f"I{n}" for n in range(10, 50))
    out = fmt(f"endpoint A {{ hospital icd10 {codes} except I11 }}")
    lines = out.splitlines()
    assert lines[1] == "  hospital icd10 ("
    assert lines[2:4] == ["    I10", "    I11"]
    assert ") except (" in [line.strip() for line in lines]
    assert all(len(line) <= MAX_WIDTH for line in lines)
    assert_round_trip(out)


def test_long_multi_vocabulary_rule_puts_each_vocabulary_on_its_line():
    codes = " | ".join(f"I{n}" for n in range(10, 40))
    out = fmt(f"endpoint A {{ death main icd10 {codes} icd9 410 icd8 410 }}")
    lines = out.splitlines()
    assert lines[1] == "  death main"
    assert lines[2] == "    icd10 ("
    assert lines[-3:] == ["    icd9 410", "    icd8 410", "}"]


def test_long_codelist_wraps():
    codes = " | ".join(f"A10B{n:02d}" for n in range(30))
    lines = fmt(f"codelist DRUGS atc {codes}").splitlines()
    assert lines[0] == "codelist DRUGS atc ("
    assert lines[1] == "  A10B00" and lines[-1] == ")"


def test_strings_are_requoted_with_escapes():
    out = fmt('endpoint A { title "say \\"hi\\" \\\\ ok" meta "K\\"" "ä" }')
    assert '  title "say \\"hi\\" \\\\ ok"' in out.splitlines()
    assert '  meta "K\\"" "ä"' in out.splitlines()
    assert_round_trip(out)


def test_numbers_print_as_written():
    out = fmt("endpoint A { when age < 040.50 and year >= 2000 }")
    assert "  when age < 040.50 and year >= 2000" in out.splitlines()


@pytest.mark.parametrize("written, canonical", [
    ("A or B and C", "A or B and C"),
    ("(A or B) and C", "(A or B) and C"),
    ("((A))", "A"),
    ("not (A and B)", "not (A and B)"),
    ("not not A", "not not A"),
    ("(not A) and B", "not A and B"),
    ("not A.count > 1", "not A.count > 1"),
    ("(A or B) or C", "(A or B) or C"),   # nesting is kept: the AST has two Or nodes
    ("A or (B or C)", "A or (B or C)"),
    ("(A and B) and C", "(A and B) and C"),
    ("(A < B) < C", "(A < B) < C"),
    ("A < B < C", "A < B < C"),
    ("(A or B).count", None),
])
def test_expressions_get_minimal_parentheses(written, canonical):
    out, diagnostics = format_text(f"endpoint X {{ require {written} }}")
    if canonical is None:
        assert out is None and diagnostics
        return
    assert out.splitlines()[1] == f"  require {canonical}"
    assert_round_trip(out)


def test_sources_align_in_a_run_of_rules():
    out = fmt("endpoint A { hospital main icd10 I21 death icd10 I21\n reimbursement kela 115\n\n"
              "purchase atc A10 title \"t\" cancer topography C50 }")
    assert out.splitlines()[1:6] == [
        "  hospital      main icd10 I21",
        "  death         icd10 I21",
        "  reimbursement kela 115",
        "",
        "  purchase atc A10",
    ]


# -- comments -----------------------------------------------------------------------------

COMMENTED = """\
# file header

# about CL
codelist CL icd10 (I21  # a
  # b
  I22 | I23)   # c
endpoint A {   # header
  title "x"    # t
  # before the rule
  hospital main icd10 I21 | I22 # r1
    icd9 410 # r2
  death icd10 ( # p
     # s1
     I21 # q
     I22
     ) except I2 # e
  require A and # inside an expression
     B
  controls { # c1
    exclude X, Y # c2
    # c3
  } # c4
  # last in body
}   # after the brace
# tail
"""


def test_comments_are_kept_in_place():
    out = assert_round_trip(COMMENTED)
    assert out == """\
# file header

# about CL
codelist CL icd10 (
  I21  # a
  # b
  I22
  I23
)  # c

endpoint A {  # header
  title "x"  # t
  # before the rule
  hospital main
    icd10 I21 | I22  # r1
    icd9 410  # r2
  death icd10 (  # p
    # s1
    I21  # q
    I22
  ) except (
    I2  # e
  )
  require A and B  # inside an expression
  controls {  # c1
    exclude X, Y  # c2
    # c3
  }  # c4
  # last in body
}  # after the brace

# tail
"""


def test_several_trailing_comments_on_one_printed_line_keep_their_order():
    out = fmt("endpoint A { include B, # one\n C # two\n}")
    assert out == "endpoint A {\n  # one\n  include B, C  # two\n}\n"
    assert_round_trip(out)


def test_comment_in_an_empty_endpoint_stays_inside():
    assert fmt("endpoint A {\n # nothing yet\n}") == "endpoint A {\n  # nothing yet\n}\n"


def test_trailing_whitespace_of_comments_is_dropped():
    assert fmt("endpoint A { sex male # why   \r\n}") == "endpoint A {\n  sex male  # why\n}\n"


def test_fractional_min_is_printed_as_written():
    # `min 2.5` is an error for check (EP401), but fmt must not change what was written.
    out = fmt("endpoint A { hospital min 2.5 icd10 I21 }")
    assert "min 2.5" in out
    assert_round_trip(out)


def test_the_deepest_allowed_condition_formats_and_round_trips():
    from endpointc.parser import MAX_NESTING

    condition = "not " * (MAX_NESTING // 2) + "(B or " * (MAX_NESTING // 2 - 1) + "B.count > 1" + ")" * (MAX_NESTING // 2 - 1)
    out = assert_round_trip(f"endpoint B {{ hospital icd10 I21 }}\nendpoint A {{ require {condition} }}\n")
    assert "not not" in out and "(B or (B or" in out


def test_stripping_spans_needs_no_recursion():
    # strip_spans walks with a loop: a tree far deeper than Python's recursion limit is fine.
    from endpointc import ast
    from endpointc.source import Span

    span = Span(file="x", line=1, column=1, end_line=1, end_column=2)
    expr = ast.EndpointRef(span=span, name="B")
    for _ in range(5000):
        expr = ast.Not(span=span, arg=expr)
    plain = strip_spans(expr)
    for _ in range(5000):
        plain = plain["Not"]["arg"]
    assert plain == {"EndpointRef": {"kind": "ref", "name": "B"}}
