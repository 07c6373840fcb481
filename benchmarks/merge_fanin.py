"""The merge of many spilled buckets: one pass over all files against merging groups first.

    python benchmarks/merge_fanin.py                          # 400 buckets, ~8e7 rows
    python benchmarks/merge_fanin.py --buckets 900 --rows 1.5e8

`evaluate` spills each person bucket's rows sorted by _KEY and merges the files in slices
of whole endpoints (`spill.stream_merged`); every slice reads from every file. Past `spill.MERGE_FANIN`
files, `spill.merge_neighbours` first merges groups of neighbouring files. This script writes the
same spill files as `evaluate` (synthetic rows of the same shape: B consecutive person
ranges, E endpoints, random cases), then times, side by side on the same files, the
merged stream sunk to Parquet (a) in one pass over all B files and (b) as `evaluate` does,
and prints the ratio. Spill files stay in a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from endpointc.engine import spill
from endpointc.engine.columns import LONG_CODED


def write_spill(folder: Path, *, buckets: int, rows: int, endpoints: int, people: int,
                seed: int) -> tuple[list[Path], list[list[int]]]:
    rng = np.random.default_rng(seed)
    files, sizes = [], []
    per_bucket = rows // buckets
    for b in range(buckets):
        rank = rng.integers(0, endpoints, per_bucket, dtype=np.uint64)
        pid = rng.integers(b * people, (b + 1) * people, per_bucket, dtype=np.uint64)
        keys = np.unique(rank * np.uint64(2**32) + pid)  # sorted, one row per (endpoint, person)
        n = len(keys)
        frame = pl.DataFrame({"_KEY": keys, "CASE": np.ones(n, dtype=bool),
                              "AGE": rng.uniform(0, 100, n), "YEAR": np.full(n, 2000, dtype=np.int32),
                              "NEVT": np.ones(n, dtype=np.int64)}, schema=LONG_CODED)
        path = folder / f"bucket-{b:05d}.parquet"
        spill.write_spill(frame, path)
        files.append(path)
        sizes.append(np.bincount((keys // np.uint64(2**32)).astype(np.int64), minlength=endpoints).tolist())
    return files, sizes


def checksum(path: Path) -> tuple[int, int]:
    """Row count and an order-sensitive sum of row hashes."""
    return pl.scan_parquet(path).with_row_index().select(
        pl.len(), pl.struct(pl.all()).hash(seed=0).sum()).collect(engine="streaming").row(0)


def timed(label: str, fn) -> float:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    return wall


def main(argv: list[str] | None = None) -> bool:
    """Runs the comparison; returns whether both merges gave the same rows."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--buckets", type=int, default=400)
    ap.add_argument("--rows", type=float, default=8e7, help="spilled rows in all (before duplicates)")
    ap.add_argument("--endpoints", type=int, default=4841)
    ap.add_argument("--people", type=int, default=8000, help="people per bucket")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="merge-fanin-") as tmp:
        folder = Path(tmp)
        (folder / "spill").mkdir()
        files, sizes = write_spill(folder / "spill", buckets=args.buckets, rows=int(args.rows),
                                   endpoints=args.endpoints, people=args.people, seed=args.seed)
        # merge_neighbours removes the files it has merged: it gets a copy
        shutil.copytree(folder / "spill", folder / "steps")
        copies = [folder / "steps" / f.name for f in files]
        print(f"{len(files)} spill files, {sum(map(sum, sizes)):,} rows, {args.endpoints} endpoints; "
              f"slices of {spill.MERGE_ROWS:,} rows, fan-in {spill.MERGE_FANIN}", flush=True)

        def one_pass() -> None:
            spill.stream_merged(files, sizes).sink_parquet(folder / "one.parquet", compression="uncompressed")

        def in_steps() -> None:
            merged, merged_sizes = spill.merge_neighbours(copies, sizes, folder / "steps")
            spill.stream_merged(merged, merged_sizes).sink_parquet(folder / "steps.parquet", compression="uncompressed")

        a = timed(f"one pass over {len(files)} files", one_pass)
        b = timed("as evaluate merges (groups of neighbours first)", in_steps)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        same = checksum(folder / "one.parquet") == checksum(folder / "steps.parquet")
        print(f"one pass / in steps: {a / b:.2f}x; outputs identical: {same}; "
              f"peak RSS {peak:,.0f} MB")
    return same


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
