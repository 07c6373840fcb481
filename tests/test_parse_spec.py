"""Spec tests: every construct of the language parses to the AST it means.

The examples of the language's contract are copied verbatim (tests/strategies.VALID_EXAMPLES).
Decisions taken where the contract is silent are documented in docs/language.md and tested
here under the same headings.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from endpointc import ast, parse
from endpointc.check import check
from endpointc.compiler import compile_text
from endpointc.fmt import ast_equal, format_file
from endpointc.parser import MAX_NESTING, parse_file
from endpointc.render import format_diagnostic, visible
from endpointc.source import Source

from strategies import VALID_EXAMPLES


def parse_ok(text: str) -> ast.File:
    file, diagnostics = parse(text, name="spec.ep")
    assert file is not None and diagnostics == (), diagnostics
    return file


def endpoint(body: str, name: str = "A") -> ast.Endpoint:
    file = parse_ok(f"endpoint {name} {{\n{body}\n}}")
    (decl,) = file.declarations
    return decl


def only_item(body: str):
    (item,) = endpoint(body).items
    return item


def patterns(text: str) -> tuple:
    """The patterns of `hospital icd10 TEXT`."""
    rule = only_item(f"hospital icd10 {text}")
    (clause,) = rule.clauses
    return clause.patterns


def expr(text: str, keyword: str = "require"):
    return only_item(f"{keyword} {text}").condition


def shape(node):
    """A compact, span-free picture of an expression tree."""
    kind = node.kind
    if kind == "number":
        return node.value
    if kind in ("var", "ref"):
        return node.name
    if kind == "attr":
        return f"{node.name}.{node.attr}"
    if kind == "not":
        return ("not", shape(node.arg))
    if kind in ("and", "or"):
        return (kind, *(shape(a) for a in node.args))
    if kind == "compare":
        out = [shape(node.operands[0])]
        for op, operand in zip(node.ops, node.operands[1:]):
            out += [op, shape(operand)]
        return ("cmp", *out)
    raise AssertionError(kind)


# -- 1. Files, names, comments --------------------------------------------------------

def test_example_1_myocardial_infarction():
    file = parse_ok(VALID_EXAMPLES[0])
    assert [c.text for c in file.comments] == [" definitions/cardio.ep -- a comment runs to the end of the line"]
    assert file.comments[0].span.line == 1
    (mi,) = file.endpoints
    assert mi.name == "I9_MI" and mi.name_span.line == 2 and mi.name_span.column == 10
    assert mi.meta == {"title": "Myocardial infarction", "tags": ("I9", "CARDIO"), "level": "3"}
    hospital, death = mi.rules
    for rule, source in ((hospital, "hospital"), (death, "death")):
        assert rule.source == source and rule.options == ()
        assert [c.vocab for c in rule.clauses] == ["icd10", "icd9", "icd8"]
        assert [[p.text for p in c.patterns] for c in rule.clauses] == [["I21", "I22"], ["410"], ["410"]]
        assert all(p.kind == "code" for c in rule.clauses for p in c.patterns)
        assert all(c.excepts == () for c in rule.clauses)
    assert [type(i).__name__ for i in mi.items] == ["Meta", "Meta", "Meta", "Rule", "Rule"]


def test_declarations_in_any_order_and_codelists():
    file = parse_ok("codelist DM_ICD10 icd10 E10-E14\nendpoint B { include A }\nendpoint A { hospital icd10 @DM_ICD10 }"
                    "\ncodelist LATE atc A10")
    assert [(d.kind, d.name) for d in file.declarations] == [
        ("codelist", "DM_ICD10"), ("endpoint", "B"), ("endpoint", "A"), ("codelist", "LATE")]
    assert [e.name for e in file.endpoints] == ["B", "A"]
    dm = file.codelists[0]
    assert dm.vocab == "icd10" and dm.patterns[0].kind == "range"
    assert (dm.patterns[0].start, dm.patterns[0].end) == ("E10", "E14")
    ref = file.endpoints[1].rules[0].clauses[0].patterns[0]
    assert ref.kind == "codelist" and ref.name == "DM_ICD10"


def test_empty_file_and_comment_only_file():
    assert parse_ok("").declarations == ()
    file = parse_ok("# nothing\n   # here\n")
    assert file.declarations == () and [c.text for c in file.comments] == [" nothing", " here"]


def test_comments_anywhere_are_recorded_with_spans():
    text = "endpoint A { # one\n  hospital icd10 ( I21 # two\n I22 ) # three\n}"
    file = parse_ok(text)
    assert [(c.text, c.span.line) for c in file.comments] == [(" one", 1), (" two", 2), (" three", 3)]
    assert text[file.comments[1].span.offset:file.comments[1].span.end_offset] == "# two"


@pytest.mark.parametrize("name", ["A", "I9_MI", "E4_DM2", "X_1_2", "Z9"])
def test_upper_case_names(name):
    assert endpoint("sex any", name).name == name


@pytest.mark.parametrize("text", ["endpoint i9_mi { }", "endpoint 9A { }", "endpoint _A { }", "endpoint A-B { }"])
def test_names_must_be_upper_case_identifiers(text):
    file, diagnostics = parse(text)
    assert file is None and diagnostics[0].code.startswith("EP1")


def test_spans_point_at_the_text():
    text = "endpoint A {\n  hospital icd10 I21 | I22\n}"
    item = parse_ok(text).endpoints[0].items[0]
    assert text[item.span.offset:item.span.end_offset] == "hospital icd10 I21 | I22"
    assert (item.span.line, item.span.column) == (2, 3)


# -- metadata ------------------------------------------------------------------------

@pytest.mark.parametrize("body, key, value", [
    ('title "Myocardial infarction"', "title", "Myocardial infarction"),
    ('latin "Infarctus myocardii"', "latin", "Infarctus myocardii"),
    ('note "from \\"Special\\" \\\\ column"', "note", 'from "Special" \\ column'),
    ('version "DF6"', "version", "DF6"),
    ("tags I9, CARDIO", "tags", ("I9", "CARDIO")),
    ('tags I9, "two words"', "tags", ("I9", "two words")),
    ("tags SOLO", "tags", ("SOLO",)),
    ("level 3", "level", "3"),
    ("level C", "level", "C"),
    ("parent I9_CHD", "parent", "I9_CHD"),
    ("omit 1", "omit", "1"),
    ("omit 2", "omit", "2"),
])
def test_metadata(body, key, value):
    item = only_item(body)
    assert isinstance(item, ast.Meta)
    assert (item.key, item.value, item.custom) == (key, value, False)


def test_custom_metadata():
    item = only_item('meta "HD_ICD_10_EXCL_INFO" "checked by \\"AK\\""')
    assert (item.key, item.value, item.custom) == ("HD_ICD_10_EXCL_INFO", 'checked by "AK"', True)


def test_metadata_keeps_the_authors_order_among_rules():
    e = endpoint('hospital icd10 I21\ntitle "x"\nsex male\nlevel 2')
    assert [i.kind for i in e.items] == ["rule", "meta", "sex", "meta"]
    assert e.meta == {"title": "x", "level": "2"}


# -- 2. Code patterns -------------------------------------------------------------------

def test_prefix_pattern():
    (p,) = patterns("E11")
    assert (p.kind, p.text) == ("code", "E11")


def test_range_pattern():
    (p,) = patterns("E10-E14")
    assert (p.kind, p.start, p.end) == ("range", "E10", "E14")


@pytest.mark.parametrize("text", ["F3[2-3]", "C34.[123457]", "C34.", "4[01]0", "250.B"])
def test_character_classes_and_dots_stay_in_the_code_text(text):
    (p,) = patterns(text)
    assert (p.kind, p.text) == ("code", text)


def test_alternatives_with_bars():
    ps = patterns("I21 | I22|I23")
    assert [(p.kind, p.text) for p in ps] == [("code", "I21"), ("code", "I22"), ("code", "I23")]


def test_alternatives_newline_separated_in_parentheses():
    ps = patterns("(\n  I21\n  I22 | I23\n  =I249\n)")
    assert [p.kind for p in ps] == ["code", "code", "code", "exact"]
    assert [getattr(p, "text") for p in ps] == ["I21", "I22", "I23", "I249"]


def test_parenthesised_bar_list():
    assert [p.text for p in patterns("(I21 | I22)")] == ["I21", "I22"]


def test_exact_pattern():
    (p,) = patterns("=E119")
    assert (p.kind, p.text) == ("exact", "E119")


def test_any_and_none():
    assert [p.kind for p in patterns("any")] == ["any"]
    assert [p.kind for p in patterns("none")] == ["none"]


def test_regex_pattern():
    (p,) = patterns('re"^C34.?[12]"')
    assert (p.kind, p.regex) == ("regex", "^C34.?[12]")


def test_regex_keeps_backslashes_and_unescapes_quotes():
    (p,) = patterns(r're"^C\d{2}\"x"')
    assert p.regex == r'^C\d{2}"x'


def test_combination_pattern():
    (p,) = patterns("I21&I10")
    assert p.kind == "combination"
    assert (p.first.kind, p.first.text, p.second.kind, p.second.text) == ("code", "I21", "code", "I10")


def test_combination_of_other_simple_patterns():
    (p,) = patterns("=I219 & E10-E14")
    assert (p.first.kind, p.second.kind) == ("exact", "range")


def test_codelist_reference():
    (p,) = patterns("@DIABETES_ICD10")
    assert (p.kind, p.name) == ("codelist", "DIABETES_ICD10")


@pytest.mark.parametrize("text", ["i21", "I21 I22", "I21 |", "=", "E10-", "@i"])
def test_malformed_patterns_are_syntax_errors(text):
    file, diagnostics = parse(f"endpoint A {{ hospital icd10 {text} }}")
    assert file is None and diagnostics[0].is_error and diagnostics[0].code.startswith("EP1")


# -- 3. Rules -----------------------------------------------------------------------------

SOURCE_VOCABS = [
    ("hospital", ("icd10", "icd9", "icd8")),
    ("inpatient", ("icd10", "icd9", "icd8")),
    ("outpatient", ("icd10", "icd9", "icd8")),
    ("primary", ("icd10", "icpc2", "procedure")),
    ("death", ("icd10", "icd9", "icd8")),
    ("operation", ("nomesco", "hl", "hp1", "hp2")),
    ("reimbursement", ("kela", "icd10", "icd9")),
    ("purchase", ("atc", "vnr")),
    ("cancer", ("topography", "morphology", "behaviour")),
]


@pytest.mark.parametrize("source, vocabs", SOURCE_VOCABS)
def test_every_source_with_its_vocabularies(source, vocabs):
    body = f"{source} " + "  ".join(f"{v} A1{i}" for i, v in enumerate(vocabs))
    rule = only_item(body)
    assert rule.kind == "rule" and rule.source == source
    assert tuple(c.vocab for c in rule.clauses) == vocabs
    assert [c.patterns[0].text for c in rule.clauses] == [f"A1{i}" for i in range(len(vocabs))]


def test_the_parser_accepts_any_vocabulary_after_any_source():
    # Whether a vocabulary belongs to a source is check's judgement (with a positioned
    # diagnostic), not a syntax error.
    rule = only_item("purchase icd10 I21")
    assert (rule.source, rule.clauses[0].vocab) == ("purchase", "icd10")


@pytest.mark.parametrize("text, options", [
    ("main", [("main", None)]),
    ("min 2", [("min", 2)]),
    ("single", [("single", None)]),
    ("needs other", [("needs_other", None)]),
    ("mode", [("mode", None)]),
    ("with atc", [("with_atc", None)]),
    ("main min 3 mode with atc", [("main", None), ("min", 3), ("mode", None), ("with_atc", None)]),
])
def test_options(text, options):
    rule = only_item(f"hospital {text} icd10 I21")
    assert [(o.name, o.value) for o in rule.options] == options
    assert rule.option(options[0][0]) is rule.options[0]


def test_purchase_needs_other():
    rule = only_item("purchase needs other atc H03AA")
    assert [o.name for o in rule.options] == ["needs_other"] and rule.clauses[0].patterns[0].text == "H03AA"


def test_except_belongs_to_its_vocabulary():
    rule = only_item("hospital icd10 I21 | I22 except I219 | =I220  icd9 410 except 4109")
    icd10, icd9 = rule.clauses
    assert [p.text for p in icd10.patterns] == ["I21", "I22"]
    assert [(p.kind, p.text) for p in icd10.excepts] == [("code", "I219"), ("exact", "I220")]
    assert [p.text for p in icd9.excepts] == ["4109"]


def test_cancer_rule_all_vocabularies_in_one_rule():
    rule = only_item("cancer topography C50 morphology 8500 behaviour 3")
    assert [(c.vocab, c.patterns[0].text) for c in rule.clauses] == [
        ("topography", "C50"), ("morphology", "8500"), ("behaviour", "3")]


def test_several_rules_of_the_same_source_stay_separate():
    e = endpoint("hospital icd10 I21\nhospital main icd10 I22")
    assert [len(r.options) for r in e.rules] == [0, 1]


def test_include():
    item = only_item("include E4_DM2COMA, E4_DM2KETO")
    assert item.kind == "include" and [n.name for n in item.names] == ["E4_DM2COMA", "E4_DM2KETO"]
    assert endpoint("include X\ninclude Y, Z").includes[2].name == "Z"


# -- 4. Event filters, person conditions, sex, controls ------------------------------------

def test_example_2_diabetes_and_breast_cancer():
    file = parse_ok(VALID_EXAMPLES[1])
    dm2, early, breast = file.endpoints
    assert [e.name for e in file.endpoints] == ["E4_DM2", "T2D_EARLY", "C3_BREAST"]

    assert dm2.meta == {"title": "Type 2 diabetes"}
    assert [(r.source, r.clauses[0].vocab, r.clauses[0].patterns[0].text) for r in dm2.rules] == [
        ("hospital", "icd10", "E11"), ("death", "icd10", "E11"), ("purchase", "atc", "A10B")]
    assert [n.name for n in dm2.includes] == ["E4_DM2COMA", "E4_DM2KETO"]

    assert [i.kind for i in early.items] == ["meta", "include", "when", "require", "sex", "controls"]
    assert [n.name for n in early.includes] == ["E4_DM2"]
    when, require = early.items[2], early.items[3]
    assert shape(when.condition) == ("cmp", "age", "<", 40.0)
    assert shape(require.condition) == ("not", "E4_DM1")
    assert early.sex == "any"
    controls = early.items[5]
    exclude, control_require = controls.items
    assert exclude.kind == "exclude" and [n.name for n in exclude.names] == ["E4_DM1", "E4_DIABETES"]
    assert control_require.kind == "require" and shape(control_require.condition) == ("not", "DIABETES_FG")
    assert [c.text.strip() for c in file.comments] == [
        "event filter, also on included events (FinnGen PRE_CONDITIONS)",
        "person condition (FinnGen CONDITIONS)",
        "FinnGen CONTROL_EXCLUDE",
        "FinnGen CONTROL_CONDITIONS",
    ]

    assert breast.sex == "female" and breast.meta["title"] == "Malignant neoplasm of breast"
    death, reimb, cancer = breast.rules
    assert [(c.vocab, c.patterns[0].text) for c in death.clauses] == [("icd10", "C50"), ("icd9", "174"), ("icd8", "174")]
    assert (reimb.source, reimb.clauses[0].vocab, reimb.clauses[0].patterns[0].text) == ("reimbursement", "kela", "115")
    assert [(c.vocab, c.patterns[0].text) for c in cancer.clauses] == [("topography", "C50"), ("behaviour", "3")]


@pytest.mark.parametrize("text, expected", [
    ("age < 40", ("cmp", "age", "<", 40.0)),
    ("4 <= age <= 40", ("cmp", 4.0, "<=", "age", "<=", 40.0)),
    ("year >= 2000", ("cmp", "year", ">=", 2000.0)),
    ("emergency", "emergency"),
    ("not emergency", ("not", "emergency")),
    ("emergency and age > 18", ("and", "emergency", ("cmp", "age", ">", 18.0))),
    ("age < 18 or age > 65 and emergency",
     ("or", ("cmp", "age", "<", 18.0), ("and", ("cmp", "age", ">", 65.0), "emergency"))),
    ("age == 40.5", ("cmp", "age", "==", 40.5)),
    ("age != 40", ("cmp", "age", "!=", 40.0)),
])
def test_when(text, expected):
    item = only_item(f"when {text}")
    assert item.kind == "when" and shape(item.condition) == expected


def test_number_keeps_its_text():
    number = expr("age < 040.50", "when").operands[1]
    assert (number.value, number.text) == (40.5, "040.50")


@pytest.mark.parametrize("text, expected", [
    ("not E4_DM1", ("not", "E4_DM1")),
    ("K11_KELACROHN and K11_CROHN.count > 1",
     ("and", "K11_KELACROHN", ("cmp", "K11_CROHN.count", ">", 1.0))),
    ("GAST_OPER and GAST_OPER.age < ABDOM_HERNIA.age",
     ("and", "GAST_OPER", ("cmp", "GAST_OPER.age", "<", "ABDOM_HERNIA.age"))),
    ("A or B and C", ("or", "A", ("and", "B", "C"))),
    ("(A or B) and C", ("and", ("or", "A", "B"), "C")),
    ("not A and B", ("and", ("not", "A"), "B")),
    ("not (A and B)", ("not", ("and", "A", "B"))),
    ("not not A", ("not", ("not", "A"))),
    ("A and B and C", ("and", "A", "B", "C")),
    ("A or B or C", ("or", "A", "B", "C")),
    ("((A))", "A"),
    ("X.year >= 2010", ("cmp", "X.year", ">=", 2010.0)),
    ("not A.count > 1", ("not", ("cmp", "A.count", ">", 1.0))),
])
def test_require(text, expected):
    item = only_item(f"require {text}")
    assert item.kind == "require" and shape(item.condition) == expected


def test_several_requires_are_separate_items():
    e = endpoint("require A\nrequire not B")
    assert [shape(i.condition) for i in e.items] == ["A", ("not", "B")]


@pytest.mark.parametrize("value", ["female", "male", "any"])
def test_sex(value):
    e = endpoint(f"sex {value}")
    assert e.items[0].kind == "sex" and e.sex == value


def test_sex_defaults_to_any():
    assert endpoint("hospital icd10 I21").sex == "any"


def test_controls_block():
    item = only_item("controls {\n  exclude E4_DM1, E4_DIABETES\n  require not DIABETES_FG and X.count < 2\n"
                     "  exclude Z\n}")
    assert item.kind == "controls"
    assert [c.kind for c in item.items] == ["exclude", "require", "exclude"]
    assert [n.name for n in item.items[0].names] == ["E4_DM1", "E4_DIABETES"]
    assert shape(item.items[1].condition) == ("and", ("not", "DIABETES_FG"), ("cmp", "X.count", "<", 2.0))
    assert [n.name for n in item.items[2].names] == ["Z"]


def test_empty_controls_block_parses():
    assert only_item("controls { }").items == ()


@pytest.mark.parametrize("text", [
    "require !B", "require B & C", "require B | C", "hospital icd10 I21 main",
    "when age <", "require A.cnt > 1", "controls { include A }", "sex other",
])
def test_common_mistakes_are_syntax_errors_with_positions(text):
    file, diagnostics = parse(f"endpoint A {{\n  {text}\n}}")
    assert file is None
    (d,) = diagnostics
    assert d.is_error and d.code.startswith("EP1") and d.span is not None and d.span.line in (2, 3)


def test_when_and_require_share_one_expression_grammar():
    # Endpoint names in `when` and event fields in `require` parse; `check` rejects them with
    # a positioned diagnostic (so FinnGen's `when EVENT_AGE < 40` is check's EP407, not a syntax error).
    assert shape(expr("EVENT_AGE < 40", "when")) == ("cmp", "EVENT_AGE", "<", 40.0)
    assert shape(expr("age < 40", "require")) == ("cmp", "age", "<", 40.0)


def test_every_example_of_the_users_guide_parses():
    import re
    from pathlib import Path

    guide = Path(__file__).resolve().parents[1] / "docs" / "language.md"
    blocks = re.findall(r"```\n(.*?)```", guide.read_text(encoding="utf-8"), re.S)
    examples = [b for b in blocks if not b.startswith("file ")]  # the grammar summary is not code
    assert len(examples) >= 8
    for block in examples:
        parse_ok(block)


# -- 5. Limits: nesting, encodings, lines ------------------------------------------------------
# Conditions nest at most MAX_NESTING levels (EP112); deeper input is reported, never a
# RecursionError, and everything within the limit goes through every stage.

def _nots(levels: int) -> str:
    return "not " * (levels - 1) + "B.count > 1"


def _ands(levels: int) -> str:
    return "B and (" * (levels - 1) + "B and B" + ")" * (levels - 1)


def _mixed(levels: int) -> str:
    """or, and, not and a comparison inside one another, three levels per parenthesis."""
    text, depth = "B.count > 1", 1
    while depth + 3 <= levels:
        text, depth = f"B or B and not ({text})", depth + 3
    while depth < levels:
        text, depth = (f"not {text}", depth + 1) if depth % 2 else (f"B and ({text})", depth + 1)
    return text


SHAPES = {"not": _nots, "and": _ands, "mixed": _mixed}


def _depth(expr) -> int:
    children = {"not": lambda e: [e.arg], "and": lambda e: e.args, "or": lambda e: e.args,
                "compare": lambda e: e.operands}.get(expr.kind)
    return 0 if children is None else 1 + max(_depth(c) for c in children(expr))


def _library(condition: str) -> str:
    return f"endpoint B {{ hospital icd10 I21 }}\nendpoint A {{\n  hospital icd10 I22\n  require {condition}\n}}\n"


def _with_frames_in_use(frames: int, function):
    """Call `function` below `frames` stack frames, as a caller deep in a framework would."""
    return function() if frames == 0 else _with_frames_in_use(frames - 1, function)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_deepest_allowed_condition_goes_through_every_stage(shape):
    text = _library(SHAPES[shape](MAX_NESTING))
    file = parse_ok(text)
    (require,) = [i for i in file.endpoints[1].items if i.kind == "require"]
    assert _depth(require.condition) == MAX_NESTING

    def every_stage():
        tree, _ = parse(text)
        again, _ = parse(format_file(tree))
        assert ast_equal(tree, again)
        program, diagnostics = compile_text(text)
        assert program is not None, diagnostics
        return check([tree])[1]

    assert _with_frames_in_use(300, every_stage) == ()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_one_level_more_is_reported_at_the_first_token_past_the_limit(shape):
    condition = SHAPES[shape](MAX_NESTING + 1)
    text = _library(condition)
    file, (d,) = parse(text, name="deep.ep")
    assert file is None and d.code == "EP112" and d.is_error
    assert d.message == f"condition nested more than {MAX_NESTING} levels deep"
    assert d.span.line == 4 and d.hints
    token = text[d.span.offset:d.span.end_offset]
    assert token in ("not", "B") and text.index(condition) <= d.span.offset
    # What starts there nests one level too deep: by itself it is within the limit.
    rest = condition[d.span.offset - text.index(condition):]
    if shape == "not":  # 100 `not`s, then the comparison is level 101
        assert d.span.offset == text.index("B.count > 1")
    assert parse(_library(rest.rstrip(")")))[0] is not None


@pytest.mark.parametrize("text", [
    _library("not " * 500 + "B"),
    _library("(" * 490 + "B" + ")" * 490),
    _library("(" * 490 + "not B and " * 3 + "B" + ")" * 490),
])
def test_the_reported_deep_inputs_give_a_diagnostic_or_parse(text):
    file, diagnostics = parse(text)
    assert (file is None and diagnostics[0].code == "EP112") or (file is not None and not diagnostics)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SHAPES)), st.integers(1, 3000), st.sampled_from(["require", "when"]))
def test_no_depth_escapes_as_a_recursion_error(shape, levels, keyword):
    condition = SHAPES[shape](levels)
    if keyword == "when":
        condition = condition.replace("B.count", "age").replace("B", "emergency")
    text = f"endpoint B {{ hospital icd10 I21 }}\nendpoint A {{ hospital icd10 I22 {keyword} {condition} }}"
    file, diagnostics = parse(text)
    if file is None:
        assert [d.code for d in diagnostics] == ["EP112"] and levels > MAX_NESTING
        return
    assert levels <= MAX_NESTING
    _with_frames_in_use(300, lambda: (check([file]), compile_text(text), format_file(file)))


# A file that is not UTF-8 is reported at the line and column of its first bad byte, as the
# parser would count them, with what is wrong with that byte.

@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60),
       st.sampled_from([b"\xe4", b"\xe4x", b"\x80", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f\x98"]),
       st.text(st.characters(max_codepoint=127), max_size=5).map(str.encode), st.booleans())
@example("endpoint A {\n  title \"K", b"\xe4", b'rki" }', False)
def test_a_file_that_is_not_utf8_is_reported_at_its_first_bad_byte(tmp_path_factory, before, bad, after, bom):
    path = tmp_path_factory.mktemp("enc") / "latin.ep"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + before.encode("utf-8") + bad + after)
    file, (d,) = parse_file(path)
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    assert file is None and d.code == "EP101" and d.span.file == str(path)
    assert (d.span.line, d.span.column) == (line, column)
    assert d.message.startswith(f"{path} is not UTF-8 text: ")
    assert d.message.endswith(f"(line {line}, column {column})")
    assert f"0x{bad[0]:02X}" in d.message and "byte " in d.message
    # The quoted line is the one the position names, its bad byte under the caret.
    rendered = format_diagnostic(d, Source.read(path)).splitlines()
    assert rendered[3].endswith(f"| {visible(Source.read(path).line(line))}".rstrip())


def test_the_encoding_problem_is_named():
    messages = {}
    for name, raw in [("start", b"endpoint \x80"), ("cut", b"endpoint A {\n title \"K\xe4rki\""),
                      ("end", b"endpoint A \xe2\x82"), ("utf16", "endpoint".encode("utf-16"))]:
        path = Path(__import__("tempfile").mkdtemp()) / f"{name}.ep"
        path.write_bytes(raw)
        (d,) = parse_file(path)[1]
        messages[name] = (d.message.split(": ", 1)[1], d.hints)
    assert messages["start"][0] == "byte 0x80 cannot begin a character (line 1, column 10)"
    assert messages["cut"][0] == "byte 0xE4 begins a character that the bytes after it do not complete (line 2, column 10)"
    assert messages["end"][0] == "the file ends inside a character (byte 0xE2 begins it) (line 1, column 12)"
    assert "Windows-1252" in messages["cut"][1][0] and "UTF-16" in messages["utf16"][1][0]


# Lines end at '\n' only, as the parser counts them: a form feed, a vertical tab, U+0085,
# U+2028 or U+2029 before an error must not shift the line that the message quotes.
ODD = "\f\v\x85\u2028\u2029\r\x1c"


@st.composite
def _files_with_odd_characters_before_an_error(draw) -> str:
    lines = ["endpoint A {"]
    for _ in range(draw(st.integers(0, 6))):
        odd = draw(st.text(st.sampled_from(ODD + "ab "), min_size=1, max_size=6))
        lines.append(draw(st.sampled_from([f"  # {odd}", f'  note "{odd}"'.replace("\r", ""),
                                           f"  hospital icd10 I21 #{odd}"])))
    gap = draw(st.sampled_from(["", "\f", "\f ", " \x0c\t"]))
    lines.append(draw(st.sampled_from([f"{gap}  hospital icd10 I21 I22", f"  {gap}include a",
                                       f"  title {gap}Myocardial", f"{gap}  require B | C"])))
    return "\n".join(lines) + "\n}\n"


@settings(max_examples=100, deadline=None)
@given(_files_with_odd_characters_before_an_error())
def test_the_quoted_line_is_the_line_the_position_names(text):
    file, diagnostics = parse(text, name="odd.ep")
    assert file is None
    (d,) = diagnostics
    line = text.count("\n", 0, d.span.offset) + 1
    column = d.span.offset - (text.rfind("\n", 0, d.span.offset) + 1) + 1
    assert (d.span.line, d.span.column) == (line, column)
    source = Source("odd.ep", text)
    quoted = text.split("\n")[line - 1]
    rendered = format_diagnostic(d, source).splitlines()
    assert rendered[3] == f" {line} | {visible(quoted)}".rstrip()
    carets = rendered[4].index("^") - rendered[4].index("|") - 2
    assert visible(quoted)[carets] == visible(text[d.span.offset])
