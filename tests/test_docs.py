"""The documentation stands alone: a reader with only this repository can follow every link.

- every spec folder (`tests/spec/<feature>/`) is linked from the language reference, so each
  pinned behaviour has its place in docs/language.md;
- every relative link (and `#anchor`) of README.md, ARCHITECTURE.md and docs/*.md resolves;
- the docs, the grammar's comments and the benchmarks do not send the reader outside the
  repository (to files that are not in it, or to tracker issue numbers), and the benchmark
  scripts do not hard-code an interpreter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LANGUAGE = REPO / "docs" / "language.md"
LINKED_DOCS = sorted([REPO / "README.md", REPO / "ARCHITECTURE.md", *(REPO / "docs").glob("*.md"),
                      *(REPO / "examples").glob("*/README.md")])
SPEC_FOLDERS = sorted(p.name for p in (REPO / "tests" / "spec").iterdir()
                      if p.is_dir() and not p.name.startswith(("_", ".")))
# What users of the package read: the docs, the grammar's comments, the benchmarks.
READ_BY_USERS = sorted([
    REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "grammar" / "endpoint.lark",
    REPO / "benchmarks" / "README.md", *(REPO / "benchmarks").glob("*.py"),
])

# [text](target): inline links; images too. Code spans are removed first.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _prose(path: Path) -> str:
    """The Markdown text without fenced blocks and code spans (their brackets are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))


def _links(path: Path) -> list[str]:
    return _LINK.findall(_prose(path))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.*)$", text, re.M)}


def _is_external(target: str) -> bool:
    return bool(re.match(r"[a-z][a-z0-9+.-]*:", target))  # http:, https:, mailto:, ...


def test_every_spec_folder_is_linked_from_the_language_reference():
    assert SPEC_FOLDERS, "no spec folders found"
    linked = set()
    for target in _links(LANGUAGE):
        resolved = (LANGUAGE.parent / target.split("#")[0]).resolve()
        if resolved.parent == (REPO / "tests" / "spec").resolve():
            linked.add(resolved.name)
    missing = [name for name in SPEC_FOLDERS if name not in linked]
    assert not missing, f"tests/spec folders not linked from docs/language.md: {missing}"


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for target in _links(doc):
        if _is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (doc.parent / path_part).resolve() if path_part else doc
        if not destination.exists():
            broken.append(target)
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links that do not resolve: {broken}"


# Pointers outside the repository: the language contract and notes kept elsewhere, absolute
# paths of one machine, and tracker issue numbers ("issue 6", "issue-6", "#3").
_OUTSIDE = [
    (re.compile(r"LANGUAGE\.md"), "a language contract outside the repository"),
    (re.compile(r"SEMANTICS"), "semantics notes outside the repository"),
    (re.compile(r"\bnotes/"), "a notes folder outside the repository"),
    (re.compile(r"/work/"), "an absolute path of one machine"),
    (re.compile(r"\bissues?[ -]?#?\d+", re.I), "a tracker issue number"),
    (re.compile(r"(?:^|[\s,;:])#\d+\b", re.M), "a tracker issue number"),
    # The FinnGen reference files may be read from ../shared/reference/finngen (they are
    # not in the repository); nothing else of ../shared is.
    (re.compile(r"\.\./shared(?!/reference/finngen)"), "a shared folder outside the repository"),
]


@pytest.mark.parametrize("path", READ_BY_USERS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_pointer_outside_the_repository(path: Path):
    text = path.read_text(encoding="utf-8")
    found = []
    for pattern, what in _OUTSIDE:
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append(f"line {line}: {m.group().strip()!r} ({what})")
    assert not found, f"{path.relative_to(REPO)} points outside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("path", sorted((REPO / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_use_the_running_interpreter(path: Path):
    # `python benchmarks/x.py` with the interpreter that has endpointc installed, or
    # sys.executable for child processes: never a virtualenv of one machine.
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"venv/bin|/bin/python", text), f"{path.name} names a virtualenv's interpreter"
