"""Code matching for the Polars engine: every pattern of a program, once, on distinct keys.

The event table is never scanned per endpoint. Instead:

1. every distinct (column, CodeSet) of the program becomes one *test*;
2. each test is matched against the DISTINCT values of its column only: prefixes by a join
   of each value's prefixes with a (prefix -> test) table, exact codes by a join, regexes
   with `str.contains` (Python `re` only for the rare pattern Rust's regex cannot run);
3. the distinct event keys (SOURCE plus every tested column) are joined with those
   matches, giving (key, test) pairs; a branch holds on a key when its most selective
   test (the anchor) holds, its SOURCE is allowed, its other tests hold and none of its
   except conjunctions holds -- all joins on key-level tables, never on events.

The result maps each matched key to the (endpoint, rule) pairs that select it. Joining it
to the events is the engine's single pass over the event table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ..plan import Branch, CodeSet, ColumnTest, Program
from ..registry import as_read as _as_read, is_missing_text, normalise_text
from .columns import pack, unpack

__all__ = ["ENGINE", "KeyMapping", "key_columns", "key_hash", "match_keys", "regex_filter"]

# Polars' streaming engine runs the engine's group-bys, joins and uniques on morsels in
# parallel: a group-by of 7.8 M rows into 2.9 M groups took 0.84 s, against 2.4 s in the
# in-memory engine, on 2 cores; and it reads Parquet in batches.
ENGINE = "streaming"

# Rust's regex crate reads these differently from Python's `re` (class set operations,
# nested classes, \Z), so a pattern containing them is matched with Python instead.
_RUST_DIFFERENT = ("[[", "&&", "--", "~~", "\\Z")


@dataclass(frozen=True)
class KeyMapping:
    """`keys`: the matched distinct keys (key columns + KEYID u32 + _HASH u64, see
    `key_hash`); `rules`: (KEYID, EP, RULE) with EP the endpoint's position in the program
    and RULE the rule's position in the endpoint, each triple once."""

    columns: tuple[str, ...]
    keys: pl.DataFrame
    rules: pl.DataFrame
    # necessary conditions on single key columns (`is_in` the matched keys' values), only
    # for columns where they drop many rows: cheap filters before the multi-column join
    row_filters: tuple[pl.Expr, ...] = ()
    # `key_hash` told apart every distinct key of the matched table, so events can be
    # joined to `keys` on _HASH (one u64) instead of on all key columns
    hash_unique: bool = False
    # When the events carry the key columns as read (`registry.scan_events(keep_as_read=
    # True)`) and `key_hash` of those tells apart every way the table writes a key:
    # (KEYID, _HASH) of each written form of the matched keys. The events are then joined
    # on the hash of their columns as read, never normalised row by row, and the
    # row_filters read those columns too.
    read_keys: pl.DataFrame | None = None


def _branch_tests(branch: Branch) -> list[ColumnTest]:
    return [*branch.tests, *(t for conj in branch.excepts for t in conj)]


def key_columns(program: Program) -> tuple[str, ...]:
    """SOURCE plus every column some branch tests, in a fixed order."""
    used = {t.column for ep in program.endpoints for r in ep.rules for b in r.branches
            for t in _branch_tests(b)}
    order = ("ICDVER", "CATEGORY", "CODE1", "CODE2", "CODE3")
    return ("SOURCE", *(c for c in order if c in used))


def key_hash(columns: tuple[str, ...]) -> pl.Expr:
    """One u64 per key (the key columns, nulls included): joining on it is ~3x cheaper than
    a join on several string columns. Only used when `match_keys` has seen that it tells
    apart every distinct key of the table, so it is exact there.

    Each column is hashed on its own and the hashes mixed with a multiply (wrapping):
    measured 2x cheaper than hashing a struct of the columns."""
    mixed = None
    for i, column in enumerate(columns):
        h = pl.col(column).hash(seed=0x5EED + i)
        mixed = h if mixed is None else (mixed * 0x9E3779B97F4A7C15) ^ h
    return mixed.alias("_HASH")


def regex_filter(values: pl.Series, pattern: str) -> pl.Series:
    """Boolean mask: `re.match(pattern, value)` for each non-null string value."""
    if not any(s in pattern for s in _RUST_DIFFERENT):
        try:
            return values.str.contains(f"^(?:{pattern})")
        except pl.exceptions.PolarsError:
            pass  # a construct Rust's regex does not support: fall through to Python
    rx = re.compile(pattern)
    return pl.Series([v is not None and rx.match(v) is not None for v in values.to_list()],
                     dtype=pl.Boolean)


