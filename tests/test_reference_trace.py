"""The reference engine's trace: explain is the engine run with an observer.

An observer changes nothing in the results, every person's explanation is the engine's
verdict on random programs and registries, and a condition node the engine does not know
is named in the error.
"""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from polars.testing import assert_frame_equal

from endpointc import plan as P
from endpointc.compiler import compile_text
from endpointc.engine.reference import Observer, evaluate_reference
from endpointc.explain import explain_person, format_cond, format_explanation

from plan_strategies import programs, registries

_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_STEPS = tuple(name for name in vars(Observer) if not name.startswith("_"))


class _Counting(Observer):
    """Counts the calls of every method of the protocol."""

    def __init__(self):
        self.calls: Counter[str] = Counter()


for _step in _STEPS:
    setattr(_Counting, _step, lambda self, *args, _step=_step: self.calls.update([_step]))


def _explanations_agree_with_the_engine(program, registry):
    """For every person and endpoint: the explained status, AGE, YEAR and NEVT are the
    engine's, run on the whole tables, and the observer changes nothing."""
    events, people = registry
    long = evaluate_reference(program, events, people)
    assert_frame_equal(evaluate_reference(program, events, people, observer=_Counting()), long)
    facts = {(r["FINNGENID"], r["ENDPOINT"]): r for r in long.to_dicts()}
    for person in people.to_dicts():
        for name in program.names:
            expl = explain_person(program, events, people, person=person["FINNGENID"], endpoint=name)
            assert format_explanation(expl)
            fact = facts.get((person["FINNGENID"], name))
            if fact is None:
                assert (expl.status, expl.age, expl.year, expl.nevt) == ("control", person["FU_END_AGE"], None, 0)
            else:
                assert (expl.status, expl.age, expl.year, expl.nevt) == (
                    fact["STATUS"], fact["AGE"], fact["YEAR"], fact["NEVT"])


# About 0.1 s an example: a few by default, many with -m slow.
@settings(max_examples=40, **_SETTINGS)
@given(programs(max_endpoints=4), registries(max_events=30))
def test_explanations_agree_with_the_engine(program, registry):
    _explanations_agree_with_the_engine(program, registry)


@pytest.mark.slow
@settings(max_examples=500, **_SETTINGS)
@given(programs(max_endpoints=4), registries(max_events=30))
def test_many_explanations_agree_with_the_engine(program, registry):
    _explanations_agree_with_the_engine(program, registry)


def test_the_observer_hears_every_step():
    program, _ = compile_text("""
    endpoint A { hospital icd10 I21 }
    endpoint B {
      include A
      hospital mode min 2 needs other icd10 E11
      purchase atc A10
      when age > 0
      require A.count > 0
      controls { exclude A }
    }""")
    events = pl.DataFrame({"FINNGENID": ["P1"] * 4, "SOURCE": ["INPAT", "INPAT", "INPAT", "PURCH"],
                           "EVENT_AGE": [50.0, 51.0, 52.0, 53.0], "CODE1": ["I21", "E110", "E110", "A10BA"],
                           "ICDVER": ["10", "10", "10", None]})
    people = pl.DataFrame({"FINNGENID": ["P1", "P2"], "SEX": ["male", "female"]})
    heard = _Counting()
    evaluate_reference(program, events, people, observer=heard)
    assert set(heard.calls) == set(_STEPS)


class _Strange:
    """No condition node of the plan."""

    value_type = P.TRUTH


def test_unknown_condition_nodes_are_named():
    endpoint = P.EndpointPlan.model_construct(name="A", rules=(), includes=(), when=None, require=_Strange(),
                                              sex=None, control_exclude=(), control_require=None)
    program = P.Program.model_construct(endpoints=(endpoint,))
    people = pl.DataFrame({"FINNGENID": ["P1"], "SEX": ["male"]})
    events = pl.DataFrame({"FINNGENID": [], "SOURCE": []}, schema={"FINNGENID": pl.String, "SOURCE": pl.String})
    with pytest.raises(TypeError, match="_Strange is not a condition node"):
        evaluate_reference(program, events, people)
    with pytest.raises(TypeError, match="_Strange"):
        format_cond(_Strange())
