"""Outputs: the long results table, per-endpoint counts, the FinnGen-style wide table.

``write_results`` writes, into one directory:

- ``endpoints.parquet``: the long table (FINNGENID, ENDPOINT, STATUS, AGE, YEAR, NEVT), one
  row per person and endpoint for cases and excluded people, sorted by ENDPOINT, FINNGENID;
- ``counts.tsv``: ENDPOINT, N_CASES, N_CONTROLS, N_EXCLUDED, with small counts masked by
  `masking.mask_counts` (``<5`` by default, and ``masked`` where a row's other counts and the
  population would give one away; ``mask_threshold=None`` turns masking off);
- with ``wide=True``, ``endpoints_wide.tsv``: FINNGENID, then per endpoint NAME (1 case,
  0 control, NA excluded), NAME_NEVT, NAME_AGE, NAME_YEAR.

All files of one call are written to temporary files in the target directory first and
renamed into place only when every one of them is complete, so a failure leaves the
directory as it was (earlier outputs untouched, no temporary files left). The files are
created readable by the owner only (they may hold individual-level data). Output bytes are
deterministic: rows are sorted, floats in TSV files use a fixed number of decimals.

Leftovers: temporaries, backups and bucket spill folders (`spill_folder`) are named
``.endpointc-KIND-HOST-PID-...`` (KIND tmp, bak or buckets; HOST a hash of the host name;
PID the writing process), and spill folders hold a `SPILL_MARKER` file. Removing them
cannot be cut short by a second Ctrl-C (`uninterrupted`), and what a killed process left
behind is removed by the next `write_results` or `remove_stale` in that folder: only
entries of that exact form (and marker) whose process is gone, never anything else.

>>> counts = counts_table(long, people, endpoints=["I9_CHD"])      # doctest: +SKIP
>>> write_results(long, counts, "out", people=people, wide=True)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import polars as pl

from .engine.schema import COUNT_COLUMNS, LONG_SCHEMA
from .masking import MASK_THRESHOLD, check_threshold, mask_counts

__all__ = [
    "LONG_SCHEMA",
    "COUNT_COLUMNS",
    "MASK_THRESHOLD",
    "LONG_FILE",
    "COUNTS_FILE",
    "WIDE_FILE",
    "MANIFEST_FILE",
    "LONGITUDINAL_FILES",
    "INTERMEDIATE_FILE",
    "counts_table",
    "mask_counts",
    "wide_table",
    "write_results",
    "write_text_atomic",
    "counts_text",
    "spill_folder",
    "remove_stale",
    "uninterrupted",
    "SPILL_MARKER",
]

LONG_FILE = "endpoints.parquet"
COUNTS_FILE = "counts.tsv"
WIDE_FILE = "endpoints_wide.tsv"
# FinnGen release files (endpointc.release), by format of the longitudinal file
LONGITUDINAL_FILES = MappingProxyType({"parquet": "endpoint_longitudinal.parquet",
                                       "tsv.gz": "endpoint_longitudinal.tsv.gz"})
INTERMEDIATE_FILE = "intermediate_counts.tsv"
MANIFEST_FILE = "manifest.json"   # see endpointc/manifest.py

_STATUSES = ("case", "excluded")
# FinnGen ages are years as days / 365.25; the same convention turns FU_END_AGE into a year.
_DAYS_PER_YEAR = 365.25
# Fixed so that a file's bytes do not depend on the row count. Small enough that a row
# group's dictionary of FINNGENIDs stays small: at 2.3e8 rows, 2^18 wrote the long table in
# 48 s against 62 s for 2^20, and 2^17 in 33 s against 36 s for 2^18 (7% smaller); readers
# also skip finer by ENDPOINT.
_ROW_GROUP_SIZE = 1 << 17
# zstd's fastest level: the 2.3e8-row long table was written about 10% faster than at the
# default level, for a 6% larger file
_ZSTD_LEVEL = 1


def counts_table(long: pl.LazyFrame, people: pl.LazyFrame, *,
                 endpoints: Iterable[str] | None = None) -> pl.LazyFrame:
    """Per-endpoint N_CASES, N_CONTROLS, N_EXCLUDED (Int64), sorted by ENDPOINT.

    Controls are the rest of the population: ``len(people) - cases - excluded``.
    Endpoints listed in ``endpoints`` appear even without any case or excluded person;
    endpoints of ``long`` are always listed.

    >>> long = pl.LazyFrame({"FINNGENID": ["a"], "ENDPOINT": ["E"], "STATUS": ["case"]})
    >>> people = pl.LazyFrame({"FINNGENID": ["a", "b", "c"]})
    >>> counts_table(long, people, endpoints=["E", "F"]).collect().rows()
    [('E', 1, 2, 0), ('F', 0, 3, 0)]
    """
    per_endpoint = long.group_by("ENDPOINT").agg(
        (pl.col("STATUS") == "case").sum().cast(pl.Int64).alias("N_CASES"),
        (pl.col("STATUS") == "excluded").sum().cast(pl.Int64).alias("N_EXCLUDED"),
    )
    if endpoints is not None:
        names = pl.LazyFrame({"ENDPOINT": sorted(set(endpoints))}, schema={"ENDPOINT": pl.String})
        per_endpoint = (pl.concat([names, long.select("ENDPOINT")]).unique()
                        .join(per_endpoint, on="ENDPOINT", how="left"))
    population = people.select(pl.len().cast(pl.Int64).alias("_POP"))
    return (per_endpoint.join(population, how="cross")
            .select(
                pl.col("ENDPOINT"),
                pl.col("N_CASES").fill_null(0),
                (pl.col("_POP") - pl.col("N_CASES").fill_null(0) - pl.col("N_EXCLUDED").fill_null(0))
                .alias("N_CONTROLS"),
                pl.col("N_EXCLUDED").fill_null(0),
            )
            .sort("ENDPOINT"))


def wide_table(long: pl.LazyFrame, people: pl.LazyFrame, endpoints: Sequence[str]) -> pl.DataFrame:
    """FinnGen-style wide table, one row per person of ``people`` (sorted by FINNGENID).

    Per endpoint NAME, in the order given: NAME (1 case, 0 control, null excluded),
    NAME_NEVT, NAME_AGE, NAME_YEAR. Cases carry their NEVT, AGE and YEAR; controls NEVT 0,
    AGE = FU_END_AGE and YEAR = the year of APPROX_BIRTH_DATE + FU_END_AGE years (null when
    either is missing); excluded people null in all four. Memory: the population times
    4 columns per endpoint, so choose the endpoints (`write_results` writes the file without
    building this table).

    >>> long = pl.LazyFrame({"FINNGENID": ["a"], "ENDPOINT": ["E"], "STATUS": ["case"],
    ...                      "AGE": [50.5], "YEAR": [2001], "NEVT": [2]})
    >>> people = pl.LazyFrame({"FINNGENID": ["b", "a"], "FU_END_AGE": [60.0, 70.0],
    ...                        "APPROX_BIRTH_DATE": [None, None]})
    >>> wide_table(long, people, ["E"]).rows()
    [('a', 1, 2, 50.5, 2001), ('b', 0, 0, 60.0, None)]
    """
    columns, base, rows = _wide_rows(long, people, endpoints)
    # Each of the four values is one column of endpoints x people cells (endpoint-major), set
    # to the controls' values and then to the rows' by position; an endpoint's columns are
    # slices of those.
    n, width = base.height, len(_WIDE_SUFFIXES)
    at = rows["_E"].cast(pl.UInt64) * n + rows["_P"]
    cells = [pl.concat([control] * ((len(columns) - 1) // width), rechunk=True).scatter(at, rows[control.name])
             for control in _controls(base)] if len(columns) > 1 else []
    return pl.DataFrame([base["FINNGENID"], *(cells[i % width].slice(i // width * n, n).alias(name)
                                              for i, name in enumerate(columns[1:]))])


_WIDE_SUFFIXES = ("", "_NEVT", "_AGE", "_YEAR")
# Long table rows per block of people written at once by `_write_wide`: their cells as text
# take about 100 bytes a row.
_WIDE_BLOCK_ROWS = 1 << 20


def _wide_rows(long: pl.LazyFrame, people: pl.LazyFrame, endpoints: Sequence[str]
               ) -> tuple[list[str], pl.DataFrame, pl.DataFrame]:
    """The wide table's columns; its people (FINNGENID, _FU_AGE, _FU_YEAR, sorted);
    and the long table's rows of those endpoints and people, grouped by _P (index of the
    person, ascending), with _E (index of the endpoint), STATUS 1 (case) or null, and NEVT,
    AGE, YEAR of cases.

    One pass over the long table however many endpoints: Polars' ``pivot`` would filter the
    rows once per column (at 4,841 endpoints, 99% of the time of the wide table).
    """
    order = list(dict.fromkeys(endpoints))
    columns = ["FINNGENID"] + [f"{e}{suffix}" for e in order for suffix in _WIDE_SUFFIXES]
    clashes = sorted(c for c, k in Counter(columns).items() if k > 1)
    if clashes:
        raise ValueError(f"wide table: endpoint names give duplicate columns {', '.join(clashes)}")
    schema = people.collect_schema()
    birth = (pl.col("APPROX_BIRTH_DATE").cast(pl.Date) if "APPROX_BIRTH_DATE" in schema
             else pl.lit(None, dtype=pl.Date))
    base = people.select(
        pl.col("FINNGENID").cast(pl.String),
        pl.col("FU_END_AGE").cast(pl.Float64).alias("_FU_AGE"),
        # Date -> days since epoch keeps this exact and cheap; fractional days are dropped.
        (birth.cast(pl.Int32) + (pl.col("FU_END_AGE").cast(pl.Float64) * _DAYS_PER_YEAR).floor()
         .cast(pl.Int32)).cast(pl.Date).dt.year().cast(pl.Int32).alias("_FU_YEAR"),
    ).sort("FINNGENID").collect()
    case = pl.col("STATUS") == "case"
    rows = (_long_frame(long).filter(pl.col("STATUS").is_not_null())   # no status: a control
            .join(pl.LazyFrame({"ENDPOINT": order, "_E": range(len(order))},
                               schema={"ENDPOINT": pl.String, "_E": pl.UInt32}), on="ENDPOINT")
            .join(base.lazy().select("FINNGENID").with_row_index("_P"), on="FINNGENID")
            .select("_P", "_E", pl.when(case).then(pl.lit(1, pl.Int8)).alias("STATUS"),
                    *(pl.when(case).then(pl.col(c)).alias(c) for c in ("NEVT", "AGE", "YEAR")))
            .sort("_P", maintain_order=True)   # by (_P, _E) is 5x dearer
            .collect())
    repeated = rows.select(pl.len() - (pl.col("_P").cast(pl.UInt64) * len(order) + pl.col("_E")).n_unique()).item()
    if repeated:
        raise ValueError(f"wide table: {repeated} rows of the long table repeat a (person, endpoint) pair")
    return columns, base, rows


def _controls(base: pl.DataFrame) -> pl.DataFrame:
    """Each person's four values as a control, named as the rows' values."""
    return base.select(pl.lit(0, pl.Int8).alias("STATUS"), pl.lit(0, pl.Int64).alias("NEVT"),
                       pl.col("_FU_AGE").alias("AGE"), pl.col("_FU_YEAR").alias("YEAR"))


def _write_wide(long: pl.LazyFrame, people: pl.LazyFrame, endpoints: Sequence[str], path: Path, *,
                float_precision: int | None) -> None:
    """``_write_tsv(wide_table(long, people, endpoints), path, float_precision=...)``, byte for
    byte, without the table: only the long table's rows are formatted (by Polars' writer, as
    four cells of text each), and with each person's four cells as a control, put together
    row by row, a block of people at a time."""
    columns, base, rows = _wide_rows(long, people, endpoints)
    options = {"separator": "\t", "line_terminator": "\n", "null_value": "NA", "quote_style": "necessary"}

    def cells(frame: pl.DataFrame) -> np.ndarray:
        # numbers and NA only: one line per row
        return np.array(frame.write_csv(include_header=False, float_precision=float_precision, **options)
                        .split("\n")[:-1], dtype=object)

    # Polars' rule for "necessary": a tab, quote, line break or the empty string
    person = pl.col("FINNGENID")
    quoted = pl.when(person.str.contains('[\t"\n\r]') | (person == "")).then(
        '"' + person.str.replace_all('"', '""', literal=True) + '"').otherwise(person)
    ids = base.select(quoted.fill_null("NA"))
    starts = np.searchsorted(rows["_P"].to_numpy(), np.arange(base.height + 1))
    at = rows["_E"].to_numpy().astype(np.int64) + 1
    controls = _controls(base)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        # the header as the writer's, without a frame of 4 columns per endpoint (0.4 s at DF12)
        handle.write("\t".join(pl.DataFrame({"FINNGENID": columns}).select(quoted).to_series()) + "\n")
        line = np.empty(1 + (len(columns) - 1) // len(_WIDE_SUFFIXES), dtype=object)   # an id, then per endpoint
        first = 0
        while first < base.height:
            # the next people up to _WIDE_BLOCK_ROWS rows, at least one person
            last = min(base.height, max(first + 1, int(np.searchsorted(
                starts, starts[first] + _WIDE_BLOCK_ROWS, side="right")) - 1))
            offset = starts[first]
            block_ids = ids.slice(first, last - first).to_series().to_list()
            block_controls = cells(controls.slice(first, last - first))
            block_rows = cells(rows.slice(offset, starts[last] - offset).select(controls.columns))
            for k in range(last - first):
                a, b = starts[first + k] - offset, starts[first + k + 1] - offset
                line[0] = block_ids[k]
                line[1:] = block_controls[k]
                line[at[offset + a:offset + b]] = block_rows[a:b]
                handle.write("\t".join(line.tolist()) + "\n")
            first = last


def write_results(long: pl.LazyFrame, counts: pl.LazyFrame, out_dir: str | os.PathLike[str], *,
                  people: pl.LazyFrame, wide: bool = False, wide_endpoints: Sequence[str] | None = None,
                  mask_threshold: int | None = MASK_THRESHOLD, age_decimals: int = 2,
                  long_sorted: bool = False,
                  manifest: Callable[[Mapping[str, Path]], str] | None = None,
                  extra: Sequence[tuple[str, Callable[[Path], None]]] = ()) -> tuple[Path, ...]:
    """Write endpoints.parquet, counts.tsv and (``wide=True``) endpoints_wide.tsv into ``out_dir``.

    All or nothing: every file goes to a temporary file first; only when all are written are
    they renamed into place, and a failure while renaming restores the files that were there.
    ``wide_endpoints`` defaults to every endpoint of ``counts`` (sorted); names not in
    ``counts`` are an error. ``age_decimals`` fixes the AGE format of the wide table (the
    Parquet file keeps full precision). ``long_sorted`` says ``long`` is already sorted by
    ENDPOINT, FINNGENID (as ``evaluate`` returns it): it is then streamed to disk as it is,
    never held in memory whole. ``manifest``, given every other file's name and written
    (not yet renamed) path, returns the text of manifest.json, which is written last and
    renamed into place with the rest. ``extra``: more (file name, writer) pairs, each
    writer filling the temporary path it is given, written and renamed with the others
    (the release files of `endpointc.release.release_writers`). Returns the paths written.
    """
    check_threshold(mask_threshold)
    out = Path(out_dir)

    # Everything that can fail on the data happens before a file is renamed into place.
    long_lf = _long_frame(long) if long_sorted else _long_frame(long).sort("ENDPOINT", "FINNGENID")
    counts_df = (counts.select(pl.col("ENDPOINT").cast(pl.String), *[pl.col(c).cast(pl.Int64) for c in COUNT_COLUMNS])
                 .sort("ENDPOINT").collect())
    population = people.select(pl.len()).collect().item()

    written: dict[str, Path] = {}

    def write_long(path: Path) -> None:
        written[LONG_FILE] = path
        long_lf.sink_parquet(path, compression="zstd", compression_level=_ZSTD_LEVEL, statistics=True,
                             row_group_size=_ROW_GROUP_SIZE)
        # glob=False: an output folder may have "[" or "*" in its name
        unexpected = (pl.scan_parquet(path, glob=False).filter(~pl.col("STATUS").is_in(_STATUSES))
                      .select(pl.len()).collect().item())
        if unexpected:
            raise ValueError(f"long table: {unexpected} rows have a STATUS other than case/excluded")

    writers: list[tuple[str, Callable[[Path], None]]] = [
        (LONG_FILE, write_long),
        (COUNTS_FILE, lambda p: _write_tsv(mask_counts(counts_df, threshold=mask_threshold,
                                                       population=population), p)),
    ]
    if wide:
        known = counts_df["ENDPOINT"].to_list()
        chosen = list(wide_endpoints) if wide_endpoints is not None else known
        unknown = [e for e in chosen if e not in set(known)]
        if unknown:
            raise ValueError(f"wide table: unknown endpoint{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(unknown)} (not among the evaluated endpoints)")
        writers.append((WIDE_FILE, lambda p: _write_wide(
            pl.scan_parquet(written[LONG_FILE], glob=False), people, chosen, p, float_precision=age_decimals)))
    writers.extend(extra)

    if manifest is not None:
        writers = _with_manifest(writers, manifest)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    return _write_all(out, writers)


# --- helpers ---------------------------------------------------------------------------

def counts_text(counts: pl.DataFrame, *, population: int, mask_threshold: int | None = MASK_THRESHOLD) -> str:
    """The text of counts.tsv for `counts` (ENDPOINT, N_CASES, N_CONTROLS, N_EXCLUDED), masked
    and laid out as `write_results` writes it: for writers that put it on a file system of
    their own (endpointc.spark)."""
    check_threshold(mask_threshold)
    df = (counts.select(pl.col("ENDPOINT").cast(pl.String), *[pl.col(c).cast(pl.Int64) for c in COUNT_COLUMNS])
          .sort("ENDPOINT"))
    return _write_tsv(mask_counts(df, threshold=mask_threshold, population=population), None)


def _long_frame(long: pl.LazyFrame) -> pl.LazyFrame:
    return long.select(pl.col(c).cast(t) for c, t in LONG_SCHEMA.items())


def _with_manifest(writers: list[tuple[str, Callable[[Path], None]]],
                   manifest: Callable[[Mapping[str, Path]], str]) -> list[tuple[str, Callable[[Path], None]]]:
    done: dict[str, Path] = {}

    def recorded(name: str, write: Callable[[Path], None]) -> Callable[[Path], None]:
        def run(path: Path) -> None:
            write(path)
            done[name] = path
        return run

    return [*((name, recorded(name, write)) for name, write in writers),
            (MANIFEST_FILE, lambda path: path.write_text(manifest(done), encoding="utf-8"))]


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Replace `path` with `text` all at once (temporary file + rename); on any failure the
    old file stays as it was. A replaced file keeps its permissions; a new one gets the
    usual ones (0666 less the umask), unlike the owner-only result tables."""
    target = Path(path)
    if target.exists():
        mode = target.stat().st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with uninterrupted():
            Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _write_tsv(df: pl.DataFrame, path: Path | None, *, float_precision: int | None = None) -> str | None:
    """Write `df` to `path`, or return the text when `path` is None."""
    return df.write_csv(path, separator="\t", line_terminator="\n", null_value="NA",
                        float_precision=float_precision, quote_style="necessary")


