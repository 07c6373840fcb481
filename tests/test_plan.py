"""The plan validates itself: conditions are typed, every name is a dependency, the walker
is the one traversal and fails loudly on what is not a condition."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import BaseModel, ValidationError

from endpointc.plan import (
    DATE, DURATION, NUMBER, TRUTH, AllOf, AnyOf, Between, Branch, Cmp, Const, Count, DateConst, Duration,
    EndpointPlan, EventField, FirstAge, FirstDate, IsCase, Negate, Program, Relation, RulePlan, Shift, children,
    cond_endpoints, cond_fields, walk,
)


@pytest.mark.parametrize("build", [
    lambda: Negate(arg=Count(endpoint="B")),
    lambda: AllOf(args=(IsCase(endpoint="B"), FirstAge(endpoint="B"))),
    lambda: AnyOf(args=(Const(value=1),)),
    lambda: Cmp(op="<", left=IsCase(endpoint="B"), right=Const(value=1)),
    lambda: Cmp(op="==", left=EventField(name="emergency"), right=Const(value=1)),
], ids=["not-number", "and-number", "or-const", "compare-truth", "compare-emergency"])
def test_operands_of_the_wrong_type_do_not_build(build):
    with pytest.raises(ValidationError, match="needs a"):
        build()


@pytest.mark.parametrize("fields, message", [
    ({"when": IsCase(endpoint="A")}, "when cannot read the endpoint itself"),
    ({"control_require": Cmp(op=">", left=Count(endpoint="A"), right=Const(value=1))},
     "controls require cannot read the endpoint itself"),
    ({"require": Cmp(op="<", left=EventField(name="age"), right=Const(value=40))}, "require cannot read the event field age"),
    ({"control_require": EventField(name="emergency")}, "controls require cannot read the event field emergency"),
    ({"require": Count(endpoint="B")}, "needs a truth value"),
    ({"when": EventField(name="age")}, "needs a truth value"),
])
def test_conditions_hold_only_what_their_place_allows(fields, message):
    with pytest.raises(ValidationError, match=message):
        EndpointPlan(name="A", **fields)


def test_time_terms_are_typed():
    when = Relation(subject=EventField(name="date"), relation="within_after", anchor=FirstDate(endpoint="B"),
                    window=Duration(days=365.25))
    assert when.value_type == TRUTH and FirstDate(endpoint="B").value_type == DATE
    assert Between(later=EventField(name="date"), earlier=FirstDate(endpoint="B")).value_type == DURATION
    assert Shift(date=DateConst(value=dt.date(2000, 1, 1)), sign=-1, by=Duration(days=7)).value_type == DATE
    with pytest.raises(ValidationError, match="needs a duration"):
        Shift(date=FirstDate(endpoint="B"), sign=1, by=Const(value=1))
    with pytest.raises(ValidationError, match="needs a date"):
        Between(later=FirstAge(endpoint="B"), earlier=FirstAge(endpoint="C"))
    with pytest.raises(ValidationError, match="of a date needs a date"):
        Cmp(op="<", left=EventField(name="date"), right=Const(value=2000))
    with pytest.raises(ValidationError, match="needs window"):
        Relation(subject=EventField(name="date"), relation="within_before", anchor=FirstDate(endpoint="B"))
    # persons terms in `when`, the endpoint itself in `require`: dependencies without itself
    plan = EndpointPlan(name="A", when=when, require=Negate(arg=Relation(
        subject=FirstDate(endpoint="C"), relation="before", anchor=FirstDate(endpoint="A"))))
    assert plan.dependencies == ("B", "C")


def test_relations_mean_comparisons_of_dates():
    day, anchor, year = EventField(name="date"), FirstDate(endpoint="B"), Duration(days=365.25)
    assert Relation(subject=day, relation="before", anchor=anchor).meaning == Cmp(op="<", left=day, right=anchor)
    assert Relation(subject=day, relation="within_before", anchor=anchor, window=year).meaning == AllOf(args=(
        Cmp(op="<=", left=Shift(date=anchor, sign=-1, by=year), right=day), Cmp(op="<=", left=day, right=anchor)))


def test_value_types():
    assert EventField(name="age").value_type == NUMBER and EventField(name="emergency").value_type == TRUTH
    assert IsCase(endpoint="B").value_type == TRUTH and Count(endpoint="B").value_type == NUMBER


def test_every_name_is_a_dependency_and_orders_the_program():
    a = EndpointPlan(name="A", includes=("B",), require=Negate(arg=IsCase(endpoint="C")),
                     control_exclude=("D",), control_require=Cmp(op=">", left=Count(endpoint="E"),
                                                                right=Const(value=0)))
    assert a.dependencies == ("B", "C", "D", "E")
    with pytest.raises(ValidationError, match="comes before its dependencies"):
        Program(endpoints=(EndpointPlan(name="B"), a))


def test_walk_is_preorder_in_reading_order_and_not_recursive():
    cond = AllOf(args=(Cmp(op="<", left=FirstAge(endpoint="B"), right=Const(value=50)), IsCase(endpoint="C")))
    assert [type(n).__name__ for n in walk(cond)] == ["AllOf", "Cmp", "FirstAge", "Const", "IsCase"]
    assert cond_endpoints(cond) == ("B", "C") and cond_fields(cond) == ()
    deep = IsCase(endpoint="B")
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = Negate.model_construct(arg=deep)
    assert sum(1 for _ in walk(deep)) == 5001


def test_an_unknown_node_is_named():
    class Mystery(BaseModel):
        kind: str = "mystery"

    with pytest.raises(TypeError, match="Mystery is not a condition node"):
        children(Mystery())
    with pytest.raises(TypeError, match="Mystery"):
        list(walk(AllOf.model_construct(args=(Mystery(),))))


def test_a_rule_covers_the_rows_of_its_branches():
    branch = Branch(sources=("INPAT",), tests=())
    assert RulePlan(index=0, source="hospital", branches=(branch,)).source_rows == ("INPAT",)
    with pytest.raises(ValidationError, match="does not read"):
        RulePlan(index=0, source="hospital", source_rows=("OUTPAT",), branches=(branch,))
