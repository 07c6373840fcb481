"""The editor features, each a function of an `Analysis` (and the text at the cursor) to
Language Server Protocol values: diagnostics, hover, completion, outline, folding,
definition, references, rename and formatting. Nothing here talks to the editor.

Files are named as the analysis names them (a path, or an `untitled:` URI); `uri_of` turns
a name into the URI the editor knows it by. `encoding` is the position encoding agreed
with the editor (UTF-16 unless it asked for another).
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from lsprotocol import types

from .. import ast
from ..diagnostics import Diagnostic
from ..fmt import format_file, pattern_text
from ..registers import REGISTERS, allows
from ..source import Span
from .analysis import Analysis, Occurrence, PatternSite, library_of

__all__ = [
    "to_lsp_diagnostics", "name_hover", "pattern_hover", "word_hover", "completions", "document_symbols",
    "folding_ranges", "locations", "rename_edit", "check_new_name", "formatting_edits", "word_at",
    "NAME", "pattern_sources", "describe_or_reason",
]

UriOf = Callable[[str], str]
NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning}


def _range(analysis: Analysis, span: Span, encoding: str) -> types.Range:
    positions = analysis.positions(span.file)
    start = positions.position(span.offset, encoding)
    end = positions.position(max(span.end_offset, span.offset), encoding)
    return types.Range(types.Position(*start), types.Position(*end))


def _location(analysis: Analysis, span: Span, encoding: str, uri_of: UriOf) -> types.Location:
    return types.Location(uri_of(span.file), _range(analysis, span, encoding))


# -- diagnostics -------------------------------------------------------------------

def to_lsp_diagnostics(analysis: Analysis, file: str, encoding: str, uri_of: UriOf) -> list[types.Diagnostic]:
    """The file's diagnostics, each hint and related place as related information (hints
    at the diagnostic's own place), and spanless ones at the file's start."""
    found = [*analysis.diagnostics.get(file, ()), *analysis.unplaced]
    return [_diagnostic(analysis, d, file, encoding, uri_of) for d in found]


def _diagnostic(analysis: Analysis, d: Diagnostic, file: str, encoding: str, uri_of: UriOf) -> types.Diagnostic:
    here = (_range(analysis, d.span, encoding) if d.span is not None and d.span.file in analysis.files
            else types.Range(types.Position(0, 0), types.Position(0, 0)))
    related = [types.DiagnosticRelatedInformation(types.Location(uri_of(file), here), f"hint: {hint}")
               for hint in d.hints]
    related += [types.DiagnosticRelatedInformation(_location(analysis, span, encoding, uri_of), label)
                for label, span in d.related if span.file in analysis.files]
    return types.Diagnostic(range=here, message=d.message, severity=_SEVERITY[d.severity.value], code=d.code,
                            source="endpointc", related_information=related or None)


# -- hover ---------------------------------------------------------------------------

def _markdown(text: str) -> types.MarkupContent:
    return types.MarkupContent(kind=types.MarkupKind.Markdown, value=text)


def describe_or_reason(analysis: Analysis, name: str) -> str:
    """`describe`'s plain words for an endpoint, lowered with what it depends on; or why
    there are none (lowering assumes a checked library, so errors in the way stop it)."""
    from ..check import endpoint_dependencies
    from ..describe import describe_endpoint
    from ..lower import lower

    endpoints = analysis.library.endpoints
    needed, todo = {}, [name]
    while todo:
        current = todo.pop()
        if current in needed or current not in endpoints:
            continue
        needed[current] = endpoints[current]
        todo.extend(endpoint_dependencies(endpoints[current]))
    try:
        return describe_endpoint(lower(library_of(list(needed.values()), analysis.library.codelists)), name)
    except Exception:  # a library with errors can fail lowering anywhere; the checker says where
        return "(no description until the errors in this endpoint or what it uses are fixed)"


def name_hover(analysis: Analysis, occurrence: Occurrence, encoding: str) -> types.Hover | None:
    where = _range(analysis, occurrence.span, encoding)
    if occurrence.kind == "codelist":
        codelist = analysis.library.codelists.get(occurrence.name)
        if codelist is None:
            return types.Hover(_markdown(f"unknown codelist `@{occurrence.name}`"), where)
        lines = [f"**codelist {codelist.name}**", "", "```"]
        lines += [f"{part.vocab} {' | '.join(pattern_text(p) for p in part.patterns)}" for part in codelist.parts]
        lines += ["```", _defined_at(codelist.name_span)]
        return types.Hover(_markdown("\n".join(lines)), where)
    endpoint = analysis.library.endpoints.get(occurrence.name)
    if endpoint is None:
        return types.Hover(_markdown(f"unknown endpoint `{occurrence.name}`"), where)
    title = endpoint.meta.get("title")
    sections = [f"**{endpoint.name}**" + (f": {title}" if title else ""),
                "```text\n" + describe_or_reason(analysis, endpoint.name) + "\n```"]
    for label, names in (("includes", tuple(dict.fromkeys(n.name for n in endpoint.includes))),
                         ("included by", analysis.includers(endpoint.name)),
                         ("used in `when`, `require` or controls of", analysis.referrers(endpoint.name))):
        if names:
            sections.append(f"{label}: " + ", ".join(f"`{n}`" for n in names))
    sections.append(_defined_at(endpoint.name_span))
    return types.Hover(_markdown("\n\n".join(sections)), where)


def _defined_at(span: Span) -> str:
    return f"defined in {span.file.rsplit('/', 1)[-1]}, line {span.line}"


def pattern_sources(site: PatternSite) -> tuple[str, ...]:
    """The rule's source; in a codelist, every source that takes the vocabulary, except
    those whose rows another of them already reads (inpatient and outpatient are in
    hospital)."""
    if site.source is not None:
        return (site.source,)
    taking = [name for name, register in REGISTERS.items() if site.vocab in register.vocabularies]
    return tuple(name for name in taking
                 if not any(set(REGISTERS[name].rows) < set(REGISTERS[other].rows) for other in taking))


def pattern_hover(analysis: Analysis, site: PatternSite, encoding: str, counts: str | None = None) -> types.Hover:
    """The pattern in words, the column and rows it is matched on; `counts` is the table of
    the codes of a registry it matches (see `server.CodeCounts`)."""
    from ..describe import describe_codeset
    from ..lower import lower_patterns

    try:
        words = describe_codeset(lower_patterns([site.pattern], library_of([], analysis.library.codelists)))
    except Exception:  # an invalid pattern (reported by check) has no meaning to show
        words = "(not a valid pattern: see the diagnostic)"
    lines = [f"**{site.vocab}** pattern `{pattern_text(site.pattern)}`: the code {words}", ""]
    for source in pattern_sources(site):
        register = REGISTERS.get(source)
        vocabulary = register.vocabularies.get(site.vocab) if register else None
        if vocabulary is not None:
            pins = "".join(f", {pin.column} " + " or ".join([*pin.exact, *(p + "..." for p in pin.prefixes)])
                           for pin in vocabulary.pins)
            lines.append(f"- {source}: {vocabulary.column} of {', '.join(register.rows)} rows{pins}")
    if counts:
        lines += ["", counts]
    return types.Hover(_markdown("\n".join(lines)), _range(analysis, site.span, encoding))


_WORD = re.compile(r"[@\w.]+")


def word_at(text: str, offset: int) -> tuple[str, int, int] | None:
    """The word under the cursor and where it starts and ends."""
    for match in _WORD.finditer(text, max(0, offset - 100), offset + 100):
        if match.start() <= offset <= match.end():
            return match.group(), match.start(), match.end()
    return None


def word_hover(word: str) -> types.Hover | None:
    """Sources and vocabularies: what the registers table says about them."""
    register = REGISTERS.get(word)
    if register is not None:
        options = [o for o in ("main", "with_atc") if allows(word, o)]
        text = (f"**{word}**: rows with SOURCE {', '.join(register.rows)}; vocabularies "
                f"{', '.join(register.vocabularies)}; default `min {register.default_min}`"
                + (f"; also allows {', '.join(o.replace('_', ' ') for o in options)}" if options else ""))
        return types.Hover(_markdown(text))
    if word in ast.VOCABULARIES:
        places = [f"{name} ({vocabulary.column})" for name, r in REGISTERS.items()
                  for vocab, vocabulary in r.vocabularies.items() if vocab == word]
        return types.Hover(_markdown(f"**{word}** codes, read by: {', '.join(places) or 'no source'}"))
    return None


# -- completion ----------------------------------------------------------------------

_BLOCKS = ("endpoint", "codelist", "controls", "test", "person")
_ITEMS = (*ast.META_KEYS, "meta", "include", "when", "require", "sex", "controls")
_CONDITION_WORDS = ("and", "or", "not", "within", "after", "before")
_WHEN_FIELDS = ("age", "year", "emergency", "date")
_HIDDEN = re.compile(r'#[^\n]*|re"(?:[^"\\\n]|\\.)*"|"(?:[^"\\\n]|\\.)*"')
_TOKEN = re.compile(r"[{}]|[^\s{}]+")


def _keyword(word: str, detail: str | None = None) -> types.CompletionItem:
    return types.CompletionItem(word, kind=types.CompletionItemKind.Keyword, detail=detail)


def _context(text: str, offset: int) -> tuple[str | None, list[str], str]:
    """(the innermost block the cursor is in, the words before it on its line, the word
    being typed)."""
    before = _HIDDEN.sub(lambda m: "STRING" if m.group().startswith(('"', 're"')) else "", text[:offset])
    partial = re.search(r"[@\w.\-]*$", before).group()
    stack: list[str | None] = []
    statement: list[str] = []
    for token in _TOKEN.findall(before[:len(before) - len(partial)]):
        if token == "{":
            stack.append(next((w for w in statement if w in _BLOCKS), None))
            statement = []
        elif token == "}":
            if stack:
                stack.pop()
            statement = []
        else:
            statement.append(token)
    line = before[:len(before) - len(partial)].rsplit("\n", 1)[-1]
    words = _TOKEN.findall(re.split(r"[{}]", line)[-1])  # after the last brace on the line
    return (stack[-1] if stack else None), words, partial


def completions(analysis: Analysis, file: str, offset: int) -> list[types.CompletionItem]:
    text = analysis.files[file].text
    block, words, partial = _context(text, offset)
    library = analysis.library
    endpoints = [types.CompletionItem(name, kind=types.CompletionItemKind.Class,
                                      detail=str(endpoint.meta.get("title", "")) or None)
                 for name, endpoint in sorted(library.endpoints.items())]
    if partial.startswith("@"):
        return [types.CompletionItem(name, kind=types.CompletionItemKind.Enum, detail=" and ".join(c.vocabs),
                                     filter_text=f"@{name}")
                for name, c in sorted(library.codelists.items())]
    first = words[0] if words else None
    vocabularies = [_keyword(v, "vocabulary") for v in ast.VOCABULARIES]
    if block is None:
        if first == "codelist" and len(words) >= 2:
            return vocabularies
        return [_keyword(w) for w in ("endpoint", "codelist", "test")] if not words else []
    if block == "codelist":
        return vocabularies
    if block == "endpoint":
        if first is None:
            return ([_keyword(w) for w in _ITEMS]
                    + [_keyword(s, "source: " + ", ".join(r.rows)) for s, r in REGISTERS.items()])
        if first in REGISTERS:
            return _rule_words(first, words)
        if first in ("include", "parent"):
            return endpoints
        if first in ("when", "require"):
            fields = [_keyword(f, "event field") for f in _WHEN_FIELDS] if first == "when" else []
            return endpoints + fields + [_keyword(w) for w in _CONDITION_WORDS]
        if first == "sex":
            return [_keyword(w) for w in ("female", "male", "any")]
        return []
    if block == "controls":
        if first is None:
            return [_keyword("exclude"), _keyword("require")]
        return endpoints + ([_keyword(w) for w in _CONDITION_WORDS] if first == "require" else [])
    if block == "test":
        if first is None:
            return [_keyword("person"), _keyword("expect")]
        if first == "expect":
            if "of" in words:
                return endpoints
            if len(words) == 2:
                return [_keyword(w) for w in ("case", "control", "excluded")]
            if len(words) == 3:
                return [_keyword("of")]
        return [_keyword(w) for w in ("female", "male")] if first == "person" and len(words) == 2 else []
    if block == "person":
        rows = sorted({row for r in REGISTERS.values() for row in r.rows})
        if len(words) == 1:
            return [_keyword(row, "SOURCE") for row in rows]
        if len(words) >= 2:
            takes = dict.fromkeys(v for r in REGISTERS.values() if words[1] in r.rows for v in r.vocabularies)
            return [_keyword(v, "vocabulary") for v in takes]
    return []


def _rule_words(source: str, words: list[str]) -> list[types.CompletionItem]:
    register = REGISTERS[source]
    vocabs = [_keyword(v, f"{register.vocabularies[v].column} of {source} rows") for v in register.vocabularies]
    if words[-1] == "with":
        return [_keyword("atc")]
    if words[-1] == "needs":
        return [_keyword("other")]
    if any(w in register.vocabularies for w in words[1:]):
        return vocabs + [_keyword("except")]
    options = [o for o in ("main", "with", "min", "single", "mode", "needs")
               if allows(source, {"with": "with_atc", "needs": "needs_other"}.get(o, o))]
    return vocabs + [_keyword(o, "option") for o in options]


# -- outline and folding ---------------------------------------------------------------

def document_symbols(analysis: Analysis, file: str, encoding: str) -> list[types.DocumentSymbol]:
    tree = analysis.trees.get(file)
    if tree is None or file in analysis.stale:
        return []
    symbols = []
    for decl in tree.declarations:
        whole = _range(analysis, decl.span, encoding)
        if isinstance(decl, ast.Endpoint):
            title = decl.meta.get("title")
            symbols.append(types.DocumentSymbol(decl.name, types.SymbolKind.Class, whole,
                                                _range(analysis, decl.name_span, encoding),
                                                detail=str(title) if title else None))
        elif isinstance(decl, ast.Codelist):
            symbols.append(types.DocumentSymbol(decl.name, types.SymbolKind.Constant, whole,
                                                _range(analysis, decl.name_span, encoding),
                                                detail=" and ".join(decl.vocabs)))
        else:
            people = [types.DocumentSymbol(p.id, types.SymbolKind.Object, _range(analysis, p.span, encoding),
                                           _range(analysis, p.span, encoding)) for p in decl.persons]
            symbols.append(types.DocumentSymbol(f"test {decl.name!r}", types.SymbolKind.Event, whole, whole,
                                                children=people or None))
    return symbols


def folding_ranges(analysis: Analysis, file: str) -> list[types.FoldingRange]:
    """Endpoints, braced codelists, controls, tests and their people; runs of comment lines."""
    tree = analysis.trees.get(file)
    if tree is None or file in analysis.stale:
        return []
    spans: list[Span] = []
    for decl in tree.declarations:
        spans.append(decl.span)
        if isinstance(decl, ast.Endpoint):
            spans.extend(i.span for i in decl.items if isinstance(i, (ast.Controls, ast.Rule)))
        elif isinstance(decl, ast.TestBlock):
            spans.extend(p.span for p in decl.persons)
    found = [types.FoldingRange(s.line - 1, s.end_line - 1) for s in spans if s.end_line > s.line]
    text, starts = analysis.files[file].text, analysis.positions(file).starts
    # comments alone on their line (not those after an item)
    lines = sorted({c.span.line for c in tree.comments if not text[starts[c.span.line - 1]:c.span.offset].strip()})
    run_start = None
    for index, line in enumerate(lines):
        if run_start is None:
            run_start = line
        if index + 1 == len(lines) or lines[index + 1] != line + 1:
            if line > run_start:
                found.append(types.FoldingRange(run_start - 1, line - 1, kind=types.FoldingRangeKind.Comment))
            run_start = None
    return found


# -- navigation and rename -----------------------------------------------------------------

def locations(analysis: Analysis, occurrences: Iterable[Occurrence], encoding: str,
              uri_of: UriOf) -> list[types.Location]:
    return [_location(analysis, o.span, encoding, uri_of) for o in occurrences]


def check_new_name(analysis: Analysis, occurrence: Occurrence, new_name: str) -> str | None:
    """Why `occurrence` cannot be renamed to `new_name`, or None."""
    if not NAME.match(new_name):
        return f"{new_name!r} is not a name: names are written [A-Z][A-Z0-9_]*, e.g. I9_MI"
    table = analysis.library.endpoints if occurrence.kind == "endpoint" else analysis.library.codelists
    if new_name != occurrence.name and new_name in table:
        return f"{occurrence.kind} {new_name} already exists"
    if occurrence.name not in table:
        return f"{occurrence.name} is not defined, so there is nothing to rename"
    broken = sorted(name for name, parsed in analysis.files.items() if parsed.tree is None)
    if broken:
        return f"rename changes every file of the library: first fix the syntax errors in {', '.join(broken)}"
    return None


def rename_edit(analysis: Analysis, occurrence: Occurrence, new_name: str, encoding: str,
                uri_of: UriOf) -> types.WorkspaceEdit:
    changes: dict[str, list[types.TextEdit]] = {}
    for found in analysis.occurrences_of(occurrence.kind, occurrence.name):
        changes.setdefault(uri_of(found.span.file), []).append(
            types.TextEdit(_range(analysis, found.span, encoding), new_name))
    return types.WorkspaceEdit(changes=changes)


def formatting_edits(analysis: Analysis, file: str, encoding: str) -> list[types.TextEdit]:
    """The whole text replaced by its canonical form; nothing while it does not parse."""
    parsed = analysis.files[file]
    if parsed.tree is None:
        return []
    formatted = format_file(parsed.tree)
    if formatted == parsed.text:
        return []
    positions = analysis.positions(file)
    end = types.Position(*positions.position(len(parsed.text), encoding))
    return [types.TextEdit(types.Range(types.Position(0, 0), end), formatted)]
