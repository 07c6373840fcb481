"""Small hand-made FinnGen spreadsheets for the importer's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from endpointc import ast
from endpointc.fmt import strip_spans


def write_sheet(folder: Path, rows: Sequence[dict[str, str]], *, name: str = "defs.tsv", columns: Sequence[str] = (),
                crlf: bool = False, bom: bool = False, encoding: str = "utf-8") -> Path:
    """A TSV or CSV (by `name`'s suffix) with the union of the rows' columns, in first-seen order."""
    header = list(dict.fromkeys([*columns, *(k for row in rows for k in row)]))
    separator = "," if name.endswith(".csv") else "\t"

    def cell(value: str) -> str:
        if separator in value or '"' in value or "\n" in value:
            return '"' + value.replace('"', '""') + '"'
        return value

    lines = [separator.join(header)] + [separator.join(cell(row.get(c, "")) for c in header) for row in rows]
    newline = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + newline.join(lines) + newline
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def endpoint(result, name: str) -> ast.Endpoint:
    return next(e for e in result.endpoints if e.name == name)


def plain(node):
    """A node without spans, for equality in assertions."""
    return strip_spans(node)


def codes_of(patterns) -> list[str]:
    """Patterns as short strings: I21, =5311, re:W[0-1]*, any, none, A&B."""
    out = []
    for p in patterns:
        if isinstance(p, ast.Code):
            out.append(p.text)
        elif isinstance(p, ast.Exact):
            out.append("=" + p.text)
        elif isinstance(p, ast.Regex):
            out.append("re:" + p.regex)
        elif isinstance(p, ast.AnyCode):
            out.append("any")
        elif isinstance(p, ast.NoCode):
            out.append("none")
        elif isinstance(p, ast.Combination):
            out.append(codes_of([p.first])[0] + "&" + codes_of([p.second])[0])
        else:
            out.append(type(p).__name__)
    return out


def rules_of(e: ast.Endpoint) -> list[tuple[str, tuple[str, ...], tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]]]:
    """(source, options, ((vocab, patterns, excepts), ...)) per rule."""
    return [(r.source, tuple(o.name for o in r.options),
             tuple((c.vocab, tuple(codes_of(c.patterns)), tuple(codes_of(c.excepts))) for c in r.clauses))
            for r in e.rules]
