"""export-finngen, then import-finngen: every endpoint exported without a warning comes back
with the same meaning (its plan, up to spelling), and every loss is an EP620 warning that
names the endpoint and the construct.

Meaning is compared on plans (`meaning` below) and, for the starter library, on results:
both programs evaluated on a definition-aware synthetic registry. The real freezes in
../shared/reference/finngen/ are read when present: DF6 by default on a sample of its rows
(with everything they refer to), every freeze in full as `slow`.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endpointc import ast
from endpointc.compiler import compile_files, parse_paths
from endpointc.engine import evaluate
from endpointc.finngen import export_finngen, import_finngen, read_table, split_alternatives
from endpointc.finngen.patterns import code_pattern, spell_codes
from endpointc.lower import CODE_ALPHABET, lower_patterns
from endpointc.parser import parse
from endpointc.plan import EndpointPlan, Program
from endpointc.source import Span
from endpointc.synth import generate

DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "finngen"
FREEZES = sorted(p.name for p in REFERENCE.glob("FINNGEN_ENDPOINTS_*")) if REFERENCE.is_dir() else []
DEFAULT_FREEZE = "FINNGEN_ENDPOINTS_DF6_2020-06-08_public.csv"


# -- meaning: a plan without what only spells it --------------------------------------------

def meaning(endpoint: EndpointPlan) -> tuple:
    """What decides an endpoint's results, without spans, rule order or pattern spelling.

    A branch is a conjunction of column tests, each a union of codes, so it is the union of
    its *atoms*: one code per test (`I21&E09|I21&E1[0-1]` and `I21&E09-E11` have the same
    atoms). Rules that count nothing per person (min 1, no `needs other`, no `mode`) select
    the union of their atoms, however they are split into rules.
    """
    plain: set = set()
    counted = []
    for rule in endpoint.rules:
        found = {atom for branch in rule.branches for atom in _atoms(branch)}
        if rule.min_events == 1 and rule.spacing is None and not (rule.needs_other or rule.mode):
            plain |= found
        else:
            counted.append(repr((rule.min_events, rule.spacing, rule.spacing_days, rule.needs_other, rule.mode,
                                 sorted(map(repr, found)))))
    return (endpoint.name, frozenset(plain), tuple(sorted(counted)), frozenset(endpoint.includes),
            _condition(endpoint.when), _condition(endpoint.require), endpoint.sex,
            frozenset(endpoint.control_exclude), _condition(endpoint.control_require))


def _items(test) -> list[tuple]:
    codes = test.codes
    return ([(test.column, test.role, "prefix", p) for p in codes.prefixes]
            + [(test.column, test.role, "exact", e) for e in codes.exact]
            + [(test.column, test.role, "regex", r) for r in codes.regexes])


def _conjunctions(tests) -> frozenset:
    return frozenset(frozenset(combo) for combo in itertools.product(*(_items(t) for t in tests)))


def _atoms(branch) -> frozenset:
    excepts = frozenset(atom for tests in branch.excepts for atom in _conjunctions(tests))
    return frozenset((frozenset(branch.sources), atom, excepts) for atom in _conjunctions(branch.tests))


def _condition(cond) -> Any:
    return None if cond is None else _canonical(cond.model_dump())


def _canonical(node: Any) -> Any:
    """`and`/`or` flattened and unordered, a one-operand `and` its operand."""
    if isinstance(node, dict):
        if node.get("kind") in ("all", "any"):
            args = []
            for arg in node["args"]:
                arg = _canonical(arg)
                args.extend(arg[1] if isinstance(arg, tuple) and arg[0] == node["kind"] else [arg])
            return args[0] if len(args) == 1 else (node["kind"], frozenset(args))
        return tuple(sorted((k, _canonical(v)) for k, v in node.items()))
    if isinstance(node, (list, tuple)):
        return tuple(_canonical(v) for v in node)
    return node


def compiled(files) -> Program:
    program, diagnostics = compile_files(files)
    assert program is not None, [str(d) for d in diagnostics if d.is_error][:5]
    return program


def round_trip(files, tmp_path: Path, name: str = "export.tsv"):
    """(exported table, re-imported result) of `files`."""
    out = tmp_path / name
    exported = export_finngen(files, out)
    return exported, import_finngen(out)


def warned(diagnostics) -> dict[str, list[str]]:
    """EP620 messages by the endpoint they name (`NAME: ...`)."""
    out: dict[str, list[str]] = {}
    for d in diagnostics:
        assert d.code == "EP620" and not d.is_error, str(d)
        name, _, message = d.message.partition(": ")
        out.setdefault(name, []).append(message)
    return out


def changed(before: Program, after: Program) -> list[str]:
    assert set(after.names) == set(before.names)
    return [n for n in before.names if meaning(before.get(n)) != meaning(after.get(n))]


def closure(program: Program, names) -> set[str]:
    """The endpoints among `names` and every endpoint that reads one of them."""
    out = set(names)
    for endpoint in program.endpoints:  # dependency order: readers come after
        if set(endpoint.dependencies) & out:
            out.add(endpoint.name)
    return out


# -- one construct at a time ----------------------------------------------------------------

_SPAN = Span(file="t", line=1, column=1, end_line=1, end_column=1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(CODE_ALPHABET, min_size=1, max_size=3), min_size=2, max_size=2).filter(
    lambda ends: len(ends[0]) == len(ends[1])))
def test_a_range_is_written_as_code_patterns_with_exactly_its_codes(ends):
    start, end = sorted(ends)
    codes = lower_patterns([ast.Range(span=_SPAN, start=start, end=end)]).prefixes
    spelled = spell_codes(codes)
    patterns = [code_pattern(text, _SPAN) for text in spelled]
    assert all(isinstance(p, ast.Code) for p in patterns), spelled  # read back as code patterns, no regex
    back = [lower_patterns([p]) for p in patterns]
    assert all(not b.regexes for b in back)  # each lowers to a list of codes, as the range does
    assert sorted(c for b in back for c in b.prefixes) == sorted(codes)


def export_text(text: str, tmp_path: Path):
    tree, diagnostics = parse(text)
    assert tree is not None, diagnostics
    exported, again = round_trip([tree], tmp_path)
    rows = {r[exported.header.index("NAME")]: dict(zip(exported.header, r)) for r in exported.rows}
    return rows, exported, again, compiled([tree]), compiled(again.files)


EXACT = [
    # ranges, as FinnGen writes them
    ("hospital icd10 C00-C97  icd9 140-208  icd8 140-209", {"HD_ICD_10": "C[0-8][0-9]|C9[0-7]",
                                                              "HD_ICD_9": "1[4-9][0-9]|20[0-8]"}),
    ("death icd10 J09-J11 except J10-J10", {"COD_ICD_10": "J09|J1[0-1]", "COD_ICD_10_EXCL": "J10"}),
    ("hospital icd9 2500A-2500C | 250.B", {"HD_ICD_9": "2500[A-C]|250.B"}),
    ("hospital icd10 A00-Z99", {}),  # more codes than one code pattern expands to: split
    ("hospital icd10 I21&E09-E11 | =I219", {"HD_ICD_10": "I21&E09|I21&E1[0-1]|^I219$"}),
    ("death icd10 =I219&E1[0-4]  primary icd10 N778&=L439", {"COD_ICD_10": "^I219$&E1[0-4]",
                                                              "OUTPAT_ICD": "N778&^L439$"}),
    # options FinnGen has a column for
    ("purchase min 1 atc A10A", {"KELA_ATC_NEEDOTHER": "SINGLE_OK"}),
    ("purchase single atc A10A  purchase min 3 vnr 123456",
     {"KELA_ATC_NEEDOTHER": "SINGLE_OK", "KELA_VNRO": "123456", "KELA_VNRO_NEEDOTHER": ""}),
    ("hospital icd10 E11  purchase needs other atc A10B", {"KELA_ATC_NEEDOTHER": "YES"}),
    ("hospital main with atc icd10 T88  hospital main icd9 995", {"HD_MAINONLY": "YES", "HD_ICD_10_ATC": "ANY"}),
    ("hospital mode icd10 E11 except E119 icd9 250  hospital icd10 E10 except E119",
     {"HD_ICD_10": "%E11|E10", "HD_ICD_9": "%250", "HD_ICD_10_EXCL": "E119"}),
    ("death main icd10 I21  hospital icd10 I21 | I22  hospital icd9 410", {"COD_MAINONLY": "YES"}),
    ("reimbursement kela 207 icd10 I48 icd9 4273", {"KELA_REIMB_ICD": "I48|4273"}),
    ("reimbursement kela 207  reimbursement kela 208", {"KELA_REIMB": "207|208"}),
    ("cancer topography C50 except C509 morphology any behaviour 3", {"CANC_TOPO_EXCL": "C509"}),
    ("primary icd10 I10 procedure SAA02  primary icd10 I11", {"OUTPAT_ICD": "I10|I11"}),
    ("operation nomesco FNG hl 0 hp1 1 hp2 2", {"OPER_NOM": "FNG"}),
    ("hospital icd10 none  death icd10 any", {"HD_ICD_10": "$!$", "COD_ICD_10": "ANY"}),
    ("hospital icd10 @CL", {"HD_ICD_10": "E1[0-4]|O24"}),
    ("hospital icd10 I21  when 16 <= age <= 44 and (year >= 2000 or emergency)",
     {"PRE_CONDITIONS": "16<=EVENT_AGE<=44&(EVENT_YEAR>=2000|EMERG)"}),
    ("include OTHER  require OTHER.count > 1 and not OTHER.age < 40 and OTHER.year >= 1990",
     {"CONDITIONS": "OTHER_NEVT>1&!OTHER_AGE<40&OTHER_YEAR>=1990"}),
    ("include OTHER  require OTHER  require not OTHER.count > 2 or OTHER",
     {"CONDITIONS": "OTHER&(!OTHER_NEVT>2|OTHER)"}),
    ("hospital icd10 I21  controls { exclude OTHER  require not OTHER }",
     {"CONTROL_EXCLUDE": "OTHER", "CONTROL_CONDITIONS": "!OTHER"}),
]

LOST = [
    ("purchase min 2 atc A10A", "`min 2` of a purchase rule"),
    ("purchase needs other min 1 atc A10A  hospital icd10 E10", "`min 1` of a purchase rule"),
    ("purchase atc A10A vnr 123456", "purchase rule with atc and vnr codes"),
    ("purchase kela 123", "purchase kela codes have no FinnGen column"),
    ("purchase atc N05A except N05AN01", "`except` of purchase atc codes"),
    ("purchase atc A10A  purchase atc A10B", "counted together"),
    ("hospital min 2 icd10 E11", "`min 2` of a hospital rule"),
    ("hospital min 2 apart 30 days icd10 E11", "never their spacing"),
    ("purchase min 3 within 1 year atc R03", "never their spacing"),
    ("hospital needs other icd10 E11  death icd10 E11", "`needs other` of a hospital rule"),
    ("hospital icd10 I21 except I219  hospital icd10 I22", "different `except` codes in HD_ICD_10"),
    ("hospital mode icd10 E11  hospital mode icd9 250", "`mode` would rank"),
    ("hospital main icd10 I21  hospital icd10 I22", "`main` on some hospital rules only"),
    ("hospital with atc icd10 T88 icd9 995", "`with atc` of hospital icd9 codes"),
    ("hospital with atc icd10 T88  hospital icd10 T89", "`with atc` on some hospital ICD-10 codes only"),
    ("death with atc icd10 T88", "`with atc` of a death rule"),
    ("primary main icd10 I21", "`main` of a primary rule"),
    ("primary icd10 I10  icpc2 K86", "primary icpc2 codes have no FinnGen column"),
    ("primary icd10 J44 except J440", "`except` of primary icd10 codes"),
    ("inpatient icd10 I21", "`inpatient` rules have no FinnGen column"),
    ("operation nomesco FNG except FNG10", "`except` of operation nomesco"),
    ("reimbursement kela 207 icd10 I48  reimbursement kela 208", "must match the same event"),
    ("reimbursement kela 207 icd9 any", "read as icd10"),
    ("cancer topography C50 behaviour 3 except 2", "`except` of cancer behaviour"),
    ("hospital icd10 re\"ANY\"", "FinnGen reads `ANY` as its own sign"),
    ("hospital icd10 I21  when OTHER", "reads other endpoints"),
    ("hospital icd10 I21  when date >= 1998-01-01", "dates or time relations"),
    ("hospital icd10 I21  when within 1 year after OTHER", "dates or time relations"),
    ("hospital icd10 I21  require OTHER within 1 year after B", "dates or time relations"),
    ("hospital icd10 I21  require B.age < 40", "so that FinnGen reads it back"),
]


def _library(body: str) -> str:
    return ("codelist CL icd10 E10-E14 | O24\n"
            "endpoint OTHER { hospital icd10 I63 }\nendpoint B { hospital icd10 I64 }\n"
            "endpoint B_AGE { hospital icd10 I65 }\n"
            f"endpoint A {{ {body} }}\n")


@pytest.mark.parametrize("body, cells", EXACT, ids=[b for b, _ in EXACT])
def test_what_finngen_can_say_comes_back_unchanged(body, cells, tmp_path):
    rows, exported, again, before, after = export_text(_library(body), tmp_path)
    assert exported.diagnostics == ()
    assert [d for d in again.diagnostics if d.code != "EP605"] == []  # nothing read as a regex (EP604)
    assert {c: rows["A"].get(c, "") for c in cells} == cells
    assert changed(before, after) == []


@pytest.mark.parametrize("body, construct", LOST, ids=[b for b, _ in LOST])
def test_what_finngen_cannot_say_is_an_ep620_naming_endpoint_and_construct(body, construct, tmp_path):
    _, exported, _, before, after = export_text(_library(body), tmp_path)
    messages = warned(exported.diagnostics)
    assert list(messages) == ["A"], messages
    assert any(construct in m for m in messages["A"]), messages
    # Something is lost indeed, and only in the endpoint the warning names.
    assert changed(before, after) == ["A"]


def test_the_warning_names_the_endpoints_that_read_the_lossy_one(tmp_path):
    rows, exported, *_ = export_text("endpoint U { purchase min 2 atc A10A }\n"
                                     "endpoint V { include U }\nendpoint W { require V }\n", tmp_path)
    (warning,) = exported.diagnostics
    assert warning.span is not None and warning.span.line == 1
    assert warning.hints == ("V, W read U, so their results change with it",)
    assert rows["U"]["KELA_ATC"] == "A10A" and rows["V"]["INCLUDE"] == "U"


def test_the_cli_says_which_endpoints_lose_something(tmp_path):
    from typer.testing import CliRunner

    from endpointc.cli import app

    (tmp_path / "a.ep").write_text(_library("purchase min 2 atc A10A"))
    out = tmp_path / "out.tsv"
    result = CliRunner().invoke(app, ["export-finngen", str(tmp_path / "a.ep"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # as one line, however the terminal wraps it
    assert "EP620" in said and "`min 2` of a purchase rule" in said
    assert "wrote 4 endpoint(s)" in said and "1 lose what FinnGen" in said
    assert out.read_text().count("\n") == 5


# -- the starter library --------------------------------------------------------------------

@pytest.fixture(scope="module")
def starter(tmp_path_factory):
    files, diagnostics = parse_paths([DEFINITIONS])
    assert not [d for d in diagnostics if d.is_error]
    exported, again = round_trip(files, tmp_path_factory.mktemp("starter"))
    return compiled(files), exported, again, compiled(again.files)


def test_starter_library_comes_back_unchanged_or_warned(starter):
    before, exported, again, after = starter
    lossy = warned(exported.diagnostics)
    assert exported.lossy == tuple(lossy)
    # The sheet reads back without regexes or marks: ranges and classes as FinnGen writes them.
    assert [str(d) for d in again.diagnostics] == []
    assert again.report.marked == ()
    # Every endpoint without a warning has the same meaning; every warning is a real loss.
    assert sorted(changed(before, after)) == sorted(lossy)
    assert len(lossy) < len(before.names) // 2


def test_starter_library_gives_the_same_results_on_a_synthetic_registry(starter):
    before, exported, _, after = starter
    events, people = generate(people=1500, seed=11, definitions=before)
    long_before = evaluate(before, events, people).long.collect()
    long_after = evaluate(after, events, people).long.collect()
    affected = closure(before, warned(exported.diagnostics))
    exact = [n for n in before.names if n not in affected]
    assert len(exact) > len(before.names) // 2
    for name in exact:
        a = long_before.filter(pl.col("ENDPOINT") == name)
        b = long_after.filter(pl.col("ENDPOINT") == name)
        assert a.equals(b), name
    # The comparison can see a difference: the lossy endpoints do differ somewhere.
    assert any(not long_before.filter(pl.col("ENDPOINT") == n).equals(long_after.filter(pl.col("ENDPOINT") == n))
               for n in affected)


# -- real freezes ---------------------------------------------------------------------------

def _freeze_param(name: str, *, fast: bool):
    short = (re.search(r"DF\d+", name) or [name])[0] + ("_txt" if name.endswith(".txt") else "")
    return pytest.param(name, marks=() if fast else pytest.mark.slow, id=short)


needs_freezes = pytest.mark.skipif(not FREEZES, reason=f"no FinnGen reference files in {REFERENCE}")


def _freeze_round_trip(path: Path, tmp_path: Path):
    result = import_finngen(path)
    exported, again = round_trip(result.files, tmp_path)
    return result, exported, again


@needs_freezes
@pytest.mark.parametrize("name", [_freeze_param(n, fast=False) for n in FREEZES])
def test_every_freeze_exports_without_loss_and_comes_back_unchanged(name, tmp_path):
    result, exported, again = _freeze_round_trip(REFERENCE / name, tmp_path)
    assert exported.diagnostics == ()
    assert changed(compiled(result.files), compiled(again.files)) == []


@needs_freezes
def test_a_sample_of_df6_exports_without_loss_and_comes_back_unchanged(tmp_path):
    """The default run's share of the test above, on a sample of DF6's rows."""
    if DEFAULT_FREEZE not in FREEZES:
        pytest.skip(f"{DEFAULT_FREEZE} is absent")
    header, rows, _ = read_table(REFERENCE / DEFAULT_FREEZE)
    sample = tmp_path / "sample.tsv"
    lines = [header, *_sample_rows(header, rows, every=12)]  # a TSV cell holds no line break
    sample.write_text("\n".join("\t".join(re.sub(r"[\t\r\n]+", " ", c) for c in r) for r in lines) + "\n")
    result, exported, again = _freeze_round_trip(sample, tmp_path)
    assert len(result.endpoints) > 400
    assert exported.diagnostics == ()
    assert changed(compiled(result.files), compiled(again.files)) == []
    # Ranges and classes stay as FinnGen wrote them: the rule columns read back cell by cell.
    back = {r[exported.header.index("NAME")]: dict(zip(exported.header, r)) for r in exported.rows}
    for values in _sample_rows(header, rows, every=12):
        record = dict(zip(header, values))
        for column in ("HD_ICD_10", "HD_ICD_9", "COD_ICD_10", "KELA_ATC", "KELA_REIMB_ICD", "CANC_MORPH"):
            if record.get(column, "").strip():
                assert _alternatives(record[column]) == _alternatives(back[record["NAME"]][column]), \
                    (record["NAME"], column)


def _alternatives(text: str) -> set[str]:
    return {a.removeprefix("^") for a in split_alternatives(re.sub(r"[\s\u00a0]+", "", text))}


def _sample_rows(header, rows, *, every: int, most: int = 12):
    """Every `every`-th row naming an endpoint whose references (followed to the end) name
    at most `most` rows, with those rows: a sheet that refers to nothing outside it."""
    names = header.index("NAME")
    by_name = {r[names].strip(): r for r in rows if r[names].strip()}
    words = re.compile(r"[A-Za-z0-9_.]+")
    refs = [header.index(c) for c in ("INCLUDE", "CONDITIONS", "CONTROL_EXCLUDE", "CONTROL_CONDITIONS") if c in header]

    def closure_of(name: str) -> dict[str, None]:
        seen: dict[str, None] = {}
        stack = [name]
        while stack and len(seen) <= most:
            name = stack.pop()
            if name not in seen:
                seen[name] = None
                stack.extend(c for i in refs for word in words.findall(by_name[name][i])
                             for c in (word, re.sub(r"_(NEVT|AGE|YEAR)$", "", word)) if c in by_name)
        return seen

    wanted: dict[str, None] = {}
    for row in rows[::every]:
        if row[names].strip() in by_name and len(found := closure_of(row[names].strip())) <= most:
            wanted.update(found)
    return [row for row in rows if row[names].strip() in wanted]
