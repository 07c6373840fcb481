"""An event index: what every evaluation needs from a registry's events, prepared once.

Every evaluation starts the same way: one grouped pass over the registry's code columns
(the distinct event keys, matched against the program's patterns), then, per person
bucket, one join of every event with the matched keys. For a curator who edits one
endpoint and asks for its counts, both are a pass over all events (2.5e8 at FinnGen scale)
for the few that endpoint reads. `build_index` does the registry's part of that work once
and writes it to a folder; `open_index` gives it back, and `engine.polars.evaluate` takes
the `EventIndex` in place of the events (engine/indexed.py):

* ``keys.parquet``: every distinct key (SOURCE, ICDVER, CATEGORY, CODE1, CODE2, CODE3,
  normalised) with its number KEY, its row count _ROWS and START, the position of its
  first row in the row files. Keys are numbered in the order (CODE1, SOURCE, ...), so the
  keys of one code prefix, which an endpoint's patterns select together, are neighbours.
* ``rows-NNNNN.parquet``: every event as (KEY, PERSON, EVENT_AGE, APPROX_EVENT_DAY,
  URGENT, INDEX), sorted by (KEY, PERSON) across the files, about ROWS_PER_FILE rows a
  file, in row groups of ROW_GROUP rows with statistics. PERSON is the person's rank in
  ``people.parquet``; URGENT is CODE9 == "1". A key's rows are one range of rows, so an
  endpoint reads the ranges of its matched keys and nothing else.
* ``urgent.parquet``: (PERSON, INDEX) of every urgent row, for `when emergency`'s visits.
* ``people.parquet``: the people table, normalised, sorted by FINNGENID.
* ``index.json`` (`IndexManifest`, written last: a folder without it is no index): the
  format version, the size, modification time and sha256 of the two registry files, the
  row files, the registry check's warnings.

The index holds the registry as `load_registry` reads it (checked when the index is built;
events of unknown SOURCE or of people outside the people table dropped), so results with
the index equal those of `evaluate(program, registry.events, registry.people)`, byte for
byte. `open_index` refuses a registry file whose size changed, or whose content changed
when its modification time did (then it hashes the file again), naming the file.

Example (a registry written by `endpointc synth`):
    >>> index = build_index("reg/events.parquet", "reg/people.parquet", "reg.index")  # doctest: +SKIP
    >>> results = endpointc.evaluate(program, open_index("reg.index"), endpoints=["I9_MI"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from .engine.buckets import id_ranges, range_starts
from .engine.matching import ENGINE, key_hash
from .manifest import file_record
from .registry import EVENTS_SCHEMA, KNOWN_SOURCES, Registry, load_registry, scan_events

__all__ = ["FORMAT", "KEY_COLUMNS", "EventIndex", "EventIndexError", "IndexManifest", "build_index", "open_index"]

# Bumped whenever the files change form: an index of another format is refused, not misread.
FORMAT = 1
MANIFEST = "index.json"
# every column a program's keys can have (`matching.key_columns`)
KEY_COLUMNS = ("SOURCE", "ICDVER", "CATEGORY", "CODE1", "CODE2", "CODE3")
_KEY_ORDER = ("CODE1", "SOURCE", "ICDVER", "CATEGORY", "CODE2", "CODE3")
ROWS_PER_FILE = 5_000_000
# A range read costs about as much as decoding 5e4 rows (2 to 5 ms): small row groups waste
# little on a short range, and the reader skips the others by their statistics.
ROW_GROUP = 16_384
_READ_EVENTS = 5_000_000  # registry events per bucket while building (as `run --buckets auto`)
_KEY_PART_BUCKETS = 10  # buckets per part of the key pass (memory bounded, see matching._distinct)


class EventIndexError(Exception):
    """An index that cannot serve: missing, of another format, or built from a registry
    file that has changed since. The message names the file."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceFile(_Frozen):
    """A registry file the index was built from."""

    path: str  # absolute
    size: int = Field(ge=0)
    mtime_ns: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class RowFile(_Frozen):
    """One file of rows: rows `first_row` .. `first_row + rows - 1` of the whole order."""

    name: str
    first_row: int = Field(ge=0)
    rows: int = Field(ge=0)


