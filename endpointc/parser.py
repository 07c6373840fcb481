"""Parse: text -> Lark parse tree -> AST, with syntax errors turned into diagnostics.

The grammar ships inside the package (grammar/endpoint.lark). Building its LALR tables
(with Lark's strict check of every pair of terminals) takes most of a second, so they are
built once per process and kept between processes in the user's cache folder
(`parser_cache`). Lark's exceptions never leave this module: each becomes an EP1xx
diagnostic with the position, what was expected in the user's words, and a hint when the
mistake looks like a known one (`match_examples`).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import unicodedata
from functools import lru_cache
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import ast
from .build import Builder
from .diagnostics import Diagnostic
from .source import Source, Span, decode

__all__ = ["parse", "parse_file", "grammar_text", "parser_cache", "MAX_NESTING"]

# How deep a condition may nest (each `not`, `and`, `or` and comparison inside another is a
# level). Far beyond what anyone writes, and shallow enough that every later stage may walk
# a condition recursively without reaching Python's recursion limit.
MAX_NESTING = 100
_NESTING_RULES = frozenset({"or_", "and_", "not_", "compare", "arith"})

# Friendly names for terminals in "expected ..." messages.
TERMINAL_WORDS = {
    "NAME": "a name (like I9_MI)", "CODE": "a code pattern (like I21)", "STRING": 'a "quoted text"',
    "NUMBER": "a number", "REGEX": 're"..."', "COMPARE": "a comparison (<, <=, >, >=, ==, !=)",
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','",
    "VBAR": "'|'", "EQUAL": "'='", "AT": "'@'", "AMPERSAND": "'&'", "MINUS": "'-'", "DOT": "'.'",
    "TEXT_KEY": "title, latin, note or version", "$END": "the end of the file",
}

# Known mistakes, shown as examples to Lark's match_examples: the error state of each
# example labels errors of the same shape. Keys are (code, message, hint).
MISTAKES: dict[tuple[str, str, str], list[str]] = {
    ("EP102", "missing '{' after the endpoint name",
     "an endpoint's body goes in braces: endpoint NAME { ... }"): [
        "endpoint A title", "endpoint A hospital",
    ],
    ("EP103", "endpoint names are upper-case",
     "write names as [A-Z][A-Z0-9_]*, e.g. I9_MI"): [
        "endpoint a {", "endpoint i9_mi {",
    ],
    ("EP104", "a rule needs a vocabulary before its codes",
     "write e.g. `hospital icd10 I21`: SOURCE [options] VOCAB PATTERNS"): [
        "endpoint A { hospital I21 }", "endpoint A { death E11 }", "endpoint A { purchase A10 }",
    ],
    ("EP105", "alternatives must be separated by '|'",
     "write `icd10 I21 | I22`, or put one pattern per line inside ( ... )"): [
        "endpoint A { hospital icd10 I21 I22 }", "endpoint A { hospital icd10 I21, I22 }",
        "endpoint A { hospital icd10 I21 | I22 I23 }",
    ],
    ("EP106", "`!` is not an operator here",
     "write `not NAME` (FinnGen's `!NAME`)"): [
        "endpoint A { require !B }", "endpoint A { controls { require !B } }",
    ],
    ("EP107", "use `and` / `or` in conditions",
     "FinnGen's `&` and `|` are written `and` and `or`"): [
        "endpoint A { require B & C }", "endpoint A { require B | C }",
        "endpoint A { require B and C | D }", "endpoint A { require B and C & D }",
    ],
    ("EP108", "text must be quoted",
     'write e.g. title "Myocardial infarction"'): [
        "endpoint A { title Myocardial", "endpoint A { note x", "endpoint A { title MI",
    ],
    ("EP109", "rule options go before the vocabulary",
     "write e.g. `hospital main icd10 I21`, not `hospital icd10 I21 main`"): [
        "endpoint A { hospital icd10 I21 main", "endpoint A { purchase atc A10 min 3",
        "endpoint A { hospital icd10 I21 single", "endpoint A { purchase atc A10 needs other",
    ],
    ("EP110", "unclosed endpoint: the file ends inside '{'",
     "add the closing '}' of the endpoint"): [
        "endpoint A { title \"x\"", "endpoint A { hospital icd10 I21",
    ],
    ("EP111", "this word is not a known item of an endpoint",
     "items are: title tags level parent latin omit note version meta, a rule (hospital, "
     "inpatient, outpatient, primary, death, operation, reimbursement, purchase, cancer), "
     "include, when, require, sex, controls"): [
        "endpoint A { name B }", "endpoint A { longname \"x\" }", "endpoint A { conditions B }",
    ],
}


@lru_cache(maxsize=1)
def grammar_text() -> str:
    return resources.files("endpointc").joinpath("grammar/endpoint.lark").read_text(encoding="utf-8")


_comments: list[Token] = []
_lock = threading.Lock()


def parser_cache() -> Path | None:
    """The file the parser's tables are kept in between processes: in the folder endpointc
    of `$XDG_CACHE_HOME` (default ~/.cache), named by the grammar and the Lark and Python
    versions, so that a changed grammar is built (and strictly checked) anew. None when
    that folder cannot be made private to the user: the tables are a pickle, and loading
    one that someone else could write would run their code."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "endpointc"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        return None
    key = "\0".join((grammar_text(), lark.__version__, sys.version))
    return folder / f"parser-{hashlib.sha256(key.encode()).hexdigest()[:20]}.lark"


