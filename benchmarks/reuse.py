"""What an incremental re-run costs: `endpointc run` of a library with one endpoint changed,
from scratch against `--reuse` of the run before the change, side by side, in one run.

    python benchmarks/reuse.py                                   # medium registry, DF12, two changes
    python benchmarks/reuse.py --size small                      # quick look
    python benchmarks/reuse.py --change "T2D:purchase atc A10BA"

The goal it checks: on the medium registry, changing one DF12 endpoint re-runs in at most
10% of a full run's time. What a change costs depends on what depends on the endpoint:
its dependents are computed again, and the engine evaluates their dependencies with them.
The default changes are J10_ASTHMA (13 dependents, 99 endpoints evaluated: about the
median over DF12's endpoints, 110) and I9_MI (22 dependents, 649 evaluated: past the 90th
percentile, 531).

The machinery is benchmarks/run.py's (imported, not copied): the library (the newest
FinnGen freeze, or `--library`) compiled there and the registry of `--size` it generates for
that library (cached in the data folder). Steps:

1. The library as definition files: a FinnGen sheet is imported (endpoints run.py's
   compiler rejects are left out) and written as .ep files, cached in the data folder.
2. Per `--change NAME:LINE`, a copy of the library with LINE added to endpoint NAME (by
   default J10_ASTHMA gains `hospital icd10 J46` and, apart, I9_MI `hospital icd10 I23`).
3. `endpointc run` (the command line, each run in a child process that reports its wall
   time, CPU time and peak RSS; the package is copied once at the start and every run
   uses the copy, so that edits to the working tree during the benchmark cannot change
   the build between runs, which would make reuse take nothing): the library before the
   change (untimed, it is what the others reuse, and it warms the page cache), then per
   change `--repeats` times, alternating, the changed library in full and with `--reuse`.
4. The outputs of the full and the reusing run are compared byte for byte (the manifest
   aside, which holds timings), and the stage timings are read from their manifests.

The ratio that counts is the time after compilation (hashing the inputs, reading the
registry, evaluating, writing), which is what the registry's size drives; compilation is
the same work in both runs and is shown apart, as are whole process times.

Prints a table and writes JSON. Never prints person-level values.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
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

__all__ = ["library_folder", "changed_library", "main"]

STAGES = ("compile", "hash_inputs", "read_registry", "evaluate", "write")
AFTER_COMPILE = STAGES[1:]
OUTPUTS_COMPARED = ("endpoints.parquet", "counts.tsv")
# a typical change and a costly one (see the module docstring)
DEFAULT_CHANGES = (("J10_ASTHMA", "hospital icd10 J46"), ("I9_MI", "hospital icd10 I23"))


# -- the library as definition files ------------------------------------------------------------

def library_folder(library: dict[str, Any], data_dir: Path, log) -> Path:
    """The library as a folder of .ep files: the files of `--library` themselves, or a
    FinnGen sheet imported and written out (cached by the compiled program's hash)."""
    kind, path = library["source"], Path(library["path"])
    if kind == "ep":
        return path
    folder = data_dir / f"library-ep-{library['hash']}"
    if (folder / "DONE").exists():
        log(f"library: reusing the definition files in {folder.name}")
        return folder
    from endpointc import ast
    from endpointc.finngen import import_finngen
    from endpointc.fmt import format_file

    log(f"library: writing {path.name} as definition files ...")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rejected = set(library["rejected_names"])
    for file in import_finngen(path).files:
        kept = file.model_copy(update={"declarations": tuple(
            d for d in file.declarations if not (isinstance(d, ast.Endpoint) and d.name in rejected))})
        (folder / file.name).write_text(format_file(kept), encoding="utf-8")
    (folder / "DONE").write_text("")
    return folder


def parse_change(text: str) -> tuple[str, str]:
    name, sep, line = text.partition(":")
    if not sep or not name.strip() or not line.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:LINE, got {text!r}")
    return name.strip(), line.strip()


def changed_library(folder: Path, target: Path, *, endpoint: str, line: str) -> Path:
    """A copy of the library in `target` with `line` added to the block of `endpoint`."""
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("DONE"))
    start = re.compile(rf"^endpoint {re.escape(endpoint)} \{{\s*$", re.M)
    for path in sorted(target.rglob("*.ep")):
        text = path.read_text(encoding="utf-8")
        if (found := start.search(text)) is not None:
            path.write_text(text[:found.end()] + f"\n  {line}" + text[found.end():], encoding="utf-8")
            return target
    raise SystemExit(f"no endpoint {endpoint} (written as `endpoint {endpoint} {{` on a line of its own) "
                     f"in {folder}")


