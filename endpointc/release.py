"""FinnGen release files: the endpoint longitudinal file and the intermediate counts.

Besides the wide table, a FinnGen data freeze ships two files made by its endpoint
pipeline, which `endpointc run --longitudinal` and `--intermediate-counts` write the
same way (docs/release-files.md):

**Endpoint longitudinal file** (`longitudinal_parts`, `write_longitudinal`): one row per
case event, FINNGENID, EVENT_AGE, EVENT_YEAR, ENDPOINT, in that order. That is FinnGen's
``finngen_R<N>_endpoint_longitudinal_1.0.txt.gz`` (tab-separated, with that header; the
Risteys pipeline asserts exactly these columns of its ``FINNGEN_ENDPOINTS_longitudinal``
input in ``pipeline/build_input_hdf.py`` and ``pipeline/aggregate_by_endpoint.py`` of
FINNGEN/risteys, formerly dsgelab/risteys; DF4's file also had EVENT_TYPE and ICDVER and
no header). The rows of an endpoint are exactly the events its NEVT counts, for its
cases only (`engine.events.case_event_parts`): so a person is in it for an endpoint iff
a case, with NEVT rows. EVENT_AGE is the event's, EVENT_YEAR the year of its
APPROX_EVENT_DAY (missing without a day). Rows are sorted by FINNGENID (as FinnGen's
file is), EVENT_AGE (missing last), ENDPOINT, EVENT_YEAR; two events of one person and
endpoint at the same age and year are two equal rows, as NEVT counts both. Parquet, or
TSV.gz (EVENT_AGE with two decimals, FinnGen's precision; ``NA`` for missing).

**Intermediate counts** (`intermediate_counts`): people left after each step of
FinnGen's endpoint definition, as Risteys imports them for its "endpoint explainer"
(``risteys_elixir/import_intermediate_counts.exs``): columns ENDPOINT, SOURCE (``ALL``:
Risteys reads only those rows; registry-specific rows are not written), then

====================================================  =========================================
column                                                people left after
====================================================  =========================================
``N(all)``                                            nothing: the population
``N(-sex)``                                           `sex` (people of that sex)
``N(-conditions)``                                    `require`, as FinnGen applies CONDITIONS:
                                                      to everyone of that sex, before any code
``N(-regex)``                                         code match: an event selected by a rule's
                                                      patterns (with its vocabulary's pins)
``N(-pre_conditions/mainonly/mode/icdver/reimb_icd)``  `except`, `main`, `with atc`, `mode` and
                                                      `when` (PRE_CONDITIONS)
``N(-nevt)``                                          `min`, its spacing, and `needs other`
``N(pass+include_unique)``                            the union with the included endpoints'
                                                      cases: the cases (N_CASES)
====================================================  =========================================

Risteys stores them as the steps all, sex_rule, conditions, filter_registries, multi,
min_number_events and includes; its later importer reads the same numbers from a
tab-separated file with ``N(-regex)`` merged into the next column (named
``N(-pre_conditions/mainonly/mode/regex_icdver/reimb_icd)``). The step counts are those
of `endpointc attrition`'s steps ("events by pattern", "after except, main, ...", "after
when", "all rules"), for all rules together and among the people left after sex and
conditions; a `require` conjunct that reads the endpoint itself (its own candidate
events) cannot come before the codes and counts in the last step only. Like attrition,
every count comes from the Polars engine on variants of the endpoint's plan (one step
kept or removed), here of every endpoint at once, evaluated in one counts-only pass
(`engine.events.counts_only`); variants with the same meaning are evaluated once.

Masking is `masking.suppress`, with what a reader knows: N(all) and N(-sex) (taken as
given), N(pass+include_unique) where counts.tsv shows that endpoint's N_CASES, that each
step keeps at most the people of the one before (the last at most those after
conditions, and without a self-reading `require` at least those after nevt); and, since
the people one step drops are a count too (Risteys refuses a file where two consecutive
steps differ by 1 to 4), each such difference that is small is a masked cell of its own,
never shown, which the shown steps must not pin down.

>>> parts = longitudinal_parts(program, events, people, buckets=4)       # doctest: +SKIP
>>> write_longitudinal(parts, "out/endpoint_longitudinal.parquet")       # doctest: +SKIP
>>> intermediate_counts(program, events, people).write_csv(separator="\\t")  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

# attrition's plan rewrites: a rule's events by its patterns alone, and without its `min`
from .attrition import _loose, _stripped
from .engine.events import case_event_parts, counts_only
from .masking import MASK_THRESHOLD, Relation, check_threshold, is_masked, mask_counts, suppress
from .plan import AllOf, Cond, EndpointFact, EndpointPlan, Program, walk
# endpoints.parquet's Parquet settings and TSV format
from .results import INTERMEDIATE_FILE, LONGITUDINAL_FILES, _ROW_GROUP_SIZE, _ZSTD_LEVEL, _write_tsv

__all__ = [
    "LONGITUDINAL_SCHEMA", "LONGITUDINAL_FILES", "INTERMEDIATE_FILE", "INTERMEDIATE_STEPS",
    "longitudinal_parts", "longitudinal_table", "write_longitudinal", "intermediate_counts", "release_writers",
]

LONGITUDINAL_SCHEMA = pl.Schema({"FINNGENID": pl.String, "EVENT_AGE": pl.Float64, "EVENT_YEAR": pl.Int32,
                                 "ENDPOINT": pl.String})
INTERMEDIATE_STEPS = (
    "N(all)", "N(-sex)", "N(-conditions)", "N(-regex)", "N(-pre_conditions/mainonly/mode/icdver/reimb_icd)",
    "N(-nevt)", "N(pass+include_unique)",
)
_ALL, _SEX, _CONDITIONS, _, _, _NEVT, _FINAL = INTERMEDIATE_STEPS


# -- the endpoint longitudinal file -----------------------------------------------------------

def longitudinal_parts(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
                       endpoints: Sequence[str] | None = None, buckets: int = 1) -> Iterator[pl.DataFrame]:
    """The endpoint longitudinal rows (LONGITUDINAL_SCHEMA) of the selected endpoints
    (default: all), one sorted frame per person bucket; their concatenation is the sorted
    file whatever `buckets` is, and only one bucket is held at a time."""
    # case_event_parts orders by FINNGENID, EVENT_AGE, ENDPOINT, day: by EVENT_YEAR too
    for part in case_event_parts(program, events, people, endpoints=endpoints, buckets=buckets):
        yield part.select(pl.col("FINNGENID"), pl.col("EVENT_AGE").cast(pl.Float64),
                          pl.col("APPROX_EVENT_DAY").dt.year().cast(pl.Int32).alias("EVENT_YEAR"), pl.col("ENDPOINT"))


def longitudinal_table(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
                       endpoints: Sequence[str] | None = None) -> pl.DataFrame:
    """The whole endpoint longitudinal table in memory (small registries, tests)."""
    return pl.concat(list(longitudinal_parts(program, events, people, endpoints=endpoints)))


def write_longitudinal(parts: Iterable[pl.DataFrame], path: str | os.PathLike[str], *,
                       fmt: str = "parquet", age_decimals: int = 2) -> Path:
    """Write the frames of `longitudinal_parts` to `path` as one file, part after part
    (never all in memory): ``fmt`` "parquet" (zstd, as endpoints.parquet) or "tsv.gz"
    (EVENT_AGE with `age_decimals` decimals; the gzip header holds no time or name, so the
    same rows give the same bytes). Writes `path` directly: `release_writers` gives it a
    temporary path that `write_results` renames into place."""
    target = Path(path)
    if fmt == "parquet":
        _as_lazy(parts).sink_parquet(target, compression="zstd", compression_level=_ZSTD_LEVEL,
                                     statistics=True, row_group_size=_ROW_GROUP_SIZE)
    elif fmt == "tsv.gz":
        with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                      compresslevel=6) as packed:
            header = True
            for part in parts:
                _write_tsv_part(part, packed, header=header, age_decimals=age_decimals)
                header = False
            if header:
                _write_tsv_part(pl.DataFrame(schema=LONGITUDINAL_SCHEMA), packed, header=True,
                                age_decimals=age_decimals)
    else:
        _check_format(fmt)
    return target


def _check_format(fmt: str) -> None:
    if fmt not in LONGITUDINAL_FILES:
        raise ValueError(f"longitudinal file: unknown format {fmt!r} (expected one of "
                         f"{', '.join(LONGITUDINAL_FILES)})")


def _write_tsv_part(part: pl.DataFrame, packed: gzip.GzipFile, *, header: bool, age_decimals: int) -> None:
    # as text first: writing to the file object flushes it, and each flush would change
    # the compressed bytes with the number of parts
    packed.write(part.write_csv(separator="\t", line_terminator="\n", null_value="NA",
                                float_precision=age_decimals, include_header=header).encode())


def _as_lazy(parts: Iterable[pl.DataFrame]) -> pl.LazyFrame:
    """The frames as one LazyFrame read by a streaming sink part after part."""
    def source(with_columns, predicate, n_rows, batch_size) -> Iterator[pl.DataFrame]:
        left = n_rows
        for part in parts:
            part = part if with_columns is None else part.select(with_columns)
            part = part if predicate is None else part.filter(predicate)
            if left is not None:
                part, left = part.head(left), left - min(left, part.height)
            yield part
            if left == 0:
                return

    return register_io_source(source, schema=LONGITUDINAL_SCHEMA)


# -- the intermediate counts --------------------------------------------------------------------

def intermediate_counts(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
                        endpoints: Sequence[str] | None = None, buckets: int = 1,
                        mask_threshold: int | None = MASK_THRESHOLD) -> pl.DataFrame:
    """One row per selected endpoint (default: all), sorted by ENDPOINT: ENDPOINT, SOURCE
    ("ALL"), then the `INTERMEDIATE_STEPS` (see the module doc). With masking on (the
    default) the step columns are text; ``mask_threshold=None`` gives the numbers."""
    check_threshold(mask_threshold)
    events, people = events.lazy(), people.lazy()
    positions = {name: i for i, name in enumerate(program.names)}
    names = sorted(dict.fromkeys(endpoints if endpoints is not None else positions))
    unknown = [n for n in names if n not in positions]
    if unknown:
        raise KeyError(f"unknown endpoint(s): {', '.join(unknown)}")
    variants, steps = _variants(program, names)
    counts = counts_only(Program(endpoints=program.endpoints + variants), events, people,
                         endpoints=list(dict.fromkeys([*names, *(v.name for v in variants)])), buckets=buckets)
    found = {row["ENDPOINT"]: row for row in counts.iter_rows(named=True)}
    population = people.select(pl.len()).collect().item()
    by_sex = dict(people.group_by("SEX").len().collect().iter_rows())
    rows = []
    for name in names:
        ep, step = program.endpoints[positions[name]], steps[name]
        sex = population if ep.sex is None else by_sex.get(ep.sex, 0)
        conditions = sex if step.conditions is None else found[step.conditions]["N_CONTROLS"]
        cases = [0 if v is None else found[v]["N_CASES"] for v in (step.regex, step.multi, step.nevt, name)]
        rows.append((name, "ALL", population, sex, conditions, *cases))
    table = pl.DataFrame(rows, schema={"ENDPOINT": pl.String, "SOURCE": pl.String,
                                       **{s: pl.Int64 for s in INTERMEDIATE_STEPS}}, orient="row")
    if mask_threshold is None:
        return table
    # counts.tsv's N_CASES is the last step: where counts.tsv shows it, a reader knows it
    shown_cases = mask_counts(pl.DataFrame([found[n] for n in names]).select(
        "ENDPOINT", "N_CASES", "N_CONTROLS", "N_EXCLUDED"), threshold=mask_threshold, population=population)
    known_final = [text.isdigit() for text in shown_cases["N_CASES"]]
    reads_itself = [steps[n].reads_itself for n in names]
    return _masked(table, known_final, reads_itself, mask_threshold, population)


def _split_require(ep: EndpointPlan) -> tuple[Cond | None, Cond | None]:
    """(conjuncts of `require` about other endpoints only, conjuncts reading the endpoint itself)."""
    def flat(cond: Cond | None) -> list[Cond]:
        if isinstance(cond, AllOf):   # each `require` line is a conjunction of its own
            return [c for arg in cond.args for c in flat(arg)]
        return [] if cond is None else [cond]

    def join(parts: list[Cond]) -> Cond | None:
        return None if not parts else parts[0] if len(parts) == 1 else AllOf(args=tuple(parts))

    def reads_itself(cond: Cond) -> bool:
        return any(isinstance(n, EndpointFact) and n.endpoint == ep.name for n in walk(cond))

    parts = flat(ep.require)
    return join([c for c in parts if not reads_itself(c)]), join([c for c in parts if reads_itself(c)])


@dataclass(frozen=True)
class _Steps:
    """The endpoints whose counts an endpoint's steps read (None: the step does nothing):
    N_CONTROLS of `conditions`, N_CASES of the others (and of the endpoint, last)."""

    conditions: str | None = None
    regex: str | None = None
    multi: str | None = None
    nevt: str | None = None
    reads_itself: bool = False   # a `require` conjunct reads the endpoint itself


def _variants(program: Program, names: Sequence[str]) -> tuple[tuple[EndpointPlan, ...], dict[str, _Steps]]:
    """The plan variants the steps count, and each endpoint's `_Steps`.

    Each variant keeps the endpoint's sex and its conditions as `require`, so that its cases
    are the people left after that step. A variant is named ENDPOINT__STEP, unless one with
    the same meaning exists (the endpoint itself included: control rules never change the
    cases)."""
    by_name = {ep.name: ep for ep in program.endpoints}
    taken = set(by_name)
    meanings: dict[EndpointPlan, str] = {}
    for name in names:
        meanings.setdefault(_meaning(by_name[name]), name)
    made: list[EndpointPlan] = []

    def variant(ep: EndpointPlan, step: str, plan: EndpointPlan) -> str:
        key = _meaning(plan)
        if key not in meanings:
            name = f"{ep.name}__{step}"
            while name in taken:  # a real endpoint could carry the same name
                name += "_"
            taken.add(name)
            made.append(plan.model_copy(update={"name": name}))
            meanings[key] = name
        return meanings[key]

    steps: dict[str, _Steps] = {}
    for name in names:
        ep = by_name[name]
        conditions, own = _split_require(ep)
        base = ep.model_copy(update={"includes": (), "require": conditions, "control_exclude": (),
                                     "control_require": None})
        found: dict = {"reads_itself": own is not None}
        if conditions is not None:
            # no rules, hence no cases: its controls are the people of the sex meeting them
            found["conditions"] = variant(ep, "conditions", EndpointPlan(name="", sex=ep.sex,
                                                                         control_require=conditions))
        if ep.rules:
            found["regex"] = variant(ep, "regex", base.model_copy(update={
                "rules": tuple(_stripped(_loose(r)) for r in ep.rules), "when": None}))
            found["multi"] = variant(ep, "multi", base.model_copy(update={"rules": tuple(map(_loose, ep.rules))}))
            found["nevt"] = variant(ep, "nevt", base)
        steps[name] = _Steps(**found)
    return tuple(made), steps


def _meaning(plan: EndpointPlan) -> EndpointPlan:
    """The plan but its name, and but its control rules where it has rules or includes:
    the steps read the controls only of plans without either (the conditions variants)."""
    if plan.rules or plan.includes:
        plan = plan.model_copy(update={"control_exclude": (), "control_require": None})
    return plan.model_copy(update={"name": "", "span": None})


def _masked(table: pl.DataFrame, known_final: Sequence[bool], reads_itself: Sequence[bool],
            threshold: int, population: int) -> pl.DataFrame:
    """The step columns through `suppress`, one endpoint at a time (rows share no hidden
    cell: what they share, N(all) and N(-sex), a reader knows)."""
    texts: dict[tuple, list[str]] = {}
    out = []
    for values, final_known, itself in zip(table.select(INTERMEDIATE_STEPS).rows(), known_final, reads_itself):
        key = (values, final_known, itself)
        if key not in texts:
            texts[key] = _masked_row(dict(zip(INTERMEDIATE_STEPS, values)), final_known, itself, threshold,
                                     population)
        out.append(texts[key])
    return table.with_columns(pl.Series(s, [row[i] for row in out], dtype=pl.String)
                              for i, s in enumerate(INTERMEDIATE_STEPS))


def _masked_row(cells: dict, final_known: bool, reads_itself: bool, threshold: int, population: int) -> list[str]:
    """One endpoint's steps as shown. Each step keeps at most the people of the step it
    follows; a small number of people dropped (or, by includes, added) between two steps
    is a cell of its own, ("gap", upper step, lower step), that is never shown."""
    pairs = list(zip(INTERMEDIATE_STEPS[:-2], INTERMEDIATE_STEPS[1:-1]))
    # includes only add people, unless a `require` reading the endpoint itself drops some
    pairs.append((_NEVT, _FINAL) if reads_itself and cells[_FINAL] < cells[_NEVT] else (_FINAL, _NEVT))
    relations = [Relation.no_more_than([_FINAL], _CONDITIONS)]
    for upper, lower in pairs:
        gap = cells[upper] - cells[lower]
        if is_masked(gap, threshold):
            cells[("gap", upper, lower)] = gap
            relations.append(Relation.adds_up([lower, ("gap", upper, lower)], upper))
        else:
            relations.append(Relation.no_more_than([lower], upper))
    known = [_ALL, _SEX, *([_FINAL] if final_known else [])]
    shown = suppress(cells, relations, threshold=threshold, upper=population, known=known)
    return [shown.text(s) for s in INTERMEDIATE_STEPS]


# -- for `run` ------------------------------------------------------------------------------

# The longitudinal pass keeps every matched row apart (`case_event_parts`), so its buckets
# are a quarter of the run's: on DF12 over 3.1e6 events, one bucket took 77 s and 1.7 GB at
# its peak, four 64 s and 0.94 GB (the run's evaluation: 23-32 s, 0.67 GB).
_LONGITUDINAL_SPLIT = 4


def release_writers(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
                    endpoints: Sequence[str] | None = None, buckets: int = 1, longitudinal: str | None = None,
                    intermediate: bool = False, mask_threshold: int | None = MASK_THRESHOLD,
                    ) -> list[tuple[str, Callable[[Path], None]]]:
    """(file name, writer) pairs for `results.write_results(extra=...)`: the longitudinal
    file in format `longitudinal` ("parquet" or "tsv.gz"; None: none), in 4 times `buckets`,
    and, with `intermediate`, intermediate_counts.tsv; each is computed when written, so
    that all results are renamed into place together or not at all."""
    check_threshold(mask_threshold)
    writers: list[tuple[str, Callable[[Path], None]]] = []
    if longitudinal is not None:
        _check_format(longitudinal)
        writers.append((LONGITUDINAL_FILES[longitudinal], lambda path: write_longitudinal(
            longitudinal_parts(program, events, people, endpoints=endpoints,
                               buckets=buckets * _LONGITUDINAL_SPLIT), path, fmt=longitudinal)))
    if intermediate:
        writers.append((INTERMEDIATE_FILE, lambda path: _write_tsv(intermediate_counts(
            program, events, people, endpoints=endpoints, buckets=buckets, mask_threshold=mask_threshold), path)))
    return writers
