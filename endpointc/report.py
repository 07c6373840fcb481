"""A static, offline HTML report of a library evaluated over a registry.

`build_report` writes a folder that opens in any browser from disk, with no network and no
JavaScript needed to read it (a small inline script adds a search box and a tag filter as
progressive enhancement; without it, every endpoint is listed and tag pages do the filtering):

- ``index.html``: every endpoint with its title, tags and masked N cases / controls / excluded;
- ``endpoints/NAME.html``: the definition in plain words (`describe.describe_endpoint`) and as
  canonical source text (`fmt`), counts, attrition step by step (`attrition.attrition`), an
  age-at-first-event histogram by sex, cases by registry source, and links to the endpoints
  it includes, is included by, or refers to;
- ``tags/TAG.html``: the endpoints of one tag; ``style.css``.

Green-data discipline: every aggregate number of the whole report is masked in one
`masking.suppress` (``<5`` by default, ``masked`` for a count that would give one away),
with what a reader knows about them: per endpoint cases + controls + excluded = the
population (shown); cases by sex plus those without an age = cases; a sex's histogram bins
add up to its cases; first-event sources add up to the cases, the pooled bar to the sources
it pools, any-event counts lie between the first-event count and the cases; the attrition
steps' own relations (`attrition.attrition_counts`), whose cases and controls are the
counts'. Histogram bins are merged with their neighbours until each holds 0 or at least
`threshold` people, so no bar is small and bars still add up to the total; source
categories under the threshold are pooled into "other sources", and a bar whose value is
masked is not drawn (its length would tell). ``mask_threshold=None`` shows everything (the
CLI warns).

Every number comes from one pass of the Polars engine over the events: the program and the
plan variants of every endpoint's attrition steps (`attrition.attrition_steps`) evaluated
together, with the case events of the program's endpoints
(`engine.polars.evaluate_with_case_events`). The plots are SVG text written directly
(`svg.py`), a millisecond or so each: a plotting library took a quarter of a second per plot.

Cases by registry source are exact: the case event rows of each endpoint are rebuilt with
the Polars engine's own selection (own rules after mode, `when`, min, needs-other, plus
the case rows of included endpoints under this endpoint's `when`), so their number per
case equals NEVT. Two columns are shown: the SOURCE of the first event (earliest by
EVENT_AGE, then APPROX_EVENT_DAY, ties by SOURCE name) and the number of cases with at least
one case event from each SOURCE.

Output bytes are deterministic (sorted everything, no timestamps). The folder is built
under a temporary name beside ``out_dir`` and renamed into place; an existing folder is
replaced only if it holds a previous report.

>>> build_report(program, events, people, "report", files=trees)   # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import hashlib
import html
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import polars as pl

from . import ast, svg
from .describe import describe_endpoint
from .masking import MASK_THRESHOLD, SECONDARY_MARK, Relation, check_threshold, mask_count, suppress
from .plan import Program, cond_endpoints
from .results import uninterrupted

__all__ = ["build_report", "age_bins", "check_target", "ReportError", "MARKER", "AGE_BIN_WIDTH", "SOURCE_NAMES"]

MARKER = ".endpointc-report"
AGE_BIN_WIDTH = 10
# Ages above the last edge fall in the last bin; FinnGen ages are under 110.
_AGE_EDGES = tuple(range(0, 100 + AGE_BIN_WIDTH, AGE_BIN_WIDTH)) + (120,)
SOURCE_NAMES: dict[str, str] = {
    "INPAT": "hospital inpatient", "OUTPAT": "hospital outpatient", "PRIM_OUT": "primary care",
    "DEATH": "cause of death", "OPER_IN": "operation (inpatient)", "OPER_OUT": "operation (outpatient)",
    "REIMB": "drug reimbursement", "PURCH": "drug purchase", "CANC": "cancer registry",
}
_COUNT_CELL = '<td class="n">'
_SEXES = (("female", "Female"), ("male", "Male"), (None, "Sex unknown"))
_OTHER_SOURCES = "other sources"


class ReportError(ValueError):
    """The report cannot be written where asked (e.g. the folder is not a previous report)."""


@dataclass(frozen=True)
class _Info:
    """What the text says about an endpoint beyond its meaning: metadata and its source."""

    title: str = ""
    tags: tuple[str, ...] = ()
    file: str = ""
    source: str = ""


# -- entry point ------------------------------------------------------------------------

def build_report(program: Program, events: pl.LazyFrame, people: pl.LazyFrame,
                 out_dir: str | os.PathLike[str], *, files: Sequence[ast.File] = (),
                 mask_threshold: int | None = MASK_THRESHOLD, title: str = "Endpoint report",
                 attrition: bool = True, on_progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Evaluate `program` over `events`/`people` and write the HTML report into `out_dir`.

    `files` are the parsed definition files the program was compiled from: they give titles,
    tags and source text (without them pages show the plan only). `attrition=False` leaves
    out the per-step attrition tables (their plan variants make the one evaluation larger).
    `on_progress(step, done, total)` hears what is being done: ``evaluating`` (0 of 1, then
    1 of 1), then ``pages`` (one per endpoint page). Returns `out_dir`.
    """
    check_threshold(mask_threshold)
    out = Path(out_dir)
    check_target(out)
    progress = on_progress or (lambda step, done, total: None)
    progress("evaluating", 0, 1)
    data = _Data.compute(program, events.lazy(), people.lazy(), attrition=attrition)
    progress("evaluating", 1, 1)
    infos = _infos(program, files)
    pages = _Site(program, data, infos, mask_threshold, title).pages(
        lambda done, total: progress("pages", done, total))
    _write_atomically(out, pages, private=mask_threshold is None)
    return out


