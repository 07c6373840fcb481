"""Reading and validating the FinnGen registry tables (the data layout of docs/language.md).

Two tables go in: the detailed longitudinal *events* table and the *people* table that
defines the population. Both are read from TSV, gzip-compressed TSV or Parquet (the format
is recognised from the file's first bytes, not its name) and normalised to the schema the
engines assume (see ``EVENTS_SCHEMA`` / ``PEOPLE_SCHEMA``):

- every missing value is null: ``"NA"`` and ``""`` in text columns become null;
- code columns stay text; TSV columns are read as text first, so ``"0101"`` keeps its zero
  (a Parquet file that already stores codes as integers has lost them: nothing to recover);
- EVENT_AGE / FU_END_AGE are Float64, APPROX_EVENT_DAY / APPROX_BIRTH_DATE are Date
  (``YYYY-MM-DD``), DEATH is Int64, SEX is ``"female"`` / ``"male"`` / null. FinnGen's
  numeric sex coding is accepted too: ``1`` = male, ``2`` = female.
- unknown extra columns are dropped from the normalised frame (``load_registry`` lists them
  in a warning); the optional CODE5..CODE9 are kept when present and never invented.

``scan_events`` / ``scan_people`` only build lazy frames: a value that cannot be parsed
silently becomes null there, and a broken file (a ragged line, a corrupt Parquet page)
fails only when a query reads it. ``load_registry`` is the checked entry point: it reads
every column of both tables once, so that a broken file fails there, named, rather than in
the middle of an evaluation, and raises a ``RegistryError`` or collects warnings. No
message ever contains a person's id or a value from a person's row; only file names,
column names, counts, line numbers, and SOURCE labels when they look like SOURCE labels.

Cost of the checks on 4.5e7 events: 14 s of CPU for a Parquet table and 48 s for a TSV,
against 3 s and 28 s without reading every column, looking for repeated rows and
counting the fields of every line. Memory: the repeated-row check sorts one 8-byte hash
per event (2 GB at 2.5e8 events); Parquet and plain TSV are scanned lazily. Polars
decompresses a ``.gz`` TSV in memory before parsing it, so a compressed table costs about
its uncompressed size in RAM for each query that reads it; convert big tables to Parquet
once instead.

>>> reg = load_registry("events.parquet", "people.tsv")          # doctest: +SKIP
>>> reg.events.collect_schema()["EVENT_AGE"]                     # doctest: +SKIP
Float64
"""

from __future__ import annotations

import functools
import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .diagnostics import Diagnostic

__all__ = [
    "KNOWN_SOURCES",
    "EVENTS_SCHEMA",
    "PEOPLE_SCHEMA",
    "REQUIRED_EVENT_COLUMNS",
    "OPTIONAL_EVENT_COLUMNS",
    "REQUIRED_PEOPLE_COLUMNS",
    "Registry",
    "RegistryError",
    "scan_events",
    "scan_people",
    "normalise_table",
    "load_registry",
    "as_read",
    "normalise_text",
    "is_missing_text",
]

# The SOURCE labels of the FinnGen detailed longitudinal table that some rule source reads.
KNOWN_SOURCES: tuple[str, ...] = (
    "INPAT", "OUTPAT", "PRIM_OUT", "DEATH", "OPER_IN", "OPER_OUT", "REIMB", "PURCH", "CANC",
)

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = (
    "FINNGENID", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY",
    "CODE1", "CODE2", "CODE3", "CODE4", "ICDVER", "CATEGORY", "INDEX",
)
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = ("CODE5", "CODE6", "CODE7", "CODE8", "CODE9")
# APPROX_BIRTH_DATE and DEATH are only needed for outputs (wide YEAR of controls), so a table
# without them is still usable: they are added as all-null columns with a warning.
REQUIRED_PEOPLE_COLUMNS: tuple[str, ...] = ("FINNGENID", "SEX", "FU_END_AGE")
_DEFAULTED_PEOPLE_COLUMNS: tuple[str, ...] = ("APPROX_BIRTH_DATE", "DEATH")

_EVENT_ORDER = (
    "FINNGENID", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY",
    "CODE1", "CODE2", "CODE3", "CODE4", *OPTIONAL_EVENT_COLUMNS, "ICDVER", "CATEGORY", "INDEX",
)
_EVENT_KINDS = {name: "text" for name in _EVENT_ORDER} | {"EVENT_AGE": "float", "APPROX_EVENT_DAY": "date"}
_PEOPLE_ORDER = ("FINNGENID", "SEX", "APPROX_BIRTH_DATE", "FU_END_AGE", "DEATH")
_PEOPLE_KINDS = {"FINNGENID": "text", "SEX": "sex", "APPROX_BIRTH_DATE": "date",
                 "FU_END_AGE": "float", "DEATH": "int"}

