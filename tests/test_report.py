"""The HTML report: pages, links, masking, plots, exact source counts, deterministic bytes."""

from __future__ import annotations

import datetime as dt
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from endpointc.cli import app
from endpointc.compiler import compile_files, definition_files
from endpointc.engine.polars import evaluate
from endpointc.parser import parse, parse_file
from endpointc.report import MARKER, ReportError, age_bins, build_report
from endpointc.synth import generate

ROOT = Path(__file__).resolve().parents[1]


class Page(HTMLParser):
    """Links, numeric table cells, SVGs and scripts of one page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.numbers: list[str] = []
        self.svgs = 0
        self.scripts: list[dict] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("a", "link") and "href" in attrs:
            self.links.append(attrs["href"])
        if tag in ("img", "iframe", "script") and "src" in attrs:
            self.links.append(attrs["src"])
        if tag == "script":
            self.scripts.append(attrs)
        if tag == "svg":
            self.svgs += 1
        if tag == "td" and attrs.get("class") == "n":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.numbers.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        # one text node may arrive in several pieces (e.g. around "&lt;")
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def pages(folder: Path) -> dict[str, Page]:
    return {str(p.relative_to(folder)): Page(p.read_text(encoding="utf-8")) for p in sorted(folder.rglob("*.html"))}


@pytest.fixture(scope="module")
def starter():
    """A few starter endpoints (includes, control exclusions) on a small synthetic registry."""
    files = [parse_file(p)[0] for p in definition_files([ROOT / "definitions"])]
    program, diagnostics = compile_files(files)
    assert program is not None, diagnostics
    program = program.subset(["I9_CHD_EARLY"])
    events, people = generate(people=300, seed=11, definitions=program)
    return program, events.collect().lazy(), people.collect().lazy(), files


@pytest.fixture(scope="module")
def built(starter, tmp_path_factory):
    program, events, people, files = starter
    out = tmp_path_factory.mktemp("report") / "site"
    build_report(program, events, people, out, files=files)
    return out


def test_every_endpoint_has_a_page_and_every_link_resolves(starter, built):
    program = starter[0]
    found = pages(built)
    assert set(found) == ({"index.html"} | {f"endpoints/{n}.html" for n in program.names}
                          | {p for p in found if p.startswith("tags/")})
    assert any(p.startswith("tags/") for p in found)
    index = found["index.html"]
    assert {f"endpoints/{n}.html" for n in program.names} <= set(index.links)
    for name, page in found.items():
        for link in page.links:
            assert "://" not in link and not link.startswith("//"), (name, link)  # offline
            target = (built / name).parent / link.split("#")[0]
            assert target.resolve().is_file(), (name, link)
        assert all("src" not in s for s in page.scripts), name  # nothing loaded from elsewhere
    # the relations of I9_CHD: includes and included-by links both ways
    chd = found["endpoints/I9_CHD.html"]
    assert {"I9_MI.html", "I9_ANGINA.html", "CORONARY_REVASC.html", "I9_CHD_EARLY.html"} <= set(chd.links)
    assert "I9_CHD.html" in found["endpoints/I9_MI.html"].links


def test_endpoint_page_has_definition_source_plots_and_counts(starter, built):
    program, events, people, _ = starter
    counts = {r[0]: r[1:] for r in evaluate(program, events, people).counts.collect().iter_rows()}
    for name in program.names:
        page = pages(built)[f"endpoints/{name}.html"]
        text = "".join(page.text)
        assert "rule 1" in text or "plus the case events of" in text  # describe.py's words
        assert f"endpoint {name} {{" in text  # fmt's source text
        cases = counts[name][0]
        if cases >= 5:
            assert page.svgs == 2, name  # age histogram and sources
        for c, cell in zip(counts[name], page.numbers[:3]):
            assert cell == ("<5" if 1 <= c < 5 else cell if cell == "masked" else str(c)), (name, c, cell)
        index = pages(built)["index.html"]
        row = sorted(program.names).index(name)
        assert index.numbers[3 * row: 3 * row + 3] == page.numbers[:3]  # masked alike everywhere


def test_first_event_sources_add_up_to_the_cases(starter):
    from endpointc.report import _Data

    program, events, people, _ = starter
    data = _Data.compute(program, events, people)
    assert any(len(data.first_source.get(n, {})) > 1 for n in program.names)
    for name in program.names:
        cases = data.counts[name][0]
        first, any_ = data.first_source.get(name, {}), data.any_source.get(name, {})
        assert sum(first.values()) == cases, name  # every case has exactly one first event
        assert all(any_[s] >= n for s, n in first.items()), name
        assert all(n <= cases for n in any_.values()), name


def test_one_engine_pass_gives_what_separate_evaluations_give(starter, monkeypatch):
    """The program, every endpoint's attrition variants and the case events, in one pass over
    the events: the same counts and attrition tables as evaluating each on its own."""
    from polars.testing import assert_frame_equal

    from endpointc.attrition import attrition_counts
    from endpointc.engine import polars as engine
    from endpointc.report import _Data

    program, events, people, _ = starter
    passes = []
    one_pass = engine._evaluate_bucket
    monkeypatch.setattr(engine, "_evaluate_bucket", lambda *a, **k: passes.append(1) or one_pass(*a, **k))
    data = _Data.compute(program, events, people, attrition=True)
    assert len(passes) == 1
    monkeypatch.undo()
    assert data.counts == {r[0]: r[1:] for r in evaluate(program, events, people).counts.collect().iter_rows()}
    assert sorted(data.attrition) == sorted(program.names)
    for name in program.names:
        table, relations = attrition_counts(program, events, people, endpoint=name)
        assert_frame_equal(data.attrition[name][0], table)
        assert data.attrition[name][1] == relations


def test_progress_counts_the_pages(tmp_path):
    program, events, people, files = tiny()
    heard = []
    build_report(program, events, people, tmp_path / "site", files=files,
                 on_progress=lambda *step: heard.append(step))
    assert heard == [("evaluating", 0, 1), ("evaluating", 1, 1), ("pages", 1, 2), ("pages", 2, 2)]


def test_numbers_are_masked_everywhere(built):
    seen_masked = False
    for name, page in pages(built).items():
        for cell in page.numbers:
            if cell == "<5":
                seen_masked = True
            elif cell and cell != "masked":
                assert not 1 <= int(cell) < 5, (name, cell)
    assert seen_masked  # the synthetic registry has small cells, so masking was exercised


def test_two_builds_are_byte_identical(starter, built, tmp_path):
    program, events, people, files = starter
    again = tmp_path / "again"
    build_report(program, events, people, again, files=files)
    first = {p.relative_to(built): p.read_bytes() for p in built.rglob("*") if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


# -- a hand-made registry with known numbers ------------------------------------------

def tiny():
    tree, diagnostics = parse(textwrap.dedent("""
        endpoint MI {
          title "Myocardial infarction"
          tags I9, "Heart disease"
          hospital icd10 I21
          death icd10 I21
        }
        endpoint MI_EARLY { include MI  when age < 55 }
    """), name="tiny.ep")
    program, diagnostics = compile_files([tree])
    assert program is not None, diagnostics
    # P00..P02 (female): INPAT at 50 then DEATH at 60; P03..P07 (male): DEATH only, at 70;
    # P08..P49: no event.
    rows = []
    for i in range(3):
        rows += [(f"P{i:02d}", "INPAT", 50.0 + i), (f"P{i:02d}", "DEATH", 60.0)]
    rows += [(f"P{i:02d}", "DEATH", 70.0) for i in range(3, 8)]
    n = len(rows)
    events = pl.LazyFrame({
        "FINNGENID": [r[0] for r in rows], "SOURCE": [r[1] for r in rows], "EVENT_AGE": [r[2] for r in rows],
        "APPROX_EVENT_DAY": [dt.date(2000, 1, 1)] * n, "CODE1": ["I21"] * n, "CODE2": [None] * n,
        "CODE3": [None] * n, "CODE4": [None] * n, "ICDVER": ["10"] * n, "CATEGORY": ["0"] * n,
        "INDEX": [str(i) for i in range(n)]},
        schema_overrides={"CODE2": pl.String, "CODE3": pl.String, "CODE4": pl.String})
    ids = [f"P{i:02d}" for i in range(50)]
    people = pl.LazyFrame({"FINNGENID": ids, "SEX": ["female"] * 3 + ["male"] * 47,
                           "FU_END_AGE": [80.0] * 50})
    return program, events, people, [tree]


def rows_of(page: Page) -> str:
    return " ".join(" ".join(page.text).replace("< 5", "<5").split())


def test_small_counts_masked_and_exact_sources_unmasked(tmp_path):
    program, events, people, files = tiny()
    build_report(program, events, people, tmp_path / "m", files=files)
    masked = pages(tmp_path / "m")
    # MI: 8 cases, 42 controls; MI_EARLY: 3 cases (the INPAT events before 55), and its 47
    # controls would be 50 - 0 - the cases
    assert masked["index.html"].numbers == ["8", "42", "0", "<5", "masked", "0"]
    mi = rows_of(masked["endpoints/MI.html"])
    # first event: 3 INPAT and so 8 - 3 = 5 DEATH, hidden; any event: all 8
    assert "DEATH cause of death masked 8" in mi
    assert "INPAT hospital inpatient <5 <5" in mi
    assert "Female: <5 cases" in mi and "fewer than 5 cases: not shown" in mi
    assert "Male: masked cases" in mi                # 8 cases - 3 women
    heart = [p for p in masked if p.startswith("tags/Heart_disease-")]  # a safe name for a quoted tag
    assert len(heart) == 1 and "../endpoints/MI.html" in masked[heart[0]].links
    assert "../endpoints/MI_EARLY.html" not in masked[heart[0]].links
    assert {"tags/I9.html", heart[0]} <= set(masked["index.html"].links)

    build_report(program, events, people, tmp_path / "u", files=files, mask_threshold=None)
    plain = pages(tmp_path / "u")
    assert plain["index.html"].numbers == ["8", "42", "0", "3", "47", "0"]
    mi = rows_of(plain["endpoints/MI.html"])
    assert "DEATH cause of death 5 8" in mi and "INPAT hospital inpatient 3 3" in mi
    early = rows_of(plain["endpoints/MI_EARLY.html"])
    assert "INPAT hospital inpatient 3 3" in early and "DEATH" not in early.split("Cases by registry")[1]
    assert "not masked" in rows_of(plain["index.html"])


def test_age_bins_merge_small_bins_and_keep_the_total():
    # 10-year bins: [0,10) 0, [10,20) 2, [20,30) 4, [30,40) 6, [40,50) 1
    ages = [15, 16, 21, 22, 23, 24, 31, 32, 33, 34, 35, 36, 45]
    bins = age_bins(ages, 5)
    assert bins[:3] == ((0, 10, 0), (10, 30, 6), (30, 120, 7))
    assert sum(n for _, _, n in bins) == len(ages)
    assert all(n == 0 or n >= 5 for _, _, n in bins)
    assert age_bins([30, 31, 32, 33], 5) == ()
    plain = age_bins(ages, None)
    assert plain[1] == (10, 20, 2) and len(plain) == 11 and plain[-1] == (100, 120, 0)
    assert age_bins([105.0], None)[-1] == (100, 120, 1)


def test_masked_values_leave_no_trace_in_the_plots():
    from endpointc.report import _source_plot

    # the pooled "other sources" bar of 3 and of 4, or a masked bar of 9 and 12, must draw
    # the same picture
    three = _source_plot("X", [("DEATH", 9, "9"), ("other sources", 3, "<5")])
    four = _source_plot("X", [("DEATH", 9, "9"), ("other sources", 4, "<5")])
    assert three == four and "&lt;5" in three
    assert _source_plot("X", [("DEATH", 9, "masked"), ("other sources", 3, "<5")]) == _source_plot(
        "X", [("DEATH", 12, "masked"), ("other sources", 3, "<5")])
    assert _source_plot("X", [("DEATH", 9, "9"), ("other sources", 3, "3")]) != _source_plot(
        "X", [("DEATH", 9, "9"), ("other sources", 4, "4")])


def test_refuses_a_foreign_folder_and_replaces_a_previous_report(tmp_path):
    program, events, people, files = tiny()
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ReportError):
        build_report(program, events, people, foreign, files=files, attrition=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    out = tmp_path / "site"
    build_report(program, events, people, out, files=files, attrition=False)
    (out / "endpoints" / "STALE.html").write_text("old")
    build_report(program, events, people, out, files=files, attrition=False)
    assert (out / MARKER).exists() and not (out / "endpoints" / "STALE.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "site"]  # no temporary folders left


def test_cli_report(tmp_path):
    program, events, people, files = tiny()
    (tmp_path / "tiny.ep").write_text(textwrap.dedent("""
        endpoint MI { hospital icd10 I21  death icd10 I21 }
    """))
    events.collect().write_parquet(tmp_path / "events.parquet")
    people.collect().write_parquet(tmp_path / "people.parquet")
    args = ["report", str(tmp_path / "tiny.ep"), "--events", str(tmp_path / "events.parquet"),
            "--people", str(tmp_path / "people.parquet"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert pages(tmp_path / "out")["index.html"].numbers == ["8", "42", "0"]
    assert "drawing the endpoint pages" in result.output and "1/1" in result.output  # the progress bar
    result = CliRunner().invoke(app, [*args, "--no-mask"])
    assert result.exit_code == 0 and "--no-mask" in result.output
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("x")
    result = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "plain")])
    assert result.exit_code == 2 and "not an endpointc report" in " ".join(result.output.split())