def _write_all(out: Path, writers: list[tuple[str, Callable[[Path], None]]]) -> tuple[Path, ...]:
    temps: list[tuple[Path, Path]] = []
    try:
        for name, write in writers:
            with uninterrupted():
                fd, tmp_name = tempfile.mkstemp(dir=out, prefix=_owned_prefix("tmp", name), suffix=".tmp")
                os.close(fd)
                tmp = Path(tmp_name)
                _LIVE.add(tmp)
                temps.append((tmp, out / name))
            write(tmp)
            _fsync(tmp)
        _commit(temps)
    finally:
        with uninterrupted():
            for tmp, _ in temps:
                tmp.unlink(missing_ok=True)
                _LIVE.discard(tmp)
    _fsync_dir(out)
    return tuple(final for _, final in temps)


def _commit(pairs: list[tuple[Path, Path]]) -> None:
    """Rename every temp onto its target; on failure put the previous targets back."""
    backups: dict[Path, Path] = {}
    done: list[Path] = []
    try:
        for _, final in pairs:
            if final.exists():
                with uninterrupted():
                    backups[final] = _backup(final)
        with uninterrupted():   # half the files renamed is worse than any wait
            for tmp, final in pairs:
                os.replace(tmp, final)
                done.append(final)
    except BaseException as exc:
        with uninterrupted():
            for final in reversed(done):
                try:
                    if final in backups:
                        os.replace(backups[final], final)
                        del backups[final]
                    else:
                        final.unlink(missing_ok=True)
                except OSError:
                    exc.add_note(f"could not restore {final}; the previous version is kept as {backups.get(final)}")
            for final, backup in list(backups.items()):
                if final not in done:
                    backup.unlink(missing_ok=True)
                    backups.pop(final)
                    _LIVE.discard(backup)
        raise
    with uninterrupted():
        for backup in backups.values():
            backup.unlink(missing_ok=True)
            _LIVE.discard(backup)


