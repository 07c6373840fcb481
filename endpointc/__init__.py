"""endpointc: a compiler for clinical endpoint definitions."""

from .diagnostics import Diagnostic, DiagnosticError, Severity
from .parser import parse, parse_file

__all__ = ["Diagnostic", "DiagnosticError", "Severity", "parse", "parse_file"]
