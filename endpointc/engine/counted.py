"""Units -> the own rows of counted rules that are kept.

Input: a bucket's units, `Prepared`, some endpoints with a counted rule
(`EndpointPlan.counted`: `mode`, `min`, spaced or clustered `min`, `needs other`) and their
`when`, with the final cases of the endpoints whose facts it reads; output: (UNIT, EP) of
those endpoints' own units after mode, `when`, min (`spacing.reaching_spaced` for the
spaced and clustered ones) and needs-other. Every other endpoint's own units are folded
(`signatures`), so a row alone decides whether they are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from .columns import order_day
from .conditions import When
from .matching import ENGINE
from .prepare import Prepared
from .spacing import reaching_spaced
from .units import code1_per_row

__all__ = ["counted_rows"]

_PER_RULE = ["PID", "EP", "RULE"]


def counted_rows(prep: Prepared, units: pl.DataFrame, members: Sequence[int], when: When | None,
                 cases: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
    """The kept own units (UNIT, EP) of the counted endpoints `members`, whose `when` is
    `when`; `cases`: final cases by position, of the endpoints it reads facts of."""
    counted = prep.sigs.counted
    if any(prep.tables.level_counted):  # not every counted endpoint at once
        counted = counted.filter(pl.col("EP").is_in(list(members)))
    rows = units.lazy().join(counted.lazy(), on="SIG")
    if prep.uses_mode:
        rows = _mode(prep, rows)
    if when is not None:
        rows = when.apply(rows.collect(engine=ENGINE), cases).lazy()
    spaced = prep.tables.spaced.height > 0
    rows = _min_and_needs_other(prep, rows.select("UNIT", "PID", "EP", "RULE", "N",
                                                  *(["_ORDER_KEY"] if spaced else [])))
    rows = rows.select("UNIT", "EP")
    return (rows.unique() if prep.sigs.counted_repeat else rows).collect(engine=ENGINE)


def _mode(prep: Prepared, rows: pl.LazyFrame) -> pl.LazyFrame:
    """The rows of mode rules whose CODE1 is the person's majority code of its group (the
    codes sharing all but the last character); rows of other rules pass."""
    mode_rules = prep.tables.mode_rules.lazy()
    moded = rows.join(mode_rules, on=["EP", "RULE"], how="semi")
    if not code1_per_row(prep):  # CODE1 is a key column: one per moded signature
        moded = moded.join(prep.sigs.code1.lazy(), on="SIG")
    winners = (
        moded.filter(pl.col("CODE1").is_not_null())
        .group_by(*_PER_RULE, "CODE1").agg(pl.col("N").sum().alias("_CODE_ROWS"))
        .with_columns(pl.col("CODE1").str.head(-1).alias("_CODE_GROUP"))
        .with_columns(pl.col("_CODE_ROWS").sum().over(*_PER_RULE, "_CODE_GROUP").alias("_GROUP_ROWS"))
        # a share above 0.5 implies the single most frequent code
        .filter(pl.col("_CODE_ROWS") * 2 > pl.col("_GROUP_ROWS"))
        .select(*_PER_RULE, "CODE1")
    )
    return pl.concat([
        rows.join(mode_rules, on=["EP", "RULE"], how="anti"),
        moded.join(winners, on=[*_PER_RULE, "CODE1"], how="semi").select(pl.exclude("CODE1")),
    ], how="diagonal")


def _min_and_needs_other(prep: Prepared, rows: pl.LazyFrame) -> pl.LazyFrame:
    """The rows of people who pass their rule's min and their endpoint's needs-other."""
    mins, needs, spaced = prep.tables.mins, prep.tables.needs, prep.tables.spaced
    if not (mins.height or needs.height or spaced.height):
        return rows
    # only endpoints with a min or needs-other rule are counted here (needs-other looks at
    # every rule of its endpoint); the others pass through untouched
    counting = sorted(set(mins["EP"]) | set(needs["EP"]) | set(spaced["EP"]))
    plain = rows.filter(~pl.col("EP").is_in(counting))
    rows = rows.filter(pl.col("EP").is_in(counting))
    if spaced.height:  # read twice below
        rows = rows.collect(engine=ENGINE).lazy()
    kept = rows.group_by(*_PER_RULE).agg(pl.col("N").sum().alias("_RULE_ROWS"))
    if mins.height:
        kept = kept.join(mins.lazy(), on=["EP", "RULE"], how="left").filter(
            pl.col("_RULE_ROWS") >= pl.col("_MIN_EVENTS").fill_null(1))
    if spaced.height:
        # a spaced rule's units are single rows (see `signatures`): each has its own day
        dated = (rows.join(spaced.lazy().with_row_index("_SR"), on=["EP", "RULE"])
                 .select(*_PER_RULE, order_day(pl.col("_ORDER_KEY")).alias("DAY"), "_SR", "_MIN_EVENTS",
                         "_APART", "_GAP")
                 .filter(pl.col("DAY").is_not_null()).collect(engine=ENGINE))
        kept = pl.concat([kept.join(spaced.lazy(), on=["EP", "RULE"], how="anti"),
                          kept.join(reaching_spaced(dated).lazy(), on=_PER_RULE, how="semi")])
    if needs.height:
        flagged = needs.lazy().with_columns(pl.lit(True).alias("_NEEDS_OTHER"))
        kept = (
            kept.with_columns(pl.len().over("PID", "EP").alias("_RULES_PASSED"))
            .join(flagged, on=["EP", "RULE"], how="left")
            .filter(pl.col("_NEEDS_OTHER").is_null() | (pl.col("_RULES_PASSED") >= 2))
        )
    return pl.concat([
        plain,
        rows.join(kept.select(*_PER_RULE), on=_PER_RULE, how="semi"),
    ])
