"""The canonical printer: AST (plus its comments) -> text.

`format_file` is a pure function of the AST: it needs no source text, only the spans the
parser recorded. Guarantees (tested in tests/test_fmt.py): formatting is idempotent,
parse(format(x)) has the same AST as parse(x) apart from spans, and every comment is kept
(its text right-stripped).

Layout: declarations separated by one blank line; endpoint items indented two spaces, one
per line, in the author's order, with the author's blank lines between items kept (at most
one); rule pattern lists wrapped one pattern per line inside ( ... ) when the line would be
longer than 100 characters or a comment sits inside the rule; expressions with the fewest
parentheses that keep their meaning.

Comments are placed from their spans alone. A comment is *trailing* when some part of the
AST ends or starts before it on the same line; it stays at the end of the printed line of
the innermost piece of syntax that holds the last token before it. Any other comment stands
on its own line before the next item at the same depth (or before the closing brace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from . import ast
from .diagnostics import Diagnostic
from .parser import parse
from .source import Span

__all__ = [
    "format_file", "format_text", "strip_spans", "ast_equal", "MAX_WIDTH", "INDENT",
    # one item in its canonical spelling (diff words its changes with them)
    "quote", "meta_text", "option_text", "clause_text", "pattern_text", "expr_text",
]

MAX_WIDTH = 100
INDENT = 2

_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_NUMBER = re.compile(r"\d+(?:\.\d+)?\Z")
_TEXT_KEYS = ("title", "latin", "note", "version")
# Binding strength of expression nodes: or < and < not < comparison < operand.
_PREC = {"or": 1, "and": 2, "not": 3, "compare": 4, "relation": 4, "arith": 5}


# -- AST comparison ---------------------------------------------------------------

def strip_spans(node: Any) -> Any:
    """Plain data of a node with every span removed, to compare trees from different texts."""
    # A loop, not recursion: a condition may nest as deep as the parser allows.
    done: list[Any] = []
    todo: list[tuple[Any, bool]] = [(node, False)]
    while todo:
        value, children_done = todo.pop()
        if isinstance(value, BaseModel):
            keys = [k for k in type(value).model_fields if k not in ("span", "name_span")]
        elif isinstance(value, (tuple, list)):
            keys = list(range(len(value)))
        else:
            done.append(value)
            continue
        if not children_done:
            todo.append((value, True))
            todo.extend((value[k] if isinstance(k, int) else getattr(value, k), False) for k in reversed(keys))
            continue
        parts = done[len(done) - len(keys):]
        del done[len(done) - len(keys):]
        done.append({type(value).__name__: dict(zip(keys, parts))} if isinstance(value, BaseModel)
                    else tuple(parts))
    return done[0]


def ast_equal(a: Any, b: Any) -> bool:
    """Same tree apart from spans; for Files only the declarations count (not name or comments)."""
    if isinstance(a, ast.File) and isinstance(b, ast.File):
        return strip_spans(a.declarations) == strip_spans(b.declarations)
    return strip_spans(a) == strip_spans(b)


# -- entry points -------------------------------------------------------------------

def format_text(text: str, *, name: str = "<string>") -> tuple[str | None, tuple[Diagnostic, ...]]:
    """Parse and print canonically; None and the syntax error when the text does not parse.

    >>> format_text('endpoint A{hospital icd10 I21|I22 # MI\\n}')[0]
    'endpoint A {\\n  hospital icd10 I21 | I22  # MI\\n}\\n'
    """
    file, diagnostics = parse(text, name=name)
    if file is None:
        return None, diagnostics
    return format_file(file), diagnostics


def format_file(file: ast.File) -> str:
    """The canonical text of a parsed file, comments included; ends with one newline."""
    return _Printer(file).run()


# -- printing -------------------------------------------------------------------------

@dataclass
class _Note:
    """A comment with where it sits: `anchor` is the offset of the last token before it on
    its line (None for a comment alone on its line)."""

    comment: ast.Comment
    anchor: int | None

    @property
    def key(self) -> int:
        return self.comment.span.offset if self.anchor is None else self.anchor

    @property
    def offset(self) -> int:
        return self.comment.span.offset

    @property
    def line(self) -> int:
        return self.comment.span.line


@dataclass
class _Line:
    indent: int
    text: str
    trailing: list[_Note] = field(default_factory=list)
    blank_before: bool = False
    note: _Note | None = None  # set for a comment printed on its own line
    # A one-line rule keeps its source and options apart so neighbours can align them.
    head: str | None = None


def _inside(span: Span, key: int) -> bool:
    return span.offset <= key < span.end_offset


class _Printer:
    def __init__(self, file: ast.File):
        self.file = file
        self.notes = self._notes(file)

    # Every node's first and last character, by line: what a trailing comment can follow.
    def _notes(self, file: ast.File) -> list[_Note]:
        bounds: dict[int, list[int]] = {}
        todo: list[Any] = [file.declarations]
        while todo:
            value = todo.pop()
            if isinstance(value, Span):
                bounds.setdefault(value.line, []).append(value.offset)
                if value.end_offset > value.offset:
                    bounds.setdefault(value.end_line, []).append(value.end_offset - 1)
            elif isinstance(value, BaseModel):
                todo.extend(getattr(value, name) for name in type(value).model_fields)
            elif isinstance(value, (tuple, list)):
                todo.extend(value)
        notes = []
        for comment in sorted(file.comments, key=lambda c: c.span.offset):
            before = [b for b in bounds.get(comment.span.line, ()) if b < comment.span.offset]
            notes.append(_Note(comment, max(before) if before else None))
        return notes

    def run(self) -> str:
        lines = self._file()
        out: list[str] = []
        for line in lines:
            if line.blank_before and out:
                out.append("")
            out.extend(self._render(line))
        return "\n".join(out) + "\n" if out else ""

    @staticmethod
    def _render(line: _Line) -> list[str]:
        pad = " " * line.indent
        if line.note is not None:
            return [pad + "#" + line.note.comment.text.rstrip()]
        # One trailing comment per line: any others go above it, in their order.
        notes = sorted(line.trailing, key=lambda n: n.offset)
        out = [pad + "#" + n.comment.text.rstrip() for n in notes[:-1]]
        text = pad + line.text
        if line.head is not None:
            text = pad + line.head + line.text
        if notes:
            text += "  #" + notes[-1].comment.text.rstrip()
        out.append(text)
        return out

    # -- blocks ---------------------------------------------------------------------
    def _split(self, notes: list[_Note], children: Sequence[Any]) -> tuple[list[list[_Note]], list[_Note]]:
        """Notes inside each child, and the rest (this level's own)."""
        inner: list[list[_Note]] = [[] for _ in children]
        own: list[_Note] = []
        for note in notes:
            for i, child in enumerate(children):
                if _inside(child.span, note.key):
                    inner[i].append(note)
                    break
            else:
                own.append(note)
        return inner, own

    def _body(self, children: Sequence[Any], notes: list[_Note], indent: int,
              printer: Callable[[Any, list[_Note], int], list[_Line]], *, start_line: int,
              blanks: str) -> list[_Line]:
        """Children in order with this level's free-standing comments between them.

        blanks: "keep" keeps the author's blank lines (at most one), "decl" always puts one
        between declarations, "none" never.
        """
        inner, own = self._split(notes, children)
        elements: list[tuple[int, Any, Any]] = [(c.span.offset, 1, (c, inner[i])) for i, c in enumerate(children)]
        elements += [(n.offset, 0, n) for n in own if n.anchor is None]
        elements.sort(key=lambda e: (e[0], e[1]))
        lines: list[_Line] = []
        last_line = start_line
        previous_is_decl = False
        for position, is_child, payload in elements:
            if is_child:
                child, child_notes = payload
                first = child.span.line
                block = printer(child, child_notes, indent)
                end = max([child.span.end_line] + [n.line for n in child_notes])
            else:
                first = payload.line
                block = [_Line(indent, "", note=payload)]
                end = payload.line
            if lines:
                gap = first - last_line >= 2
                if blanks == "keep":
                    block[0].blank_before = gap
                elif blanks == "decl":
                    block[0].blank_before = gap or previous_is_decl
            lines.extend(block)
            last_line = max(last_line, end)
            previous_is_decl = bool(is_child)
        _align(lines)
        return lines

    @staticmethod
    def _trailing(notes: list[_Note]) -> list[_Note]:
        return [n for n in notes if n.anchor is not None]

    @staticmethod
    def _one_line(indent: int, text: str, notes: list[_Note]) -> list[_Line]:
        """An item printed on one line: comments from inside it go above, the last trailing
        one stays at the end."""
        trailing = [n for n in notes if n.anchor is not None]
        keep = max(trailing, key=lambda n: n.offset) if trailing else None
        above = [_Line(indent, "", note=n) for n in sorted(notes, key=lambda n: n.offset) if n is not keep]
        return above + [_Line(indent, text, trailing=[keep] if keep else [])]

    # -- declarations ------------------------------------------------------------------
    def _file(self) -> list[_Line]:
        return self._body(self.file.declarations, self.notes, 0, self._decl, start_line=1, blanks="decl")

    def _decl(self, decl: Any, notes: list[_Note], indent: int) -> list[_Line]:
        if isinstance(decl, ast.Endpoint):
            return self._braced(decl, f"endpoint {decl.name} {{", decl.items, notes, indent, self._item)
        if isinstance(decl, ast.TestBlock):
            return self._braced(decl, f"test {quote(decl.name)} {{", (*decl.persons, *decl.expects), notes,
                                indent, self._test_item)
        if decl.braced:
            return self._braced(decl, f"codelist {decl.name} {{", decl.parts, notes, indent,
                                lambda part, n, i: self._one_line(i, f"{part.vocab} {_patterns(part.patterns)}", n))
        return self._codelist(decl, notes, indent)

    def _test_item(self, item: Any, notes: list[_Note], indent: int) -> list[_Line]:
        if isinstance(item, ast.TestPerson):
            header = (f"person {item.id} {item.sex} born {item.born.isoformat()} "
                      f"followed until {item.followed_until.isoformat()} {{")
            return self._braced(item, header, item.events, notes, indent,
                                lambda event, n, i: self._one_line(i, test_event_text(event), n))
        return self._one_line(indent, expect_text(item), notes)

    def _braced(self, node: Any, header: str, items: Sequence[Any], notes: list[_Note], indent: int,
                printer: Callable[[Any, list[_Note], int], list[_Line]]) -> list[_Line]:
        """`header {`, items one level deeper, `}`; trailing comments not inside an item go on
        the header or the closing line."""
        inner_notes = [n for n in notes if n.anchor is None or any(_inside(i.span, n.anchor) for i in items)]
        head = _Line(indent, header)
        close = _Line(indent, "}")
        for note in notes:
            if note.anchor is not None and note not in inner_notes:
                before_items = not items or note.anchor < items[0].span.offset
                on_close = note.anchor == node.span.end_offset - 1 or not before_items
                (close if on_close else head).trailing.append(note)
        body = self._body(items, inner_notes, indent + INDENT, printer,
                          start_line=node.span.line, blanks="keep")
        return [head, *body, close]

    def _codelist(self, decl: ast.Codelist, notes: list[_Note], indent: int) -> list[_Line]:
        (part,) = decl.parts
        head = f"codelist {decl.name} {part.vocab}"
        one = f"{head} {_patterns(part.patterns)}"
        if not self._needs_wrap(decl.span, notes, indent + len(one)):
            return self._one_line(indent, one, notes)
        return self._wrapped(head, [part.patterns], notes, indent)

    # -- endpoint items ---------------------------------------------------------------------
    def _item(self, item: Any, notes: list[_Note], indent: int) -> list[_Line]:
        if isinstance(item, ast.Rule):
            return self._rule(item, notes, indent)
        if isinstance(item, ast.Controls):
            return self._braced(item, "controls {", item.items, notes, indent, self._control)
        return self._one_line(indent, _item_text(item), notes)

    def _control(self, item: Any, notes: list[_Note], indent: int) -> list[_Line]:
        if isinstance(item, ast.ControlExclude):
            return self._one_line(indent, "exclude " + ", ".join(n.name for n in item.names), notes)
        return self._one_line(indent, "require " + expr_text(item.condition), notes)

    @staticmethod
    def _needs_wrap(span: Span, notes: list[_Note], width: int) -> bool:
        # A comment before the node's last token can only keep its place on a multi-line form.
        return width > MAX_WIDTH or any(n.offset < span.end_offset for n in notes)

    def _rule(self, rule: ast.Rule, notes: list[_Note], indent: int) -> list[_Line]:
        head = " ".join([rule.source, *(option_text(o) for o in rule.options)])
        if rule.codelist is not None:
            lines = self._one_line(indent, f"{head} @{rule.codelist.name}", notes)
            lines[-1].head, lines[-1].text = rule.source, lines[-1].text[len(rule.source):]
            return lines
        one = head + " " + "  ".join(clause_text(c) for c in rule.clauses)
        if not self._needs_wrap(rule.span, notes, indent + len(one)):
            lines = self._one_line(indent, one, notes)
            lines[-1].head, lines[-1].text = rule.source, one[len(rule.source):]
            return lines
        if len(rule.clauses) == 1:
            clause = rule.clauses[0]
            lists = [clause.patterns, *([clause.excepts] if clause.excepts else [])]
            return self._wrapped(f"{head} {clause.vocab}", lists, notes, indent)
        # Several vocabularies: the source and options alone, then one clause per line.
        inner, own = self._split(notes, rule.clauses)
        head_line = _Line(indent, head, trailing=self._trailing(own))
        above = [_Line(indent + INDENT, "", note=n) for n in own if n.anchor is None]
        lines = [head_line]
        for clause, clause_notes in zip(rule.clauses, inner):
            standing = [n for n in above if n.note.offset < clause.span.offset]
            for n in standing:
                above.remove(n)
            lines.extend(standing)
            lines.extend(self._clause_lines(clause, clause_notes, indent + INDENT))
        return lines + above

    def _clause_lines(self, clause: ast.VocabClause, notes: list[_Note], indent: int) -> list[_Line]:
        one = clause_text(clause)
        if not self._needs_wrap(clause.span, notes, indent + len(one)):
            return self._one_line(indent, one, notes)
        lists = [clause.patterns, *([clause.excepts] if clause.excepts else [])]
        return self._wrapped(clause.vocab, lists, notes, indent)

    def _wrapped(self, head: str, lists: list[tuple[Any, ...]], notes: list[_Note], indent: int) -> list[_Line]:
        """`head (`, one pattern per line, `)`; a second list (except) as `) except (`."""
        fixed = [_Line(indent, head + " ("), *([_Line(indent, ") except (")] if len(lists) > 1 else []),
                 _Line(indent, ")")]
        everything = [p for patterns in lists for p in patterns]
        inner, own = self._split(notes, everything)
        pattern_notes = {id(p): ns for p, ns in zip(everything, inner)}
        for note in own:
            if note.anchor is None:
                continue
            # The fixed line of the region the anchor falls in: before the first list, between
            # the lists, or after the last.
            region = sum(1 for patterns in lists if note.anchor >= patterns[-1].span.end_offset - 1)
            fixed[region].trailing.append(note)
        standing = [n for n in own if n.anchor is None]
        lines = [fixed[0]]
        for index, patterns in enumerate(lists):
            for pattern in patterns:
                before = [n for n in standing if n.offset < pattern.span.offset]
                for n in before:
                    standing.remove(n)
                    lines.append(_Line(indent + INDENT, "", note=n))
                lines.extend(self._one_line(indent + INDENT, pattern_text(pattern), pattern_notes[id(pattern)]))
            if index == len(lists) - 1:
                lines.extend(_Line(indent + INDENT, "", note=n) for n in standing)
            lines.append(fixed[index + 1])
        return lines


def _align(lines: list[_Line]) -> None:
    """Pad the source word of one-line rules in a run to one width, as curators write them
    (`hospital icd10 ...` over `death    icd10 ...`). Comment lines do not end a run; a
    blank line or any other item does."""
    run: list[_Line] = []
    for line in [*lines, None]:
        if line is not None and not line.blank_before and (line.head is not None or line.note is not None):
            run.append(line)
            continue
        rules = [r for r in run if r.head is not None]
        width = max((len(r.head) for r in rules), default=0)
        for r in rules:
            r.head = r.head.ljust(width)
        run = [line] if line is not None and (line.head is not None or line.note is not None) else []


# -- text of leaves -----------------------------------------------------------------------

def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _item_text(item: Any) -> str:
    if isinstance(item, ast.Meta):
        return meta_text(item)
    if isinstance(item, ast.Include):
        return "include " + ", ".join(n.name for n in item.names)
    if isinstance(item, ast.When):
        return "when " + expr_text(item.condition)
    if isinstance(item, ast.Require):
        return "require " + expr_text(item.condition)
    if isinstance(item, ast.Sex):
        return f"sex {item.value}"
    raise ValueError(f"cannot print {type(item).__name__}")


def meta_text(meta: ast.Meta) -> str:
    value = meta.value
    if meta.custom:
        return f"meta {quote(meta.key)} {quote(str(value))}"
    if meta.key == "tags":
        tags = value if isinstance(value, tuple) else (value,)
        return "tags " + ", ".join(t if _NAME.match(t) else quote(t) for t in tags)
    if meta.key in _TEXT_KEYS:
        return f"{meta.key} {quote(str(value))}"
    word_ok = {"level": lambda v: _NUMBER.match(v) or _NAME.match(v), "omit": _NUMBER.match,
               "parent": _NAME.match}
    if meta.key in word_ok and isinstance(value, str) and word_ok[meta.key](value):
        return f"{meta.key} {value}"
    raise ValueError(f"cannot print metadata {meta.key} {value!r}")


def option_text(option: ast.Option) -> str:
    if option.name == "min":
        text = f"min {option.text if option.text is not None else option.value}"
        if option.window is not None:
            text += f" {option.spacing} {duration_text(option.window)}"
        return text
    if option.name == "needs_other":
        return "needs other"
    if option.name.startswith("with_"):
        return "with " + option.name[len("with_"):]
    return option.name


def clause_text(clause: ast.VocabClause) -> str:
    text = f"{clause.vocab} {_patterns(clause.patterns)}"
    if clause.excepts:
        text += f" except {_patterns(clause.excepts)}"
    return text


def _patterns(patterns: Sequence[Any]) -> str:
    return " | ".join(pattern_text(p) for p in patterns)


def pattern_text(pattern: Any) -> str:
    if isinstance(pattern, ast.Code):
        return pattern.text
    if isinstance(pattern, ast.Range):
        return f"{pattern.start}-{pattern.end}"
    if isinstance(pattern, ast.Exact):
        return "=" + pattern.text
    if isinstance(pattern, ast.AnyCode):
        return "any"
    if isinstance(pattern, ast.NoCode):
        return "none"
    if isinstance(pattern, ast.Regex):
        # Inside re"..." only \" is an escape; other backslashes belong to the expression.
        return 're"' + pattern.regex.replace('"', '\\"') + '"'
    if isinstance(pattern, ast.CodelistRef):
        return "@" + pattern.name
    if isinstance(pattern, ast.Combination):
        return f"{pattern_text(pattern.first)}&{pattern_text(pattern.second)}"
    raise ValueError(f"cannot print pattern {type(pattern).__name__}")


def duration_text(duration: ast.DurationLit) -> str:
    return f"{duration.text} {duration.unit}"


def test_event_text(event: ast.TestEvent) -> str:
    codes = (f"{c.vocab} {c.value}" if c.vocab is not None else f"{c.column}={c.value}" for c in event.codes)
    return " ".join([event.date.isoformat(), event.source, *codes])


def expect_text(expect: ast.Expect) -> str:
    return f"expect {expect.person.name} {expectation_text(expect)}"


def expectation_text(expect: ast.Expect) -> str:
    """What an `expect` line expects: `case of A at 1990-06-01 nevt 1`."""
    text = f"{expect.status} of {expect.endpoint.name}"
    if expect.at_date is not None:
        text += f" at {expect.at_date.isoformat()}"
    if expect.at_age is not None:
        text += f" at {expect.at_age:g}"
    if expect.nevt is not None:
        text += f" nevt {expect.nevt}"
    return text


def expr_text(expr: Any, context: int = 0) -> str:
    """`context` is the binding strength the surrounding syntax requires of this operand."""
    kind = expr.kind
    if kind == "number":
        return expr.text
    if kind == "date":
        return expr.value.isoformat()
    if kind == "duration":
        return duration_text(expr)
    if kind == "var":
        return expr.name
    if kind == "ref":
        return expr.name
    if kind == "attr":
        return f"{expr.name}.{expr.attr}"
    if kind == "or":
        text = " or ".join(expr_text(a, _PREC["or"] + 1) for a in expr.args)
    elif kind == "and":
        text = " and ".join(expr_text(a, _PREC["and"] + 1) for a in expr.args)
    elif kind == "not":
        # `not not X` needs no parentheses: negation nests in the grammar.
        text = "not " + expr_text(expr.arg, _PREC["not"])
    elif kind == "compare":
        parts = [expr_text(expr.operands[0], _PREC["compare"] + 1)]
        for op, operand in zip(expr.ops, expr.operands[1:]):
            parts += [op, expr_text(operand, _PREC["compare"] + 1)]
        text = " ".join(parts)
    elif kind == "arith":
        # left-associative: `a - b - c` is `(a - b) - c`; a right operand that is a sum needs parentheses
        text = f"{expr_text(expr.left, _PREC['arith'])} {expr.op} {expr_text(expr.right, _PREC['arith'] + 1)}"
    elif kind == "relation":
        words = [expr.subject.name] if expr.subject is not None else []
        if expr.window is not None:
            words += ["within", duration_text(expr.window), expr.relation.removeprefix("within_")]
        else:
            words.append(expr.relation)
        text = " ".join([*words, expr.anchor.name])
    else:
        raise ValueError(f"cannot print expression {kind}")
    return f"({text})" if _PREC[kind] < context else text
