"""The engine's person buckets run by a system of many machines (endpointc/spark.py).

`polars.evaluate` prepares the program once and then evaluates person buckets one after
another; every step after `prepare` is per person. A distributed runner does the same
two things on different machines, with these entry points and nothing of the semantics
of its own:

* the match stage, once, on the driver: the runner counts the distinct event keys (the
  columns of `key_pass_columns`, as read) with its own aggregation and hands them to
  `prepare_counted`, which normalises them as the registry reader does and matches every
  pattern of the program against them (`prepare`); the result, `Prepared`, is what every
  bucket shares (66 MB pickled for DF12 on 1e7 events, see docs/spark.md);
* each bucket, on a worker: the runner sends a bucket's event rows (only the columns
  `bucket_columns` names: nothing else is read) and its people; `normalised` gives the
  tables the engine reads and `bucket_long` its rows of the long table.

A bucket is any set of whole people: its rows do not depend on who else is in it, so the
runner may assign people to buckets by a hash of FINNGENID, and the union of the buckets'
rows, sorted by ENDPOINT and FINNGENID, is `evaluate`'s long table.

Example (two buckets, then the rows of both sorted):
    >>> from endpointc.plan import Program, EndpointPlan, RulePlan, Branch, ColumnTest, CodeSet
    >>> rule = RulePlan(index=0, source="hospital", branches=(Branch(sources=("INPAT",),
    ...     tests=(ColumnTest(column="CODE1", codes=CodeSet(prefixes=("E11",))),)),))
    >>> program = Program(endpoints=(EndpointPlan(name="T2D", rules=(rule,)),))
    >>> raw = pl.DataFrame({"FINNGENID": ["A", "A", "B"], "SOURCE": ["INPAT"] * 3,
    ...     "EVENT_AGE": [50.0, 40.0, 30.0], "APPROX_EVENT_DAY": ["NA"] * 3, "CODE1": ["E119", "E110", "E111"],
    ...     "CODE2": ["NA"] * 3, "CODE3": ["NA"] * 3, "CODE4": ["NA"] * 3, "ICDVER": ["10"] * 3,
    ...     "CATEGORY": ["0"] * 3, "INDEX": ["1", "2", "3"]})
    >>> people = pl.DataFrame({"FINNGENID": ["A", "B"], "SEX": ["male", "female"], "FU_END_AGE": [60.0, 70.0]})
    >>> keys = raw.group_by(key_pass_columns(program)).agg(pl.len().alias("_ROWS"))
    >>> prep = prepare_counted(program, keys, schema=raw.schema, file="events.tsv")
    >>> parts = [bucket_long(prep, normalised(raw.filter(pl.col("FINNGENID") == i).select(bucket_columns(prep)),
    ...                                        "events", schema=raw.schema, file="events.tsv"),
    ...                      normalised(people.filter(pl.col("FINNGENID") == i), "people",
    ...                                 schema=people.schema, file="people.tsv"))
    ...          for i in ("B", "A")]
    >>> pl.concat(parts).sort("ENDPOINT", "FINNGENID").select("FINNGENID", "AGE", "NEVT").rows()
    [('A', 40.0, 2), ('B', 30.0, 1)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from ..plan import Program
from ..registry import normalise_table
from .matching import ENGINE, key_columns
from .outputs import long_table
from .polars import evaluate_bucket
from .prepare import Prepared, prepare

__all__ = ["PEOPLE_COLUMNS", "key_pass_columns", "prepare_counted", "bucket_columns", "normalised", "bucket_long"]

# the people columns a bucket's evaluation reads
PEOPLE_COLUMNS = ("FINNGENID", "SEX")


def key_pass_columns(program: Program, *, endpoints: Sequence[str] | None = None) -> tuple[str, ...]:
    """The event columns whose distinct combinations (with their row counts) `prepare_counted`
    needs for `endpoints` (default: all) and their dependencies."""
    return key_columns(program if endpoints is None else program.subset(list(dict.fromkeys(endpoints))))


def prepare_counted(program: Program, keys: pl.DataFrame, *, schema: Mapping[str, pl.DataType], file: str,
                    fmt: str = "parquet", endpoints: Sequence[str] | None = None) -> Prepared:
    """`prepare` on counted keys: `keys` holds the distinct combinations, as read, of
    `key_pass_columns` of an events table whose columns as read are `schema` (read from
    `file`, as `fmt`), and their numbers of events (_ROWS). Raises `RegistryError` for a
    table the registry reader would refuse (a missing column, a column of the wrong type)."""
    rows = keys["_ROWS"]
    events = normalised(keys.drop("_ROWS"), "events", schema=schema, file=file, fmt=fmt).collect(engine=ENGINE)
    return prepare(program, events.with_columns(rows.alias("_ROWS")).lazy(), endpoints=endpoints)


def bucket_columns(prep: Prepared) -> tuple[str, ...]:
    """The event columns a bucket's evaluation reads: the others can stay behind."""
    return tuple(dict.fromkeys((
        "FINNGENID", "EVENT_AGE", "APPROX_EVENT_DAY", *prep.mapping.columns,
        *(("CODE1",) if prep.uses_mode else ()), *(("CODE9", "INDEX") if prep.uses_emergency else ()),
    )))


def normalised(raw: pl.DataFrame, table: str, *, schema: Mapping[str, pl.DataType], file: str,
               fmt: str = "parquet") -> pl.LazyFrame:
    """Some columns of registry `table` ("events" or "people"), as read, normalised as
    `registry.normalise_table` normalises the whole table (events with their text columns
    as read, which the match stage hashes); the columns of `schema` left out come back as
    nulls of their type."""
    missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in raw.columns]
    return normalise_table(raw.lazy().with_columns(missing), table, file=file, fmt=fmt,
                           keep_as_read=table == "events")


def bucket_long(prep: Prepared, events: pl.LazyFrame, people: pl.LazyFrame) -> pl.DataFrame:
    """The rows of the long table (LONG_SCHEMA, sorted by ENDPOINT, FINNGENID) of one bucket:
    normalised `events` and `people` of a set of whole people."""
    indexed = events.with_row_index("ROW").with_columns(pl.col("ROW").cast(pl.UInt64))
    part = evaluate_bucket(prep, indexed, people)
    return long_table(part.long.lazy(), prep, part.ids).collect()
