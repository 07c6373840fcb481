"""What the event index saves: evaluations with and without it, side by side, on the same
registry, in one run.

    python benchmarks/index.py                                  # medium, DF12, T2D
    python benchmarks/index.py --sizes small,medium --repeats 3
    python benchmarks/index.py --registry benchmarks/data/medium-seed1-<hash>-f2
    python benchmarks/index.py --sizes big                      # ~2.5e8 events: opt-in, long

Per size, each in its own child process (wall, CPU and peak RSS are its own; loading the
compiled program is not timed, as in run.py):

1. **build**: `endpointc.index.build_index` (the registry check, the distinct keys, the
   events sorted by key) into a temporary folder;
2. **one endpoint**: `--endpoint` and its dependencies, without the index (scan the
   registry, `evaluate` in `--buckets` person buckets, `write_results`, as run.py's engine
   contender) and with it (`open_index`, `evaluate`, `write_results`);
3. **a new endpoint on 1% of the events**: `hospital icd10 A | B | ...` (or `purchase atc`),
   with the most frequent three-character codes of the registry added until their rows
   reach `--share` of the events (the share it reads is printed), without and with the index;
4. **the whole library**, without and with the index;
5. with `--ep-library FOLDER` (the library as definition files), **the command line**:
   `endpointc run FOLDER --endpoints <endpoint> ...` end to end, without and with
   `--index` (compiling what the endpoint needs, hashing the inputs for the manifest,
   checking the registry when there is no index, evaluating, writing);
6. **the codes of an endpoint** (`--codes-endpoint`), as `endpointc compile --explain E
   --codes EVENTS` lists them (`describe.matched_codes`, masked): from one pass over the
   events, and from the index (opened, its keys read); `hover_s` is what one more pattern
   costs on keys already read, as the language server answers a hover.

With `--repeats N` each pair runs N times, alternating, and the medians count. The counts
of each pair are compared (`agree`). The machinery is run.py's (imported): the compiled
library, the cached registries (`--registry` names one folder of them instead), the child
processes. Prints a table and writes JSON; never prints person-level values.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/ is not a package)

__all__ = ["main", "new_endpoint"]

TASKS = ("one", "new", "all", "cli", "codes")
_TASK_LABEL = {"one": "one endpoint and its dependencies", "new": "a new endpoint on {share} of the events",
               "all": "the whole library", "cli": "`endpointc run --endpoints`, end to end",
               "codes": "`compile --codes`: an endpoint's codes and counts"}


# -- the workers (child processes) ----------------------------------------------------------------

def _worker_build(spec: dict[str, Any]) -> dict[str, Any]:
    from endpointc.index import build_index

    t0, c0 = time.perf_counter(), time.process_time()
    index = build_index(spec["events"], spec["people"], spec["index"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    size = sum(p.stat().st_size for p in Path(spec["index"]).iterdir())
    return {"wall_s": round(wall, 3), "section_cpu_s": round(cpu, 3), "bytes": size,
            "keys": index.manifest.keys, "rows": index.manifest.rows}


def _program(spec: dict[str, Any]):
    from endpointc import compile_program_text
    from endpointc.plan import Program

    if spec.get("text"):
        return compile_program_text(spec["text"], name="new.ep")
    return Program.model_validate_json(Path(spec["program"]).read_text())


def _worker_evaluate(spec: dict[str, Any]) -> dict[str, Any]:
    """One evaluation, as `endpointc run` does it (results written), with or without the index."""
    from endpointc.engine.polars import evaluate
    from endpointc.index import open_index
    from endpointc.registry import scan_events, scan_people
    from endpointc.results import spill_folder, write_results

    program = _program(spec)
    with tempfile.TemporaryDirectory(prefix="bench-index-") as out:
        t0, c0 = time.perf_counter(), time.process_time()
        if spec["index"]:
            index = open_index(spec["index"])
            tables, people = (index, None), index.people
        else:
            people = scan_people(spec["people"])
            tables = (scan_events(spec["events"], keep_as_read=True), people)
        with spill_folder(out) as spill:
            res = evaluate(program, *tables, endpoints=spec.get("endpoints"), buckets=spec["buckets"],
                           spill_dir=spill)
            t1 = time.perf_counter()
            write_results(res.long, res.counts, out, people=people, long_sorted=True)
        t2, c2 = time.perf_counter(), time.process_time()
    counts = res.counts.collect()
    evaluated = program.subset(spec["endpoints"]) if spec.get("endpoints") else program
    return {"wall_s": round(t2 - t0, 3), "section_cpu_s": round(c2 - c0, 3), "evaluate_s": round(t1 - t0, 3),
            "write_s": round(t2 - t1, 3), "endpoints": len(evaluated.endpoints),
            "counts_sha": hashlib.sha256(counts.write_csv().encode()).hexdigest()}


def _worker_cli(spec: dict[str, Any]) -> dict[str, Any]:
    """`endpointc run` for one endpoint, as a curator types it (its output goes nowhere)."""
    import contextlib
    import io

    from endpointc.cli import app

    with tempfile.TemporaryDirectory(prefix="bench-index-cli-") as out:
        args = ["run", spec["library"], "--events", spec["events"], "--people", spec["people"], "--out", out,
                "--endpoints", spec["endpoints"][0], *(["--index", spec["index"]] if spec["index"] else [])]
        t0, c0 = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = app(args, standalone_mode=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if code:
            return {"error": f"endpointc run exited with {code}"}
        counts = (Path(out) / "counts.tsv").read_bytes()
        stages = json.loads((Path(out) / "manifest.json").read_text()).get("timings", {})
    return {"wall_s": round(wall, 3), "section_cpu_s": round(cpu, 3), "endpoints": 1,
            "counts_sha": hashlib.sha256(counts).hexdigest(),
            "stages": {k: round(v, 2) for k, v in stages.items() if isinstance(v, (int, float))}}


def _worker_codes(spec: dict[str, Any]) -> dict[str, Any]:
    """`compile --codes` of one endpoint: its codes and masked counts, from the events or the index."""
    from endpointc.describe import matched_codes
    from endpointc.index import open_index
    from endpointc.registry import scan_events

    program = _program(spec)
    name = spec["endpoints"][0]
    t0, c0 = time.perf_counter(), time.process_time()
    keys = open_index(spec["index"], events=spec["events"]).keys() if spec["index"] else scan_events(spec["events"])
    table = matched_codes(program, name, keys)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"wall_s": round(wall, 3), "section_cpu_s": round(cpu, 3), "endpoints": 1, "codes": table.height,
           "counts_sha": hashlib.sha256(table.write_csv().encode()).hexdigest()}
    if spec["index"]:  # a hover: the same question on keys already in memory, as the server keeps them
        kept = keys.collect()
        t0 = time.perf_counter()
        matched_codes(program, name, kept)
        out["hover_s"] = round(time.perf_counter() - t0, 3)
    return out


def _worker_new_endpoint(spec: dict[str, Any]) -> dict[str, Any]:
    """The text of the new endpoint and the share of the events its keys match (untimed)."""
    text, matched = new_endpoint(spec["index"], share=spec["share"])
    return {"text": text, "matched": matched}


WORKERS = {"build": _worker_build, "evaluate": _worker_evaluate, "cli": _worker_cli, "codes": _worker_codes,
           "new_endpoint": _worker_new_endpoint}


def new_endpoint(index_folder: str | Path, *, share: float) -> tuple[str, int]:
    """An endpoint the library does not have, whose codes match about `share` of the
    events: a hospital (ICD-10) or purchase (ATC) rule over the registry's most frequent
    three-character codes, added until their rows reach the share, in whichever of the two
    comes closer. Returns its text and the events its keys match (exactly, by the engine's
    own matching of the index's keys)."""
    import polars as pl

    from endpointc import compile_program_text
    from endpointc.engine.prepare import prepare
    from endpointc.index import open_index

    index = open_index(index_folder)
    keys = index.keys().collect()
    total = index.manifest.rows
    best = None
    for rule, vocab, sources, pattern in (("hospital", "icd10", ("INPAT", "OUTPAT"), r"^[A-Z][0-9]{2}"),
                                          ("purchase", "atc", ("PURCH",), r"^[A-Z][0-9]{2}")):
        codes = (keys.filter(pl.col("SOURCE").is_in(sources) & pl.col("CODE1").str.contains(pattern))
                 .group_by(pl.col("CODE1").str.head(3).alias("CODE")).agg(pl.col("_ROWS").sum())
                 .sort("_ROWS", "CODE", descending=[True, False]))
        chosen, rows = [], 0
        for code, n in codes.iter_rows():
            if rows + n > 1.5 * share * total:  # a code larger than the rest of the share is left out
                continue
            chosen.append(code)
            rows += n
            if rows >= share * total:
                break
        if not chosen:
            continue
        text = f"endpoint NEW_ON_{round(share * 100)}PCT {{\n  {rule} {vocab} {' | '.join(chosen)}\n}}\n"
        prep = prepare(compile_program_text(text), pl.LazyFrame(schema={"SOURCE": pl.String}), keys=index.keys())
        cols = list(prep.mapping.columns)
        matched = int(keys.join(prep.mapping.keys.select(cols), on=cols, nulls_equal=True)["_ROWS"].sum() or 0)
        if best is None or abs(matched - share * total) < abs(best[1] - share * total):
            best = (text, matched)
    if best is None:
        raise SystemExit("no hospital ICD-10 or purchase ATC codes in the registry")
    return best


# -- the run ----------------------------------------------------------------------------------------

def _child(kind: str, spec: dict[str, Any], args) -> dict[str, Any]:
    return bench.run_child(kind, spec, threads=args.threads, timeout=args.timeout, script=Path(__file__))


def _registry(size: str, library: dict[str, Any], args, log) -> tuple[dict[str, Any], str]:
    """(registry info, program path): run.py's cached registry of this size, or `--registry`."""
    if args.registry is not None:
        info = json.loads((args.registry / "manifest.json").read_text())
        program = args.data_dir / f"program-{info['library']}.json"
        if not program.exists():
            raise SystemExit(f"{args.registry} was generated for program {info['library']}, not in {args.data_dir}")
        log(f"{size}: using {args.registry.name} ({info['events']:,} events, {info['people']:,} people)")
        return info, str(program)
    namespace = argparse.Namespace(data_dir=args.data_dir, seed=args.seed, threads=args.threads, regenerate=False)
    return bench.registry_for(size, library, namespace, log), library["program"]


def bench_size(size: str, library: dict[str, Any], args, log) -> dict[str, Any]:
    reg, program = _registry(size, library, args, log)
    buckets = bench._buckets(args, reg["events"])
    common = {"program": program, "events": reg["events_path"], "people": reg["people_path"], "buckets": buckets}
    out: dict[str, Any] = {"size": size, "events": reg["events"], "people": reg["people"], "buckets": buckets,
                           "load_before": os.getloadavg()[0], "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="bench-index-", dir=args.work) as work:
        folder = str(Path(work) / "index")
        log(f"{size}: building the index ...")
        out["build"] = _child("build", {**common, "index": folder}, args)
        if "error" in out["build"]:
            return out
        new = _child("new_endpoint", {"index": folder, "share": args.share}, args)
        out["new_endpoint"] = {k: new.get(k) for k in ("text", "matched", "error")}
        specs = {"one": {"endpoints": [args.endpoint]}, "new": {"text": new.get("text")}, "all": {},
                 "cli": {"endpoints": [args.endpoint], "library": str(args.ep_library)},
                 "codes": {"endpoints": [args.codes_endpoint]}}
        for task in args.tasks:
            if task == "cli" and args.ep_library is None:
                continue
            runs: dict[str, list] = {"registry": [], "index": []}
            for k in range(args.repeats):
                for mode in ("registry", "index"):
                    log(f"{size}: {task}, {'with' if mode == 'index' else 'without'} the index"
                        + (f", run {k + 1} of {args.repeats}" if args.repeats > 1 else "") + " ...")
                    kind = task if task in ("cli", "codes") else "evaluate"
                    runs[mode].append(_child(kind, {**common, **specs[task],
                                                    "index": folder if mode == "index" else None}, args))
            without, with_ = bench.median_run(runs["registry"]), bench.median_run(runs["index"])
            ok = bench._ok(without) and bench._ok(with_)
            out["tasks"][task] = {"without": without, "with": with_,
                                  "speedup": without["wall_s"] / with_["wall_s"] if ok else None,
                                  "agree": ok and without["counts_sha"] == with_["counts_sha"]}
    out["load_after"] = os.getloadavg()[0]
    return out


def render(report: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title="endpointc with and without the event index")
    for col in ("size", "events", "task", "endpoints", "without the index", "with the index", "speedup",
                "counts agree", "peak RSS (without, with)"):
        table.add_column(col, justify="left" if col in ("size", "task") else "right")
    for s in report["sizes"]:
        build = s["build"]
        table.add_row(s["size"], f"{s['events']:,}", "build the index (once)", "", "",
                      f"error: {build['error']}" if "error" in build else
                      f"{bench._fmt_s(build['wall_s'])} (CPU {bench._fmt_s(build['section_cpu_s'])}, "
                      f"{build['bytes'] / 2**20:,.0f} MB)", "", "", "")
        for task, t in s["tasks"].items():
            w, i = t["without"], t["with"]
            share = s.get("new_endpoint", {}).get("matched")
            label = _TASK_LABEL[task].format(share=f"{share / s['events']:.2%}" if share else "?")
            if task in ("one", "cli"):
                label += f" ({report['settings']['endpoint']})"
            if task == "codes":
                label += (f" ({report['settings']['codes_endpoint']}; again on the keys in memory, as the "
                          f"language server answers: {bench._fmt_s(i.get('hover_s'))})")
            table.add_row("", "", label, str(i.get("endpoints", w.get("endpoints", "-"))),
                          w.get("error") or bench._fmt_s(w.get("wall_s")),
                          i.get("error") or bench._fmt_s(i.get("wall_s")),
                          f"{t['speedup']:.1f}x" if t["speedup"] else "-", "yes" if t["agree"] else "NO",
                          f"{w.get('peak_rss_mb', 0):,.0f}, {i.get('peak_rss_mb', 0):,.0f} MB")
        table.add_section()
    console.print(table)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="medium", help="comma list of run.py's sizes")
    ap.add_argument("--registry", type=Path, default=None,
                    help="a registry folder of run.py's data folder (one size) instead of --sizes")
    ap.add_argument("--library", default="finngen-newest", help="as run.py's --library")
    ap.add_argument("--endpoint", default="T2D", help="the endpoint of the one-endpoint task")
    ap.add_argument("--codes-endpoint", default="I9_CHD", help="the endpoint of the codes task")
    ap.add_argument("--share", type=float, default=0.01, help="share of the events the new endpoint reads")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma list of one, new, all, cli, codes")
    ap.add_argument("--ep-library", type=Path, default=None,
                    help="the library as definition files (a folder of .ep), for the cli task")
    ap.add_argument("--data-dir", type=Path, default=HERE / "data", help="as run.py's --data-dir")
    ap.add_argument("--work", type=Path, default=None, help="where the index is built (default: the system's "
                    "temporary folder; about the size of the events file)")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "index.json")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--buckets", default="auto", help="person buckets without the index; auto = as `endpointc run`")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1, help="registry seed (run.py's --seed)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per child process")
    args = ap.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if set(args.tasks) - set(TASKS) or args.repeats < 1:
        raise SystemExit(f"--tasks: choose from {', '.join(TASKS)}; --repeats: at least 1")
    sizes = ["registry"] if args.registry is not None else [s.strip() for s in args.sizes.split(",") if s.strip()]
    if args.registry is None and set(sizes) - set(bench.SIZES):
        raise SystemExit(f"unknown size(s); choose from {', '.join(bench.SIZES)}")

    console, log, machine = bench.start(None)
    library = None if args.registry is not None else bench.load_library(args.library, args.data_dir, log,
                                                                        threads=args.threads)
    report: dict[str, Any] = {"machine": machine, "library": library, "sizes": [],
                              "settings": {"endpoint": args.endpoint, "codes_endpoint": args.codes_endpoint,
                                           "share": args.share, "repeats": args.repeats,
                                           "threads": args.threads, "buckets": args.buckets,
                                           "registry": None if args.registry is None else str(args.registry)}}
    for size in sizes:
        report["sizes"].append(bench_size(size, library, args, log))
        bench._write_json(report, args.json)
    report["machine"]["load_end"] = list(os.getloadavg())
    bench._write_json(report, args.json)
    render(report, console)
    for s in report["sizes"]:
        console.print(f"{s['size']}: the new endpoint: {' '.join((s.get('new_endpoint') or {}).get('text', '-').split())}")
        cli = s["tasks"].get("cli")
        for mode in ("without", "with") if cli else ():
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in cli[mode].get("stages", {}).items())
            console.print(f"{s['size']}: `endpointc run` {mode} the index, by stage: {stages}")
    console.print(f"load average start {machine['load_start'][0]:.1f}, end {report['machine']['load_end'][0]:.1f} "
                  f"on {machine['cores']} cores; JSON: {args.json}")
    return report


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        bench._worker_main(*sys.argv[2:5], workers=WORKERS)
    else:
        main()