# -- data -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Data:
    population: int
    counts: dict[str, tuple[int, int, int]]          # endpoint -> cases, controls, excluded
    ages: dict[str, dict[str | None, list[float | None]]]  # endpoint -> sex -> ages of cases
    first_source: dict[str, dict[str, int]]          # endpoint -> SOURCE -> cases
    any_source: dict[str, dict[str, int]]
    # endpoint -> unmasked attrition table and its relations
    attrition: dict[str, tuple[pl.DataFrame, list[Relation]]]

    @classmethod
    def compute(cls, program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *,
                attrition: bool = False) -> "_Data":
        """Everything from one engine pass: the program's endpoints, with their case events,
        and the attrition steps' plan variants of every endpoint."""
        from .attrition import attrition_steps
        from .engine.polars import evaluate_with_case_events

        names = sorted(program.names)
        steps = attrition_steps(program, people, endpoints=names) if attrition else None
        results, case_rows = evaluate_with_case_events(
            Program(endpoints=program.endpoints + (steps.variants if steps else ())), events, people,
            case_events_of=names)
        counts = {r[0]: (r[1], r[2], r[3])
                  for r in results.counts.filter(pl.col("ENDPOINT").is_in(names)).collect().iter_rows()}
        population = people.select(pl.len()).collect().item()
        cases = (results.long.filter(pl.col("ENDPOINT").is_in(names) & (pl.col("STATUS") == "case"))
                 .join(people.select("FINNGENID", "SEX"), on="FINNGENID", how="left")
                 .select("ENDPOINT", "SEX", "AGE").collect())
        ages: dict[str, dict[str | None, list]] = {}
        for endpoint, sex, age in cases.sort("ENDPOINT", "SEX", "AGE", nulls_last=True).iter_rows():
            ages.setdefault(endpoint, {}).setdefault(sex if sex in ("female", "male") else None, []).append(age)
        first, any_ = _source_counts(case_rows)
        return cls(population=population, counts=counts, ages=ages, first_source=first,
                   any_source=any_, attrition=steps.count(results.long, results.counts) if steps else {})


