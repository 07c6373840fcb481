"""What the language server knows about one library: its files checked together, and where
every endpoint and codelist name is defined and mentioned.

An `Analysis` is immutable and built in one go from the texts of the library's files
(`analyse`), so that requests read a consistent picture while the next one is built. Files
are parsed only when their text changed. A file that does not parse while it is being
typed keeps the tree of its last version that did (it is *stale*): its names stay defined,
so its includers do not light up with unknown names at every keystroke; only its syntax
error is reported for it, and positions inside it are not looked up until it parses again.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Iterator, Literal, Mapping, Sequence

from .. import ast
from ..check import Library, check, endpoint_refs, index_library
from ..diagnostics import Diagnostic
from ..parser import parse
from ..source import Span

__all__ = ["Parsed", "Occurrence", "PatternSite", "Analysis", "Positions", "analyse", "parse_text",
           "library_of"]

Kind = Literal["endpoint", "codelist"]


@dataclass(frozen=True)
class Parsed:
    """One file's text and what the parser made of it."""

    text: str
    tree: ast.File | None
    diagnostics: tuple[Diagnostic, ...]


def parse_text(name: str, text: str, previous: Parsed | None = None) -> Parsed:
    """`text` parsed, or `previous` again when its text is the same."""
    if previous is not None and previous.text == text:
        return previous
    tree, diagnostics = parse(text, name=name)
    return Parsed(text, tree, diagnostics)


@dataclass(frozen=True)
class Occurrence:
    """A name where it is written: `span` covers the name only (not `@` or `.count`)."""

    kind: Kind
    name: str
    span: Span
    definition: bool = False


@dataclass(frozen=True)
class PatternSite:
    """A code pattern of a rule (`source` set) or of a codelist (`source` None)."""

    span: Span
    pattern: Any  # an ast.Pattern
    vocab: str
    source: str | None
    owner: str  # the endpoint or codelist it belongs to


class Positions:
    """Offsets of a text <-> (line, character) positions as an editor counts them: lines
    end at '\\n' (as the parser counts them) and characters are `encoding` code units."""

    def __init__(self, text: str):
        self.text = text
        starts = [0]
        at = text.find("\n")
        while at != -1:
            starts.append(at + 1)
            at = text.find("\n", at + 1)
        self.starts = starts

    def _line(self, number: int) -> str:
        end = self.starts[number + 1] - 1 if number + 1 < len(self.starts) else len(self.text)
        return self.text[self.starts[number]:end]

    def position(self, offset: int, encoding: str) -> tuple[int, int]:
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self.starts, offset) - 1
        return line, _units(self.text[self.starts[line]:offset], encoding)

    def offset(self, line: int, character: int, encoding: str) -> int:
        if line >= len(self.starts):
            return len(self.text)
        start = self.starts[max(line, 0)]
        counted = 0
        for index, char in enumerate(self._line(max(line, 0))):
            if counted >= character:
                return start + index
            counted += _units(char, encoding)
        return start + len(self._line(max(line, 0)))


def _units(text: str, encoding: str) -> int:
    if encoding == "utf-32":
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True)
class Analysis:
    """A library checked as a whole: diagnostics per file, names and where they occur."""

    files: Mapping[str, Parsed]
    trees: Mapping[str, ast.File]  # the current tree of each file, or its last one that parsed
    stale: frozenset[str]
    diagnostics: Mapping[str, tuple[Diagnostic, ...]]
    unplaced: tuple[Diagnostic, ...]  # diagnostics without a span (shown on every open file)
    library: Library
    occurrences: Mapping[str, tuple[Occurrence, ...]]  # per file, in text order
    patterns: Mapping[str, tuple[PatternSite, ...]]
    _positions: dict[str, Positions] = field(default_factory=dict, repr=False, compare=False)

    def positions(self, file: str) -> Positions:
        found = self._positions.get(file)
        if found is None:
            found = self._positions[file] = Positions(self.files[file].text)
        return found

    def at(self, file: str, offset: int) -> Occurrence | None:
        """The name under (or just after) the cursor, in a file whose tree is current."""
        if file in self.stale:
            return None
        return next((o for o in self.occurrences.get(file, ()) if o.span.offset <= offset <= o.span.end_offset), None)

    def pattern_at(self, file: str, offset: int) -> PatternSite | None:
        if file in self.stale:
            return None
        return next((p for p in self.patterns.get(file, ()) if p.span.offset <= offset <= p.span.end_offset), None)

    def occurrences_of(self, kind: Kind, name: str) -> list[Occurrence]:
        return [o for file in sorted(self.occurrences) for o in self.occurrences[file]
                if o.kind == kind and o.name == name]

    def definition(self, kind: Kind, name: str) -> Occurrence | None:
        """Where `name` is defined (its first definition, as check counts them)."""
        declared = (self.library.endpoints if kind == "endpoint" else self.library.codelists).get(name)
        if declared is None:
            return None
        return Occurrence(kind, name, declared.name_span, definition=True)

    @cached_property
    def _mentions(self) -> dict[tuple[str, bool], set[str]]:
        """(name, by include) -> the endpoints that name it that way."""
        found: dict[tuple[str, bool], set[str]] = defaultdict(set)
        for endpoint in self.library.endpoints.values():
            for ref in endpoint_refs(endpoint):
                if ref.name != endpoint.name:
                    found[ref.name, ref.via == "include"].add(endpoint.name)
        return found

    def includers(self, name: str) -> tuple[str, ...]:
        return tuple(sorted(self._mentions.get((name, True), ())))

    def referrers(self, name: str) -> tuple[str, ...]:
        """Endpoints naming `name` in `when`, `require` or controls (not include)."""
        return tuple(sorted(self._mentions.get((name, False), ())))


