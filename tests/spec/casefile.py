"""The spec case format: a definition, tiny text tables of events and people, the expected results.

A case file has sections opened by `=== NAME` lines; `#` lines before the first section
describe the case. Sections:

- `definition` (required): endpoint language text.
- `events` (required): a whitespace-aligned table with a header line. Columns are any of
  FINNGENID SOURCE EVENT_AGE APPROX_EVENT_DAY CODE1..CODE9 ICDVER CATEGORY INDEX; a column
  left out is missing on every row, except that CODE5..CODE9 are only present when listed
  (a table without CODE9 has no urgency field). `NA` is a missing value.
- `people` (optional): FINNGENID SEX APPROX_BIRTH_DATE FU_END_AGE DEATH; by default
  `DEFAULT_PEOPLE` (P1..P6, sexes alternating female, male).
- `endpoints` (optional): names to evaluate, separated by spaces (their dependencies are
  evaluated but not reported); by default every endpoint.
- `expected`: FINNGENID ENDPOINT STATUS AGE YEAR NEVT for cases and excluded people, in
  any order (compared after sorting by ENDPOINT, FINNGENID); or
- `error`: a text that the error raised by evaluation must contain.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

__all__ = ["Case", "read_case", "parse_case", "parse_table", "DEFAULT_PEOPLE", "EVENT_COLUMNS"]

EVENT_COLUMNS = {
    "FINNGENID": pl.Utf8, "SOURCE": pl.Utf8, "EVENT_AGE": pl.Float64, "APPROX_EVENT_DAY": pl.Date,
    "CODE1": pl.Utf8, "CODE2": pl.Utf8, "CODE3": pl.Utf8, "CODE4": pl.Utf8,
    "ICDVER": pl.Utf8, "CATEGORY": pl.Utf8, "INDEX": pl.Utf8,
}
OPTIONAL_EVENT_COLUMNS = {f"CODE{i}": pl.Utf8 for i in range(5, 10)}
PEOPLE_COLUMNS = {
    "FINNGENID": pl.Utf8, "SEX": pl.Utf8, "APPROX_BIRTH_DATE": pl.Date, "FU_END_AGE": pl.Float64,
    "DEATH": pl.Int64,
}
EXPECTED_COLUMNS = {
    "FINNGENID": pl.Utf8, "ENDPOINT": pl.Utf8, "STATUS": pl.Utf8, "AGE": pl.Float64,
    "YEAR": pl.Int32, "NEVT": pl.Int64,
}

DEFAULT_PEOPLE_TEXT = """\
FINNGENID SEX    APPROX_BIRTH_DATE FU_END_AGE DEATH
P1        female 1950-01-01        70.0       0
P2        male   1950-01-01        70.0       0
P3        female 1950-01-01        70.0       0
P4        male   1950-01-01        70.0       0
P5        female 1950-01-01        70.0       0
P6        male   1950-01-01        70.0       0
"""


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    definition: str
    events: pl.DataFrame
    people: pl.DataFrame
    endpoints: tuple[str, ...] | None
    expected: pl.DataFrame | None
    error: str | None


def _value(text: str, dtype):
    if text == "NA":
        return None
    if dtype == pl.Float64:
        return float(text)
    if dtype in (pl.Int32, pl.Int64):
        return int(text)
    if dtype == pl.Date:
        return dt.date.fromisoformat(text)
    return text


def parse_table(text: str, columns: dict, *, optional: dict | None = None, fill: bool) -> pl.DataFrame:
    """A whitespace-aligned table with a header; unknown columns are an error (typos)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    header = lines[0].split()
    known = {**columns, **(optional or {})}
    unknown = [c for c in header if c not in known]
    if unknown:
        raise ValueError(f"unknown columns {unknown}")
    rows = []
    for line in lines[1:]:
        cells = line.split()
        if len(cells) != len(header):
            raise ValueError(f"row has {len(cells)} cells, header has {len(header)}: {line!r}")
        rows.append({c: _value(v, known[c]) for c, v in zip(header, cells)})
    names = list(columns) if fill else [c for c in columns if c in header]
    names += [c for c in (optional or {}) if c in header]
    data = {c: [r.get(c) for r in rows] for c in names}
    return pl.DataFrame(data, schema={c: known[c] for c in names})


def parse_case(text: str, *, name: str = "<case>") -> Case:
    sections: dict[str, list[str]] = {}
    description: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("=== "):
            key = line[4:].strip()
            if key in sections:
                raise ValueError(f"{name}: section {key} appears twice")
            current = sections[key] = []
        elif current is None:
            description.append(line.lstrip("# ").rstrip())
        else:
            current.append(line)
    unknown = set(sections) - {"definition", "events", "people", "endpoints", "expected", "error"}
    if unknown or "definition" not in sections or "events" not in sections:
        raise ValueError(f"{name}: needs definition and events sections, got {sorted(sections)}")
    if ("expected" in sections) == ("error" in sections):
        raise ValueError(f"{name}: needs exactly one of expected / error")
    body = {k: "\n".join(v) for k, v in sections.items()}
    expected = None
    if "expected" in body:
        expected = parse_table(body["expected"], EXPECTED_COLUMNS, fill=True)
    endpoints = tuple(body["endpoints"].split()) if "endpoints" in body else None
    return Case(
        name=name,
        description=" ".join(d for d in description if d),
        definition=body["definition"],
        events=parse_table(body["events"], EVENT_COLUMNS, optional=OPTIONAL_EVENT_COLUMNS, fill=True),
        people=parse_table(body.get("people", DEFAULT_PEOPLE_TEXT), PEOPLE_COLUMNS, fill=True),
        endpoints=endpoints,
        expected=expected,
        error=body["error"].strip() if "error" in body else None,
    )


def read_case(path: Path) -> Case:
    return parse_case(path.read_text(encoding="utf-8"), name=f"{path.parent.name}/{path.stem}")


DEFAULT_PEOPLE = parse_table(DEFAULT_PEOPLE_TEXT, PEOPLE_COLUMNS, fill=True)
