"""What changed between two libraries (e.g. two freezes), or between two result folders.

`diff_libraries` compares the syntax trees, so it can speak the curator's language: rule by
rule and pattern by pattern ("I9_MI: hospital icd10: added I23; removed I24"), conditions
by their text ("when changed from age < 40 to age < 45"), metadata apart. Only meaning-free
differences are ignored: layout, comments, and the order of patterns, names and tags.
Given a registry (events/people) it also evaluates both libraries on it and reports the
change in cases and controls per endpoint, largest absolute change first.

Rules are paired by their source word, in order: the first `hospital` rule of the old
endpoint with the first `hospital` rule of the new one, and so on; a rule without a partner
is added or removed whole. An endpoint whose text is unchanged but that uses a changed
codelist is listed as changed too.

`format_diff` renders a Diff as plain text; counts are masked there by `masking.suppress`
(``<5`` by default) with what a reader knows (old + change = new; an absent side is 0), so
a side or a change that would give a masked one away is ``masked`` too, while the Diff
itself keeps the raw numbers.

`diff_results` compares two folders written by `endpointc run`: per endpoint the change in
cases, controls and excluded (`ResultsDiff`), and `ResultsDiff.gate` is the QC gate of a
release pipeline: the endpoints whose case count moved more than a percentage. See
"Result folders" below for where the numbers come from and how they are masked.

>>> from endpointc.parser import parse
>>> old, _ = parse('endpoint I9_MI { hospital icd10 I21 | I24  when age < 40 }', name="old.ep")
>>> new, _ = parse('endpoint I9_MI { hospital icd10 I21 | I23  when age < 45 }', name="new.ep")
>>> print(format_diff(diff_libraries([old], [new])))
1 endpoint changed
<BLANKLINE>
changed:
  I9_MI: hospital icd10: added I23; removed I24
  I9_MI: when changed from age < 40 to age < 45
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable, Sequence

import polars as pl

from . import ast
from .diagnostics import DiagnosticError, has_errors
# fmt's item printers are private; diff speaks exactly the text fmt writes.
from .fmt import clause_text, expr_text, meta_text, option_text, pattern_text, quote, strip_spans
from .masking import MASK_THRESHOLD, SECONDARY_MARK, Relation, Suppression, suppress
from .results import COUNTS_FILE, LONG_FILE, MANIFEST_FILE

__all__ = ["Diff", "EndpointChange", "CodelistChange", "CountChange", "diff_libraries", "format_diff",
           "read_library", "library_document", "ResultsError", "ResultFolder", "SideCounts", "ResultChange",
           "ResultsDiff", "Gate", "GateFailure", "is_results_folder", "read_results", "diff_results",
           "format_results_diff", "results_document"]

Library = Sequence[str | os.PathLike[str] | ast.File]
MEASURES = ("cases", "controls", "excluded")   # COUNT_COLUMNS, in words


@dataclass(frozen=True)
class EndpointChange:
    """`definition`: changes of meaning, each one line in words; `metadata`: the rest."""

    name: str
    definition: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()


@dataclass(frozen=True)
class CodelistChange:
    name: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class CountChange:
    """Cases, controls and excluded in each library; None where the endpoint is absent."""

    name: str
    old: tuple[int, int, int] | None
    new: tuple[int, int, int] | None

    def _count(self, side: tuple[int, int, int] | None, i: int) -> int:
        return 0 if side is None else side[i]

    @property
    def cases_change(self) -> int:
        return self._count(self.new, 0) - self._count(self.old, 0)

    @property
    def controls_change(self) -> int:
        return self._count(self.new, 1) - self._count(self.old, 1)


@dataclass(frozen=True)
class Diff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[EndpointChange, ...] = ()
    codelists_added: tuple[str, ...] = ()
    codelists_removed: tuple[str, ...] = ()
    codelists_changed: tuple[CodelistChange, ...] = ()
    # With data: every endpoint whose counts differ, largest absolute change in cases first.
    counts: tuple[CountChange, ...] | None = None
    unchanged_counts: int = 0


# -- reading ----------------------------------------------------------------------------

def read_library(items: Library) -> tuple[ast.File, ...]:
    """Parsed files from paths (files or folders of *.ep) or already parsed Files.

    Raises `DiagnosticError` when a file does not parse.
    """
    from .compiler import definition_files
    from .parser import parse_file

    paths = [i for i in items if not isinstance(i, ast.File)]
    trees = [i for i in items if isinstance(i, ast.File)]
    errors = []
    for path in definition_files(paths):
        tree, diagnostics = parse_file(path)
        if has_errors(diagnostics) or tree is None:
            errors.extend(diagnostics)
        else:
            trees.append(tree)
    if errors:
        raise DiagnosticError(errors)
    return tuple(trees)


# -- comparing --------------------------------------------------------------------------

def diff_libraries(old_files: Library, new_files: Library, *, events: pl.LazyFrame | None = None,
                   people: pl.LazyFrame | None = None) -> Diff:
    """Compare two libraries; with `events` and `people`, also their counts on that registry.

    Both libraries must compile when data is given (`DiagnosticError` otherwise).
    """
    old_trees, new_trees = read_library(old_files), read_library(new_files)
    old_eps = {e.name: e for f in old_trees for e in f.endpoints}
    new_eps = {e.name: e for f in new_trees for e in f.endpoints}
    old_codelists = {c.name: c for f in old_trees for c in f.codelists}
    new_codelists = {c.name: c for f in new_trees for c in f.codelists}

    codelists_changed = []
    for name in sorted(set(old_codelists) & set(new_codelists)):
        lines = _codelist_lines(old_codelists[name], new_codelists[name])
        if lines:
            codelists_changed.append(CodelistChange(name, lines))
    touched = {c.name for c in codelists_changed}

    changed = []
    for name in sorted(set(old_eps) & set(new_eps)):
        definition, metadata = _endpoint_lines(old_eps[name], new_eps[name])
        via = sorted(_codelist_refs(new_eps[name]) & _codelist_refs(old_eps[name]) & touched)
        definition += [f"uses codelist @{c}, which changed" for c in via]
        if definition or metadata:
            changed.append(EndpointChange(name, tuple(definition), tuple(metadata)))

    diff = Diff(
        added=tuple(sorted(set(new_eps) - set(old_eps))),
        removed=tuple(sorted(set(old_eps) - set(new_eps))),
        changed=tuple(changed),
        codelists_added=tuple(sorted(set(new_codelists) - set(old_codelists))),
        codelists_removed=tuple(sorted(set(old_codelists) - set(new_codelists))),
        codelists_changed=tuple(codelists_changed),
    )
    if events is None and people is None:
        return diff
    if events is None or people is None:
        raise ValueError("give both events and people to compare counts")
    old_counts = _endpoint_counts(old_trees, events, people)
    new_counts = _endpoint_counts(new_trees, events, people)
    moves = [CountChange(n, old_counts.get(n), new_counts.get(n))
             for n in sorted(set(old_counts) | set(new_counts))]
    differing = [m for m in moves if m.old != m.new]
    differing.sort(key=lambda m: (-abs(m.cases_change), -abs(m.controls_change), m.name))
    return dataclasses.replace(diff, counts=tuple(differing), unchanged_counts=len(moves) - len(differing))


def _endpoint_counts(trees: Sequence[ast.File], events: pl.LazyFrame, people: pl.LazyFrame
                     ) -> dict[str, tuple[int, int, int]]:
    from .compiler import compile_files
    from .engine.polars import evaluate

    program, diagnostics = compile_files(list(trees))
    if program is None:
        raise DiagnosticError(diagnostics)
    counts = evaluate(program, events.lazy(), people.lazy()).counts.collect()
    return {r[0]: (r[1], r[2], r[3]) for r in counts.iter_rows()}


def _added_removed(old: Iterable[str], new: Iterable[str]) -> str:
    """"added X, Y; removed Z" (in the order written), or "" when the sets are equal."""
    old, new = list(dict.fromkeys(old)), list(dict.fromkeys(new))
    added = [x for x in new if x not in old]
    removed = [x for x in old if x not in new]
    parts = []
    if added:
        parts.append("added " + ", ".join(added))
    if removed:
        parts.append("removed " + ", ".join(removed))
    return "; ".join(parts)


def _change_line(what: str, old: str | None, new: str | None) -> str | None:
    if old == new:
        return None
    if old is None:
        return f"{what} added: {new}"
    if new is None:
        return f"{what} removed: {old}"
    return f"{what} changed from {old} to {new}"


def _rule_text(rule: ast.Rule) -> str:
    what = [f"@{rule.codelist.name}"] if rule.codelist is not None else [clause_text(c) for c in rule.clauses]
    return " ".join([rule.source, *(option_text(o) for o in rule.options), *what])


def _rule_lines(label: str, old: ast.Rule, new: ast.Rule) -> list[str]:
    lines = []
    old_min, new_min = old.option("min"), new.option("min")
    if old_min is not None and new_min is not None and option_text(old_min) != option_text(new_min):
        lines.append(f"{label}: min changed from {option_text(old_min)[4:]} to {option_text(new_min)[4:]}")
    options = _added_removed((option_text(o) for o in old.options if o.name != "min" or new_min is None),
                             (option_text(o) for o in new.options if o.name != "min" or old_min is None))
    if options:
        lines.append(f"{label}: options: {options}")

    def by_vocab(rule: ast.Rule, attr: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        if rule.codelist is not None and attr == "patterns":  # `SOURCE @NAME`: the list is what it names
            found["codelist"].append(f"@{rule.codelist.name}")
        for clause in rule.clauses:
            found[clause.vocab].extend(pattern_text(p) for p in getattr(clause, attr))
        return found

    for attr, suffix in (("patterns", ""), ("excepts", " except")):
        old_v, new_v = by_vocab(old, attr), by_vocab(new, attr)
        for vocab in dict.fromkeys([*old_v, *new_v]):
            change = _added_removed(old_v.get(vocab, ()), new_v.get(vocab, ()))
            if change:
                lines.append(f"{label} {vocab}{suffix}: {change}")
    return lines


def _endpoint_lines(old: ast.Endpoint, new: ast.Endpoint) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    old_rules: dict[str, list[ast.Rule]] = defaultdict(list)
    new_rules: dict[str, list[ast.Rule]] = defaultdict(list)
    for rule in old.rules:
        old_rules[rule.source].append(rule)
    for rule in new.rules:
        new_rules[rule.source].append(rule)
    for source in dict.fromkeys([*(r.source for r in old.rules), *(r.source for r in new.rules)]):
        olds, news = old_rules.get(source, []), new_rules.get(source, [])
        several = max(len(olds), len(news)) > 1
        for i in range(max(len(olds), len(news))):
            label = f"{source} rule {i + 1}" if several else source
            if i >= len(olds):
                lines.append(f"added rule: {_rule_text(news[i])}")
            elif i >= len(news):
                lines.append(f"removed rule: {_rule_text(olds[i])}")
            elif strip_spans(olds[i]) != strip_spans(news[i]):
                lines.extend(_rule_lines(label, olds[i], news[i]))

    includes = _added_removed((n.name for n in old.includes), (n.name for n in new.includes))
    if includes:
        lines.append(f"include: {includes}")
    for kind, item_type in (("when", ast.When), ("require", ast.Require)):
        line = _change_line(kind, _conditions(old, item_type), _conditions(new, item_type))
        if line:
            lines.append(line)
    if old.sex != new.sex:
        lines.append(f"sex changed from {old.sex} to {new.sex}")
    excludes = _added_removed(_control_excludes(old), _control_excludes(new))
    if excludes:
        lines.append(f"controls exclude: {excludes}")
    line = _change_line("controls require", _control_require(old), _control_require(new))
    if line:
        lines.append(line)
    return lines, _meta_lines(old, new)


def _conditions(endpoint: ast.Endpoint, item_type: type) -> str | None:
    found = [i for i in endpoint.items if isinstance(i, item_type)]
    if not found:
        return None
    return " and ".join(expr_text(i.condition, 3 if len(found) > 1 else 0) for i in found)


def _control_items(endpoint: ast.Endpoint):
    return [c for i in endpoint.items if isinstance(i, ast.Controls) for c in i.items]


def _control_excludes(endpoint: ast.Endpoint) -> list[str]:
    return [n.name for c in _control_items(endpoint) if isinstance(c, ast.ControlExclude) for n in c.names]


def _control_require(endpoint: ast.Endpoint) -> str | None:
    found = [c for c in _control_items(endpoint) if isinstance(c, ast.ControlRequire)]
    if not found:
        return None
    return " and ".join(expr_text(c.condition, 3 if len(found) > 1 else 0) for c in found)


def _meta_lines(old: ast.Endpoint, new: ast.Endpoint) -> list[str]:
    def entries(endpoint: ast.Endpoint) -> dict[tuple[bool, str], ast.Meta]:
        return {(m.custom, m.key): m for m in endpoint.items if isinstance(m, ast.Meta)}

    old_m, new_m = entries(old), entries(new)
    lines = []
    for key in dict.fromkeys([*old_m, *new_m]):
        custom, name = key
        label = f'meta "{name}"' if custom else name
        a, b = old_m.get(key), new_m.get(key)
        if name == "tags" and not custom:
            tags = _added_removed(_tags(a), _tags(b))
            if tags:
                lines.append(f"tags: {tags}")
            continue
        line = _change_line(label, _meta_value(a), _meta_value(b))
        if line:
            lines.append(line)
    return lines


def _tags(meta: ast.Meta | None) -> tuple[str, ...]:
    if meta is None:
        return ()
    return meta.value if isinstance(meta.value, tuple) else (meta.value,)


def _meta_value(meta: ast.Meta | None) -> str | None:
    if meta is None:
        return None
    if meta.custom:
        return quote(str(meta.value))
    # The printed item minus its key: quoted text stays quoted, so the sentence reads.
    return meta_text(meta).split(" ", 1)[-1]


def _codelist_refs(endpoint: ast.Endpoint) -> set[str]:
    found: set[str] = set()

    def walk(pattern):
        if isinstance(pattern, ast.CodelistRef):
            found.add(pattern.name)
        elif isinstance(pattern, ast.Combination):
            walk(pattern.first), walk(pattern.second)

    for rule in endpoint.rules:
        if rule.codelist is not None:
            walk(rule.codelist)
        for clause in rule.clauses:
            for p in (*clause.patterns, *clause.excepts):
                walk(p)
    return found


def _codelist_lines(old: ast.Codelist, new: ast.Codelist) -> tuple[str, ...]:
    lines = []
    if len(old.vocabs) == len(new.vocabs) == 1 and old.vocab != new.vocab:
        lines.append(f"vocabulary changed from {old.vocab} to {new.vocab}")
        pairs = [(new.vocab, old.patterns, new.patterns)]
    else:
        vocabs = _added_removed(old.vocabs, new.vocabs)
        if vocabs:
            lines.append(f"vocabularies: {vocabs}")
        pairs = [(v, old.patterns_of(v) or (), new.patterns_of(v) or ()) for v in new.vocabs if v in old.vocabs]
    for vocab, before, after in pairs:
        change = _added_removed((pattern_text(p) for p in before), (pattern_text(p) for p in after))
        if change:
            lines.append(f"{vocab}: {change}")
    return tuple(lines)


# -- rendering --------------------------------------------------------------------------

def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def format_diff(diff: Diff, *, mask_threshold: int | None = MASK_THRESHOLD) -> str:
    """The diff as plain text: summary, added, removed, changed (definition, then metadata),
    codelists, and with data a table of counts (masked at `mask_threshold`)."""
    summary = [_summary_part(len(x), w) for x, w in
               ((diff.added, "added"), (diff.removed, "removed"), (diff.changed, "changed")) if x]
    out = [", ".join(summary) if summary else "no endpoint changed"]
    if diff.added:
        out += ["", "added:", *(f"  {n}" for n in diff.added)]
    if diff.removed:
        out += ["", "removed:", *(f"  {n}" for n in diff.removed)]
    definition = [f"  {c.name}: {line}" for c in diff.changed for line in c.definition]
    if definition:
        out += ["", "changed:", *definition]
    metadata = [f"  {c.name}: {line}" for c in diff.changed for line in c.metadata]
    if metadata:
        out += ["", "metadata changed:", *metadata]
    codelists = ([f"  @{n}: added" for n in diff.codelists_added]
                 + [f"  @{n}: removed" for n in diff.codelists_removed]
                 + [f"  @{c.name}: {line}" for c in diff.codelists_changed for line in c.lines])
    if codelists:
        out += ["", "codelists:", *codelists]
    if diff.counts is not None:
        out += ["", *_counts_lines(diff, mask_threshold)]
    return "\n".join(out)


def _summary_part(n: int, what: str) -> str:
    return f"{n} endpoint{'' if n == 1 else 's'} {what}"


def _count_suppression(diff: Diff, threshold: int | None) -> Suppression:
    """Every count and change of the table, masked together: per endpoint and side,
    old + change = new (an absent side is a known 0), and cases + controls of one library
    are at most the population (the excluded are not shown)."""
    cells: dict[tuple[str, int, str], int] = {}
    relations: list[Relation] = []
    population = 0
    for move in diff.counts or ():
        for which, side in (("old", move.old), ("new", move.new)):
            if side is not None:
                population = max(population, sum(side))
                cells.update({(move.name, i, which): side[i] for i in (0, 1)})
                relations.append(Relation.no_more_than([(move.name, 0, which), (move.name, 1, which)],
                                                       known=sum(side)))
        for i in (0, 1):
            cells[(move.name, i, "change")] = (move.new or (0, 0))[i] - (move.old or (0, 0))[i]
            old = [(move.name, i, "old")] if move.old is not None else []
            relations.append(Relation.adds_up([*old, (move.name, i, "change")],
                                              (move.name, i, "new") if move.new is not None else None))
    changes = [k for k in cells if k[2] == "change"]
    return suppress(cells, relations, threshold=threshold, upper=population, signed=changes)


def _count_rows(diff: Diff, threshold: int | None) -> list[tuple[str, list[str]]]:
    """(endpoint, cells as shown) of the counts table in the order shown: cases old, new,
    change, then controls; "-" for an absent side."""
    shown = _count_suppression(diff, threshold)
    rows = []
    for move in diff.counts or ():
        cells, key = [], []
        for i in (0, 1):
            for which, side in (("old", move.old), ("new", move.new)):
                cells.append("-" if side is None else shown.text((move.name, i, which)))
            change = (move.name, i, "change")
            cells.append(shown.text(change, signed=True) if shown.values[change] else "0")
            # Sorted by what is shown: masked changes last, so order does not hint at them.
            hidden = shown.masked(change)
            key += [hidden, 0 if hidden else -abs(shown.values[change])]
        rows.append(((*key, move.name), move.name, cells))
    rows.sort(key=lambda r: r[0])
    return [(name, cells) for _, name, cells in rows]


def _aligned(table: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as indented lines: the first column left-aligned, the others right."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in table]


def _mask_note(threshold: int | None) -> str:
    return (f"counts under {threshold} masked, and '{SECONDARY_MARK}' where one would give a small count away"
            if threshold is not None else "not masked")


def _counts_lines(diff: Diff, threshold: int | None) -> list[str]:
    title = f"cases and controls on the same registry (old -> new; {_mask_note(threshold)})"
    if not diff.counts:
        return [title + ":", f"  no change in any of {_plural(diff.unchanged_counts, 'endpoint')}"]
    header = ("ENDPOINT", "CASES_OLD", "CASES_NEW", "CASES_CHANGE", "CONTROLS_OLD", "CONTROLS_NEW",
              "CONTROLS_CHANGE")
    lines = [title + ":", *_aligned([header, *([name, *cells] for name, cells in _count_rows(diff, threshold))])]
    if diff.unchanged_counts:
        lines.append(f"  ({_plural(diff.unchanged_counts, 'other endpoint')} with the same counts)")
    return lines


def _json_count(text: str) -> int | str | None:
    """A cell as shown, for JSON: a number when one is shown, else the text (``<5``,
    ``+<5``, ``masked``); None for an absent side."""
    if text == "-":
        return None
    digits = text.lstrip("+-")
    return int(text) if digits.isdigit() else text


def _json_measures(cells: Sequence[str], measures: Sequence[str]) -> dict:
    """{measure: {"old", "new", "change"}} of a row's cells as shown (three per measure)."""
    return {m: dict(zip(("old", "new", "change"), map(_json_count, cells[3 * i:3 * i + 3])))
            for i, m in enumerate(measures)}


