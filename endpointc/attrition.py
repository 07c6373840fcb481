"""Where did the cases go? People remaining after each step of one endpoint (aggregate only).

Every number is a count of people, computed by the Polars engine on variants of the
endpoint's plan: `attrition` rewrites the `EndpointPlan` (one step kept or removed at a
time, with `model_copy(update=...)`), puts every variant into one `Program` under derived
names (`A__r1_pattern`, `A__without_when`, ...), evaluates them in a single call and
compares the case sets person by person inside Polars. Only counts leave this module.

Steps, for cases (SIDE "cases"), in the order of the evaluation steps (docs/language.md) with sex first (a
person-level filter, so its place does not change any count):

- ``population``; ``sex <female|male>`` (people of the allowed sex);
- per rule (one registry source each), among people of the allowed sex: people with at
  least one event selected by the rule's patterns alone; after its ``except``/``main``/
  ``with atc``/``mode``; after each time relation of ``when`` in turn (a conjunct, or all
  of ``when``, relating the event's date to another endpoint's first date: ``after within
  1 year after I9_MI``, ``after date - I9_MI.date <= 30 days``); after ``when`` (unless it
  is all relations); after ``min``/``needs other``; after the spacing or clustering of a
  ``min`` (``after min 2 apart 30 days``);
- ``all rules``: people with an own event left (the union of the rules; only with rules);
- where ``when`` has time relations, the included endpoints' case events as they pass
  the same ``when`` steps (``include I9_HEARTFAIL: after within 1 year after I9_MI``);
- ``include``: people with an event once included endpoints' case events are added;
- ``require``; ``cases`` (the engine's N_CASES).

For controls (SIDE "controls"): ``controls before control rules`` (population minus
cases), then after sex and each ``controls exclude`` endpoint and ``controls require``
(cumulative), and ``controls`` (the engine's N_CONTROLS).

N_ADDED_BACK is, for a filtering step, the number of people who would be added (cases, or
controls) if that one step alone were removed; it is empty for steps that do not filter.
`when` is one filter of the whole endpoint, so each rule's `when` row shows the same
number: the cases gained by removing `when` from the endpoint (for a relation's row, that
relation alone from the conjunction). Removing a `min` removes its spacing with it;
removing the spacing alone leaves the plain `min N`.

Counts from 1 to 4 are masked as ``<5`` by default (`mask_threshold=None` turns it off),
and with them the counts that would give one away (``masked``, see `masking`), given
what the steps imply: cases + controls before control rules = population; among people of
the allowed sex, cases + controls after sex = the people of that sex; each control step
loses at least its N_ADDED_BACK people and the last one exactly those; `require` removes
its N_ADDED_BACK from the count before it; the `when` rows share one N_ADDED_BACK, and so
do those of one relation; steps of one rule, the included events' steps, and everything
after sex, only go down; a step equal to the cases by construction (the last step of a
lone rule, `all rules` or `include` without `require`, `controls` and its step before) is
the same number.

>>> table = attrition(program, events, people, endpoint="E4_DM2")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .describe import duration_text
from .engine.polars import evaluate
from .explain import format_cond
from .plan import (AllOf, Branch, Cmp, Cond, EndpointFact, EndpointPlan, FirstDate, Program, RulePlan, walk,
                   Relation as TimeRelation)
from .masking import MASK_THRESHOLD, Relation, mask_table
from .results import write_text_atomic

__all__ = ["attrition", "attrition_counts", "attrition_steps", "AttritionSteps", "write_attrition",
           "ATTRITION_SCHEMA", "COUNT_COLUMNS"]

ATTRITION_SCHEMA = {
    "ENDPOINT": pl.String, "SIDE": pl.String, "RULE": pl.Int64, "STEP": pl.String,
    "N_PEOPLE": pl.Int64, "N_ADDED_BACK": pl.Int64,
}
COUNT_COLUMNS = ("N_PEOPLE", "N_ADDED_BACK")


@dataclass(frozen=True)
class _Row:
    side: str
    rule: int | None
    step: str
    # An aggregate over the person flags, a number known up front, or `_CONTROLS`.
    people: pl.Expr | int | str
    added_back: pl.Expr | None = None


def attrition(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *, endpoint: str,
              mask_threshold: int | None = MASK_THRESHOLD) -> pl.DataFrame:
    """People remaining after each step of `endpoint`, for cases and controls (see module doc).

    Columns ENDPOINT, SIDE, RULE (1-based, empty for endpoint-level steps), STEP,
    N_PEOPLE, N_ADDED_BACK. With masking on (the default) the count columns are text.
    """
    table, relations = attrition_counts(program, events, people, endpoint=endpoint)
    return mask_table(table, COUNT_COLUMNS, relations, threshold=mask_threshold,
                      upper=table["N_PEOPLE"][0], known=[POPULATION])


# The population row's count: the reader knows it, so it is never masked beyond the rule.
POPULATION = (0, "N_PEOPLE")


def attrition_counts(program: Program, events: pl.LazyFrame, people: pl.LazyFrame, *, endpoint: str
                     ) -> tuple[pl.DataFrame, list[Relation]]:
    """The attrition table unmasked, and the relations among its counts a reader can rely on
    (cells keyed by (row index, column); row 0 is the population)."""
    steps = attrition_steps(program, people, endpoints=[endpoint])
    results = evaluate(Program(endpoints=program.subset([endpoint]).endpoints + steps.variants), events, people,
                       endpoints=[endpoint, *(v.name for v in steps.variants)])
    return steps.count(results.long, results.counts)[endpoint]


@dataclass(frozen=True)
class AttritionSteps:
    """The attrition steps of some endpoints before counting: the plan variants whose cases
    the counts compare (named apart from every endpoint and from each other), and per
    endpoint the steps' rows and relations. `count` reads one evaluation of the endpoints
    together with `variants`, so that a whole library costs one pass over the events."""

    variants: tuple[EndpointPlan, ...]
    steps: Mapping[str, tuple[tuple[str, ...], tuple[_Row, ...], tuple[Relation, ...]]]

    def count(self, long: pl.LazyFrame | pl.DataFrame, counts: pl.LazyFrame | pl.DataFrame
              ) -> dict[str, tuple[pl.DataFrame, list[Relation]]]:
        """Per endpoint, what `attrition_counts` returns, from the long table and the counts
        of an evaluation of the endpoints and `variants`."""
        wanted = {name for names, _, _ in self.steps.values() for name in names}
        long_rows = long.lazy().filter(pl.col("ENDPOINT").is_in(wanted)).select("FINNGENID", "ENDPOINT", "STATUS")
        parts = long_rows.collect().partition_by("ENDPOINT", as_dict=True)
        empty = pl.DataFrame(schema={"FINNGENID": pl.String, "ENDPOINT": pl.String, "STATUS": pl.String})
        controls = dict(counts.lazy().filter(pl.col("ENDPOINT").is_in(list(self.steps)))
                        .select("ENDPOINT", "N_CONTROLS").collect().iter_rows())
        found = {}
        for endpoint, (names, rows, relations) in self.steps.items():
            frame = pl.concat([parts.get((name,), empty) for name in names])
            values = _count(frame, controls[endpoint], names, rows)
            table = pl.DataFrame(
                [(endpoint, r.side, r.rule, r.step, values[i][0], values[i][1]) for i, r in enumerate(rows)],
                schema=ATTRITION_SCHEMA, orient="row")
            found[endpoint] = (table, list(relations))
        return found


def attrition_steps(program: Program, people: pl.LazyFrame, *, endpoints: Sequence[str]) -> AttritionSteps:
    """The attrition steps of `endpoints` (see `AttritionSteps`)."""
    unknown = [e for e in endpoints if e not in program.names]
    if unknown:
        raise KeyError(f"unknown endpoint {', '.join(unknown)}")
    sizes = dict(people.lazy().group_by("SEX").agg(pl.len()).collect().iter_rows())
    taken = set(program.names)
    variants: list[EndpointPlan] = []
    steps = {}
    for endpoint in dict.fromkeys(endpoints):
        names, rows, relations = _steps(program.get(endpoint), sizes, taken, variants)
        steps[endpoint] = (names, tuple(rows), tuple(relations))
    return AttritionSteps(variants=tuple(variants), steps=steps)


def _steps(ep: EndpointPlan, sizes: dict[str | None, int], taken: set[str], found: list[EndpointPlan]
           ) -> tuple[tuple[str, ...], list[_Row], list[Relation]]:
    """The names whose cases the steps of `ep` read (`ep`, then its variants, added to
    `found`), the rows and their relations. `sizes`: people by SEX; `taken`: names in use."""
    variants: dict[str, EndpointPlan] = {}

    def variant(suffix: str, plan: EndpointPlan) -> str:
        name = f"{ep.name}__{suffix}"
        while name in taken:  # a real endpoint could carry the same name
            name += "_"
        taken.add(name)
        # the endpoint's own facts in `require` are those of the variant's own events
        require = _renamed(plan.require, ep.name, name)
        variants[name] = plan.model_copy(update={"name": name, "require": require})
        return name

    bare = ep.model_copy(update={"includes": (), "require": None, "control_exclude": (),
                                 "control_require": None})
    rows: list[_Row] = []
    relations: list[Relation] = []

    def add(row: _Row) -> int:
        rows.append(row)
        return len(rows) - 1

    def n(index: int) -> tuple[int, str]:
        return (index, "N_PEOPLE")

    def added(index: int) -> tuple[int, str]:
        return (index, "N_ADDED_BACK")

    population = sum(sizes.values())
    add(_Row("cases", None, "population", population))
    case = _case_count
    full = ep.name
    sex_row = None
    if ep.sex is not None:
        allowed = sizes.get(ep.sex, 0)
        without = variant("without_sex", ep.model_copy(update={"sex": None}))
        sex_row = add(_Row("cases", None, f"sex {ep.sex}", allowed, _gained(without, full)))
        # people of the other sex: those of the allowed sex, plus those only sex keeps out
        relations.append(Relation.no_more_than([n(sex_row), added(sex_row)], POPULATION))

    # Per rule: the rule alone, as it grows from its patterns to its full meaning. Each
    # rule's events after its own `min` are needed first: `needs other` reads the others'.
    without_when = variant("without_when", ep.model_copy(update={"when": None})) if ep.when is not None else None
    with_when = {r.index: variant(f"r{r.index + 1}_when", bare.model_copy(update={"rules": (_loose(r),)}))
                 for r in ep.rules}

    def rule_alone(rule: RulePlan, suffix: str, **update) -> str:
        """The rule alone up to its `min` (not `needs other`, which reads the others)."""
        alone = rule.model_copy(update={"needs_other": False, **update})
        return variant(f"r{rule.index + 1}_{suffix}", bare.model_copy(update={"rules": (alone,)}))

    after_min = {r.index: rule_alone(r, "min") if r.min_events > 1 or r.spacing is not None else with_when[r.index]
                 for r in ep.rules}
    # The time relations of `when` (its conjuncts, or `when` itself, that relate an event's
    # date to another endpoint's first date) are steps of their own, one after the other
    # before the rest of `when`; a `when` of relations only has no further step.
    conjuncts = list(ep.when.args) if isinstance(ep.when, AllOf) else [ep.when] if ep.when is not None else []
    relations_of_when = [c for c in conjuncts if _is_time_relation(c)]
    without_relation = [variant(f"without_relation_{k}", ep.model_copy(update={"when": _conjunction(
        [c for c in conjuncts if c is not relation])})) for k, relation in enumerate(relations_of_when, start=1)]
    relation_rows: list[list[int]] = [[] for _ in relations_of_when]
    when_rows: list[int] = []

    def when_steps(label: str, number: int | None, selection: EndpointPlan, suffix: str, whole: str) -> list[int]:
        """Rows of `when` filtering what `selection` selects: each relation in turn, then
        all of `when` (the variant `whole`)."""
        steps = []
        for k, lifted in enumerate(without_relation):
            so_far = variant(f"{suffix}_relation_{k + 1}",
                             selection.model_copy(update={"when": _conjunction(relations_of_when[: k + 1])}))
            steps.append(add(_Row("cases", number, f"{label}: after {format_cond(relations_of_when[k])}",
                                  case(so_far), _gained(lifted, full))))
            relation_rows[k].append(steps[-1])
        if ep.when is not None and len(relations_of_when) < len(conjuncts):
            steps.append(add(_Row("cases", number, f"{label}: after when", case(whole), _gained(without_when, full))))
            when_rows.append(steps[-1])
        return steps

    rule_ends: list[int] = []
    for rule in ep.rules:
        number = rule.index + 1
        label = f"rule {number} ({rule.source})"
        alone = _loose(rule)
        pattern = variant(f"r{number}_pattern", bare.model_copy(update={"rules": (_stripped(alone),), "when": None}))
        steps = [add(_Row("cases", number, f"{label}: events by pattern", case(pattern)))]
        options = _option_names(rule)
        if options:
            written = variant(f"r{number}_written", bare.model_copy(update={"rules": (alone,), "when": None}))
            lifted = variant(f"r{number}_without_except", _replace_rule(ep, _stripped(rule)))
            steps.append(add(_Row("cases", number, f"{label}: after {', '.join(options)}", case(written),
                                  _gained(lifted, full))))
        steps += when_steps(label, number, bare.model_copy(update={"rules": (alone,)}), f"r{number}",
                            with_when[rule.index])

        def kept(name: str) -> pl.Expr:
            """People the rule keeps, its `min` judged by the variant `name`."""
            if not rule.needs_other:
                return _case_flag(name)
            others = [_case_flag(after_min[o.index]) for o in ep.rules if o.index != rule.index]
            return _case_flag(name) & pl.any_horizontal(others) if others else pl.lit(False)

        if rule.min_events > 1 or rule.needs_other:
            plain = after_min[rule.index] if rule.spacing is None else rule_alone(rule, "plain_min", spacing=None,
                                                                                    spacing_days=None)
            words = [f"min {rule.min_events}"] if rule.min_events > 1 else []
            words += ["needs other"] if rule.needs_other else []
            lifted = variant(f"r{number}_without_min", _replace_rule(ep, _loose(rule)))
            steps.append(add(_Row("cases", number, f"{label}: after {', '.join(words)}", kept(plain).sum(),
                                  _gained(lifted, full))))
        if rule.spacing is not None:
            lifted = variant(f"r{number}_without_spacing",
                             _replace_rule(ep, rule.model_copy(update={"spacing": None, "spacing_days": None})))
            words = f"min {rule.min_events} {rule.spacing} {duration_text(rule.spacing_days)}"
            steps.append(add(_Row("cases", number, f"{label}: after {words}", kept(after_min[rule.index]).sum(),
                                  _gained(lifted, full))))
        relations += [Relation.no_more_than([n(later)], n(earlier)) for earlier, later in zip(steps, steps[1:])]
        # the pattern row alone is the whole rule only if stripping its options changed nothing
        whole = len(steps) > 1 or _stripped(alone) == alone
        if len(ep.rules) == 1 and not rule.needs_other and whole:
            rule_ends.append(steps[-1])

    before_require = None
    if ep.rules:
        own = variant("rules", bare)
        before_require = add(_Row("cases", None, "all rules", case(own)))
        relations += [Relation.equal(n(end), n(before_require)) for end in rule_ends]
    if ep.includes:
        label = f"include {', '.join(ep.includes)}"
        steps = []
        if relations_of_when:
            # The included case events as `when` filters them, as for a rule.
            selection = bare.model_copy(update={"rules": (), "includes": ep.includes})
            steps.append(add(_Row("cases", None, f"{label}: case events",
                                  case(variant("included_events", selection.model_copy(update={"when": None}))))))
            steps += when_steps(label, None, selection, "included", variant("included_when", selection))
            relations += [Relation.no_more_than([n(later)], n(earlier)) for earlier, later in zip(steps, steps[1:])]
        included = variant("included", ep.model_copy(update={"require": None, "control_exclude": (),
                                                             "control_require": None}))
        index = add(_Row("cases", None, label, case(included)))
        relations += [Relation.no_more_than([n(prior)], n(index)) for prior in (before_require, *steps[-1:])
                      if prior is not None]
        before_require = index
    relations += [Relation.equal(added(shared[0]), added(other))
                  for shared in (when_rows, *relation_rows) for other in shared[1:]]
    cases_row = len(rows) + (1 if ep.require is not None else 0)
    if ep.require is not None:
        lifted = variant("without_require", ep.model_copy(update={"require": None}))
        index = add(_Row("cases", None, "require", case(full), _gained(lifted, full)))
        relations.append(Relation.equal(n(index), n(cases_row)))
        if before_require is not None:
            relations.append(Relation.adds_up([n(cases_row), added(index)], n(before_require)))
    elif before_require is not None:
        relations.append(Relation.equal(n(before_require), n(cases_row)))
    add(_Row("cases", None, "cases", case(full)))
    if sex_row is not None:
        relations += [Relation.no_more_than([n(i)], n(sex_row)) for i in range(sex_row + 1, len(rows))]

    # Controls: an endpoint without rules has no cases, so the people it excludes are
    # exactly those failing its one control rule.
    empty = ep.model_copy(update={"rules": (), "includes": (), "when": None, "require": None, "sex": None,
                                  "control_exclude": (), "control_require": None})
    checks: list[tuple[str, str]] = []
    if ep.sex is not None:
        checks.append((f"after sex {ep.sex}", variant("controls_sex", empty.model_copy(update={"sex": ep.sex}))))
    for i, other in enumerate(ep.control_exclude, start=1):
        checks.append((f"after exclude {other}",
                       variant(f"controls_exclude_{i}", empty.model_copy(update={"control_exclude": (other,)}))))
    if ep.control_require is not None:
        checks.append(("after controls require",
                       variant("controls_require", empty.model_copy(update={"control_require": ep.control_require}))))
    non_case = ~_case_flag(full)
    fails = [_excluded_flag(name) for _, name in checks]
    previous = add(_Row("controls", None, "controls before control rules", population - case(full)))
    relations.append(Relation.adds_up([n(cases_row), n(previous)], POPULATION))
    for k, (label, _) in enumerate(checks):
        failed_so_far = pl.any_horizontal(fails[: k + 1])
        others = [f for j, f in enumerate(fails) if j != k]
        only_this = fails[k] & ~pl.any_horizontal(others) if others else fails[k]
        index = add(_Row("controls", None, label, population - case(full) - (non_case & failed_so_far).sum(),
                         (non_case & only_this).sum()))
        # a step loses those only it keeps out, and maybe more that a later step also would;
        # the last step has no later one
        last = k == len(checks) - 1
        relations.append(Relation(parts=(n(index), added(index)), totals=(n(previous),), at_most=not last))
        if k == 0 and sex_row is not None:
            relations.append(Relation.adds_up([n(cases_row), n(index)], n(sex_row)))
        previous = index
    relations.append(Relation.equal(n(add(_Row("controls", None, "controls", _CONTROLS))), n(previous)))

    found.extend(variants.values())
    return (full, *variants), rows, relations


_CONTROLS = "__controls__"


def _case_flag(name: str) -> pl.Expr:
    return pl.col(f"case:{name}")


def _case_count(name: str) -> pl.Expr:
    return _case_flag(name).sum()


def _excluded_flag(name: str) -> pl.Expr:
    return pl.col(f"excluded:{name}")


def _gained(variant: str, full: str) -> pl.Expr:
    """People who are cases of the variant (one step removed) and not of the endpoint."""
    return (_case_flag(variant) & ~_case_flag(full)).sum()


def _count(long: pl.DataFrame, controls: int, names: Sequence[str], rows: Sequence[_Row]
           ) -> list[tuple[int | None, int | None]]:
    """The rows' counts from the long table rows of `names` (the endpoint first) and the
    endpoint's N_CONTROLS."""
    flags = (long.lazy().group_by("FINNGENID").agg(
        *[((pl.col("ENDPOINT") == n) & (pl.col("STATUS") == "case")).any().alias(f"case:{n}") for n in names],
        *[((pl.col("ENDPOINT") == n) & (pl.col("STATUS") == "excluded")).any().alias(f"excluded:{n}")
          for n in names],
    ))
    exprs: list[pl.Expr] = []
    for i, row in enumerate(rows):
        for j, value in enumerate((row.people, row.added_back)):
            alias = f"v{i}_{j}"
            if isinstance(value, pl.Expr):
                exprs.append(value.cast(pl.Int64).alias(alias))
    frame = (flags.select(exprs) if exprs else flags.select(pl.lit(0).alias("_")))
    totals = {**frame.collect().row(0, named=True), _CONTROLS: controls}
    out: list[tuple[int | None, int | None]] = []
    for i, row in enumerate(rows):
        values: list[int | None] = []
        for j, value in enumerate((row.people, row.added_back)):
            if value is None:
                values.append(None)
            elif isinstance(value, int):
                values.append(value)
            elif isinstance(value, str):
                values.append(totals[value])
            else:
                values.append(totals[f"v{i}_{j}"])
        out.append((values[0], values[1]))
    return out


