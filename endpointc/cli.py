"""The command line: the only module that prints.

Exit codes, the same for every command (docs/cli.md lists them per command):

- 0: done, nothing found;
- 1: something found or failed: errors in the definitions (or warnings with --strict),
  failed tests, files that `fmt --check` would change, a `diff --fail-above` gate that
  fails, an evaluation or a write that failed;
- 2: usage or input error: typer's own, missing input files, an output path that cannot
  work, a registry or a result folder that cannot be used, a spreadsheet that cannot be
  read; and for `test`, definitions that do not compile;
- 130: interrupted (Ctrl-C): one line on stderr, no traceback; every output is written to
  a temporary file and renamed into place whole, so nothing is left half-written.

With --json a command prints exactly one JSON document on stdout, with a
`schema_version` (`JSON_SCHEMA_VERSION`), when it exits 0 or 1; on 2 and 130 stdout is
empty and stderr says why. Stage modules are imported inside each command so `endpointc
check` stays quick.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from .diagnostics import Diagnostic, has_errors, sort_diagnostics
from .masking import MASK_THRESHOLD, SECONDARY_MARK

__all__ = ["app", "main", "JSON_SCHEMA_VERSION"]

# The version of the --json documents' shapes (docs/cli.md): raised when a field changes
# meaning or goes away, not when one is added.
JSON_SCHEMA_VERSION = 1


class _Commands(TyperGroup):
    """Ctrl-C in any command exits 130 with one line on stderr and no traceback (typer's
    own handling differs between versions)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            err.print(Text("interrupted", style="red"))
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Commands,
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
    """A registry that cannot be used (an input error): its diagnostics, with their codes,
    and exit 2."""
    _print_diagnostics(error.diagnostics())
    raise typer.Exit(2)


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
    """A failure while working: print it and exit 1; a `RegistryError` is the input's
    fault and goes to `_registry_failed` (exit 2)."""
    from .registry import RegistryError

    if isinstance(message, RegistryError):
        _registry_failed(message)
    _error(message)
    raise typer.Exit(1)


def _print_json(document: dict) -> None:
    """The one JSON document of a --json command, on stdout, its schema version first."""
    print(json.dumps({"schema_version": JSON_SCHEMA_VERSION, **document}, indent=2, ensure_ascii=False))


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


def _parse_and_check(files: Sequence[Path], *, rules: Sequence[str] = ()):
    """Every file parsed and the lot checked: the trees that parsed, all diagnostics sorted."""
    from .check import check as check_files
    from .compiler import parse_paths

    trees, diagnostics = parse_paths(files)
    diagnostics.extend(check_files(trees, rules=rules)[1])
    return trees, sort_diagnostics(diagnostics)


def _compile(paths: list[Path], *, endpoints: Optional[list[str]] = None):
    """Parse, check and lower; print diagnostics (warnings too) and exit 1 on errors.
    With `endpoints`, only what they need (`selection.compile_selection`)."""
    from .compiler import compile_paths
    from .selection import compile_selection

    files = _definition_files(paths)
    program, diagnostics = compile_paths(files) if not endpoints else compile_selection(files, endpoints)
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
    rules: Annotated[Optional[str], typer.Option(help="Curation rule sets to check too, comma-separated "
                                                 "(finngen), or none; default: the project's endpointc.toml "
                                                 "or [tool.endpointc] in pyproject.toml.")] = None,
) -> None:
    """Check definitions: syntax, names, cycles, vocabularies, patterns, options."""
    files = _definition_files(paths)
    _, diagnostics = _parse_and_check(files, rules=_rule_sets(rules, paths[0]))
    failed = has_errors(diagnostics) or (strict and bool(diagnostics))
    if as_json:
        errors = sum(d.is_error for d in diagnostics)
        _print_json({
            "ok": not failed,
            "files": [str(f) for f in files],
            "errors": errors,
            "warnings": len(diagnostics) - errors,
            "diagnostics": [d.model_dump(mode="json") for d in diagnostics],
        })
    else:
        _print_diagnostics(diagnostics)
        style = "red" if failed else "green"
        err.print(Text(_summary(diagnostics, len(files)), style=style))
    raise typer.Exit(1 if failed else 0)


