"""Vocabulary well-formedness, pattern regexes and the FSM-based 'can match' check."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from endpointc import ast, codes
from endpointc.source import Span

S = Span(file="t.ep", line=1, column=1, end_line=1, end_column=1)
REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "finngen"


def code(text):
    return ast.Code(span=S, text=text)


@pytest.mark.parametrize("vocab, good, bad", [
    ("icd10", ["I21", "E119", "I2142", "ZA10"], ["4109A", "I2", "21"]),
    ("icd9", ["410", "4100B", "E802F", "V01"], ["I21", "41"]),
    ("icd8", ["410", "28404", "E9209"], ["I21", "270440"]),
    ("atc", ["A", "A10", "A10B", "A10BA", "A10BA02", "A02BDXX"], ["A1", "A10BA2", "N02A02"]),
    ("nomesco", ["NFB20", "FN1AT", "1CX01"], ["5210", "N"]),
    ("hl", ["5311"], ["AN2"]),
    ("hp1", ["82", "111"], ["AN2"]),
    ("hp2", ["AN2", "ASX"], ["82"]),
    ("icpc2", ["T90"], ["T9", "T900"]),
    ("kela", ["103", "115", "1509"], ["10", "A10"]),
    ("vnr", ["012345"], ["12345"]),
    ("topography", ["C50", "C509"], ["D50", "C5"]),
    ("morphology", ["8140"], ["814"]),
    ("behaviour", ["3"], ["33"]),
])
def test_well_formed(vocab, good, bad):
    assert [c for c in good if not codes.is_well_formed(vocab, c)] == []
    assert [c for c in bad if codes.is_well_formed(vocab, c)] == []


def test_every_vocabulary_has_a_regex_and_an_example():
    assert set(codes.VOCABULARY_REGEX) == set(ast.VOCABULARIES) == set(codes.VOCABULARY_EXAMPLES)


@pytest.mark.parametrize("vocab, pattern, expected", [
    ("icd10", code("E11"), True),
    ("icd10", code("4109A"), False),
    ("icd10", code("F3[2-3]"), True),
    ("icd10", code("C34.[123457]"), True),
    ("icd10", code("I"), True),
    ("icd9", code("K03"), False),
    ("icd9", code("0084E"), True),
    ("atc", code("A10BA0[1-3]"), True),
    ("atc", code("N02A02"), False),
    ("topography", code("C50"), True),
    ("topography", code("D50"), False),
    ("behaviour", code("[23]"), True),
    ("kela", code("1150"), True),
    ("kela", code("11500"), False),
    ("icd10", ast.Exact(span=S, text="E11"), True),
    ("icd10", ast.Exact(span=S, text="E1"), False),
    ("icd10", ast.Range(span=S, start="E10", end="E14"), True),
    ("icd10", ast.Range(span=S, start="410", end="414"), False),
    ("hl", ast.Regex(span=S, regex="^5311$"), True),
    ("hl", ast.Regex(span=S, regex="^53111111$"), False),
    ("nomesco", ast.Regex(span=S, regex="^FN[AB]"), True),
    ("icd10", ast.Regex(span=S, regex="^(?=E)E11"), True),  # a look-ahead is not read: assume it matches
    ("icd10", ast.AnyCode(span=S), True),
    ("icd10", ast.NoCode(span=S), True),
])
def test_can_match(vocab, pattern, expected):
    assert codes.can_match(vocab, pattern) is expected


@pytest.mark.parametrize("pattern, matches, misses", [
    (code("E11"), ["E11", "E119"], ["E1", "XE11"]),
    (code("C34.[123457]"), ["C3401", "C3417"], ["C3416", "C341"]),
    (ast.Exact(span=S, text="E119"), ["E119"], ["E1190", "E11"]),
    (ast.Range(span=S, start="C18", end="C21"), ["C18", "C199", "C21"], ["C17", "C22", "C1A"]),
    (ast.Range(span=S, start="X85", end="Y09"), ["X85", "X99", "Y00", "Y09"], ["X84", "Y10"]),
    (ast.AnyCode(span=S), ["A", "123"], []),
    (ast.NoCode(span=S), [], ["A", "E11"]),
    (ast.Regex(span=S, regex="^C34.?[12]"), ["C341", "C3412"], ["C343", "XC341"]),
    (ast.Regex(span=S, regex="A|B"), ["A1", "B2"], ["CA", "CB"]),
])
def test_pattern_regex(pattern, matches, misses):
    rx = re.compile(codes.pattern_regex(pattern))
    assert [m for m in matches if not rx.match(m)] == []
    assert [m for m in misses if rx.match(m)] == []


def test_pattern_regex_resolves_codelists_and_rejects_combinations():
    lists = {"DM": ast.Codelist(span=S, name="DM", name_span=S, parts=(
        ast.CodelistPart(span=S, vocab="icd10", patterns=(code("E10"), code("E11"))),))}
    rx = codes.pattern_regex(ast.CodelistRef(span=S, name="DM"), codelists=lists)
    assert re.match(rx, "E119") and not re.match(rx, "E12")
    with pytest.raises(ValueError):
        codes.pattern_regex(ast.CodelistRef(span=S, name="DM"))
    with pytest.raises(ValueError):
        codes.pattern_regex(ast.Combination(span=S, first=code("I21"), second=code("I10")))


def test_range_regex_is_exact_on_digit_ranges():
    for start, end in [("0", "9"), ("05", "17"), ("099", "101"), ("123", "123"), ("4000", "4019")]:
        rx = re.compile(codes.range_regex(start, end))
        n = len(start)
        wrong = [s for s in (str(v).zfill(n) for v in range(10 ** n))
                 if (rx.fullmatch(s) is not None) != (start <= s <= end)]
        assert wrong == [], (start, end)


@pytest.mark.parametrize("start, end", [("E10", "E1"), ("E14", "E10"), ("E1.", "E19")])
def test_range_regex_rejects_bad_ranges(start, end):
    with pytest.raises(ValueError):
        codes.range_regex(start, end)


# -- calibration on real FinnGen files ---------------------------------------------

SUMMARY = REFERENCE / "LongitudinalDummyDataGenerator_summary_R12v1" / "CODE1_CODE2_CODE3_vocabulary_summary.tsv"
ROW_VOCAB = {
    ("INPAT", "10"): "icd10", ("OUTPAT", "10"): "icd10", ("DEATH", "10"): "icd10", ("PRIM_OUT", "ICD"): "icd10",
    ("INPAT", "9"): "icd9", ("DEATH", "9"): "icd9", ("INPAT", "8"): "icd8",
    ("OPER_IN", "NOM"): "nomesco", ("OPER_OUT", "NOM"): "nomesco", ("OPER_IN", "MFHL"): "hl",
    ("OPER_IN", "SFHL"): "hl", ("OPER_IN", "HPO"): "hp1", ("OPER_IN", "HPN"): "hp2", ("PRIM_OUT", "ICP"): "icpc2",
}


@pytest.mark.skipif(not SUMMARY.exists(), reason="FinnGen reference summary not available")
def test_real_registry_codes_are_well_formed():
    bad: dict[str, int] = {}
    total: dict[str, int] = {}

    def see(vocab, value):
        if value in ("NA", ""):
            return
        total[vocab] = total.get(vocab, 0) + 1
        if not codes.is_well_formed(vocab, value):
            bad[vocab] = bad.get(vocab, 0) + 1

    with open(SUMMARY, encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            key = (row["SOURCE"], row["vocabulary"])
            if key in ROW_VOCAB:
                see(ROW_VOCAB[key], row["CODE1"])
            elif row["SOURCE"] == "PURCH":
                see("atc", row["CODE1"])
                see("kela", row["CODE2"])
            elif row["SOURCE"] == "CANC":
                see("topography", row["CODE1"])
                see("morphology", row["CODE2"])
                see("behaviour", row["CODE3"])
    # Registry noise (-1, ICD-9 codes stored as ICD-10, HL codes under NOM) stays below 3%.
    rates = {v: bad.get(v, 0) / total[v] for v in total}
    assert {v: r for v, r in rates.items() if r > 0.03} == {}


DF12 = REFERENCE / "FINNGEN_ENDPOINTS_DF12_Final_2023-05-17.tsv"
COLUMN_VOCAB = {"HD_ICD_10": "icd10", "HD_ICD_9": "icd9", "HD_ICD_8": "icd8", "KELA_ATC": "atc",
                "CANC_TOPO": "topography", "CANC_MORPH": "morphology", "KELA_REIMB": "kela"}


def _alternatives(cell: str):
    depth, current = 0, ""
    for ch in cell:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            yield current.strip()
            current = ""
        else:
            current += ch
    yield current.strip()


@pytest.mark.skipif(not DF12.exists(), reason="FinnGen reference definitions not available")
@pytest.mark.parametrize("every", [
    pytest.param(1, marks=pytest.mark.slow),  # all ~9,000 distinct patterns: about 30 s
    25,                                        # a fixed sample for the default suite
])
def test_real_definition_patterns_are_rarely_flagged(every):
    plain = re.compile(r"(?:[A-Z0-9.]|\[[^\]\s]*\])+")
    seen: set[tuple[str, str]] = set()
    with open(DF12, encoding="utf-8-sig", errors="replace", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            for column, vocab in COLUMN_VOCAB.items():
                cell = (row.get(column) or "").replace("\xa0", " ").strip().lstrip("%")
                if cell and cell not in ("ANY", "$!$"):
                    seen.update((vocab, p) for p in _alternatives(cell) if p and "&" not in p)
    sample = sorted(seen)[::every]
    flagged = [(v, p) for v, p in sample
               if not codes.can_match(v, code(p) if plain.fullmatch(p) else ast.Regex(span=S, regex=p))]
    assert len(sample) > 200
    # The few flagged ones are real mistakes in the file (ICD-10 codes under ICD-9 and so on).
    assert len(flagged) / len(sample) < 0.01, flagged[:20]


# -- registry codes a rule matches (`compile --codes`), with and without an event index ------

LIBRARY = """\
codelist HEART icd10 I2 | I5
endpoint A {
  hospital main icd10 @HEART | K except K2
  primary icd10 J | R0-R2 | re"Z[0-4]"
  purchase atc any
}
endpoint B {
  include A
  hospital icd10 none
  death icd10 I | J
}
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A synthetic registry of 30 people, its event index and a library of odd patterns."""
    from endpointc.compiler import compile_text
    from endpointc.index import build_index
    from endpointc.synth import write_registry

    root = tmp_path_factory.mktemp("registry")
    write_registry(root / "reg", people=30, seed=2, fmt="tsv")
    build_index(root / "reg" / "events.tsv", root / "reg" / "people.tsv", root / "idx")
    (root / "defs.ep").write_text(LIBRARY, encoding="utf-8")
    program, diagnostics = compile_text(LIBRARY)
    assert program is not None, diagnostics
    return root, program


def test_matched_codes_select_what_the_reference_engine_selects(registry):
    from endpointc.describe import code_keys, matched_codes
    from endpointc.engine.reference import judge
    from endpointc.registry import scan_events

    root, program = registry
    keys = code_keys(scan_events(root / "reg" / "events.tsv"))
    for name in program.names:
        expected = {}
        for row in keys.iter_rows(named=True):
            for rule in program.get(name).rules:
                if judge(rule, row).selected:
                    at = (rule.index + 1, row["SOURCE"], row["CODE1"], row["CODE2"], row["CODE3"])
                    expected[at] = expected.get(at, 0) + row["_ROWS"]
        got = matched_codes(program, name, keys, mask_threshold=None)
        assert {tuple(r[:5]): r[5] for r in got.rows()} == expected and expected
        order = [tuple((v is None, v) for v in r[:5]) for r in got.rows()]  # nulls last
        assert order == sorted(order)


def test_the_index_gives_the_same_codes_and_counts_masked_as_ever(registry):
    from endpointc.describe import matched_codes
    from endpointc.index import open_index
    from endpointc.registry import scan_events

    root, program = registry
    index = open_index(root / "idx")
    events = scan_events(root / "reg" / "events.tsv")
    for name in program.names:
        for threshold in (None, 5):
            plain = matched_codes(program, name, events, mask_threshold=threshold)
            assert plain.equals(matched_codes(program, name, index.keys(), mask_threshold=threshold))
        assert "<5" in plain["N_EVENTS"]  # masked, through masking.py as without the index


def _compile_codes(root: Path, *extra: str):
    from typer.testing import CliRunner

    from endpointc.cli import app

    return CliRunner().invoke(app, ["compile", str(root / "defs.ep"), "--explain", "A", *extra])


def _codes_table(output: str) -> str:
    return output.split("N_EVENTS", 1)[1].split("Polars plan", 1)[0]


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


def test_compile_codes_reads_the_index_given_or_configured(registry, tmp_path):
    import shutil

    root, _ = registry
    events = root / "reg" / "events.tsv"
    plain = _compile_codes(root, "--codes", str(events))
    assert plain.exit_code == 0, plain.output
    given = _compile_codes(root, "--codes", str(events), "--index", str(root / "idx"))
    assert given.exit_code == 0, given.output
    assert "from the index" in _flat(given.stdout) and "from the index" not in _flat(plain.stdout)
    assert _codes_table(given.stdout) == _codes_table(plain.stdout)
    assert _codes_table(_compile_codes(root, "--index", str(root / "idx")).stdout) == _codes_table(plain.stdout)

    # configured: used for the events table it was built from; for another, said and passed by
    shutil.copy(root / "defs.ep", tmp_path / "defs.ep")
    (tmp_path / "endpointc.toml").write_text(f'index = "{root / "idx"}"\n', encoding="utf-8")
    configured = _compile_codes(tmp_path, "--codes", str(events))
    assert configured.exit_code == 0 and "from the index" in _flat(configured.stdout)
    other = tmp_path / "events.tsv"
    shutil.copy(events, other)
    passed_by = _compile_codes(tmp_path, "--codes", str(other))
    assert passed_by.exit_code == 0, passed_by.output
    said = _flat(passed_by.stderr)
    assert "not using the configured index" in said and "was built from events file" in said
    assert _codes_table(passed_by.stdout) == _codes_table(plain.stdout)
    refused = _compile_codes(tmp_path, "--codes", str(other), "--index", str(root / "idx"))
    assert refused.exit_code == 2 and "was built from events file" in _flat(refused.stderr)