# -- plan rewrites ------------------------------------------------------------------------

def _loose(rule: RulePlan) -> RulePlan:
    """The rule's event selection only: no `min` (nor its spacing), no `needs other`."""
    return rule.model_copy(update={"min_events": 1, "needs_other": False, "spacing": None, "spacing_days": None})


def _is_time_relation(cond: Cond) -> bool:
    """Whether it relates an event's date to another endpoint's first date: a relation
    (`within 1 year after X`) or a comparison reading `X.date`."""
    return isinstance(cond, TimeRelation) or (isinstance(cond, Cmp) and any(isinstance(n, FirstDate)
                                                                            for n in walk(cond)))


def _conjunction(args: list[Cond]) -> Cond | None:
    return None if not args else args[0] if len(args) == 1 else AllOf(args=tuple(args))


def _renamed(cond: Cond | None, old: str, new: str) -> Cond | None:
    """The condition with its facts about endpoint `old` read from endpoint `new`."""
    if cond is None or not any(isinstance(n, EndpointFact) and n.endpoint == old for n in walk(cond)):
        return cond
    if isinstance(cond, EndpointFact):
        return cond.model_copy(update={"endpoint": new})
    update = {}
    for field in type(cond).model_fields:
        value = getattr(cond, field)
        if isinstance(value, tuple):
            update[field] = tuple(_renamed(v, old, new) for v in value)
        elif field != "kind" and value is not None and hasattr(value, "value_type"):
            update[field] = _renamed(value, old, new)
    return cond.model_copy(update=update)