_DTYPES = {"text": pl.String, "float": pl.Float64, "date": pl.Date, "sex": pl.String, "int": pl.Int64}
EVENTS_SCHEMA: dict[str, pl.DataType] = {n: _DTYPES[_EVENT_KINDS[n]] for n in _EVENT_ORDER}
PEOPLE_SCHEMA: dict[str, pl.DataType] = {n: _DTYPES[_PEOPLE_KINDS[n]] for n in _PEOPLE_ORDER}

_NA_STRINGS = ("NA", "")
_DATE_FORMAT = "%Y-%m-%d"
_EXPECTED = {
    "text": "text or whole numbers",
    "float": "a number",
    "date": "a date written YYYY-MM-DD",
    "sex": "female, male, 1 (male) or 2 (female)",
    "int": "a whole number",
}
_MAX_LISTED = 10

_AGE_COLUMNS = ("EVENT_AGE", "FU_END_AGE")
_MAX_AGE = 130
# Fewer events than this share belonging to a person of the people table means the two
# files write ids differently: evaluating would make everyone a control.
_MIN_MATCHED_SHARE = 0.01
# SOURCE values are listed only when they look like SOURCE labels (PRIM_OUT), and only a
# few: otherwise they may be person ids, as in a table whose FINNGENID and SOURCE headers
# are swapped.
_SOURCE_LABEL = re.compile(r"[A-Z][A-Z_]{1,15}")
_MAX_SOURCES_LISTED = 5
# A data row read as a header always has a cell that is no column name: an age, a date,
# "NA", a sex, or an id with a run of digits.
_COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NOT_COLUMN_NAMES = frozenset({"NA", "FEMALE", "MALE"})
_DIGIT_RUN = re.compile(r"[0-9]{3}")
_OTHER_SEPARATORS = {",": "comma", ";": "semicolon", " ": "space"}
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# What reading a table may raise; a corrupt Parquet page can make Polars panic.
_READ_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError)

# Error codes (EP5xx = data). Kept together so docs/diagnostics.md can list them.
EP_UNREADABLE = "EP501"
EP_MISSING_COLUMN = "EP502"
EP_BAD_VALUE = "EP503"
EP_BAD_TYPE = "EP504"
EP_DUPLICATE_ID = "EP505"
EP_MISSING_ID = "EP506"
EP_UNKNOWN_SOURCE = "EP507"       # warning
EP_UNKNOWN_PERSON = "EP508"       # warning
EP_EXTRA_COLUMNS = "EP509"        # warning
EP_DEFAULTED_COLUMN = "EP510"     # warning
EP_MOSTLY_UNKNOWN_SOURCE = "EP511"
EP_IMPOSSIBLE_AGE = "EP512"
EP_EMPTY_TABLE = "EP513"
EP_UNMATCHED_IDS = "EP514"
EP_REPEATED_ROWS = "EP515"        # warning


class RegistryError(Exception):
    """A registry table cannot be used. Names the file and, where one is at fault, the column.

    ``also`` holds further problems found in the same check, so one run reports them all.
    """

    def __init__(self, message: str, *, file: str | os.PathLike[str], column: str | None = None,
                 code: str = EP_BAD_VALUE, also: tuple["RegistryError", ...] = ()):
        self.message = message
        self.file = str(file)
        self.column = column
        self.code = code
        self.also = tuple(also)
        more = f" (and {len(self.also)} more problem{'s' if len(self.also) > 1 else ''})" if self.also else ""
        super().__init__(message + more)

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """This problem and the ``also`` ones as error diagnostics, for the CLI to render."""
        return tuple(Diagnostic.error(e.code, e.message) for e in (self, *self.also))


