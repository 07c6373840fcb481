"""Complementary suppression (endpointc.masking.suppress): no masked cell can be worked out.

The property test plays the reader: it brute-forces every assignment of the masked cells
(``<5`` cells over 1..threshold-1, ``masked`` cells over 0..population, or
-population..population for a change) consistent with the shown cells and the relations,
and checks that each masked cell can take at least two values.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from endpointc.masking import (
    PRIMARY, SECONDARY, SECONDARY_MARK, Relation, mask_counts, mask_table, suppress,
)


def domain(key, marks, values, threshold, population, signed):
    if marks[key] == PRIMARY:
        return range(1, threshold) if values[key] > 0 else range(1 - threshold, 0)
    return range(-population if key in signed else 0, population + 1)


def feasible(values, relations, marks, threshold, population, signed) -> dict:
    """Every value each masked cell takes in some assignment a reader cannot rule out."""
    unknown = [k for k in values if k in marks]
    linear = []
    for r in relations:
        coefs = {}
        for k in r.parts:
            coefs[k] = coefs.get(k, 0) + 1
        for k in r.totals:
            coefs[k] = coefs.get(k, 0) - 1
        rhs = r.known - sum(a * values[k] for k, a in coefs.items() if k not in marks)
        linear.append(({k: a for k, a in coefs.items() if k in marks and a}, rhs, r.at_most))
    rows = np.zeros((1, 0), dtype=np.int64)
    for j, key in enumerate(unknown):
        column = np.array(domain(key, marks, values, threshold, population, signed), dtype=np.int64)
        rows = np.hstack([np.repeat(rows, len(column), axis=0), np.tile(column, len(rows))[:, None]])
        done = set(unknown[: j + 1])
        for coefs, rhs, at_most in linear:
            if key in coefs and set(coefs) <= done:
                lhs = sum(a * rows[:, unknown.index(k)] for k, a in coefs.items())
                rows = rows[lhs <= rhs] if at_most else rows[lhs == rhs]
    for coefs, rhs, at_most in linear:   # relations over shown cells only
        if not coefs:
            assert (0 <= rhs) if at_most else (rhs == 0)
    return {k: set(rows[:, i].tolist()) for i, k in enumerate(unknown)}


@st.composite
def tables(draw):
    """Cells with relations that hold: leaves, totals of subsets, changes (b - a), sums to a
    known number, and "at most" pairs."""
    threshold = draw(st.integers(3, 5))
    values: dict[str, int] = {}
    relations: list[Relation] = []
    signed: set[str] = set()
    for i in range(draw(st.integers(1, 4))):
        values[f"x{i}"] = draw(st.integers(0, 7))
    for i in range(draw(st.integers(0, 3))):
        parts = draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=3, unique=True))
        if draw(st.booleans()):
            values[f"t{i}"] = sum(values[p] for p in parts)
            relations.append(Relation.adds_up(parts, f"t{i}"))
        else:
            relations.append(Relation.adds_up(parts, known=sum(values[p] for p in parts)))
    if len(values) >= 2 and draw(st.booleans()):
        a, b = draw(st.lists(st.sampled_from(sorted(values)), min_size=2, max_size=2, unique=True))
        values["d"] = values[b] - values[a]
        signed.add("d")
        relations.append(Relation.adds_up([a, "d"], b))
    if len(values) >= 2 and draw(st.booleans()):
        a, b = sorted(draw(st.lists(st.sampled_from(sorted(values)), min_size=2, max_size=2, unique=True)),
                      key=values.get)
        relations.append(Relation.no_more_than([a], b))
    population = max(abs(v) for v in values.values()) + draw(st.integers(0, 3))
    assume(len(values) <= 7)
    return values, relations, threshold, population, signed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_no_masked_cell_has_a_unique_value(table):
    values, relations, threshold, population, signed = table
    shown = suppress(values, relations, threshold=threshold, upper=population, signed=signed)
    size = 1
    for k, mark in shown.marks.items():
        size *= len(domain(k, shown.marks, values, threshold, population, signed))
    assume(size <= 2_000_000)
    event(f"secondary cells: {sum(m == SECONDARY for m in shown.marks.values())}")
    options = feasible(values, relations, shown.marks, threshold, population, signed)
    for key, mark in shown.marks.items():
        assert values[key] in options[key]  # the truth is among what the reader considers
        if key in shown.unprotected:
            # Given up only when masking every cell would not help either.
            everything = {k: shown.marks.get(k, SECONDARY) for k in values}
            assert len(feasible(values, relations, everything, threshold, population, signed)[key]) == 1
        else:
            assert len(options[key]) >= 2, (key, mark, shown.marks)
    for key in values:
        if 1 <= abs(values[key]) < threshold:
            assert shown.marks.get(key) == PRIMARY   # every small count stays masked as small


def test_the_subtraction_that_used_to_work():
    # cases + controls + excluded = population: a masked cases cell was a subtraction away.
    shown = suppress({"cases": 3, "controls": 80, "excluded": 17},
                     [Relation.adds_up(["cases", "controls", "excluded"], known=100)], upper=100)
    assert [shown.text(k) for k in ("cases", "controls", "excluded")] == ["<5", "80", SECONDARY_MARK]


def test_ranges_give_values_away_too():
    # 8 = <5 + <5 leaves only 4 + 4: the total is masked as well.
    shown = suppress({"total": 8, "female": 4, "male": 4},
                     [Relation.adds_up(["female", "male"], "total")], upper=100)
    assert shown.marks == {"female": PRIMARY, "male": PRIMARY, "total": SECONDARY}
    # 9 = <5 + <5 could be 5 + 4 or 4 + 5: nothing more to mask.
    shown = suppress({"total": 9, "female": 5, "male": 4},
                     [Relation.adds_up(["female", "male"], "total")], upper=100)
    assert shown.marks == {"male": PRIMARY, "female": SECONDARY}


def test_signed_changes_and_known_cells():
    shown = suppress({"old": 20, "new": 23, "change": 3}, [Relation.adds_up(["old", "change"], "new")],
                     signed={"change"}, upper=100)
    assert [shown.text(k, signed=k == "change") for k in ("old", "new", "change")] == ["masked", "23", "+<5"]
    shown = suppress({"pop": 3, "a": 3}, [Relation.equal("a", "pop")], known={"pop"})
    assert shown.text("pop") == "<5" and shown.text("a") == "<5" and shown.unprotected == {"a"}


def test_no_masking_and_broken_relations():
    assert suppress({"a": 1}, threshold=None).text("a") == "1"
    with pytest.raises(ValueError, match="does not hold"):
        suppress({"a": 1, "b": 2}, [Relation.equal("a", "b")])


def test_tables():
    import polars as pl

    counts = pl.DataFrame({"ENDPOINT": ["A", "B"], "N_CASES": [3, 50], "N_CONTROLS": [90, 50],
                           "N_EXCLUDED": [7, 0]})
    assert mask_counts(counts).rows() == [("A", "<5", "90", "masked"), ("B", "50", "50", "0")]
    assert mask_counts(counts, threshold=None) is counts
    with pytest.raises(ValueError, match="different populations"):
        mask_counts(counts.with_columns(pl.Series("N_EXCLUDED", [7, 1])))
    table = pl.DataFrame({"N": [10, 3, None]})
    assert mask_table(table, ["N"], [Relation.adds_up([(1, "N")], (0, "N"), known=-7)])["N"].to_list() == [
        "masked", "<5", None]


def test_a_cell_pinned_by_its_own_range_masks_nothing_more():
    # "<2" can only be 1: masking its neighbours would not help, so they stay shown
    shown = suppress({"a": 1, "b": 9, "total": 10}, [Relation.adds_up(["a", "b"], "total")], threshold=2)
    assert shown.marks == {"a": PRIMARY} and shown.unprotected == {"a"}
