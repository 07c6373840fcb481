"""Plain-text rendering of a diagnostic, the same text the CLI shows (it adds colour).

Kept free of rich and of the terminal so error-message snapshots do not depend on the CLI:

>>> from endpointc.source import Source
>>> from endpointc.diagnostics import Diagnostic
>>> src = Source("x.ep", "endpoint A {\\n  purchase icd10 E11\\n}\\n")
>>> d = Diagnostic.error("EP301", "vocabulary icd10 is not used by purchase", src.span(24, 29),
...                      "purchase rows are matched by atc, vnr, kela")
>>> print(format_diagnostic(d, src))
error[EP301]: vocabulary icd10 is not used by purchase
  --> x.ep:2:12
   |
 2 |   purchase icd10 E11
   |            ^^^^^
   = hint: purchase rows are matched by atc, vnr, kela
"""

from __future__ import annotations

from typing import Mapping

from .diagnostics import Diagnostic
from .source import Source, Span

__all__ = ["format_diagnostic", "format_diagnostics", "visible"]


def format_diagnostic(diag: Diagnostic, source: Source | None, *,
                      sources: Mapping[str, Source] | None = None) -> str:
    """The diagnostic as text: header, location, the offending line with carets, hints.

    `source` is the file of `diag.span`; `sources` (by file name) lets related places in
    other files be quoted too. Without a source only the location is shown.
    """
    lines = [f"{diag.severity.value}[{diag.code}]: {diag.message}"]
    span = diag.span
    known = dict(sources or {})
    if source is not None:
        known.setdefault(source.name, source)
    width = max([len(str(s.line)) for s in [span, *(r for _, r in diag.related)] if s is not None] or [1])
    if span is not None:
        lines.extend(_snippet(span, known.get(span.file), width))
    for label, where in diag.related:
        lines.append(f"{' ' * (width + 2)}= note: {label}")
        lines.extend(_snippet(where, known.get(where.file), width))
    for hint in diag.hints:
        lines.append(f"{' ' * (width + 2)}= hint: {hint}")
    return "\n".join(lines)


def format_diagnostics(diags, sources: Mapping[str, Source]) -> str:
    """Several diagnostics, one block each, separated by a blank line."""
    return "\n\n".join(
        format_diagnostic(d, sources.get(d.span.file) if d.span else None, sources=sources) for d in diags
    )


def _snippet(span: Span, source: Source | None, width: int) -> list[str]:
    pad = " " * (width + 2)
    out = [f"{' ' * (width + 1)}--> {span.file}:{span.line}:{span.column}"]
    if source is None:
        return out
    text = visible(source.line(span.line))
    start = max(span.column - 1, 0)
    end = span.end_column - 1 if span.end_line == span.line else len(text)
    end = max(end, start + 1)
    if len(text) > _LONG_LINE:
        text, start, end = _window(text, start, end)
    # Keep tabs where the line has them so the carets line up in any terminal.
    lead = "".join(c if c == "\t" else " " for c in text[:start])
    out += [f"{pad}|", f" {span.line:>{width}} | {text}".rstrip(), f"{pad}| {lead}{'^' * (end - start)}"]
    return out


# A longer line is quoted in part: the span's start with some text around it.
_LONG_LINE = 100
_BEFORE = 20


def _window(text: str, start: int, end: int) -> tuple[str, int, int]:
    """Part of a long line around `start`, cut ends marked with '…'; the carets' new columns."""
    left = max(0, min(start - _BEFORE, len(text) - _LONG_LINE))
    right = left + _LONG_LINE
    shift = left - (1 if left else 0)
    shown = ("\u2026" if left else "") + text[left:right] + ("\u2026" if right < len(text) else "")
    return shown, start - shift, max(min(end, right), start + 1) - shift


def visible(line: str) -> str:
    """A source line as it can be printed: every character that a terminal would not show
    in one column (a form feed, a carriage return, U+2028...) becomes one visible character,
    so the carets below stay under the characters they point at.

    >>> visible("A\\x0cB\\u2028C\\rD")
    'A␌B�C␍D'
    """
    return "".join(c if c == "\t" or c.isprintable() else _stand_in(c) for c in line)


def _stand_in(char: str) -> str:
    # Control characters below 0x20 have pictures (U+2400...); the rest show as U+FFFD.
    return chr(0x2400 + ord(char)) if ord(char) < 0x20 else "\u2421" if char == "\x7f" else "\ufffd"