def _source_counts(case_rows: pl.LazyFrame) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Per endpoint and SOURCE: cases whose first case event is from it, and cases with any.

    From each endpoint's case event rows as the engine selects them
    (`evaluate_with_case_events`), so the rows per case are exactly those NEVT counts.
    """
    # collected once for the two queries; grouped on categories, not strings: half the time
    rows = case_rows.collect().lazy().with_columns(pl.col("ENDPOINT", "FINNGENID").cast(pl.Categorical))
    # each case's earliest event: sorted within its own rows (6x cheaper than sorting all)
    first = (rows.group_by("ENDPOINT", "FINNGENID")
             .agg(pl.col("SOURCE").sort_by("EVENT_AGE", "APPROX_EVENT_DAY", "SOURCE", nulls_last=True).first())
             .group_by("ENDPOINT", "SOURCE").agg(pl.len()))
    any_ = rows.select("ENDPOINT", "FINNGENID", "SOURCE").unique().group_by("ENDPOINT", "SOURCE").agg(pl.len())

    def nest(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for endpoint, source, n in frame.iter_rows():
            found.setdefault(endpoint, {})[source] = n
        return found

    return tuple(nest(frame.with_columns(pl.col("ENDPOINT").cast(pl.String)).sort("ENDPOINT", "SOURCE"))
                 for frame in pl.collect_all([first, any_]))


def _infos(program: Program, files: Sequence[ast.File]) -> dict[str, _Info]:
    from .fmt import format_file

    found: dict[str, _Info] = {}
    for tree in files:
        previous_end = 0
        for decl in tree.declarations:
            if isinstance(decl, ast.Endpoint) and decl.name in program.names:
                # Comments right above an endpoint describe it: keep them with its text.
                comments = tuple(c for c in tree.comments
                                 if previous_end <= c.span.offset < decl.span.end_offset)
                text = format_file(ast.File(name=tree.name, declarations=(decl,), comments=comments))
                meta = decl.meta
                tags = meta.get("tags", ())
                found[decl.name] = _Info(
                    title=str(meta.get("title", "")),
                    tags=tags if isinstance(tags, tuple) else (tags,),
                    file=Path(tree.name).name, source=text)
            previous_end = decl.span.end_offset
    return found


# -- masking ----------------------------------------------------------------------------

def age_bins(ages: Iterable[float], threshold: int | None) -> tuple[tuple[float, float, int], ...]:
    """(low, high, n) bins of AGE_BIN_WIDTH years, merged left to right until each holds 0
    or at least `threshold` people (a small remainder joins the last non-empty bin); empty
    when everyone together is fewer than `threshold`."""
    edges = _AGE_EDGES
    counts = [0] * (len(edges) - 1)
    inner = edges[1:-1]
    for age in ages:
        counts[bisect.bisect_right(inner, age)] += 1
    bins = [(edges[i], edges[i + 1], counts[i]) for i in range(len(counts))]
    if threshold is None:
        return tuple(bins)
    total = sum(counts)
    if total < threshold:
        return ()
    merged: list[list] = []
    current: list | None = None
    for low, high, n in bins:
        if current is None:
            current = [low, high, n]
        else:
            current[1], current[2] = high, current[2] + n
        if current[2] == 0 or current[2] >= threshold:
            merged.append(current)
            current = None
    if current is not None:
        while merged and merged[-1][2] == 0:
            current = [merged.pop()[0], current[1], current[2]]
        last = merged.pop()
        merged.append([last[0], current[1], last[2] + current[2]])
    return tuple((low, high, n) for low, high, n in merged)


def _pooled_sources(first: Mapping[str, int], threshold: int | None) -> list[tuple[str, int]]:
    """Sources with at least `threshold` first events, then the rest pooled."""
    if threshold is None:
        return sorted(first.items())
    big = sorted((s, n) for s, n in first.items() if n >= threshold)
    rest = sum(n for n in first.values() if n < threshold)
    return big + ([(_OTHER_SOURCES, rest)] if rest else [])


# -- plots ------------------------------------------------------------------------------

def _age_plot(name: str, panels: list[tuple[str, list[tuple[float, float, int, str]], str]]) -> str:
    """Panels of (title, bins as (low, high, n, n as shown), note when there is no bin)."""
    drawn, words = [], []
    for label, bins, note in panels:
        if not any(n for _, _, n, _ in bins):
            drawn.append(svg.Panel(label, note=note))
            words.append(f"{label}: {note}.")
            continue
        drawn.append(svg.Panel(label, tuple(svg.Bar(low, high, _drawn(n, text), text if text != "0" else "")
                                            for low, high, n, text in bins)))
        words.append(f"{label}: " + ", ".join(f"aged {_age_range(low, high)}: {text}"
                                              for low, high, _, text in bins) + ".")
    return svg.histogram(drawn, title=f"Age at first event of {name}, by sex", x_max=_AGE_EDGES[-1],
                         x_ticks=_AGE_EDGES[:-1], x_label="age at first event (years)", y_label="cases",
                         description=" ".join(words), ident="age-plot")


def _age_range(low: float, high: float) -> str:
    return f"{low:g} or more" if high == _AGE_EDGES[-1] else f"{low:g} to {high:g}"


def _drawn(n: int, text: str) -> int:
    """A bar's length: none for a masked value, whose length would give the number away."""
    return n if text == str(n) else 0


