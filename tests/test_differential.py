"""The Polars engine equals the reference evaluator exactly, on random plans and registries."""

from __future__ import annotations

import inspect

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from pydantic import BaseModel

from endpointc import plan as P
from endpointc.engine.polars import evaluate

from plan_strategies import NODE_STRATEGIES, programs, registries


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])


def _plan_models() -> list[type]:
    found = {obj for _, obj in inspect.getmembers(P, inspect.isclass)
             if issubclass(obj, BaseModel) and obj.__module__ == P.__name__
             and not obj.__name__.startswith("_")}
    # a base class (EndpointFact) is never a node itself: its subclasses are
    concrete = {cls for cls in found if not any(o is not cls and issubclass(o, cls) for o in found)}
    return sorted(concrete, key=lambda cls: cls.__name__)


def test_every_plan_node_has_a_strategy():
    missing = [cls.__name__ for cls in _plan_models() if cls not in NODE_STRATEGIES]
    assert not missing, f"plan node(s) without a hypothesis strategy: {missing}"


@settings(max_examples=10, **_SETTINGS)
@given(st.data())
def test_node_strategies_build_their_class(data):
    for cls, strategy in NODE_STRATEGIES.items():
        assert isinstance(data.draw(strategy), cls)


def _node_classes(obj, found: set[type]) -> set[type]:
    if isinstance(obj, BaseModel):
        found.add(type(obj))
        for name in type(obj).model_fields:
            _node_classes(getattr(obj, name), found)
    elif isinstance(obj, tuple):
        for item in obj:
            _node_classes(item, found)
    return found


def test_random_programs_reach_every_plan_node():
    """The differential suite exercises every node class: random programs contain them all."""
    wanted, seen = set(_plan_models()), set()

    def covers(prog) -> bool:
        seen.update(_node_classes(prog, set()))
        return wanted <= seen

    find(programs(), covers, settings=settings(max_examples=1000, database=None,
                                               phases=[Phase.generate], **_SETTINGS))
    assert wanted <= seen, wanted - seen


def _engine(program, events, people, endpoints=None, buckets=1):
    res = evaluate(program, events.lazy(), people.lazy(), endpoints=endpoints, buckets=buckets)
    return res.long.collect(), res.counts.collect()


def _needs_code9(program) -> bool:
    return any(ep.uses_emergency for ep in program.endpoints)


# The default suite draws enough to catch a broken construct; -m slow draws many more.
@settings(max_examples=80, **_SETTINGS)
@given(programs(), registries(), st.data())
def test_polars_equals_reference(program, registry, data):
    _same_results(program, registry, data)


@pytest.mark.slow
@settings(max_examples=1000, **_SETTINGS)
@given(programs(), registries(), st.data())
def test_many_programs_polars_equals_reference(program, registry, data):
    _same_results(program, registry, data)


@settings(max_examples=30, **_SETTINGS)
@given(programs(kind="time"), registries(), st.data())
def test_polars_equals_reference_on_time_programs(program, registry, data):
    """Broad rules and conditions about dates only: most rows reach a window's edge."""
    _same_results(program, registry, data)


@pytest.mark.slow
@settings(max_examples=500, **_SETTINGS)
@given(programs(kind="time"), registries(), st.data())
def test_many_time_programs_polars_equals_reference(program, registry, data):
    _same_results(program, registry, data)


def _same_results(program, registry, data):
    from endpointc.engine.reference import counts_reference, evaluate_reference

    events, people = registry
    if data.draw(st.booleans(), label="drop CODE9") and not _needs_code9(program):
        events = events.drop("CODE9")
    selection = data.draw(st.one_of(
        st.none(), st.lists(st.sampled_from(program.names), min_size=1, max_size=2, unique=True)),
        label="endpoints")
    expected = evaluate_reference(program, events, people, endpoints=selection)
    long, counts = _engine(program, events, people, endpoints=selection)
    assert_frame_equal(long, expected)
    names = selection if selection is not None else program.names
    assert_frame_equal(counts, counts_reference(expected, people, endpoints=names))


@settings(max_examples=10, **_SETTINGS)
@given(programs(), registries(), st.integers(2, 5))
def test_buckets_do_not_change_results(program, registry, buckets):
    _buckets_do_not_change_results(program, registry, buckets)


@pytest.mark.slow
@settings(max_examples=200, **_SETTINGS)
@given(programs(), registries(), st.integers(2, 5))
def test_many_bucket_counts_do_not_change_results(program, registry, buckets):
    _buckets_do_not_change_results(program, registry, buckets)


def _buckets_do_not_change_results(program, registry, buckets):
    events, people = registry
    long1, counts1 = _engine(program, events, people)
    longb, countsb = _engine(program, events, people, buckets=buckets)
    assert_frame_equal(longb, long1)
    assert_frame_equal(countsb, counts1)
