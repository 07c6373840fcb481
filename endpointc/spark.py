"""endpointc on Apache Spark: the compiled program's person buckets run by Spark executors.

Registries held by a Spark platform (Databricks, Dataproc, EMR, on-premises Hadoop) are
evaluated there with the Polars engine's own code (engine/distributed.py), not a second
implementation of the semantics:

1. the match stage once, on the driver: Spark counts the distinct event keys (a
   group-by on the key columns, as read), the driver collects them (keys are codes, not
   people: 3e5 for DF12 on FinnGen) and prepares the program on them; the result is
   broadcast to the executors;
2. each person is given a bucket, a hash of FINNGENID modulo the bucket count; the
   events (only the columns a bucket reads) and the people are grouped by bucket and
   each bucket's pair of Arrow tables goes to one Python call on an executor
   (`cogroup(...).applyInArrow`), which normalises them as the registry reader does and
   evaluates them with the engine's bucket evaluation, returning the bucket's rows of
   the long table;
3. the counts are a Spark aggregation of those rows, and the rows of events whose person
   is not in the people table a Spark anti-join: nothing person-level reaches the driver.

The long table has the local engine's rows; `run` writes it in the same order.
docs/spark.md says how this scales and how to run it on a cluster; `run` is `endpointc
run --engine spark`.

`run` writes manifest.json too, in the same commit as the results (`manifest.RunRecord`):
the tables are hashed where each is one file on the driver's machine, the outputs where
the output folder is there; elsewhere the manifest says they were not, and why.

Not done on Spark: `load_registry`'s checks of every value (a cluster's tables are
written by pipelines of their own; the column names and types are checked as the
registry reader checks them), and the wide and release outputs of `endpointc run`.

>>> results = evaluate(program, spark.read.parquet("events"), spark.read.parquet("people"))  # doctest: +SKIP
>>> results.counts.show()                                                                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from .engine.distributed import (
    PEOPLE_COLUMNS, bucket_columns, bucket_long, key_pass_columns, normalised, prepare_counted,
)
from .engine.outputs import combine_warnings
from .engine.prepare import Prepared
from .engine.schema import LONG_SCHEMA
from .manifest import OutputRecord, RunRecord, SparkRecord, TableRecord, file_record
from .masking import MASK_THRESHOLD, check_threshold
from .plan import Program
from .registry import EP_UNREADABLE, RegistryError
from .results import COUNTS_FILE, LONG_FILE, MANIFEST_FILE, counts_text

if TYPE_CHECKING:   # the `spark` extra is imported where it is used: this module imports without it
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkTable", "SparkResults", "RunOutcome", "SparkUnavailable", "EVENTS_PER_BUCKET",
           "read_table", "evaluate", "counts_frame", "session", "run", "spark_errors", "error_kind",
           "redacted_command"]

# Events per bucket when the count is left to `evaluate`. A bucket is one Python call
# holding its events as Arrow and Polars tables: with DF12, 5.1e5 events peaked at 0.44 GB
# and 9.3e5 at 0.58 GB (benchmarks/spark.py), about 0.3 GB fixed and 0.33 KB an event, so
# smaller buckets save little memory and each adds a fixed cost. Executors need about
# this much memory overhead per core (docs/spark.md).
EVENTS_PER_BUCKET = 1_000_000
_BUCKET = "_ENDPOINTC_BUCKET"
# a path read as TSV; anything else is read as Parquet (a file or a folder of them)
_TSV_PATH = re.compile(r"\.(tsv|txt)(\.gz)?$|\.gz$", re.IGNORECASE)
# Spark's own rule (the default of spark.redaction.regex) for settings that hold credentials,
# and what it shows instead of their values
_SECRET_SETTING = re.compile(r"secret|password|token|access[.]?key", re.IGNORECASE)
_REDACTED = "*********(redacted)"


class SparkUnavailable(RuntimeError):
    """Spark cannot start here (no PySpark, no Java)."""


@dataclass(frozen=True)
class SparkTable:
    """A registry table as Spark read it: the frame, the file named in messages, and how it
    was read ("parquet" or "tsv": all text, types decided by the normalisation)."""

    frame: DataFrame
    file: str
    fmt: str = "parquet"


@dataclass(frozen=True)
class SparkResults:
    """`long`: FINNGENID, ENDPOINT, STATUS, AGE, YEAR, NEVT, each bucket's rows in ENDPOINT,
    FINNGENID order; `counts`: ENDPOINT, N_CASES, N_CONTROLS, N_EXCLUDED ordered by
    ENDPOINT; `absent`: one row, EVENTS and PEOPLE, the events of people absent from the
    people table (ignored) and those people. All lazy: every action on `long` or `counts`
    runs the evaluation again, and so does sorting `long` (Spark reads its input once to
    sample the sort's ranges), unless `long` is cached or written first, as `run` does."""

    long: DataFrame
    counts: DataFrame
    absent: DataFrame
    endpoints: tuple[str, ...]  # the endpoints returned, in the counts' order
    buckets: int
    event_rows: int  # the events table's rows, as the key pass counted them


def read_table(spark: SparkSession, path: str, *, fmt: str | None = None) -> SparkTable:
    """A registry table at `path` (any file system the cluster reaches: a local path,
    hdfs://, s3a://, gs://, abfss://, dbfs:/...): TSV when its name ends in .tsv, .txt or
    .gz (gzip-compressed), Parquet otherwise (a file or a folder of part files), unless
    `fmt` says. TSV is read as the registry reader reads it: a header line, tabs, every
    column as text, empty fields and "NA" missing."""
    fmt = fmt or ("tsv" if _TSV_PATH.search(path.rstrip("/")) else "parquet")
    if fmt == "tsv":
        frame = spark.read.csv(path, sep="\t", header=True, inferSchema=False, escape='"', encoding="UTF-8")
    elif fmt == "parquet":
        frame = spark.read.parquet(path)
    else:
        raise ValueError(f"unknown table format {fmt!r}: expected parquet or tsv")
    return SparkTable(frame, path, fmt)


def evaluate(program: Program, events: DataFrame | SparkTable, people: DataFrame | SparkTable, *,
             endpoints: Sequence[str] | None = None, buckets: int | None = None) -> SparkResults:
    """Evaluate `program` over registry tables in the FinnGen layout, as read (see
    `read_table`; a DataFrame is taken as read from Parquet), and return the results as
    Spark DataFrames (see `SparkResults`).

    `endpoints` selects endpoints by name (their dependencies are evaluated but not
    returned). `buckets`: how many person buckets (hash classes of FINNGENID) the people
    are split into; each is one Python call holding its events in memory. Default: one per
    `EVENTS_PER_BUCKET` events, and at least as many as the cluster runs tasks at once.

    Runs Spark jobs for the match stage (the distinct event keys); the rest is lazy.
    Raises `RegistryError` for a table the registry reader would refuse (a missing
    column, a column of the wrong type), `MissingColumnError` for a program that reads a
    column the events lack.
    """
    from pyspark.sql import functions as F

    ev = events if isinstance(events, SparkTable) else SparkTable(events, "events table")
    pp = people if isinstance(people, SparkTable) else SparkTable(people, "people table")
    spark = ev.frame.sparkSession
    ev_schema, pp_schema = _polars_schema(ev), _polars_schema(pp)
    # the registry reader's column and type checks, on the schemas alone
    for table, name, schema in ((ev, "events", ev_schema), (pp, "people", pp_schema)):
        normalised(pl.DataFrame(schema=schema), name, schema=schema, file=table.file, fmt=table.fmt).collect_schema()

    columns = key_pass_columns(program, endpoints=endpoints)
    keys = pl.from_arrow(ev.frame.groupBy(*columns).agg(F.count(F.lit(1)).alias("_ROWS")).toArrow())
    prep = prepare_counted(program, keys, schema=ev_schema, file=ev.file, fmt=ev.fmt, endpoints=endpoints)
    n_events = int(keys["_ROWS"].sum() or 0)
    if buckets is None:
        buckets = max(_parallelism(spark), -(-n_events // EVENTS_PER_BUCKET), 1)
    elif buckets < 1:
        raise ValueError("buckets must be at least 1")

    person = F.col("FINNGENID").cast("string")
    bucket = F.pmod(F.xxhash64(person), F.lit(buckets)).alias(_BUCKET)
    ev_rows = ev.frame.select(bucket, *bucket_columns(prep))
    pp_rows = pp.frame.select(bucket, *PEOPLE_COLUMNS)
    evaluate_one = _Bucket(_shared(spark, prep), ev_schema, pp_schema, ev.file, ev.fmt, pp.file, pp.fmt).function()
    long = (ev_rows.groupBy(_BUCKET).cogroup(pp_rows.groupBy(_BUCKET))
            .applyInArrow(evaluate_one, _long_schemas()[0]))

    names = tuple(sorted(prep.program.endpoints[i].name for i in prep.selected))
    absent = (ev.frame.select(person.alias("FINNGENID"))
              .join(pp.frame.select(person.alias("FINNGENID")), on="FINNGENID", how="left_anti")
              .groupBy("FINNGENID").count()   # a null id is one person, as the engine counts
              .agg(F.coalesce(F.sum("count"), F.lit(0)).cast("long").alias("EVENTS"),
                   F.count(F.lit(1)).alias("PEOPLE")))
    return SparkResults(long=long, counts=counts_frame(long, pp.frame, names), absent=absent,
                        endpoints=names, buckets=buckets, event_rows=n_events)


def counts_frame(long: DataFrame, people: DataFrame, endpoints: Sequence[str]) -> DataFrame:
    """Per endpoint of `endpoints`, N_CASES, N_CONTROLS (the rest of `people`) and
    N_EXCLUDED of the long table `long`, ordered by ENDPOINT: a Spark aggregation."""
    from pyspark.sql import functions as F

    spark = long.sparkSession
    names = spark.createDataFrame([(name,) for name in endpoints], "ENDPOINT string")
    per_endpoint = long.groupBy("ENDPOINT").agg(
        *(F.count(F.when(F.col("STATUS") == status, 1)).alias(column)
          for status, column in (("case", "N_CASES"), ("excluded", "N_EXCLUDED"))))
    population = people.agg(F.count(F.lit(1)).alias("_POPULATION"))
    cases, excluded = (F.coalesce(F.col(c), F.lit(0)).cast("long") for c in ("N_CASES", "N_EXCLUDED"))
    return (names.join(per_endpoint, on="ENDPOINT", how="left").crossJoin(population)
            .select("ENDPOINT", cases.alias("N_CASES"),
                    (F.col("_POPULATION") - cases - excluded).cast("long").alias("N_CONTROLS"),
                    excluded.alias("N_EXCLUDED"))
            .orderBy("ENDPOINT"))


def session(*, master: str | None = None, conf: Mapping[str, str] = (), app_name: str = "endpointc") -> SparkSession:
    """A Spark session for `run`: the running one (spark-submit, a notebook) or a new one
    on `master`, with `conf` on top of these defaults, each of which `conf` may replace:
    Polars on an executor as many threads as a task has cores (`spark.task.cpus`), so
    that tasks do not compete for them; files written readable by the owner only (the
    long table is individual-level); and when it starts Spark in local mode, workers on
    this Python (PYSPARK_PYTHON, unless set)."""
    if importlib.util.find_spec("pyspark") is None:
        raise SparkUnavailable("the Spark engine needs PySpark: pip install 'endpointc[spark]'")
    from pyspark.sql import SparkSession

    if shutil.which("java") is None and not (os.environ.get("JAVA_HOME")
                                              and Path(os.environ["JAVA_HOME"], "bin", "java").exists()):
        raise SparkUnavailable("Spark needs Java 17 or newer, and there is no java on PATH nor in JAVA_HOME: "
                               "install a JDK (e.g. apt-get install openjdk-17-jre-headless)")
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    conf = dict(conf)
    defaults = {
        "spark.executorEnv.POLARS_MAX_THREADS": conf.get("spark.task.cpus", "1"),
        "spark.hadoop.fs.permissions.umask-mode": "077",
        "spark.ui.showConsoleProgress": "false",
    }
    starts_local = (master.startswith("local") if master is not None   # without a master: local[*],
                    else "PYSPARK_GATEWAY_PORT" not in os.environ             # unless under spark-submit
                    and SparkSession.getActiveSession() is None)
    if starts_local:
        # PySpark starts its workers with PYSPARK_PYTHON, else whatever python3 is first on PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in {**defaults, **conf}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


@dataclass(frozen=True)
class RunOutcome:
    """What `run` wrote: the counts (unmasked; counts.tsv has them masked), the population,
    warnings about the data (aggregate numbers only), the bucket count."""

    counts: pl.DataFrame
    population: int
    warnings: tuple[str, ...]
    buckets: int


def run(spark: SparkSession, program: Program, events: str, people: str, out: str, *,
        endpoints: Sequence[str] | None = None, buckets: int | None = None,
        mask_threshold: int | None = MASK_THRESHOLD, on_stage: Callable[[str], None] = lambda _: None,
        record: RunRecord | None = None) -> RunOutcome:
    """`endpointc run --engine spark`: evaluate the registry at `events` and `people` (paths
    Spark reads, see `read_table`) and write into the folder `out` (any file system the
    cluster writes) `endpoints.parquet`, a folder of Parquet part files that read in
    name order are the long table sorted by ENDPOINT, FINNGENID, and counts.tsv, masked
    as the local engine masks it. The buckets' rows are written once as they come, then
    read back to be sorted and counted: the evaluation runs once.

    With `record` (its definitions hashed: `RunRecord.hash_definitions`), manifest.json
    too, and the stages are timed into it. A table is hashed where it is one file on this
    machine (the driver's), the part files of endpoints.parquet where `out` is on this
    machine; the others are recorded as not hashed, saying why, and no Spark job reads
    anything to hash it.

    All or nothing: every file is written into a new folder inside `out` first and moved
    into place only when all are complete; the earlier results stay until then, and are
    put back if a move fails. `on_stage(description)` is called as each stage starts.
    """
    check_threshold(mask_threshold)
    timed = record.stage if record is not None else lambda _: contextlib.nullcontext()
    hashed = {}
    with timed("hash_inputs"):
        for table, path in (("events", events), ("people", people)):
            fs = _FileSystem(spark, path)
            if not fs.exists(path):
                raise RegistryError(f"{table} file {path} does not exist", file=path, code=EP_UNREADABLE)
            if record is not None:
                hashed[table] = fs.hashed(path)
    on_stage("reading the registry and matching codes")
    with timed("read_registry"):
        population_table = read_table(spark, people)
        results = evaluate(program, read_table(spark, events), population_table, endpoints=endpoints,
                           buckets=buckets)
    out = out.rstrip("/") or "/"
    fs = _FileSystem(spark, out)
    stage = f"{out}/.endpointc-spark-{secrets.token_hex(6)}"
    try:
        on_stage(f"evaluating in {results.buckets} bucket(s)")
        with timed("evaluate"):
            results.long.write.parquet(f"{stage}/buckets", compression="zstd")
        on_stage("sorting and counting")
        with timed("write"):
            written = spark.read.parquet(f"{stage}/buckets")
            written.orderBy("ENDPOINT", "FINNGENID").write.parquet(f"{stage}/{LONG_FILE}", compression="zstd")
            counts = pl.from_arrow(counts_frame(written, population_table.frame, results.endpoints).toArrow())
            population = population_table.frame.count()
            counts_bytes = counts_text(counts, population=population, mask_threshold=mask_threshold).encode("utf-8")
            fs.write_bytes(f"{stage}/{COUNTS_FILE}", counts_bytes)
            absent = results.absent.first()
            warnings = combine_warnings([_Absent(absent["EVENTS"], absent["PEOPLE"])])
            names = (LONG_FILE, COUNTS_FILE)
            if record is not None:
                record.add_tables(events=TableRecord(path=events, rows=results.event_rows, **hashed["events"]),
                                  people=TableRecord(path=people, rows=population, **hashed["people"]))
                outputs = sorted([*fs.part_files(stage, LONG_FILE),
                                  OutputRecord(file=COUNTS_FILE, size=len(counts_bytes),
                                               sha256=hashlib.sha256(counts_bytes).hexdigest())],
                                 key=lambda o: o.file)
                fs.write_bytes(f"{stage}/{MANIFEST_FILE}", record.render(
                    outputs, registry=None, warnings=warnings, spark=_spark_record(spark, results.buckets)
                ).encode("utf-8"))
                names += (MANIFEST_FILE,)
        on_stage("moving the results into place")
        fs.commit(stage, out, names)
    except BaseException:
        fs.discard(stage)
        raise
    fs.delete(stage)
    return RunOutcome(counts=counts, population=population, buckets=results.buckets, warnings=warnings)


def redacted_command(argv: Sequence[str]) -> tuple[str, ...]:
    """`argv` with the value of every `--spark-conf KEY=VALUE` whose KEY names a credential
    (by Spark's own rule, spark.redaction.regex) replaced as Spark's UI shows it: the
    manifest records the command line, and is shared with the results."""
    shown, after_option = [], False
    for arg in argv:
        prefix = "" if after_option else "--spark-conf=" if arg.startswith("--spark-conf=") else None
        if prefix is not None:
            key, equals, _ = arg[len(prefix):].partition("=")
            if equals and _SECRET_SETTING.search(key):
                arg = f"{prefix}{key}={_REDACTED}"
        after_option = arg == "--spark-conf"
        shown.append(arg)
    return tuple(shown)


# --- on the executors ------------------------------------------------------------------

@dataclass(frozen=True)
class _Bucket:
    """The Python call of one bucket, sent to the executors: its prepared program (a
    broadcast, read once per worker process, or the program itself) and how to normalise
    its tables."""

    shared: Any
    events_schema: dict[str, pl.DataType]
    people_schema: dict[str, pl.DataType]
    events_file: str
    events_fmt: str
    people_file: str
    people_fmt: str

    def function(self) -> Callable[[pa.Table, pa.Table], pa.Table]:
        # a function of two tables: PySpark passes the group key first to anything that
        # takes three arguments, as a method's `self` counts
        return lambda events, people: self.run(events, people)

    def run(self, events: pa.Table, people: pa.Table) -> pa.Table:
        prep = self.shared if isinstance(self.shared, Prepared) else self.shared.value
        long = bucket_long(
            prep,
            normalised(_polars(events.drop_columns([_BUCKET])), "events", schema=self.events_schema, file=self.events_file,
                       fmt=self.events_fmt),
            normalised(_polars(people.drop_columns([_BUCKET])), "people", schema=self.people_schema, file=self.people_file,
                       fmt=self.people_fmt))
        return long.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(_long_schemas()[1])


def _polars(table: pa.Table) -> pl.DataFrame:
    """An Arrow table from Spark as Polars. Spark's timestamps carry the session's time zone,
    a Parquet reader's are UTC: dates are taken in UTC, as the local engine takes them."""
    frame = pl.from_arrow(table)
    return frame.with_columns(pl.col(name).dt.convert_time_zone("UTC") for name, dtype in frame.schema.items()
                              if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None)


# --- on the driver ---------------------------------------------------------------------

def _polars_schema(table: SparkTable) -> dict[str, pl.DataType]:
    """The table's columns as Polars types, as an executor receives them."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return dict(_polars(to_arrow_schema(table.frame.schema).empty_table()).schema)


@functools.cache
def _long_schemas() -> tuple[Any, pa.Schema]:
    """The long table's schema for Spark, and as Arrow: what the buckets' calls return."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

    spark = StructType([StructField(name, kind) for name, kind in zip(
        LONG_SCHEMA.names(), (StringType(), StringType(), StringType(), DoubleType(), IntegerType(), LongType()))])
    return spark, to_arrow_schema(spark)


def _shared(spark: SparkSession, prep: Prepared) -> Any:
    """`prep` broadcast, or as it is where a session has no SparkContext (Spark Connect):
    each task's function then carries it."""
    try:
        return spark.sparkContext.broadcast(prep)
    except Exception:  # Spark Connect has no SparkContext; its exceptions differ by version
        return prep


def _spark_record(spark: SparkSession, buckets: int) -> SparkRecord:
    import pyspark

    context = spark.sparkContext
    return SparkRecord(pyspark=pyspark.__version__, master=context.master, application_id=context.applicationId,
                       buckets=buckets)


def _parallelism(spark: SparkSession) -> int:
    """How many tasks the cluster runs at once."""
    try:
        return spark.sparkContext.defaultParallelism
    except Exception:  # Spark Connect
        return int(spark.conf.get("spark.sql.shuffle.partitions", "200"))


def spark_errors() -> tuple[type[BaseException], ...]:
    """What a failing Spark job or JVM call raises (their messages may quote the data)."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return PySparkException, Py4JError


def error_kind(error: BaseException) -> str:
    """What kind of Spark failure `error` is, in words that quote no data: its error
    condition (PATH_NOT_FOUND, ...) or its class."""
    from pyspark.errors import PySparkException

    condition = error.getCondition() if isinstance(error, PySparkException) else None
    return condition or type(error).__name__


@dataclass(frozen=True)
class _Absent:
    """The numbers `outputs.combine_warnings` words."""

    absent_events: int
    absent_people: int


class _FileSystem:
    """The Hadoop file system of a folder, through the JVM of a classic Spark session:
    whatever Spark writes to (local, HDFS, S3, GCS, ...), the driver can write, move and
    remove there too."""

    def __init__(self, spark: SparkSession, folder: str):
        jvm = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self._fs = self._path(folder).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def write_bytes(self, path: str, data: bytes) -> None:
        stream = self._fs.create(self._path(path), True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def local(self, path: str) -> Path | None:
        """`path` on this machine's file system, or None when it is elsewhere (hdfs://, s3a://,
        ..., or a path without a scheme where the cluster's default file system is one)."""
        uri = self._fs.makeQualified(self._path(path)).toUri()
        return Path(uri.getPath()) if uri.getScheme() == "file" else None

    def hashed(self, path: str) -> dict[str, Any]:
        """The size, sha256 and not_hashed of a table's `TableRecord`: hashed only where it
        is one file on this machine."""
        local = self.local(path)
        why = (f"on {self._scheme()}://, not on this machine: not read to hash it" if local is None
               else None if local.is_file() else "a folder of part files, not one file: not hashed")
        if why is not None:
            return {"size": None, "sha256": None, "not_hashed": why}
        return file_record(local).model_dump(include={"size", "sha256"})

    def part_files(self, stage: str, dataset: str) -> list[OutputRecord]:
        """The data files of the folder `dataset` in `stage`, named `dataset/part-...` as in
        the output folder: hashed where it is on this machine, else with the size its file
        system gives. Spark's markers and checksums (_SUCCESS, .part-....crc) are left
        out, as readers skip them."""
        folder = f"{stage}/{dataset}"
        local = self.local(folder)
        if local is not None:
            return [OutputRecord(file=f"{dataset}/{p.name}", **file_record(p).model_dump(exclude={"path"}))
                    for p in sorted(local.iterdir()) if not p.name.startswith(("_", "."))]
        why = f"written to {self._scheme()}://, not on this machine: not read back to hash it"
        found = sorted((s.getPath().getName(), s.getLen()) for s in self._fs.listStatus(self._path(folder))
                       if s.isFile())
        return [OutputRecord(file=f"{dataset}/{name}", size=size, sha256=None, not_hashed=why)
                for name, size in found if not name.startswith(("_", "."))]

    def _scheme(self) -> str:
        return str(self._fs.getUri().getScheme())

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def delete(self, path: str) -> None:
        self._fs.delete(self._path(path), True)

    def discard(self, stage: str) -> None:
        """Remove `stage`, unless it holds earlier results that could not be put back."""
        if not self._fs.globStatus(self._path(f"{stage}/*.old")):
            self.delete(stage)

    def commit(self, stage: str, folder: str, names: Sequence[str]) -> None:
        """Move `names` from `stage` into `folder`; what they replace waits in `stage` until
        all are moved, and is put back if one move fails."""
        moved, kept = [], []
        try:
            for name in names:
                target, old = self._path(f"{folder}/{name}"), self._path(f"{stage}/{name}.old")
                if self._fs.exists(target):
                    self._move(target, old)
                    kept.append((old, target))
                self._move(self._path(f"{stage}/{name}"), target)
                moved.append(target)
        except BaseException:
            for target in moved:
                self._fs.delete(target, True)
            for old, target in kept:
                self._move(old, target)
            raise

    def _move(self, source, target) -> None:
        from py4j.protocol import Py4JError

        try:
            moved = self._fs.rename(source, target)
        except Py4JError as error:   # file systems differ: some return false, some throw
            raise OSError(f"could not move {source.toString()} to {target.toString()}") from error
        if not moved:
            raise OSError(f"could not move {source.toString()} to {target.toString()}")
