"""The engine's entry points for distributed runners (engine/distributed.py), without Spark:
people in hash buckets, keys counted apart, each bucket evaluated on its own, give
`evaluate`'s results on the same tables."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from endpointc.engine.distributed import (
    PEOPLE_COLUMNS, bucket_columns, bucket_long, key_pass_columns, normalised, prepare_counted,
)
from endpointc.engine.polars import evaluate
from endpointc.registry import RegistryError, normalise_table

from plan_strategies import programs, registries

DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def hash_buckets(program, events: pl.DataFrame, people: pl.DataFrame, *, buckets: int,
                 endpoints=None) -> pl.DataFrame:
    """What a distributed runner does, in one process: the long table, sorted."""
    keys = events.group_by(key_pass_columns(program, endpoints=endpoints)).agg(pl.len().alias("_ROWS"))
    prep = prepare_counted(program, keys, schema=events.schema, file="events.tsv", endpoints=endpoints)
    bucket = pl.col("FINNGENID").hash(seed=7) % buckets
    parts = [
        bucket_long(prep,
                    normalised(events.filter(bucket == b).select(bucket_columns(prep)), "events",
                               schema=events.schema, file="events.tsv"),
                    normalised(people.filter(bucket == b).select(PEOPLE_COLUMNS), "people",
                               schema=people.schema, file="people.tsv"))
        for b in range(buckets)
    ]
    return pl.concat(parts).sort("ENDPOINT", "FINNGENID")


def local(program, events: pl.DataFrame, people: pl.DataFrame, *, endpoints=None) -> pl.DataFrame:
    """The local engine on the same tables as a file would give them (`scan_events`)."""
    return evaluate(program, normalise_table(events.lazy(), "events", file="events.tsv"),
                    normalise_table(people.lazy(), "people", file="people.tsv"),
                    endpoints=endpoints).long.collect()


def _hash_buckets_give_the_local_results(program, registry, buckets, data):
    events, people = registry
    selection = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(program.names), min_size=1,
                                                        max_size=2, unique=True)), label="endpoints")
    assert_frame_equal(hash_buckets(program, events, people, buckets=buckets, endpoints=selection),
                       local(program, events, people, endpoints=selection))


# About 0.4 s an example: a few by default, many with -m slow.
@settings(max_examples=10, **_SETTINGS)
@given(programs(), registries(), st.integers(1, 4), st.data())
def test_hash_buckets_give_the_local_results(program, registry, buckets, data):
    _hash_buckets_give_the_local_results(program, registry, buckets, data)


@pytest.mark.slow
@settings(max_examples=200, **_SETTINGS)
@given(programs(), registries(), st.integers(1, 4), st.data())
def test_many_programs_in_hash_buckets_give_the_local_results(program, registry, buckets, data):
    _hash_buckets_give_the_local_results(program, registry, buckets, data)


def test_bucket_columns_are_all_a_bucket_reads():
    """A column left out of `bucket_columns` comes back as nulls: a program using mode and
    an emergency `when` still gets every column it reads."""
    from endpointc.compiler import compile_program
    from endpointc.synth import generate

    program = compile_program([DEFINITIONS])
    events, people = (frame.collect() for frame in generate(people=300, seed=3, definitions=program))
    prep = prepare_counted(program, events.group_by(key_pass_columns(program)).agg(pl.len().alias("_ROWS")),
                           schema=events.schema, file="events.parquet")
    assert prep.uses_mode and prep.uses_emergency
    assert {"CODE1", "CODE9", "INDEX"} <= set(bucket_columns(prep))
    assert_frame_equal(hash_buckets(program, events, people, buckets=3), local(program, events, people))


def test_a_table_the_reader_refuses_is_refused_by_name():
    events = pl.DataFrame({"FINNGENID": ["A"], "SOURCE": ["INPAT"]})
    with pytest.raises(RegistryError, match="events file s3://bucket/events.parquet: missing required column"):
        normalised(events, "events", schema=events.schema, file="s3://bucket/events.parquet").collect()
