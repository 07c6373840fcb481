"""What `endpointc report` costs against `endpointc run`: both commands over the same library and
registry, side by side, in one run.

    python benchmarks/report.py                       # definitions/ on 10,000 people, 1 run each
    python benchmarks/report.py --repeats 3
    python benchmarks/report.py --tree /tmp/old       # the endpointc of another source tree

The goal it checks: the report of the starter library costs at most 2x `run` on the same
registry.

The registry is `endpointc synth --people N --definitions LIBRARY` (seed 1), generated once and
cached in the data folder under `report-people<N>-seed<seed>-<hash of the library files>/`.
Each command runs as the user runs it, `python -m endpointc.cli run|report LIBRARY --events
--people --out`, in a child process whose wall time, CPU time and peak RSS are its own
(os.wait4); compiling the library and starting Python count for both. `--tree DIR` runs the
commands with DIR first on PYTHONPATH (a checkout of another commit, for before and after).
With `--repeats N` both run N times, alternating; medians count.

Prints a table and writes JSON. Never prints person-level values: the commands' output goes
to log files in a temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/ is not a package)
from wide import timed  # noqa: E402

__all__ = ["main"]

COMMANDS = ("run", "report")


def registry(library: Path, *, people: int, seed: int, data_dir: Path, threads: int, log) -> Path:
    """`endpointc synth` of `people` people with the library's endpoints as case recipes, cached."""
    files = sorted(library.rglob("*.ep")) if library.is_dir() else [library]
    key = hashlib.sha256(b"".join(hashlib.sha256(f.read_bytes()).digest() for f in files)).hexdigest()[:16]
    folder = data_dir / f"report-people{people}-seed{seed}-{key}"
    if (folder / "people.parquet").exists():
        log(f"registry: reusing {folder.name}")
        return folder
    log(f"registry: endpointc synth --people {people:,} into {folder} ...")
    done = timed([sys.executable, "-m", "endpointc.cli", "synth", "--people", str(people), "--seed", str(seed),
                  "--definitions", str(library), "--out", str(folder)], threads=threads)
    if "error" in done:
        raise SystemExit(f"endpointc synth failed: {done['error']}")
    return folder


def _median(runs: list[dict[str, Any]], key: str) -> float:
    values = sorted(r[key] for r in runs)
    return values[(len(values) - 1) // 2]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", type=Path, default=REPO / "definitions", help="a .ep file or a folder of them")
    ap.add_argument("--people", type=int, default=10_000, help="people in the registry")
    ap.add_argument("--seed", type=int, default=1, help="registry seed")
    ap.add_argument("--data-dir", type=Path, default=HERE / "data", help="where the registry is cached")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "report.json")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each command, alternating; medians count")
    ap.add_argument("--tree", type=Path, default=None, help="run the endpointc of this source tree")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per command")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")

    from rich.table import Table

    console, log, machine = bench.start(args.data_dir)
    folder = registry(args.library.resolve(), people=args.people, seed=args.seed, data_dir=args.data_dir,
                      threads=args.threads, log=log)
    if args.tree is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.tree.resolve()),
                                                                 os.environ.get("PYTHONPATH")]))
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        for k in range(args.repeats):
            for command in COMMANDS:
                out = Path(tmp) / f"{command}-{k}"
                log(f"endpointc {command} (run {k + 1} of {args.repeats}) ...")
                done = timed([sys.executable, "-m", "endpointc.cli", command, str(args.library),
                              "--events", str(folder / "events.parquet"), "--people", str(folder / "people.parquet"),
                              "--out", str(out)],
                             threads=args.threads, log=Path(tmp) / f"{command}-{k}.log", timeout=args.timeout,
                             cwd=Path(tmp))  # `python -m` puts its folder first: not the repository's
                if "error" in done:
                    raise SystemExit(f"endpointc {command} failed: {done['error']} "
                                     f"(its log: {(Path(tmp) / f'{command}-{k}.log').read_text()[-2000:]})")
                runs[command].append(done)
    median = {c: {key: _median(rs, key) for key in ("wall_s", "cpu_s", "peak_rss_mb")} for c, rs in runs.items()}
    ratio_wall = median["report"]["wall_s"] / median["run"]["wall_s"]
    ratio_cpu = median["report"]["cpu_s"] / median["run"]["cpu_s"]
    table = Table(title=f"endpointc run and report: {args.library.name}, {args.people:,} people "
                        f"(synth seed {args.seed}), medians of {args.repeats}"
                        + (f", tree {args.tree}" if args.tree else ""))
    for column in ("command", "wall", "CPU", "peak RSS", "/ run (wall, CPU)"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for command in COMMANDS:
        row = median[command]
        table.add_row(command, f"{row['wall_s']:.1f} s", f"{row['cpu_s']:.1f} s", f"{row['peak_rss_mb']:,.0f} MB",
                      f"{ratio_wall:.2f}x, {ratio_cpu:.2f}x" if command == "report" else "")
    console.print(table)
    console.print(f"load average at the end {os.getloadavg()[0]:.1f}")
    result = {"machine": machine, "library": str(args.library), "people": args.people, "seed": args.seed,
              "tree": str(args.tree) if args.tree else None, "threads": args.threads, "runs": runs,
              "median": median, "ratio_wall": ratio_wall, "ratio_cpu": ratio_cpu,
              "load_end": os.getloadavg()[0]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