def _source_plot(name: str, rows: list[tuple[str, int, str]]) -> str:
    """Bars of (source, n, n as shown)."""
    return svg.bar_chart([svg.Item(source, _drawn(n, text), text) for source, n, text in rows],
                         title=f"Cases of {name} by SOURCE of the first event",
                         x_label="cases by SOURCE of the first event",
                         description="; ".join(f"{source}: {text}" for source, _, text in rows) + ".",
                         ident="source-plot")


# -- pages ------------------------------------------------------------------------------

_CSS = """\
:root { --fg: #1d2733; --muted: #5b6773; --line: #d6dde4; --accent: #2f5f8f; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       margin: 0 auto; padding: 1.2em 1.5em 3em; max-width: 70em; background: #fff; }
a { color: var(--accent); }
h1 { font-size: 1.6em; margin: 0.2em 0; } h1 small { font-weight: normal; color: var(--muted); }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid var(--line); padding-bottom: 0.2em; }
nav { font-size: 0.9em; color: var(--muted); }
.note { color: var(--muted); font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { text-align: left; padding: 0.3em 0.8em 0.3em 0; border-bottom: 1px solid var(--line); vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.endpoints { width: 100%; }
.tag { display: inline-block; font-size: 0.8em; padding: 0 0.45em; margin: 0 0.2em 0.2em 0;
       border: 1px solid var(--line); border-radius: 0.7em; text-decoration: none; white-space: nowrap; }
pre { background: #f5f7f9; border: 1px solid var(--line); padding: 0.8em; overflow-x: auto;
      white-space: pre-wrap; font-size: 0.88em; }
figure { margin: 0.8em 0; } figure svg { max-width: 100%; height: auto; }
#filters { margin: 1em 0; display: flex; gap: 1em; flex-wrap: wrap; align-items: center; }
#filters input, #filters select { font: inherit; padding: 0.25em 0.4em; }
tr[hidden] { display: none; }
"""

_SCRIPT = """\
(function () {
  var box = document.getElementById("filters");
  var q = document.getElementById("q"), tag = document.getElementById("tag");
  var shown = document.getElementById("shown");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#endpoints tbody tr"));
  box.hidden = false;
  function apply() {
    var text = q.value.trim().toLowerCase(), wanted = tag.value, n = 0;
    rows.forEach(function (row) {
      var ok = (!text || row.getAttribute("data-search").indexOf(text) >= 0) &&
               (!wanted || row.getAttribute("data-tags").indexOf("|" + wanted + "|") >= 0);
      row.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = n + " of " + rows.length + " endpoints shown";
  }
  q.addEventListener("input", apply);
  tag.addEventListener("change", apply);
  apply();
})();
"""


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _slug(tag: str) -> str:
    plain = re.sub(r"[^A-Za-z0-9_-]", "_", tag)
    if plain == tag and plain:
        return plain
    return f"{plain}-{hashlib.sha1(tag.encode()).hexdigest()[:8]}"


