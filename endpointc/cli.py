"""The command line: the only module that prints.

Exit codes: 0 success, 1 problems found (errors, or warnings with --strict, or files
that `fmt --check` would change), 2 usage problems (typer's own, or no input files).
Stage modules are imported inside each command so `endpointc check` stays quick.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .diagnostics import Diagnostic, has_errors, sort_diagnostics
from .masking import MASK_THRESHOLD, SECONDARY_MARK

__all__ = ["app", "main"]

app = typer.Typer(
    name="endpointc",
    help="Compile clinical endpoint definitions and evaluate them over FinnGen registries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold person-level data
)
# Markup off: messages carry paths and registry values, and "[/]" in one of them would be
# read as markup (and crash the run). Styles are given as Text.
out = Console(highlight=False, markup=False)
err = Console(stderr=True, highlight=False, markup=False)

Paths = Annotated[list[Path], typer.Argument(help="Definition files (*.ep) or folders of them.")]
EventsFile = Annotated[Path, typer.Option(help="Longitudinal events: TSV, TSV.gz or Parquet.")]
PeopleFile = Annotated[Path, typer.Option(help="People table (the population): TSV, TSV.gz or Parquet.")]
NoMask = Annotated[bool, typer.Option("--no-mask", help=f"Show counts under {MASK_THRESHOLD} (individual-level risk).")]


def _read_registry(events: Path, people: Path, *, keep_as_read: bool = False, allow_empty_events: bool = False):
    """Load and check the registry, printing its warnings (RegistryError is the caller's)."""
    from .registry import load_registry

    registry = load_registry(events, people, keep_as_read=keep_as_read, allow_empty_events=allow_empty_events)
    _print_diagnostics(registry.diagnostics)
    return registry


def _registry_failed(error) -> NoReturn:
    """A broken registry: its diagnostics, with their codes, and exit 1."""
    _print_diagnostics(error.diagnostics())
    raise typer.Exit(1)


def _definition_files(paths: Sequence[Path]) -> list[Path]:
    """`compiler.definition_files`, where a missing path or finding no file is a usage error."""
    from .compiler import definition_files

    for path in paths:
        if not path.exists():
            _usage(f"{path}: no such file or folder")
    files = list(definition_files(paths))
    if not files:
        _usage("no definition files (*.ep) found in " + ", ".join(map(str, paths)))
    return files


def _mask_threshold(no_mask: bool) -> int | None:
    return None if no_mask else MASK_THRESHOLD


def _warn_unmasked(advice: str) -> None:
    _warning(f"--no-mask: counts under {MASK_THRESHOLD} are shown; {advice}")


def _error(message: object) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", str(message)))


def _warning(message: object) -> None:
    err.print(Text.assemble(("warning:", "yellow"), " ", str(message)))


def _usage(message: str) -> NoReturn:
    _error(message)
    raise typer.Exit(2)


def _failed(message: object) -> NoReturn:
    """A problem with the data or the files: print it and exit 1."""
    _error(message)
    raise typer.Exit(1)


def _status(message: str):
    # A status line is always read as markup; Text is not.
    return err.status(Text(message))


def _check_out(path: Path, *, folder: bool) -> None:
    """Refuse an output path that cannot work before any work is done: a file where a
    folder is meant (or the reverse), or a place below a file or not writable."""
    if path.exists():
        if folder != path.is_dir():
            _usage(f"--out {path}: " + ("is a file, not a folder" if folder else "is a folder, not a file"))
        if folder and not os.access(path, os.W_OK | os.X_OK):
            _usage(f"--out {path}: folder not writable")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        _usage(f"--out {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        _usage(f"--out {path}: cannot create it in {parent} (not writable)")


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


def _parse_and_check(files: Sequence[Path]):
    """Every file parsed and the lot checked: the trees that parsed, all diagnostics sorted."""
    from .check import check as check_files
    from .compiler import parse_paths

    trees, diagnostics = parse_paths(files)
    diagnostics.extend(check_files(trees)[1])
    return trees, sort_diagnostics(diagnostics)


def _compile(paths: list[Path]):
    """Parse, check and lower; print diagnostics (warnings too) and exit 1 on errors."""
    from .compiler import compile_paths

    files = _definition_files(paths)
    program, diagnostics = compile_paths(files)
    if diagnostics:
        _print_diagnostics(diagnostics)
    if program is None or has_errors(diagnostics):
        err.print(Text(_summary(diagnostics, len(files)), style="red"))
        raise typer.Exit(1)
    return program


@app.command()
def check(
    paths: Paths,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print diagnostics as JSON.")] = False,
) -> None:
    """Check definitions: syntax, names, cycles, vocabularies, patterns, options."""
    files = _definition_files(paths)
    _, diagnostics = _parse_and_check(files)
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
        err.print(Text(_summary(diagnostics, len(files)), style=style))
    raise typer.Exit(1 if failed else 0)


@app.command()
def fmt(
    paths: Paths,
    check_only: Annotated[bool, typer.Option("--check", help="Change nothing; exit 1 if a file would change.")] = False,
) -> None:
    """Rewrite definition files in the canonical layout (comments are kept)."""
    from .fmt import format_text
    from .results import write_text_atomic

    changed, broken = [], []
    for path in _definition_files(paths):
        text = path.read_text(encoding="utf-8-sig")
        new, diagnostics = format_text(text, name=str(path))
        if new is None:
            _print_diagnostics(diagnostics)
            broken.append(path)
            continue
        if new != text:
            changed.append(path)
            if not check_only:
                write_text_atomic(path, new)
    verb = "would reformat" if check_only else "reformatted"
    for path in changed:
        err.print(f"{verb} {path}")
    err.print(f"{len(changed)} file(s) {verb}, {len(broken)} with syntax errors")
    raise typer.Exit(1 if broken or (check_only and changed) else 0)


def _masked_note() -> str:
    return (f"counts 1-{MASK_THRESHOLD - 1} shown as <{MASK_THRESHOLD}, "
            f"'{SECONDARY_MARK}' where a count would give a small one away")


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
    events: EventsFile,
    people: PeopleFile,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the results.")],
    endpoints: Annotated[Optional[str], typer.Option(help="Comma-separated endpoint names (their dependencies are evaluated too).")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Also write the FinnGen-style wide table.")] = False,
    no_mask: Annotated[bool, typer.Option("--no-mask", help=f"Show counts under {MASK_THRESHOLD} in counts.tsv (individual-level risk).")] = False,
    buckets: Annotated[str, typer.Option(help="Person buckets evaluated one after another (bounds memory): a number, or auto (one per 5 million events). Buckets are consecutive FINNGENID ranges: on a file sorted by person each reads only its own row groups.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(min=1, help="Polars threads (POLARS_MAX_THREADS); default: all cores.")] = None,
    allow_empty_events: Annotated[bool, typer.Option("--allow-empty-events", help="Accept an events table without rows (everyone a control) instead of failing.")] = False,
) -> None:
    """Evaluate endpoints over a registry and write endpoints.parquet and counts.tsv."""
    _apply_threads(threads)
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    import polars as pl

    from .engine.polars import evaluate
    from .registry import RegistryError
    from .masking import mask_counts
    from .results import remove_stale, spill_folder, write_results

    names = _split_names(endpoints)
    n_buckets = _parse_buckets(buckets)
    _check_out(out_dir, folder=True)
    # the bucket count ("of") is a field, not MofNCompleteColumn, so the status line shows none
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                  TextColumn("{task.fields[of]}", markup=False), TimeElapsedColumn(),
                  console=err, transient=False) as progress:
        task = progress.add_task("compiling definitions", total=None, of="")
        program = _compile(paths)
        if names:
            unknown = [n for n in names if n not in program.names]
            if unknown:
                _usage(f"unknown endpoint(s): {', '.join(unknown)}")
        progress.update(task, description=f"compiled {len(program.endpoints)} endpoint(s); reading registry")
        try:
            # the engine groups and hashes the code columns as read (see registry.scan_events)
            registry = _read_registry(events, people, keep_as_read=True, allow_empty_events=allow_empty_events)
        except RegistryError as error:
            _registry_failed(error)
        try:
            if n_buckets is None:
                n_buckets = auto_buckets(registry.events)
            progress.update(task, description=f"evaluating in {n_buckets} bucket(s)")
            bar = progress.add_task("buckets", total=n_buckets, of=f"0/{n_buckets}")
            out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale(out_dir)   # what killed runs left, before this one needs the space

            def on_bucket(done: int, total: int) -> None:
                progress.update(bar, completed=done, of=f"{done}/{total}")
                if done == total and total > 1:  # past 128 buckets, merging groups takes a while
                    progress.update(task, description=f"evaluated {total} buckets; merging them")

            # bucket results wait on disk, next to where they end up, until merged into place
            with spill_folder(out_dir) as spill:
                results = evaluate(program, registry.events, registry.people, endpoints=names,
                                   buckets=n_buckets, spill_dir=spill, on_bucket=on_bucket)
                progress.update(task, description="writing results")
                if no_mask:
                    _warn_unmasked("do not export counts.tsv")
                write_results(results.long, results.counts, out_dir, people=registry.people,
                              wide=wide, mask_threshold=_mask_threshold(no_mask), long_sorted=True)
            counts = mask_counts(results.counts.collect(), threshold=_mask_threshold(no_mask))
        except (ValueError, RegistryError, OSError) as error:
            _failed(error)
        except pl.exceptions.PolarsError as error:
            # its text may quote values from the data: only its kind is printed
            _failed(f"Polars failed while evaluating or writing ({type(error).__name__}); "
                    f"nothing was written to {out_dir}")
        progress.update(task, description=f"wrote results to {out_dir}")
    for warning in results.warnings:
        _warning(warning)
    out.print(_counts_table(counts, f"Endpoints ({out_dir})"))


# Small buckets are lighter and not slower: on the FinnGen library at 2.5e8 events, 51
# buckets of 5e6 events, 26 of 1e7 and 13 of 2e7 all took 200 to 265 s end to end, within
# this machine's drift (peaks 1.5 to 2.6, 2.3 and 4.2 GB); the fixed cost of a bucket is
# about 0.35 CPU s.
EVENTS_PER_BUCKET = 5_000_000


def auto_buckets(events) -> int:
    """One bucket per EVENTS_PER_BUCKET events, at least one (a lazy row count: Parquet
    answers it from metadata)."""
    import polars as pl

    n = int(events.select(pl.len()).collect().item())
    return max(1, -(-n // EVENTS_PER_BUCKET))


def _parse_buckets(value: str) -> Optional[int]:
    """None for auto, else a positive count."""
    if value.strip().lower() == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        _usage(f"--buckets: expected a positive number or auto, got {value!r}")
    return n


def _apply_threads(threads: Optional[int]) -> None:
    """Polars sizes its thread pool once, when first imported, from POLARS_MAX_THREADS.
    The CLI imports polars only inside commands, so setting the variable here works; a
    caller that already imported polars (driving `app` in-process) gets a warning."""
    import os

    if threads is None:
        return
    if "polars" not in sys.modules:
        os.environ["POLARS_MAX_THREADS"] = str(threads)
        return
    import polars as pl

    if pl.thread_pool_size() != threads:
        _warning(f"--threads {threads}: polars already runs {pl.thread_pool_size()} "
                 f"thread(s); set POLARS_MAX_THREADS={threads} before starting the process")


@app.command("test")
def test_(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="Definition files (*.ep) or folders of them; by default definitions/.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write the results as JUnit XML.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run the `test` blocks of definition files on every engine: exit 0 all pass, 1 a failure, 2 an error."""
    from .compiler import compile_paths, parse_paths
    from .results import write_text_atomic
    from .testing import ENGINES, junit_xml, run_tests

    files = _definition_files(paths or [Path("definitions")])
    if junit is not None:
        _check_out(junit, folder=False)
    program, diagnostics = compile_paths(files)
    if program is None or has_errors(diagnostics):
        _print_diagnostics(diagnostics)
        err.print(Text(_summary(diagnostics, len(files)), style="red"))
        raise typer.Exit(2)
    trees, _ = parse_paths(files)
    blocks = [block for tree in trees for block in tree.tests]
    verdicts = run_tests(program, blocks)
    failed = [v for v in verdicts if not v.passed]
    if junit is not None:
        write_text_atomic(junit, junit_xml(verdicts))
    if as_json:
        out.print_json(json.dumps({
            "schema_version": 1, "ok": not failed, "tests": len(blocks), "engines": list(ENGINES),
            "results": [{"test": v.test, "engine": v.engine, "passed": v.passed, "expected": v.expected,
                         "person": v.expect.person.name, "actual": v.actual.describe(),
                         "file": v.expect.span.file, "line": v.expect.span.line} for v in verdicts],
        }))
    else:
        for v in failed:
            span = v.expect.span
            err.print(Text(f"{span.file}:{span.line}:{span.column}: ", style="bold")
                      + Text("FAIL", style="red") + Text(f" [{v.engine}] test {v.test!r}: expected "
                      f"{v.expect.person.name} {v.expected}, got {v.actual.describe()}"))
        expectations = len(verdicts) // max(len(ENGINES), 1)
        summary = (f"{len(blocks)} test(s), {expectations} expectation(s) on {len(ENGINES)} engines: "
                   + (f"{len(failed)} failed" if failed else "all pass"))
        err.print(Text(summary, style="red" if failed else "green"))
    raise typer.Exit(1 if failed else 0)


@app.command("compile")
def compile_(
    paths: Paths,
    explain: Annotated[Optional[str], typer.Option(help="Show one endpoint: rules in plain words, dependency chain, Polars plan.")] = None,
    codes: Annotated[Optional[Path], typer.Option(help="With --explain: list the codes of this events table (TSV/Parquet) each rule matches, with masked event counts.")] = None,
    no_mask: NoMask = False,
) -> None:
    """Compile definitions; with --explain, show what one endpoint means."""
    from .describe import describe_endpoint, matched_codes

    program = _compile(paths)
    if explain is None:
        err.print(Text(f"compiled {len(program.endpoints)} endpoint(s)", style="green"))
        raise typer.Exit(0)
    if explain not in program.names:
        _usage(f"unknown endpoint {explain}" + _did_you_mean(explain, program.names))
    out.print(describe_endpoint(program, explain))
    out.print()
    events = None
    if codes is not None:
        from .registry import RegistryError, scan_events

        if no_mask:
            _warn_unmasked("do not share this output")
        try:
            events = scan_events(codes)
            table = matched_codes(program, explain, events, mask_threshold=_mask_threshold(no_mask))
        except RegistryError as error:
            _usage(str(error))
        note = "not masked" if no_mask else _masked_note()
        out.print(_counts_table(table, f"Codes of {codes} matched by {explain} (event counts; {note})"))
    where = f"on {codes}" if codes is not None else "on an empty table of the registry's schema"
    out.print(Text.assemble(("Polars plan", "bold"), f" of the pass over the events ({where}):"))
    out.print(_polars_plan(program, explain, events))


def _did_you_mean(name: str, names: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _polars_plan(program, name: str, events=None) -> str:
    import polars as pl

    from .engine.polars import event_pass_plan
    from .registry import EVENTS_SCHEMA

    if events is None:
        events = pl.LazyFrame(schema=EVENTS_SCHEMA)
    return event_pass_plan(program, events, endpoints=[name])


@app.command()
def synth(
    people: Annotated[int, typer.Option(help="Number of people.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for events.* and people.*.")],
    seed: Annotated[int, typer.Option(help="Random seed: the same arguments give byte-identical files.")] = 1,
    definitions: Annotated[Optional[list[Path]], typer.Option(help="Definition files or folders: give their endpoints cases.")] = None,
    fmt_: Annotated[str, typer.Option("--format", help="parquet or tsv.")] = "parquet",
    code_frequencies: Annotated[Optional[Path], typer.Option(help="FinnGen CODE1_CODE2_CODE3_vocabulary_summary.tsv for background codes.")] = None,
    prevalence: Annotated[float, typer.Option(help="Share of people made cases of each endpoint (with --definitions).")] = 0.02,
) -> None:
    """Generate a synthetic registry in the FinnGen layout."""
    from .synth import write_registry

    _check_out(out_dir, folder=True)
    program = _compile(definitions) if definitions else None
    try:
        summary = write_registry(out_dir, people=people, seed=seed, fmt=fmt_, definitions=program,
                                 code_frequencies=code_frequencies, prevalence=prevalence)
    except (ValueError, OSError) as error:
        _usage(str(error))
    out.print(f"wrote {summary['n_events']:,} events of {summary['n_people']:,} people to {out_dir}")


@app.command()
def demo(
    people: Annotated[int, typer.Option(help="People in the built-in synthetic registry.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic registry.")] = 1,
) -> None:
    """Run the starter library on a built-in synthetic registry and print the counts."""
    from .engine.polars import evaluate
    from .results import mask_counts
    from .synth import generate

    program = _compile([_starter_library()])
    with _status(f"generating a synthetic registry of {people:,} people"):
        events, population = generate(people=people, seed=seed, definitions=program)
    with _status(f"evaluating {len(program.endpoints)} endpoints"):
        results = evaluate(program, events, population)
        counts = mask_counts(results.counts.collect())
    out.print(_counts_table(counts, f"Starter library on {people:,} synthetic people (seed {seed})"))


def _starter_library() -> Path:
    """definitions/ beside the package (a checkout) or shipped inside it (an install)."""
    from importlib import resources

    shipped = Path(str(resources.files("endpointc").joinpath("definitions")))
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parent.parent / "definitions"


@app.command("import-finngen")
def import_finngen_(
    file: Annotated[Path, typer.Argument(help="FinnGen endpoint spreadsheet: CSV, TSV or XLSX.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the .ep files (one per chapter).")],
    controls: Annotated[Optional[Path], typer.Option(help="The separate controls workbook, keyed by NAME.")] = None,
    show_warnings: Annotated[bool, typer.Option("--warnings/--no-warnings", help="Print every warning.")] = False,
) -> None:
    """Convert a FinnGen endpoint spreadsheet to .ep files, with a conversion report."""
    from .finngen import import_finngen, write_library

    if not file.exists():
        _usage(f"{file}: no such file")
    _check_out(out_dir, folder=True)
    result = import_finngen(file, controls=controls)
    if show_warnings or has_errors(result.diagnostics):
        _print_diagnostics([d for d in result.diagnostics if show_warnings or d.is_error])
    if has_errors(result.diagnostics):
        raise typer.Exit(1)
    written = write_library(result, out_dir)
    report = result.report
    table = Table(title=f"Imported {file.name}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("rows read", str(report.rows_read))
    table.add_row("endpoints written", str(report.endpoints_written))
    table.add_row("files written", str(len(written)))
    for kind, n in report.warnings_by_kind:
        table.add_row(f"warning {kind}", str(n))
    table.add_row("endpoints marked (IMPORT_ISSUE)", str(len(report.marked)))
    out.print(table)


@app.command("export-finngen")
def export_finngen_(
    paths: Paths,
    out_file: Annotated[Path, typer.Option("--out", help="The FinnGen TSV to write.")],
) -> None:
    """Write definitions back in the FinnGen spreadsheet layout (TSV)."""
    from .finngen import export_finngen

    _check_out(out_file, folder=False)
    trees, diagnostics = _parse_and_check(_definition_files(paths))
    if has_errors(diagnostics):
        _print_diagnostics(diagnostics)
        raise typer.Exit(1)
    result = export_finngen(trees, out_file)
    if result.diagnostics:
        _print_diagnostics(result.diagnostics)
    out.print(f"wrote {len(result.rows)} endpoint(s) to {out_file}")


@app.command("explain")
def explain_(
    paths: Paths,
    events: EventsFile,
    people: PeopleFile,
    person: Annotated[str, typer.Option(help="The FINNGENID to explain.")],
    endpoint: Annotated[str, typer.Option(help="The endpoint to explain.")],
) -> None:
    """Why is one person a case, control or excluded: every rule, event by event (individual-level output)."""
    from .diagnostics import DiagnosticError
    from .explain import ExplainError, explain_person, format_explanation
    from .registry import RegistryError, load_registry

    program = _compile(paths)
    if endpoint not in program.names:
        _usage(f"unknown endpoint {endpoint}" + _did_you_mean(endpoint, program.names))
    try:
        registry = load_registry(events, people)
        explanation = explain_person(program, registry.events, registry.people, person=person, endpoint=endpoint)
    except ExplainError as error:
        _usage(str(error))
    except (RegistryError, DiagnosticError) as error:
        _failed(error)
    # The first line of the text is the individual-level data warning; long lines are
    # kept whole so the output can be searched and diffed.
    out.print(format_explanation(explanation), soft_wrap=True)


@app.command("attrition")
def attrition_(
    paths: Paths,
    events: EventsFile,
    people: PeopleFile,
    endpoint: Annotated[str, typer.Option(help="The endpoint to follow step by step.")],
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Also write the table as TSV.")] = None,
    no_mask: NoMask = False,
) -> None:
    """People remaining after each step of one endpoint, for cases and controls (aggregate counts)."""
    from .attrition import attrition, write_attrition
    from .diagnostics import DiagnosticError
    from .registry import RegistryError

    if out_file is not None:
        _check_out(out_file, folder=False)
    program = _compile(paths)
    if endpoint not in program.names:
        _usage(f"unknown endpoint {endpoint}" + _did_you_mean(endpoint, program.names))
    if no_mask:
        _warn_unmasked("do not share this output")
    try:
        registry = _read_registry(events, people)
        with _status(f"evaluating the steps of {endpoint}"):
            table = attrition(program, registry.events, registry.people, endpoint=endpoint,
                              mask_threshold=_mask_threshold(no_mask))
        if out_file is not None:
            write_attrition(table, out_file)
    except (RegistryError, DiagnosticError, OSError) as error:
        _failed(error)
    shown = Table(title=f"Attrition of {endpoint}" + ("" if no_mask else f" ({_masked_note()})"))
    for column in ("SIDE", "RULE", "STEP", "N_PEOPLE", "N_ADDED_BACK"):
        shown.add_column(column, justify="right" if column.startswith("N_") or column == "RULE" else "left")
    for row in table.iter_rows(named=True):
        shown.add_row(*("" if row[c] is None else str(row[c]) for c in ("SIDE", "RULE", "STEP", "N_PEOPLE",
                                                                          "N_ADDED_BACK")))
    out.print(shown)
    if out_file is not None:
        err.print(f"wrote {out_file}")


@app.command("report")
def report_(
    paths: Paths,
    events: EventsFile,
    people: PeopleFile,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the HTML report (replaced if it holds one).")],
    no_mask: NoMask = False,
) -> None:
    """Write a static, offline HTML report: every endpoint with counts, plots and its definition."""
    from .compiler import compile_files, parse_paths
    from .diagnostics import DiagnosticError
    from .registry import RegistryError
    from .report import ReportError, build_report, check_target

    _check_out(out_dir, folder=True)
    try:
        check_target(out_dir)
    except ReportError as error:
        _usage(str(error))
    trees, diagnostics = parse_paths(_definition_files(paths))
    program, diagnostics = compile_files(trees, diagnostics=diagnostics)
    if diagnostics:
        _print_diagnostics(diagnostics)
    if program is None:
        raise typer.Exit(1)
    if no_mask:
        _warn_unmasked("do not share this report")
    try:
        registry = _read_registry(events, people)
        with _status(f"building the report of {len(program.endpoints)} endpoint(s)"):
            build_report(program, registry.events, registry.people, out_dir, files=trees,
                         mask_threshold=_mask_threshold(no_mask))
    except ReportError as error:
        _usage(str(error))
    except (RegistryError, DiagnosticError, OSError) as error:
        _failed(error)
    out.print(f"wrote {out_dir / 'index.html'}")


@app.command("diff")
def diff_(
    old: Annotated[Path, typer.Argument(help="The old library: a .ep file or a folder of them.")],
    new: Annotated[Path, typer.Argument(help="The new library: a .ep file or a folder of them.")],
    events: Annotated[Optional[Path], typer.Option(help="With --people: compare counts on this registry.")] = None,
    people: Annotated[Optional[Path], typer.Option(help="People table (the population) for --events.")] = None,
    no_mask: NoMask = False,
) -> None:
    """What changed between two libraries, in words; with a registry, the change in counts."""
    from .diagnostics import DiagnosticError
    from .diff import diff_libraries, format_diff
    from .registry import RegistryError

    if (events is None) != (people is None):
        _usage("give both --events and --people, or neither")
    old_files, new_files = _definition_files([old]), _definition_files([new])
    if no_mask and events is not None:
        _warn_unmasked("do not share this output")
    try:
        data = {}
        if events is not None:
            registry = _read_registry(events, people)
            data = {"events": registry.events, "people": registry.people}
        with _status("comparing"):
            diff = diff_libraries(old_files, new_files, **data)
    except DiagnosticError as error:
        _print_diagnostics(error.diagnostics)
        raise typer.Exit(1)
    except RegistryError as error:
        _failed(error)
    out.print(format_diff(diff, mask_threshold=_mask_threshold(no_mask)), soft_wrap=True)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
