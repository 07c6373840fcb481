"""The local engine against the same program on Spark in local mode, side by side on the
same registry, in one run: Spark's overhead, and how its time scales with executor cores.

    python benchmarks/spark.py                          # medium, DF12, local[1] and local[2]
    python benchmarks/spark.py --size small             # quick look
    python benchmarks/spark.py --masters 'local[2]'     # one Spark run only

Needs the `spark` extra and Java 17. The machinery is benchmarks/run.py's (imported): the
library (the newest FinnGen freeze, else definitions/) is compiled and cached there, the
registry of a size is the one run.py generates for it, and the local engine is run.py's
`engine` worker (`evaluate` in person buckets + `write_results`). Each contender runs in a
child process of its own, one after another:

1. **key table**: the match stage alone (`prepare` on the registry), to report what Spark
   broadcasts: the matched keys and the pickled `Prepared` every executor receives;
2. **one bucket**: the events of one of `endpointc.spark`'s default buckets (a hash class
   of FINNGENID holding about `EVENTS_PER_BUCKET` events) normalised and evaluated by
   `engine.distributed.bucket_long`, as an executor's Python worker does: its wall time
   and peak RSS, the memory a task needs beside the executor's JVM;
3. **local engine**: as `endpointc run` (run.py's worker);
4. **Spark**, once per `--masters` entry, each in a new JVM: `endpointc.spark.run` (read
   the Parquet files, key pass, buckets, write endpoints.parquet and counts.tsv), timed
   apart from the session start (the JVM's).

Polars runs one thread per Spark task (`spark.executorEnv.POLARS_MAX_THREADS=1`, the
default of `endpointc.spark.session`), so local[1] uses one core and local[2] two; the
local engine uses `--threads` (default all cores). The case and excluded totals of every
Spark run are checked against the local engine's. Prints a table and writes JSON. Never
prints person-level values.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/ is not a package)

__all__ = ["main"]


# -- child processes ---------------------------------------------------------------------------

def _worker_keytable(spec: dict[str, Any]) -> dict[str, Any]:
    from endpointc.engine.prepare import prepare
    from endpointc.registry import scan_events

    program = bench._load_program(spec)
    t0 = time.perf_counter()
    prep = prepare(program, scan_events(spec["events"], keep_as_read=True))
    wall = time.perf_counter() - t0
    blob = pickle.dumps(prep)
    Path(spec["prepared"]).write_bytes(blob)
    return {"wall_s": round(wall, 3), "pickled_mb": round(len(blob) / 2**20, 1),
            "matched_keys": prep.mapping.keys.height, "key_rules": prep.mapping.rules.height,
            "signatures": prep.sigs.flat["SIG"].n_unique(), "key_columns": list(prep.mapping.columns)}


def _worker_bucket(spec: dict[str, Any]) -> dict[str, Any]:
    import polars as pl

    from endpointc.engine.distributed import PEOPLE_COLUMNS, bucket_columns, bucket_long, normalised

    prep = pickle.loads(Path(spec["prepared"]).read_bytes())
    # a hash class of FINNGENID, as endpointc.spark buckets people (its own hash is Spark's)
    bucket = pl.col("FINNGENID").hash(seed=0) % spec["buckets"] == 0
    events = pl.scan_parquet(spec["events"]).filter(bucket).select(bucket_columns(prep)).collect()
    people = pl.scan_parquet(spec["people"]).filter(bucket).select(PEOPLE_COLUMNS).collect()
    events_schema = pl.scan_parquet(spec["events"]).collect_schema()
    people_schema = pl.scan_parquet(spec["people"]).collect_schema()
    t0 = time.perf_counter()
    long = bucket_long(prep, normalised(events, "events", schema=events_schema, file=spec["events"]),
                       normalised(people, "people", schema=people_schema, file=spec["people"]))
    return {"wall_s": round(time.perf_counter() - t0, 3), "events": events.height, "people": people.height,
            "rows": long.height}


def _worker_spark(spec: dict[str, Any]) -> dict[str, Any]:
    from endpointc import spark as on_spark

    program = bench._load_program(spec)
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        log_dir = Path(tmp) / "events"
        log_dir.mkdir()
        t0 = time.perf_counter()
        spark = on_spark.session(master=spec["master"], conf={
            "spark.ui.enabled": "false", "spark.eventLog.enabled": "true", "spark.eventLog.compress": "false",
            "spark.eventLog.dir": log_dir.as_uri()})
        spark.sparkContext.setLogLevel("ERROR")
        t1 = time.perf_counter()
        stages: list[tuple[str, float]] = []
        outcome = on_spark.run(spark, program, spec["events"], spec["people"], str(Path(tmp) / "out"),
                               buckets=spec.get("buckets"),
                               on_stage=lambda stage: stages.append((stage, time.perf_counter())))
        t2 = time.perf_counter()
        spark.stop()
        shuffles = _shuffle_writes(log_dir)
    return {"session_s": round(t1 - t0, 3), "wall_s": round(t2 - t1, 3), "buckets": outcome.buckets,
            "cases": int(outcome.counts["N_CASES"].sum()), "excluded": int(outcome.counts["N_EXCLUDED"].sum()),
            "stages_s": {name: round(end - start, 3) for (name, start), (_, end)
                         in zip(stages, [*stages[1:], ("end", t2)])},
            "shuffle_bytes": sum(b for b, _ in shuffles.values()),
            "largest_shuffle": max(shuffles.values(), default=(0, 0))}


def _shuffle_writes(log_dir: Path) -> dict[int, tuple[int, int]]:
    """(bytes, records) of shuffle output written per stage, from Spark's event log."""
    per_stage: dict[int, tuple[int, int]] = {}
    for path in log_dir.rglob("events_*"):   # Spark 4 writes a folder of parts (and .crc files)
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event.get("Event") != "SparkListenerTaskEnd":
                continue
            written = event.get("Task Metrics", {}).get("Shuffle Write Metrics", {})
            b, r = per_stage.get(event["Stage ID"], (0, 0))
            per_stage[event["Stage ID"]] = (b + written.get("Shuffle Bytes Written", 0),
                                            r + written.get("Shuffle Records Written", 0))
    return per_stage