# Column tests that stand for a rule option, and the option as written.
_OPTION_WORDS = {"main": "main", "with_atc": "with atc"}


def _stripped(rule: RulePlan) -> RulePlan:
    """The rule without `except`, `main`, `with atc` and `mode`: its patterns alone."""
    branches: list[Branch] = []
    for branch in rule.branches:
        plain = branch.model_copy(update={"tests": tuple(t for t in branch.tests if t.role not in _OPTION_WORDS),
                                          "excepts": ()})
        if plain not in branches:
            branches.append(plain)
    return rule.model_copy(update={"branches": tuple(branches), "mode": False})


def _option_names(rule: RulePlan) -> list[str]:
    """Which of except/main/with atc/mode the rule uses, in words."""
    found: list[str] = []
    if any(b.excepts for b in rule.branches):
        found.append("except")
    for role, word in _OPTION_WORDS.items():
        if rule.branches and all(any(t.role == role for t in b.tests) for b in rule.branches):
            found.append(word)
    if rule.mode:
        found.append("mode")
    return found


def _replace_rule(ep: EndpointPlan, rule: RulePlan) -> EndpointPlan:
    return ep.model_copy(update={"rules": tuple(rule if r.index == rule.index else r for r in ep.rules),
                                 "control_exclude": (), "control_require": None})


# -- output -------------------------------------------------------------------------------

def write_attrition(table: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the table as TSV atomically (a temporary file renamed into place)."""
    return write_text_atomic(path, table.write_csv(separator="\t", null_value="NA"))