@dataclass(frozen=True)
class Registry:
    """Validated, normalised registry tables (lazy) and the warnings found while checking them."""

    events: pl.LazyFrame
    people: pl.LazyFrame
    warnings: tuple[str, ...] = ()
    # Same warnings with stable codes, for renderers that want them.
    diagnostics: tuple[Diagnostic, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class _Scan:
    file: str
    table: str                          # "events" or "people"
    fmt: str                            # "tsv", "gzip" (a compressed TSV) or "parquet"
    raw: pl.LazyFrame                   # the file as read, before normalisation
    normalised: pl.LazyFrame
    bad: dict[str, pl.Expr]             # column -> bool expr over `raw`: unparseable value
    impossible: dict[str, pl.Expr]      # age column -> bool expr over `raw`: not a possible age
    extra: tuple[str, ...]              # columns dropped
    defaulted: tuple[str, ...]          # optional columns added as nulls


def scan_events(path: str | os.PathLike[str], *, keep_as_read: bool = False) -> pl.LazyFrame:
    """The events table at ``path`` as a normalised LazyFrame (no value checks; see ``load_registry``).

    ``keep_as_read`` adds, for each text column but FINNGENID, its values as read (as text,
    ``"NA"`` and ``""`` not yet null) under ``as_read(column)``. The Polars engine groups
    and hashes the code columns through those and normalises only their distinct values
    (its pass over the key columns of 2.5e8 events: 34 to 35 s against 39 to 44 s; the
    whole evaluation 6% faster).

    Raises ``RegistryError`` if the file cannot be read or lacks a required column.
    """
    return _scan(path, "events", keep_as_read=keep_as_read).normalised


def scan_people(path: str | os.PathLike[str]) -> pl.LazyFrame:
    """The people table at ``path`` as a normalised LazyFrame (no value checks; see ``load_registry``)."""
    return _scan(path, "people").normalised


def normalise_table(raw: pl.LazyFrame, table: str, *, file: str, fmt: str = "parquet",
                    keep_as_read: bool = False) -> pl.LazyFrame:
    """A ``table`` ("events" or "people") that another reader has read (Spark's, see
    endpointc/spark.py; ``fmt``: "parquet" or "tsv", as it was read) normalised as
    ``scan_events``/``scan_people`` normalise a file: the same column and type checks
    (``RegistryError`` naming ``file``), the same values."""
    return _scan(file, table, keep_as_read=keep_as_read, read=(raw, fmt)).normalised


def load_registry(events_path: str | os.PathLike[str], people_path: str | os.PathLike[str], *,
                  keep_as_read: bool = False, allow_empty_events: bool = False) -> Registry:
    """Read, normalise and check both tables (``keep_as_read``: see ``scan_events``).

    Errors (``RegistryError``): unreadable file (also a line with more or fewer fields than
    the header, a comma-separated file, a corrupt Parquet or gzip file), missing required
    column, a value that is not of its column's type (EVENT_AGE, APPROX_EVENT_DAY, SEX,
    FU_END_AGE, ...), an age below 0 or above 130, duplicate or missing FINNGENID in the
    people table, a table without rows (the events table may be empty with
    ``allow_empty_events``), SOURCE unknown in most rows, and events of which (almost) none
    belongs to a person of the people table (ids written differently in the two files).
    Warnings (kept in ``Registry.warnings``): extra columns dropped; rows with an unknown or
    missing SOURCE (removed from ``Registry.events``); events of people absent from the
    people table (removed from ``Registry.events``: the people table is the population, so
    a sub-cohort of the events file is fine); optional people columns absent; event rows
    repeated in every column (kept and counted, as FinnGen counts rows as they are).

    >>> reg = load_registry("events.tsv.gz", "people.tsv")        # doctest: +SKIP
    >>> for w in reg.warnings: print(w)                           # doctest: +SKIP
    """
    ev = _scan(events_path, "events", keep_as_read=keep_as_read)
    pp = _scan(people_path, "people")
    diags: list[Diagnostic] = []
    for scan in (ev, pp):
        if scan.extra:
            diags.append(Diagnostic.warning(EP_EXTRA_COLUMNS, (
                f"{scan.table} file {scan.file}: ignoring {len(scan.extra)} extra column"
                f"{'s' if len(scan.extra) > 1 else ''}: {_listing(scan.extra)}")))
        for col in scan.defaulted:
            diags.append(Diagnostic.warning(EP_DEFAULTED_COLUMN, (
                f"people file {scan.file} has no column {col}; it is treated as missing for everyone")))

    # One aggregate pass per table; the per-SOURCE grouping doubles as the unknown-SOURCE check.
    ev_schema = ev.raw.collect_schema()
    source = _text(pl.col("SOURCE"), ev_schema["SOURCE"])
    events_q = (ev.raw.group_by(source.alias("SOURCE"))
                .agg(pl.len().alias("rows"), *_problem_counts(ev)))
    person_id = _text(pl.col("FINNGENID"), pp.raw.collect_schema()["FINNGENID"])
    people_q = pp.raw.select(
        pl.len().alias("rows"),
        person_id.null_count().alias("null_ids"),
        person_id.n_unique().alias("unique_ids"),   # counts null as one value
        *_problem_counts(pp),
        # reads every column, so that a corrupt one fails here
        _row_hash(pp.raw).max().alias("every column"),
    )
    ids = pp.normalised.select("FINNGENID").unique()
    # events keep FINNGENID as read (see `_scan`): "NA" and "" are a missing id there too
    missing_id = is_missing_text(pl.col("FINNGENID"))
    orphans_q = (ev.normalised.select("FINNGENID")
                 .join(ids, on="FINNGENID", how="anti", nulls_equal=False)
                 .select(pl.len().alias("rows"),
                         missing_id.sum().alias("null_ids"),
                         pl.col("FINNGENID").filter(~missing_id).n_unique().alias("people")))
    ragged = [e for scan in (ev, pp) if (e := _ragged_error(scan))]
    if ragged:
        # fields shifted into other columns: no other statistic of the file can be trusted
        raise RegistryError(ragged[0].message, file=ragged[0].file, code=EP_UNREADABLE, also=tuple(ragged[1:]))
    ev_stats, repeats = _collect((ev,), events_q, _repeated_hashes(ev))
    (people_stats,) = _collect((pp,), people_q)
    (orphans,) = _collect((ev, pp), orphans_q)

    n_events = int(ev_stats["rows"].sum())
    pp_row = people_stats.row(0, named=True)
    errors = [*_value_errors(ev, lambda c: int(ev_stats[c].sum())), *_id_errors(pp, pp_row),
              *_value_errors(pp, lambda c: int(pp_row[c]))]
    if not n_events and not allow_empty_events:
        errors.append(RegistryError(
            f"events file {ev.file} has no rows: everyone would be a control; "
            "allow an empty events table explicitly if that is meant (--allow-empty-events)",
            file=ev.file, code=EP_EMPTY_TABLE))
    if not pp_row["rows"]:
        errors.append(RegistryError(
            f"people file {pp.file} has no rows: the population is empty",
            file=pp.file, code=EP_EMPTY_TABLE))

    unknown = (ev_stats.filter(~pl.col("SOURCE").is_in(KNOWN_SOURCES) | pl.col("SOURCE").is_null())
               .sort("rows", "SOURCE", descending=[True, False], nulls_last=True))
    unknown_rows = int(unknown["rows"].sum())
    as_source = _ids_that_are_sources(ev) if unknown_rows * 2 > n_events else 0
    swapped = as_source * 2 > n_events
    if unknown_rows * 2 > n_events:
        why = (f"columns FINNGENID and SOURCE look swapped: FINNGENID holds a SOURCE label in "
               f"{_rows(as_source)}" if swapped else
               f"is it a FinnGen detailed longitudinal table? known SOURCE values: {', '.join(KNOWN_SOURCES)}")
        errors.append(RegistryError(
            f"events file {ev.file}: column SOURCE is unknown in {unknown_rows} of {_rows(n_events)} "
            f"(more than half), with {_unknown_sources(unknown, swapped)}; {why}",
            file=ev.file, column="SOURCE", code=EP_MOSTLY_UNKNOWN_SOURCE))
    o = orphans.row(0, named=True)
    matched = n_events - o["rows"]
    if n_events and pp_row["rows"] and not swapped and matched < _MIN_MATCHED_SHARE * n_events:
        belong = (f"none of its {_rows(n_events, 'event')} belongs" if not matched else
                  f"only {matched} of its {_rows(n_events, 'event')} (under 1%) belong")
        errors.append(RegistryError(
            f"events file {ev.file}: {belong} to a person of people file {pp.file} (column "
            f"FINNGENID); do the two files write ids the same way? events: {_id_shape(ev)}; "
            f"people: {_id_shape(pp)}",
            file=ev.file, column="FINNGENID", code=EP_UNMATCHED_IDS))
    if errors:
        raise RegistryError(errors[0].message, file=errors[0].file, column=errors[0].column,
                            code=errors[0].code, also=tuple(errors[1:]))

    events = ev.normalised
    if unknown_rows:
        events = events.filter(pl.col("SOURCE").is_in(KNOWN_SOURCES))
        diags.append(Diagnostic.warning(EP_UNKNOWN_SOURCE, (
            f"events file {ev.file}: column SOURCE has unknown values in {_rows(unknown_rows)}, "
            f"which {'is' if unknown_rows == 1 else 'are'} ignored: {_unknown_sources(unknown, swapped=False)}"),
            None, f"known SOURCE values: {', '.join(KNOWN_SOURCES)}"))
    if o["rows"]:
        # Dropped here rather than left to the engine, which would report them a second time.
        events = events.filter(pl.col("FINNGENID").is_in(
            pp.normalised.select(pl.col("FINNGENID").drop_nulls().unique()).collect()["FINNGENID"].implode()))
        if o["people"]:
            no_id = f", {o['null_ids']} of them without a FINNGENID" if o["null_ids"] else ""
            whose = (f"of {o['people']} {'person' if o['people'] == 1 else 'people'} not in people "
                     f"file {pp.file}{no_id}")
        else:
            whose = "without a FINNGENID"
        diags.append(Diagnostic.warning(EP_UNKNOWN_PERSON, (
            f"events file {ev.file}: {_rows(o['rows'], 'event')} {whose} (column FINNGENID); "
            "they are ignored"),
            None, "the people file defines the population: a sub-cohort of the events file is fine"))
    if repeats.height:
        if n := _exact_repeats(ev, repeats["hash"].unique()):
            diags.append(Diagnostic.warning(EP_REPEATED_ROWS, (
                f"events file {ev.file}: {_rows(n)} repeat an earlier row in every column; they are "
                "kept and each is counted as an event, as FinnGen counts rows as they are"),
                None, "remove them first if they are copies made by an extraction: they add to "
                      "`min` counts"))

    return Registry(events=events, people=pp.normalised,
                    warnings=tuple(d.message for d in diags), diagnostics=tuple(diags))


# --- checks ----------------------------------------------------------------------------

def _collect(scans: tuple[_Scan, ...], *queries: pl.LazyFrame) -> list[pl.DataFrame]:
    """`queries`, which read the files of `scans`, collected together; a failure is theirs.

    The checks are collected one file at a time (the orphans' join of both files once each
    has been read in full), so that a failure names its file without running anything
    again: in a `collect_all` over two files, a query cancelled by the other file's failure
    can panic a thread of Polars' streaming executor, after which a later query may never
    return."""
    try:
        return pl.collect_all(queries)
    except _READ_ERRORS as exc:
        if len(scans) == 1:
            raise _unreadable(scans[0].file, scans[0].table, scans[0].fmt, exc) from exc
        raise _unreadable(" or ".join(s.file for s in scans), "", "", exc) from exc


def _ragged_error(scan: _Scan) -> RegistryError | None:
    """For a TSV: the error for lines with another number of fields than the header, if any."""
    if scan.fmt == "parquet":
        return None
    width = len(scan.raw.collect_schema())
    line = pl.col("line")
    fields = pl.when(line == "").then(0).otherwise(line.str.count_matches("\t", literal=True) + 1)
    # The reader does not split a quoted field at a tab in it: such lines are left to it.
    ragged = (fields != width) & ~line.str.contains('"', literal=True)
    (lines,) = _collect((scan,), pl.scan_lines(scan.file).with_row_index("number", offset=1).filter(ragged)
                        .select(pl.len().alias("lines"), pl.col("number").first(), fields.first().alias("fields")))
    n, number, fields = lines.row(0)
    if not n:
        return None
    others = f" ({n - 1} more line{'s' if n > 2 else ''} too)" if n > 1 else ""
    has = "is empty" if not fields else f"has {fields} field{'s' if fields != 1 else ''}"
    return RegistryError(
        f"{scan.table} file {scan.file}: line {number} {has} where the header line has "
        f"{width}{others}; every line needs one tab-separated value per "
        "column (\"NA\" or empty for a missing one)",
        file=scan.file, code=EP_UNREADABLE)


def _value_errors(scan: _Scan, count) -> list[RegistryError]:
    """EP503 and EP512 errors of `scan`; `count(key)` is a count of `_problem_counts`."""
    return ([_bad_value_error(scan, col, n) for col in scan.bad if (n := count(col))]
            + [_impossible_age_error(scan, col, n) for col in scan.impossible
               if (n := count(_impossible_key(col)))])


def _problem_counts(scan: _Scan) -> list[pl.Expr]:
    return [*(e.sum().alias(c) for c, e in scan.bad.items()),
            *(e.sum().alias(_impossible_key(c)) for c, e in scan.impossible.items())]


def _impossible_key(column: str) -> str:
    return f"{column} impossible"


def _ids_that_are_sources(scan: _Scan) -> int:
    """How many rows have a SOURCE label as FINNGENID (FINNGENID and SOURCE swapped)."""
    ids = _text(pl.col("FINNGENID"), scan.raw.collect_schema()["FINNGENID"])
    try:
        return int(scan.raw.select(ids.is_in(KNOWN_SOURCES).sum()).collect().item())
    except _READ_ERRORS as exc:
        raise _unreadable(scan.file, scan.table, scan.fmt, exc) from exc


# A large odd constant (2^64 / golden ratio) to mix one column's hash into the next.
_MIX = 0x9E3779B97F4A7C15


def _row_hash(frame: pl.LazyFrame) -> pl.Expr:
    # Per-column hashes folded into one: at 4.5e7 events 10 s, against 23 s for the hash of
    # a struct of every column. A column's own seed tells values moved between columns apart.
    names = frame.collect_schema().names()
    return functools.reduce(lambda acc, h: acc * _MIX ^ h,
                            (pl.col(name).hash(seed=i) for i, name in enumerate(names)))


def _rows_to_compare(scan: _Scan) -> tuple[pl.LazyFrame, pl.Expr, pl.Expr]:
    """(rows, a hash of a row, its distinct count) for finding rows equal in every column.

    A TSV's rows are compared as lines of text, without parsing them (9 s of CPU at 4.5e7
    events against 21 s; "NA" and an empty field then differ). A Parquet table's rows are
    hashed column by column, which reads and decodes every column once, so that a corrupt
    one fails here rather than in an evaluation."""
    if scan.fmt == "parquet":
        return scan.raw, _row_hash(scan.raw), pl.struct(pl.all()).n_unique()
    line = pl.col("line")
    return pl.scan_lines(scan.file).slice(1), line.hash(), line.n_unique()


def _repeated_hashes(scan: _Scan) -> pl.LazyFrame:
    """The row hashes equal to the previous one in sorted order: one per repeated row.

    Sorting 8 bytes a row is light (0.7 GB at 4.5e7 events) against counting distinct
    rows, or distinct hashes, in a hash table (15 GB and 2 GB)."""
    rows, row_hash, _ = _rows_to_compare(scan)
    h = pl.col("hash")
    return rows.select(row_hash.alias("hash")).sort("hash").filter(h == h.shift())


def _exact_repeats(scan: _Scan, hashes: pl.Series) -> int:
    # Two different rows may share a hash (about one chance in 600 at 2.5e8 events): count
    # again, comparing whole rows, among the few rows whose hash repeats.
    rows, row_hash, distinct = _rows_to_compare(scan)
    try:
        return int(rows.filter(row_hash.is_in(hashes.implode())).select(pl.len() - distinct).collect().item())
    except _READ_ERRORS as exc:
        raise _unreadable(scan.file, scan.table, scan.fmt, exc) from exc


def _id_errors(scan: _Scan, row: dict) -> list[RegistryError]:
    errors = []
    if row["null_ids"]:
        errors.append(RegistryError(
            f"people file {scan.file}: column FINNGENID is missing in {_rows(row['null_ids'])}; "
            "every person needs an id",
            file=scan.file, column="FINNGENID", code=EP_MISSING_ID))
    distinct = row["unique_ids"] - (1 if row["null_ids"] else 0)
    if duplicates := row["rows"] - row["null_ids"] - distinct:
        errors.append(RegistryError(
            f"people file {scan.file}: column FINNGENID is not unique ({duplicates} "
            f"row{'s' if duplicates > 1 else ''} repeat an id already listed); "
            "the people table must have one row per person",
            file=scan.file, column="FINNGENID", code=EP_DUPLICATE_ID))
    return errors


def _unknown_sources(unknown: pl.DataFrame, swapped: bool) -> str:
    """"2 distinct values: A (3 rows), (missing) (1 row)", or their number only."""
    labels = [s for s in unknown["SOURCE"] if s is not None]
    values = f"{len(unknown)} distinct value{'s' if len(unknown) > 1 else ''}"
    if swapped or len(labels) > _MAX_SOURCES_LISTED or not all(_SOURCE_LABEL.fullmatch(s) for s in labels):
        return (f"{values} (not listed: values are listed only when they are at most "
                f"{_MAX_SOURCES_LISTED} short upper-case words)")
    return f"{values}: " + _listing(f"{'(missing)' if s is None else s} ({_rows(n)})"
                                    for s, n in unknown.select("SOURCE", "rows").iter_rows())


def _id_shape(scan: _Scan) -> str:
    """How a file writes FINNGENID, in words that show no id: type, digits or not, length."""
    dtype = scan.raw.collect_schema()["FINNGENID"]
    stored = "text" if dtype == pl.String else str(dtype)
    ids = _text(pl.col("FINNGENID"), dtype).drop_nulls()
    try:
        shape = scan.raw.select(ids.str.contains(r"^[0-9]+$").mean().alias("digits"),
                                ids.str.len_chars().min().alias("shortest"),
                                ids.str.len_chars().max().alias("longest")).collect().row(0, named=True)
    except _READ_ERRORS:
        return f"stored as {stored}"
    if shape["digits"] is None:
        return f"stored as {stored}, no id at all"
    digits = ("digits only" if shape["digits"] == 1 else "not digits only" if shape["digits"] == 0
              else f"{round(100 * shape['digits'])}% digits only")
    lengths = (f"{shape['shortest']}" if shape["shortest"] == shape["longest"]
               else f"{shape['shortest']} to {shape['longest']}")
    return f"stored as {stored}, {digits}, {lengths} characters long"


def _rows(n: int, noun: str = "row") -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


# --- reading ---------------------------------------------------------------------------

def as_read(column: str) -> str:
    """The name of text column `column`'s values as read (see ``scan_events``)."""
    return f"{column} (as read)"


def _scan(path: str | os.PathLike[str], table: str, *, keep_as_read: bool = False,
          read: tuple[pl.LazyFrame, str] | None = None) -> _Scan:
    file = str(path)
    raw, fmt = read or _read_raw(Path(path), file, table)
    try:
        schema = raw.collect_schema()
    except _READ_ERRORS as exc:
        raise _unreadable(file, table, fmt, exc) from exc
    names = list(schema.names())
    if table == "events":
        required, order, kinds, defaulted_cols = REQUIRED_EVENT_COLUMNS, _EVENT_ORDER, _EVENT_KINDS, ()
    else:
        required, order, kinds, defaulted_cols = (REQUIRED_PEOPLE_COLUMNS, _PEOPLE_ORDER, _PEOPLE_KINDS,
                                                  _DEFAULTED_PEOPLE_COLUMNS)
    if fmt != "parquet" and any(_CONTROL_CHARACTER.search(n) for n in names):
        raise RegistryError(
            f"{table} file {file} is not a TSV, TSV.gz or Parquet table: its first line holds "
            "binary data", file=file, code=EP_UNREADABLE)
    if fmt != "parquet" and len(names) == 1 and (separator := _other_separator(names[0])):
        raise RegistryError(
            f"{table} file {file} is {separator}-separated, not tab-separated; registry tables are "
            "TSV, TSV.gz or Parquet: save it with tabs between the values",
            file=file, code=EP_UNREADABLE)
    missing = [c for c in required if c not in schema]
    if missing:
        raise RegistryError(
            f"{table} file {file}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; {_header_description(names, fmt)}",
            file=file, column=missing[0], code=EP_MISSING_COLUMN)

    exprs: list[pl.Expr] = []
    bad: dict[str, pl.Expr] = {}
    impossible: dict[str, pl.Expr] = {}
    defaulted: list[str] = []
    for name in order:
        kind = kinds[name]
        if name not in schema:
            if name in defaulted_cols:
                defaulted.append(name)
                exprs.append(pl.lit(None, dtype=_DTYPES[kind]).alias(name))
            continue
        if table == "events" and name == "FINNGENID" and schema[name] == pl.String:
            # Passed through untouched ("NA" stays a string, matching no person): a filter on
            # a plain column reaches the Parquet reader, which skips the row groups whose
            # statistics exclude a person range (how person buckets read only their rows).
            exprs.append(pl.col(name))
            continue
        value, bad_expr = _convert(pl.col(name), schema[name], kind, file=file, table=table, name=name)
        exprs.append(value.alias(name))
        if bad_expr is not None:
            bad[name] = bad_expr
        if name in _AGE_COLUMNS:
            impossible[name] = ((value < 0) | (value > _MAX_AGE)).fill_null(False)
        if keep_as_read and kind == "text" and name != "FINNGENID":
            exprs.append(_as_text(pl.col(name), schema[name]).alias(as_read(name)))
    extra = tuple(n for n in names if n not in kinds)
    return _Scan(file=file, table=table, fmt=fmt, raw=raw, normalised=raw.select(exprs), bad=bad,
                 impossible=impossible, extra=extra, defaulted=tuple(defaulted))


def _header_description(names: list[str], fmt: str) -> str:
    if all(_looks_like_column_name(n) for n in names):
        # Header names are not person-level data, so listing them is safe and helps most.
        return f"the file has columns: {_listing(names) or '(none)'}"
    if fmt == "parquet":
        return f"its {len(names)} column names do not look like column names"
    # Its first line is then a person's row: naming its cells would print the person's data.
    return ("its first line does not look like a header line (values stand where column names "
            "belong): the file seems to have no header line")


def _looks_like_column_name(name: str) -> bool:
    return (bool(_COLUMN_NAME.fullmatch(name)) and name.upper() not in _NOT_COLUMN_NAMES
            and not _DIGIT_RUN.search(name))


def _other_separator(line: str) -> str | None:
    """The name of the separator of a one-column 'header' when it is not a tab (a CSV, ...)."""
    counts = {name: line.count(char) for char, name in _OTHER_SEPARATORS.items()}
    best = max(counts, key=counts.__getitem__)
    # a table of the registry has at least three columns
    return best if counts[best] >= 2 else None


def _read_raw(path: Path, file: str, table: str) -> tuple[pl.LazyFrame, str]:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise _unreadable(file, table, "", exc) from exc
    if not magic:
        raise RegistryError(f"{table} file {file} is empty: it has not even a header line",
                            file=file, code=EP_EMPTY_TABLE)
    fmt = "parquet" if magic == b"PAR1" else "gzip" if magic[:2] == b"\x1f\x8b" else "tsv"
    try:
        if fmt == "parquet":
            return pl.scan_parquet(path), fmt
        # Everything as text: codes keep leading zeros, and types are decided here, not guessed.
        # scan_csv recognises gzip by its magic bytes and decompresses it in memory.
        return pl.scan_csv(path, separator="\t", infer_schema=False, null_values=list(_NA_STRINGS),
                           encoding="utf8"), fmt
    except _READ_ERRORS as exc:
        raise _unreadable(file, table, fmt, exc) from exc


def _unreadable(file: str, table: str, fmt: str, exc: BaseException) -> RegistryError:
    # The library's message may quote a line of the file, i.e. a person's data: leave it in
    # __cause__ for debugging and say only what kind of failure it was.
    code = EP_UNREADABLE
    if isinstance(exc, FileNotFoundError):
        what = "does not exist"
    elif isinstance(exc, IsADirectoryError):
        what = "is a folder, not a file"
    elif isinstance(exc, PermissionError):
        what = "cannot be opened: permission denied"
    elif isinstance(exc, pl.exceptions.NoDataError):
        what, code = "is empty: it has not even a header line", EP_EMPTY_TABLE
    elif fmt == "parquet":
        what = "is a Parquet file that cannot be read: it is truncated or corrupt"
    elif fmt == "gzip" and isinstance(exc, OSError):
        what = "is gzip-compressed but cannot be decompressed: it is truncated or corrupt"
    elif re.search(r"utf-?8", str(exc), re.IGNORECASE):
        what = "is not UTF-8 text: save it as UTF-8"
    else:
        what = ("cannot be read as a TSV, TSV.gz or Parquet table: check that it is tab-separated "
                "with a header line and the same number of fields on every line")
    return RegistryError(f"{table + ' file ' if table else ''}{file} {what} ({type(exc).__name__})",
                         file=file, code=code)


# --- normalisation ---------------------------------------------------------------------

def _as_text(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return col if dtype == pl.String else col.cast(pl.String)


def _is_na(col: pl.Expr) -> pl.Expr:
    # equalities, not is_in: 20% cheaper on the 2.5e8 strings of a key column
    return functools.reduce(operator.or_, (col == na for na in _NA_STRINGS))


def normalise_text(col: pl.Expr) -> pl.Expr:
    """A text column with "NA"/"" as null (also for Parquet, which keeps them as strings)."""
    return pl.when(_is_na(col)).then(None).otherwise(col)


def is_missing_text(col: pl.Expr) -> pl.Expr:
    """Whether a text column's value is missing: null, "NA" or ""."""
    return col.is_null() | _is_na(col)


def _text(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Any column as text with "NA"/"" as null."""
    return normalise_text(_as_text(col, dtype))


def _convert(col: pl.Expr, dtype: pl.DataType, kind: str, *, file: str, table: str,
             name: str) -> tuple[pl.Expr, pl.Expr | None]:
    """(normalised value, bool expr true where a present value could not be converted)."""
    if dtype == pl.Null:  # a Parquet column written without a single value
        return col.cast(_DTYPES[kind]), None
    if kind == "text":
        # lists, structs and bytes have no text form to compare with a code
        if not (dtype.is_nested() or dtype == pl.Binary or dtype == pl.Object):
            return _text(col, dtype), None
    is_text = dtype == pl.String or dtype == pl.Categorical or isinstance(dtype, pl.Enum)
    if kind == "sex":
        if is_text:
            s = _text(col, dtype).str.strip_chars().str.to_lowercase()
            value = (pl.when(s.is_in(("female", "2"))).then(pl.lit("female"))
                     .when(s.is_in(("male", "1"))).then(pl.lit("male")))
            return value, s.is_not_null() & value.is_null()
        if dtype.is_integer() or dtype.is_float():
            value = pl.when(col == 2).then(pl.lit("female")).when(col == 1).then(pl.lit("male"))
            return value, col.is_not_null() & value.is_null()
    elif kind == "date":
        if is_text:
            s = _text(col, dtype).str.strip_chars()
            value = s.str.to_date(_DATE_FORMAT, strict=False)
            return value, s.is_not_null() & value.is_null()
        if dtype == pl.Date:
            return col, None
        if isinstance(dtype, pl.Datetime):
            return col.dt.date(), None
    elif kind in ("float", "int"):
        if is_text:
            number = _text(col, dtype).str.strip_chars().cast(pl.Float64, strict=False)
            present = _text(col, dtype).is_not_null()
        elif dtype.is_integer() or dtype.is_float() or dtype == pl.Boolean:
            number = col.cast(pl.Float64)
            present = col.is_not_null()
        else:
            number = None
        if number is not None:
            ok = number.is_finite()
            if kind == "int":
                ok = ok & (number == number.floor())
                value = pl.when(ok).then(number).cast(pl.Int64)
            else:
                value = pl.when(ok).then(number)
            return value, present & ~ok.fill_null(False)
    raise RegistryError(
        f"{table} file {file}: column {name} is stored as {dtype}, expected {_EXPECTED[kind]}",
        file=file, column=name, code=EP_BAD_TYPE)


def _bad_value_error(scan: _Scan, col: str, n: int) -> RegistryError:
    kind = (_EVENT_KINDS if scan.table == "events" else _PEOPLE_KINDS)[col]
    return RegistryError(
        f"{scan.table} file {scan.file}: column {col} has {n} value{'s' if n > 1 else ''} "
        f"that {'are' if n > 1 else 'is'} not {_EXPECTED[kind]} (\"NA\" or empty mean missing)",
        file=scan.file, column=col, code=EP_BAD_VALUE)


def _impossible_age_error(scan: _Scan, col: str, n: int) -> RegistryError:
    return RegistryError(
        f"{scan.table} file {scan.file}: column {col} has {n} value{'s' if n > 1 else ''} "
        f"that {'are' if n > 1 else 'is'} not a possible age (below 0 or above {_MAX_AGE})",
        file=scan.file, column=col, code=EP_IMPOSSIBLE_AGE)


def _listing(items) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")
