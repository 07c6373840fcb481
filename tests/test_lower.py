"""Lowering: the AST -> plan mapping of the rules (docs/language.md, rules and sources), and the compiler pipeline."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from hypothesis import given, settings, strategies as st

from endpointc import ast, lower as lower_module
from endpointc.check import index_library
from endpointc.compiler import compile_paths, compile_program, compile_text
from endpointc.diagnostics import DiagnosticError
from endpointc.lower import CODE_ALPHABET, LowerError, lower, lower_patterns
from endpointc.parser import parse
from endpointc.registers import REGISTERS
from endpointc.plan import (
    CODE_COLUMNS, AllOf, AnyOf, Cmp, CodeSet, ColumnTest, Const, Count, EventField, FirstAge, FirstYear, IsCase,
    Negate,
)


def plan_of(text: str):
    """Lower without `check`, so lowering itself is what is tested."""
    tree, diagnostics = parse(text)
    assert tree is not None, diagnostics
    return lower(index_library([tree]))


def rule_of(text: str, name: str = "A"):
    return plan_of(text).get(name).rules[0]


def columns_of(branch) -> dict[str, list[CodeSet]]:
    found: dict[str, list[CodeSet]] = {}
    for test in branch.tests:
        found.setdefault(test.column, []).append(test.codes)
    return found


def test_every_vocabulary_of_the_registers_table_is_a_language_vocabulary_on_a_code_column():
    used = set()
    for source, register in REGISTERS.items():
        assert register.rows, source
        for vocab, vocabulary in register.vocabularies.items():
            assert vocab in ast.VOCABULARIES, (source, vocab)
            assert vocabulary.column in CODE_COLUMNS, (source, vocab)
            assert all(pin.column in CODE_COLUMNS for pin in vocabulary.pins)
            used.add(vocab)
    assert used == set(ast.VOCABULARIES)


@pytest.mark.parametrize("text, roles", [
    ("hospital main icd10 I21", ["pattern", "pin", "main"]),
    ("hospital with atc icd10 I21", ["pattern", "pin", "with_atc"]),
    ("cancer behaviour any", ["pattern"]),
    ("primary icd10 I21&I22", ["pattern", "pattern", "pin"]),
])
def test_each_column_test_says_what_it_is_for(text, roles):
    rule = rule_of(f"endpoint A {{ {text} }}")
    assert [t.role for t in rule.branches[0].tests] == roles


def test_pattern_tests_keep_each_pattern_as_written():
    rule = rule_of("codelist L icd10 E1[01]\n"
                   "endpoint A { hospital icd10 I21-I22 | =X99 | @L except I219 }")
    test = rule.branches[0].tests[0]
    assert [w.text for w in test.written] == ["I21-I22", "=X99", "E1[01]"]
    assert test.written_match("I221") == "I21-I22" and test.written_match("E105") == "E1[01]"
    assert test.written_match("X99") == "=X99" and test.written_match("X991") is None
    assert [w.text for w in rule.branches[0].excepts[0][0].written] == ["I219"]
    assert rule.source_rows == ("INPAT", "OUTPAT") and not rule.counted


def test_a_rule_without_branches_still_knows_its_rows():
    rule = rule_of("endpoint A { purchase atc none }")
    assert rule.branches == () and rule.source_rows == ("PURCH",) and rule.counted  # purchase: min 3


@pytest.mark.parametrize("source, rows", [
    ("hospital", ("INPAT", "OUTPAT")), ("inpatient", ("INPAT",)), ("outpatient", ("OUTPAT",)),
    ("death", ("DEATH",)),
])
def test_icd_sources_are_alternatives_by_icdver(source, rows):
    rule = rule_of(f"endpoint A {{ {source} icd10 I21 icd9 410 icd8 410 }}")
    assert len(rule.branches) == 3
    versions = []
    for branch in rule.branches:
        assert branch.sources == rows
        tests = columns_of(branch)
        assert set(tests) == {"CODE1", "ICDVER"}
        versions.append(tests["ICDVER"][0].exact)
    assert versions == [("10",), ("9",), ("8",)]


@pytest.mark.parametrize("vocab, categories", [
    ("icd10", ("ICD",)), ("icpc2", ("ICP",)), ("procedure", ("OP", "MOP")),
])
def test_primary_vocabularies_pin_category(vocab, categories):
    branch = rule_of(f"endpoint A {{ primary {vocab} X1 }}").branches[0]
    assert branch.sources == ("PRIM_OUT",)
    assert columns_of(branch)["CATEGORY"] == [CodeSet(prefixes=categories)]
    assert columns_of(branch)["CODE1"] == [CodeSet(prefixes=("X1",))]


@pytest.mark.parametrize("vocab, categories", [
    ("nomesco", ("NOM",)), ("hl", ("MFHL", "SFHL")), ("hp1", ("HPO",)), ("hp2", ("HPN",)),
])
def test_operation_vocabularies(vocab, categories):
    branch = rule_of(f"endpoint A {{ operation {vocab} AB1 }}").branches[0]
    assert branch.sources == ("OPER_IN", "OPER_OUT")
    assert columns_of(branch) == {"CODE1": [CodeSet(prefixes=("AB1",))], "CATEGORY": [CodeSet(prefixes=categories)]}


def test_reimbursement_kela_and_icd_is_one_branch_per_version():
    rule = rule_of("endpoint A { reimbursement kela 202 icd10 M05 icd9 714 }")
    assert len(rule.branches) == 2
    for branch, version, code in zip(rule.branches, ("10", "9"), ("M05", "714")):
        assert branch.sources == ("REIMB",)
        assert columns_of(branch) == {
            "CODE1": [CodeSet(prefixes=("202",))], "CODE2": [CodeSet(prefixes=(code,))],
            "ICDVER": [CodeSet(exact=(version,))],
        }


def test_purchase_and_cancer_vocabularies_hold_together():
    purchase = rule_of("endpoint A { purchase atc A10B vnr 123 kela 215 }")
    assert purchase.min_events == 3
    assert len(purchase.branches) == 1
    assert set(columns_of(purchase.branches[0])) == {"CODE1", "CODE2", "CODE3"}
    cancer = rule_of("endpoint A { cancer topography C50 morphology 8500 behaviour 3 }")
    assert len(cancer.branches) == 1
    assert columns_of(cancer.branches[0]) == {
        "CODE1": [CodeSet(prefixes=("C50",))], "CODE2": [CodeSet(prefixes=("8500",))],
        "CODE3": [CodeSet(prefixes=("3",))],
    }


def test_combination_is_its_own_branch_on_code1_and_code2():
    rule = rule_of("endpoint A { hospital icd10 I21&I10 | I22 }")
    plain, combination = rule.branches
    assert columns_of(plain)["CODE1"] == [CodeSet(prefixes=("I22",))]
    assert columns_of(combination) == {
        "CODE1": [CodeSet(prefixes=("I21",))], "CODE2": [CodeSet(prefixes=("I10",))],
        "ICDVER": [CodeSet(exact=("10",))],
    }


def test_excepts_are_per_clause():
    rule = rule_of("endpoint A { hospital icd10 I21 except I219 | I21&E11 icd9 410 }")
    icd10, icd9 = rule.branches
    meaning = [[(t.column, t.codes) for t in conjunction] for conjunction in icd10.excepts]
    assert meaning == [[("CODE1", CodeSet(prefixes=("I219",)))],
                       [("CODE1", CodeSet(prefixes=("I21",))), ("CODE2", CodeSet(prefixes=("E11",)))]]
    assert icd9.excepts == ()


def test_options():
    main = rule_of("endpoint A { hospital main icd10 I21 }")
    assert CodeSet(exact=("0",)) in columns_of(main.branches[0])["CATEGORY"]
    death = rule_of("endpoint A { death main icd10 I21 }")
    assert columns_of(death.branches[0])["CATEGORY"] == [CodeSet(exact=("U",))]
    primary = rule_of("endpoint A { primary main icd10 I21 }")
    assert CodeSet(exact=("ICD0", "ICP0", "OP0", "MOP0")) in columns_of(primary.branches[0])["CATEGORY"]
    atc = rule_of("endpoint A { hospital with atc icd10 Y57 }")
    assert columns_of(atc.branches[0])["CODE3"] == [CodeSet(prefixes=("",))]
    assert rule_of("endpoint A { hospital min 2 icd10 I21 }").min_events == 2
    assert rule_of("endpoint A { purchase single atc A10 }").min_events == 1
    assert rule_of("endpoint A { hospital icd10 I21 }").min_events == 1
    rule = rule_of("endpoint A { purchase needs other mode atc A10 }")
    assert (rule.needs_other, rule.mode, rule.source) == (True, True, "purchase")


@pytest.mark.parametrize("written, expected", [
    ("E11", CodeSet(prefixes=("E11",))),
    ("E10-E12", CodeSet(prefixes=("E10", "E11", "E12"))),
    ("A98-B01", CodeSet(prefixes=("A98", "A99", "B00", "B01"))),
    ("2500A-2500C", CodeSet(prefixes=("2500A", "2500B", "2500C"))),
    ("F3[2-3]", CodeSet(prefixes=("F32", "F33"))),
    ("=E11[89]", CodeSet(exact=("E118", "E119"))),
    ("any", CodeSet(prefixes=("",))),
    ('re"^C34.?[12]"', CodeSet(regexes=("^C34.?[12]",))),
    ("E11 | =E119 | E11", CodeSet(prefixes=("E11",), exact=("E119",))),
])
def test_patterns(written, expected):
    assert rule_of(f"endpoint A {{ hospital icd10 {written} }}").branches[0].tests[0].codes == expected


def test_none_and_empty_select_nothing():
    assert rule_of("endpoint A { hospital icd10 none }").branches == ()
    rule = rule_of("endpoint A { hospital icd10 none icd9 410 }")
    assert [columns_of(b)["ICDVER"][0].exact for b in rule.branches] == [("9",)]


def test_dot_expands_over_the_code_alphabet():
    codes = rule_of("endpoint A { hospital icd10 C34. }").branches[0].tests[0].codes
    assert codes.prefixes == tuple(f"C34{c}" for c in CODE_ALPHABET)


def test_large_expansion_is_an_anchored_regex():
    codes = rule_of("endpoint A { hospital icd10 A..[0-9] }").branches[0].tests[0].codes
    assert codes.prefixes == () and len(codes.regexes) == 1
    exact = rule_of("endpoint A { hospital icd10 =A..[0-9] }").branches[0].tests[0].codes
    assert exact.regexes[0].endswith("$")


_PATTERN_PART = st.one_of(
    st.sampled_from(list("AE019")),
    st.just("."),
    st.sampled_from(["[0-3]", "[AB9]", "[A-C1]"]),
)


@contextmanager
def expansion_limit(value: int):
    original = lower_module.EXPANSION_LIMIT
    lower_module.EXPANSION_LIMIT = value
    try:
        yield
    finally:
        lower_module.EXPANSION_LIMIT = original


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(_PATTERN_PART, min_size=1, max_size=4), exact=st.booleans(),
       codes=st.lists(st.text(alphabet="AB0139EZ", min_size=0, max_size=6), max_size=30))
def test_regex_form_means_the_same_as_the_expansion(parts, exact, codes):
    """The two forms of a character-class pattern agree on every code."""
    text = ("=" if exact else "") + "".join(parts)
    tree, _ = parse(f"endpoint A {{ hospital icd10 {text} }}")
    pattern = tree.endpoints[0].rules[0].clauses[0].patterns[0]
    expanded = lower_patterns([pattern])
    with expansion_limit(0):
        as_regex = lower_patterns([pattern])
    assert as_regex.regexes and not as_regex.prefixes and not as_regex.exact
    for code in codes + ["".join(p[1] if p.startswith("[") else ("B" if p == "." else p) for p in parts)]:
        assert expanded.matches(code) == as_regex.matches(code), (text, code)


def test_codelists_expand_recursively():
    plan = plan_of("""
        codelist OUTER icd10 @INNER | I22
        codelist INNER icd10 I21 | I23&I10
        endpoint A { hospital icd10 @OUTER }
    """)
    plain, combination = plan.get("A").rules[0].branches
    assert plain.tests[0].codes == CodeSet(prefixes=("I21", "I22"))
    assert columns_of(combination)["CODE2"] == [CodeSet(prefixes=("I10",))]


def test_conditions():
    plan = plan_of("""
        endpoint B { hospital icd10 B01 }
        endpoint C { hospital icd10 C01 }
        endpoint A {
          hospital icd10 A01
          when 4 <= age <= 40 or emergency
          require (B or not C) and B.count > 1
          require C.age < B.age and B.year >= 2000
          sex female
          controls { exclude B, C  require not B }
          controls { require C }
        }
    """)
    a = plan.get("A")
    age, emergency = EventField(name="age"), EventField(name="emergency")
    assert a.when == AnyOf(args=(
        AllOf(args=(Cmp(op="<=", left=Const(value=4), right=age), Cmp(op="<=", left=age, right=Const(value=40)))),
        emergency,
    ))
    assert a.require == AllOf(args=(
        AllOf(args=(AnyOf(args=(IsCase(endpoint="B"), Negate(arg=IsCase(endpoint="C")))),
                    Cmp(op=">", left=Count(endpoint="B"), right=Const(value=1)))),
        AllOf(args=(Cmp(op="<", left=FirstAge(endpoint="C"), right=FirstAge(endpoint="B")),
                    Cmp(op=">=", left=FirstYear(endpoint="B"), right=Const(value=2000)))),
    ))
    assert a.sex == "female"
    assert a.control_exclude == ("B", "C")
    assert a.control_require == AllOf(args=(Negate(arg=IsCase(endpoint="B")), IsCase(endpoint="C")))
    assert plan.names.index("A") > plan.names.index("B")
    assert plan.get("B").sex is None and plan.get("B").when is None and plan.get("B").require is None


def test_spans_are_carried():
    plan = plan_of("endpoint A {\n  hospital icd10 I21\n}\n")
    a = plan.get("A")
    assert (a.span.line, a.rules[0].span.line, a.rules[0].span.column) == (1, 2, 3)


def test_lower_refuses_what_it_cannot_mean():
    for text in ("endpoint A { hospital icd10 E10-E1 }", "endpoint A { purchase main atc A10 }",
                 "endpoint A { when A.count > 1 }", "endpoint A { require age < 3 }"):
        tree, _ = parse(text)
        with pytest.raises(LowerError) as raised:
            lower(index_library([tree]))
        assert raised.value.diagnostic.code == "EP490"


# -- the compiler ----------------------------------------------------------------------

def test_compile_paths_reads_folders_sorted(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.ep").write_text("endpoint B { include A }")
    (tmp_path / "sub" / "a.ep").write_text("endpoint A { hospital icd10 I21 }")
    (tmp_path / "notes.txt").write_text("not a definition")
    program, diagnostics = compile_paths([tmp_path])
    assert diagnostics == () and program.names == ("A", "B")


def test_compile_reports_errors_from_every_file(tmp_path):
    (tmp_path / "a.ep").write_text("endpoint A { hospital icd10 I21 I22 }")
    (tmp_path / "b.ep").write_text("endpoint B {")
    program, diagnostics = compile_paths([tmp_path])
    assert program is None
    assert sorted(d.span.file.rsplit("/", 1)[-1] for d in diagnostics) == ["a.ep", "b.ep"]
    with pytest.raises(DiagnosticError) as raised:
        compile_program([tmp_path])
    assert len(raised.value.diagnostics) == 2


def test_compile_text_runs_check():
    program, diagnostics = compile_text("endpoint A { include MISSING }")
    assert program is None and any(d.is_error for d in diagnostics)
