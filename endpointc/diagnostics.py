"""Diagnostics: what every stage reports instead of raising at the user.

Codes are stable (documented in docs/diagnostics.md): EP1xx syntax, EP2xx names and
structure, EP3xx codes and patterns, EP4xx rules and options, EP5xx data, EP6xx import.
The library only builds these objects; rendering is the CLI's job (`render`).
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable

from pydantic import BaseModel, ConfigDict

from .source import Span

__all__ = ["Severity", "Diagnostic", "DiagnosticError", "has_errors", "sort_diagnostics"]


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


class Diagnostic(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    severity: Severity
    message: str
    span: Span | None = None
    hints: tuple[str, ...] = ()
    # Extra places worth pointing at, e.g. the first definition of a duplicate name.
    related: tuple[tuple[str, Span], ...] = ()

    @classmethod
    def error(cls, code: str, message: str, span: Span | None = None, *hints: str,
              related: Iterable[tuple[str, Span]] = ()) -> "Diagnostic":
        return cls(code=code, severity=Severity.ERROR, message=message, span=span,
                   hints=tuple(hints), related=tuple(related))

    @classmethod
    def warning(cls, code: str, message: str, span: Span | None = None, *hints: str,
                related: Iterable[tuple[str, Span]] = ()) -> "Diagnostic":
        return cls(code=code, severity=Severity.WARNING, message=message, span=span,
                   hints=tuple(hints), related=tuple(related))

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.span}: " if self.span else ""
        return f"{where}{self.severity.value}[{self.code}]: {self.message}"


class DiagnosticError(Exception):
    """Raised by API entry points when diagnostics contain errors; carries all of them."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        errors = [d for d in self.diagnostics if d.is_error]
        first = str(errors[0]) if errors else "no errors"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    def key(d: Diagnostic):
        s = d.span
        return (s.file, s.offset, d.code) if s else ("", -1, d.code)
    return sorted(diagnostics, key=key)
