"""The run manifest: what one `endpointc run` was made from and what it wrote.

`run` writes ``manifest.json`` beside its results in the same all-or-nothing commit as
them (`results.write_results(manifest=...)`), so a manifest always describes the files
beside it, never an older or half-written set:

- ``tool``: endpointc's version and build (a sha256 of the package's sources), Python's
  and Polars' versions;
- ``inputs``: the events and people tables (path as given, size, sha256, rows) and every
  definition file (path, size, sha256); a Spark run hashes a table only where it is one
  file on this machine, and says why when it did not (``not_hashed``);
- ``command`` (the command line) and the ``options`` that shape the outputs;
- ``endpoints``: per endpoint written, its definition hash (`definition_hashes`) and
  whether it was ``computed`` or ``reused`` from an earlier run (`endpointc.reuse`);
- ``registry``: the check of the registry tables, made by this run or taken with the
  results it reused;
- ``outputs``: every other file written, with its size and sha256 (a Spark run's
  endpoints.parquet: each part file, hashed where the output folder is on this machine);
- ``spark``: with ``--engine spark``, PySpark's version, the master, the application and
  the bucket count (null otherwise);
- ``timings`` per stage and ``warnings`` (text only: never a person-level value).

The JSON Schema of the file is docs/manifest.schema.json, made from `Manifest` by
`json_schema`; docs/manifest.md describes the fields and the versioning policy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .masking import MASK_THRESHOLD
from .plan import Program
from .registry import Registry, scan_events, scan_people
from .results import MANIFEST_FILE

__all__ = [
    "SCHEMA_VERSION", "MANIFEST_FILE", "FileRecord", "TableRecord", "Tool", "Inputs",
    "RunOptions", "EndpointRecord", "ReuseRecord", "RegistryWarning", "RegistryCheck", "OutputRecord", "SparkRecord",
    "Timings",
    "Manifest", "ManifestError", "RunRecord", "definition_hashes", "file_record", "tool_info", "read_manifest",
    "json_schema", "run_summary",
]

# Raised when a field changes meaning or goes away (docs/manifest.md); endpointc reuses
# results only from manifests of this version.
SCHEMA_VERSION = 1
# Part of every definition hash: when what the hash covers changes, old hashes can never
# equal new ones.
_HASH_FORMAT = b"endpointc definition hash 1"
# Where a plan was written, not what it means: left out of the definition hash.
_NOT_MEANING = {"span": True, "rules": {"__all__": {"span": True}}}
_CHUNK = 1 << 20
_SHA256 = r"^[0-9a-f]{64}$"
_NOT_HASHED = "why sha256 is null (only on Spark); null when it is not"


class _Frozen(BaseModel):
    # fields are added without a new schema_version (docs/manifest.md): a reader ignores
    # the ones it does not know
    model_config = ConfigDict(frozen=True, extra="ignore")


class FileRecord(_Frozen):
    """An input file: its path as given on the command line, size and sha256."""

    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=_SHA256)


class _Hashed(_Frozen):
    """A record whose sha256 may be missing (only on Spark), never guessed: then
    ``not_hashed`` says why."""

    @model_validator(mode="after")
    def _says_why(self):
        if (self.sha256 is None) != (self.not_hashed is not None):
            raise ValueError("sha256 is null exactly when not_hashed says why")
        if self.size is None and self.sha256 is not None:
            raise ValueError("a hashed file has a size")
        return self


class TableRecord(_Hashed):
    """A registry table: its path as given, size and sha256, and the number of rows endpointc
    reads from it. The local engine hashes every table; a Spark run only a table that is
    one file on this machine (not one on a cluster's file system, nor a folder of part
    files), and there size and sha256 are null and ``not_hashed`` says why."""

    path: str
    size: int | None = Field(ge=0)
    sha256: str | None = Field(pattern=_SHA256)
    rows: int = Field(ge=0)
    not_hashed: str | None = Field(default=None, description=_NOT_HASHED)


class Tool(_Frozen):
    """What made the results. ``build`` is a sha256 of the package's source files: two
    installs with equal builds compute the same results."""

    endpointc: str
    build: str = Field(pattern=_SHA256)
    python: str
    polars: str


class Inputs(_Frozen):
    events: TableRecord
    people: TableRecord
    definitions: tuple[FileRecord, ...]


class RunOptions(_Frozen):
    """The options of the run that shape its outputs (``endpoints``: the selection, null
    for all; ``mask_threshold``: null with --no-mask; ``reuse``: the folder given to
    --reuse)."""

    endpoints: tuple[str, ...] | None = None
    mask_threshold: int | None = MASK_THRESHOLD
    wide: bool = False
    buckets: str = "auto"
    allow_empty_events: bool = False
    reuse: str | None = None


class EndpointRecord(_Frozen):
    definition_hash: str = Field(pattern=_SHA256)
    status: Literal["computed", "reused"]


class ReuseRecord(_Frozen):
    """What --reuse took: from which folder, how many endpoints; ``note`` says why the
    earlier run could not be used (null when it could)."""

    previous: str
    reused: int = Field(ge=0)
    computed: int = Field(ge=0)
    note: str | None = None


class RegistryWarning(_Frozen):
    """A warning of the registry check, as `load_registry` gives it (no person-level
    values); ``code`` is null when the registry came without its diagnostics."""

    code: str | None
    message: str


class RegistryCheck(_Frozen):
    """The check of the registry tables (`registry.load_registry`): ``checked`` when this
    run read every row to check them, false when it took the check of the run it reused
    results from, made on the same files by the same build; and its warnings."""

    checked: bool
    warnings: tuple[RegistryWarning, ...]

    @classmethod
    def of(cls, registry: Registry) -> "RegistryCheck":
        """The check this run made."""
        found = ([RegistryWarning(code=d.code, message=d.message) for d in registry.diagnostics]
                 or [RegistryWarning(code=None, message=m) for m in registry.warnings])
        return cls(checked=True, warnings=tuple(found))


class OutputRecord(_Hashed):
    """A file written: its name in the output folder (a Spark run's endpoints.parquet is a
    folder: one record per part file, ``endpoints.parquet/part-...``), size and sha256.
    sha256 is null only for part files that a Spark run wrote to a folder not on this
    machine (``not_hashed`` says so; their size is the file system's)."""

    file: str
    size: int | None = Field(ge=0)
    sha256: str | None = Field(pattern=_SHA256)
    not_hashed: str | None = Field(default=None, description=_NOT_HASHED)


class SparkRecord(_Frozen):
    """The Spark of a `run --engine spark`: PySpark's version, the session's master, its
    application id (where Spark's logs of the run are found) and the person buckets."""

    pyspark: str
    master: str
    application_id: str
    buckets: int = Field(ge=1)


class Timings(_Frozen):
    """Seconds per stage. ``write`` runs until the manifest itself is written. On Spark,
    ``read_registry`` is the pass over the events' keys and the match on the driver,
    ``evaluate`` the buckets, ``write`` the sort, the counts and the hashes."""

    compile: float = Field(ge=0)
    hash_inputs: float = Field(ge=0)
    read_registry: float = Field(ge=0)
    evaluate: float = Field(ge=0)
    write: float = Field(ge=0)


class Manifest(_Frozen):
    """manifest.json: what one `endpointc run` was made from and what it wrote."""

    schema_version: Literal[1]
    created: str = Field(description="UTC time the manifest was written, ISO 8601")
    tool: Tool
    command: tuple[str, ...]
    inputs: Inputs
    options: RunOptions
    endpoints: dict[str, EndpointRecord] = Field(description="every endpoint written, by name")
    reuse: ReuseRecord | None
    registry: RegistryCheck | None = Field(description="null on Spark, which checks the tables' columns and "
                                                       "types, not every value")
    outputs: tuple[OutputRecord, ...]
    spark: SparkRecord | None = Field(default=None, description="with --engine spark; null otherwise")
    timings: Timings
    warnings: tuple[str, ...]


class ManifestError(Exception):
    """A manifest.json that cannot be read as one: missing, not JSON, of another schema
    version, or with fields that do not fit. The message names the file."""


# --- hashing -----------------------------------------------------------------------------

def definition_hashes(program: Program) -> dict[str, str]:
    """Per endpoint, a sha256 of its meaning: its plan and the plans of every endpoint it
    depends on, transitively (codelists are resolved into the plan), without where they
    were written. Comments, layout and metadata never reach the plan, so they do not
    change it; any change of meaning, also in a dependency, does."""
    hashes: dict[str, str] = {}
    for ep in program.endpoints:   # dependency order: every dependency's hash is known
        # its own plan, then each dependency by name and hash: a change anywhere below
        # changes every hash above it
        digest = hashlib.sha256(_HASH_FORMAT)
        digest.update(ep.model_dump_json(exclude=_NOT_MEANING).encode())
        for name in sorted(ep.dependencies):
            digest.update(f"\n{name} {hashes[name]}".encode())
        hashes[ep.name] = digest.hexdigest()
    return hashes


def file_record(path: str | os.PathLike[str]) -> FileRecord:
    """`path` (as given), its size and sha256, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return FileRecord(path=str(path), size=size, sha256=digest.hexdigest())


def _table_record(path: Path, table: str, sha256: str | None = None) -> TableRecord:
    """A registry table's `file_record` (`sha256`: its hash, known already) and its rows as
    endpointc reads them (Parquet: from its metadata). Raises `RegistryError` for a file
    that is no registry table."""
    scan = scan_events if table == "events" else scan_people
    rows = scan(path).select(pl.len()).collect().item()
    found = (file_record(path) if sha256 is None
             else FileRecord(path=str(path), size=os.stat(path).st_size, sha256=sha256))
    return TableRecord(**found.model_dump(), rows=rows)


@functools.lru_cache(maxsize=1)
def tool_info() -> Tool:
    """This endpointc: version, build (sha256 of its .py and .lark files), Python, Polars."""
    from importlib import metadata

    try:
        version = metadata.version("endpointc")
    except metadata.PackageNotFoundError:
        version = "unknown"
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for pattern in ("*.py", "*.lark") for p in package.rglob(pattern)):
        digest.update(f"{path.relative_to(package).as_posix()}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return Tool(endpointc=version, build=digest.hexdigest(), python=platform.python_version(),
                polars=pl.__version__)


# --- gathering a run ---------------------------------------------------------------------

class RunRecord:
    """A manifest gathered while `run` goes: `stage` times each step, `hash_inputs` records
    the inputs, `writer` gives `write_results` what renders the manifest once every other
    output is written (and keeps it as `manifest`). A Spark run (`spark.run`) records the
    definitions with `hash_definitions`, then the tables with `add_tables` and its outputs
    with `render`, as only it can read them."""

    def __init__(self, *, command: Sequence[str], options: RunOptions) -> None:
        self.command = tuple(command)
        self.options = options
        self.tool = tool_info()
        self.definitions: tuple[FileRecord, ...] = ()
        self.inputs: Inputs | None = None
        self.hashes: dict[str, str] = {}
        self.selected: tuple[str, ...] = ()
        self.manifest: Manifest | None = None
        self._timings: dict[str, float] = {}
        self._started: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; a stage entered again adds to its time."""
        self._started[name] = time.perf_counter()
        try:
            yield
        finally:
            self._timings[name] = self._timings.get(name, 0.0) + time.perf_counter() - self._started.pop(name)

    def hash_definitions(self, *, definitions: Sequence[Path], program: Program) -> None:
        """Hash the definition files, and the definitions of the endpoints to write
        (`options.endpoints`, or all)."""
        self.definitions = tuple(file_record(p) for p in definitions)
        self.hashes = definition_hashes(program)
        wanted = self.options.endpoints
        self.selected = tuple(dict.fromkeys(wanted)) if wanted is not None else program.names

    def hash_inputs(self, *, events: Path, people: Path, definitions: Sequence[Path], program: Program,
                    sha256: Mapping[str, str] | None = None) -> None:
        """Hash the registry tables and count their rows, and `hash_definitions`. `sha256`
        gives a table's ("events", "people") hash where it is known to be the file's as it
        is now (an event index checks its registry files when it is opened): that file is
        not read again."""
        known = sha256 or {}
        self.hash_definitions(definitions=definitions, program=program)
        self.add_tables(events=_table_record(events, "events", known.get("events")),
                        people=_table_record(people, "people", known.get("people")))

    def add_tables(self, *, events: TableRecord, people: TableRecord) -> None:
        """The registry tables' records, after `hash_definitions`."""
        self.inputs = Inputs(events=events, people=people, definitions=self.definitions)

    def writer(self, *, registry: RegistryCheck, reused: Collection[str] = (), reuse: ReuseRecord | None = None,
               warnings: Sequence[str] = ()) -> Callable[[Mapping[str, Path]], str]:
        """The `manifest` argument of `write_results`: given the other outputs (name ->
        written file), the text of manifest.json. ``warnings``: the engine's, after the
        registry's."""
        def render(outputs: Mapping[str, Path]) -> str:
            return self.render(tuple(OutputRecord(file=name, **file_record(path).model_dump(exclude={"path"}))
                                     for name, path in sorted(outputs.items())),
                               registry=registry, reused=reused, reuse=reuse, warnings=warnings)
        return render

    def render(self, outputs: Sequence[OutputRecord], *, registry: RegistryCheck | None,
               reused: Collection[str] = (), reuse: ReuseRecord | None = None, warnings: Sequence[str] = (),
               spark: SparkRecord | None = None) -> str:
        """The text of manifest.json describing `outputs` (kept as `manifest`); see `writer`."""
        if self.inputs is None:
            raise RuntimeError("the inputs were not hashed before the manifest was written")
        now = time.perf_counter()
        timings = {**{n: 0.0 for n in Timings.model_fields}, **self._timings,
                   **{n: self._timings.get(n, 0.0) + now - t for n, t in self._started.items()}}
        self.manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            tool=self.tool, command=self.command, inputs=self.inputs, options=self.options,
            endpoints={name: EndpointRecord(definition_hash=self.hashes[name],
                                            status="reused" if name in reused else "computed")
                       for name in sorted(self.selected)},
            reuse=reuse,
            registry=registry,
            outputs=tuple(outputs),
            spark=spark,
            timings=Timings(**{n: round(v, 3) for n, v in timings.items() if n in Timings.model_fields}),
            warnings=(*(w.message for w in (registry.warnings if registry is not None else ())), *warnings),
        )
        return self.manifest.model_dump_json(indent=2) + "\n"


