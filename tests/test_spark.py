"""endpointc on Spark (endpointc.spark), in local mode, gives the local engine's results.

Needs PySpark (the `spark` extra) and Java 17 or newer. Without PySpark this module is
skipped on a developer's machine, and fails on CI (the CI variable set), where .ci/run
installs the extra. With PySpark but without Java, every test fails saying so
(`session` raises SparkUnavailable): Spark tests never pass by being skipped on CI.

One local[2] session serves the module; hypothesis draws few examples (each runs Spark
jobs): the random programs and registries are mostly covered by tests/test_distributed.py,
which runs the same bucket evaluation without Spark.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jsonschema
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

if os.environ.get("CI"):
    import pyspark  # noqa: F401  (CI installs the spark extra: its absence is a failure)
else:
    pytest.importorskip("pyspark", reason="the spark extra is not installed: pip install -e '.[spark]'")

from endpointc import spark as on_spark  # noqa: E402
from endpointc.cli import app  # noqa: E402
from endpointc.engine.outputs import combine_warnings  # noqa: E402
from endpointc.engine.polars import evaluate  # noqa: E402
from endpointc.manifest import read_manifest  # noqa: E402
from endpointc.registry import RegistryError, normalise_table  # noqa: E402
from endpointc.synth import write_registry  # noqa: E402

from plan_strategies import programs, registries  # noqa: E402

DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def spark():
    session = on_spark.session(master="local[2]", conf={
        "spark.sql.shuffle.partitions": "2",
        "spark.ui.enabled": "false",
        # a short-lived JVM: the quick compiler only, and no GC threads to start
        "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    })
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _frame(spark, df: pl.DataFrame):
    return spark.createDataFrame(df.to_arrow(compat_level=pl.CompatLevel.oldest()))


def _local(program, events: pl.DataFrame, people: pl.DataFrame, endpoints=None):
    """The local engine on the same tables as read from a file (`scan_events`)."""
    return evaluate(program, normalise_table(events.lazy(), "events", file="events"),
                    normalise_table(people.lazy(), "people", file="people"), endpoints=endpoints)


@settings(max_examples=3, **_SETTINGS)
@given(programs(), registries(), st.integers(1, 3), st.data())
def test_random_programs_give_the_local_results(spark, program, registry, buckets, data):
    events, people = registry
    selection = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(program.names), min_size=1,
                                                        max_size=2, unique=True)), label="endpoints")
    got = on_spark.evaluate(program, _frame(spark, events), _frame(spark, people), endpoints=selection,
                            buckets=buckets)
    expected = _local(program, events, people, endpoints=selection)
    assert_frame_equal(pl.from_arrow(got.long.toArrow()).sort("ENDPOINT", "FINNGENID"), expected.long.collect())
    assert_frame_equal(pl.from_arrow(got.counts.toArrow()), expected.counts.collect())
    absent = got.absent.first()
    assert combine_warnings([on_spark._Absent(absent["EVENTS"], absent["PEOPLE"])]) == expected.warnings


def test_run_on_the_starter_library_writes_the_local_files(spark, tmp_path):
    """`endpointc run --engine spark` on a TSV registry (every column text, read by Spark)
    writes the rows and the counts.tsv of the local engine, and a manifest with the local
    run's inputs and definition hashes."""
    reg = write_registry(tmp_path / "reg", people=300, seed=5, definitions=_starter(), fmt="tsv")
    common = [str(DEFINITIONS), "--events", str(reg["events"]), "--people", str(reg["people"]), "--json"]
    runner = CliRunner()
    local = runner.invoke(app, ["run", *common, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    out = tmp_path / "spark"
    (out / "endpoints.parquet").mkdir(parents=True)   # an earlier run's, replaced whole
    (out / "endpoints.parquet" / "part-old.parquet").write_text("old")
    got = runner.invoke(app, ["run", *common, "--out", str(out), "--engine", "spark", "--buckets", "3"])
    assert got.exit_code == 0, got.output
    summary, local_summary = json.loads(got.stdout), json.loads(local.stdout)
    assert summary["counts"] == local_summary["counts"] and "C3_BREAST" in got.stdout
    assert summary["outputs"] == local_summary["outputs"] == ["manifest.json", "counts.tsv", "endpoints.parquet"]
    assert (out / "counts.tsv").read_bytes() == (tmp_path / "local" / "counts.tsv").read_bytes()
    parts = sorted((out / "endpoints.parquet").glob("part-*.parquet"))
    assert parts and "part-old.parquet" not in {p.name for p in parts}
    # the part files in name order are the long table in its order
    assert_frame_equal(pl.read_parquet(parts), pl.read_parquet(tmp_path / "local" / "endpoints.parquet"))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "counts.tsv", "endpoints.parquet", "manifest.json"]
    assert not list(out.glob(".endpointc-spark-*"))
    assert (out / "counts.tsv").stat().st_mode & 0o077 == 0   # individual-level folder: owner only

    schema = json.loads((Path(__file__).resolve().parents[1] / "docs" / "manifest.schema.json").read_text())
    jsonschema.validate(json.loads((out / "manifest.json").read_text()), schema)
    manifest, local_manifest = read_manifest(out), read_manifest(tmp_path / "local")
    # local files: hashed, and counted as the local engine counts them
    assert manifest.inputs == local_manifest.inputs and manifest.inputs.events.sha256 is not None
    assert manifest.endpoints == local_manifest.endpoints
    assert manifest.registry is None and local_manifest.spark is None
    assert (manifest.spark.master, manifest.spark.buckets) == ("local[2]", 3)
    assert [o.file for o in manifest.outputs] == ["counts.tsv", *(f"endpoints.parquet/{p.name}" for p in parts)]
    for output in manifest.outputs:
        data = (out / output.file).read_bytes()
        assert (output.size, output.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert manifest.timings.evaluate > 0 and manifest.timings.write > 0


def test_only_a_table_that_is_one_file_here_is_hashed(spark, tmp_path):
    (tmp_path / "events.parquet").mkdir()
    (tmp_path / "people.tsv").write_text("FINNGENID\n")
    fs = on_spark._FileSystem(spark, str(tmp_path))
    assert fs.hashed((tmp_path / "people.tsv").as_uri()) == {
        "size": 10, "sha256": hashlib.sha256(b"FINNGENID\n").hexdigest()}
    folder = fs.hashed(str(tmp_path / "events.parquet"))
    assert folder["not_hashed"] == "a folder of part files, not one file: not hashed"
    remote = "hdfs://localhost:8020/registry/events.parquet"   # no cluster needed: nothing is read
    assert on_spark._FileSystem(spark, remote).hashed(remote) == {
        "size": None, "sha256": None, "not_hashed": "on hdfs://, not on this machine: not read to hash it"}


def test_credentials_in_spark_settings_are_not_recorded():
    argv = ["endpointc", "run", "defs", "--spark-conf", "spark.hadoop.fs.s3a.secret.key=abc",
            "--spark-conf=spark.hadoop.fs.s3a.access.key=AKIA", "--spark-conf", "spark.executor.memory=4g",
            "--out", "token=1"]
    assert on_spark.redacted_command(argv) == (
        "endpointc", "run", "defs", "--spark-conf", "spark.hadoop.fs.s3a.secret.key=*********(redacted)",
        "--spark-conf=spark.hadoop.fs.s3a.access.key=*********(redacted)", "--spark-conf", "spark.executor.memory=4g",
        "--out", "token=1")


def _starter():
    from endpointc.compiler import compile_program

    return compile_program([DEFINITIONS])


def test_a_failed_move_puts_the_earlier_results_back(spark, tmp_path):
    out, stage = tmp_path / "out", tmp_path / "out" / ".stage"
    (stage / "endpoints.parquet").mkdir(parents=True)
    (out / "endpoints.parquet").mkdir()
    (out / "endpoints.parquet" / "old").write_text("old rows")
    (out / "counts.tsv").write_text("old counts")
    fs = on_spark._FileSystem(spark, str(out))
    with pytest.raises(OSError, match="could not move"):   # the stage has no counts.tsv
        fs.commit(str(stage), str(out), ("endpoints.parquet", "counts.tsv"))
    assert (out / "endpoints.parquet" / "old").read_text() == "old rows"
    assert (out / "counts.tsv").read_text() == "old counts"


def test_a_missing_table_is_named(spark, tmp_path):
    with pytest.raises(RegistryError, match=r"events file .*nowhere\.parquet does not exist") as error:
        on_spark.run(spark, _starter(), str(tmp_path / "nowhere.parquet"), str(tmp_path / "p.tsv"),
                     str(tmp_path / "out"))
    assert error.value.code == "EP501"
    assert not (tmp_path / "out").exists()


def test_a_missing_column_is_named_before_any_job(spark):
    events = spark.createDataFrame([("FG1", "INPAT")], "FINNGENID string, SOURCE string")
    people = spark.createDataFrame([("FG1", "female", 50.0)], "FINNGENID string, SEX string, FU_END_AGE double")
    with pytest.raises(RegistryError, match="events file s3://b/events.parquet: missing required columns EVENT_AGE"):
        on_spark.evaluate(_starter(), on_spark.SparkTable(events, "s3://b/events.parquet"), people)


def test_no_java_is_said(monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(on_spark.SparkUnavailable, match="Spark needs Java 17"):
        on_spark.session(master="local[1]")
    result = CliRunner().invoke(app, ["run", str(DEFINITIONS), "--events", "e.parquet", "--people", "p.parquet",
                                      "--out", "out", "--engine", "spark"])
    assert result.exit_code == 1 and "Spark needs Java 17" in result.output


@pytest.mark.parametrize("args,message", [
    (["--engine", "spark", "--wide"], "--wide: not available with --engine spark"),
    (["--master", "local[1]"], "--master and --spark-conf need --engine spark"),
    (["--engine", "spark", "--spark-conf", "spark.executor.cores"], "expected KEY=VALUE"),
])
def test_options_that_cannot_work_are_usage_errors(tmp_path, args, message):
    result = CliRunner().invoke(app, ["run", str(DEFINITIONS), "--events", "e.parquet", "--people", "p.parquet",
                                      "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
