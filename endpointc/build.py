"""Build: Lark parse tree -> AST. One method per grammar alias, nothing more.

No checking happens here beyond what the tree's shape needs; every judgement about
names, codes and options belongs to `check`. The transformer is not recursive, so no tree
is too deep to build (the parser limits conditions' depth for the stages after this one).
"""

from __future__ import annotations

import datetime as dt

from lark import Token, Transformer_NonRecursive, v_args

from . import ast
from .diagnostics import Diagnostic
from .source import Source, Span

__all__ = ["Builder"]


def _text(token: Token) -> str:
    return str(token)


def _unquote(token: Token) -> str:
    # Strings allow \" and \\ escapes and nothing else fancy.
    body = str(token)[1:-1]
    return body.replace('\\"', '"').replace("\\\\", "\\")


def _whole(text: str) -> int | None:
    """The value of a NUMBER that is a whole number (`2`, `2.0`), else None."""
    whole, _, fraction = text.partition(".")
    if fraction.strip("0"):
        return None
    # Exact, unlike a float; int() refuses thousands of digits, and any number that long is
    # beyond every limit check applies anyway.
    return int(whole) if len(whole) <= 30 else 10 ** 30


@v_args(meta=True)
class Builder(Transformer_NonRecursive):
    def __init__(self, source: Source):
        super().__init__()
        self._src = source
        # what the text says that no AST can hold (a date that is not in the calendar)
        self.problems: list[Diagnostic] = []

    # -- spans ---------------------------------------------------------------
    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return self._src.span(0)
        return self._src.span(meta.start_pos, meta.end_pos)

    def _tok(self, token: Token) -> Span:
        return self._src.span(token.start_pos, token.end_pos)

    # -- declarations ----------------------------------------------------------
    def start(self, meta, children):
        return ast.File(name=self._src.name, declarations=tuple(children))

    def endpoint(self, meta, children):
        name, *items = children
        return ast.Endpoint(span=self._span(meta), name=str(name), name_span=self._tok(name),
                            items=tuple(items))

    def codelist(self, meta, children):
        name, vocab, patterns = children
        part = ast.CodelistPart(span=self._span(meta), vocab=vocab, patterns=patterns)
        return ast.Codelist(span=self._span(meta), name=str(name), name_span=self._tok(name), parts=(part,))

    def codelist_braced(self, meta, children):
        name, *parts = children
        return ast.Codelist(span=self._span(meta), name=str(name), name_span=self._tok(name),
                            parts=tuple(parts), braced=True)

    def codelist_part(self, meta, children):
        vocab, patterns = children
        return ast.CodelistPart(span=self._span(meta), vocab=vocab, patterns=patterns)

    # -- metadata ------------------------------------------------------------
    def meta(self, meta, children):
        key, value = children
        return ast.Meta(span=self._span(meta), key=str(key), value=_unquote(value))

    def meta_level(self, meta, children):
        return ast.Meta(span=self._span(meta), key="level", value=str(children[0]))

    def meta_omit(self, meta, children):
        return ast.Meta(span=self._span(meta), key="omit", value=str(children[0]))

    def meta_parent(self, meta, children):
        return ast.Meta(span=self._span(meta), key="parent", value=str(children[0]))

    def meta_tags(self, meta, children):
        tags = tuple(_unquote(t) if t.type == "STRING" else str(t) for t in children)
        return ast.Meta(span=self._span(meta), key="tags", value=tags)

    def meta_custom(self, meta, children):
        key, value = children
        return ast.Meta(span=self._span(meta), key=_unquote(key), value=_unquote(value), custom=True)

    # -- rules ---------------------------------------------------------------
    def rule(self, meta, children):
        source, *rest = children
        options = tuple(c for c in rest if isinstance(c, ast.Option))
        clauses = tuple(c for c in rest if isinstance(c, ast.VocabClause))
        return ast.Rule(span=self._span(meta), source=source, options=options, clauses=clauses)

    def rule_codelist(self, meta, children):
        source, *options, name = children
        ref = ast.CodelistRef(span=self._tok(name), name=str(name))
        return ast.Rule(span=self._span(meta), source=source, options=tuple(options), clauses=(), codelist=ref)

    def option_spaced(self, meta, children):
        _, number, spacing, window = children
        return ast.Option(span=self._span(meta), name="min", value=_whole(str(number)), text=str(number),
                          spacing=str(spacing), window=window)

    def source(self, meta, children):
        return str(children[0])

    def vocab(self, meta, children):
        return str(children[0])

    def option(self, meta, children):
        words = [str(c) for c in children]
        span = self._span(meta)
        if words[0] == "min":
            return ast.Option(span=span, name="min", value=_whole(words[1]), text=words[1])
        if words[0] == "needs":
            return ast.Option(span=span, name="needs_other")
        if words[0] == "with":
            # `with VOCAB` parses for any vocabulary so check can say which ones are allowed.
            return ast.Option(span=span, name="with_atc" if words[1] == "atc" else f"with_{words[1]}")
        return ast.Option(span=span, name=words[0])

    def vocab_clause(self, meta, children):
        vocab, patterns, *excepts = children
        return ast.VocabClause(span=self._span(meta), vocab=vocab, patterns=patterns,
                               excepts=excepts[0] if excepts else ())

    def patterns(self, meta, children):
        return tuple(children)

    # -- patterns ------------------------------------------------------------
    def code(self, meta, children):
        return ast.Code(span=self._span(meta), text=str(children[0]))

    def range(self, meta, children):
        start, end = children
        return ast.Range(span=self._span(meta), start=str(start), end=str(end))

    def exact(self, meta, children):
        return ast.Exact(span=self._span(meta), text=str(children[0]))

    def any_code(self, meta, children):
        return ast.AnyCode(span=self._span(meta))

    def no_code(self, meta, children):
        return ast.NoCode(span=self._span(meta))

    def regex(self, meta, children):
        body = str(children[0])[3:-1]
        # Inside re"..." only \" is an escape of the language; every other backslash
        # belongs to the regular expression.
        return ast.Regex(span=self._span(meta), regex=body.replace('\\"', '"'))

    def codelist_ref(self, meta, children):
        return ast.CodelistRef(span=self._span(meta), name=str(children[0]))

    def combination(self, meta, children):
        first, second = children
        return ast.Combination(span=self._span(meta), first=first, second=second)

    # -- endpoint items --------------------------------------------------------
    def _names(self, children) -> tuple[ast.NameRef, ...]:
        return tuple(ast.NameRef(span=self._tok(t), name=str(t)) for t in children)

    def include(self, meta, children):
        return ast.Include(span=self._span(meta), names=self._names(children))

    def when(self, meta, children):
        return ast.When(span=self._span(meta), condition=children[0])

    def require(self, meta, children):
        return ast.Require(span=self._span(meta), condition=children[0])

    def sex(self, meta, children):
        return ast.Sex(span=self._span(meta), value=str(children[1]))

    def controls(self, meta, children):
        return ast.Controls(span=self._span(meta), items=tuple(children))

    def control_exclude(self, meta, children):
        return ast.ControlExclude(span=self._span(meta), names=self._names(children))

    def control_require(self, meta, children):
        return ast.ControlRequire(span=self._span(meta), condition=children[0])

    # -- expressions -----------------------------------------------------------
    def or_(self, meta, children):
        return ast.Or(span=self._span(meta), args=tuple(children))

    def and_(self, meta, children):
        return ast.And(span=self._span(meta), args=tuple(children))

    def not_(self, meta, children):
        return ast.Not(span=self._span(meta), arg=children[0])

    def compare(self, meta, children):
        return ast.Compare(span=self._span(meta), operands=tuple(children[0::2]),
                           ops=tuple(str(op) for op in children[1::2]))

    def number(self, meta, children):
        return ast.Number(span=self._span(meta), value=float(children[0]), text=str(children[0]))

    def var(self, meta, children):
        return ast.Var(span=self._span(meta), name=str(children[0]))

    def endpoint_ref(self, meta, children):
        return ast.EndpointRef(span=self._span(meta), name=str(children[0]))

    def attr(self, meta, children):
        name, attr = children
        return ast.Attr(span=self._span(meta), name=str(name), attr=attr)

    def attr_name(self, meta, children):
        return str(children[0])

    def arith(self, meta, children):
        left, op, right = children
        return ast.Arith(span=self._span(meta), op=str(op), left=left, right=right)

    def relation(self, meta, children):
        refs = [c for c in children if isinstance(c, ast.EndpointRef)]
        window = next((c for c in children if isinstance(c, ast.DurationLit)), None)
        direction = next(str(c) for c in children if isinstance(c, Token) and c.type == "DIRECTION")
        return ast.Relation(span=self._span(meta), subject=refs[0] if len(refs) == 2 else None,
                            relation=f"within_{direction}" if window is not None else direction,
                            window=window, anchor=refs[-1])

    def duration(self, meta, children):
        number, unit = children
        return ast.DurationLit(span=self._span(meta), amount=float(number), text=str(number), unit=unit)

    def unit(self, meta, children):
        return str(children[0])

    def date(self, meta, children):
        return ast.DateLit(span=self._span(meta), value=self._date(children[0]))

    def _date(self, token: Token) -> dt.date:
        try:
            return dt.date.fromisoformat(str(token))
        except ValueError:
            # Keep building so that every bad date is reported, each at its place.
            self.problems.append(Diagnostic.error(
                "EP113", f"{token} is not a calendar date", self._tok(token),
                "write a real date as YYYY-MM-DD, e.g. 2020-02-29 but not 2021-02-29"))
            return dt.date(1, 1, 1)

    # -- tests ---------------------------------------------------------------------
    def test(self, meta, children):
        name, *items = children
        return ast.TestBlock(span=self._span(meta), name=_unquote(name),
                             persons=tuple(i for i in items if isinstance(i, ast.TestPerson)),
                             expects=tuple(i for i in items if isinstance(i, ast.Expect)))

    def test_person(self, meta, children):
        pid, sex, born, until, *events = children
        return ast.TestPerson(span=self._span(meta), id=str(pid), sex=str(sex), born=self._date(born),
                              followed_until=self._date(until), events=tuple(events))

    def test_event(self, meta, children):
        day, source, *codes = children
        return ast.TestEvent(span=self._span(meta), date=self._date(day), source=str(source), codes=tuple(codes))

    def event_vocab(self, meta, children):
        vocab, code = children
        return ast.EventCode(span=self._span(meta), vocab=vocab, value=str(code))

    def event_column(self, meta, children):
        column, code = children
        return ast.EventCode(span=self._span(meta), column=str(column), value=str(code))

    def expect(self, meta, children):
        person, status, endpoint, *options = children
        fields = dict(options)
        return ast.Expect(span=self._span(meta), person=ast.NameRef(span=self._tok(person), name=str(person)),
                          status=str(status), endpoint=ast.NameRef(span=self._tok(endpoint), name=str(endpoint)),
                          **fields)

    def expect_at(self, meta, children):
        (token,) = children
        if token.type == "DATE":
            return ("at_date", self._date(token))
        return ("at_age", float(token))

    def expect_nevt(self, meta, children):
        return ("nevt", _whole(str(children[0])))