# --- reading -----------------------------------------------------------------------------

def read_manifest(folder: str | os.PathLike[str]) -> Manifest:
    """The manifest.json of `folder`; `ManifestError` if there is none that this endpointc
    can read."""
    path = Path(folder) / MANIFEST_FILE
    if not Path(folder).is_dir():
        raise ManifestError(f"{folder}: no such folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file (results written by `endpointc run` have one)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: cannot be read ({type(error).__name__})") from None
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno})") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{path}: schema_version {json.dumps(version)}; this endpointc reads "
                            f"{SCHEMA_VERSION}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ManifestError(f"{path}: not a valid manifest: {where}: {first['msg']}") from None


def json_schema() -> dict[str, object]:
    """The JSON Schema of manifest.json (docs/manifest.schema.json is this, written out)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Manifest.model_json_schema()}


# --- the summary of `run --json` ---------------------------------------------------------

def run_summary(manifest: Manifest, counts: Sequence[Mapping[str, object]], *, out_dir: str) -> dict[str, object]:
    """What `run --json` prints (the CLI adds its schema_version): the outputs written (a
    Spark run's endpoints.parquet folder once, not its part files), endpoints computed and
    reused, the counts as counts.tsv shows them (masked) and the warnings."""
    statuses = [e.status for e in manifest.endpoints.values()]
    return {
        "out": out_dir,
        "outputs": [MANIFEST_FILE, *dict.fromkeys(o.file.split("/")[0] for o in manifest.outputs)],
        "endpoints": {"computed": statuses.count("computed"), "reused": statuses.count("reused")},
        "reuse": manifest.reuse.model_dump() if manifest.reuse is not None else None,
        "counts": [{k: _shown(v) for k, v in row.items()} for row in counts],
        "warnings": list(manifest.warnings),
        "timings": manifest.timings.model_dump(),
    }


def _shown(value: object) -> object:
    """A count as counts.tsv shows it: a number, or the text of a masked one (`<5`, `masked`)."""
    return int(value) if isinstance(value, str) and value.isdigit() else value