class IndexManifest(_Frozen):
    """``index.json``."""

    format: int
    endpointc: str
    events: SourceFile
    people: SourceFile
    columns: tuple[str, ...]  # the normalised events columns the registry has
    rows: int = Field(ge=0)  # events kept by the registry check
    people_count: int = Field(ge=0)
    keys: int = Field(ge=0)
    files: tuple[RowFile, ...]
    urgent_rows: int = Field(ge=0)
    # the registry check dropped events (of an unknown SOURCE or of people outside the
    # people table): a pass over the registry drops them the same way
    dropped: bool
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class EventIndex:
    """An opened, verified index (`open_index`)."""

    folder: Path
    manifest: IndexManifest

    @property
    def people(self) -> pl.LazyFrame:
        """The people table, normalised, sorted by FINNGENID (PERSON is the row number)."""
        return pl.scan_parquet(self.folder / "people.parquet")

    @property
    def events(self) -> pl.LazyFrame:
        """The registry's events as `load_registry(..., keep_as_read=True)` gives them
        (read from the registry file, which `open_index` checked is unchanged)."""
        events = scan_events(self.manifest.events.path, keep_as_read=True)
        if self.manifest.dropped:
            # load_registry's two filters; each keeps every row when nothing was dropped by it
            ids = self.people.select("FINNGENID").collect(engine=ENGINE)["FINNGENID"]
            events = (events.filter(pl.col("SOURCE").is_in(KNOWN_SOURCES))
                      .filter(pl.col("FINNGENID").is_in(ids.implode())))
        return events

    @property
    def registry(self) -> Registry:
        """The registry as `load_registry` gave it when the index was built, without checking
        it again."""
        return Registry(events=self.events, people=self.people, warnings=self.manifest.warnings)

    def keys(self) -> pl.LazyFrame:
        """KEY, the key columns, _ROWS and START of every distinct key."""
        return pl.scan_parquet(self.folder / "keys.parquet")

    def urgent(self) -> pl.LazyFrame:
        """(PERSON, INDEX) of the urgent rows, sorted by PERSON."""
        return pl.scan_parquet(self.folder / "urgent.parquet")

    def row_file(self, name: str) -> pl.LazyFrame:
        return pl.scan_parquet(self.folder / name)


