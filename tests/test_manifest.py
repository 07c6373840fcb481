"""manifest.json: written by every `run` with its results, described by its JSON Schema,
and definition hashes that follow meaning, not spelling."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import typing
from pathlib import Path

import jsonschema
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from endpointc import manifest as manifest_module
from endpointc import plan as P
from endpointc.compiler import compile_text
from endpointc.fmt import format_text
from endpointc.index import build_index
from endpointc.manifest import (
    MANIFEST_FILE, SCHEMA_VERSION, ManifestError, OutputRecord, TableRecord, definition_hashes, json_schema,
    read_manifest,
)
from endpointc.results import write_results
from endpointc.source import Span

from small_runs import LIBRARY, run, write_library, write_registry
from strategies import definition_texts

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "docs" / "manifest.schema.json"


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return write_library(tmp_path_factory.mktemp("library"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory, library) -> Path:
    return write_registry(tmp_path_factory.mktemp("registry"), library)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_writes_a_manifest_that_fits_its_schema(library, registry, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["endpointc", "run", "as", "typed"])
    run(library, registry, out, "--wide", "--endpoints", "I9_CHD_EARLY,E4_DM2")
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    jsonschema.validate(manifest, json.loads(SCHEMA_FILE.read_text()))

    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["tool"]["polars"] == pl.__version__
    events, people = manifest["inputs"]["events"], manifest["inputs"]["people"]
    assert events["path"] == str(registry / "events.parquet")
    assert events["sha256"] == _sha256(registry / "events.parquet")
    assert events["rows"] == pl.read_parquet(registry / "events.parquet").height
    assert people["rows"] == 300 and people["size"] == (registry / "people.parquet").stat().st_size
    assert [d["sha256"] for d in manifest["inputs"]["definitions"]] == [_sha256(library / "lib.ep")]
    assert manifest["options"]["endpoints"] == ["I9_CHD_EARLY", "E4_DM2"]
    assert manifest["options"]["mask_threshold"] == 5 and manifest["options"]["wide"] is True
    # the endpoints written, each computed; their dependencies are not written
    assert sorted(manifest["endpoints"]) == ["E4_DM2", "I9_CHD_EARLY"]
    assert {e["status"] for e in manifest["endpoints"].values()} == {"computed"}
    assert manifest["reuse"] is None
    outputs = {o["file"]: o for o in manifest["outputs"]}
    assert sorted(outputs) == ["counts.tsv", "endpoints.parquet", "endpoints_wide.tsv"]
    for name, output in outputs.items():
        assert output["sha256"] == _sha256(out / name) and output["size"] == (out / name).stat().st_size
    assert set(manifest["timings"]) == {"compile", "hash_inputs", "read_registry", "evaluate", "write"}
    assert manifest["command"] == ["endpointc", "run", "as", "typed"]


def test_the_schema_file_is_the_models_schema():
    # docs/manifest.schema.json is written from the model, so the two cannot drift apart
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), (
        "docs/manifest.schema.json is out of date: write it again with "
        "`python -c 'import json, endpointc.manifest as m; print(json.dumps(m.json_schema(), indent=2))'`")


def test_the_schema_rejects_what_is_not_a_manifest(library, registry, tmp_path):
    run(library, registry, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())
    schema = json.loads(SCHEMA_FILE.read_text())
    for broken in ({**manifest, "schema_version": 2},
                   {**manifest, "endpoints": {"A": {"definition_hash": "x", "status": "computed"}}},
                   {k: v for k, v in manifest.items() if k != "inputs"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_a_run_with_the_index_records_the_inputs_without_hashing_them_again(library, registry, tmp_path,
                                                                           monkeypatch):
    build_index(registry / "events.parquet", registry / "people.parquet", tmp_path / "idx")
    run(library, registry, tmp_path / "plain", "--endpoints", "I9_CHD_EARLY")
    read = []

    def file_record(path):
        read.append(Path(path).name)
        return real(path)

    real = manifest_module.file_record
    monkeypatch.setattr(manifest_module, "file_record", file_record)
    run(library, registry, tmp_path / "indexed", "--endpoints", "I9_CHD_EARLY", "--index", tmp_path / "idx")
    assert read_manifest(tmp_path / "indexed").inputs == read_manifest(tmp_path / "plain").inputs
    # the index checked the registry files when it was opened: its hashes are taken
    assert "lib.ep" in read and not {"events.parquet", "people.parquet"} & set(read)


def test_a_hash_not_computed_says_why():
    table = TableRecord(path="hdfs://nn/events.parquet", size=None, sha256=None, rows=10, not_hashed="on hdfs://")
    assert table.sha256 is None
    for fields in (dict(size=None, sha256=None), dict(size=1, sha256="0" * 64, not_hashed="on hdfs://")):
        with pytest.raises(ValidationError, match="not_hashed says why"):
            OutputRecord(file="counts.tsv", **fields)


def test_run_json_prints_one_document(library, registry, tmp_path):
    result = run(library, registry, tmp_path / "out", "--json")
    summary = json.loads(result.stdout)
    assert summary["schema_version"] == 1
    assert summary["endpoints"] == {"computed": 4, "reused": 0}
    assert summary["outputs"] == ["manifest.json", "counts.tsv", "endpoints.parquet"]
    shown = pl.read_csv(tmp_path / "out" / "counts.tsv", separator="\t", infer_schema=False)
    # the counts as counts.tsv shows them: masked ones as text, the others as numbers
    assert [[str(row[c]) for c in shown.columns] for row in summary["counts"]] == [list(r) for r in shown.rows()]
    assert not any(row[c] in (1, 2, 3, 4) for row in summary["counts"] for c in ("N_CASES", "N_EXCLUDED"))


def test_a_failed_write_leaves_no_manifest_and_the_old_results(tmp_path):
    long = pl.LazyFrame({"FINNGENID": ["a"], "ENDPOINT": ["E"], "STATUS": ["case"], "AGE": [50.0],
                         "YEAR": [2000], "NEVT": [1]})
    counts = pl.LazyFrame({"ENDPOINT": ["E"], "N_CASES": [1], "N_CONTROLS": [9], "N_EXCLUDED": [0]})
    people = pl.LazyFrame({"FINNGENID": [f"p{i}" for i in range(10)]})
    write_results(long, counts, tmp_path, people=people, manifest=lambda outputs: json.dumps(sorted(outputs)))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert json.loads(before[MANIFEST_FILE]) == ["counts.tsv", "endpoints.parquet"]

    def failing(outputs):
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_results(long.with_columns(pl.lit(60.0).alias("AGE")), counts, tmp_path, people=people,
                      manifest=failing)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# --- reading ---------------------------------------------------------------------------

@pytest.mark.parametrize("case, message", [
    ("no folder", "no such folder"),
    ("no file", "manifest.json: no such file"),
    ("not json", "not valid JSON (line 1, column 2)"),
    ("other version", "schema_version 2; this endpointc reads 1"),
    ("no version", "schema_version null"),
    ("bad field", "not a valid manifest: created: Field required"),
])
def test_read_manifest_says_what_is_wrong(tmp_path, case, message):
    folder = tmp_path / "out"
    if case != "no folder":
        folder.mkdir()
    texts = {"not json": "{oops", "other version": '{"schema_version": 2}', "no version": "[]",
             "bad field": '{"schema_version": 1}'}
    if case in texts:
        (folder / MANIFEST_FILE).write_text(texts[case])
    with pytest.raises(ManifestError, match=re.escape(message)) as error:
        read_manifest(folder)
    assert str(folder) in str(error.value)


# --- definition hashes -----------------------------------------------------------------

def _hashes(text: str) -> dict[str, str]:
    program, diagnostics = compile_text(text)
    assert program is not None, diagnostics
    return definition_hashes(program)


def test_comments_layout_and_metadata_do_not_change_a_definition_hash():
    before = _hashes(LIBRARY)
    moved = LIBRARY.replace('  title "Myocardial infarction"\n  tags I9, CARDIO\n',
                            '  # acute only\n  title "Acute myocardial infarction"\n  tags I9\n  level 3\n')
    moved = moved.replace("include I9_MI\n", "include   I9_MI  # the acute part\n")
    assert moved != LIBRARY
    # declarations in another order, and in another file name
    blocks = moved.split("\n\n")
    assert _hashes("\n\n".join(reversed(blocks))) == before
    assert _hashes(moved) == before


def test_a_change_of_meaning_changes_the_hash_of_the_endpoint_and_its_dependents():
    before = _hashes(LIBRARY)
    in_codelist = _hashes(LIBRARY.replace("icd9 410", "icd9 411"))
    assert {n for n in before if in_codelist[n] != before[n]} == {"I9_MI", "I9_CHD", "I9_CHD_EARLY"}
    in_condition = _hashes(LIBRARY.replace("age < 55", "age < 50"))
    assert {n for n in before if in_condition[n] != before[n]} == {"I9_CHD_EARLY"}
    in_rule = _hashes(LIBRARY.replace("purchase atc A10B", "purchase min 2 atc A10B"))
    assert {n for n in before if in_rule[n] != before[n]} == {"E4_DM2"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definition_texts(max_endpoints=4))
def test_the_canonical_layout_keeps_every_definition_hash(text):
    formatted, diagnostics = format_text(text)
    assert formatted is not None, diagnostics
    assert _hashes(formatted) == _hashes(text)


def _spans(model: type) -> set[str]:
    return {name for name, field in model.model_fields.items()
            if Span in typing.get_args(field.annotation) or field.annotation is Span}


def test_every_span_of_the_plan_is_left_out_of_the_hash():
    # a span says where a plan was written; were a new one hashed, moving text would change it
    found = {cls.__name__: _spans(cls) for cls in vars(P).values()
             if isinstance(cls, type) and issubclass(cls, P.BaseModel) and _spans(cls)}
    assert found == {"RulePlan": {"span"}, "EndpointPlan": {"span"}}
