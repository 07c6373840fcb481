"""The Polars engine against a naive per-endpoint loop, measured in the same run.

    /tmp/venv/bin/python benchmarks/engine_vs_loop.py             # 1e6 events, 200 endpoints
    /tmp/venv/bin/python benchmarks/engine_vs_loop.py --events 1e7 --buckets 4

The registry is synthetic and generated in-process (numpy): ICD-10-like codes with skewed
frequencies, so that some endpoints are large and most are small. The program has
`--endpoints` simple endpoints (one hospital rule on 1-3 code prefixes) plus ~10% composite
ones (include chains, `min 2`, `when age < 50`, `sex`); the loop evaluates the simple ones
only, one filter + group-by per endpoint over the whole event table (what a user would
write by hand), and its case counts are checked against the engine's.
"""

from __future__ import annotations

import argparse
import string
import time

import numpy as np
import polars as pl

from endpointc.engine.polars import evaluate
from endpointc.plan import (
    Branch, Cmp, CodeSet, ColumnTest, Const, EndpointPlan, Field_, Program, RulePlan,
)

LETTERS = list(string.ascii_uppercase[:22])


def make_registry(n_events: int, *, seed: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    n_people = max(10, n_events // 50)
    ids = np.array([f"FG{i:08d}" for i in range(n_people)])
    vocab = np.array([f"{a}{b:02d}{c}" for a in LETTERS for b in range(100) for c in ("", "0", "1", "9")])
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 0.9
    weights = rng.permutation(weights / weights.sum())
    person = rng.integers(0, n_people, n_events)
    events = pl.DataFrame({
        "FINNGENID": ids[person],
        "SOURCE": rng.choice(["INPAT", "OUTPAT", "PURCH", "PRIM_OUT"], n_events, p=[.3, .4, .2, .1]),
        "EVENT_AGE": np.round(rng.uniform(0, 90, n_events), 2),
        "APPROX_EVENT_DAY": (np.datetime64("1990-01-01")
                             + rng.integers(0, 30 * 365, n_events).astype("timedelta64[D]")),
        "CODE1": rng.choice(vocab, n_events, p=weights),
        "CODE2": pl.Series([None] * n_events, dtype=pl.String),
        "CODE3": pl.Series([None] * n_events, dtype=pl.String),
        "CODE4": pl.Series([None] * n_events, dtype=pl.String),
        "ICDVER": rng.choice(["10", "9"], n_events, p=[.9, .1]),
        "CATEGORY": rng.choice(["0", "1", "2"], n_events, p=[.5, .3, .2]),
        "INDEX": (person * 7 + rng.integers(0, 7, n_events)).astype(str),
    }).with_columns(pl.col("APPROX_EVENT_DAY").cast(pl.Date))
    people = pl.DataFrame({
        "FINNGENID": ids,
        "SEX": rng.choice(["female", "male"], n_people),
        "APPROX_BIRTH_DATE": pl.Series([None] * n_people, dtype=pl.Date),
        "FU_END_AGE": rng.uniform(20, 100, n_people),
        "DEATH": rng.integers(0, 2, n_people),
    })
    return events, people


def _hospital(prefixes: tuple[str, ...], index: int = 0, **options) -> RulePlan:
    return RulePlan(index=index, source="hospital", branches=(Branch(
        sources=("INPAT", "OUTPAT"),
        tests=(ColumnTest(column="ICDVER", codes=CodeSet(exact=("10",))),
               ColumnTest(column="CODE1", codes=CodeSet(prefixes=prefixes)))),), **options)


def make_program(n_simple: int, *, seed: int = 2) -> tuple[Program, dict[str, tuple[str, ...]]]:
    rng = np.random.default_rng(seed)
    simple: dict[str, tuple[str, ...]] = {}
    eps = []
    for i in range(n_simple):
        k = int(rng.integers(1, 4))
        prefixes = tuple(sorted({f"{rng.choice(LETTERS)}{int(rng.integers(0, 100)):02d}"[: int(rng.integers(2, 4))]
                                 for _ in range(k)}))
        name = f"S{i:04d}"
        simple[name] = prefixes
        eps.append(EndpointPlan(name=name, rules=(_hospital(prefixes),)))
    names = list(simple)
    for j in range(max(1, n_simple // 10)):
        inc = tuple(sorted(set(rng.choice(names, int(rng.integers(2, 20))).tolist())))
        eps.append(EndpointPlan(
            name=f"C{j:04d}", rules=(_hospital((f"{LETTERS[j % 22]}1",), min_events=2),),
            includes=inc,
            when=Cmp(op="<", left=Field_(name="age"), right=Const(value=50)) if j % 2 else None,
            sex=("female", "male", None)[j % 3],
        ))
        names.append(f"C{j:04d}")  # later composites may include earlier ones: chains
    return Program(endpoints=tuple(eps)), simple


def naive_loop(events: pl.DataFrame, people: pl.DataFrame, simple: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """One filter + group-by over all events per endpoint."""
    n_cases = {}
    for name, prefixes in simple.items():
        hit = pl.any_horizontal([pl.col("CODE1").str.starts_with(p) for p in prefixes])
        out = (
            events.lazy()
            .filter(pl.col("SOURCE").is_in(["INPAT", "OUTPAT"]) & (pl.col("ICDVER") == "10") & hit)
            .join(people.lazy().select("FINNGENID"), on="FINNGENID", how="semi")
            .group_by("FINNGENID").agg(pl.col("EVENT_AGE").min().alias("AGE"), pl.len().alias("NEVT"))
            .collect()
        )
        n_cases[name] = out.height
    return n_cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=float, default=1e6)
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--buckets", type=int, default=1)
    ap.add_argument("--loop-sample", type=int, default=0,
                    help="time the loop on this many endpoints and extrapolate (0: all)")
    args = ap.parse_args()
    n = int(args.events)

    t = time.perf_counter()
    events, people = make_registry(n)
    program, simple = make_program(args.endpoints)
    t_gen = time.perf_counter() - t

    t = time.perf_counter()
    res = evaluate(program, events.lazy(), people.lazy(), buckets=args.buckets)
    counts = res.counts.collect()
    long = res.long.collect()
    t_engine = time.perf_counter() - t

    sample = dict(list(simple.items())[: args.loop_sample or len(simple)])
    t = time.perf_counter()
    loop_cases = naive_loop(events, people, sample)
    t_loop = (time.perf_counter() - t) * len(simple) / len(sample)

    engine_cases = dict(counts.select("ENDPOINT", "N_CASES").iter_rows())
    mismatched = [k for k, v in loop_cases.items() if engine_cases[k] != v]
    print(f"registry: {n:,} events, {people.height:,} people (generated in {t_gen:.1f} s)")
    print(f"program: {len(program.endpoints)} endpoints ({len(simple)} simple), "
          f"{long.height:,} result rows")
    print(f"engine (all endpoints, buckets={args.buckets}): {t_engine:8.2f} s  "
          f"{n / t_engine:14,.0f} events/s")
    print(f"loop ({len(simple)} simple endpoints{', extrapolated' if len(sample) < len(simple) else ''}):"
          f" {t_loop:8.2f} s  {n / t_loop:14,.0f} events/s")
    print(f"ratio loop/engine: {t_loop / t_engine:.1f}x; case counts agree on "
          f"{len(loop_cases) - len(mismatched)}/{len(loop_cases)} simple endpoints")
    if mismatched:
        raise SystemExit(f"case counts differ for {mismatched[:5]}")


if __name__ == "__main__":
    main()
