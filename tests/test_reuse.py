"""`run --reuse PREVIOUS_OUT`: unchanged endpoints taken from an earlier run, the rest
computed, and every output byte for byte what a full run writes."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from endpointc import cli
from endpointc import plan as P
from endpointc.manifest import MANIFEST_FILE, read_manifest
from endpointc.registry import load_registry
from endpointc.reuse import ReusePlan

from plan_strategies import endpoint_plans, programs, registries
from small_runs import LIBRARY, invoke, run, write_library, write_registry


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return write_library(tmp_path_factory.mktemp("library"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory, library) -> Path:
    return write_registry(tmp_path_factory.mktemp("registry"), library)


@pytest.fixture(scope="module")
def previous(tmp_path_factory, library, registry) -> Path:
    """A full run of the library, with the wide table, to reuse from."""
    out = tmp_path_factory.mktemp("previous")
    run(library, registry, out, "--wide")
    return out


def _outputs(folder: Path) -> dict[str, bytes]:
    """Every output but the manifest (which holds timings), by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != MANIFEST_FILE}


def _statuses(folder: Path) -> dict[str, str]:
    return {name: e.status for name, e in read_manifest(folder).endpoints.items()}


def _reuse_and_full(library: Path, registry: Path, previous: Path, tmp_path: Path, *extra) -> tuple[Path, str]:
    """Runs with --reuse and without; asserts equal outputs; the reusing run's folder and stderr."""
    full, reused = tmp_path / "full", tmp_path / "reused"
    run(library, registry, full, *extra)
    result = run(library, registry, reused, *extra, "--reuse", previous)
    assert _outputs(reused) == _outputs(full)
    return reused, result.stderr


def test_nothing_changed_reuses_every_endpoint(library, registry, previous, tmp_path):
    reused, stderr = _reuse_and_full(library, registry, previous, tmp_path, "--wide")
    assert set(_statuses(reused).values()) == {"reused"}
    manifest = read_manifest(reused)
    assert (manifest.reuse.reused, manifest.reuse.computed, manifest.reuse.note) == (4, 0, None)
    # the registry check of the earlier run, on the same files, is taken with its warnings
    assert manifest.registry.checked is False
    assert manifest.registry.warnings == read_manifest(previous).registry.warnings
    assert _outputs(reused) == _outputs(previous)


def test_comments_and_metadata_change_nothing_computed(registry, previous, tmp_path):
    edited = LIBRARY.replace('title "Myocardial infarction"', 'title "Acute MI"  # renamed\n  level 3')
    library = write_library(tmp_path / "library", "# moved around\n\n" + edited)
    reused, _ = _reuse_and_full(library, registry, previous, tmp_path, "--wide")
    assert set(_statuses(reused).values()) == {"reused"}


def test_a_changed_endpoint_is_computed_with_everything_that_depends_on_it(registry, previous, tmp_path):
    library = write_library(tmp_path / "library", LIBRARY.replace("icd9 410", "icd9 4109"))
    reused, _ = _reuse_and_full(library, registry, previous, tmp_path, "--wide")
    assert _statuses(reused) == {"E4_DM2": "reused", "I9_CHD": "computed", "I9_CHD_EARLY": "computed",
                                 "I9_MI": "computed"}


def test_new_endpoints_and_another_selection(registry, tmp_path):
    library = write_library(tmp_path / "library")
    first = tmp_path / "first"
    run(library, registry, first, "--endpoints", "I9_MI,E4_DM2")
    grown = write_library(tmp_path / "grown", LIBRARY + "\nendpoint T2D { include E4_DM2 }\n")
    reused, _ = _reuse_and_full(grown, registry, first, tmp_path, "--no-mask")
    assert _statuses(reused) == {"E4_DM2": "reused", "I9_CHD": "computed", "I9_CHD_EARLY": "computed",
                                 "I9_MI": "reused", "T2D": "computed"}


def test_reuse_into_the_same_folder(library, registry, tmp_path):
    out = tmp_path / "out"
    run(library, registry, out, "--wide")
    before = _outputs(out)
    run(library, registry, out, "--wide", "--reuse", out)
    assert _outputs(out) == before and set(_statuses(out).values()) == {"reused"}