def library_document(diff: Diff, *, mask_threshold: int | None = MASK_THRESHOLD) -> dict:
    """The diff as one JSON-ready document (`endpointc diff --json` of two libraries; the
    shape is in docs/cli.md): counts masked as `format_diff` shows them."""
    counts = None
    if diff.counts is not None:
        counts = {
            "mask_threshold": mask_threshold,
            "unchanged": diff.unchanged_counts,
            "endpoints": [{"endpoint": name, **_json_measures(cells, MEASURES[:2])}
                          for name, cells in _count_rows(diff, mask_threshold)],
        }
    return {
        "kind": "libraries",
        "added": list(diff.added),
        "removed": list(diff.removed),
        "changed": [{"endpoint": c.name, "definition": list(c.definition), "metadata": list(c.metadata)}
                    for c in diff.changed],
        "codelists": {"added": list(diff.codelists_added), "removed": list(diff.codelists_removed),
                      "changed": [{"codelist": c.name, "lines": list(c.lines)} for c in diff.codelists_changed]},
        "counts": counts,
    }


# -- result folders ---------------------------------------------------------------------
#
# A folder written by `endpointc run` holds counts.tsv (aggregate, masked: what may be
# published) and endpoints.parquet (individual-level: exact). The comparison and the gate
# use exact counts where a folder has both: cases and excluded counted from
# endpoints.parquet, controls as the population less those two. The population is the
# people table's row count in manifest.json, or what a row of counts.tsv whose controls
# are shown adds up to (they must agree, as must every number counts.tsv shows with the
# exact one). A folder without endpoints.parquet (or whose population cannot be told) is
# compared as its counts.tsv shows it: a masked count is then a range (``<5``: 1 to 4;
# ``masked``: what the row's other counts and the population leave), and the gate treats
# a move that it cannot rule out as a move.
#
# What is printed is masked by `masking.suppress`, never by the exact numbers alone: the
# relations a reader knows (per folder and endpoint, cases + controls + excluded = the
# population; old + change = new) and, as known, every number either counts.tsv shows, so
# that the diff together with the published counts.tsv gives no masked count away. When
# a folder has no exact counts, each side is shown as its counts.tsv shows it and a change
# only where both sides are numbers.

