"""The parts of the benchmark harness (benchmarks/) that need no DuckDB: the library loader
skips what the compiler rejects, repeated runs are summarised by their median, and the
merge benchmark merges both ways to the same rows."""

from __future__ import annotations

import re

from endpointc.parser import parse

from bench_modules import load


# -- the library loader --------------------------------------------------------------------

def test_loader_skips_rejected_endpoints_and_their_dependants():
    run = load("run")
    text = """
    endpoint GOOD { hospital icd10 I21 }
    endpoint BAD { hospital icd10 I21  include NOWHERE }
    endpoint USES_BAD { include BAD }
    endpoint ALSO_GOOD { include GOOD }
    """
    tree, diags = parse(text, name="lib.ep")
    assert tree is not None, diags
    program, skipped = run.compile_skipping([tree])
    assert program.names == ("GOOD", "ALSO_GOOD")
    assert set(skipped) == {"BAD", "USES_BAD"}


def test_median_run_is_the_middle_run_by_wall_time_with_the_median_cpu():
    run = load("run")
    runs = [{"wall_s": 30.0, "section_cpu_s": 50.0, "peak_rss_mb": 9.0, "cases": 1},
            {"wall_s": 10.0, "section_cpu_s": 70.0, "peak_rss_mb": 8.0, "cases": 1},
            {"wall_s": 20.0, "section_cpu_s": 60.0, "peak_rss_mb": 7.0, "cases": 1}]
    median = run.median_run(runs)
    assert (median["wall_s"], median["section_cpu_s"], median["peak_rss_mb"]) == (20.0, 60.0, 7.0)
    assert [r["wall_s"] for r in median["runs"]] == [30.0, 10.0, 20.0]
    # an even count takes the lower middle; one run is returned as it is
    assert run.median_run(runs[:2])["wall_s"] == 10.0 and run.median_run(runs[:2])["section_cpu_s"] == 50.0
    assert run.median_run(runs[:1]) is runs[0]
    # a failed run makes the contender failed
    assert run.median_run([runs[0], {"error": "timed out"}]) == {"error": "timed out"}


def test_table_leaves_out_contenders_that_did_not_run():
    from rich.console import Console

    run = load("run")
    engine = {"wall_s": 12.0, "section_cpu_s": 20.0, "peak_rss_mb": 900.0, "events_per_s": 1e6}
    report = {"machine": {"memory_gib": 23.5}, "scaling": [], "sizes": [{
        "size": "huge", "events": 12_000_000, "people": 20_000, "endpoints": 7, "events_in_memory_gib": 47.0,
        "engine": engine, "grouped": run.median_run([]), "duckdb": {"skipped": True},
        "ratio_grouped": None, "speedup_duckdb": None}]}
    console = Console(record=True, width=200)
    run.render(report, console)
    text = console.export_text()
    (row,) = [line for line in text.splitlines() if line.startswith("│")]
    assert "endpointc" in row and "12.0 s" in row and "900 MB" in row
    assert "~47.0 GiB in memory" in text and "2.00x this machine's 23.5 GiB" in text


def test_merge_fanin_benchmark_merges_both_ways_to_the_same_rows(monkeypatch, capsys):
    from endpointc.engine import spill

    merge_fanin = load("merge_fanin")
    monkeypatch.setattr(spill, "MERGE_FANIN", 2)  # 5 files: merged in groups first
    monkeypatch.setattr(spill, "MERGE_ROWS", 50)
    assert merge_fanin.main(["--buckets", "5", "--rows", "2000", "--endpoints", "20", "--people", "30"])
    assert "outputs identical: True" in capsys.readouterr().out


# -- the time-construct benchmark's generated endpoints ------------------------------------