# -- one run -------------------------------------------------------------------------------------

def snapshot_package(into: Path) -> Path:
    """A copy of the endpointc package; runs started in `into` import it."""
    shutil.copytree(REPO / "endpointc", into / "endpointc", ignore=shutil.ignore_patterns("__pycache__"))
    return into


def endpointc_run(snapshot: Path, library: Path, registry: dict[str, Any], out: Path, *, threads: int,
                  buckets: str, reuse: Path | None = None) -> dict[str, Any]:
    """`endpointc run` in a child process: its manifest's timings and statuses, plus the
    process's wall time, CPU time and peak RSS."""
    command = [sys.executable, "-m", "endpointc.cli", "run", str(library), "--events", registry["events_path"],
               "--people", registry["people_path"], "--out", str(out), "--buckets", buckets]
    if reuse is not None:
        command += ["--reuse", str(reuse)]
    env = dict(os.environ, POLARS_MAX_THREADS=str(threads), PYTHONHASHSEED="0")
    start = time.perf_counter()
    # started in the snapshot's folder, `-m` imports the copied package first
    proc = subprocess.Popen(command, cwd=snapshot, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"endpointc run failed:\n{stderr.decode(errors='replace')[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    statuses = [e["status"] for e in manifest["endpoints"].values()]
    return {"timings": manifest["timings"], "after_compile_s": round(sum(manifest["timings"][s] for s in AFTER_COMPILE), 3),
            "process_s": round(wall, 3), "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "computed": statuses.count("computed"), "reused": statuses.count("reused"),
            "reuse_note": (manifest.get("reuse") or {}).get("note")}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time after compilation, with every stage's median."""
    ordered = sorted(runs, key=lambda r: r["after_compile_s"])
    middle = dict(ordered[(len(ordered) - 1) // 2])
    middle["timings"] = {s: statistics.median(r["timings"][s] for r in runs) for s in STAGES}
    for key in ("process_s", "process_cpu_s"):
        middle[key] = statistics.median(r[key] for r in runs)
    middle["runs"] = [{k: r[k] for k in ("after_compile_s", "process_s", "process_cpu_s", "peak_rss_mb")}
                      for r in runs]
    return middle


# -- the benchmark -------------------------------------------------------------------------------

def bench_change(args, snapshot: Path, folder: Path, before: Path, common: dict[str, Any], tmp: Path, log,
                 endpoint: str, line: str) -> dict[str, Any]:
    """Full and reusing runs of the library with `line` added to `endpoint`."""
    changed = changed_library(folder, tmp / f"{endpoint}-library", endpoint=endpoint, line=line)
    fulls, reuses = [], []
    for k in range(args.repeats):
        run_no = f" (run {k + 1} of {args.repeats})" if args.repeats > 1 else ""
        full_out, reuse_out = tmp / f"{endpoint}-full{k}", tmp / f"{endpoint}-reuse{k}"
        log(f"{args.size}: {endpoint} changed, full run{run_no} ...")
        fulls.append(endpointc_run(snapshot, changed, out=full_out, **common))
        log(f"{args.size}: {endpoint} changed, --reuse{run_no} ...")
        reuses.append(endpointc_run(snapshot, changed, out=reuse_out, reuse=before, **common))
        if reuses[-1]["reused"] == 0:
            raise SystemExit(f"the reusing run took nothing: {reuses[-1]['reuse_note']}")
        different = [name for name in OUTPUTS_COMPARED
                     if (full_out / name).read_bytes() != (reuse_out / name).read_bytes()]
        if different:
            raise SystemExit(f"the reusing run's outputs differ from the full run's: {', '.join(different)}")
        shutil.rmtree(full_out)
        shutil.rmtree(reuse_out)
    full, reused = _median_run(fulls), _median_run(reuses)
    return {"endpoint": endpoint, "added_line": line, "full": full, "reuse": reused,
            "identical_outputs": list(OUTPUTS_COMPARED),
            "ratio_after_compile": reused["after_compile_s"] / full["after_compile_s"],
            "ratio_process": reused["process_s"] / full["process_s"],
            "ratio_process_cpu": reused["process_cpu_s"] / full["process_cpu_s"]}


def bench_size(args, library: dict[str, Any], folder: Path, log) -> dict[str, Any]:
    registry = bench.registry_for(args.size, library, args.registry, log)
    buckets = str(bench._buckets(args, registry["events"]))
    with tempfile.TemporaryDirectory(prefix="bench-reuse-") as tmp:
        tmp = Path(tmp)
        snapshot = snapshot_package(tmp / "package")
        common = dict(registry=registry, threads=args.threads, buckets=buckets)
        log(f"{args.size}: the library before the change (what the others reuse) ...")
        before = endpointc_run(snapshot, folder, out=tmp / "before", **common)
        load_before = os.getloadavg()[0]
        changes = [bench_change(args, snapshot, folder, tmp / "before", common, tmp, log, endpoint, line)
                   for endpoint, line in args.change]
    return {"size": args.size, "events": registry["events"], "people": registry["people"], "buckets": buckets,
            "before": before, "changes": changes, "load_before": load_before, "load_after": os.getloadavg()[0]}


def render(report: dict[str, Any], console) -> None:
    from rich.table import Table

    s = report["result"]
    table = Table(title=f"One endpoint changed: full run against --reuse ({s['size']}: {s['events']:,} events, "
                        f"{s['people']:,} people, {s['buckets']} bucket(s))")
    for column in ("changed", "run", "computed", "reused", *STAGES, "after compile", "process wall", "process CPU",
                   "peak RSS"):
        table.add_column(column, justify="left" if column in ("changed", "run") else "right")
    for c in s["changes"]:
        for label, r in (("full", c["full"]), ("--reuse", c["reuse"])):
            table.add_row(c["endpoint"] if label == "full" else "", label, f"{r['computed']:,}", f"{r['reused']:,}",
                          *(f"{r['timings'][st]:.2f} s" for st in STAGES), f"{r['after_compile_s']:.2f} s",
                          f"{r['process_s']:.1f} s", f"{r['process_cpu_s']:.1f} s", f"{r['peak_rss_mb']:,.0f} MB")
        table.add_row("", "--reuse / full", "", "", *("" for _ in STAGES), f"{c['ratio_after_compile']:.1%}",
                      f"{c['ratio_process']:.1%}", f"{c['ratio_process_cpu']:.1%}", "")
        table.add_section()
    console.print(table)
    for c in s["changes"]:
        goal = "met" if c["ratio_after_compile"] <= 0.10 else "NOT met"
        console.print(f"{c['endpoint']}: goal (after compilation, at most 10% of a full run) {goal}; outputs "
                      f"identical: {', '.join(c['identical_outputs'])}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="medium", help="small, medium, big or huge (as run.py)")
    ap.add_argument("--library", default="finngen-newest", help="as run.py's --library")
    ap.add_argument("--change", type=parse_change, action="append",
                    help="NAME:LINE, the line added to endpoint NAME (repeatable); default: "
                         + ", ".join(f"{n}:{line}" for n, line in DEFAULT_CHANGES))
    ap.add_argument("--repeats", type=int, default=1, help="full and reusing runs, alternating; medians count")
    ap.add_argument("--data-dir", type=Path, default=HERE / "data",
                    help="run.py's cache of compiled libraries and registries")
    ap.add_argument("--seed", type=int, default=1, help="registry seed (run.py's --seed)")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "reuse.json")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--buckets", default="auto", help="person buckets; auto = as `endpointc run`")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    args.change = args.change or list(DEFAULT_CHANGES)
    if args.size not in bench.SIZES:
        raise SystemExit(f"unknown size {args.size}; choose from {', '.join(bench.SIZES)}")
    # run.registry_for reads these from run.py's own arguments
    args.registry = argparse.Namespace(data_dir=args.data_dir, seed=args.seed, threads=args.threads,
                                       regenerate=False)

    console, log, machine = bench.start(args.data_dir)
    library = bench.load_library(args.library, args.data_dir, log, threads=args.threads)
    folder = library_folder(library, args.data_dir, log)
    report: dict[str, Any] = {
        "machine": machine, "library": library,
        "settings": {"size": args.size, "changes": [list(c) for c in args.change],
                     "repeats": args.repeats, "threads": args.threads, "buckets": args.buckets, "seed": args.seed},
    }
    report["result"] = bench_size(args, library, folder, log)
    report["machine"]["load_end"] = list(os.getloadavg())
    bench._write_json(report, args.json)
    render(report, console)
    console.print(f"load average start {machine['load_start'][0]:.1f}, end {report['machine']['load_end'][0]:.1f} "
                  f"on {machine['cores']} cores; JSON: {args.json}")
    return report


if __name__ == "__main__":
    main()
