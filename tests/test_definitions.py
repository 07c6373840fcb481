"""The starter library in definitions/: parses, names resolve, and passes `check --strict`."""

from __future__ import annotations

from pathlib import Path

import pytest

from endpointc import ast
from endpointc.check import check, endpoint_dependencies
from endpointc.compiler import compile_paths
from endpointc.parser import parse_file

DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"
FILES = tuple(sorted(DEFINITIONS.glob("*.ep")))

# Areas the library promises to cover (issue 2); each is one file.
EXPECTED_FILES = {
    "cardio.ep", "diabetes.ep", "respiratory.ep", "cancer.ep", "mental.ep",
    "autoimmune.ep", "drugs.ep", "operations.ep", "womens_mens.ep",
}


def _parse_all() -> tuple[ast.File, ...]:
    parsed = []
    for path in FILES:
        tree, diags = parse_file(path)
        assert tree is not None and not diags, f"{path.name}: " + "; ".join(map(str, diags))
        parsed.append(tree)
    return tuple(parsed)


@pytest.fixture(scope="module")
def files() -> tuple[ast.File, ...]:
    return _parse_all()


@pytest.fixture(scope="module")
def endpoints(files) -> dict[str, ast.Endpoint]:
    return {e.name: e for f in files for e in f.endpoints}


def test_every_area_has_a_file():
    assert EXPECTED_FILES <= {p.name for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_file_parses(path):
    tree, diags = parse_file(path)
    assert not diags, "; ".join(map(str, diags))
    assert tree is not None and tree.declarations


def test_names_are_unique_across_files(files):
    seen: dict[str, str] = {}
    duplicates = []
    for f in files:
        for decl in f.declarations:
            if decl.name in seen:
                duplicates.append(f"{decl.name} in {Path(f.name).name} and {seen[decl.name]}")
            seen[decl.name] = Path(f.name).name
    assert not duplicates


def test_at_least_40_endpoints(endpoints):
    assert len(endpoints) >= 40


def test_references_resolve(files, endpoints):
    codelists = {c.name: c for f in files for c in f.codelists}
    missing = [f"{e.name} -> {dep}" for e in endpoints.values()
               for dep in endpoint_dependencies(e) if dep not in endpoints]
    assert not missing

    def refs(patterns):
        for p in patterns:
            parts = (p.first, p.second) if isinstance(p, ast.Combination) else (p,)
            yield from (q for q in parts if isinstance(q, ast.CodelistRef))

    bad = []
    for e in endpoints.values():
        for rule in e.rules:
            for clause in rule.clauses:
                for ref in refs(clause.patterns + clause.excepts):
                    if ref.name not in codelists:
                        bad.append(f"{e.name}: @{ref.name} is not defined")
                    elif codelists[ref.name].vocab != clause.vocab:
                        bad.append(f"{e.name}: @{ref.name} is {codelists[ref.name].vocab}, used as {clause.vocab}")
    assert not bad


def test_no_dependency_cycles(endpoints):
    # Depth-first search with colours; a grey node met again closes a cycle.
    colour: dict[str, int] = {}
    cycles: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        colour[name] = 1
        for dep in endpoint_dependencies(endpoints[name]):
            if dep not in endpoints:
                continue
            if colour.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]) if dep in path else dep)
            elif dep not in colour:
                visit(dep, path + [dep])
        colour[name] = 2

    for name in sorted(endpoints):
        if name not in colour:
            visit(name, [name])
    assert not cycles


def test_every_endpoint_has_title_and_tags(endpoints):
    lacking = [n for n, e in endpoints.items() if not e.meta.get("title") or not e.meta.get("tags")]
    assert not lacking


def test_sex_specific_endpoints(endpoints):
    assert endpoints["C3_BREAST"].sex == "female"
    assert endpoints["C3_PROSTATE"].sex == "male"
    assert endpoints["N14_ENDOMETRIOSIS"].sex == "female"


def test_library_exercises_the_language(files, endpoints):
    """The starter library doubles as a showcase: each construct appears at least once."""
    options = {o.name for e in endpoints.values() for r in e.rules for o in r.options}
    assert {"main", "min", "single", "needs_other", "mode", "with_atc"} <= options
    sources = {r.source for e in endpoints.values() for r in e.rules}
    assert {"hospital", "primary", "death", "operation", "reimbursement", "purchase", "cancer"} <= sources
    vocabs = {(r.source, c.vocab) for e in endpoints.values() for r in e.rules for c in r.clauses}
    assert {("primary", "icd10"), ("primary", "icpc2"), ("cancer", "behaviour"),
            ("reimbursement", "kela"), ("operation", "nomesco"), ("purchase", "atc")} <= vocabs

    patterns = [p for e in endpoints.values() for r in e.rules for c in r.clauses
                for p in c.patterns + c.excepts]
    kinds = {type(p).__name__ for p in patterns}
    assert {"Code", "Range", "Exact", "AnyCode", "CodelistRef"} <= kinds
    assert any("[" in p.text for p in patterns if isinstance(p, ast.Code))
    assert any(c.excepts for e in endpoints.values() for r in e.rules for c in r.clauses)

    items = {type(i).__name__ for e in endpoints.values() for i in e.items}
    assert {"Include", "When", "Require", "Sex", "Controls"} <= items
    attrs = set()

    def walk(x):
        if isinstance(x, ast.Attr):
            attrs.add(x.attr)
        for child in getattr(x, "args", ()) + getattr(x, "operands", ()):
            walk(child)
        if isinstance(x, ast.Not):
            walk(x.arg)

    for e in endpoints.values():
        for i in e.items:
            if isinstance(i, ast.Require):
                walk(i.condition)
    assert {"count", "age"} <= attrs
    whens = [i.condition for e in endpoints.values() for i in e.items if isinstance(i, ast.When)]
    assert any(isinstance(w, ast.Var) and w.name == "emergency" for w in whens)


def test_check_is_clean_in_strict_mode(files):
    _, diagnostics = check(files, strict=True)
    assert not diagnostics, "\n".join(map(str, diagnostics))


def test_library_lowers_to_a_plan():
    program, diagnostics = compile_paths([DEFINITIONS])
    errors = [d for d in diagnostics if d.is_error]
    assert program is not None and not errors, "\n".join(map(str, errors))