WORKERS = {"keytable": _worker_keytable, "bucket": _worker_bucket, "spark": _worker_spark}


def child(kind: str, spec: dict[str, Any], *, threads: int, timeout: float | None) -> dict[str, Any]:
    """Run `kind` in a fresh interpreter: its result, its wall time and its peak RSS (the
    Python process's own: a Spark run's JVM and workers are not in it)."""
    with tempfile.TemporaryDirectory(prefix="bench-spark-child-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ, POLARS_MAX_THREADS=str(threads), PYTHONHASHSEED="0")
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_worker", kind,
                                   str(spec_path), str(result_path)], env=env, cwd=REPO, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not result_path.exists():
            return {"error": f"exit code {proc.returncode}"}
        result = json.loads(result_path.read_text())
    result["process_s"] = round(time.perf_counter() - start, 3)
    return result


def _worker_main(kind: str, spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = WORKERS[kind](spec)
    result["peak_rss_mb"] = bench._vmhwm_mb()
    Path(result_path).write_text(json.dumps(result))


# -- the run ------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="medium", help="small, medium, big or huge (as run.py)")
    ap.add_argument("--masters", default="local[1],local[2]", help="comma list of Spark masters, one run each")
    ap.add_argument("--buckets", type=int, default=None, help="Spark's person buckets (default: endpointc.spark's)")
    ap.add_argument("--library", default="finngen-newest", help="as run.py's --library")
    ap.add_argument("--data-dir", type=Path, default=HERE / "data", help="run.py's cache of libraries and registries")
    ap.add_argument("--seed", type=int, default=1, help="registry seed (run.py's --seed)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="Polars threads of the local engine")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per child process")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "spark.json")
    args = ap.parse_args(argv)
    if args.size not in bench.SIZES:
        raise SystemExit(f"unknown size {args.size}; choose from {', '.join(bench.SIZES)}")
    masters = [m.strip() for m in args.masters.split(",") if m.strip()]

    from endpointc.spark import EVENTS_PER_BUCKET

    console, log, machine = bench.start(args.data_dir)
    library = bench.load_library(args.library, args.data_dir, log, threads=args.threads)
    reg = bench.registry_for(args.size, library, argparse.Namespace(
        data_dir=args.data_dir, seed=args.seed, threads=args.threads, regenerate=False), log)
    common = {"program": library["program"], "events": reg["events_path"], "people": reg["people_path"]}
    run = {"threads": args.threads, "timeout": args.timeout}
    report: dict[str, Any] = {"machine": machine, "library": library["name"], "endpoints": library["endpoints"],
                              "size": args.size, "events": reg["events"], "people": reg["people"]}
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        prepared = str(Path(tmp) / "prepared.pickle")
        log("key table: the match stage alone ...")
        report["key_table"] = child("keytable", {**common, "prepared": prepared}, **run)
        default_buckets = max(1, -(-reg["events"] // EVENTS_PER_BUCKET))
        log(f"one bucket of {default_buckets} ...")
        report["bucket"] = child("bucket", {**common, "prepared": prepared, "buckets": default_buckets}, **run)
    engine_buckets = bench._buckets(argparse.Namespace(buckets="auto"), reg["events"])
    log(f"local engine ({args.threads} threads, {engine_buckets} buckets) ...")
    report["engine"] = {"buckets": engine_buckets, **bench.run_child(
        "engine", {**common, "buckets": engine_buckets}, threads=args.threads, timeout=args.timeout)}
    report["spark"] = []
    for master in masters:
        log(f"Spark {master} ...")
        report["spark"].append({"master": master, **child("spark", {**common, "master": master,
                                                                    "buckets": args.buckets}, **run)})
    report["load_end"] = list(os.getloadavg())
    bench._write_json(report, args.json)
    render(report, console)
    console.print(f"load average start {machine['load_start'][0]:.1f}, end {report['load_end'][0]:.1f} on "
                  f"{machine['cores']} cores; JSON: {args.json}")
    return report


def render(report: dict[str, Any], console) -> None:
    from rich.table import Table

    engine = report["engine"]
    table = Table(title=f"{report['library']} ({report['endpoints']:,} endpoints), {report['size']}: "
                        f"{report['events']:,} events, {report['people']:,} people")
    for col in ("contender", "buckets", "session start", "wall", "over the local engine", "cases agree"):
        table.add_column(col, justify="left" if col == "contender" else "right")
    table.add_row("local engine", str(engine.get("buckets", "")), "-",
                  "error: " + engine["error"] if "error" in engine else bench._fmt_s(engine["wall_s"]), "", "")
    by_master = {}
    for s in report["spark"]:
        if "error" in s:
            table.add_row(f"Spark {s['master']}", "", "", "error: " + s["error"], "", "")
            continue
        by_master[s["master"]] = s["wall_s"]
        ratio = f"{s['wall_s'] / engine['wall_s']:.1f}x" if "wall_s" in engine else "-"
        table.add_row(f"Spark {s['master']}", str(s["buckets"]), bench._fmt_s(s["session_s"]),
                      bench._fmt_s(s["wall_s"]), ratio,
                      "yes" if s["cases"] == engine.get("cases") else f"no ({s['cases']} against {engine.get('cases')})")
    console.print(table)
    if "local[1]" in by_master and "local[2]" in by_master:
        console.print(f"local[1] over local[2]: {by_master['local[1]'] / by_master['local[2]']:.2f}x")
    for s in report["spark"]:
        if "error" not in s:
            console.print(f"Spark {s['master']}: " + ", ".join(f"{name} {bench._fmt_s(t)}"
                                                                for name, t in s["stages_s"].items()))
            size, records = s["largest_shuffle"]
            console.print(f"Spark {s['master']}: shuffles wrote {s['shuffle_bytes'] / 2**20:,.1f} MB; the largest "
                          f"{size / 2**20:,.1f} MB for {records:,} rows, {size / max(records, 1):.1f} bytes a row "
                          f"({size / report['events']:.1f} bytes per event)")
    key, bucket = report["key_table"], report["bucket"]
    if "error" not in key:
        console.print(f"broadcast key table: {key['matched_keys']:,} matched keys, {key['key_rules']:,} "
                      f"(key, endpoint, rule) rows, {key['signatures']:,} signatures; pickled Prepared "
                      f"{key['pickled_mb']} MB; match stage alone {bench._fmt_s(key['wall_s'])}")
    if "error" not in bucket:
        console.print(f"one bucket: {bucket['events']:,} events of {bucket['people']:,} people, evaluated in "
                      f"{bench._fmt_s(bucket['wall_s'])}, peak RSS {bucket['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _worker_main(*sys.argv[2:5])
    else:
        main()