def _match_column(values: pl.Series, tests: list[tuple[int, CodeSet]]) -> pl.DataFrame:
    """(VALUE, TEST) for every distinct non-null value matching a test's CodeSet."""
    values = values.drop_nulls().unique()
    frames: list[pl.DataFrame] = []
    empty = pl.DataFrame(schema={"VALUE": pl.String, "TEST": pl.UInt32})
    vals = pl.DataFrame({"VALUE": values}, schema={"VALUE": pl.String})

    prefix_rows = [(p, tid) for tid, cs in tests for p in cs.prefixes]
    if prefix_rows and vals.height:
        pt = pl.DataFrame(prefix_rows, schema={"PREFIX": pl.String, "TEST": pl.UInt32},
                          orient="row").unique()
        # a value only needs the prefixes whose length some test's prefix has
        lengths = sorted({len(p) for p, _ in prefix_rows})
        expanded = (
            vals.lazy()
            .with_columns(pl.col("VALUE").str.len_chars().alias("_N"))
            .join(pl.LazyFrame({"_K": lengths}, schema={"_K": pl.UInt32}), how="cross")
            .filter(pl.col("_K") <= pl.col("_N"))
            .with_columns(pl.col("VALUE").str.slice(0, pl.col("_K")).alias("PREFIX"))
            .join(pt.lazy(), on="PREFIX")
            .select("VALUE", "TEST")
        )
        frames.append(expanded.collect(engine=ENGINE))

    exact_rows = [(e, tid) for tid, cs in tests for e in cs.exact]
    if exact_rows and vals.height:
        et = pl.DataFrame(exact_rows, schema={"VALUE": pl.String, "TEST": pl.UInt32},
                          orient="row").unique()
        frames.append(vals.join(et, on="VALUE").select("VALUE", "TEST"))

    for tid, cs in tests:
        for pattern in cs.regexes:
            if not vals.height:
                break
            hit = vals.filter(regex_filter(vals["VALUE"], pattern))
            frames.append(hit.with_columns(pl.lit(tid, dtype=pl.UInt32).alias("TEST")))

    if not frames:
        return empty
    return pl.concat(frames).unique()