_COUNT_TEXT = re.compile(r"[0-9]+|<[1-9][0-9]*|" + re.escape(SECONDARY_MARK))


class ResultsError(ValueError):
    """A result folder that cannot be compared: a file missing, unreadable, or at odds with
    the others. The message names the file; it never holds a person-level value."""


@dataclass(frozen=True)
class ResultFolder:
    """`exact`: counts from endpoints.parquet; `population`: None when it cannot be told;
    `note`: why a folder with endpoints.parquet is compared as counts.tsv shows it."""

    path: str
    exact: bool
    population: int | None
    note: str | None = None


@dataclass(frozen=True)
class SideCounts:
    """One endpoint in one result folder: cases, controls, excluded as counts.tsv shows
    them (a number, ``<5`` or ``masked``), the exact numbers (None without them), and the
    range the case count is known to lie in (`hi` may be infinite)."""

    shown: tuple[str, str, str]
    exact: tuple[int, int, int] | None
    cases: tuple[int, float]


@dataclass(frozen=True)
class ResultChange:
    name: str
    old: SideCounts | None
    new: SideCounts | None

    @property
    def status(self) -> str:
        """``only_old``, ``only_new``, ``changed`` or ``same`` (exact counts where both sides
        have them, else as shown: two ``<5`` are the same)."""
        if self.new is None:
            return "only_old"
        if self.old is None:
            return "only_new"
        both_exact = self.old.exact is not None and self.new.exact is not None
        same = self.old.exact == self.new.exact if both_exact else self.old.shown == self.new.shown
        return "same" if same else "changed"


