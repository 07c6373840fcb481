"""The Polars engine against a naive per-endpoint loop, measured in the same run.

Run it with the Python that has endpointc installed (e.g. after `pip install -e .`):

    python benchmarks/engine_vs_loop.py                       # 2,000 people (~1e6 events)
    python benchmarks/engine_vs_loop.py --people 20000        # ~1e7 events
    python benchmarks/engine_vs_loop.py --finngen --limit 200 --loop-sample 20

The registry is `endpointc.synth.generate` (definition-aware: every endpoint gets cases)
for the starter library definitions/ (99 endpoints) or, with `--finngen`, for the imported
FinnGen DF6 library instead (the FinnGen reference definition file, when present at
../shared/reference/finngen; read in place, never copied);
`--limit N` keeps its first N endpoints (plus their dependencies). The loop is what a user would write by hand: per endpoint, one filter over
the whole event table (its rules' sources and code tests) and a group-by person. It ignores
include/require/when/sex/min/needs-other/mode, so its case counts are checked only on the
endpoints that have none of those; it is timed on every endpoint (or on a sample, extrapolated).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from endpointc.engine.polars import evaluate
from endpointc.plan import Branch, CodeSet, EndpointPlan, Program

ROOT = Path(__file__).resolve().parents[1]
DF6 = ROOT / ".." / "shared" / "reference" / "finngen" / "FINNGEN_ENDPOINTS_DF6_2020-06-08_public.csv"


def load_program(finngen: bool) -> Program:
    from endpointc.compiler import compile_files, compile_program

    if not finngen:
        return compile_program([ROOT / "definitions"])
    from endpointc.finngen import import_finngen

    if not DF6.exists():
        raise SystemExit(f"FinnGen library not found: {DF6}")
    imported = import_finngen(DF6)
    program, diags = compile_files(list(imported.files))
    if program is None:
        raise SystemExit(f"the imported library does not compile ({len(diags)} diagnostics)")
    return program


def _codes(column: str, cs: CodeSet) -> pl.Expr:
    col = pl.col(column)
    parts = [col.str.starts_with(p) for p in cs.prefixes]
    if cs.exact:
        parts.append(col.is_in(list(cs.exact)))
    parts += [col.str.contains(f"^(?:{r})") for r in cs.regexes]
    return pl.any_horizontal(parts).fill_null(False) if parts else pl.lit(False)


def _branch(b: Branch) -> pl.Expr:
    e = pl.col("SOURCE").is_in(list(b.sources))
    for t in b.tests:
        e = e & _codes(t.column, t.codes)
    for conj in b.excepts:
        e = e & ~pl.all_horizontal([_codes(t.column, t.codes) for t in conj] or [pl.lit(True)])
    return e


def is_plain(ep: EndpointPlan) -> bool:
    """Rules without options and nothing else: the loop computes exactly the engine's cases."""
    return (not ep.includes and ep.when is None and ep.require is None and ep.sex is None
            and all(r.min_events == 1 and not r.needs_other and not r.mode for r in ep.rules))


def naive_loop(events: pl.DataFrame, people: pl.DataFrame, eps: list[EndpointPlan]) -> dict[str, int]:
    """Per endpoint: one filter over all events, then a group-by person."""
    n_cases = {}
    ids = people.lazy().select("FINNGENID")
    for ep in eps:
        branches = [_branch(b) for r in ep.rules for b in r.branches]
        out = (
            events.lazy()
            .filter(pl.any_horizontal(branches) if branches else pl.lit(False))
            .join(ids, on="FINNGENID", how="semi")
            .group_by("FINNGENID").agg(pl.col("EVENT_AGE").min().alias("AGE"), pl.len().alias("NEVT"))
            .collect()
        )
        n_cases[ep.name] = out.height
    return n_cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--finngen", action="store_true", help="use the imported FinnGen DF6 library")
    ap.add_argument("--limit", type=int, default=0, help="first N endpoints only (0: all)")
    ap.add_argument("--buckets", type=int, default=1)
    ap.add_argument("--loop-sample", type=int, default=0,
                    help="time the loop on this many endpoints and extrapolate (0: all)")
    args = ap.parse_args()
    from endpointc.synth import generate

    t = time.perf_counter()
    program = load_program(args.finngen)
    if args.limit:
        program = program.subset([ep.name for ep in program.endpoints[: args.limit]])
    ev, pp = generate(people=args.people, seed=args.seed, definitions=program)
    events, people = ev.collect(), pp.collect()
    t_gen = time.perf_counter() - t
    n = events.height

    t = time.perf_counter()
    res = evaluate(program, events.lazy(), people.lazy(), buckets=args.buckets)
    counts = res.counts.collect()
    long = res.long.collect()
    t_engine = time.perf_counter() - t

    eps = list(program.endpoints)
    step = max(1, len(eps) // args.loop_sample) if args.loop_sample else 1
    sample = eps[::step][: args.loop_sample or len(eps)]
    t = time.perf_counter()
    loop_cases = naive_loop(events, people, sample)
    t_loop = (time.perf_counter() - t) * len(eps) / len(sample)

    engine_cases = dict(counts.select("ENDPOINT", "N_CASES").iter_rows())
    checked = [ep.name for ep in sample if is_plain(ep)]
    mismatched = [k for k in checked if engine_cases[k] != loop_cases[k]]
    extrapolated = f", extrapolated from {len(sample)}" if len(sample) < len(eps) else ""
    print(f"registry: {n:,} events, {people.height:,} people (generated in {t_gen:.1f} s)")
    print(f"program: {len(eps)} endpoints, {long.height:,} result rows")
    print(f"{'':44}{'seconds':>10}{'events/s':>16}")
    print(f"{'engine (all endpoints, buckets=' + str(args.buckets) + ')':44}{t_engine:10.2f}"
          f"{n / t_engine:16,.0f}")
    print(f"{'loop (' + str(len(eps)) + ' endpoints' + extrapolated + ')':44}{t_loop:10.2f}"
          f"{n / t_loop:16,.0f}")
    print(f"ratio loop/engine: {t_loop / t_engine:.1f}x; case counts agree on "
          f"{len(checked) - len(mismatched)}/{len(checked)} plain endpoints")
    if mismatched:
        raise SystemExit(f"case counts differ for {mismatched[:5]}")


if __name__ == "__main__":
    main()