def test_a_changed_registry_reuses_nothing(library, registry, previous, tmp_path):
    changed = tmp_path / "registry"
    shutil.copytree(registry, changed)
    people = pl.read_parquet(registry / "people.parquet")
    people.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(99.0)).otherwise("FU_END_AGE")
                        .alias("FU_END_AGE")).write_parquet(changed / "people.parquet")
    reused, stderr = _reuse_and_full(library, changed, previous, tmp_path, "--wide")
    assert set(_statuses(reused).values()) == {"computed"}
    manifest = read_manifest(reused)
    assert manifest.reuse.note.startswith(f"--reuse {previous}: the people file")
    assert manifest.registry.checked is True and manifest.reuse.reused == 0


def _break(previous: Path, target: Path, how: str) -> None:
    shutil.copytree(previous, target)
    manifest, long = target / MANIFEST_FILE, target / "endpoints.parquet"
    if how == "no manifest":
        manifest.unlink()
    elif how == "corrupt manifest":
        manifest.write_text(manifest.read_text()[:100])
    elif how == "other version":
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "schema_version": 2}))
    elif how == "other build":
        data = json.loads(manifest.read_text())
        data["tool"]["build"] = "0" * 64
        manifest.write_text(json.dumps(data))
    elif how == "made on Spark":  # as a Spark run over tables on a cluster writes it
        data = json.loads(manifest.read_text())
        data["spark"] = {"pyspark": "4.0.0", "master": "yarn", "application_id": "application_1", "buckets": 4}
        data["inputs"]["events"].update(size=None, sha256=None, not_hashed="not a file on this machine")
        manifest.write_text(json.dumps(data))
    elif how == "half-written results":
        long.write_bytes(long.read_bytes()[: long.stat().st_size // 2])
    elif how == "other results":
        pl.read_parquet(long).head(10).write_parquet(long)
    elif how == "no folder":
        shutil.rmtree(target)


@pytest.mark.parametrize("how, says", [
    ("no folder", "no such folder"),
    ("no manifest", "manifest.json: no such file"),
    ("corrupt manifest", "not valid JSON"),
    ("other version", "schema_version 2; this endpointc reads 1"),
    ("other build", "made by another endpointc"),
    ("made on Spark", "made on Spark"),
    ("half-written results", "not the file its manifest describes"),
    ("other results", "not the file its manifest describes"),
])
def test_an_unusable_previous_run_is_a_warning_and_a_full_run(library, registry, previous, tmp_path, how, says):
    broken = tmp_path / "previous"
    _break(previous, broken, how)
    reused, stderr = _reuse_and_full(library, registry, broken, tmp_path, "--wide")
    manifest = read_manifest(reused)
    assert says in manifest.reuse.note and manifest.reuse.note.endswith("computing every endpoint")
    # printed as a warning (rich folds long lines anywhere)
    assert "".join(manifest.reuse.note.split()) in "".join(stderr.split())
    assert set(_statuses(reused).values()) == {"computed"} and manifest.registry.checked is True


# --- random libraries, random edits --------------------------------------------------------

@st.composite
def _edited(draw, program: P.Program) -> P.Program:
    """`program` with one random change: an endpoint drawn anew (its dependents keep
    reading it), its sex changed, one more endpoint, the last one gone, or none."""
    eps = list(program.endpoints)
    names = [ep.name for ep in eps]
    k = draw(st.integers(0, len(eps) - 1))
    kind = draw(st.sampled_from(("redraw", "sex", "append", "drop last", "none")))
    if kind == "redraw":
        eps[k] = draw(endpoint_plans(names[k], tuple(names[:k])))
    elif kind == "sex":
        eps[k] = P.EndpointPlan(**{**dict(eps[k]), "sex": draw(st.sampled_from((None, "female", "male")))})
    elif kind == "append":
        eps.append(draw(endpoint_plans(f"E{len(eps)}", tuple(names))))
    elif kind == "drop last" and len(eps) > 1:
        eps.pop()
    return P.Program(endpoints=tuple(eps))


def _options(draw, program: P.Program) -> list[str]:
    names = draw(st.none() | st.lists(st.sampled_from(program.names), min_size=1, unique=True))
    options = ["--buckets", str(draw(st.sampled_from((1, 2))))]
    if names is not None:
        options += ["--endpoints", ",".join(names)]
    return options + [flag for flag in ("--wide", "--no-mask") if draw(st.booleans())]


_RANDOM = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# Three CLI runs an example: a few by default, many with -m slow.
@settings(max_examples=8, **_RANDOM)
@given(programs(max_endpoints=4), registries(), st.data())
def test_reuse_writes_the_bytes_of_a_full_run(program, registry, data):
    _reuse_writes_the_bytes_of_a_full_run(program, registry, data)


@pytest.mark.slow
@settings(max_examples=100, **_RANDOM)
@given(programs(max_endpoints=4), registries(), st.data())
def test_many_reuses_write_the_bytes_of_a_full_run(program, registry, data):
    _reuse_writes_the_bytes_of_a_full_run(program, registry, data)


def _reuse_writes_the_bytes_of_a_full_run(program, registry, data):
    edited = data.draw(_edited(program), label="edited")
    before, after = _options(data.draw, program), _options(data.draw, edited)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        events, people = registry
        events.write_parquet(tmp / "events.parquet")
        people.write_parquet(tmp / "people.parquet")
        (tmp / "plans.ep").write_text("# the plans are drawn, not compiled\n")

        def run_plans(plans: P.Program, out: str, options: list[str]):
            with mock.patch.object(cli, "_compile", lambda paths, **options: plans):
                return invoke("run", tmp / "plans.ep", "--events", tmp / "events.parquet", "--people",
                              tmp / "people.parquet", "--out", tmp / out, "--allow-empty-events", *options)

        first = run_plans(program, "first", before)
        if first.exit_code != 0:
            assert "error[EP5" in first.output   # a registry the check refuses (e.g. no ids in common)
            return
        full = run_plans(edited, "full", after)
        reused = run_plans(edited, "reused", [*after, "--reuse", str(tmp / "first")])
        assert (full.exit_code, reused.exit_code) == (0, 0), reused.output
        assert _outputs(tmp / "reused") == _outputs(tmp / "full")

        # taken: what the first run wrote and whose plan, and every plan it depends on, is the same
        was = {ep.name: ep for ep in program.endpoints}
        written = read_manifest(tmp / "first").endpoints
        expected = {name: "reused" if name in written and all(was.get(ep.name) == ep for ep in
                                                                edited.subset([name]).endpoints)
                    else "computed" for name in read_manifest(tmp / "reused").endpoints}
        assert _statuses(tmp / "reused") == expected
        assert read_manifest(tmp / "reused").registry.warnings == read_manifest(tmp / "full").registry.warnings


def test_a_taken_registry_check_drops_the_rows_the_check_dropped(library, registry, tmp_path):
    events = pl.read_parquet(registry / "events.parquet")
    odd = events.head(3).with_columns(pl.lit("NOT_A_SOURCE").alias("SOURCE"))
    orphans = events.head(2).with_columns(pl.lit("FG_NOBODY").alias("FINNGENID"))
    changed = tmp_path / "registry"
    changed.mkdir()
    pl.concat([events, odd, orphans]).write_parquet(changed / "events.parquet")
    shutil.copy(registry / "people.parquet", changed / "people.parquet")
    first = tmp_path / "first"
    run(library, changed, first)
    check = read_manifest(first).registry
    assert {w.code for w in check.warnings} >= {"EP507", "EP508"}

    taken = ReusePlan(selected=(), selection=None, registry_check=check).checked_registry(
        changed / "events.parquet", changed / "people.parquet", keep_as_read=True)
    loaded = load_registry(changed / "events.parquet", changed / "people.parquet", keep_as_read=True)
    assert_frame_equal(taken.events.collect(), loaded.events.collect())
    assert taken.warnings == loaded.warnings
    reused, stderr = _reuse_and_full(library, changed, first, tmp_path)
    assert read_manifest(reused).registry.checked is False
    # its warnings are printed again (rich folds long lines anywhere)
    assert all("".join(w.message.split()) in "".join(stderr.split()) for w in check.warnings)


def test_an_empty_events_table_allowed_before_is_checked_again(library, registry, tmp_path):
    empty = tmp_path / "registry"
    empty.mkdir()
    pl.read_parquet(registry / "events.parquet").clear().write_parquet(empty / "events.parquet")
    shutil.copy(registry / "people.parquet", empty / "people.parquet")
    run(library, empty, tmp_path / "first", "--allow-empty-events")
    result = invoke("run", library, "--events", empty / "events.parquet", "--people", empty / "people.parquet",
                    "--out", tmp_path / "again", "--reuse", tmp_path / "first")
    assert result.exit_code != 0 and "EP513" in result.output
