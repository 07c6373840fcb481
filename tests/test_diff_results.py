"""`diff_results` and `endpointc diff OLD_OUT NEW_OUT`: two result folders compared per
endpoint, masked like every aggregate, and the QC gate (`--fail-above`) deciding on exact
counts where a folder has them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from endpointc.cli import app
from endpointc.diff import ResultsError, diff_results, format_results_diff, results_document
from endpointc.results import counts_table, write_results

runner = CliRunner()


def folder(path: Path, endpoints: dict[str, tuple[int, int]], population: int, *, parquet: bool = True) -> Path:
    """A result folder as `endpointc run` writes it (without a manifest): per endpoint its
    (cases, excluded), people P0000... taken in order."""
    ids = [f"P{i:04d}" for i in range(population)]
    rows = [(ids[i], name, "case" if i < cases else "excluded")
            for name, (cases, excluded) in endpoints.items() for i in range(cases + excluded)]
    long = pl.LazyFrame(rows, schema={"FINNGENID": pl.String, "ENDPOINT": pl.String, "STATUS": pl.String},
                        orient="row").with_columns(AGE=pl.lit(50.0), YEAR=pl.lit(2000), NEVT=pl.lit(1))
    people = pl.LazyFrame({"FINNGENID": ids})
    write_results(long, counts_table(long, people, endpoints=endpoints), path, people=people)
    if not parquet:
        (path / "endpoints.parquet").unlink()
    return path


def table_rows(text: str) -> list[list[str]]:
    lines = text.split("ENDPOINT", 1)[1].split("\n\n")[0].splitlines()[1:]
    return [line.split() for line in lines]


def shown_numbers(text: str) -> set[int]:
    """Every count in the text's table (changes without their sign)."""
    return {int(cell.lstrip("+-")) for row in table_rows(text) for cell in row[1:]
            if cell.lstrip("+-").isdigit()}


def test_changes_sorted_by_size_one_sided_listed_and_masked(tmp_path):
    old = folder(tmp_path / "old", {"A": (100, 0), "B": (50, 2), "C": (10, 0), "GONE": (20, 0)}, 1000)
    new = folder(tmp_path / "new", {"A": (130, 0), "B": (50, 2), "C": (12, 0), "NEW": (7, 0)}, 1000)
    diff = diff_results(old, new)
    assert diff.exact and [(c.name, c.status) for c in diff.endpoints] == [
        ("A", "changed"), ("B", "same"), ("C", "changed"), ("GONE", "only_old"), ("NEW", "only_new")]
    assert diff.endpoints[0].old.exact == (100, 900, 0) and diff.endpoints[0].new.exact == (130, 870, 0)
    text = format_results_diff(diff)
    assert text.splitlines()[0] == f"results {old} -> {new}: 2 endpoints changed, 1 only in {old}, 1 only in {new}, 1 the same"
    assert table_rows(text) == [
        ["A", "100", "130", "+30", "900", "870", "-30", "0", "0", "0"],
        # a change of 2: "<5" although both sides are shown (counts.tsv shows them anyway)
        ["C", "10", "12", "+<5", "990", "988", "-<5", "0", "0", "0"],
        ["GONE", "20", "-", "-", "980", "-", "-", "0", "-", "-"],
        ["NEW", "-", "7", "-", "-", "993", "-", "-", "0", "-"],
    ]
    unmasked = format_results_diff(diff, mask_threshold=None)
    assert ["C", "10", "12", "+2", "990", "988", "-2", "0", "0", "0"] in table_rows(unmasked)
    # B is the same and not in the table; the document lists it as counts.tsv shows it
    published = (old / "counts.tsv").read_text().splitlines()
    assert "B\tmasked\t948\t<5" in published
    b = next(e for e in results_document(diff)["endpoints"] if e["endpoint"] == "B")
    assert b == {"endpoint": "B", "status": "same", "cases": {"old": "masked", "new": "masked", "change": 0},
                 "controls": {"old": 948, "new": 948, "change": 0}, "excluded": {"old": "<5", "new": "<5", "change": 0}}