def match_keys(program: Program, keys: pl.LazyFrame | pl.DataFrame, *,
               parts: Sequence[pl.Expr] | None = None) -> KeyMapping:
    """Match every branch of `program` against the distinct `keys` (SOURCE + tested columns).

    `keys` may hold duplicates and extra columns; only `key_columns(program)` are read, and
    `_ROWS`, the events each row stands for, when keys were counted elsewhere (endpointc.spark).
    `parts`, filters that split the rows of `keys` (such as groups of person buckets), has
    the distinct keys gathered part by part, in memory bounded by one part.
    """
    columns = key_columns(program)
    keys_lf = keys.lazy() if isinstance(keys, pl.DataFrame) else keys
    sources = sorted({s for ep in program.endpoints for r in ep.rules for b in r.branches
                      for s in b.sources})
    read = tuple(_as_read(c) for c in columns)
    written = None
    if set(read) <= set(keys_lf.collect_schema().names()):
        # the distinct keys as written ("NA", "" and null are one missing value), each then
        # normalised once: 34 to 35 s against 39 to 44 s for the normalised keys of 2.5e8 events
        written = (_distinct(keys_lf, read, parts)
                   .with_columns(normalise_text(pl.col(r)).alias(c) for r, c in zip(read, columns)))
        counted = written.group_by(columns).agg(pl.col("_ROWS").sum())
    else:
        counted = _distinct(keys_lf, columns, parts)
    # sorted: KEYIDs independent of input order
    counted = counted.sort(columns, nulls_last=True).with_columns(key_hash(columns))
    # every event's key is one of `counted`: distinct hashes there mean no event's hash can
    # stand for another key (a 64-bit collision is ~1e-8 likely at 1e6 keys; then: columns)
    hash_unique = counted["_HASH"].n_unique() == counted.height
    kdf = (counted.filter(pl.col("SOURCE").is_in(sources)).drop("_ROWS")
           .with_row_index("KEYID").with_columns(pl.col("KEYID").cast(pl.UInt32)))

    # -- tests: one id per distinct (column, CodeSet)
    test_ids: dict[tuple[str, CodeSet], int] = {}

    def tid(test: ColumnTest) -> int:
        return test_ids.setdefault((test.column, test.codes), len(test_ids))

    branch_rows = []  # (BR, EP, RULE, sources, tests, excepts)
    for e, ep in enumerate(program.endpoints):
        for r, rule in enumerate(ep.rules):
            for branch in rule.branches:
                excepts = [sorted({tid(t) for t in conj}) for conj in branch.excepts]
                if any(not conj for conj in excepts):
                    continue  # an empty except conjunction always holds: the branch selects nothing
                tests = sorted({tid(t) for t in branch.tests})
                if any(test.codes.is_empty for test in branch.tests):
                    continue  # `none`: no code matches
                branch_rows.append((len(branch_rows), e, r, branch.sources, tests, excepts))

    # -- per column: which distinct values each test matches; then (KEYID, TEST) pairs
    by_column: dict[str, list[tuple[int, CodeSet]]] = {}
    for (column, codes), i in test_ids.items():
        by_column.setdefault(column, []).append((i, codes))
    pair_frames = []
    for column, tests in by_column.items():
        matched = _match_column(kdf[column], tests)
        pair_frames.append(
            kdf.select("KEYID", pl.col(column).alias("VALUE"))
            .join(matched, on="VALUE")
            .select("KEYID", "TEST")
        )
    pairs = (pl.concat(pair_frames) if pair_frames
             else pl.DataFrame(schema={"KEYID": pl.UInt32, "TEST": pl.UInt32}))
    test_hits = dict(pairs.group_by("TEST").len().iter_rows())

    # -- branches on keys. Every step keys on one integer column: a pair (KEYID, BR),
    # (KEYID, TEST) or (KEYID, rule) packed in a u64, and per-branch or per-key values
    # gathered by position (KEYIDs and BRs number rows from 0); on two or three columns
    # (and SOURCE as text) DF12's match over the keys of 1e7 events took 5.2 s CPU, now 2.8 s
    n_br = len(branch_rows)
    rule_of: dict[tuple[int, int], int] = {}  # (EP, RULE) -> rule number, in (EP, RULE) order
    br_rule = [rule_of.setdefault((e, r), len(rule_of)) for _, e, r, *_ in branch_rows]
    source_id = {s: i for i, s in enumerate(sources)}
    anchor_rows, other_rows, source_rows, except_rows = [], [], [], []
    free_rows = []  # branches without tests: every key of their sources
    need = [0] * n_br  # per branch: its tests other than the anchor
    ex_need, ex_br = [], []  # per except conjunction: its tests, its branch
    for br, _, _, srcs, tests, excepts in branch_rows:
        source_rows.extend(br << 32 | source_id[s] for s in srcs)
        if tests:
            anchor = min(tests, key=lambda t: (test_hits.get(t, 0), t))
            anchor_rows.append((anchor, br))
            others = [t for t in tests if t != anchor]
            other_rows.extend((br, t) for t in others)
            need[br] = len(others)
        else:
            free_rows.append(br)
        for conj in excepts:
            except_rows.extend((br, len(ex_need), t) for t in conj)
            ex_need.append(len(conj))
            ex_br.append(br)

    u32, u64 = pl.UInt32, pl.UInt64
    key_pair = pack("KEYID", pl.col("TEST")).alias("_KT")
    held_pairs = pairs.select(key_pair)
    key_sid = kdf["SOURCE"].replace_strict(sources, list(range(len(sources))), return_dtype=u32)
    anchors = pl.DataFrame(anchor_rows, schema={"TEST": u32, "BR": u32}, orient="row")
    cand = pairs.lazy().join(anchors.lazy(), on="TEST").select("KEYID", "BR")
    if free_rows:
        free = pl.LazyFrame([(br, source_id[s]) for br in free_rows for s in branch_rows[br][3]],
                            schema={"BR": u32, "_SID": u32}, orient="row")
        cand = pl.concat([cand, kdf.lazy().select("KEYID", key_sid.alias("_SID")).join(free, on="_SID")
                          .select("KEYID", "BR")])
    # the branch's SOURCE allows the key's
    sid = pl.lit(key_sid).gather(pl.col("KEYID"))
    cand = (cand.filter(pack("BR", sid).is_in(pl.Series(source_rows, dtype=u64).implode()))
            .select(pack("KEYID", pl.col("BR")).alias("_KB"), "KEYID", "BR").collect(engine=ENGINE))
    if other_rows:
        others = pl.DataFrame(other_rows, schema={"BR": u32, "TEST": u32}, orient="row")
        held = (cand.lazy().join(others.lazy(), on="BR").with_columns(key_pair)
                .join(held_pairs.lazy(), on="_KT", how="semi")
                .group_by("_KB").agg(pl.len().cast(u32).alias("_HELD")))
        cand = (cand.lazy().join(held, on="_KB", how="left")
                .filter(pl.col("_HELD").fill_null(0) == pl.lit(pl.Series(need, dtype=u32)).gather(pl.col("BR")))
                .drop("_HELD").collect(engine=ENGINE))
    if except_rows:
        ex = pl.DataFrame(except_rows, schema={"BR": u32, "EX": u32, "TEST": u32}, orient="row")
        excepted = (cand.lazy().join(ex.lazy(), on="BR").with_columns(key_pair)
                    .join(held_pairs.lazy(), on="_KT", how="semi")
                    .group_by(pack("KEYID", pl.col("EX")).alias("_KE")).agg(pl.len().cast(u32).alias("_HELD"))
                    .select(*unpack("_KE", "KEYID", "EX"), "_HELD")
                    .filter(pl.col("_HELD") == pl.lit(pl.Series(ex_need, dtype=u32)).gather(pl.col("EX")))
                    .select(pack("KEYID", pl.lit(pl.Series(ex_br, dtype=u32)).gather(pl.col("EX"))).alias("_KB")))
        cand = cand.join(excepted.collect(engine=ENGINE), on="_KB", how="anti")

    rule_ep = pl.Series([e for e, _ in rule_of], dtype=u32)
    rule_no = pl.Series([r for _, r in rule_of], dtype=u32)
    # rule numbers follow (EP, RULE): sorting the packed (KEYID, rule) sorts by KEYID, EP, RULE
    rules = (
        cand.lazy()
        .select(pack("KEYID", pl.lit(pl.Series(br_rule, dtype=u32)).gather(pl.col("BR"))).alias("_KR"))
        .unique().sort("_KR")
        .select(*unpack("_KR", "KEYID", "_R"))
        .select("KEYID", pl.lit(rule_ep).gather(pl.col("_R")).alias("EP"),
                pl.lit(rule_no).gather(pl.col("_R")).alias("RULE"))
        .collect(engine=ENGINE)
    )
    matched = kdf.join(rules.select("KEYID").unique(), on="KEYID", how="semi")
    read_keys = None
    if written is not None:
        written = written.with_columns(key_hash(read))
        if written["_HASH"].n_unique() == written.height:
            read_keys = (written.join(matched.select(*columns, "KEYID"), on=columns, nulls_equal=True)
                         .select("KEYID", "_HASH"))
    return KeyMapping(columns=columns, keys=matched, rules=rules,
                      row_filters=_row_filters(counted, matched, columns, as_read=read_keys is not None),
                      hash_unique=hash_unique, read_keys=read_keys)


