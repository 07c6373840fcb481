"""Incremental re-runs (`run --reuse PREVIOUS_OUT`): the rows of unchanged endpoints taken
from an earlier run's endpoints.parquet, only the rest computed.

An endpoint's rows are taken only when nothing they depend on can differ:

- PREVIOUS_OUT/manifest.json is readable, of this schema version, and was written by the
  same endpointc build and Polars version;
- the events and people files have the size and sha256 it records;
- PREVIOUS_OUT/endpoints.parquet is the very file it lists (size and sha256), so never a
  file half-written, replaced since or copied in part;
- the endpoint was written there with the same definition hash, which covers every
  endpoint it depends on (`manifest.definition_hashes`).

Everything else is computed: changed and new endpoints, and so everything that depends on
them (their hashes changed with them). The registry check of the earlier run
(`registry.load_registry`, which reads every row) is taken as well, as the files are the
same bytes and the build the same: `ReusePlan.checked_registry`. When a condition of the whole run fails, nothing
is taken and every endpoint is computed, with a `ReuseRecord.note` saying why (the CLI
prints it as a warning): a pipeline's rebuild does not fail for want of a usable earlier
run, and its results are a full run's either way.

Taken and computed rows are merged by endpoint (both sorted by ENDPOINT, FINNGENID, and no
endpoint is in both) into the long table a full run gives; the counts of taken endpoints
are counted from their rows. counts.tsv (masked) and the wide table are then written from
these as in any run, so every output has the bytes of a full run. The options recorded in
the manifest (mask threshold, selection, wide table, buckets) change no endpoint's rows and
are not compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .engine.outputs import Results
from .engine.schema import COUNTS_SCHEMA, LONG_SCHEMA
from .manifest import Manifest, ManifestError, RegistryCheck, ReuseRecord, RunRecord, file_record, read_manifest
from .registry import EP_UNKNOWN_PERSON, EP_UNKNOWN_SOURCE, KNOWN_SOURCES, Registry, scan_events, scan_people
from .results import LONG_FILE, counts_table

__all__ = ["ReusePlan", "plan_reuse"]


@dataclass(frozen=True)
class ReusePlan:
    """Which endpoints of a run are taken from earlier results and which are computed.

    `selection` is the run's own (`--endpoints`, or None for all), what is computed when
    nothing is taken; `record` is None without --reuse."""

    selected: tuple[str, ...]
    selection: tuple[str, ...] | None
    reused: tuple[str, ...] = ()
    long_file: Path | None = None
    record: ReuseRecord | None = None
    # the registry check the earlier run made on the same files, when this run may take it
    registry_check: RegistryCheck | None = None

    @property
    def computed(self) -> tuple[str, ...]:
        taken = set(self.reused)
        return tuple(name for name in self.selected if name not in taken)

    @property
    def note(self) -> str | None:
        return self.record.note if self.record is not None else None

    def checked_registry(self, events: Path, people: Path, *, keep_as_read: bool = False) -> Registry | None:
        """The registry as `load_registry` gives it, without reading every row to check it
        again, when the earlier run checked these very files; else None. As there, events
        of an unknown SOURCE and of people absent from the people table are dropped when
        the check warned of them."""
        if self.registry_check is None:
            return None
        found = {w.code for w in self.registry_check.warnings}
        population = scan_people(people)
        kept = scan_events(events, keep_as_read=keep_as_read)
        if EP_UNKNOWN_SOURCE in found:
            kept = kept.filter(pl.col("SOURCE").is_in(KNOWN_SOURCES))
        if EP_UNKNOWN_PERSON in found:
            ids = population.select(pl.col("FINNGENID").drop_nulls().unique()).collect()["FINNGENID"]
            kept = kept.filter(pl.col("FINNGENID").is_in(ids.implode()))
        return Registry(events=kept, people=population,
                        warnings=tuple(w.message for w in self.registry_check.warnings))

    def results(self, compute: Callable[[Sequence[str] | None], Results], *, people: pl.LazyFrame) -> Results:
        """The run's results: `compute(endpoints)` (an engine's `evaluate` over the
        registry) for what is not taken, merged with the rows taken."""
        if not self.reused:
            return compute(self.selection)
        taken = _long(pl.scan_parquet(self.long_file, glob=False).filter(pl.col("ENDPOINT").is_in(self.reused)))
        # counted once here: the writer and the CLI both read the counts
        taken_counts = counts_table(taken, people, endpoints=self.reused).collect().lazy()
        if not self.computed:
            return Results(long=taken, counts=taken_counts, warnings=())
        fresh = compute(self.computed)
        # no endpoint is on both sides, so merging on ENDPOINT keeps each side's FINNGENID order
        return Results(long=taken.merge_sorted(_long(fresh.long), key="ENDPOINT"),
                       counts=pl.concat([fresh.counts.select(pl.col(c).cast(t) for c, t in COUNTS_SCHEMA.items()),
                                         taken_counts]).sort("ENDPOINT").collect().lazy(),
                       warnings=fresh.warnings)


def plan_reuse(previous: Path | None, record: RunRecord) -> ReusePlan:
    """What of `previous` (a `run --out` folder) this run may take, given its record with
    the inputs hashed (`RunRecord.hash_inputs`)."""
    plan = ReusePlan(selected=record.selected, selection=record.options.endpoints)
    if previous is None:
        return plan

    def nothing(why: str) -> ReusePlan:
        note = f"--reuse {previous}: {why}; computing every endpoint"
        return _with_record(plan, previous, note=note)

    try:
        old = read_manifest(previous)
    except ManifestError as error:
        return nothing(str(error))
    why = _run_differs(old, record) or _long_file_differs(previous, old)
    if why:
        return nothing(why)
    reused = tuple(name for name in record.selected
                   if (was := old.endpoints.get(name)) is not None and was.definition_hash == record.hashes[name])
    return _with_record(dataclasses.replace(plan, reused=reused, long_file=Path(previous) / LONG_FILE,
                                            registry_check=_taken_check(old, record)), previous)


def _taken_check(old: Manifest, record: RunRecord) -> RegistryCheck | None:
    """The earlier run's check of these same registry files, unless this run's could end
    otherwise (an empty events table allowed there and not here) or its warnings lack the
    codes that say which rows it dropped."""
    refused = old.inputs.events.rows == 0 and old.options.allow_empty_events and not record.options.allow_empty_events
    if refused or any(w.code is None for w in old.registry.warnings):
        return None
    return old.registry.model_copy(update={"checked": False})


def _with_record(plan: ReusePlan, previous: Path, *, note: str | None = None) -> ReusePlan:
    record = ReuseRecord(previous=str(previous), reused=len(plan.reused), computed=len(plan.computed), note=note)
    return dataclasses.replace(plan, record=record)


def _run_differs(old: Manifest, record: RunRecord) -> str | None:
    """Why no endpoint of `old` can be taken into this run: another build or registry."""
    if old.spark is not None:
        return ("its results were made on Spark (endpoints.parquet is a folder of part files), "
                "which --reuse does not read")
    tool = record.tool
    if (old.tool.endpointc, old.tool.build, old.tool.polars) != (tool.endpointc, tool.build, tool.polars):
        return (f"its results were made by another endpointc or Polars (endpointc {old.tool.endpointc}, "
                f"build {old.tool.build[:12]}, Polars {old.tool.polars}; this is endpointc {tool.endpointc}, "
                f"build {tool.build[:12]}, Polars {tool.polars})")
    for table in ("events", "people"):
        was, now = getattr(old.inputs, table), getattr(record.inputs, table)
        if (was.size, was.sha256) != (now.size, now.sha256):
            return (f"the {table} file {now.path} is not the one its results were made from "
                    f"({was.path}, sha256 {was.sha256[:12]}, this one {now.sha256[:12]})")
    return None


def _long_file_differs(previous: Path, old: Manifest) -> str | None:
    listed = next((o for o in old.outputs if o.file == LONG_FILE), None)
    path = Path(previous) / LONG_FILE
    if listed is None:
        return f"its manifest lists no {LONG_FILE}"
    try:
        found = file_record(path)
    except OSError as error:
        return f"{path} cannot be read ({type(error).__name__})"
    if (found.size, found.sha256) != (listed.size, listed.sha256):
        return f"{path} is not the file its manifest describes (size or sha256 differ: changed since?)"
    return None


def _long(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.select(pl.col(c).cast(t) for c, t in LONG_SCHEMA.items())