def _backup(path: Path) -> Path:
    backup = path.with_name(f"{_owned_prefix('bak', path.name)}{secrets.token_hex(6)}.bak")
    _LIVE.add(backup)
    try:
        os.link(path, backup)   # a second name for the old file: instant, no copy
    except OSError:
        shutil.copy2(path, backup)
    return backup


# --- leftovers ---------------------------------------------------------------------------

SPILL_MARKER = ".endpointc-spill"
# The host in a name: a process id says nothing about another machine's processes, so only
# leftovers of this host are ever judged stale.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_OWNED = re.compile(r"\.endpointc-(?P<kind>tmp|bak|buckets)-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-(?P<rest>.+)")
_OUTPUT_NAMES = "|".join(re.escape(n) for n in (LONG_FILE, COUNTS_FILE, WIDE_FILE, *LONGITUDINAL_FILES.values(),
                                                  INTERMEDIATE_FILE, MANIFEST_FILE))
_REST = {
    "tmp": re.compile(rf"(?:{_OUTPUT_NAMES})\.[A-Za-z0-9_]+\.tmp"),
    "bak": re.compile(rf"(?:{_OUTPUT_NAMES})\.[0-9a-f]{{12}}\.bak"),
    "buckets": re.compile(r"[A-Za-z0-9_]+"),
}
# Leftovers this process is still using: the process id alone cannot tell them from those
# of an earlier, interrupted call in the same process.
_LIVE: set[Path] = set()


