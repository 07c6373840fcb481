"""Throughput of the synthetic registry generator (the target: >= 1e6 events/s).

    python benchmarks/synth_throughput.py --people 50000
    python benchmarks/synth_throughput.py --people 500000 --out /tmp/fg500k   # FinnGen size
    python benchmarks/synth_throughput.py --people 20000 --generate-only

Prints events, wall and CPU seconds, events per second by both clocks (CPU time is the
fairer number on a shared machine), the peak resident memory, and the output size.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from endpointc.synth import write_registry  # noqa: E402
from endpointc.synth.generate import _build_model, iter_blocks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--format", choices=("parquet", "tsv"), default="parquet")
    ap.add_argument("--out", type=Path, help="output directory (default: a temporary one, removed)")
    ap.add_argument("--definitions", nargs="*", help="definition files/folders for case recipes")
    ap.add_argument("--generate-only", action="store_true", help="generate in memory, write nothing")
    args = ap.parse_args()

    definitions = None
    if args.definitions:
        from endpointc.compiler import compile_program
        definitions = compile_program(args.definitions)

    wall, cpu = time.perf_counter(), time.process_time()
    size = 0
    if args.generate_only:
        model = _build_model(definitions, None, 0.02, args.seed)
        n_events = sum(e.height for e, _ in iter_blocks(model, people=args.people, seed=args.seed))
    else:
        out = args.out or Path(tempfile.mkdtemp(prefix="synth-bench-"))
        try:
            res = write_registry(out, people=args.people, seed=args.seed, fmt=args.format,
                                 definitions=definitions)
            n_events = res["n_events"]
            size = res["events"].stat().st_size + res["people"].stat().st_size
        finally:
            if args.out is None:
                shutil.rmtree(out, ignore_errors=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"people            {args.people:>14,}")
    print(f"events            {n_events:>14,}  ({n_events / args.people:.0f} per person)")
    print(f"wall seconds      {wall:>14.1f}  -> {n_events / wall:>12,.0f} events/s")
    print(f"cpu seconds       {cpu:>14.1f}  -> {n_events / cpu:>12,.0f} events/s (all threads)")
    print(f"peak memory       {peak_mb:>14,.0f} MB")
    if size:
        print(f"output            {size / 2**20:>14,.0f} MB  ({size / n_events:.1f} bytes/event)")


if __name__ == "__main__":
    main()
