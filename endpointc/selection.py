"""Definition files -> the program of some endpoints, parsing only the files they need.

`compiler.compile_paths` parses every file before checking them together: the FinnGen
library (4,841 endpoints in 51 files, 1.6 MB) takes tens of seconds to parse, check and
lower, which a curator evaluating one endpoint would wait for on every run. Asked for
some endpoints, `compile_selection` finds the files that declare them (a scan of each
file's text for `endpoint NAME` / `codelist NAME`, no parse), parses those, takes the
names their declarations need (includes, endpoints read by `when`, `require` and
controls, codelists), and repeats until nothing new is needed; then checks and lowers
the needed declarations only and returns the requested endpoints with their
dependencies, as `compile_paths(...).subset(endpoints)` would.

The rest of the library is not checked (a file left out is not even parsed), so its
errors are not reported: `endpointc check` checks a whole library. Whenever the scan cannot account for a name (declared nowhere,
or a file that does not parse), the whole library is compiled instead, so that its
diagnostics are the ones a full compile gives.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import BaseModel

from . import ast
from .check import endpoint_dependencies
from .compiler import compile_files, compile_paths, definition_files
from .diagnostics import Diagnostic
from .parser import parse_file
from .plan import Program

__all__ = ["compile_selection"]

# A declaration's keyword and name, comments between them allowed (a comment or string
# that looks like one only costs a parse of its file).
_DECLARATION = re.compile(r"\b(?:endpoint|codelist)(?:\s|#[^\n]*)+([A-Za-z_][A-Za-z0-9_]*)")


def compile_selection(paths: Sequence[str | Path], endpoints: Sequence[str]
                      ) -> tuple[Program | None, tuple[Diagnostic, ...]]:
    """The program of `endpoints` and their dependencies from the definition files under
    `paths` (see the module docstring); `(None, diagnostics)` on errors."""
    files = definition_files(paths)
    declared: dict[str, list[Path]] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return _whole(paths, endpoints)  # the full compile names the file and the problem
        for name in dict.fromkeys(_DECLARATION.findall(text)):
            declared.setdefault(name, []).append(path)
    parsed: dict[Path, ast.File] = {}
    needed, todo = set(), list(dict.fromkeys(endpoints))
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        if name not in declared:
            return _whole(paths, endpoints)  # unknown, or declared where the scan did not see it
        for path in declared[name]:
            if path not in parsed:
                tree, _ = parse_file(path)
                if tree is None:
                    return _whole(paths, endpoints)
                parsed[path] = tree
            for decl in parsed[path].declarations:
                if not isinstance(decl, ast.TestBlock) and decl.name == name:
                    todo.extend(_needs(decl))
    # only the needed declarations: the others may need names of files not parsed
    trees = [parsed[p].model_copy(update={"declarations": tuple(
        d for d in parsed[p].declarations if not isinstance(d, ast.TestBlock) and d.name in needed)})
        for p in files if p in parsed]
    program, diagnostics = compile_files(trees)
    return (None if program is None else program.subset(list(dict.fromkeys(endpoints)))), diagnostics


def _whole(paths: Sequence[str | Path], endpoints: Sequence[str]) -> tuple[Program | None, tuple[Diagnostic, ...]]:
    """The whole library compiled, and subset when it knows every name asked for."""
    program, diagnostics = compile_paths(paths)
    if program is not None and set(endpoints) <= set(program.names):
        program = program.subset(list(dict.fromkeys(endpoints)))
    return program, diagnostics


def _needs(decl: ast.Endpoint | ast.Codelist) -> Iterator[str]:
    """The names a declaration needs declared: the endpoints it depends on and the
    codelists it reads."""
    if isinstance(decl, ast.Endpoint):
        yield from endpoint_dependencies(decl)
    yield from (ref.name for ref in _codelist_refs(decl))


def _codelist_refs(node: object) -> Iterator[ast.CodelistRef]:
    if isinstance(node, ast.CodelistRef):
        yield node
    elif isinstance(node, BaseModel):
        for field in type(node).model_fields:
            yield from _codelist_refs(getattr(node, field))
    elif isinstance(node, tuple):
        for item in node:
            yield from _codelist_refs(item)