def test_the_gate_decides_on_exact_counts(tmp_path):
    old = folder(tmp_path / "old", {"TEN": (100, 0), "DOUBLE": (10, 0), "FROM_0": (0, 0), "GONE": (90, 0),
                                    "HIDDEN": (200, 2)}, 1000)
    new = folder(tmp_path / "new", {"TEN": (110, 0), "DOUBLE": (20, 0), "FROM_0": (6, 0), "NEW": (90, 0),
                                    "HIDDEN": (205, 2)}, 1000)
    diff = diff_results(old, new)

    def failing(percent, min_cases=0):
        return [f.name for f in diff.gate(fail_above=percent, min_cases=min_cases).failures]

    assert failing(10) == ["DOUBLE", "FROM_0"]             # exactly 10% is not more than 10%
    assert failing(9.9) == ["DOUBLE", "FROM_0", "TEN"]
    assert failing(10, min_cases=20) == ["DOUBLE"]         # 20 cases on one side is enough
    assert failing(10, min_cases=21) == []
    assert diff.gate(fail_above=10, min_cases=21).checked == 2   # TEN and HIDDEN; one-sided ones never
    # HIDDEN's cases are masked in counts.tsv (its excluded are few); 200 -> 205 is 2.5%
    assert "HIDDEN\tmasked\t" in (old / "counts.tsv").read_text()
    assert "HIDDEN" not in failing(3) and "HIDDEN" in failing(2)
    assert all(f.certain for f in diff.gate(fail_above=2).failures)


def test_without_endpoints_parquet_a_masked_count_is_a_range(tmp_path):
    counts = {"HIDDEN": (200, 2), "OTHER": (300, 0)}
    old = folder(tmp_path / "old", counts, 1000, parquet=False)
    new = folder(tmp_path / "new", {**counts, "HIDDEN": (205, 2)}, 1000, parquet=False)
    diff = diff_results(old, new)
    assert not diff.exact and diff.old.population == 1000   # OTHER's row shows all three counts
    hidden = diff.endpoints[0]
    # controls 798 and excluded <5 shown: cases are 1000 - 798 - (1..4)
    assert hidden.old.exact is None and hidden.old.cases == (198, 201) and hidden.new.cases == (203, 206)
    assert diff.gate(fail_above=5).passed                  # at most (206 - 198) / 198 = 4.04%
    assert [(f.name, f.certain) for f in diff.gate(fail_above=3).failures] == [("HIDDEN", False)]
    text = format_results_diff(diff, gate=diff.gate(fail_above=3))
    assert "HIDDEN: cases masked -> masked (may be within the limit: counts.tsv masks a count)" in text
    # the exact counts decide it: 2.5%
    shutil.rmtree(new)
    new = folder(tmp_path / "new", {**counts, "HIDDEN": (205, 2)}, 1000)
    mixed = diff_results(old, new)
    assert mixed.new.exact and not mixed.old.exact
    assert [f.certain for f in mixed.gate(fail_above=3).failures] == [False]   # old is still a range


