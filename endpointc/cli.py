"""The command line: the only module that prints.

Exit codes: 0 success, 1 problems found (errors, or warnings with --strict, or files
that `fmt --check` would change), 2 usage problems (typer's own, or no input files).
Stage modules are imported inside each command so `endpointc check` stays quick.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Iterable, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .diagnostics import Diagnostic, has_errors, sort_diagnostics

__all__ = ["app", "main"]

app = typer.Typer(
    name="endpointc",
    help="Compile clinical endpoint definitions and evaluate them over FinnGen registries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold person-level data
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

Paths = Annotated[list[Path], typer.Argument(help="Definition files (*.ep) or folders of them.")]


def _ep_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.rglob("*.ep")))
        elif path.exists():
            files.append(path)
        else:
            _usage(f"{path}: no such file or folder")
    if not files:
        _usage("no definition files (*.ep) found in " + ", ".join(map(str, paths)))
    return files


def _usage(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def _print_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    from .render import format_diagnostic
    from .source import Source

    sources: dict[str, Source] = {}
    for diag in sort_diagnostics(diagnostics):
        source = None
        if diag.span is not None:
            name = diag.span.file
            if name not in sources:
                try:
                    sources[name] = Source.read(name)
                except (OSError, UnicodeDecodeError):
                    sources[name] = Source(name, "")
            source = sources[name]
        text = format_diagnostic(diag, source)
        first, _, rest = text.partition("\n")
        style = "bold red" if diag.is_error else "bold yellow"
        err.print(Text(first, style=style))
        if rest:
            err.print(Text(rest))
        err.print()


def _summary(diagnostics: Sequence[Diagnostic], files: int) -> str:
    n_err = sum(d.is_error for d in diagnostics)
    n_warn = len(diagnostics) - n_err
    return f"{files} file(s) checked: {n_err} error(s), {n_warn} warning(s)"


def _compile(paths: list[Path], *, strict: bool = False):
    """Parse, check and lower; print diagnostics and exit 1 on errors."""
    from .compiler import compile_paths

    program, diagnostics = compile_paths(_ep_files(paths))
    if diagnostics:
        _print_diagnostics(diagnostics)
    if program is None or has_errors(diagnostics) or (strict and diagnostics):
        err.print(f"[red]{_summary(diagnostics, len(_ep_files(paths)))}[/]")
        raise typer.Exit(1)
    return program


@app.command()
def check(
    paths: Paths,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print diagnostics as JSON.")] = False,
) -> None:
    """Check definitions: syntax, names, cycles, vocabularies, patterns, options."""
    from .check import check as check_files
    from .parser import parse_file

    files = _ep_files(paths)
    trees, diagnostics = [], []
    for path in files:
        tree, diags = parse_file(path)
        diagnostics.extend(diags)
        if tree is not None:
            trees.append(tree)
    _, semantic = check_files(trees)
    diagnostics.extend(semantic)
    diagnostics = sort_diagnostics(diagnostics)
    failed = has_errors(diagnostics) or (strict and bool(diagnostics))
    if as_json:
        out.print_json(json.dumps({
            "files": [str(f) for f in files],
            "ok": not failed,
            "diagnostics": [d.model_dump(mode="json") for d in diagnostics],
        }))
    else:
        _print_diagnostics(diagnostics)
        style = "red" if failed else "green"
        err.print(f"[{style}]{_summary(diagnostics, len(files))}[/]")
    raise typer.Exit(1 if failed else 0)


@app.command()
def fmt(
    paths: Paths,
    check_only: Annotated[bool, typer.Option("--check", help="Change nothing; exit 1 if a file would change.")] = False,
) -> None:
    """Rewrite definition files in the canonical layout (comments are kept)."""
    from .fmt import format_text

    changed, broken = [], []
    for path in _ep_files(paths):
        text = path.read_text(encoding="utf-8-sig")
        new, diagnostics = format_text(text, name=str(path))
        if new is None:
            _print_diagnostics(diagnostics)
            broken.append(path)
            continue
        if new != text:
            changed.append(path)
            if not check_only:
                _atomic_write_text(path, new)
    verb = "would reformat" if check_only else "reformatted"
    for path in changed:
        err.print(f"{verb} {path}")
    err.print(f"{len(changed)} file(s) {verb}, {len(broken)} with syntax errors")
    raise typer.Exit(1 if broken or (check_only and changed) else 0)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _counts_table(counts, title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for column in counts.columns:
        table.add_column(column, justify="left" if column == "ENDPOINT" else "right")
    for row in counts.iter_rows():
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


def _split_names(endpoints: Optional[str]) -> Optional[list[str]]:
    if not endpoints:
        return None
    return [n.strip() for n in endpoints.split(",") if n.strip()]


@app.command()
def run(
    paths: Paths,
    events: Annotated[Path, typer.Option(help="Longitudinal events: TSV, TSV.gz or Parquet.")],
    people: Annotated[Path, typer.Option(help="People table (the population): TSV, TSV.gz or Parquet.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the results.")],
    endpoints: Annotated[Optional[str], typer.Option(help="Comma-separated endpoint names (their dependencies are evaluated too).")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Also write the FinnGen-style wide table.")] = False,
    no_mask: Annotated[bool, typer.Option("--no-mask", help="Show counts under 5 in counts.tsv (individual-level risk).")] = False,
) -> None:
    """Evaluate endpoints over a registry and write endpoints.parquet and counts.tsv."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .engine.polars import evaluate
    from .registry import RegistryError, load_registry
    from .results import write_results

    names = _split_names(endpoints)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=False) as progress:
        task = progress.add_task("compiling definitions", total=None)
        program = _compile(paths)
        if names:
            unknown = [n for n in names if n not in program.names]
            if unknown:
                _usage(f"unknown endpoint(s): {', '.join(unknown)}")
        progress.update(task, description=f"compiled {len(program.endpoints)} endpoint(s); reading registry")
        try:
            registry = load_registry(events, people)
        except RegistryError as error:
            err.print(f"[bold red]error:[/] {error}")
            raise typer.Exit(1)
        for warning in registry.warnings:
            err.print(f"[yellow]warning:[/] {warning}")
        progress.update(task, description="evaluating")
        try:
            results = evaluate(program, registry.events, registry.people, endpoints=names)
            progress.update(task, description="writing results")
            if no_mask:
                err.print("[yellow]warning:[/] --no-mask: counts under 5 are shown; do not export counts.tsv")
            counts = write_results(results.long, results.counts, out_dir, people=registry.people,
                                   wide=wide, mask_threshold=None if no_mask else 5)
        except (ValueError, RegistryError) as error:
            err.print(f"[bold red]error:[/] {error}")
            raise typer.Exit(1)
        progress.update(task, description=f"wrote results to {out_dir}")
    for warning in results.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    out.print(_counts_table(counts, f"Endpoints ({out_dir})"))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