def _owned_prefix(kind: str, name: str = "") -> str:
    return f".endpointc-{kind}-{_HOST}-{os.getpid()}-{name}" + ("." if name else "")


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block is done, then raise KeyboardInterrupt: for
    cleanup that must not stop halfway. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except ValueError:  # no signals here (e.g. an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and previous is not signal.SIG_IGN:
            if callable(previous):
                previous(signal.SIGINT, None)   # Python's raises KeyboardInterrupt; an outer block's waits
            else:
                raise KeyboardInterrupt


@contextlib.contextmanager
def spill_folder(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """A folder for bucket spill files inside `out_dir`, with its marker; removed on exit
    (or by a later run, if this process is killed)."""
    with uninterrupted():
        folder = Path(tempfile.mkdtemp(prefix=_owned_prefix("buckets"), dir=out_dir))
        _LIVE.add(folder)
        (folder / SPILL_MARKER).write_text("endpointc bucket spill folder; removed when its run ends\n")
    try:
        yield folder
    finally:
        with uninterrupted():
            shutil.rmtree(folder, ignore_errors=True)
            _LIVE.discard(folder)


def remove_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove what interrupted or killed writers left in `folder`: temporaries, backups and
    spill folders of this host whose process has ended. Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED.fullmatch(entry.name)
        if match is None or not _REST[match["kind"]].fullmatch(match["rest"]):
            continue
        path = Path(entry.path)
        if match["host"] != _HOST or path in _LIVE or _running(int(match["pid"])):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            with uninterrupted():
                if match["kind"] == "buckets":
                    if entry.is_dir(follow_symlinks=False) and (path / SPILL_MARKER).is_file():
                        shutil.rmtree(path)
                        removed.append(path)
                elif entry.is_file(follow_symlinks=False):
                    path.unlink()
                    removed.append(path)
        except OSError:
            continue
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False   # this process: its live leftovers are in _LIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
