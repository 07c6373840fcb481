"""FinnGen's CONDITIONS and PRE_CONDITIONS columns -> expressions of the language.

Input: one cell's text, the file's names (FinnGen NAME -> language name), and whether the
column filters events (PRE_CONDITIONS) or people (CONDITIONS, CONTROL_CONDITIONS).
Output: an expression of the language (`ConditionParser.parse`), or `Untranslatable` saying
what the language cannot express.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from .. import ast
from ..source import Span


class Untranslatable(Exception):
    """A condition the language cannot express; `missing` when the reason is a name that is
    not in the file."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing


_CONDITION_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_.']*)"
                              r"|(?P<op><=|>=|==|!=|<|>)|(?P<punct>[!&|()]))")
# FinnGen's event columns and the language's event variables they become.
_EVENT_FIELDS = {"EVENT_AGE": "age", "EVENT_YEAR": "year", "EMERG": "emergency"}


class ConditionParser:
    """FinnGen PRE_CONDITIONS / CONDITIONS: `!`, `&`, `|`, parentheses, comparisons.

    PRE_CONDITIONS read EVENT_AGE, EVENT_YEAR and EMERG; CONDITIONS read endpoint names,
    NAME_NEVT (-> NAME.count), NAME_AGE (-> NAME.age) and NAME_YEAR (-> NAME.year).
    """

    def __init__(self, text: str, span: Span, names: Mapping[str, str], *, event_level: bool):
        self.text, self.span, self.names, self.event_level = text, span, names, event_level
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = _CONDITION_TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise Untranslatable(f"cannot read {text[pos:]!r}")
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.pos = 0

    def _resolve(self, value: str) -> Any:
        """NAME -> the endpoint; NAME_NEVT, NAME_AGE, NAME_YEAR -> its attribute; else None."""
        if value in self.names:
            return ast.EndpointRef(span=self.span, name=self.names[value])
        for suffix, attr in (("_NEVT", "count"), ("_AGE", "age"), ("_YEAR", "year")):
            if value.endswith(suffix) and value[: -len(suffix)] in self.names:
                return ast.Attr(span=self.span, name=self.names[value[: -len(suffix)]], attr=attr)
        return None

    def parse(self) -> Any:
        expr = self._or()
        if self.pos != len(self.tokens):
            raise Untranslatable(f"unexpected {self.tokens[self.pos][1]!r}")
        return expr

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, value: str) -> bool:
        token = self._peek()
        if token and token[1] == value and token[0] in ("punct", "op"):
            self.pos += 1
            return True
        return False

    def _or(self) -> Any:
        args = [self._and()]
        while self._take("|"):
            args.append(self._and())
        return args[0] if len(args) == 1 else ast.Or(span=self.span, args=tuple(args))

    def _and(self) -> Any:
        args = [self._not()]
        while self._take("&"):
            args.append(self._not())
        return args[0] if len(args) == 1 else ast.And(span=self.span, args=tuple(args))

    def _not(self) -> Any:
        if self._take("!"):
            return ast.Not(span=self.span, arg=self._not())
        return self._compare()

    def _compare(self) -> Any:
        token, following = self._peek(), self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        if (not self.event_level and token and token[0] == "name" and following and following[0] == "op"
                and self._resolve(token[1]) is None and token[1] not in _EVENT_FIELDS):
            raise Untranslatable(f"{token[1]} is compared like a measurement, and the language has no "
                                 f"measurements ({token[1]} is no endpoint of this file)")
        operands = [self._operand()]
        ops = []
        while (token := self._peek()) and token[0] == "op":
            self.pos += 1
            ops.append(token[1])
            operands.append(self._operand())
        if not ops:
            return operands[0]
        if len(ops) == 1 and isinstance(operands[0], ast.EndpointRef) and isinstance(operands[1], ast.Number):
            # FinnGen's `NAME==1` is the endpoint's status; the language reads NAME as true/false.
            value, op = operands[1].value, ops[0]
            if op in ("==", "!=") and value in (0, 1):
                is_case = (op == "==") == (value == 1)
                return operands[0] if is_case else ast.Not(span=self.span, arg=operands[0])
            raise Untranslatable(f"{operands[0].name} is a case or not; `{op} {operands[1].text}` compares it "
                                 "with a number")
        if any(isinstance(o, ast.EndpointRef) for o in operands):
            raise Untranslatable("an endpoint's status (case or not) cannot be compared")
        return ast.Compare(span=self.span, operands=tuple(operands), ops=tuple(ops))

    def _operand(self) -> Any:
        token = self._peek()
        if token is None:
            raise Untranslatable("the condition ends too early")
        self.pos += 1
        kind, value = token
        if kind == "num":
            return ast.Number(span=self.span, value=float(value), text=value)
        if kind == "punct" and value == "(":
            expr = self._or()
            if not self._take(")"):
                raise Untranslatable("unbalanced parentheses")
            return expr
        if kind != "name":
            raise Untranslatable(f"unexpected {value!r}")
        if self.event_level:
            if value in _EVENT_FIELDS:
                return ast.Var(span=self.span, name=_EVENT_FIELDS[value])
            raise Untranslatable(f"{value} is not an event field (EVENT_AGE, EVENT_YEAR, EMERG)")
        resolved = self._resolve(value)
        if resolved is not None:
            return resolved
        if value in _EVENT_FIELDS:
            raise Untranslatable(f"{value} is an event field, which CONDITIONS cannot read")
        raise Untranslatable(f"{value} is not an endpoint of this file", missing=True)


def refers_to(expr: Any, names: set[str]) -> bool:
    """Whether the expression reads any of the endpoints `names` (status or attribute)."""
    if isinstance(expr, (ast.EndpointRef, ast.Attr)):
        return expr.name in names
    children = getattr(expr, "args", None) or getattr(expr, "operands", None) or (
        (expr.arg,) if isinstance(expr, ast.Not) else ())
    return any(refers_to(c, names) for c in children)