def _page(title: str, body: str, *, depth: int, script: str = "") -> str:
    up = "../" * depth
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_escape(title)}</title>\n<link rel=\"stylesheet\" href=\"{up}style.css\">\n</head>\n"
        f"<body>\n{body}\n" + (f"<script>\n{script}</script>\n" if script else "") + "</body>\n</html>\n"
    )


class _Site:
    def __init__(self, program: Program, data: _Data, infos: Mapping[str, _Info],
                 threshold: int | None, title: str):
        self.program, self.data, self.infos, self.title = program, data, infos, title
        self.threshold = threshold
        self.names = sorted(program.names)
        self.included_by: dict[str, list[str]] = {n: [] for n in self.names}
        self.referenced_by: dict[str, list[str]] = {n: [] for n in self.names}
        for ep in program.endpoints:
            for name in ep.includes:
                self.included_by[name].append(ep.name)
            for name in self._references(ep.name):
                self.referenced_by[name].append(ep.name)
        self.tags = sorted({t for i in infos.values() for t in i.tags})
        self.bins: dict[tuple[str, str | None], tuple[tuple[float, float, int], ...]] = {}
        self.shown = self._suppression()

    def _suppression(self):
        """Every number of the report, masked at once with the relations among them."""
        data, cells, relations, known = self.data, {}, [], set()
        for name in self.names:
            counts = [("counts", name, j) for j in range(3)]
            cells.update(zip(counts, data.counts.get(name, (0, 0, 0))))
            relations.append(Relation.adds_up(counts, known=data.population))
            cases = counts[0]
            if cells[cases]:
                by_sex, sexes = data.ages.get(name, {}), []
                for sex, _ in _SEXES:
                    ages = by_sex.get(sex, [])
                    if sex is None and not ages:
                        continue
                    known_ages = [a for a in ages if a is not None]
                    sexes.append(("sex", name, sex))
                    cells[sexes[-1]] = len(known_ages)
                    self.bins[(name, sex)] = bins = age_bins(known_ages, self.threshold)
                    if bins:
                        keys = [("bin", name, sex, i) for i in range(len(bins))]
                        cells.update(zip(keys, (n for _, _, n in bins)))
                        relations.append(Relation.adds_up(keys, sexes[-1]))
                unknown_age = sum(a is None for ages in by_sex.values() for a in ages)
                if unknown_age:
                    sexes.append(("no_age", name))
                    cells[sexes[-1]] = unknown_age
                relations.append(Relation.adds_up(sexes, cases))
                first, any_ = data.first_source.get(name, {}), data.any_source.get(name, {})
                sources = sorted(set(first) | set(any_))
                for source in sources:
                    cells[("first", name, source)] = first.get(source, 0)
                    cells[("any", name, source)] = any_.get(source, 0)
                    relations += [Relation.no_more_than([("first", name, source)], ("any", name, source)),
                                  Relation.no_more_than([("any", name, source)], cases)]
                # every case has one first event, and at least one event
                relations += [Relation.adds_up([("first", name, s) for s in sources], cases),
                              Relation((cases,), tuple(("any", name, s) for s in sources), at_most=True)]
                pooled = [s for s in sources if self.threshold is not None and 1 <= first.get(s, 0) < self.threshold]
                if pooled:
                    cells[("pooled", name)] = sum(first[s] for s in pooled)
                    relations.append(Relation.adds_up([("first", name, s) for s in pooled], ("pooled", name)))
            if name in data.attrition:
                from .attrition import POPULATION

                table, steps = data.attrition[name]

                def key(cell, name=name):
                    return ("attrition", name, *cell)

                for column in ("N_PEOPLE", "N_ADDED_BACK"):
                    cells.update((key((i, column)), n) for i, n in enumerate(table[column]) if n is not None)
                relations += [r.renamed(key) for r in steps]
                known.add(key(POPULATION))
                rows = list(zip(table["SIDE"], table["STEP"]))
                relations += [Relation.equal(key((rows.index(("cases", "cases")), "N_PEOPLE")), cases),
                              Relation.equal(key((rows.index(("controls", "controls")), "N_PEOPLE")), counts[1])]
        return suppress(cells, relations, threshold=self.threshold, upper=data.population, known=known)

    def _references(self, name: str) -> list[str]:
        """Endpoints named in `require` or the control rules (not includes)."""
        ep = self.program.get(name)
        found = [*cond_endpoints(ep.require), *ep.control_exclude, *cond_endpoints(ep.control_require)]
        return sorted(set(found) - {name})

    def info(self, name: str) -> _Info:
        return self.infos.get(name, _Info())

    def pages(self, on_page: Callable[[int, int], None]) -> dict[str, str]:
        pages = {"style.css": _CSS, "index.html": self.index(), MARKER: "endpointc report\n"}
        for done, name in enumerate(self.names, 1):
            pages[f"endpoints/{name}.html"] = self.endpoint(name)
            on_page(done, len(self.names))
        for tag in self.tags:
            pages[f"tags/{_slug(tag)}.html"] = self.tag_page(tag)
        return pages

    # pieces

    def _mask_note(self) -> str:
        if self.threshold is None:
            return ("<p class=\"note\"><strong>Counts are not masked</strong> (--no-mask): small counts "
                    "may identify people. Do not share this report.</p>")
        return (f"<p class=\"note\">Counts from 1 to {self.threshold - 1} are shown as &lt;{self.threshold}; "
                f"a count from which, with the other numbers of the report and the population, one of "
                f"them could be worked out is shown as “{SECONDARY_MARK}” (it may be of any size).</p>")

    def _count_cells(self, *keys) -> str:
        return "".join(f"{_COUNT_CELL}{self.shown.text(k)}</td>" for k in keys)

    def _counts(self, name: str) -> list:
        return [("counts", name, j) for j in range(3)]

    def _tag_links(self, tags: Iterable[str], up: str) -> str:
        return "".join(f"<a class=\"tag\" href=\"{up}tags/{_slug(t)}.html\">{_escape(t)}</a>" for t in tags)

    def _rows(self, names: Iterable[str], up: str) -> str:
        rows = []
        for name in names:
            info = self.info(name)
            search = _escape(f"{name} {info.title}".lower())
            tags = _escape("|" + "|".join(info.tags) + "|")
            rows.append(
                f"<tr data-search=\"{search}\" data-tags=\"{tags}\">"
                f"<td><a href=\"{up}endpoints/{name}.html\">{_escape(name)}</a></td>"
                f"<td>{_escape(info.title)}</td><td>{self._tag_links(info.tags, up)}</td>"
                f"{self._count_cells(*self._counts(name))}</tr>")
        return "\n".join(rows)

    def _table(self, names: Sequence[str], up: str) -> str:
        return (
            "<table class=\"endpoints\" id=\"endpoints\">\n<thead><tr><th>Endpoint</th><th>Title</th>"
            "<th>Tags</th><th class=\"n\">Cases</th><th class=\"n\">Controls</th>"
            "<th class=\"n\">Excluded</th></tr></thead>\n<tbody>\n"
            f"{self._rows(names, up)}\n</tbody>\n</table>")

    def index(self) -> str:
        options = "".join(f"<option value=\"{_escape(t)}\">{_escape(t)}</option>" for t in self.tags)
        tag_list = (f"<p>Tags: {self._tag_links(self.tags, '')}</p>" if self.tags else "")
        body = (
            f"<h1>{_escape(self.title)}</h1>\n"
            f"<p>{len(self.names)} endpoints evaluated over a population of "
            f"{mask_count(self.data.population, self.threshold)} people.</p>\n{self._mask_note()}\n{tag_list}\n"
            "<div id=\"filters\" hidden>"
            "<label>Search <input id=\"q\" type=\"search\" placeholder=\"name or title\"></label>"
            f"<label>Tag <select id=\"tag\"><option value=\"\">all tags</option>{options}</select></label>"
            "<span id=\"shown\" class=\"note\"></span></div>\n"
            f"{self._table(self.names, '')}")
        return _page(self.title, body, depth=0, script=_SCRIPT)

    def tag_page(self, tag: str) -> str:
        names = [n for n in self.names if tag in self.info(n).tags]
        body = (f"<nav><a href=\"../index.html\">All endpoints</a></nav>\n<h1>Tag {_escape(tag)}</h1>\n"
                f"<p>{len(names)} endpoints.</p>\n{self._mask_note()}\n{self._table(names, '../')}")
        return _page(f"Tag {tag}", body, depth=1)

    def _links(self, names: Sequence[str]) -> str:
        if not names:
            return "none"
        return ", ".join(f"<a href=\"{n}.html\">{_escape(n)}</a>" for n in names)

    def endpoint(self, name: str) -> str:
        info = self.info(name)
        ep = self.program.get(name)
        cases = self.data.counts.get(name, (0, 0, 0))[0]
        parts = [
            "<nav><a href=\"../index.html\">All endpoints</a></nav>",
            f"<h1>{_escape(name)}" + (f" <small>{_escape(info.title)}</small>" if info.title else "") + "</h1>",
            f"<p>{self._tag_links(info.tags, '../')}</p>" if info.tags else "",
            "<h2>Counts</h2>",
            "<table><thead><tr><th class=\"n\">Cases</th><th class=\"n\">Controls</th>"
            "<th class=\"n\">Excluded</th></tr></thead>"
            f"<tbody><tr>{self._count_cells(*self._counts(name))}</tr></tbody></table>",
            self._mask_note(),
            "<h2>Definition in plain words</h2>",
            f"<pre class=\"words\">{_escape(describe_endpoint(self.program, name))}</pre>",
        ]
        if info.source:
            parts += [f"<h2>Source text</h2>\n<p class=\"note\">From {_escape(info.file)}, canonical layout.</p>",
                      f"<pre class=\"source\">{_escape(info.source)}</pre>"]
        parts += self._attrition_section(name)
        parts += self._age_section(name, cases)
        parts += self._source_section(name, cases)
        parts += [
            "<h2>Related endpoints</h2>",
            "<table class=\"related\"><tbody>",
            f"<tr><th>Includes</th><td>{self._links(sorted(ep.includes))}</td></tr>",
            f"<tr><th>Included by</th><td>{self._links(sorted(self.included_by[name]))}</td></tr>",
            f"<tr><th>Refers to (require, controls)</th><td>{self._links(self._references(name))}</td></tr>",
            f"<tr><th>Referred to by</th><td>{self._links(sorted(self.referenced_by[name]))}</td></tr>",
            "</tbody></table>",
        ]
        return _page(f"{name} — {info.title}" if info.title else name,
                     "\n".join(p for p in parts if p), depth=1)

    def _attrition_section(self, name: str) -> list[str]:
        if name not in self.data.attrition:
            return []
        table, _ = self.data.attrition[name]
        rows = []
        for i, row in enumerate(table.iter_rows(named=True)):
            cells = ["" if row[c] is None else str(row[c]) for c in ("SIDE", "RULE", "STEP")]
            cells += ["" if row[c] is None else self.shown.text(("attrition", name, i, c))
                      for c in ("N_PEOPLE", "N_ADDED_BACK")]
            # Only counts are class "n" (what the masking tests read); RULE is an index.
            rows.append("<tr>" + "".join((_COUNT_CELL if i in (3, 4) else "<td>") + f"{_escape(c)}</td>"
                                         for i, c in enumerate(cells)) + "</tr>")
        return ["<h2>Attrition, step by step</h2>",
                "<table class=\"attrition\"><thead><tr><th>side</th><th>rule</th><th>step</th>"
                "<th class=\"n\">people</th><th class=\"n\">added back if this step alone were "
                "removed</th></tr></thead>",
                f"<tbody>{''.join(rows)}</tbody></table>"]

    def _age_section(self, name: str, cases: int) -> list[str]:
        threshold, shown = self.threshold, self.shown
        head = "<h2>Age at first event, by sex</h2>"
        if not cases:
            return [head, "<p>No cases.</p>"]
        panels = []
        for sex, label in _SEXES:
            if (name, sex) not in self.bins:
                continue
            bins = [(low, high, n, shown.text(("bin", name, sex, i)))
                    for i, (low, high, n) in enumerate(self.bins[(name, sex)])]
            note = "no cases" if not shown.values[("sex", name, sex)] else f"fewer than {threshold} cases: not shown"
            panels.append((f"{label}: {shown.text(('sex', name, sex))} cases", bins, note))
        notes = [f"Bins are {AGE_BIN_WIDTH} years wide (the last holds everyone aged "
                 f"{_AGE_EDGES[-2]} or more)."]
        if threshold is not None:
            notes.append(f"Adjacent bins are merged until each holds no one or at least {threshold} people, "
                         "so a wider bar is a merged bin; a sex with fewer than "
                         f"{threshold} cases in all is not plotted; a masked bin is not drawn.")
        if ("no_age", name) in shown.values:
            notes.append(f"{shown.text(('no_age', name))} cases have no age at the first event.")
        return [head, f"<figure>{_age_plot(name, panels)}</figure>",
                f"<p class=\"note\">{_escape(' '.join(notes))}</p>"]

    def _source_section(self, name: str, cases: int) -> list[str]:
        threshold, shown = self.threshold, self.shown
        head = "<h2>Cases by registry source</h2>"
        if not cases:
            return [head, "<p>No cases.</p>"]
        first = self.data.first_source.get(name, {})
        rows = []
        for source in sorted(set(first) | set(self.data.any_source.get(name, {}))):
            rows.append(f"<tr><td>{_escape(source)}</td><td>{_escape(SOURCE_NAMES.get(source, ''))}</td>"
                        f"{self._count_cells(('first', name, source), ('any', name, source))}</tr>")
        bars = [(source, n, shown.text(("pooled", name) if source == _OTHER_SOURCES else ("first", name, source)))
                for source, n in _pooled_sources(first, threshold)]
        note = ("First event: the SOURCE of each case's earliest case event (by age at the event, "
                "then date; a tie at the same moment goes to the first SOURCE name). Any event: "
                "cases with at least one case event from that SOURCE, so a case can count in "
                "several rows. Case events are the rows that made the person a case: the "
                "endpoint's own rules after all their options and `when`, plus the case events of "
                "included endpoints.")
        if threshold is not None and any(n < threshold for n in first.values()):
            note += (f" In the plot, sources with fewer than {threshold} first events are pooled as "
                     f"“{_OTHER_SOURCES}”.")
        plot = f"<figure>{_source_plot(name, bars)}</figure>" if bars and (
            threshold is None or cases >= threshold) else ""
        return [head, plot,
                "<table class=\"sources\"><thead><tr><th>SOURCE</th><th>registry</th>"
                "<th class=\"n\">first event</th><th class=\"n\">any event</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>",
                f"<p class=\"note\">{_escape(note)}</p>"]


