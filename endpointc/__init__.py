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

from .compiler import compile_paths, compile_program, compile_text
from .diagnostics import Diagnostic, DiagnosticError, Severity
from .engine import Results, evaluate, evaluate_reference
from .parser import parse, parse_file
from .plan import Program
from .registry import Registry, RegistryError, load_registry
from .results import write_results

__all__ = [
    "compile_paths", "compile_program", "compile_text", "compile_program_text",
    "Program", "evaluate", "evaluate_reference", "Results",
    "load_registry", "Registry", "RegistryError", "write_results",
    "parse", "parse_file", "Diagnostic", "DiagnosticError", "Severity",
]


def compile_program_text(text: str, *, name: str = "<string>") -> Program:
    """Compile definitions given as text; raise DiagnosticError on any error."""
    program, diagnostics = compile_text(text, name=name)
    if program is None:
        raise DiagnosticError(diagnostics)
    return program
