"""The pipeline written down once: definition files -> parse -> check -> lower -> `Program`.

Every entry point returns the diagnostics of all stages together, so a curator fixes a
file in one pass; only `compile_program` raises (a `DiagnosticError` carrying them all).

>>> program, diagnostics = compile_text('''
...   endpoint I9_MI { hospital icd10 I21 | I22 }
...   endpoint I9_MI_EARLY { include I9_MI  when age < 50 }
... ''')
>>> program.names, diagnostics
(('I9_MI', 'I9_MI_EARLY'), ())
>>> program, diagnostics = compile_text('endpoint A { hospital icd10 I21 I22 }')
>>> program is None, diagnostics[0].code
(True, 'EP105')
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from . import ast
from .check import check
from .diagnostics import Diagnostic, DiagnosticError, has_errors
from .lower import LowerError, lower
from .parser import parse, parse_file
from .plan import Program

__all__ = ["compile_paths", "compile_text", "compile_files", "compile_program", "definition_files",
           "parse_paths"]


def definition_files(paths: Sequence[str | Path]) -> tuple[Path, ...]:
    """Files as given, and every `*.ep` under each folder, sorted (the order is stable)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(path.rglob("*.ep")))
        else:
            found.append(path)
    return tuple(dict.fromkeys(found))


def parse_paths(paths: Sequence[str | Path]) -> tuple[list[ast.File], list[Diagnostic]]:
    """Every file of `definition_files(paths)` parsed: the trees that parsed, and the
    diagnostics of all files (a file that cannot be read is an error, not an exception)."""
    trees: list[ast.File] = []
    diagnostics: list[Diagnostic] = []
    for path in definition_files(paths):
        tree, found = parse_file(path)
        diagnostics.extend(found)
        if tree is not None:
            trees.append(tree)
    return trees, diagnostics


def compile_paths(paths: Sequence[str | Path], *, rules: Sequence[str] = ()
                  ) -> tuple[Program | None, tuple[Diagnostic, ...]]:
    """Compile definition files and folders of `*.ep` files into one program.

    Returns `(None, diagnostics)` when any stage reports an error; `rules` are curation
    rule sets checked too (see `check`).

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "dm.ep").write_text('endpoint E4_DM2 { purchase atc A10B }')
    >>> program, diagnostics = compile_paths([folder])
    >>> program.get("E4_DM2").rules[0].min_events
    3
    """
    trees, diagnostics = parse_paths(paths)
    return compile_files(trees, diagnostics=diagnostics, rules=rules)


def compile_text(text: str, *, name: str = "<string>") -> tuple[Program | None, tuple[Diagnostic, ...]]:
    """Compile one definitions text (e.g. from a notebook cell or a test)."""
    tree, diagnostics = parse(text, name=name)
    return compile_files([tree] if tree is not None else [], diagnostics=diagnostics)


def compile_files(files: Sequence[ast.File], *, diagnostics: Sequence[Diagnostic] = (),
                  rules: Sequence[str] = ()) -> tuple[Program | None, tuple[Diagnostic, ...]]:
    """Check and lower parsed files; `diagnostics` are earlier stages' findings to carry along,
    `rules` curation rule sets checked too (see `check`)."""
    found = list(diagnostics)
    if has_errors(found):
        # A file that did not parse leaves names undefined: checking the rest would only
        # add noise about them.
        return None, tuple(found)
    library, checked = check(files, rules=rules)
    found.extend(checked)
    if has_errors(found):
        return None, tuple(found)
    try:
        program = lower(library)
    except LowerError as error:
        found.append(error.diagnostic)
        return None, tuple(found)
    return program, tuple(found)


def compile_program(paths: Sequence[str | Path]) -> Program:
    """Compile, raising `DiagnosticError` (with every diagnostic) if anything is wrong.

    >>> compile_program(["/nonexistent/defs.ep"])
    Traceback (most recent call last):
    ...
    endpointc.diagnostics.DiagnosticError: error[EP101]: cannot read /nonexistent/defs.ep: No such file or directory
    """
    program, diagnostics = compile_paths(paths)
    if program is None:
        raise DiagnosticError(diagnostics)
    return program
