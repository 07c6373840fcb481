"""Dated rows of spaced and clustered rules -> the (person, rule) pairs that reach their `min`.

Input: the rows of rules with `min N apart D` or `min N within D` left after `when` (PID,
EP, RULE, DAY and the rule's N, kind and D in whole days, `ProgramTables.spaced`); only
dated rows count. Output: (PID, EP, RULE) of the persons whose rows of the rule reach N.

Both are computed on all rows at once, sorted by (person and rule, DAY), with one i64 key
per row that orders them so: a group's rank times a width wider than any day offset plus
a gap, plus the day's offset. "The rows of my group at most D after me" or "the first row
of my group at least D after me" is then one `search_sorted` of every row's key + D.

- `within`: each row opens a window [day, day + D]; the index of the first row past it
  minus the row's own index is how many rows it holds. A group reaches N when a window
  does.
- `apart`: the greedy picks follow "next": each row's first row at least D later (or
  none). N picks exist when N - 1 steps of next from the group's first row land on a row;
  the steps are taken by pointer doubling (next of next, ...), one gather per bit of
  N - 1, O(n log N), never a loop over rows.
"""

from __future__ import annotations

import polars as pl

from .columns import pack

__all__ = ["reaching_spaced"]

_GROUP = ["PID", "EP", "RULE"]


def reaching_spaced(rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` (PID, EP, RULE, DAY (i64, not null), _SR (the rule's rank among the spaced
    rules), _MIN_EVENTS, _APART, _GAP) -> the (PID, EP, RULE) groups that reach their min."""
    parts = [pl.DataFrame(schema={c: rows.schema[c] for c in _GROUP})]
    for (apart,), part in rows.partition_by("_APART", as_dict=True).items():
        part = part.with_columns(pack("_SR", pl.col("PID")).alias("_G")).sort("_G", "DAY")
        parts.append((_apart if apart else _within)(part))
    return pl.concat(parts)


def _keys(rows: pl.DataFrame) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(group rank, key, key + gap) of rows sorted by (_G, DAY)."""
    day = rows["DAY"]
    low, span = day.min(), day.max() - day.min()
    # a gap past the span reaches no other row: clipped to span + 1, so that key + gap
    # stays inside the group's range of keys [group * width, (group + 1) * width)
    width = 2 * span + 2
    group = rows["_G"].rle_id().cast(pl.Int64)
    key = group * width + (day - low)
    return group, key, key + rows["_GAP"].clip(upper_bound=span + 1)


def _within(rows: pl.DataFrame) -> pl.DataFrame:
    _, key, reach = _keys(rows)
    held = key.search_sorted(reach, side="right").cast(pl.Int64) - pl.int_range(rows.height, eager=True)
    return rows.filter(held >= rows["_MIN_EVENTS"]).select(_GROUP).unique()


def _apart(rows: pl.DataFrame) -> pl.DataFrame:
    n = rows.height
    group, key, reach = _keys(rows)
    following = key.search_sorted(reach, side="left").cast(pl.Int64)
    # a row past the end or in a later group is no pick of this group: n, which leads to n
    same = (following < n) & (group.gather(following.clip(upper_bound=n - 1)) == group)
    jump = pl.select(pl.when(same).then(following).otherwise(n).append(n)).to_series()
    starts = (rows.with_columns(pl.int_range(n, dtype=pl.Int64).alias("_AT"))
              .filter(group != group.shift(1, fill_value=-1)))
    at, steps = starts["_AT"], starts["_MIN_EVENTS"].cast(pl.Int64) - 1
    for bit in range(int(steps.max()).bit_length()):
        at = pl.select(pl.when((steps // 2**bit) % 2 == 1).then(jump.gather(at)).otherwise(at)).to_series()
        jump = jump.gather(jump)
    return starts.filter(at < n).select(_GROUP)
