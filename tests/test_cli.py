"""The command line as a user meets it: exit codes, positioned errors, files written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from endpointc.cli import app

ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = ROOT / "definitions"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """A small definition-aware synthetic registry, as TSV (the FinnGen text layout)."""
    out = tmp_path_factory.mktemp("registry")
    result = invoke("synth", "--people", "400", "--seed", "3", "--out", out,
                    "--definitions", DEFINITIONS, "--format", "tsv", "--prevalence", "0.1")
    assert result.exit_code == 0, result.output
    assert "events of 400 people" in result.output
    return out


def test_check_clean_library_exits_0():
    result = invoke("check", DEFINITIONS, "--strict")
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_check_broken_file_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.ep"
    bad.write_text('endpoint A {\n  title "x"\n  purchase icd10 E11\n}\n')
    result = invoke("check", bad)
    assert result.exit_code == 1
    assert f"{bad}:3:12" in result.output
    assert "purchase icd10 E11" in result.output and "^" in result.output


def test_check_warning_fails_only_with_strict(tmp_path):
    warn = tmp_path / "warn.ep"
    warn.write_text("endpoint A { hospital icd10 4109A }\n")
    assert invoke("check", warn).exit_code == 0
    assert invoke("check", warn, "--strict").exit_code == 1


def test_check_json(tmp_path):
    bad = tmp_path / "bad.ep"
    bad.write_text("endpoint A { include B }\n")
    result = invoke("check", bad, "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert payload["diagnostics"][0]["span"]["line"] == 1


def test_check_usage_problems_exit_2(tmp_path):
    assert invoke("check", tmp_path / "missing.ep").exit_code == 2
    assert invoke("check", tmp_path).exit_code == 2  # a folder without .ep files
    assert invoke("check").exit_code == 2


def test_usage_messages_name_the_path(tmp_path):
    missing = invoke("check", DEFINITIONS, tmp_path / "missing.ep")
    assert f"{tmp_path / 'missing.ep'}: no such file or folder" in " ".join(missing.output.split())
    empty = invoke("check", tmp_path)
    assert f"no definition files (*.ep) found in {tmp_path}" in " ".join(empty.output.split())


def test_importing_the_cli_leaves_polars_unloaded():
    # --threads only works if polars starts after the CLI has set POLARS_MAX_THREADS.
    code = "import sys, endpointc.cli; sys.exit('polars' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_fmt_check_rewrite_and_mode(tmp_path):
    path = tmp_path / "a.ep"
    path.write_text("endpoint A {hospital icd10 I21|I22  # MI\n}\n")
    path.chmod(0o644)
    assert invoke("fmt", path, "--check").exit_code == 1
    assert invoke("fmt", path).exit_code == 0
    assert path.read_text() == "endpoint A {\n  hospital icd10 I21 | I22  # MI\n}\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert invoke("fmt", path, "--check").exit_code == 0


def test_fmt_reports_syntax_error_and_keeps_file(tmp_path):
    path = tmp_path / "a.ep"
    text = "endpoint A { hospital icd10 I21 I22 }\n"
    path.write_text(text)
    result = invoke("fmt", path)
    assert result.exit_code == 1
    assert "EP105" in result.output
    assert path.read_text() == text


def test_run_writes_results(registry, tmp_path):
    out = tmp_path / "out"
    result = invoke("run", DEFINITIONS, "--events", registry / "events.tsv",
                    "--people", registry / "people.tsv", "--out", out, "--wide")
    assert result.exit_code == 0, result.output
    long = pl.read_parquet(out / "endpoints.parquet")
    assert long.columns == ["FINNGENID", "ENDPOINT", "STATUS", "AGE", "YEAR", "NEVT"]
    counts = pl.read_csv(out / "counts.tsv", separator="\t", infer_schema=False)
    assert counts.columns == ["ENDPOINT", "N_CASES", "N_CONTROLS", "N_EXCLUDED"]
    # every starter endpoint gets cases on a definition-aware registry
    cases = long.filter(pl.col("STATUS") == "case").group_by("ENDPOINT").len()
    assert cases.height == counts.height
    wide = pl.read_csv(out / "endpoints_wide.tsv", separator="\t", infer_schema=False)
    assert wide.height == 400 and "I9_MI_NEVT" in wide.columns
    # masked aggregate: no count of 1 to 4 in counts.tsv
    values = counts.select(pl.exclude("ENDPOINT")).to_numpy().ravel()
    assert not any(v in {"1", "2", "3", "4"} for v in values)


def test_run_selected_endpoints_and_unknown_name(registry, tmp_path):
    out = tmp_path / "out"
    args = ("run", DEFINITIONS, "--events", registry / "events.tsv", "--people", registry / "people.tsv",
            "--out", out)
    result = invoke(*args, "--endpoints", "I9_CHD")
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out / "endpoints.parquet")["ENDPOINT"].unique().to_list() == ["I9_CHD"]
    assert invoke(*args, "--endpoints", "NO_SUCH").exit_code == 2


def test_run_bad_data_names_file_and_column(registry, tmp_path):
    events = pl.read_csv(registry / "events.tsv", separator="\t", infer_schema=False).drop("EVENT_AGE")
    broken = tmp_path / "events.tsv"
    events.write_csv(broken, separator="\t")
    result = invoke("run", DEFINITIONS, "--events", broken, "--people", registry / "people.tsv",
                    "--out", tmp_path / "out")
    assert result.exit_code == 2   # an input error
    assert "EVENT_AGE" in result.output and str(broken) in result.output
    assert not (tmp_path / "out" / "endpoints.parquet").exists()


@pytest.fixture(scope="module")
def explained(registry):
    """`compile --explain I9_CHD --codes` over the registry (counting its codes takes a while)."""
    result = invoke("compile", DEFINITIONS, "--explain", "I9_CHD", "--codes", registry / "events.tsv")
    assert result.exit_code == 0, result.output
    return result


def test_compile_explain_and_codes(explained):
    assert "plus the case events of: I9_MI" in explained.output
    assert "dependency chain:" in explained.output
    assert "I25" in explained.output  # a code of the registry the rule matches
    assert invoke("compile", DEFINITIONS, "--explain", "I9_CHX").exit_code == 2


def test_demo_prints_counts():
    result = invoke("demo", "--people", "300")
    assert result.exit_code == 0, result.output
    assert "I9_MI" in result.output and "N_CASES" in result.output


def test_import_and_export_finngen(tmp_path):
    sheet = tmp_path / "endpoints.tsv"
    sheet.write_text(
        "NAME\tLONGNAME\tTAGS\tHD_ICD_10\tCOD_ICD_10\tKELA_ATC\tINCLUDE\n"
        "I9_MI\tMyocardial infarction\t#I9\tI21|I22\tI21|I22\t\t\n"
        "I9_CHD\tCoronary heart disease\t#I9\tI25\t\t\tI9_MI\n"
        "STATIN\tStatins\t#DRUG\t\t\tC10AA\t\n")
    out = tmp_path / "imported"
    result = invoke("import-finngen", sheet, "--out", out)
    assert result.exit_code == 0, result.output
    assert invoke("check", out, "--strict").exit_code == 0
    exported = tmp_path / "back.tsv"
    assert invoke("export-finngen", out, "--out", exported).exit_code == 0
    back = pl.read_csv(exported, separator="\t", infer_schema=False).sort("NAME")
    assert back.filter(pl.col("NAME") == "I9_MI")["HD_ICD_10"].item() in {"I21|I22", "I22|I21"}
    assert back.filter(pl.col("NAME") == "I9_CHD")["INCLUDE"].item() == "I9_MI"


# -- output paths, markup, person-level values ---------------------------------------------

def test_out_that_cannot_work_is_refused_before_any_work(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    missing = tmp_path / "missing.tsv"   # would fail later: the --out check must come first
    for args in (("run", DEFINITIONS, "--events", missing, "--people", missing, "--out", taken),
                 ("run", DEFINITIONS, "--events", missing, "--people", missing, "--out", taken / "below"),
                 ("report", DEFINITIONS, "--events", missing, "--people", missing, "--out", taken),
                 ("attrition", DEFINITIONS, "--events", missing, "--people", missing, "--endpoint", "I9_MI",
                  "--out", tmp_path),
                 ("synth", "--people", "10", "--out", taken)):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
        assert "--out" in result.stderr and ("not a folder" in result.stderr or "not a file" in result.stderr)
    assert taken.read_text() == "not a folder"


def test_markup_in_paths_and_values_is_printed_as_it_is(registry, tmp_path):
    odd = tmp_path / "a[/]b [bold]c"
    odd.mkdir(parents=True)
    events = pl.read_csv(registry / "events.tsv", separator="\t", infer_schema=False)
    # a hospital row, which I9_CHD's first rule reads (not a primary care one)
    first = events.filter(pl.col("CODE1").str.starts_with("I25") & (pl.col("SOURCE") == "INPAT")
                          & (pl.col("ICDVER") == "10")).head(1)
    marked = pl.concat([events, first.with_columns(pl.lit("I25[/]x[bold]").alias("CODE1"))])
    # Polars reads "[" in an input path as a glob: the odd folder is for outputs only
    marked.write_csv(tmp_path / "events.tsv", separator="\t")
    result = invoke("run", DEFINITIONS, "--events", tmp_path / "events.tsv", "--people", registry / "people.tsv",
                    "--out", odd / "out", "--wide", "--buckets", "1")
    assert result.exit_code == 0, result.output
    assert "a[/]b [bold]c" in " ".join(result.output.split())
    assert (odd / "out" / "counts.tsv").exists()
    # bucket spill files in such a folder: Polars fails on its name, and says so in one line
    result = invoke("run", DEFINITIONS, "--events", tmp_path / "events.tsv", "--people", registry / "people.tsv",
                    "--out", odd / "out", "--buckets", "2")
    assert result.exit_code in (0, 1) and not isinstance(result.exception, pl.exceptions.PolarsError)
    assert sorted(p.name for p in (odd / "out").iterdir()) == ["counts.tsv", "endpoints.parquet",
                                                               "endpoints_wide.tsv", "manifest.json"]
    result = invoke("compile", DEFINITIONS, "--explain", "I9_CHD", "--codes", tmp_path / "events.tsv")
    assert result.exit_code == 0, result.output
    assert "I25[/]x[bold]" in result.stdout
    result = invoke("attrition", DEFINITIONS, "--events", tmp_path / "events.tsv", "--people",
                    registry / "people.tsv", "--endpoint", "I9_CHD", "--out", odd / "steps.tsv")
    assert result.exit_code == 0, result.output
    assert "a[/]b [bold]c" in " ".join(result.stderr.split())


def test_compile_codes_counts_are_masked(registry, explained):
    table = explained.stdout.split("N_EVENTS", 1)[1].split("Polars plan", 1)[0]
    counts = [line.split("│")[-2].strip() for line in table.splitlines() if line.count("│") > 2]
    assert counts and not {"1", "2", "3", "4"} & set(counts) and "<5" in counts
    plain = invoke("compile", DEFINITIONS, "--explain", "I9_CHD", "--codes", registry / "events.tsv", "--no-mask")
    assert plain.exit_code == 0 and "warning: --no-mask" in plain.stderr and "<5" not in plain.stdout


def test_runs_leave_no_spill_folder_and_remove_those_of_killed_runs(registry, tmp_path):
    from endpointc import results

    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale = out / f".endpointc-buckets-{results._HOST}-{child.pid}-abcd1234"
    stale.mkdir()
    (stale / results.SPILL_MARKER).write_text("")
    (stale / "bucket-00000.parquet").write_bytes(b"rows of a killed run")
    lookalike = out / ".endpointc-buckets-mine"
    lookalike.mkdir()
    result = invoke("run", DEFINITIONS, "--events", registry / "events.tsv", "--people", registry / "people.tsv",
                    "--out", out, "--buckets", "3", "--endpoints", "I9_CHD")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [".endpointc-buckets-mine", "counts.tsv", "endpoints.parquet",
                                                     "manifest.json"]


SECRET_ID, SECRET_CODE = "FG_SECRET_000123", "Z99SECRET"
EVENT_HEADER = ["FINNGENID", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY", "CODE1", "CODE2", "CODE3", "CODE4",
                "ICDVER", "CATEGORY", "INDEX"]
PEOPLE_HEADER = ["FINNGENID", "SEX", "FU_END_AGE", "APPROX_BIRTH_DATE", "DEATH"]


def secret_tables(case: str) -> tuple[list[list[str]], list[list[str]]]:
    """Events and people (header first) with recognisable ids and codes, broken as `case` says."""
    ids = [f"FG_SECRET_{i:06d}" for i in range(120, 140)]
    events = [EVENT_HEADER] + [[pid, "INPAT", f"{40 + i}.5", "2001-02-03", SECRET_CODE, "NA", "NA", "NA", "10",
                                "0", str(i)] for i, pid in enumerate(ids)]
    people = [PEOPLE_HEADER] + [[pid, "female", "80.0", "1950-01-01", "0"] for pid in ids]
    if case == "events without a header":
        events = events[1:]
    elif case == "people without a header":
        people = people[1:]
    elif case == "FINNGENID and SOURCE swapped":
        events[1:] = [[r[1], r[0], *r[2:]] for r in events[1:]]
    elif case == "events of unknown people":
        events += [[f"FG_SECRET_{i:06d}", "INPAT", "50.0", "2001-02-03", SECRET_CODE, "NA", "NA", "NA", "10", "0",
                    f"9{i}"] for i in range(900, 903)]
    elif case == "bad ages":
        events[3][2], people[2][2] = "-7.5", "Z99SECRET"
    elif case == "bad dates":
        events[2][3] = "2001-13-45"
    elif case == "bad sex":
        people[4][1] = SECRET_CODE
    elif case == "duplicate people":
        people.append(people[1])
    elif case == "a ragged line":
        events[5].append(SECRET_CODE)
    elif case == "unknown SOURCE":
        events[2][1] = SECRET_CODE
    return events, people


SECRET_CASES = ["events without a header", "people without a header", "FINNGENID and SOURCE swapped",
                "events of unknown people", "bad ages", "bad dates", "bad sex", "duplicate people",
                "a ragged line", "unknown SOURCE"]


@pytest.mark.parametrize("case", SECRET_CASES)
def test_registry_problems_never_print_person_level_values(case, tmp_path):
    events, people = secret_tables(case)
    (tmp_path / "events.tsv").write_text("".join("\t".join(r) + "\n" for r in events))
    (tmp_path / "people.tsv").write_text("".join("\t".join(r) + "\n" for r in people))
    (tmp_path / "z.ep").write_text("endpoint Z { hospital icd10 Z99 }\n")
    result = invoke("run", tmp_path / "z.ep", "--events", tmp_path / "events.tsv",
                    "--people", tmp_path / "people.tsv", "--out", tmp_path / "out")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2)
    printed = result.stdout + result.stderr
    for secret in ("FG_SECRET", SECRET_CODE, "2001-02-03", "2001-13-45", "-7.5"):
        assert secret not in printed, (case, secret, printed)


def test_an_empty_events_table_needs_allow_empty_events(tmp_path):
    events, people = secret_tables("none")
    (tmp_path / "events.tsv").write_text("\t".join(events[0]) + "\n")
    (tmp_path / "people.tsv").write_text("".join("\t".join(r) + "\n" for r in people))
    (tmp_path / "z.ep").write_text("endpoint Z { hospital icd10 Z99 }\n")
    args = ("run", tmp_path / "z.ep", "--events", tmp_path / "events.tsv", "--people", tmp_path / "people.tsv",
            "--out", tmp_path / "out")
    refused = invoke(*args)
    assert refused.exit_code == 2 and "--allow-empty-events" in refused.stderr
    result = invoke(*args, "--allow-empty-events")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "counts.tsv").read_text().splitlines()[1] == "Z\t0\t20\t0"