def _distinct(keys: pl.LazyFrame, columns: tuple[str, ...], parts: Sequence[pl.Expr] | None
              ) -> pl.DataFrame:
    """The distinct rows of `columns` with their row counts (_ROWS), part by part, each
    part's folded into the running counts as it comes. One streaming group-by over all
    rows holds memory that grows with the rows, not the keys (3e5 keys: 2.1 GB at 2.5e8
    events, 3.2 GB at 1e9); in parts of ten 5e6-event buckets, 1.25 and 1.40 GB, in the
    same time (20.0 s against 19.5, 70.1 s against 69.7)."""
    seen = None
    counted = "_ROWS" in keys.collect_schema().names()
    rows = pl.col("_ROWS").sum() if counted else pl.len()
    for part in parts or (pl.lit(True),):  # Polars drops a filter on a literal true
        got = (keys.filter(part).select(*columns, *(["_ROWS"] if counted else [])).group_by(columns)
               .agg(rows.cast(pl.UInt64).alias("_ROWS")).collect(engine=ENGINE))
        seen = got if seen is None else pl.concat([seen, got]).group_by(columns).agg(pl.col("_ROWS").sum())
    return seen


def _row_filters(counted: pl.DataFrame, matched: pl.DataFrame, columns: tuple[str, ...],
                 *, as_read: bool, worth: float = 0.7) -> tuple[pl.Expr, ...]:
    """`column.is_in(values of matched keys)` for the columns where it keeps < `worth` of
    the rows (known exactly from the per-key row counts); on the columns as read if
    `as_read` (a value other than a missing one is written as it is)."""
    total = int(counted["_ROWS"].sum() or 0)
    out = []
    for column in columns:
        values = matched.select(column).unique()
        kept = int(counted.join(values, on=column, nulls_equal=True)["_ROWS"].sum() or 0)
        if kept >= worth * total:
            continue
        col = pl.col(_as_read(column) if as_read else column)
        test = col.is_in(values[column].drop_nulls().to_list())
        if values[column].null_count():
            test = test | (is_missing_text(col) if as_read else col.is_null())
        out.append(test)
    return tuple(out)