@dataclass(frozen=True)
class GateFailure:
    """An endpoint whose case count moved more than the gate allows; `certain` is False
    when only masked counts stand in the way of ruling it out."""

    name: str
    certain: bool


@dataclass(frozen=True)
class Gate:
    fail_above: float
    min_cases: int
    checked: int                          # endpoints in both folders with at least min_cases cases on a side
    failures: tuple[GateFailure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class ResultsDiff:
    old: ResultFolder
    new: ResultFolder
    endpoints: tuple[ResultChange, ...]   # every endpoint of either folder, by name

    @property
    def exact(self) -> bool:
        return self.old.exact and self.new.exact

    def gate(self, *, fail_above: float, min_cases: int = 0) -> Gate:
        """The endpoints, among those in both folders with at least `min_cases` cases on
        either side, whose case count moved by more than `fail_above` percent of the old
        one (from 0, any case at all). On a masked count, an endpoint fails unless every
        value the count may have keeps it within the limit, and is checked if any value
        reaches `min_cases`."""
        if fail_above < 0 or min_cases < 0:
            raise ValueError("fail_above and min_cases must not be negative")
        checked, failures = 0, []
        for change in self.endpoints:
            if change.old is None or change.new is None:
                continue
            (old_lo, old_hi), (new_lo, new_hi) = change.old.cases, change.new.cases
            if max(old_hi, new_hi) < min_cases:
                continue
            checked += 1
            # the largest move over the ranges is at one of these corners, the smallest
            # (when the ranges do not overlap) at the other
            if _moves_more(old_lo, new_hi, fail_above) or _moves_more(old_hi, new_lo, fail_above):
                certain = ((new_lo > old_hi and _moves_more(old_hi, new_lo, fail_above))
                           or (new_hi < old_lo and _moves_more(old_lo, new_hi, fail_above)))
                failures.append(GateFailure(change.name, certain))
        return Gate(fail_above, min_cases, checked, tuple(failures))


def _moves_more(old: float, new: float, percent: float) -> bool:
    """|new - old| is more than `percent`% of old: from 0, any case is; from an unbounded
    old, a finite new is a fall of 100%."""
    if old == math.inf:
        return percent < 100
    return 100 * abs(new - old) > percent * old


def is_results_folder(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder that `endpointc run` wrote into (it holds counts.tsv or
    endpoints.parquet), rather than a library."""
    folder = Path(path)
    return folder.is_dir() and any((folder / name).is_file() for name in (COUNTS_FILE, LONG_FILE))


def diff_results(old: str | os.PathLike[str], new: str | os.PathLike[str]) -> ResultsDiff:
    """Compare two result folders, endpoint by endpoint (`ResultsError` if one cannot be read)."""
    old_folder, old_counts = read_results(old)
    new_folder, new_counts = read_results(new)
    names = sorted(set(old_counts) | set(new_counts))
    return ResultsDiff(old_folder, new_folder,
                       tuple(ResultChange(n, old_counts.get(n), new_counts.get(n)) for n in names))


def read_results(path: str | os.PathLike[str]) -> tuple[ResultFolder, dict[str, SideCounts]]:
    """A result folder's counts per endpoint (see "Result folders" in the module)."""
    folder = Path(path)
    counts_file, long_file = folder / COUNTS_FILE, folder / LONG_FILE
    if not counts_file.is_file():
        raise ResultsError(f"{folder}: no {COUNTS_FILE} (`endpointc run` writes one into every result folder)")
    shown = _read_counts(counts_file)
    exact = _read_long(long_file, known=shown) if long_file.is_file() else None
    totals = set()
    manifest_people = _manifest_population(folder)
    if manifest_people is not None:
        totals.add(manifest_people)
    for name, cells in shown.items():
        if exact is not None:
            cases, excluded = exact.get(name, (0, 0))
            for column, text, value in (("N_CASES", cells[0], cases), ("N_EXCLUDED", cells[2], excluded)):
                if text.isdigit() and int(text) != value:
                    raise ResultsError(f"{counts_file} and {long_file} disagree on {column} of {name}")
            if cells[1].isdigit():
                totals.add(cases + excluded + int(cells[1]))
        elif all(c.isdigit() for c in cells):
            totals.add(sum(map(int, cells)))
    if len(totals) > 1:
        raise ResultsError(f"the counts of {folder} do not add up to one population"
                           + (" (manifest.json's people rows, counts.tsv and endpoints.parquet)"
                              if exact is not None else " (counts.tsv)"))
    population = next(iter(totals), None)
    note = None
    if exact is not None and population is None:
        note = (f"{long_file} not used: the population is unknown (no manifest.json, and no row of "
                f"{COUNTS_FILE} shows its controls)")
        exact = None
    sides = {}
    for name, cells in shown.items():
        if exact is None:
            sides[name] = SideCounts(cells, None, _case_range(cells, population))
            continue
        cases, excluded = exact.get(name, (0, 0))
        controls = population - cases - excluded
        if controls < 0:
            raise ResultsError(f"{long_file}: {name} has more cases and excluded people than the population")
        sides[name] = SideCounts(cells, (cases, controls, excluded), (cases, cases))
    return ResultFolder(str(path), exact is not None, population, note), sides


def _read_counts(path: Path) -> dict[str, tuple[str, str, str]]:
    from .engine.schema import COUNT_COLUMNS

    try:
        table = pl.read_csv(path, separator="\t", infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise ResultsError(f"{path}: cannot be read as a TSV table ({type(error).__name__})") from None
    missing = [c for c in ("ENDPOINT", *COUNT_COLUMNS) if c not in table.columns]
    if missing:
        raise ResultsError(f"{path}: no column {', '.join(missing)}")
    shown: dict[str, tuple[str, str, str]] = {}
    for line, row in enumerate(table.select("ENDPOINT", *COUNT_COLUMNS).iter_rows(), 2):
        name, *cells = (text or "" for text in row)
        if not name or name in shown:
            raise ResultsError(f"{path}, line {line}: ENDPOINT {'repeated' if name else 'missing'}")
        bad = [c for c, text in zip(COUNT_COLUMNS, cells) if not _COUNT_TEXT.fullmatch(text)]
        if bad:
            raise ResultsError(f"{path}, line {line}: {bad[0]} is not a count, <N or {SECONDARY_MARK}")
        shown[name] = tuple(cells)
    return shown


def _read_long(path: Path, *, known: Collection[str]) -> dict[str, tuple[int, int]]:
    """(cases, excluded) per endpoint of the long table, counted in one streaming pass."""
    try:
        scan = pl.scan_parquet(path, glob=False)
        missing = [c for c in ("ENDPOINT", "STATUS") if c not in scan.collect_schema()]
        if missing:
            raise ResultsError(f"{path}: no column {', '.join(missing)}")
        frame = (scan.group_by("ENDPOINT")
                 .agg((pl.col("STATUS") == "case").sum().alias("cases"),
                      (pl.col("STATUS") == "excluded").sum().alias("excluded"),
                      pl.len().alias("rows"))
                 .collect())
    except (pl.exceptions.PolarsError, OSError) as error:
        # Polars' message may quote values of the file: only its kind is told
        raise ResultsError(f"{path}: cannot be read as the long results table ({type(error).__name__})") from None
    counts = {}
    for name, cases, excluded, rows in frame.iter_rows():
        if name is None or cases + excluded != rows:
            raise ResultsError(f"{path}: rows without an ENDPOINT or with a STATUS other than case/excluded")
        counts[name] = (cases, excluded)
    unknown = sorted(set(counts) - set(known))
    if unknown:
        raise ResultsError(f"{path} has endpoints that counts.tsv does not list: {', '.join(unknown[:5])}"
                           + (" ..." if len(unknown) > 5 else ""))
    return counts


def _manifest_population(folder: Path) -> int | None:
    """The people table's row count in the folder's manifest.json; None without one (it is
    not needed: counts.tsv usually tells the population too)."""
    from .manifest import ManifestError, read_manifest

    if not (folder / MANIFEST_FILE).is_file():
        return None
    try:
        return read_manifest(folder).inputs.people.rows
    except ManifestError as error:
        raise ResultsError(str(error)) from None


def _case_range(cells: tuple[str, str, str], population: int | None) -> tuple[int, float]:
    """The values the case count can have, given the row as shown and the population (the
    three add up to it)."""
    ranges = []
    for text in cells:
        if text.isdigit():
            ranges.append((int(text), int(text)))
        elif text.startswith("<"):
            ranges.append((1, int(text[1:]) - 1))
        else:
            ranges.append((0, math.inf if population is None else population))
    lo, hi = ranges[0]
    if population is not None:
        lo = max(lo, population - ranges[1][1] - ranges[2][1])
        hi = min(hi, population - ranges[1][0] - ranges[2][0])
    return lo, hi


# -- result folders: what is shown ------------------------------------------------------

@dataclass(frozen=True)
class _ShownChange:
    name: str
    status: str
    cells: tuple[str, ...]    # per measure: old, new, change as shown ("-": no such side)
    order: tuple              # sort key: by the changes shown, masked ones last


def _value(side: SideCounts | None, i: int) -> int | None:
    """Count `i` of a side as a number: exact, or as counts.tsv shows it; None if masked there."""
    if side is None:
        return None
    if side.exact is not None:
        return side.exact[i]
    return int(side.shown[i]) if side.shown[i].isdigit() else None


def _results_suppression(diff: ResultsDiff, threshold: int | None) -> Suppression:
    """Every count known as a number, and every change between two of them, masked
    together (see "Result folders"); a count that counts.tsv masks and no exact count
    tells is no cell."""
    cells: dict[tuple[str, int, str], int] = {}
    relations: list[Relation] = []
    known, changes = [], []
    for change in diff.endpoints:
        for which, folder, side in (("old", diff.old, change.old), ("new", diff.new, change.new)):
            if side is None:
                continue
            keys = [(change.name, i, which) for i in range(3)]
            values = [_value(side, i) for i in range(3)]
            cells.update((key, value) for key, value in zip(keys, values) if value is not None)
            known += [key for key, text in zip(keys, side.shown) if text.isdigit()]
            if side.exact is not None:
                relations.append(Relation.adds_up(keys, known=folder.population))
        for i in range(3):
            old, new = _value(change.old, i), _value(change.new, i)
            if old is not None and new is not None:
                key = (change.name, i, "change")
                cells[key] = new - old
                changes.append(key)
                relations.append(Relation.adds_up([(change.name, i, "old"), key], (change.name, i, "new")))
    populations = [f.population for f in (diff.old, diff.new) if f.population is not None]
    return suppress(cells, relations, threshold=threshold, upper=max(populations, default=None),
                    signed=changes, known=known)


def _shown_changes(diff: ResultsDiff, threshold: int | None) -> list[_ShownChange]:
    """Every endpoint as shown, in the order shown: changed ones by the size of the change
    in cases, then controls, then excluded (as shown: masked changes after the others),
    then those in one folder only, then the unchanged; by name within each."""
    shown = _results_suppression(diff, threshold)
    rows = []
    for change in diff.endpoints:
        cells, order = [], []
        for i in range(3):
            for which, side in (("old", change.old), ("new", change.new)):
                key = (change.name, i, which)
                cells.append("-" if side is None else shown.text(key) if key in shown.values else side.shown[i])
            key = (change.name, i, "change")
            if change.old is None or change.new is None:
                delta = "-"
            elif key in shown.values:
                delta = shown.text(key, signed=True) if shown.values[key] else "0"
            else:   # a side that counts.tsv masks
                delta = SECONDARY_MARK
            value = _json_count(delta)
            order += [not isinstance(value, int), -abs(value) if isinstance(value, int) else 0]
            cells.append(delta)
        status = change.status
        rank = ("changed", "only_old", "only_new", "same").index(status)
        rows.append(_ShownChange(change.name, status, tuple(cells),
                                 (rank, *(order if status == "changed" else ()), change.name)))
    rows.sort(key=lambda r: r.order)
    return rows


def _percent(old: str, new: str) -> float | None:
    """The change in percent of the old count, when both are shown (None from 0)."""
    if not (old.isdigit() and new.isdigit()) or int(old) == 0:
        return None
    return round(100 * (int(new) - int(old)) / int(old), 1)


def format_results_diff(diff: ResultsDiff, *, mask_threshold: int | None = MASK_THRESHOLD,
                        gate: Gate | None = None) -> str:
    """The comparison as plain text: a summary, the table of endpoints whose counts
    differ and of those in one folder only, and the gate's verdict."""
    rows = _shown_changes(diff, mask_threshold)
    by_status = collections.Counter(r.status for r in rows)
    old, new = diff.old.path, diff.new.path
    summary = [_plural(by_status["changed"], "endpoint") + " changed"]
    summary += [f"{by_status[s]} only in {folder}" for s, folder in (("only_old", old), ("only_new", new))
                if by_status[s]]
    summary.append(f"{by_status['same']} the same")
    if diff.old.exact == diff.new.exact:
        source = "exact, from endpoints.parquet" if diff.exact else "as counts.tsv shows them"
    else:
        source = "; ".join(f"{f.path}: " + ("exact, from endpoints.parquet" if f.exact else "as counts.tsv shows them")
                           for f in (diff.old, diff.new))
    out = [f"results {old} -> {new}: " + ", ".join(summary),
           *(f"note: {f.note}" for f in (diff.old, diff.new) if f.note)]
    listed = [r for r in rows if r.status != "same"]
    if listed:
        header = ["ENDPOINT", *(f"{m.upper()}_{part}" for m in MEASURES for part in ("OLD", "NEW", "CHANGE"))]
        out += ["", f"counts ({source}; {_mask_note(mask_threshold)}):",
                *_aligned([header, *([r.name, *r.cells] for r in listed)])]
    if gate is not None:
        out += ["", *_gate_lines(gate, {r.name: r for r in rows})]
    return "\n".join(out)


def _gate_lines(gate: Gate, rows: dict[str, _ShownChange]) -> list[str]:
    what = (f"gate: case counts moving more than {gate.fail_above:g}% "
            f"({_plural(gate.checked, 'endpoint')} with at least {gate.min_cases} cases checked)")
    if gate.passed:
        return [f"{what}: passed"]
    lines = [f"{what}: FAILED, {_plural(len(gate.failures), 'endpoint')}"]
    for failure in gate.failures:
        old, new = rows[failure.name].cells[:2]
        percent = _percent(old, new)
        moved = f" ({percent:+g}%)" if percent is not None else ""
        maybe = "" if failure.certain else " (may be within the limit: counts.tsv masks a count)"
        lines.append(f"  {failure.name}: cases {old} -> {new}{moved}{maybe}")
    return lines


def results_document(diff: ResultsDiff, *, mask_threshold: int | None = MASK_THRESHOLD,
                     gate: Gate | None = None) -> dict:
    """The comparison as one JSON-ready document (`endpointc diff --json` of two result
    folders; the shape is in docs/cli.md), masked as `format_results_diff` shows it."""
    rows = _shown_changes(diff, mask_threshold)
    by_name = {r.name: r for r in rows}

    def folder(f: ResultFolder) -> dict:
        return {"path": f.path, "exact": f.exact, "note": f.note}

    return {
        "kind": "results",
        "old": folder(diff.old),
        "new": folder(diff.new),
        "mask_threshold": mask_threshold,
        "summary": {s: sum(r.status == s for r in rows) for s in ("changed", "only_old", "only_new", "same")},
        "endpoints": [{"endpoint": r.name, "status": r.status, **_json_measures(r.cells, MEASURES)} for r in rows],
        "gate": None if gate is None else {
            "fail_above": gate.fail_above, "min_cases": gate.min_cases, "checked": gate.checked,
            "passed": gate.passed,
            "failures": [{"endpoint": f.name, "certain": f.certain,
                          "cases_change_percent": _percent(*by_name[f.name].cells[:2])}
                         for f in gate.failures],
        },
    }