def test_time_construct_endpoints_compile_with_their_library_in_every_kind():
    from endpointc.compiler import compile_files

    tc = load("time_constructs")
    library = """
    codelist HF_CODES { icd10 I50  icd9 428 }
    endpoint MI { hospital icd10 I21 | I22  icd9 410  death icd10 I21 }
    endpoint HF { hospital main min 2 @HF_CODES }
    endpoint DM2 { hospital mode icd10 E11  purchase atc A10B }
    endpoint ANGINA { hospital icd10 I20 except I201  include MI }
    endpoint NO_CASES { hospital icd10 Q99 }
    """
    tree, diags = parse(library, name="lib.ep")
    assert tree is not None, diags
    with_cases = {"MI", "HF", "DM2", "ANGINA"}
    text, kinds = tc.generate_endpoints(tree.endpoints, with_cases, count=37, seed=5)
    generated, diags = parse(text, name="time_constructs.ep")
    assert generated is not None, diags
    program, diags = compile_files([tree, generated])
    assert program is not None and not [d for d in diags if d.is_error], diags
    assert len(kinds) == 37 and set(program.names) >= set(kinds)
    counts = [list(kinds.values()).count(k) for k in tc.KINDS]
    assert min(counts) >= 1 and max(counts) - min(counts) <= 1  # every kind, evenly mixed
    # the work is real only over endpoints that have cases
    assert "NO_CASES" not in text
    # a copied rule keeps its options and patterns; the spaced or clustered min replaces its min
    rules = [line.strip() for line in text.splitlines() if line.strip().startswith("hospital")]
    assert any(" min 2 apart " in r for r in rules) and any(" min 3 within " in r for r in rules)
    copied = {re.sub(r" min [23] (apart|within) [0-9.]+ [a-z]+", "", r) for r in rules}
    assert copied <= {"hospital icd10 I21 | I22  icd9 410", "hospital main @HF_CODES",
                      "hospital mode icd10 E11", "hospital icd10 I20 except I201"}, copied
    # seeded: the same text again, another with another seed
    assert tc.generate_endpoints(tree.endpoints, with_cases, count=37, seed=5)[0] == text
    assert tc.generate_endpoints(tree.endpoints, with_cases, count=37, seed=6)[0] != text


# -- the read floor and the index benchmark ---------------------------------------------------

def test_read_floor_reads_the_engines_columns_bucket_by_bucket(tmp_path):
    import json

    from endpointc import compile_program_text
    from endpointc.synth import write_registry

    run = load("run")
    plain = compile_program_text("endpoint MI { hospital icd10 I21 }")
    urgent = compile_program_text("endpoint MI { hospital icd10 I21  when emergency }")
    assert run.read_columns(plain) == ["FINNGENID", "SOURCE", "ICDVER", "CODE1", "EVENT_AGE", "APPROX_EVENT_DAY"]
    assert run.read_columns(urgent)[-2:] == ["CODE9", "INDEX"]
    summary = write_registry(tmp_path / "reg", people=40, seed=1, fmt="parquet")
    (tmp_path / "program.json").write_text(urgent.model_dump_json())
    spec = {"program": str(tmp_path / "program.json"), "events": str(tmp_path / "reg" / "events.parquet"),
            "people": str(tmp_path / "reg" / "people.parquet"), "buckets": 3}
    got = run._worker_read(json.loads(json.dumps(spec)))
    assert got["rows"] == summary["n_events"] and got["columns"] == run.read_columns(urgent)


def test_index_benchmark_picks_a_new_endpoint_of_about_the_share(tmp_path):
    from endpointc.index import build_index, open_index
    from endpointc.synth import write_registry

    bench_index = load("index")
    write_registry(tmp_path / "reg", people=200, seed=1, fmt="parquet")
    build_index(tmp_path / "reg" / "events.parquet", tmp_path / "reg" / "people.parquet", tmp_path / "idx")
    text, matched = bench_index.new_endpoint(tmp_path / "idx", share=0.05)
    rows = open_index(tmp_path / "idx").manifest.rows
    assert text.startswith("endpoint NEW_ON_5PCT {") and 0.02 * rows < matched < 0.1 * rows


def test_timed_gives_the_childs_own_times_or_its_failure():
    import sys

    wide = load("wide")
    done = wide.timed([sys.executable, "-c", "sum(range(10**6))"], threads=1)
    assert done["wall_s"] > 0 and done["cpu_s"] > 0 and done["peak_rss_mb"] > 0
    assert wide.timed([sys.executable, "-c", "raise SystemExit(3)"], threads=1)["error"] == "exited with 3"


def test_wide_benchmark_writes_with_and_without_the_wide_table(tmp_path):
    from endpointc import compile_program_text
    from endpointc.synth import write_registry

    wide = load("wide")
    program = compile_program_text("endpoint MI { hospital icd10 I21 }\nendpoint CHD { include MI }")
    write_registry(tmp_path / "reg", people=40, seed=1, fmt="parquet", definitions=program)
    (tmp_path / "program.json").write_text(program.model_dump_json())
    spec = {"program": str(tmp_path / "program.json"), "events": str(tmp_path / "reg" / "events.parquet"),
            "people": str(tmp_path / "reg" / "people.parquet"), "buckets": 1, "work": str(tmp_path)}
    plain, both = wide._worker({**spec, "wide": False}), wide._worker({**spec, "wide": True})
    assert "endpoints_wide.tsv" not in plain["bytes"] and both["bytes"]["endpoints_wide.tsv"] > 0
    assert both["bytes"]["endpoints.parquet"] == plain["bytes"]["endpoints.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["program.json", "reg"]   # outputs removed