@lru_cache(maxsize=1)
def _lark() -> Lark:
    # Lark checks the cached file against the grammar and options it was built from, and
    # builds (and rewrites it) when it cannot be read or does not match
    cache = parser_cache()
    return Lark(grammar_text(), parser="lalr", strict=True, propagate_positions=True,
                maybe_placeholders=False, lexer_callbacks={"COMMENT": _comments.append},
                cache=str(cache) if cache is not None else False)


def parse(text: str, *, name: str = "<string>") -> tuple[ast.File | None, tuple[Diagnostic, ...]]:
    """Parse one definitions text into a File, or return the syntax error as a diagnostic.

    >>> tree, diags = parse('endpoint A { hospital icd10 I21 }')
    >>> tree.endpoints[0].rules[0].clauses[0].patterns[0].text, diags
    ('I21', ())
    """
    source = Source(name, text)
    with _lock:
        _comments.clear()
        try:
            tree = _lark().parse(text)
        except UnexpectedInput as error:
            return None, (_syntax_diagnostic(source, error),)
        except LarkError as error:  # pragma: no cover - Lark internals, kept user-facing
            return None, (Diagnostic.error("EP100", f"could not parse: {error}", source.span(0)),)
        comments = tuple(
            ast.Comment(span=source.span(t.start_pos, t.end_pos), text=str(t)[1:]) for t in _comments
        )
    too_deep = _too_deep(tree)
    if too_deep is not None:
        return None, (_nesting_diagnostic(source, too_deep),)
    builder = Builder(source)
    file = builder.transform(tree)
    if builder.problems:
        return None, tuple(builder.problems)
    return file.model_copy(update={"comments": comments}), ()


def parse_file(path: str | Path) -> tuple[ast.File | None, tuple[Diagnostic, ...]]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        return None, (Diagnostic.error("EP101", f"cannot read {path}: {error.strerror}"),)
    text, error = decode(raw)
    if error is not None:
        return None, (_encoding_diagnostic(Source(str(path), text), error),)
    return parse(text, name=str(path))


# What UTF-8 decoding says, in words about the byte it stopped at.
_ENCODING_PROBLEMS = {
    "invalid start byte": "byte 0x{byte:02X} cannot begin a character",
    "invalid continuation byte": "byte 0x{byte:02X} begins a character that the bytes after it do not complete",
    "unexpected end of data": "the file ends inside a character (byte 0x{byte:02X} begins it)",
}


def _encoding_diagnostic(source: Source, error: UnicodeDecodeError) -> Diagnostic:
    """Where the first byte that is not UTF-8 is (line:column as the parser counts them),
    what is wrong with it, and the encoding the file probably has."""
    # The text before the first bad byte decoded exactly, so its length is the offset.
    offset = len(error.object[:error.start].decode("utf-8"))
    span = source.span(offset, offset + 1)
    byte = error.object[error.start]
    problem = _ENCODING_PROBLEMS.get(error.reason, f"byte 0x{{byte:02X}}: {error.reason}").format(byte=byte)
    if error.object.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in error.object:
        hint = "the file looks like UTF-16: save it as UTF-8"
    else:
        hint = ("save the file as UTF-8; Latin-1 and Windows-1252 files, for example, write "
                "\u00e4 as the single byte 0xE4")
    return Diagnostic.error("EP101", f"{source.name} is not UTF-8 text: {problem} (line {span.line}, "
                            f"column {span.column})", span, hint)