def _rule_sets(option: Optional[str], start: Path) -> tuple[str, ...]:
    """The rule sets of `--rules`, or else of the configuration of the project `start` is in."""
    from .config import ConfigError, load_config
    from .curation import RULE_SETS

    if option is None:
        try:
            return load_config(start).rules
        except ConfigError as error:
            _usage(str(error))
    names = tuple(dict.fromkeys(n for n in map(str.strip, option.split(",")) if n and n != "none"))
    unknown = [n for n in names if n not in RULE_SETS]
    if unknown:
        _usage(f"--rules: unknown rule set {', '.join(unknown)} (known: {', '.join(RULE_SETS)}, none)")
    return names


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


class LongitudinalFormat(str, Enum):
    """The formats of `run --longitudinal`."""

    parquet = "parquet"
    tsv_gz = "tsv.gz"


class Engine(str, Enum):
    """The engines of `run --engine`."""

    polars = "polars"
    spark = "spark"


class _GivenPath(type(Path())):
    """A path option that keeps the text as given in `given`: Path makes "s3://b/k" "s3:/b/k",
    and Spark reads URLs."""

    def __new__(cls, *segments):   # more than one when pathlib derives a path from it
        path = super().__new__(cls, *segments)
        path.given = segments[0] if len(segments) == 1 and isinstance(segments[0], str) else str(path)
        return path


