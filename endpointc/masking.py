"""The one rule for small counts in aggregate outputs (FinnGen's green-data rule).

Primary suppression: a count from 1 to ``threshold - 1`` is shown as ``"<threshold"``
(``<5`` with the default `MASK_THRESHOLD`); 0 and larger counts are shown as they are, and
``threshold=None`` turns masking off.

Secondary (complementary) suppression: a reader who sees the other numbers of an output,
knows how they relate (cases + controls + excluded is the population; the parts of a total
add up to it; new - old is the change) and knows the population size could otherwise work a
masked count out by subtraction. Each output therefore declares those relations
(`Relation`) and masks through `suppress` (numbers with arbitrary keys), `mask_table` (the
count columns of a table) or `mask_counts` (counts tables), which masks more cells, shown as
``masked`` (`SECONDARY_MARK`), until no masked cell has a single value consistent with
what is shown. A ``masked`` cell may hold any number, so it does not pretend to be small.

The rule, written once here: mask the primary cells; then, while some masked cell is
pinned down (one value only is consistent with the shown cells, the relations, the known
totals and the ranges a reader knows: 1 to threshold - 1 for ``<5``, 0 to the population
for ``masked``), mask one more cell of the relations around it, in this order: non-zero
cells before zero ones, equations before inequalities, the relation with the fewest masked
cells first, its smallest unmasked cell (part or total) first; the first cell in that
order that frees the pinned one by itself, else the first. Whether a cell is pinned is
decided by looking for a second solution (bounds propagation and a bounded search near the
true values): a found solution proves the cell is safe; a cell without one counts as
pinned, so the rule errs towards masking more. A cell pinned even when everything around it is
masked (e.g. a population under the threshold) cannot be protected; `Suppression.unprotected`
lists such cells.

>>> mask_count(3), mask_count(0), mask_count(12), mask_count(3, None)
('<5', '0', '12', '3')
>>> shown = suppress({"cases": 3, "controls": 90, "excluded": 7},
...                  [Relation.adds_up(["cases", "controls", "excluded"], known=100)])
>>> [shown.text(k) for k in ("cases", "controls", "excluded")]
['<5', '90', 'masked']
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

# Polars is imported only where a table is masked: the CLI reads MASK_THRESHOLD for its
# help texts before it has set the thread count polars starts with.
if TYPE_CHECKING:
    import polars as pl

    Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

__all__ = [
    "MASK_THRESHOLD", "PRIMARY", "SECONDARY", "SECONDARY_MARK", "Relation", "Suppression",
    "check_threshold", "is_masked", "mask_count", "mask_counts", "mask_table", "suppress",
]

MASK_THRESHOLD = 5
PRIMARY, SECONDARY = "primary", "secondary"
SECONDARY_MARK = "masked"

K = TypeVar("K", bound=Hashable)

# Work allowed to look for a second solution per masked cell; past it the cell counts as
# pinned (more masking, never less).
_SEARCH_NODES = 2_000
_PROPAGATION_STEPS = 5_000


def check_threshold(threshold: int | None) -> None:
    """Raise ValueError unless `threshold` is None or a whole number >= 1.

    >>> check_threshold(0)
    Traceback (most recent call last):
    ...
    ValueError: mask threshold must be a whole number >= 1, got 0
    """
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int)
                                  or threshold < 1):
        raise ValueError(f"mask threshold must be a whole number >= 1, got {threshold!r}")


def is_masked(n: int, threshold: int | None = MASK_THRESHOLD) -> bool:
    """Whether the primary rule hides `n`: 1 <= n < threshold."""
    return threshold is not None and 1 <= n < threshold


def mask_count(n: int, threshold: int | None = MASK_THRESHOLD) -> str:
    """`n` as shown by the primary rule alone: ``"<threshold"`` when small, else the number.
    Only for a number that no other shown number relates to (e.g. the population)."""
    return f"<{threshold}" if is_masked(n, threshold) else str(n)


@dataclass(frozen=True)
class Relation:
    """What a reader knows links some cells: ``sum(parts) == sum(totals) + known``, or with
    `at_most` ``sum(parts) <= sum(totals) + known``. A key may appear more than once."""

    parts: tuple[Hashable, ...]
    totals: tuple[Hashable, ...] = ()
    known: int = 0
    at_most: bool = False

    @classmethod
    def adds_up(cls, parts: Iterable[Hashable], total: Hashable | None = None, *, known: int = 0) -> "Relation":
        """`parts` add up to the cell `total` (if any) plus `known`."""
        return cls(tuple(parts), () if total is None else (total,), known)

    @classmethod
    def equal(cls, a: Hashable, b: Hashable) -> "Relation":
        return cls((a,), (b,))

    @classmethod
    def no_more_than(cls, parts: Iterable[Hashable], total: Hashable | None = None, *,
                     known: int = 0) -> "Relation":
        """`parts` add up to at most the cell `total` (if any) plus `known`."""
        return cls(tuple(parts), () if total is None else (total,), known, at_most=True)

    def keys(self) -> tuple[Hashable, ...]:
        return (*self.parts, *self.totals)

    def renamed(self, rename: Callable[[Hashable], Hashable]) -> "Relation":
        return Relation(tuple(map(rename, self.parts)), tuple(map(rename, self.totals)), self.known,
                        self.at_most)


@dataclass(frozen=True)
class Suppression(Generic[K]):
    """The cells of one output and which of them are masked (`PRIMARY` or `SECONDARY`)."""

    values: Mapping[K, int]
    marks: Mapping[K, str]
    threshold: int | None
    unprotected: frozenset = field(default_factory=frozenset)

    def masked(self, key: K) -> bool:
        return key in self.marks

    def text(self, key: K, *, signed: bool = False) -> str:
        """The cell as shown: the number, ``<5`` or ``masked``; `signed` writes a sign in
        front of a number or a ``<5`` (a change) but never of ``masked``."""
        n, mark = self.values[key], self.marks.get(key)
        if mark == SECONDARY:
            return SECONDARY_MARK
        sign = ("+" if n > 0 else "-" if n < 0 else "") if signed else ""
        return sign + (f"<{self.threshold}" if mark == PRIMARY else str(abs(n) if signed else n))


def suppress(cells: Mapping[K, int], relations: Iterable[Relation] = (), *,
             threshold: int | None = MASK_THRESHOLD, upper: int | None = None,
             signed: Collection[K] = (), known: Collection[K] = ()) -> Suppression[K]:
    """Primary and secondary suppression of `cells` under `relations` (see the module doc).

    `upper` is the largest value a reader allows a cell (the population; by default the
    sum of all cells). Cells in `signed` may be negative (a change: ``-4`` is small too);
    cells in `known` are numbers the reader knows anyway: never masked beyond the primary
    rule and taken as given. Every relation must hold for the values (ValueError).
    """
    check_threshold(threshold)
    values = dict(cells)
    linear = [_linear(r, values) for r in relations]
    if threshold is None:
        return Suppression(values, {}, None)
    magnitudes = [abs(v) for v in values.values()]
    top = max(threshold, *magnitudes, upper if upper is not None else sum(magnitudes))
    signed, fixed = frozenset(signed), frozenset(known)
    marks: dict = {}
    for key, n in values.items():
        if is_masked(abs(n), threshold):
            marks[key] = PRIMARY
    solver = _Solver(values, linear, marks, fixed, signed, threshold, top)
    unprotected: set = set()
    work = collections.deque(k for k in values if k in marks and k not in fixed)
    while work:
        key = work.popleft()
        if len(set(solver.domain(key))) == 1:   # "<2" is 1 whatever else is masked
            unprotected.add(key)
            continue
        while not solver.has_second_value(key):
            extra = solver.next_to_mask(key)
            if extra is None:
                unprotected.add(key)
                break
            marks[extra] = SECONDARY
            work.append(extra)
    return Suppression(values, marks, threshold, frozenset(unprotected))


def _linear(relation: Relation, values: Mapping) -> tuple[dict, int, bool]:
    """(coefficients, right-hand side, is an equation): sum(coef * cell) (== or <=) rhs."""
    coefs: dict = {}
    for key in relation.parts:
        coefs[key] = coefs.get(key, 0) + 1
    for key in relation.totals:
        coefs[key] = coefs.get(key, 0) - 1
    missing = [k for k in coefs if k not in values]
    if missing:
        raise ValueError(f"relation over unknown cells {missing!r}")
    coefs = {k: a for k, a in coefs.items() if a}
    lhs = sum(a * values[k] for k, a in coefs.items())
    if (lhs > relation.known) if relation.at_most else (lhs != relation.known):
        raise ValueError(f"relation {relation!r} does not hold for the values")
    return coefs, relation.known, not relation.at_most


class _Solver:
    """Whether a masked cell can take a second value, and which cell to mask next."""

    def __init__(self, values, linear, marks, fixed, signed, threshold, top):
        self.values, self.linear, self.marks = values, linear, marks
        self.fixed, self.signed, self.threshold, self.top = fixed, signed, threshold, top
        self.order = {k: i for i, k in enumerate(values)}
        self.by_key: dict = collections.defaultdict(list)
        for index, (coefs, _, _) in enumerate(linear):
            for key in coefs:
                self.by_key[key].append(index)

    def unknown(self, key) -> bool:
        return key in self.marks and key not in self.fixed

    def domain(self, key) -> tuple[int, int]:
        n = self.values[key]
        if self.marks.get(key) == PRIMARY:
            return (1, self.threshold - 1) if n > 0 else (1 - self.threshold, -1)
        return (-self.top if key in self.signed else 0, self.top)

    def component(self, key) -> tuple[list, list[int]]:
        """The unknown cells linked to `key` through relations, and those relations."""
        seen, relations, queue = {key}, set(), [key]
        while queue:
            for index in self.by_key[queue.pop()]:
                if index in relations:
                    continue
                relations.add(index)
                for other in self.linear[index][0]:
                    if other not in seen and self.unknown(other):
                        seen.add(other)
                        queue.append(other)
        return sorted(seen, key=self.order.__getitem__), sorted(relations)

    def has_second_value(self, key) -> bool:
        cells, indices = self.component(key)
        lo, hi = self.domain(key)
        if lo == hi:
            return False
        constraints = []
        for index in indices:
            coefs, rhs, equation = self.linear[index]
            terms = []
            for k, a in coefs.items():
                if self.unknown(k):
                    terms.append((k, a))
                else:
                    rhs -= a * self.values[k]
            constraints.append((tuple(terms), rhs, equation))
        v = self.values[key]
        for side in ((lo, v - 1), (v + 1, hi)):
            if side[0] > side[1]:
                continue
            domains = {k: self.domain(k) for k in cells}
            domains[key] = side
            if _Search(constraints, self.values).solve(domains):
                return True
        return False

    def next_to_mask(self, key):
        """The cell to mask so that `key` is no longer pinned: among the unmasked cells of
        the relations around it, the first that does it alone, in the order of the rule
        (zero cells last; equations before inequalities, the relation with the fewest
        masked cells, the smallest cell); the first of them if none does alone."""
        _, indices = self.component(key)
        ranked = []
        for index in indices:
            coefs, _, equation = self.linear[index]
            unknowns = sum(self.unknown(k) for k in coefs)
            for k in coefs:
                if k not in self.marks and k not in self.fixed:
                    ranked.append(((self.values[k] == 0, not equation, unknowns, abs(self.values[k]),
                                    self.order[k]), k))
        candidates = list(dict.fromkeys(k for _, k in sorted(ranked, key=lambda r: r[0])))
        for candidate in candidates:
            self.marks[candidate] = SECONDARY
            helps = self.has_second_value(key)
            del self.marks[candidate]
            if helps:
                return candidate
        return candidates[0] if candidates else None


class _Search:
    """A solution of integer constraints within bounds, by propagation and a search that
    tries the true values first; gives up (no solution) past `_SEARCH_NODES` nodes."""

    def __init__(self, constraints, values):
        self.constraints, self.values = constraints, values
        self.watch: dict = collections.defaultdict(list)
        for index, (terms, _, _) in enumerate(constraints):
            for k, _ in terms:
                self.watch[k].append(index)
        self.nodes = 0

    def solve(self, domains: dict) -> bool:
        if not self.propagate(domains):
            return False
        free = [k for k, (lo, hi) in domains.items() if lo < hi]
        if not free:
            return all(self.holds(c, domains) for c in self.constraints)
        key = min(free, key=lambda k: domains[k][1] - domains[k][0])
        lo, hi = domains[key]
        for value in _nearest(self.values[key], lo, hi):
            self.nodes += 1
            if self.nodes > _SEARCH_NODES:
                return False
            trial = dict(domains)
            trial[key] = (value, value)
            if self.solve(trial):
                return True
        return False

    @staticmethod
    def holds(constraint, domains) -> bool:
        terms, rhs, equation = constraint
        lhs = sum(a * domains[k][0] for k, a in terms)
        return lhs == rhs if equation else lhs <= rhs

    def propagate(self, domains: dict) -> bool:
        """Tighten bounds in place; False when no solution is left. Stopping early is
        safe: bounds are only ever narrowed to values no solution can take."""
        queue = collections.deque(range(len(self.constraints)))
        queued = set(queue)
        steps = 0
        while queue and steps < _PROPAGATION_STEPS:
            steps += 1
            index = queue.popleft()
            queued.discard(index)
            terms, rhs, equation = self.constraints[index]
            lows = [a * domains[k][0] if a > 0 else a * domains[k][1] for k, a in terms]
            highs = [a * domains[k][1] if a > 0 else a * domains[k][0] for k, a in terms]
            low, high = sum(lows), sum(highs)
            if low > rhs or (equation and high < rhs):
                return False
            for (k, a), term_low, term_high in zip(terms, lows, highs):
                most = rhs - (low - term_low)                      # a * x <= most
                least = rhs - (high - term_high) if equation else None  # a * x >= least
                lo, hi = domains[k]
                if a > 0:
                    hi = min(hi, most // a)
                    if least is not None:
                        lo = max(lo, -(-least // a))
                else:
                    lo = max(lo, -(-most // a))
                    if least is not None:
                        hi = min(hi, least // a)
                if lo > hi:
                    return False
                if (lo, hi) != domains[k]:
                    domains[k] = (lo, hi)
                    for other in self.watch[k]:
                        if other not in queued:
                            queued.add(other)
                            queue.append(other)
        return True


def _nearest(target: int, lo: int, hi: int) -> Iterator[int]:
    """lo..hi, nearest to `target` first."""
    target = min(max(target, lo), hi)
    yield target
    step = 1
    while target - step >= lo or target + step <= hi:
        if target + step <= hi:
            yield target + step
        if target - step >= lo:
            yield target - step
        step += 1


def mask_table(df: "pl.DataFrame", columns: Sequence[str], relations: Iterable[Relation] = (), *,
               threshold: int | None = MASK_THRESHOLD, upper: int | None = None,
               known: Collection[tuple[int, str]] = ()) -> "pl.DataFrame":
    """The `columns` of `df` as text through `suppress`; a cell's key is (row index, column).
    Nulls stay null and are no cells. ``threshold=None`` returns `df` unchanged."""
    import polars as pl

    check_threshold(threshold)
    if threshold is None:
        return df
    cells = {(i, c): n for c in columns for i, n in enumerate(df[c].to_list()) if n is not None}
    shown = suppress(cells, relations, threshold=threshold, upper=upper, known=known)
    return df.with_columns(
        pl.Series(c, [None if (i, c) not in cells else shown.text((i, c)) for i in range(df.height)],
                  dtype=pl.String)
        for c in columns)


def mask_counts(df: Frame, *, threshold: int | None = MASK_THRESHOLD,
                columns: Sequence[str] | None = None, population: int | None = None) -> Frame:
    """The counts of `columns` masked, as text; nulls stay null.

    ``columns`` defaults to those of N_CASES, N_CONTROLS, N_EXCLUDED present in ``df``.
    When all three are masked, each row's cases + controls + excluded is the population
    (`population`, else what every row adds up to: they must agree) and the rows are masked
    with that relation. ``threshold=None`` returns ``df`` unchanged. Works on DataFrames and
    LazyFrames.

    >>> import polars as pl
    >>> mask_counts(pl.DataFrame({"N_CASES": [0, 3, 5]})).rows()
    [('0',), ('<5',), ('5',)]
    >>> mask_counts(pl.DataFrame({"N_CASES": [3], "N_CONTROLS": [90], "N_EXCLUDED": [7]})).rows()
    [('<5', '90', 'masked')]
    """
    import polars as pl

    from .engine.schema import COUNT_COLUMNS

    check_threshold(threshold)
    if threshold is None:
        return df
    names = df.collect_schema().names()
    targets = [c for c in (columns if columns is not None else COUNT_COLUMNS) if c in names]
    if columns is not None and len(targets) != len(columns):
        raise ValueError(f"mask_counts: no column {', '.join(c for c in columns if c not in names)}")
    frame = df.collect() if isinstance(df, pl.LazyFrame) else df
    if not set(COUNT_COLUMNS) <= set(targets):
        masked = mask_table(frame, targets, (), threshold=threshold, upper=population)
        return masked.lazy() if isinstance(df, pl.LazyFrame) else masked
    rows = frame.select(COUNT_COLUMNS).rows()
    totals = {sum(r) for r in rows if None not in r}
    if population is None and len(totals) > 1:
        raise ValueError("mask_counts: the rows add up to different populations")
    population = population if population is not None else next(iter(totals), 0)
    # Rows share no cell, so each is its own problem and equal rows get equal answers:
    # solving each distinct row once keeps a library of thousands of endpoints cheap.
    distinct = frame.select(targets).unique(maintain_order=True)
    relations = [Relation.adds_up([(i, c) for c in COUNT_COLUMNS], known=population)
                 for i, r in enumerate(distinct.select(COUNT_COLUMNS).rows()) if None not in r]
    shown = mask_table(distinct, targets, relations, threshold=threshold, upper=population)
    masked = (frame.with_row_index("_ORDER")
              .join(distinct.with_columns(shown.select(pl.col(c).alias(f"_SHOWN_{c}") for c in targets)),
                    on=targets, how="left", nulls_equal=True)
              .sort("_ORDER")
              .select(*(pl.col(f"_SHOWN_{c}").alias(c) if c in targets else pl.col(c) for c in names)))
    return masked.lazy() if isinstance(df, pl.LazyFrame) else masked
