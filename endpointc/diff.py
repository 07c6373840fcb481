"""What changed between two libraries (e.g. two freezes): in words, and with data in numbers.

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

import dataclasses
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import polars as pl

from . import ast
from .diagnostics import DiagnosticError, has_errors
# fmt's item printers are private; diff speaks exactly the text fmt writes.
from .fmt import clause_text, expr_text, meta_text, option_text, pattern_text, quote, strip_spans
from .masking import MASK_THRESHOLD, SECONDARY_MARK, Relation, Suppression, suppress

__all__ = ["Diff", "EndpointChange", "CodelistChange", "CountChange", "diff_libraries", "format_diff",
           "read_library"]

Library = Sequence[str | os.PathLike[str] | ast.File]


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


def _counts_lines(diff: Diff, threshold: int | None) -> list[str]:
    title = "cases and controls on the same registry (old -> new"
    title += (f"; counts under {threshold} masked, and '{SECONDARY_MARK}' where one would give a "
              "small count away)" if threshold is not None else "; not masked)")
    if not diff.counts:
        return [title + ":", f"  no change in any of {_plural(diff.unchanged_counts, 'endpoint')}"]
    header = ("ENDPOINT", "CASES_OLD", "CASES_NEW", "CASES_CHANGE", "CONTROLS_OLD", "CONTROLS_NEW",
              "CONTROLS_CHANGE")
    shown = _count_suppression(diff, threshold)
    rows = []
    for move in diff.counts:
        cells, key = [move.name], []
        for i in (0, 1):
            for which, side in (("old", move.old), ("new", move.new)):
                cells.append("-" if side is None else shown.text((move.name, i, which)))
            change = (move.name, i, "change")
            cells.append(shown.text(change, signed=True) if shown.values[change] else "0")
            # Sorted by what is shown: masked changes last, so order does not hint at them.
            hidden = shown.masked(change)
            key += [hidden, 0 if hidden else -abs(shown.values[change])]
        rows.append(((*key, move.name), cells))
    rows.sort(key=lambda r: r[0])
    table = [header, *(cells for _, cells in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [title + ":"]
    for r in table:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    if diff.unchanged_counts:
        lines.append(f"  ({_plural(diff.unchanged_counts, 'other endpoint')} with the same counts)")
    return lines