@app.command()
def run(
    paths: Paths,
    events: Annotated[Path, typer.Option(parser=_GivenPath, help="Longitudinal events: TSV, TSV.gz or Parquet (--engine spark: any path Spark reads).")],
    people: Annotated[Path, typer.Option(parser=_GivenPath, help="People table (the population): TSV, TSV.gz or Parquet (--engine spark: any path Spark reads).")],
    out_dir: Annotated[Path, typer.Option("--out", parser=_GivenPath, help="Folder for the results (--engine spark: any folder Spark writes).")],
    endpoints: Annotated[Optional[str], typer.Option(help="Comma-separated endpoint names (their dependencies are evaluated too).")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Also write the FinnGen-style wide table.")] = False,
    longitudinal: Annotated[Optional[LongitudinalFormat], typer.Option("--longitudinal", help="Also write FinnGen's endpoint longitudinal file (one row per case event) as endpoint_longitudinal.parquet or .tsv.gz (see docs/release-files.md).")] = None,
    intermediate_counts: Annotated[bool, typer.Option("--intermediate-counts", help="Also write intermediate_counts.tsv: per endpoint, the people left after each step, as FinnGen publishes them for Risteys (masked unless --no-mask).")] = False,
    no_mask: Annotated[bool, typer.Option("--no-mask", help=f"Show counts under {MASK_THRESHOLD} in counts.tsv (individual-level risk).")] = False,
    buckets: Annotated[str, typer.Option(help="Person buckets evaluated one after another (bounds memory): a number, or auto (one per 5 million events). Buckets are consecutive FINNGENID ranges: on a file sorted by person each reads only its own row groups.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(min=1, help="Polars threads (POLARS_MAX_THREADS); default: all cores.")] = None,
    allow_empty_events: Annotated[bool, typer.Option("--allow-empty-events", help="Accept an events table without rows (everyone a control) instead of failing.")] = False,
    reuse_from: Annotated[Optional[Path], typer.Option("--reuse", help="A previous run's --out folder: take the results of endpoints whose definitions and registry files are unchanged from it, compute the rest (see docs/manifest.md).")] = None,
    index: Annotated[Optional[Path], typer.Option("--index", help="An event index of this registry (endpointc index): a few endpoints read only their own events, and the registry is not checked again.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary of the run instead of the table.")] = False,
    engine: Annotated[Engine, typer.Option(help="polars: this machine; spark: a Spark cluster or local Spark (pip install 'endpointc[spark]'; see docs/spark.md).")] = Engine.polars,
    master: Annotated[Optional[str], typer.Option(help="--engine spark: the Spark master (local[4], yarn, spark://HOST:7077, ...); default: the running session's (spark-submit --master).")] = None,
    spark_conf: Annotated[Optional[list[str]], typer.Option("--spark-conf", help="--engine spark: a Spark setting KEY=VALUE (repeatable).")] = None,
) -> None:
    """Evaluate endpoints over a registry and write endpoints.parquet, counts.tsv and manifest.json."""
    if engine is Engine.spark:
        unsupported = [name for name, given in (("--wide", wide), ("--longitudinal", longitudinal),
                                                ("--intermediate-counts", intermediate_counts), ("--reuse", reuse_from),
                                                ("--index", index)) if given]
        if unsupported:
            _usage(f"{', '.join(unsupported)}: not available with --engine spark")
        _run_spark(paths, events, people, out_dir, endpoints=_split_names(endpoints), buckets=buckets,
                   no_mask=no_mask, threads=threads, master=master, settings=spark_conf or [], as_json=as_json)
        return
    if master is not None or spark_conf:
        _usage("--master and --spark-conf need --engine spark")
    _apply_threads(threads)
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    import polars as pl

    from .compiler import definition_files
    from .engine.polars import evaluate
    from .manifest import RegistryCheck, RunOptions, RunRecord, run_summary
    from .registry import RegistryError
    from .masking import mask_counts
    from .results import remove_stale, spill_folder, write_results
    from .release import release_writers
    from .reuse import plan_reuse

    names = _split_names(endpoints)
    n_buckets = _parse_buckets(buckets)
    _check_out(out_dir, folder=True)
    record = RunRecord(command=sys.argv, options=RunOptions(
        endpoints=names, mask_threshold=_mask_threshold(no_mask), wide=wide, buckets=buckets,
        allow_empty_events=allow_empty_events, reuse=None if reuse_from is None else str(reuse_from)))
    # the bucket count ("of") is a field, not MofNCompleteColumn, so the status line shows none
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                  TextColumn("{task.fields[of]}", markup=False), TimeElapsedColumn(),
                  console=err, transient=False) as progress:
        task = progress.add_task("compiling definitions", total=None, of="")
        with record.stage("compile"):
            program = _compile(paths, endpoints=names)
        if names:
            unknown = [n for n in names if n not in program.names]
            if unknown:
                _usage(f"unknown endpoint(s): {', '.join(unknown)}")
        progress.update(task, description=f"compiled {len(program.endpoints)} endpoint(s); reading registry")
        try:
            with record.stage("hash_inputs"):   # and those of the results --reuse names
                event_index = None if index is None else _open_index(index, events, people)
                # opening the index checked that the files are those it hashed: not read again
                known = {} if event_index is None else {t: getattr(event_index.manifest, t).sha256
                                                        for t in ("events", "people")}
                record.hash_inputs(events=events, people=people, definitions=definition_files(paths),
                                   program=program, sha256=known)
                reuse = plan_reuse(reuse_from, record)
            if reuse.note:
                _warning(reuse.note)
            # the engine groups and hashes the code columns as read (see registry.scan_events)
            with record.stage("read_registry"):
                registry = reuse.checked_registry(events, people, keep_as_read=True)
                if registry is None and event_index is not None:  # checked when the index was built
                    registry = event_index.registry
                    for warning in registry.warnings:
                        _warning(warning)
                if registry is None:
                    registry = _read_registry(events, people, keep_as_read=True, allow_empty_events=allow_empty_events)
                elif reuse.registry_check is not None:   # the check of the run reused, on the same files
                    for warning in registry.warnings:
                        _warning(warning)
        except RegistryError as error:
            _registry_failed(error)
        except OSError as error:
            _failed(error)
        try:
            if n_buckets is None:
                n_buckets = (auto_buckets(registry.events) if event_index is None
                             else max(1, -(-event_index.manifest.rows // EVENTS_PER_BUCKET)))
            progress.update(task, description=f"evaluating in {n_buckets} bucket(s)"
                            + (f", {len(reuse.reused)} endpoint(s) reused" if reuse.reused else ""))
            bar = progress.add_task("buckets", total=n_buckets, of=f"0/{n_buckets}")
            out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale(out_dir)   # what killed runs left, before this one needs the space

            def on_bucket(done: int, total: int) -> None:
                progress.update(bar, completed=done, of=f"{done}/{total}")
                if done == total and total > 1:  # past 128 buckets, merging groups takes a while
                    progress.update(task, description=f"evaluated {total} buckets; merging them")

            # bucket results wait on disk, next to where they end up, until merged into place
            with spill_folder(out_dir) as spill:
                def compute(selection):   # the endpoints not taken from --reuse
                    tables = (registry.events, registry.people) if event_index is None else (event_index, None)
                    return evaluate(program, *tables, endpoints=selection,
                                    buckets=n_buckets, spill_dir=spill, on_bucket=on_bucket)

                with record.stage("evaluate"):
                    results = reuse.results(compute, people=registry.people)
                progress.update(task, description="writing results")
                if no_mask:
                    _warn_unmasked("do not export counts.tsv")
                with record.stage("write"):
                    release = release_writers(program, registry.events, registry.people, endpoints=names,
                                              buckets=n_buckets, intermediate=intermediate_counts,
                                              longitudinal=None if longitudinal is None else longitudinal.value,
                                              mask_threshold=_mask_threshold(no_mask))
                    write_results(results.long, results.counts, out_dir, people=registry.people,
                                  wide=wide, mask_threshold=_mask_threshold(no_mask), long_sorted=True, extra=release,
                                  manifest=record.writer(
                                      reused=reuse.reused, reuse=reuse.record, warnings=results.warnings,
                                      registry=reuse.registry_check or RegistryCheck.of(registry)))
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
    if as_json:
        _print_json(run_summary(record.manifest, counts.to_dicts(), out_dir=str(out_dir)))
    else:
        out.print(_counts_table(counts, f"Endpoints ({out_dir})"))


def _run_spark(paths: list[Path], events: Path, people: Path, out_dir: Path, *, endpoints: Optional[list[str]],
               buckets: str, no_mask: bool, threads: Optional[int], master: Optional[str],
               settings: list[str], as_json: bool) -> None:
    """`run --engine spark`: endpointc.spark.run, with its progress, warnings and counts (or
    the --json summary of its manifest)."""
    from . import spark as on_spark
    from .compiler import definition_files
    from .manifest import RunOptions, RunRecord, run_summary
    from .masking import mask_counts
    from .registry import RegistryError

    conf = {}
    for setting in settings:
        key, equals, value = setting.partition("=")
        if not equals or not key.strip():
            _usage(f"--spark-conf: expected KEY=VALUE, got {setting!r}")
        conf[key.strip()] = value.strip()
    if threads is not None:
        conf.setdefault("spark.executorEnv.POLARS_MAX_THREADS", str(threads))
    n_buckets = _parse_buckets(buckets)
    record = RunRecord(command=on_spark.redacted_command(sys.argv), options=RunOptions(
        endpoints=endpoints, mask_threshold=_mask_threshold(no_mask), buckets=buckets))
    with record.stage("compile"):
        program = _compile(paths)
    unknown = [n for n in endpoints or () if n not in program.names]
    if unknown:
        _usage(f"unknown endpoint(s): {', '.join(unknown)}")
    with record.stage("hash_inputs"):   # the tables: by spark.run, where it can
        record.hash_definitions(definitions=definition_files(paths), program=program)
    if no_mask:
        _warn_unmasked("do not export counts.tsv")
    given = [getattr(path, "given", str(path)) for path in (events, people, out_dir)]
    with _status("starting Spark") as status:
        try:
            outcome = on_spark.run(on_spark.session(master=master, conf=conf), program, *given,
                                   endpoints=endpoints, buckets=n_buckets, mask_threshold=_mask_threshold(no_mask),
                                   on_stage=lambda stage: status.update(Text(stage)), record=record)
        except RegistryError as error:
            _registry_failed(error)
        except (ValueError, OSError, on_spark.SparkUnavailable) as error:
            _failed(error)
        except on_spark.spark_errors() as error:
            # Spark's messages may quote values from the data: only its kind is printed
            _failed(f"Spark failed ({on_spark.error_kind(error)}); nothing was written to {given[2]}")
    for warning in outcome.warnings:
        _warning(warning)
    counts = mask_counts(outcome.counts, threshold=_mask_threshold(no_mask))
    if as_json:
        _print_json(run_summary(record.manifest, counts.to_dicts(), out_dir=given[2]))
    else:
        out.print(_counts_table(counts, f"Endpoints ({given[2]})"))


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
        _print_json({
            "ok": not failed, "tests": len(blocks), "engines": list(ENGINES),
            "results": [{"test": v.test, "engine": v.engine, "passed": v.passed, "expected": v.expected,
                         "person": v.expect.person.name, "actual": v.actual.describe(),
                         "file": v.expect.span.file, "line": v.expect.span.line} for v in verdicts],
        })
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
    index: Annotated[Optional[Path], typer.Option("--index", help="With --explain: the codes and counts from this event index (endpointc index) of the --codes table, without a pass over it. Default: the project configuration's index.")] = None,
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
    opened = _codes_index(index, codes, paths[0]) if index is not None or codes is not None else None
    if opened is not None:
        codes = codes or Path(opened.manifest.events.path)
    out.print(describe_endpoint(program, explain))
    out.print()
    events = None
    if codes is not None:
        from .registry import RegistryError, scan_events

        if no_mask:
            _warn_unmasked("do not share this output")
        try:
            # with an index, nothing reads the events: the plan below is on an empty table too
            events = scan_events(codes) if opened is None else None
            table = matched_codes(program, explain, events if opened is None else opened.keys(),
                                  mask_threshold=_mask_threshold(no_mask))
        except RegistryError as error:
            _usage(str(error))
        note = "not masked" if no_mask else _masked_note()
        where = codes if opened is None else f"{codes} (from the index {opened.folder})"
        out.print(_counts_table(table, f"Codes of {where} matched by {explain} (event counts; {note})"))
    where = f"on {codes}" if events is not None else "on an empty table of the registry's schema"
    out.print(Text.assemble(("Polars plan", "bold"), f" of the pass over the events ({where}):"))
    out.print(_polars_plan(program, explain, events))


def _codes_index(index: Optional[Path], codes: Optional[Path], start: Path):
    """`compile --codes`: the index of `--index` (exit 2 if it cannot serve), else the
    project configuration's index when it is one of the `--codes` table (else a warning,
    and the table is read)."""
    from .config import ConfigError, load_config
    from .index import EventIndexError, open_index

    if index is not None:
        try:
            return open_index(index, events=codes)
        except EventIndexError as error:
            _usage(str(error))
    try:
        index = load_config(start).index
    except ConfigError as error:
        _usage(str(error))
    if index is None:
        return None
    try:
        return open_index(index, events=codes)
    except EventIndexError as error:
        _warning(f"not using the configured index: {error}; reading {codes} instead")
        return None


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


def _open_index(folder: Path, events: Path, people: Path):
    """`run --index`: the index of exactly these registry files, unchanged since (exit 2 if not)."""
    from .index import EventIndexError, open_index

    try:
        return open_index(folder, events=events, people=people)
    except EventIndexError as error:
        _usage(str(error))


@app.command("index")
def index_(
    events: EventsFile,
    people: PeopleFile,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the index (an index already there is replaced).")],
    allow_empty_events: Annotated[bool, typer.Option("--allow-empty-events", help="Accept an events table without rows.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help="Polars threads (POLARS_MAX_THREADS); default: all cores.")] = None,
) -> None:
    """Check a registry and prepare its events once, for `run --index` (a few endpoints in seconds)."""
    _apply_threads(threads)
    from .index import EventIndexError, build_index
    from .registry import RegistryError

    for path in (events, people):
        if not path.is_file():
            _usage(f"{path}: no such file")
    _check_out(out_dir, folder=True)
    try:
        with _status("checking the registry") as status:
            index = build_index(events, people, out_dir, allow_empty_events=allow_empty_events,
                                on_step=lambda step: status.update(Text(step)))
    except RegistryError as error:
        _registry_failed(error)
    except EventIndexError as error:
        _usage(str(error))
    except OSError as error:
        _failed(error)
    for warning in index.manifest.warnings:
        _warning(warning)
    m = index.manifest
    out.print(f"indexed {m.rows:,} events of {m.people_count:,} people ({m.keys:,} distinct code keys) in {out_dir}")


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
    as_json: Annotated[bool, typer.Option("--json", help="Print the conversion report as JSON, every warning in it.")] = False,
) -> None:
    """Convert a FinnGen endpoint spreadsheet to .ep files, with a conversion report."""
    from .finngen import import_finngen, write_library
    from .results import uninterrupted

    for path in (file, controls):
        if path is not None and not path.exists():
            _usage(f"{path}: no such file")
    _check_out(out_dir, folder=True)
    result = import_finngen(file, controls=controls)
    if show_warnings or has_errors(result.diagnostics):
        _print_diagnostics([d for d in result.diagnostics if show_warnings or d.is_error])
    if has_errors(result.diagnostics):   # only an unreadable file (EP601) is an error
        raise typer.Exit(2)
    # Every chapter of this import or none: a library half old, half new would be wrong.
    with uninterrupted():
        written = write_library(result, out_dir)
    report = result.report
    if as_json:
        _print_json({
            "ok": True, "file": str(file), "out": str(out_dir), "rows_read": report.rows_read,
            "endpoints_written": report.endpoints_written, "skipped_rows": report.skipped_rows,
            "files_written": [str(path) for path in written],
            "warnings_by_kind": dict(report.warnings_by_kind), "marked": list(report.marked),
            "diagnostics": [d.model_dump(mode="json") for d in result.diagnostics],
        })
        return
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
    out.print(f"wrote {len(result.rows)} endpoint(s) to {out_file}"
              + (f"; {len(result.lossy)} lose what FinnGen's columns cannot hold (EP620 above)" if result.lossy else ""))


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
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
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
    if out_file is not None:
        err.print(f"wrote {out_file}")
    columns = ("SIDE", "RULE", "STEP", "N_PEOPLE", "N_ADDED_BACK")
    if as_json:
        # a count as shown: a number, or the text that masks it ("<5", "masked")
        def shown_count(value):
            return int(value) if isinstance(value, str) and value.isdigit() else value

        _print_json({"ok": True, "endpoint": endpoint, "mask_threshold": _mask_threshold(no_mask),
                     "steps": [{c.lower(): shown_count(row[c]) if c.startswith("N_") else row[c] for c in columns}
                               for row in table.iter_rows(named=True)]})
        return
    shown = Table(title=f"Attrition of {endpoint}" + ("" if no_mask else f" ({_masked_note()})"))
    for column in columns:
        shown.add_column(column, justify="right" if column.startswith("N_") or column == "RULE" else "left")
    for row in table.iter_rows(named=True):
        shown.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    out.print(shown)


@app.command("report")
def report_(
    paths: Paths,
    events: EventsFile,
    people: PeopleFile,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the HTML report (replaced if it holds one).")],
    no_mask: NoMask = False,
) -> None:
    """Write a static, offline HTML report: every endpoint with counts, plots and its definition."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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
        with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                      TextColumn("{task.fields[of]}", markup=False), TimeElapsedColumn(),
                      console=err, transient=False) as progress:
            task = progress.add_task(f"evaluating {len(program.endpoints)} endpoint(s) and their attrition steps",
                                     total=None, of="")

            def on_progress(step: str, done: int, total: int) -> None:
                if step == "pages":
                    progress.update(task, description="drawing the endpoint pages", completed=done, total=total,
                                    of=f"{done}/{total}")

            build_report(program, registry.events, registry.people, out_dir, files=trees,
                         mask_threshold=_mask_threshold(no_mask), on_progress=on_progress)
    except ReportError as error:
        _usage(str(error))
    except (RegistryError, DiagnosticError, OSError) as error:
        _failed(error)
    out.print(f"wrote {out_dir / 'index.html'}")


@app.command("diff")
def diff_(
    old: Annotated[Path, typer.Argument(help="The old library (a .ep file or a folder of them), or a result folder of `run`.")],
    new: Annotated[Path, typer.Argument(help="The new library, or result folder.")],
    events: Annotated[Optional[Path], typer.Option(help="Libraries, with --people: compare counts on this registry.")] = None,
    people: Annotated[Optional[Path], typer.Option(help="People table (the population) for --events.")] = None,
    fail_above: Annotated[Optional[float], typer.Option(
        "--fail-above", min=0, metavar="PCT",
        help="Result folders: exit 1 if an endpoint's case count moved by more than PCT percent.")] = None,
    min_cases: Annotated[int, typer.Option(
        "--min-cases", min=0, metavar="N",
        help="With --fail-above: only endpoints with at least N cases in either folder.")] = 0,
    no_mask: NoMask = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """What changed between two libraries (in words; with a registry, the change in counts),
    or between two result folders (cases, controls and excluded per endpoint; --fail-above
    stops a release)."""
    from .diff import is_results_folder

    for path in (old, new):
        if not path.exists():
            _usage(f"{path}: no such file or folder")
    if min_cases and fail_above is None:
        _usage("--min-cases goes with --fail-above")
    results = [is_results_folder(path) for path in (old, new)]
    if results[0] != results[1]:
        folder, other = (old, new) if results[0] else (new, old)
        _usage(f"{folder} is a result folder and {other} is not: compare two libraries or two result folders")
    if no_mask and (results[0] or events is not None):
        _warn_unmasked("do not share this output")
    if results[0]:
        _diff_results(old, new, events=events, people=people, fail_above=fail_above, min_cases=min_cases,
                      threshold=_mask_threshold(no_mask), as_json=as_json)
    else:
        _diff_libraries(old, new, events=events, people=people, fail_above=fail_above,
                        threshold=_mask_threshold(no_mask), as_json=as_json)


def _diff_results(old: Path, new: Path, *, events, people, fail_above, min_cases, threshold, as_json) -> NoReturn:
    from .diff import ResultsError, diff_results, format_results_diff, results_document

    if events is not None or people is not None:
        _usage("--events and --people are for two libraries; result folders hold their counts")
    try:
        diff = diff_results(old, new)
    except ResultsError as error:
        _usage(str(error))
    gate = None if fail_above is None else diff.gate(fail_above=fail_above, min_cases=min_cases)
    passed = gate is None or gate.passed
    if as_json:
        _print_json({"ok": passed, **results_document(diff, mask_threshold=threshold, gate=gate)})
    else:
        out.print(format_results_diff(diff, mask_threshold=threshold, gate=gate), soft_wrap=True)
    raise typer.Exit(0 if passed else 1)


def _diff_libraries(old: Path, new: Path, *, events, people, fail_above, threshold, as_json) -> None:
    from .diagnostics import DiagnosticError
    from .diff import diff_libraries, format_diff, library_document
    from .registry import RegistryError

    if fail_above is not None:
        _usage("--fail-above compares two result folders: `endpointc run` each library, then diff the folders")
    if (events is None) != (people is None):
        _usage("give both --events and --people, or neither")
    old_files, new_files = _definition_files([old]), _definition_files([new])
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
        _registry_failed(error)
    if as_json:
        _print_json({"ok": True, **library_document(diff, mask_threshold=threshold)})
    else:
        out.print(format_diff(diff, mask_threshold=threshold), soft_wrap=True)


@app.command("lsp")
def lsp_(
    stdio: Annotated[bool, typer.Option("--stdio", help="Accepted because some editors pass it: the server "
                                                         "always talks over stdin/stdout.")] = False,
) -> None:
    """Start the language server for editors, on stdin/stdout (see docs/editors.md)."""
    from .lsp import serve

    del stdio
    serve()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
