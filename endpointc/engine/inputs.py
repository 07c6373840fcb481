"""What the engine assumes of its input frames, checked before any work starts.

The engine reads registry tables in the normalised schema (`registry.EVENTS_SCHEMA`,
`registry.PEOPLE_SCHEMA`): text columns as text with null for missing, ages as Float64,
days as Date. A frame read some other way (``pl.scan_csv`` of a TSV registry gives dates
as text and numeric ICDVER and INDEX) would otherwise fail deep inside a query, with a
Polars message that quotes values from the data, or match nothing without a word.
`check_frames` looks at the schemas only (no data is read) and names every column at
fault and the functions that normalise a table.

>>> import polars as pl
>>> check_frames(pl.LazyFrame({"FINNGENID": ["A"], "EVENT_AGE": ["61.5"]}),
...              pl.LazyFrame({"FINNGENID": ["A"], "SEX": ["male"]}))
Traceback (most recent call last):
...
endpointc.engine.inputs.NotNormalisedError: the events frame is not normalised: no column SOURCE, APPROX_EVENT_DAY, CODE1, CODE2, CODE3, CODE4, ICDVER, CATEGORY, INDEX; EVENT_AGE is String, not Float64. Read registry tables with endpointc.load_registry (checked) or endpointc.scan_events / endpointc.scan_people (lazy), which normalise them
"""

from __future__ import annotations

import polars as pl

from ..registry import EVENTS_SCHEMA, PEOPLE_SCHEMA, REQUIRED_EVENT_COLUMNS

__all__ = ["NotNormalisedError", "check_frames"]

# The engine reads only these people columns; the others matter to the outputs
# (`results.wide_table`) and are checked when present.
_REQUIRED_PEOPLE = ("FINNGENID", "SEX")
_NORMALISERS = ("endpointc.load_registry (checked) or endpointc.scan_events / endpointc.scan_people (lazy), "
                "which normalise them")


class NotNormalisedError(ValueError):
    """An input frame lacks a column the engine reads or has one of another type.

    `problems` maps the table ("events", "people") to its messages, one per column."""

    def __init__(self, problems: dict[str, tuple[str, ...]]):
        self.problems = problems
        parts = [f"the {table} frame is not normalised: " + "; ".join(found) for table, found in problems.items()]
        super().__init__("; ".join(parts) + f". Read registry tables with {_NORMALISERS}")


def check_frames(events: pl.LazyFrame | pl.DataFrame, people: pl.LazyFrame | pl.DataFrame) -> None:
    """Raise `NotNormalisedError` unless both frames have the columns the engine reads, each
    of its normalised type (an all-null column of type Null is fine too). Columns the
    schema does not know are ignored (e.g. ``scan_events(keep_as_read=True)``'s)."""
    problems = {}
    for table, frame, schema, required in (("events", events, EVENTS_SCHEMA, REQUIRED_EVENT_COLUMNS),
                                           ("people", people, PEOPLE_SCHEMA, _REQUIRED_PEOPLE)):
        found = _problems(frame.collect_schema(), schema, required)
        if found:
            problems[table] = found
    if problems:
        raise NotNormalisedError(problems)


def _problems(have: pl.Schema, want: dict[str, pl.DataType], required: tuple[str, ...]) -> tuple[str, ...]:
    missing = [c for c in required if c not in have]
    found = [f"no column {', '.join(missing)}"] if missing else []
    if missing and len(have) == 1 and "\t" in next(iter(have)):
        found.append("its one column's name holds tabs (a TSV file read with separator=',')")
    found += [f"{c} is {have[c]}, not {t}" for c, t in want.items()
              if c in have and have[c] != t and have[c] != pl.Null]
    return tuple(found)
