"""Every real FinnGen freeze in ../shared/reference/finngen/ imports completely, checks clean,
and survives import -> export -> import.

DF6 (CSV) runs by default; the other freezes, and the whole-library parse and check, are
`slow` (a freeze is ~4,500 endpoints: parsing and checking all of them takes a minute).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest

from endpointc import ast, parse
from endpointc.finngen import (
    RULE_COLUMNS, export_finngen, import_finngen, read_table, split_alternatives,
)
from endpointc.finngen.conditions import ConditionParser
from endpointc.fmt import ast_equal, format_file, strip_spans

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "finngen"
FREEZES = sorted(p.name for p in REFERENCE.glob("FINNGEN_ENDPOINTS_*")) if REFERENCE.is_dir() else []
DEFAULT = "FINNGEN_ENDPOINTS_DF6_2020-06-08_public.csv"
CONDITION_COLUMNS = ("PRE_CONDITIONS", "CONDITIONS", "CONTROL_CONDITIONS")

pytestmark = pytest.mark.skipif(not FREEZES, reason=f"no FinnGen reference files in {REFERENCE}")


def freeze_params(*, default_fast: bool):
    return [pytest.param(name, marks=() if default_fast and name == DEFAULT else pytest.mark.slow, id=_short(name))
            for name in FREEZES]


def _short(name: str) -> str:
    match = re.search(r"DF\d+", name)
    return (match.group(0) if match else name) + ("_txt" if name.endswith(".txt") else "")


@lru_cache(maxsize=2)
def imported(name: str):
    return import_finngen(REFERENCE / name)


@lru_cache(maxsize=2)
def source_table(name: str):
    header, rows, _ = read_table(REFERENCE / name)
    return header, rows


def endpoint_rows(name: str) -> list[dict[str, str]]:
    header, rows = source_table(name)
    out = []
    for row in rows:
        record = dict(zip(header, row))
        if record.get("NAME", "").strip() and not record["NAME"].startswith("#") \
                and not record.get("TAGS", "").startswith("#ALL"):
            out.append(record)
    return out


@pytest.mark.parametrize("name", freeze_params(default_fast=True))
def test_every_endpoint_row_imports(name):
    result = imported(name)
    rows = endpoint_rows(name)
    assert [d for d in result.diagnostics if d.is_error] == []
    assert result.report.endpoints_written == len(rows) == len(result.endpoints)
    names = {e.meta.get("FINNGEN_NAME", e.name) for e in result.endpoints}
    assert names == {r["NAME"].strip() for r in rows}
    # Every marked endpoint says why, and every mark has a warning behind it.
    for e in result.endpoints:
        if e.name in result.report.marked:
            assert e.meta["IMPORT_ISSUE"]
    assert result.report.warnings == sum(1 for d in result.diagnostics if not d.is_error)


@pytest.mark.parametrize("name", freeze_params(default_fast=True))
def test_import_export_import_same_asts_and_rule_columns(name, tmp_path):
    result = imported(name)
    out = tmp_path / "export.tsv"
    exported = export_finngen(result.files, out)
    assert exported.diagnostics == ()
    again = import_finngen(out)
    assert [e.name for e in again.endpoints] == [e.name for e in result.endpoints]
    different = [a.name for a, b in zip(result.endpoints, again.endpoints) if not ast_equal(a, b)]
    assert different == []

    # Export reproduces every rule column of the source up to whitespace, alternative order,
    # FinnGen's redundant leading `^` and redundant parentheses in conditions.
    header, rows = read_table(out)[:2]
    back = {r[header.index("NAME")]: dict(zip(header, r)) for r in rows}
    names = {e.meta.get("FINNGEN_NAME", e.name): e.name for e in result.endpoints}
    mismatches = []
    for record in endpoint_rows(name):
        raw = record["NAME"].strip()
        for column in RULE_COLUMNS:
            if column in record and _norm(column, record[column], names) != _norm(column, back[raw].get(column, ""), names):
                mismatches.append((raw, column, record[column], back[raw].get(column)))
    assert mismatches == []


def _norm(column: str, text: str, names):
    text = re.sub(r"[\s\u00a0]+", "", text or "")
    if not text:
        return None
    if column in CONDITION_COLUMNS:
        from endpointc.source import Span
        try:
            expr = ConditionParser(text, Span(file="", line=1, column=1, end_line=1, end_column=1), names,
                                   event_level=column == "PRE_CONDITIONS").parse()
        except Exception:
            return text
        return repr(strip_spans(expr))
    return frozenset(a[1:] if a.startswith("^") else a for a in split_alternatives(text))


@pytest.mark.slow
@pytest.mark.parametrize("name", freeze_params(default_fast=False))
def test_library_formats_parses_back_and_checks_clean(name):
    from endpointc.check import check

    result = imported(name)
    parsed = []
    for file in result.files:
        tree, diagnostics = parse(format_file(file), name=file.name)
        assert tree is not None, (file.name, diagnostics)
        assert ast_equal(tree, file), file.name
        parsed.append(tree)
    _, found = check(parsed)
    assert [str(d) for d in found if d.is_error] == []


def test_quirky_chapters_of_df6_format_and_parse_back():
    """The default run's share of the slow test above: the chapters holding the quirks."""
    if DEFAULT not in FREEZES:
        pytest.skip(f"{DEFAULT} is absent")
    result = imported(DEFAULT)
    quirky = [f for f in result.files if any(
        isinstance(i, ast.Meta) and i.custom and i.key in RULE_COLUMNS for e in f.endpoints for i in e.items)
        or any(isinstance(p, (ast.Regex, ast.Combination)) for e in f.endpoints for r in e.rules
               for c in r.clauses for p in c.patterns)]
    assert len(quirky) >= 3
    # The smallest ones: parsing is the slow part, and a quirk is a quirk in any chapter.
    for file in sorted(quirky, key=lambda f: len(f.declarations))[:5]:
        tree, diagnostics = parse(format_file(file), name=file.name)
        assert tree is not None, (file.name, diagnostics)
        assert ast_equal(tree, file), file.name