def open_index(folder: str | os.PathLike[str], *, events: str | os.PathLike[str] | None = None,
               people: str | os.PathLike[str] | None = None) -> EventIndex:
    """The index in `folder`, after checking that the registry files it was built from are
    unchanged (and, when `events` or `people` are given, that they are those files).

    A file of the same size and modification time as when the index was built counts as
    unchanged; one whose time changed is hashed again (sha256) and must match."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EventIndexError(f"{folder} is not an event index (no {MANIFEST}); build one with "
                              f"`endpointc index --events ... --people ... --out {folder}`") from None
    except OSError as error:
        raise EventIndexError(f"cannot read {path}: {error.strerror}") from None
    try:
        found = json.loads(text).get("format")
        manifest = IndexManifest.model_validate_json(text) if found == FORMAT else None
    except (ValueError, AttributeError):  # not JSON, not an object, or fields that do not fit
        found = manifest = None
    if manifest is None:
        raise EventIndexError(f"{path}: index format {found}, this endpointc reads {FORMAT}; build the index again")
    for table, given, recorded in (("events", events, manifest.events), ("people", people, manifest.people)):
        if given is not None and not _same_file(given, recorded.path):
            raise EventIndexError(f"the index {folder} was built from {table} file {recorded.path}, not {given}")
        _check_unchanged(table, recorded, folder)
    return EventIndex(folder=folder, manifest=manifest)


def build_index(events: str | os.PathLike[str], people: str | os.PathLike[str], out: str | os.PathLike[str], *,
                allow_empty_events: bool = False, on_step: Callable[[str], None] | None = None) -> EventIndex:
    """Check the registry (`load_registry`: a `RegistryError` stops here) and write its index
    to the folder `out`, replacing an index there (any other non-empty folder is refused).
    The index appears complete or not at all: it is written beside `out` and moved in.
    `on_step(description)` hears each step (e.g. for a progress display)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists())):
        raise EventIndexError(f"{out} exists and is not an event index: choose another --out")
    step = on_step or (lambda _: None)
    sources = {table: _source_file(path) for table, path in (("events", events), ("people", people))}
    step("checking the registry")
    registry = load_registry(events, people, allow_empty_events=allow_empty_events)
    work = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        manifest = _write(registry, sources, work, step)
        for table, path in (("events", events), ("people", people)):
            if _stat(path) != (sources[table].size, sources[table].mtime_ns):
                raise EventIndexError(f"{table} file {path} changed while the index was built; build it again")
        (work / MANIFEST).write_text(manifest.model_dump_json(indent=1), encoding="utf-8")
        _move_into_place(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return EventIndex(folder=out, manifest=manifest)


# -- building -----------------------------------------------------------------------------

def _write(registry: Registry, sources: dict[str, SourceFile], work: Path,
           step: Callable[[str], None]) -> IndexManifest:
    people = registry.people.collect(engine=ENGINE).sort("FINNGENID")
    people.write_parquet(work / "people.parquet")
    ranks = people.select("FINNGENID").with_row_index("PERSON")
    urgent = (pl.col("CODE9") == "1").fill_null(False) if "CODE9" in registry.events.collect_schema() \
        else pl.lit(False)
    events = registry.events.select("FINNGENID", *KEY_COLUMNS, "EVENT_AGE", "APPROX_EVENT_DAY",
                                    urgent.alias("URGENT"), "INDEX")
    read_rows = scan_events(sources["events"].path).select(pl.len()).collect().item()  # Parquet: metadata
    starts = range_starts(registry.people, max(1, math.ceil(read_rows / _READ_EVENTS)))
    buckets = id_ranges(starts)

    step("counting the distinct keys")
    keys = None
    for part in id_ranges(starts[_KEY_PART_BUCKETS - 1::_KEY_PART_BUCKETS]):
        got = (events.filter(part).group_by(KEY_COLUMNS).agg(pl.len().cast(pl.UInt64).alias("_ROWS"))
               .collect(engine=ENGINE))
        keys = got if keys is None else pl.concat([keys, got]).group_by(KEY_COLUMNS).agg(pl.col("_ROWS").sum())
    keys = (keys.sort(_KEY_ORDER, nulls_last=True).with_row_index("KEY")
            .with_columns((pl.col("_ROWS").cum_sum() - pl.col("_ROWS")).alias("START"), key_hash(KEY_COLUMNS)))
    # a key's rows go to the file where the key starts: files of about ROWS_PER_FILE rows
    keys = keys.with_columns(((pl.col("START") // ROWS_PER_FILE).rank("dense") - 1).cast(pl.UInt32).alias("FILE"))
    keys.select("KEY", *KEY_COLUMNS, "_ROWS", "START").write_parquet(work / "keys.parquet")
    # joined on one u64 when it tells every key apart (as the engine does), else on the columns
    by_hash = keys["_HASH"].n_unique() == keys.height
    on = ["_HASH"] if by_hash else list(KEY_COLUMNS)

    spill = work / "spill"
    for b, bucket in enumerate(buckets):
        step(f"sorting the events by key: bucket {b + 1} of {len(buckets)}")
        lf = events.filter(bucket)
        rows = (lf.with_columns(key_hash(KEY_COLUMNS)) if by_hash else lf).join(
            keys.lazy().select(*on, "KEY", "FILE"), on=on, nulls_equal=True)
        rows = (rows.join(ranks.lazy(), on="FINNGENID")
                .select("FILE", "KEY", "PERSON", "EVENT_AGE", "APPROX_EVENT_DAY", "URGENT", "INDEX")
                .collect(engine=ENGINE))
        for (file,), part in rows.partition_by("FILE", as_dict=True, include_key=False).items():
            (spill / f"{file:05d}").mkdir(parents=True, exist_ok=True)
            part.write_parquet(spill / f"{file:05d}" / f"{b:05d}.parquet")
        (spill / "urgent").mkdir(parents=True, exist_ok=True)
        rows.filter("URGENT").select("PERSON", "INDEX").write_parquet(spill / "urgent" / f"{b:05d}.parquet")

    files, first = [], 0
    per_file = keys.group_by("FILE").agg(pl.col("_ROWS").sum()).sort("FILE")
    for file, expected in per_file.iter_rows():
        step(f"writing the rows: file {file + 1} of {per_file.height}")
        rows = pl.read_parquet(spill / f"{file:05d}" / "*.parquet").sort("KEY", "PERSON")
        if rows.height != expected:
            raise RuntimeError(f"index file {file}: {rows.height} rows, its keys count {expected}")
        name = f"rows-{file:05d}.parquet"
        # lz4: a file decodes in 0.23 s against 0.57 s with zstd, and is written twice as fast,
        # for 1.5 times the size (5e6 events: 82 MB against 54 MB)
        rows.write_parquet(work / name, row_group_size=ROW_GROUP, statistics=True, compression="lz4")
        files.append(RowFile(name=name, first_row=first, rows=rows.height))
        first += rows.height
    urgent_rows = (pl.read_parquet(spill / "urgent" / "*.parquet") if (spill / "urgent").exists()
                   else pl.DataFrame(schema={"PERSON": pl.UInt32, "INDEX": pl.String})).sort("PERSON")
    urgent_rows.write_parquet(work / "urgent.parquet")
    shutil.rmtree(spill, ignore_errors=True)
    schema = registry.events.collect_schema()
    return IndexManifest(
        format=FORMAT, endpointc=_version(), events=sources["events"], people=sources["people"],
        columns=tuple(c for c in EVENTS_SCHEMA if c in schema), rows=first, people_count=people.height,
        keys=keys.height, files=tuple(files), urgent_rows=urgent_rows.height, dropped=first != read_rows,
        warnings=registry.warnings)


def _move_into_place(work: Path, out: Path) -> None:
    """`work` becomes `out`; an index already at `out` is replaced, and removed only once
    the new one is in place."""
    if not out.exists():
        os.replace(work, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, old)
    try:
        os.replace(work, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# -- the registry files -------------------------------------------------------------------

def _stat(path: str | os.PathLike[str]) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _source_file(path: str | os.PathLike[str]) -> SourceFile:
    size, mtime = _stat(path)
    return SourceFile(path=str(Path(path).resolve()), size=size, mtime_ns=mtime, sha256=file_record(path).sha256)


def _check_unchanged(table: str, recorded: SourceFile, folder: Path) -> None:
    rebuild = f"build the index again: endpointc index --events ... --people ... --out {folder}"
    try:
        size, mtime = _stat(recorded.path)
    except OSError:
        raise EventIndexError(f"{table} file {recorded.path}, which the index {folder} was built from, "
                              f"cannot be read; {rebuild}") from None
    if size == recorded.size and mtime == recorded.mtime_ns:
        return
    if size != recorded.size or file_record(recorded.path).sha256 != recorded.sha256:
        raise EventIndexError(f"{table} file {recorded.path} has changed since the index {folder} was built; "
                              f"{rebuild}")


def _same_file(given: str | os.PathLike[str], recorded: str) -> bool:
    try:
        return os.path.samefile(given, recorded)
    except OSError:
        return False


def _version() -> str:
    try:
        return metadata.version("endpointc")
    except metadata.PackageNotFoundError:
        return "unknown"
