"""Every command's exit codes, as docs/cli.md lists them, and its --json document.

0 done; 1 something found or failed (errors in the definitions, failed tests, a gate);
2 usage or input error (a missing file, a registry or result folder that cannot be used,
an unreadable spreadsheet); 130 interrupted, with nothing half-written. The registry is a
few hand-written rows, so that every command runs in about a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from endpointc.cli import JSON_SCHEMA_VERSION, app

runner = CliRunner()
IDS = [f"FG{i:03d}" for i in range(30)]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """good.ep, broken.ep (an error), failing.ep (a failing test), a registry, a broken one
    (an impossible age), a FinnGen sheet and a file that is no sheet."""
    root = tmp_path_factory.mktemp("exit_codes")
    (root / "good.ep").write_text(
        "endpoint MI {\n  hospital icd10 I21\n}\n\n"
        'test "mi" {\n  person P1 female born 1950-01-01 followed until 2020-01-01 {\n'
        "    1990-03-01 INPAT icd10 I21\n  }\n  expect P1 case of MI at 1990-03-01 nevt 1\n}\n")
    (root / "broken.ep").write_text("endpoint MI { include NO_SUCH }\n")
    (root / "failing.ep").write_text((root / "good.ep").read_text().replace("nevt 1", "nevt 2")
                                     .replace("  hospital", "hospital"))   # and not in the canonical layout
    header = "FINNGENID\tSOURCE\tEVENT_AGE\tAPPROX_EVENT_DAY\tCODE1\tCODE2\tCODE3\tCODE4\tICDVER\tCATEGORY\tINDEX\n"
    rows = [f"{pid}\tINPAT\t{40 + i}.5\t2001-02-03\t{'I21' if i % 3 else 'I50'}\tNA\tNA\tNA\t10\t0\t{i}\n"
            for i, pid in enumerate(IDS)]
    (root / "events.tsv").write_text(header + "".join(rows))
    (root / "bad_events.tsv").write_text(header + "".join(rows).replace("\t41.5\t", "\t-41.5\t"))
    (root / "people.tsv").write_text("FINNGENID\tSEX\tAPPROX_BIRTH_DATE\tFU_END_AGE\tDEATH\n"
                                     + "".join(f"{pid}\tfemale\t1950-01-01\t80.0\t0\n" for pid in IDS))
    (root / "sheet.tsv").write_text("NAME\tLONGNAME\tTAGS\tHD_ICD_10\nI9_MI\tMyocardial infarction\t#I9\tI21\n")
    (root / "no_sheet.tsv").write_text("just\ttext\n1\t2\n")
    return root


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def registry(work: Path, events: str = "events.tsv"):
    return ("--events", work / events, "--people", work / "people.tsv")


CASES = {
    # command: [(exit code, arguments under `work`), ...]
    "check": [(0, lambda w: ["check", w / "good.ep"]), (1, lambda w: ["check", w / "broken.ep"]),
              (2, lambda w: ["check", w / "missing.ep"])],
    "fmt": [(0, lambda w: ["fmt", "--check", w / "good.ep"]), (1, lambda w: ["fmt", "--check", w / "failing.ep"]),
            (2, lambda w: ["fmt", w / "missing.ep"])],
    "test": [(0, lambda w: ["test", w / "good.ep"]), (1, lambda w: ["test", w / "failing.ep"]),
             (2, lambda w: ["test", w / "broken.ep"])],
    "run": [(0, lambda w: ["run", w / "good.ep", *registry(w), "--out", w / "out_run"]),
            (1, lambda w: ["run", w / "broken.ep", *registry(w), "--out", w / "out_run1"]),
            (2, lambda w: ["run", w / "good.ep", *registry(w, "bad_events.tsv"), "--out", w / "out_run2"]),
            (2, lambda w: ["run", w / "good.ep", *registry(w, "missing.tsv"), "--out", w / "out_run3"]),
            (2, lambda w: ["run", w / "good.ep", *registry(w), "--out", w / "out_run4", "--index", w / "no_index"])],
    "index": [(0, lambda w: ["index", *registry(w), "--out", w / "index"]),
              (2, lambda w: ["index", *registry(w, "bad_events.tsv"), "--out", w / "index2"]),
              (2, lambda w: ["index", *registry(w, "missing.tsv"), "--out", w / "index3"])],
    "compile": [(0, lambda w: ["compile", w / "good.ep", "--explain", "MI"]),
                (1, lambda w: ["compile", w / "broken.ep"]),
                (2, lambda w: ["compile", w / "good.ep", "--explain", "NO_SUCH"])],
    "synth": [(0, lambda w: ["synth", "--people", "20", "--out", w / "synth"]),
              (2, lambda w: ["synth", "--people", "20", "--out", w / "synth2", "--format", "xlsx"])],
    "import-finngen": [(0, lambda w: ["import-finngen", w / "sheet.tsv", "--out", w / "imported"]),
                       (2, lambda w: ["import-finngen", w / "no_sheet.tsv", "--out", w / "imported2"]),
                       (2, lambda w: ["import-finngen", w / "missing.tsv", "--out", w / "imported3"])],
    "export-finngen": [(0, lambda w: ["export-finngen", w / "good.ep", "--out", w / "exported.tsv"]),
                       (1, lambda w: ["export-finngen", w / "broken.ep", "--out", w / "exported1.tsv"]),
                       (2, lambda w: ["export-finngen", w / "good.ep", "--out", w])],
    "explain": [(0, lambda w: ["explain", w / "good.ep", *registry(w), "--person", "FG001", "--endpoint", "MI"]),
                (1, lambda w: ["explain", w / "broken.ep", *registry(w), "--person", "FG001", "--endpoint", "MI"]),
                (2, lambda w: ["explain", w / "good.ep", *registry(w), "--person", "NOBODY", "--endpoint", "MI"]),
                (2, lambda w: ["explain", w / "good.ep", *registry(w, "bad_events.tsv"), "--person", "FG001",
                               "--endpoint", "MI"])],
    "attrition": [(0, lambda w: ["attrition", w / "good.ep", *registry(w), "--endpoint", "MI"]),
                  (1, lambda w: ["attrition", w / "broken.ep", *registry(w), "--endpoint", "MI"]),
                  (2, lambda w: ["attrition", w / "good.ep", *registry(w, "bad_events.tsv"), "--endpoint", "MI"])],
    "report": [(0, lambda w: ["report", w / "good.ep", *registry(w), "--out", w / "site"]),
               (1, lambda w: ["report", w / "broken.ep", *registry(w), "--out", w / "site1"]),
               (2, lambda w: ["report", w / "good.ep", *registry(w, "bad_events.tsv"), "--out", w / "site2"])],
    "diff": [(0, lambda w: ["diff", w / "good.ep", w / "failing.ep"]),
             (1, lambda w: ["diff", w / "good.ep", w / "broken.ep", *registry(w)]),
             (2, lambda w: ["diff", w / "good.ep", w / "failing.ep", *registry(w, "bad_events.tsv")]),
             (2, lambda w: ["diff", w / "good.ep", w / "missing.ep"])],
}


@pytest.mark.parametrize("command,code,args", [(c, code, args) for c, cases in CASES.items() for code, args in cases],
                         ids=[f"{c}-{code}-{i}" for c, cases in CASES.items() for i, (code, _) in enumerate(cases)])
def test_exit_code(work, command, code, args):
    result = invoke(*args(work))
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if code == 2:
        assert "error" in result.stderr.lower() or "usage" in result.stderr.lower(), result.stderr


def test_every_command_is_pinned():
    documented = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    commands = sorted(typer.main.get_command(app).commands)
    assert set(CASES) | {"demo", "lsp"} == set(commands)
    for command in commands:
        assert f"### `{command}`" in documented, command


# -- 130 ------------------------------------------------------------------------------------

def _interrupt(*_args, **_kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("where,args", [
    ("endpointc.compiler.definition_files", lambda w: ["check", w / "good.ep"]),
    ("endpointc.engine.polars.evaluate", lambda w: ["run", w / "good.ep", *registry(w), "--out", w / "out_130"]),
    ("endpointc.finngen.import_finngen", lambda w: ["import-finngen", w / "sheet.tsv", "--out", w / "imported_130"]),
    ("endpointc.attrition.attrition", lambda w: ["attrition", w / "good.ep", *registry(w), "--endpoint", "MI"]),
    ("endpointc.diff.diff_libraries", lambda w: ["diff", w / "good.ep", w / "failing.ep"]),
], ids=["check", "run", "import-finngen", "attrition", "diff"])
def test_interrupted_exits_130_with_one_line(work, monkeypatch, where, args):
    module, _, name = where.rpartition(".")
    monkeypatch.setattr(f"{module}.{name}", _interrupt)
    result = invoke(*args(work))
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in result.output and result.stdout == ""


def test_ctrl_c_while_writing_leaves_nothing_half_written(work, tmp_path):
    """A real SIGINT through the console entry point, once the first result file is written
    to its temporary file: exit 130, one line, and an empty output folder."""
    out = tmp_path / "out"
    script = (
        "import os, signal, sys\n"
        "import endpointc.results as results\n"
        "real = results._write_all\n"
        "def write_all(folder, writers):\n"
        "    (name, write), rest = writers[0], writers[1:]\n"
        "    def then_interrupt(path):\n"
        "        write(path)\n"
        "        signal.raise_signal(signal.SIGINT)  # to this thread: os.kill may pick a busy Polars thread\n"
        "    return real(folder, [(name, then_interrupt), *rest])\n"
        "results._write_all = write_all\n"
        "from endpointc.cli import main\n"
        "sys.argv = ['endpointc', *sys.argv[1:]]\n"
        "main()\n")
    done = subprocess.run([sys.executable, "-c", script, "run", str(work / "good.ep"), *map(str, registry(work)),
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 130, done.stderr
    assert done.stderr.rstrip().endswith("interrupted") and "Traceback" not in done.stderr
    assert list(out.iterdir()) == []


# -- --json -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args,code", [
    (lambda w: ["check", w / "broken.ep", "--json"], 1),
    (lambda w: ["test", w / "good.ep", "--json"], 0),
    (lambda w: ["attrition", w / "good.ep", *registry(w), "--endpoint", "MI", "--json"], 0),
    (lambda w: ["import-finngen", w / "sheet.tsv", "--out", w / "imported_json", "--json"], 0),
    (lambda w: ["diff", w / "good.ep", w / "failing.ep", *registry(w), "--json"], 0),
], ids=["check", "test", "attrition", "import-finngen", "diff"])
def test_json_is_one_document_with_a_schema_version(work, args, code):
    result = invoke(*args(work))
    assert result.exit_code == code, result.output
    document = json.loads(result.stdout)
    assert document["schema_version"] == JSON_SCHEMA_VERSION and document["ok"] is (code == 0)


def test_json_shapes(work):
    check = json.loads(invoke("check", work / "broken.ep", "--json").stdout)
    assert (check["errors"], check["warnings"], check["files"]) == (1, 0, [str(work / "broken.ep")])
    assert check["diagnostics"][0]["code"] == "EP201"
    steps = json.loads(invoke("attrition", work / "good.ep", *registry(work), "--endpoint", "MI", "--json").stdout)
    assert steps["endpoint"] == "MI" and steps["mask_threshold"] == 5
    population = steps["steps"][0]
    assert population == {"side": "cases", "rule": None, "step": "population", "n_people": 30, "n_added_back": None}
    assert all(set(s) == {"side", "rule", "step", "n_people", "n_added_back"} for s in steps["steps"])
    imported = json.loads(invoke("import-finngen", work / "sheet.tsv", "--out", work / "imported_shape",
                                 "--json").stdout)
    assert (imported["rows_read"], imported["endpoints_written"], imported["marked"]) == (1, 1, [])
    assert [Path(p).name for p in imported["files_written"]] == ["I9.ep"]
    libraries = json.loads(invoke("diff", work / "good.ep", work / "broken.ep", "--json").stdout)
    assert libraries["kind"] == "libraries" and libraries["counts"] is None
    assert libraries["changed"] == [{"endpoint": "MI", "definition": ["removed rule: hospital icd10 I21",
                                                                      "include: added NO_SUCH"], "metadata": []}]