# -- writing ----------------------------------------------------------------------------

def check_target(out: str | os.PathLike[str]) -> None:
    """Raise ReportError unless `out` is new, an empty folder or a previous report."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise ReportError(f"{out} exists and is not an endpointc report; choose a new or empty folder")


def _write_atomically(out: Path, pages: Mapping[str, str], *, private: bool) -> None:
    """Everything goes into a temporary sibling folder, renamed into place at the end."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    check_target(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    backup: Path | None = None
    try:
        for relative, text in sorted(pages.items()):
            path = tmp / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
        if not private:
            # mkdtemp makes an owner-only folder; a masked report is meant to be shared.
            mask = os.umask(0)
            os.umask(mask)
            for folder in (tmp, *(p for p in tmp.rglob("*") if p.is_dir())):
                folder.chmod(0o777 & ~mask)
        with uninterrupted():   # never left without the old report or the new one
            if out.exists():
                backup = out.with_name(f".{out.name}.{secrets.token_hex(6)}.old")
                os.rename(out, backup)
            try:
                os.rename(tmp, out)
            except BaseException:
                if backup is not None:
                    os.rename(backup, out)
                    backup = None
                raise
    except BaseException:
        with uninterrupted():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if backup is not None:
        with uninterrupted():
            shutil.rmtree(backup, ignore_errors=True)