def _too_deep(tree: Tree) -> Tree | None:
    """The first condition node (in source order) nested deeper than MAX_NESTING, if any."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING_RULES:
            depth += 1
            if depth > MAX_NESTING:
                return node
        stack.extend((child, depth) for child in reversed(node.children) if isinstance(child, Tree))
    return None


def _nesting_diagnostic(source: Source, node: Tree) -> Diagnostic:
    start = node.meta.start_pos
    token = re.match(r"\w+|\S", source.text[start:])
    return Diagnostic.error(
        "EP112", f"condition nested more than {MAX_NESTING} levels deep",
        source.span(start, start + (len(token.group()) if token else 0)),
        "`not not X` is X and `A and (B and C)` is `A and B and C`; in `require`, part of a "
        "condition can become an endpoint of its own")


def _syntax_diagnostic(source: Source, error: UnexpectedInput) -> Diagnostic:
    offset = error.pos_in_stream if error.pos_in_stream is not None else len(source.text)
    span: Span
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        token = error.token
        # The lexer may cut a lower-case word after its capital (`Myocardial` -> `M`).
        word = re.match(r"\w+", source.text[token.start_pos:])
        end = max(token.end_pos, token.start_pos + len(word.group())) if word else token.end_pos
        span = source.span(token.start_pos, end)
        found = _quoted(source.text[token.start_pos:end])
    elif isinstance(error, UnexpectedCharacters):
        # Point at the whole word (`longname`, `Myocardial`), not its first letter.
        word = re.match(r"\w+", source.text[offset:])
        end = offset + (len(word.group()) if word else 1)
        span = source.span(offset, end)
        found = _quoted(source.text[offset:end])
    else:
        span = source.span(len(source.text))
        found = "the end of the file"

    char = source.text[offset:offset + 1]
    if isinstance(error, UnexpectedCharacters) and char and not char.isprintable():
        # Editors often show nothing for these, so guessing at a known mistake would mislead.
        name = unicodedata.name(char, "")
        return Diagnostic.error("EP101", f"unexpected invisible character U+{ord(char):04X}"
                                + (f" {name}" if name else ""), span,
                                "only spaces, tabs and line breaks separate words: delete this character")
    expected = _expected_words(error)
    known = _operator_mistake(source.text, offset, error) or _known_mistake(source.text, error)
    if known:
        code, message, hint = known
        # After a recognised operator mistake the list of expected words only distracts.
        extra = [f"expected {expected}"] if expected and code not in ("EP106", "EP107") else []
        return Diagnostic.error(code, f"{message} (found {found})", span, hint, *extra)
    message = f"unexpected {found}"
    if expected:
        message += f"; expected {expected}"
    return Diagnostic.error("EP101", message, span)


def _quoted(text: str) -> str:
    # A character that prints as nothing (U+2028, a vertical tab) is named by its escape.
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text) + "'"


def _expected_words(error: UnexpectedInput) -> str:
    names = getattr(error, "expected", None) or getattr(error, "allowed", None) or set()
    words = sorted({_word(n) for n in names if n not in ("WS", "COMMENT")})
    if len(words) > 8:
        words = words[:8] + ["..."]
    return ", ".join(words)


def _word(terminal: str) -> str:
    if terminal in TERMINAL_WORDS:
        return TERMINAL_WORDS[terminal]
    for term in _lark().terminals:
        if term.name == terminal and term.pattern.type == "str":
            return f"'{term.pattern.value}'"
    return terminal.lower()


def _operator_mistake(text: str, offset: int, error: UnexpectedInput) -> tuple[str, str, str] | None:
    """FinnGen's `!`, `&` and `|` inside conditions, which match_examples cannot tell apart."""
    char = text[offset:offset + 1]
    names = set(getattr(error, "expected", None) or getattr(error, "allowed", None) or ())
    if char == "!":
        return next(k for k in MISTAKES if k[0] == "EP106")
    if char in "&|" and char and ({"AND", "OR", "NOT"} & names or "COMPARE" in names):
        return next(k for k in MISTAKES if k[0] == "EP107")
    return None


def _known_mistake(text: str, error: UnexpectedInput) -> tuple[str, str, str] | None:
    try:
        label = error.match_examples(_lark().parse, MISTAKES, use_accepts=True)
    except Exception:  # an example that does not fail the same way must not hide the error
        return None
    return label