def library_of(endpoints: Sequence[ast.Endpoint], codelists: Mapping[str, ast.Codelist]) -> Library:
    """A library of a few endpoints (in dependency order) and every codelist, to lower them."""
    declarations = (*endpoints, *codelists.values())
    return index_library([ast.File(name="<editor>", declarations=declarations)])


def analyse(files: Mapping[str, Parsed], *, previous: Analysis | None = None,
            rules: Sequence[str] = ()) -> Analysis:
    """Check `files` (name -> parsed text) together, with the curation rule sets `rules`
    (`endpointc.curation`); `previous` lends stale trees and the index of unchanged files."""
    trees: dict[str, ast.File] = {}
    stale: set[str] = set()
    for name, parsed in files.items():
        if parsed.tree is not None:
            trees[name] = parsed.tree
        elif previous is not None and name in previous.trees:
            trees[name] = previous.trees[name]
            stale.add(name)
    library, checked = check(list(trees.values()), rules=rules)
    by_file: dict[str, list[Diagnostic]] = defaultdict(list)
    unplaced: list[Diagnostic] = []
    for name, parsed in files.items():
        by_file[name].extend(parsed.diagnostics)
    for diagnostic in checked:
        if diagnostic.span is None:
            unplaced.append(diagnostic)
        elif diagnostic.span.file not in stale:
            by_file[diagnostic.span.file].append(_without_stale(diagnostic, stale))
    occurrences, patterns = {}, {}
    for name, tree in trees.items():
        if previous is not None and previous.trees.get(name) is tree:  # unchanged: indexed already
            occurrences[name], patterns[name] = previous.occurrences[name], previous.patterns[name]
        else:
            occurrences[name] = tuple(sorted(_occurrences(tree), key=lambda o: o.span.offset))
            patterns[name] = tuple(_patterns(tree))
    return Analysis(
        files=MappingProxyType(dict(files)), trees=MappingProxyType(trees), stale=frozenset(stale),
        diagnostics=MappingProxyType({name: tuple(found) for name, found in by_file.items()}),
        unplaced=tuple(unplaced), library=library, occurrences=MappingProxyType(occurrences),
        patterns=MappingProxyType(patterns))


def _without_stale(diagnostic: Diagnostic, stale: set[str]) -> Diagnostic:
    """Related places inside a stale file point at text that has changed since: dropped."""
    related = tuple(r for r in diagnostic.related if r[1].file not in stale)
    return diagnostic if related == diagnostic.related else diagnostic.model_copy(update={"related": related})


# -- where names are written --------------------------------------------------------

def _part(span: Span, name: str, *, at_end: bool = False) -> Span:
    """The name inside a span that starts (or, `at_end`, ends) with it: `X` of `X.count`,
    `NAME` of `@NAME` and of `parent NAME`."""
    length = len(name)
    if at_end:
        return span.model_copy(update={"line": span.end_line, "column": span.end_column - length,
                                       "offset": span.end_offset - length})
    return span.model_copy(update={"end_line": span.line, "end_column": span.column + length,
                                   "end_offset": span.offset + length})


def _occurrences(tree: ast.File) -> Iterator[Occurrence]:
    for decl in tree.declarations:
        if isinstance(decl, ast.Endpoint):
            yield Occurrence("endpoint", decl.name, decl.name_span, definition=True)
            for ref in endpoint_refs(decl):
                yield Occurrence("endpoint", ref.name, _part(ref.span, ref.name))
            for meta in decl.items:
                if isinstance(meta, ast.Meta) and meta.key == "parent" and not meta.custom:
                    yield Occurrence("endpoint", str(meta.value), _part(meta.span, str(meta.value), at_end=True))
            for rule in decl.rules:
                if rule.codelist is not None:
                    yield _codelist_ref(rule.codelist)
                for clause in rule.clauses:
                    yield from _codelist_refs((*clause.patterns, *clause.excepts))
        elif isinstance(decl, ast.Codelist):
            yield Occurrence("codelist", decl.name, decl.name_span, definition=True)
            for part in decl.parts:
                yield from _codelist_refs(part.patterns)
        else:
            for expect in decl.expects:
                yield Occurrence("endpoint", expect.endpoint.name, expect.endpoint.span)


def _codelist_ref(ref: ast.CodelistRef) -> Occurrence:
    return Occurrence("codelist", ref.name, _part(ref.span, ref.name, at_end=True))


def _codelist_refs(patterns) -> Iterator[Occurrence]:
    for pattern in patterns:
        for simple in ((pattern.first, pattern.second) if isinstance(pattern, ast.Combination) else (pattern,)):
            if isinstance(simple, ast.CodelistRef):
                yield _codelist_ref(simple)


def _patterns(tree: ast.File) -> Iterator[PatternSite]:
    for decl in tree.declarations:
        if isinstance(decl, ast.Endpoint):
            for rule in decl.rules:
                for clause in rule.clauses:
                    for pattern in (*clause.patterns, *clause.excepts):
                        yield PatternSite(pattern.span, pattern, clause.vocab, rule.source, decl.name)
        elif isinstance(decl, ast.Codelist):
            for part in decl.parts:
                for pattern in part.patterns:
                    yield PatternSite(pattern.span, pattern, part.vocab, None, decl.name)