def test_without_a_population_a_masked_count_is_unbounded(tmp_path):
    # no row of either counts.tsv shows both the controls and everything else
    old = folder(tmp_path / "old", {"A": (200, 2)}, 1000, parquet=False)
    new = folder(tmp_path / "new", {"A": (3, 500)}, 1000)
    assert (new / "counts.tsv").read_text().splitlines()[1] == "A\t<5\tmasked\t500"
    diff = diff_results(old, new)
    assert diff.old.population is None and diff.endpoints[0].old.cases == (0, float("inf"))
    assert not diff.new.exact and "population is unknown" in diff.new.note
    assert diff.endpoints[0].new.cases == (1, 4)
    assert [(f.name, f.certain) for f in diff.gate(fail_above=50).failures] == [("A", False)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_nothing_counts_tsv_masks_is_shown(tmp_path_factory, data):
    """Whatever the counts, the comparison shows no count of 1 to 4, and no count that
    either folder's counts.tsv masks (together they would give it away)."""
    population = data.draw(st.integers(20, 60))
    names = ["A", "B", "C"]
    sides = []
    for _ in range(2):
        counts = {}
        for name in names:
            cases = data.draw(st.integers(0, population))
            counts[name] = (cases, data.draw(st.integers(0, population - cases)))
        sides.append(counts)
    base = tmp_path_factory.mktemp("folders")
    old, new = folder(base / "old", sides[0], population), folder(base / "new", sides[1], population)
    document = results_document(diff_results(old, new))
    published = {}
    for which, path in (("old", old), ("new", new)):
        for row in pl.read_csv(path / "counts.tsv", separator="\t", infer_schema=False).iter_rows():
            published.update({(row[0], measure, which): text
                              for measure, text in zip(("cases", "controls", "excluded"), row[1:])})
    for entry in document["endpoints"]:
        for measure in ("cases", "controls", "excluded"):
            for which in ("old", "new", "change"):
                value = entry[measure][which]
                assert not (isinstance(value, int) and 1 <= abs(value) <= 4), (entry, measure, which)
                if which != "change" and not published[(entry["endpoint"], measure, which)].isdigit():
                    assert not isinstance(value, int), (entry, measure, which)


def test_folders_that_cannot_be_compared_name_the_file(tmp_path):
    good = folder(tmp_path / "good", {"A": (10, 0)}, 100)
    only_parquet = tmp_path / "only_parquet"
    only_parquet.mkdir()
    shutil.copy(good / "endpoints.parquet", only_parquet)
    with pytest.raises(ResultsError, match="no counts.tsv"):
        diff_results(good, only_parquet)

    bad_text = folder(tmp_path / "bad_text", {"A": (10, 0)}, 100, parquet=False)
    (bad_text / "counts.tsv").write_text("ENDPOINT\tN_CASES\tN_CONTROLS\tN_EXCLUDED\nA\t10\tninety\t0\n")
    with pytest.raises(ResultsError, match=re.escape(f"{bad_text / 'counts.tsv'}, line 2: N_CONTROLS is not a count")):
        diff_results(good, bad_text)

    disagree = folder(tmp_path / "disagree", {"A": (10, 0)}, 100)
    (disagree / "counts.tsv").write_text("ENDPOINT\tN_CASES\tN_CONTROLS\tN_EXCLUDED\nA\t11\t89\t0\n")
    with pytest.raises(ResultsError, match="disagree on N_CASES of A"):
        diff_results(good, disagree)

    unlisted = folder(tmp_path / "unlisted", {"A": (10, 0), "B": (20, 0)}, 100)
    (unlisted / "counts.tsv").write_text("ENDPOINT\tN_CASES\tN_CONTROLS\tN_EXCLUDED\nA\t10\t90\t0\n")
    with pytest.raises(ResultsError, match="endpoints that counts.tsv does not list: B"):
        diff_results(good, unlisted)

    corrupt = folder(tmp_path / "corrupt", {"A": (10, 0)}, 100)
    (corrupt / "endpoints.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ResultsError, match=re.escape(f"{corrupt / 'endpoints.parquet'}: cannot be read")):
        diff_results(good, corrupt)


# -- the command ---------------------------------------------------------------------------

def invoke(*args):
    return runner.invoke(app, ["diff", *map(str, args)])


def test_cli_gate_exit_codes_and_json(tmp_path):
    old = folder(tmp_path / "old", {"A": (100, 0), "B": (40, 0)}, 500)
    new = folder(tmp_path / "new", {"A": (125, 0), "B": (41, 0)}, 500)
    result = invoke(old, new)
    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout)[0] == ["A", "100", "125", "+25", "400", "375", "-25", "0", "0", "0"]

    result = invoke(old, new, "--fail-above", "20", "--min-cases", "50")
    assert result.exit_code == 1, result.output
    assert "gate: case counts moving more than 20% (1 endpoint with at least 50 cases checked): FAILED" in result.stdout
    assert "  A: cases 100 -> 125 (+25%)" in result.stdout
    assert invoke(old, new, "--fail-above", "25", "--min-cases", "50").exit_code == 0

    result = invoke(old, new, "--fail-above", "2", "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1 and document["ok"] is False and document["kind"] == "results"
    assert document["gate"] == {"fail_above": 2.0, "min_cases": 0, "checked": 2, "passed": False,
                                "failures": [{"endpoint": "A", "certain": True, "cases_change_percent": 25.0},
                                             {"endpoint": "B", "certain": True, "cases_change_percent": 2.5}]}
    assert [e["endpoint"] for e in document["endpoints"]] == ["A", "B"]
    assert document["endpoints"][1]["cases"] == {"old": 40, "new": 41, "change": "+<5"}


def test_cli_usage_and_input_errors_exit_2(tmp_path):
    old = folder(tmp_path / "old", {"A": (10, 0)}, 100)
    library = tmp_path / "lib"
    library.mkdir()
    (library / "a.ep").write_text("endpoint A { hospital icd10 I21 }\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "counts.tsv").write_text("ENDPOINT\tN_CASES\n")
    for args, said in [((old, library), "is a result folder and"),
                       ((old, tmp_path / "missing"), "no such file or folder"),
                       ((old, broken), "no column N_CONTROLS, N_EXCLUDED"),
                       ((old, old, "--min-cases", "5"), "--min-cases goes with --fail-above"),
                       ((old, old, "--events", old, "--people", old), "--events and --people are for two libraries"),
                       ((library, library, "--fail-above", "5"), "--fail-above compares two result folders")]:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert said in " ".join(result.stderr.split()), (args, result.stderr)
        assert result.stdout == ""


def test_two_runs_then_the_gate(tmp_path):
    """End to end: `run` twice (manifest.json beside the results), one endpoint changed."""
    ids = [f"FG{i:03d}" for i in range(40)]
    (tmp_path / "events.tsv").write_text(
        "FINNGENID\tSOURCE\tEVENT_AGE\tAPPROX_EVENT_DAY\tCODE1\tCODE2\tCODE3\tCODE4\tICDVER\tCATEGORY\tINDEX\n"
        + "".join(f"{pid}\tINPAT\t{50 + i % 7}.5\t2001-02-03\t{'I21' if i < 20 else 'I22'}\tNA\tNA\tNA\t10\t0\t{i}\n"
                  for i, pid in enumerate(ids)))
    (tmp_path / "people.tsv").write_text("FINNGENID\tSEX\tFU_END_AGE\n"
                                         + "".join(f"{pid}\tfemale\t80.0\n" for pid in ids))
    for name, codes in (("old", "I21"), ("new", "I21 | I22")):
        (tmp_path / f"{name}.ep").write_text(f"endpoint MI {{ hospital icd10 {codes} }}\n"
                                             "endpoint OTHER { hospital icd10 I22 }\n")
        result = runner.invoke(app, ["run", str(tmp_path / f"{name}.ep"), "--events", str(tmp_path / "events.tsv"),
                                     "--people", str(tmp_path / "people.tsv"), "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    result = invoke(tmp_path / "old", tmp_path / "new", "--fail-above", "50", "--min-cases", "10")
    assert result.exit_code == 1, result.output
    assert table_rows(result.stdout) == [["MI", "20", "40", "+20", "20", "0", "-20", "0", "0", "0"]]
    assert "  MI: cases 20 -> 40 (+100%)" in result.stdout
    assert invoke(tmp_path / "old", tmp_path / "old", "--fail-above", "0").exit_code == 0
