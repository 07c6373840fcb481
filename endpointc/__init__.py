"""endpointc: a compiler for clinical endpoint definitions.

What a pipeline may import. The stages behind these are described in ARCHITECTURE.md.

>>> import endpointc, polars as pl
>>> program = endpointc.compile_program_text('endpoint I9_MI { hospital icd10 I21 | I22 }')
>>> events = pl.LazyFrame({
...     "FINNGENID": ["FG1"], "SOURCE": ["INPAT"], "EVENT_AGE": [61.5],
...     "APPROX_EVENT_DAY": [None], "CODE1": ["I219"], "CODE2": [None], "CODE3": [None],
...     "CODE4": [None], "ICDVER": ["10"], "CATEGORY": ["0"], "INDEX": ["1"]},
...     schema_overrides={"APPROX_EVENT_DAY": pl.Date, **{c: pl.String for c in ("CODE2", "CODE3", "CODE4")}})
>>> people = pl.LazyFrame({"FINNGENID": ["FG1", "FG2"], "SEX": ["male", "female"],
...                        "FU_END_AGE": [70.0, 65.0]})
>>> endpointc.evaluate(program, events, people).counts.collect().row(0)
('I9_MI', 1, 1, 0)
"""

from importlib import import_module
from typing import TYPE_CHECKING

# Where each public name lives. Loaded on first use, so `import endpointc` (and the CLI)
# does not import polars: the CLI must set POLARS_MAX_THREADS before polars starts.
_EXPORTS = {
    "compile_paths": "compiler", "compile_program": "compiler", "compile_text": "compiler",
    "Diagnostic": "diagnostics", "DiagnosticError": "diagnostics", "Severity": "diagnostics",
    "Results": "engine", "evaluate": "engine", "evaluate_reference": "engine",
    "build_index": "index", "open_index": "index",
    "parse": "parser", "parse_file": "parser", "Program": "plan",
    "Registry": "registry", "RegistryError": "registry", "load_registry": "registry",
    "scan_events": "registry", "scan_people": "registry",
    "write_results": "results",
}

__all__ = [*_EXPORTS, "compile_program_text"]

if TYPE_CHECKING:
    from .compiler import compile_paths, compile_program, compile_text
    from .diagnostics import Diagnostic, DiagnosticError, Severity
    from .engine import Results, evaluate, evaluate_reference
    from .index import build_index, open_index
    from .parser import parse, parse_file
    from .plan import Program
    from .registry import Registry, RegistryError, load_registry, scan_events, scan_people
    from .results import write_results


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'endpointc' has no attribute {name!r}")


def compile_program_text(text: str, *, name: str = "<string>") -> "Program":
    """Compile definitions given as text; raise DiagnosticError on any error."""
    from .compiler import compile_text
    from .diagnostics import DiagnosticError

    program, diagnostics = compile_text(text, name=name)
    if program is None:
        raise DiagnosticError(diagnostics)
    return program
