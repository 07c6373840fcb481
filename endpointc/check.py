"""Check: names, cycles, vocabularies, patterns, options; collects every diagnostic.

`check` never stops at the first problem: it walks every file and returns the Library
(built with `index_library`, whose ordering breaks cycles so it always terminates) with
every diagnostic sorted by file and position. Codes are listed in docs/diagnostics.md:
EP2xx names and structure, EP3xx codes and patterns, EP4xx rules, options, conditions.
Warnings never make a result an error; whether they fail a run (`--strict`) is decided
by the CLI alone.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Sequence

from . import ast, codes
from .diagnostics import Diagnostic, sort_diagnostics
from .fmt import expr_text as fmt_expr_text, pattern_text
from .registers import allowing, allows, in_words
from .source import Span

__all__ = ["Library", "check", "index_library", "endpoint_dependencies"]


@dataclass(frozen=True)
class Library:
    """The checked AST: every file, names resolved, endpoints in dependency order."""

    files: tuple[ast.File, ...]
    endpoints: Mapping[str, ast.Endpoint]
    codelists: Mapping[str, ast.Codelist]
    order: tuple[str, ...]  # endpoint names, each after everything it depends on


def endpoint_dependencies(endpoint: ast.Endpoint) -> tuple[str, ...]:
    """Names an endpoint needs evaluated first: include, `when`, require and controls (its
    own name in `require` reads its own candidate events: no dependency)."""
    return tuple(dict.fromkeys(r.name for r in endpoint_refs(endpoint) if not _reads_itself(endpoint, r)))


def _reads_itself(endpoint: ast.Endpoint, ref: "_Ref") -> bool:
    return ref.name == endpoint.name and ref.via == "require"


def index_library(files: Sequence[ast.File]) -> Library:
    """Index names and order endpoints by dependency; assumes `check` found no errors."""
    endpoints = {e.name: e for f in files for e in f.endpoints}
    codelists = {c.name: c for f in files for c in f.codelists}
    order: list[str] = []
    done: set[str] = set()
    for name in sorted(endpoints):
        stack = [(name, iter(endpoint_dependencies(endpoints[name])))]
        visiting = {name}
        while stack:
            current, deps = stack[-1]
            for dep in deps:
                if dep in endpoints and dep not in done and dep not in visiting:
                    visiting.add(dep)
                    stack.append((dep, iter(endpoint_dependencies(endpoints[dep]))))
                    break
            else:
                stack.pop()
                visiting.discard(current)
                if current not in done:
                    done.add(current)
                    order.append(current)
    return Library(files=tuple(files), endpoints=MappingProxyType(endpoints),
                   codelists=MappingProxyType(codelists), order=tuple(order))


def check(files: Sequence[ast.File], *, strict: bool = False,
          rules: Sequence[str] = ()) -> tuple[Library, tuple[Diagnostic, ...]]:
    """Check every file together; return the Library and all diagnostics, sorted.

    `strict` is accepted for symmetry with the CLI and changes nothing here: the
    diagnostics are the same, and only the CLI decides whether warnings fail a run.
    `rules` names curation rule sets (`endpointc.curation.RULE_SETS`, e.g. "finngen")
    whose findings are added.

    >>> from endpointc.parser import parse
    >>> tree, _ = parse('endpoint A { purchase icd10 E11 }', name='x.ep')
    >>> _, diags = check([tree])
    >>> [(d.code, d.severity.value) for d in diags]
    [('EP301', 'error')]
    """
    del strict  # only the CLI turns warnings into failures
    checker = _Checker(tuple(files))
    checker.run()
    library = index_library(files)
    if rules:
        from .curation import curate  # curation reads the Library defined here

        checker.diagnostics.extend(curate(library, rule_sets=rules))
    return library, tuple(sort_diagnostics(checker.diagnostics))


# The engines count events in 32-bit integers; far below that, no person has a million
# events of one rule, so a larger `min` is a typo, never a meaningful threshold.
MAX_MIN = 1_000_000
NUMERIC_VARS = frozenset({"age", "year"})
_VAR_TYPES = {"age": "number", "year": "number", "emergency": "truth", "date": "date"}
# (left, operator, right) -> result: the only arithmetic the language has.
_ARITHMETIC = {("date", "+", "duration"): "date", ("duration", "+", "date"): "date",
               ("date", "-", "duration"): "date", ("date", "-", "date"): "duration"}


def _a(kind: str) -> str:
    return {"number": "a number", "truth": "a condition", "date": "a date", "duration": "a duration"}.get(kind, kind)
# FinnGen column names that curators write in PRE_CONDITIONS, and what `when` calls them.
FINNGEN_FIELDS = {"EVENT_AGE": "age", "EVENT_YEAR": "year", "APPROX_EVENT_DAY": "year",
                  "EMERG": "emergency", "EMERGENCY": "emergency", "AGE": "age", "YEAR": "year"}


@dataclass(frozen=True)
class _Ref:
    """One mention of an endpoint name: where, how, and whether it asks for cases."""
    name: str
    span: Span
    via: str  # include | require | controls
    positive: bool  # the person must be a case of `name` (include, or require X [and ...])


def _head(span: Span, length: int) -> Span:
    """The first `length` characters of a span (a keyword or vocabulary)."""
    return span.model_copy(update={"end_line": span.line, "end_column": span.column + length,
                                   "end_offset": span.offset + length})


def _tail(span: Span, length: int) -> Span:
    """The last `length` characters of a one-line span (the value of `parent X`)."""
    if span.line != span.end_line or span.end_column - length < span.column:
        return span
    return span.model_copy(update={"line": span.end_line, "column": span.end_column - length,
                                   "offset": span.end_offset - length})


def _did_you_mean(name: str, known) -> tuple[str, ...]:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return (f"did you mean {close[0]}?",) if close else ()


def _expr_refs(expr, via: str, positive: bool = True):
    """Endpoint names in an expression; positive only outside `not`/`or` and comparisons."""
    if isinstance(expr, ast.EndpointRef):
        yield _Ref(expr.name, expr.span, via, positive)
    elif isinstance(expr, ast.Attr):
        yield _Ref(expr.name, expr.span, via, False)
    elif isinstance(expr, ast.Compare):
        for o in expr.operands:
            yield from _expr_refs(o, via, False)
    elif isinstance(expr, ast.And):
        for a in expr.args:
            yield from _expr_refs(a, via, positive)
    elif isinstance(expr, ast.Or):
        for a in expr.args:
            yield from _expr_refs(a, via, False)
    elif isinstance(expr, ast.Not):
        yield from _expr_refs(expr.arg, via, False)
    elif isinstance(expr, ast.Arith):
        yield from _expr_refs(expr.left, via, False)
        yield from _expr_refs(expr.right, via, False)
    elif isinstance(expr, ast.Relation):
        for ref in (expr.subject, expr.anchor):
            if ref is not None:
                yield _Ref(ref.name, ref.span, via, False)


def endpoint_refs(endpoint: ast.Endpoint) -> tuple[_Ref, ...]:
    refs: list[_Ref] = []
    for item in endpoint.items:
        if isinstance(item, ast.Include):
            refs.extend(_Ref(n.name, n.span, "include", True) for n in item.names)
        elif isinstance(item, ast.Require):
            refs.extend(_expr_refs(item.condition, "require"))
        elif isinstance(item, ast.When):
            refs.extend(_expr_refs(item.condition, "when", False))
        elif isinstance(item, ast.Controls):
            for c in item.items:
                if isinstance(c, ast.ControlExclude):
                    refs.extend(_Ref(n.name, n.span, "controls", False) for n in c.names)
                else:
                    refs.extend(_expr_refs(c.condition, "controls", False))
    return tuple(refs)


class _Checker:
    def __init__(self, files: tuple[ast.File, ...]):
        self.files = files
        self.diagnostics: list[Diagnostic] = []
        self.endpoints: dict[str, ast.Endpoint] = {}
        self.codelists: dict[str, ast.Codelist] = {}

    def error(self, code: str, message: str, span: Span | None, *hints: str, related=()) -> None:
        self.diagnostics.append(Diagnostic.error(code, message, span, *hints, related=related))

    def warning(self, code: str, message: str, span: Span | None, *hints: str, related=()) -> None:
        self.diagnostics.append(Diagnostic.warning(code, message, span, *hints, related=related))

    def run(self) -> None:
        self.collect_names()
        for file in self.files:
            for decl in file.declarations:
                if isinstance(decl, ast.Endpoint):
                    self.check_endpoint(decl)
                elif isinstance(decl, ast.Codelist):
                    self.check_codelist(decl)
                else:
                    self.check_test(decl)
        self.check_cycles()

    # -- names -------------------------------------------------------------------
    def collect_names(self) -> None:
        for file in self.files:
            for decl in file.declarations:
                if isinstance(decl, ast.TestBlock):
                    continue  # tests have no global name
                table, what = ((self.endpoints, "endpoint") if isinstance(decl, ast.Endpoint)
                               else (self.codelists, "codelist"))
                first = table.get(decl.name)
                if first is None:
                    table[decl.name] = decl
                    continue
                code = "EP204" if what == "endpoint" else "EP205"
                self.error(code, f"{what} {decl.name} is defined twice (first at {first.name_span})",
                           decl.name_span, "rename one of them, or delete one: names are global across all files",
                           related=((f"{decl.name} first defined here", first.name_span),))

    def check_cycles(self) -> None:
        graph: dict[str, list[_Ref]] = {}
        for name, endpoint in self.endpoints.items():
            # A self-include is reported on its own (EP208).
            # A self-include is reported on its own (EP208); naming itself in `require` reads
            # its own candidate events, no cycle.
            graph[name] = [r for r in endpoint_refs(endpoint)
                           if r.name in self.endpoints and not (r.via == "include" and r.name == name)
                           and not _reads_itself(endpoint, r)]
        for component in _strongly_connected(graph):
            members = set(component)
            start = min(component)
            if len(component) == 1 and not any(r.name == start for r in graph[start]):
                continue
            path = _cycle_path(graph, start, members)
            chain = " -> ".join([*(ref_from for ref_from, _ in path), start])
            first_ref = path[0][1]
            self.error("EP206", f"dependency cycle: {chain}", first_ref.span,
                       "an endpoint cannot depend on itself through include, when, require or controls "
                       "(only its own `require` may name it, to read its own events); remove one of these references",
                       related=tuple((f"{src} refers to {ref.name} here", ref.span) for src, ref in path[1:]))

    # -- declarations --------------------------------------------------------------
    def check_codelist(self, codelist: ast.Codelist) -> None:
        for part in codelist.parts:
            for pattern in part.patterns:
                self.check_pattern(part.vocab, pattern, None)

    def check_test(self, test: ast.TestBlock) -> None:
        """A test names endpoints that exist and people it describes; its people are born
        before they are followed up, and each event line can be placed on its SOURCE's rows."""
        from .testing import TestDataError, event_columns

        people: dict[str, ast.TestPerson] = {}
        for person in test.persons:
            if person.id in people:
                self.error("EP701", f"person {person.id} is described twice in test {test.name!r}", person.span,
                           "give each made-up person of a test its own id",
                           related=(("first described here", people[person.id].span),))
            people.setdefault(person.id, person)
            if person.followed_until < person.born:
                self.error("EP702", f"person {person.id} is followed until before being born", person.span,
                           "`followed until` is the end of follow-up, after the birth date")
            for event in person.events:
                if not person.born <= event.date <= person.followed_until:
                    self.warning("EP703", f"event of {person.id} on {event.date} is outside the person's life "
                                 "and follow-up", event.span, "events fall between birth and the end of follow-up")
                try:
                    event_columns(event)
                except TestDataError as error:
                    self.error("EP704", str(error), error.span or event.span,
                               "a hospital row (INPAT, OUTPAT) takes icd10/icd9/icd8 codes, a purchase (PURCH) "
                               "atc/vnr/kela, primary care (PRIM_OUT) icd10/icpc2/procedure; see the registers "
                               "in docs/language.md")
        if not test.expects:
            self.warning("EP705", f"test {test.name!r} expects nothing", test.span,
                         "add `expect PERSON case|control|excluded of ENDPOINT` lines")
        for expect in test.expects:
            if expect.person.name not in people:
                self.error("EP706", f"test {test.name!r} describes no person {expect.person.name}",
                           expect.person.span, *_did_you_mean(expect.person.name, people))
            if expect.endpoint.name not in self.endpoints:
                self.error("EP201", f"unknown endpoint {expect.endpoint.name} (expected by test {test.name!r})",
                           expect.endpoint.span, *_did_you_mean(expect.endpoint.name, self.endpoints))
            if expect.status != "case" and (expect.at_date or expect.at_age is not None or expect.nevt is not None):
                self.error("EP707", f"only a case has a first event and events: `{expect.status}` takes no "
                           "`at` or `nevt`", expect.span, f"write `expect {expect.person.name} {expect.status} of "
                           f"{expect.endpoint.name}`")

    def check_endpoint(self, endpoint: ast.Endpoint) -> None:
        if not endpoint.rules and not endpoint.includes:
            self.warning("EP207", f"endpoint {endpoint.name} has no rule and no include: it can never have cases",
                         endpoint.name_span, "add a rule such as `hospital icd10 I21`, or `include OTHER`")
        self.check_refs(endpoint)
        self.check_meta(endpoint)
        self.check_sex(endpoint)
        whens = [i for i in endpoint.items if isinstance(i, ast.When)]
        for extra in whens[1:]:
            self.error("EP411", f"endpoint {endpoint.name} has more than one `when`", _head(extra.span, 4),
                       "combine the conditions with `and`: when age < 40 and year >= 2000",
                       related=(("first `when` here", whens[0].span),))
        for item in endpoint.items:
            if isinstance(item, ast.Rule):
                self.check_rule(item)
            elif isinstance(item, ast.When):
                self.check_condition(item.condition, "when")
            elif isinstance(item, ast.Require):
                self.check_condition(item.condition, "require")
            elif isinstance(item, ast.Controls):
                for c in item.items:
                    if isinstance(c, ast.ControlRequire):
                        self.check_condition(c.condition, "controls require")

    def check_refs(self, endpoint: ast.Endpoint) -> None:
        for ref in endpoint_refs(endpoint):
            if ref.via == "when" and ref.name in FINNGEN_FIELDS and ref.name not in self.endpoints:
                continue  # a FinnGen column name: EP407 says what to write instead
            if ref.name not in self.endpoints:
                where = {"include": "included", "require": "required", "controls": "used in controls",
                         "when": "used in when"}[ref.via]
                self.error("EP201", f"unknown endpoint {ref.name} ({where} by {endpoint.name})",
                           _head(ref.span, len(ref.name)), *_did_you_mean(ref.name, self.endpoints))
            elif ref.via == "include" and ref.name == endpoint.name:
                self.error("EP208", f"endpoint {endpoint.name} includes itself", ref.span,
                           "remove it from `include`: an endpoint's own events are already its events")
        parents = [m for m in endpoint.items if isinstance(m, ast.Meta) and m.key == "parent" and not m.custom]
        for meta in parents:
            name = str(meta.value)
            if name not in self.endpoints:
                self.warning("EP202", f"parent {name} is not a known endpoint", _tail(meta.span, len(name)),
                             *_did_you_mean(name, self.endpoints),
                             "parent is metadata only; it does not change who is a case")

    def check_meta(self, endpoint: ast.Endpoint) -> None:
        seen: dict[tuple[str, bool], ast.Meta] = {}
        for meta in endpoint.items:
            if not isinstance(meta, ast.Meta):
                continue
            key = (meta.key, meta.custom)
            if key in seen:
                self.warning("EP209", f"{meta.key} is given twice in {endpoint.name}; the last one is kept",
                             meta.span, "remove one of them",
                             related=((f"first {meta.key} here", seen[key].span),))
            else:
                seen[key] = meta
            if meta.key == "omit" and not meta.custom and meta.value not in ("1", "2"):
                self.error("EP210", f"omit must be 1 or 2, not {meta.value}", _tail(meta.span, len(str(meta.value))),
                           "omit 1: not analysed; omit 2: not analysed, kept for reference (FinnGen OMIT)")

    def check_sex(self, endpoint: ast.Endpoint) -> None:
        sexes = [i for i in endpoint.items if isinstance(i, ast.Sex)]
        for item in sexes[1:]:
            if item.value != sexes[0].value:
                self.error("EP211", f"endpoint {endpoint.name} says both sex {sexes[0].value} and sex {item.value}",
                           item.span, "keep one `sex` line",
                           related=(("first `sex` here", sexes[0].span),))
        own = endpoint.sex
        if own == "any":
            return
        for ref in endpoint_refs(endpoint):
            other = self.endpoints.get(ref.name)
            if other is None or not ref.positive or other.sex in ("any", own) or ref.name == endpoint.name:
                continue
            if ref.via == "require":
                message = (f"{endpoint.name} can never have cases: it is sex {own} but requires "
                           f"{ref.name}, which is sex {other.sex}")
            else:
                message = (f"the events included from {ref.name} (sex {other.sex}) can never have cases "
                           f"in {endpoint.name} (sex {own})")
            self.warning("EP212", message, _head(ref.span, len(ref.name)),
                         f"check the `sex` lines of {endpoint.name} and {ref.name}")

    # -- rules -----------------------------------------------------------------------
    def check_rule(self, rule: ast.Rule) -> None:
        allowed = ast.SOURCES.get(rule.source, ())
        if rule.codelist is not None:
            self.check_rule_codelist(rule, allowed)
        seen: dict[str, ast.VocabClause] = {}
        for clause in rule.clauses:
            vocab_span = _head(clause.span, len(clause.vocab))
            if clause.vocab not in allowed:
                self.error("EP301", f"vocabulary {clause.vocab} is not used by {rule.source}", vocab_span,
                           f"{rule.source} rows are matched by {', '.join(allowed)}",
                           *self._sources_for(clause.vocab))
            elif clause.vocab in seen:
                self.warning("EP307", f"{clause.vocab} appears twice in one {rule.source} rule", vocab_span,
                             f"join the patterns: {clause.vocab} A | B",
                             related=((f"first {clause.vocab} here", _head(seen[clause.vocab].span, len(clause.vocab))),))
            else:
                seen[clause.vocab] = clause
            for pattern in (*clause.patterns, *clause.excepts):
                self.check_pattern(clause.vocab, pattern, rule.source)
        self.check_options(rule)

    def check_rule_codelist(self, rule: ast.Rule, allowed: tuple[str, ...]) -> None:
        """`SOURCE @NAME`: the codelist exists and the source takes each of its vocabularies
        (the patterns themselves are checked with the codelist)."""
        ref = rule.codelist
        codelist = self.codelists.get(ref.name)
        if codelist is None:
            self.error("EP203", f"unknown codelist @{ref.name}", ref.span, *_did_you_mean(ref.name, self.codelists))
            return
        for vocab in codelist.vocabs:
            if vocab not in allowed:
                self.error("EP301", f"vocabulary {vocab} of codelist @{ref.name} is not used by {rule.source}",
                           ref.span, f"{rule.source} rows are matched by {', '.join(allowed)}",
                           *self._sources_for(vocab),
                           related=((f"@{ref.name} declared here", codelist.name_span),))

    @staticmethod
    def _sources_for(vocab: str) -> tuple[str, ...]:
        sources = [s for s, vocabs in ast.SOURCES.items() if vocab in vocabs]
        return (f"{vocab} is used by {', '.join(sources)}",) if sources else ()

    def check_pattern(self, vocab: str, pattern, source: str | None) -> None:
        if isinstance(pattern, ast.Combination):
            if vocab != "icd10" or (source is not None and not allows(source, "combinations")):
                where = f"{source} {vocab}" if source else f"a {vocab} codelist"
                self.error("EP306", f"combination codes (A&B) are not allowed in {where}", pattern.span,
                           "A&B matches CODE1 and CODE2 of the same event, which only "
                           f"{in_words(allowing('combinations'))} icd10 have")
            self.check_pattern(vocab, pattern.first, source)
            self.check_pattern(vocab, pattern.second, source)
            return
        if isinstance(pattern, ast.CodelistRef):
            codelist = self.codelists.get(pattern.name)
            if codelist is None:
                self.error("EP203", f"unknown codelist @{pattern.name}", pattern.span,
                           *_did_you_mean(pattern.name, self.codelists))
            elif vocab not in codelist.vocabs:
                held = " and ".join(codelist.vocabs)
                self.error("EP305", f"codelist @{pattern.name} holds {held} codes, but is used as {vocab}",
                           pattern.span, f"use it after `{codelist.vocabs[0]}`, or declare a codelist of {vocab}",
                           related=((f"@{pattern.name} declared here", codelist.name_span),))
            return
        too_big = codes.pattern_limit(pattern)
        if too_big:
            self.error("EP308", too_big[0], pattern.span, too_big[1])
            return
        if isinstance(pattern, ast.Range):
            problem = self._range_problem(pattern)
            if problem:
                self.error("EP303", problem, pattern.span, "write both ends as plain codes of the same "
                           "length, lower first: E10-E14")
                return
        if isinstance(pattern, ast.Regex):
            problem = codes.regex_error(pattern.regex)
            if problem:
                self.error("EP304", f"invalid regular expression: {problem}", pattern.span)
                return
        if isinstance(pattern, (ast.Code, ast.Exact)):
            problem = codes.regex_error(pattern.text)
            if problem:
                self.error("EP304", f"invalid character class in {pattern.text}: {problem}", pattern.span,
                           "a class lists characters or ranges of them in order: F3[2-3], C34.[123457]")
                return
        if not codes.can_match(vocab, pattern):
            self.warning("EP302", f"{pattern_text(pattern)} cannot match any well-formed {vocab} code", pattern.span,
                         f"{vocab} codes look like {codes.VOCABULARY_EXAMPLES.get(vocab, '?')}",
                         *self._other_vocabs(vocab, pattern, source))

    @staticmethod
    def _other_vocabs(vocab: str, pattern, source: str | None) -> tuple[str, ...]:
        candidates = ast.SOURCES.get(source, ()) if source else ()
        fits = [v for v in candidates if v != vocab and codes.can_match(v, pattern)]
        return (f"it looks like {' or '.join(fits)}",) if fits else ()

    @staticmethod
    def _range_problem(pattern: ast.Range) -> str | None:
        start, end = pattern.start, pattern.end
        if not re.fullmatch(r"[0-9A-Z]+", start) or not re.fullmatch(r"[0-9A-Z]+", end):
            return f"range {start}-{end}: the ends must be plain codes, without '.' or [...]"
        if len(start) != len(end):
            return f"range {start}-{end}: the ends differ in length ({len(start)} and {len(end)} characters)"
        if codes._key(start) > codes._key(end):
            return f"range {start}-{end} is reversed: {start} comes after {end}"
        return None

    def check_options(self, rule: ast.Rule) -> None:
        seen: dict[str, ast.Option] = {}
        for option in rule.options:
            shown = option.name.replace("_", " ")
            if option.name in seen:
                self.warning("EP406", f"option {shown} is given twice", option.span, "remove one",
                             related=(("first here", seen[option.name].span),))
                continue
            seen[option.name] = option
            if option.name == "min" and (option.value is None or not 1 <= option.value <= MAX_MIN):
                what = ("a whole number" if option.value is None else "at least 1" if option.value < 1
                        else f"at most {MAX_MIN:,}")
                self.error("EP401", f"min must be {what}", option.span,
                           "min N counts a person only with at least N events of this rule; min 1 is the default "
                           "(min 3 for purchase)")
            elif option.name == "main" and not allows(rule.source, "main"):
                self.error("EP403", f"main is not an option of {rule.source}", option.span,
                           f"main keeps the main diagnosis, which only {in_words(allowing('main'))} rows have")
            elif option.name == "with_atc" and not allows(rule.source, "with_atc"):
                self.error("EP404", f"with atc is not an option of {rule.source}", option.span,
                           "with atc keeps events with an adverse-drug ATC (CODE3), which only "
                           f"{in_words(allowing('with_atc'))} rows have")
            elif option.name.startswith("with_") and option.name != "with_atc":
                self.error("EP405", f"with {option.name[5:]} is not an option; only `with atc` exists",
                           option.span, "with atc keeps events whose CODE3 holds an ATC code")
            elif option.name not in ast.OPTIONS and not option.name.startswith("with_"):
                self.error("EP405", f"unknown option {shown}", option.span,
                           f"options are: {', '.join(o.replace('_', ' ') for o in ast.OPTIONS)}")
        if "single" in seen and "min" in seen:
            self.error("EP402", "single and min cannot be used together", seen["min"].span,
                       "single means min 1: keep one of them", related=(("single here", seen["single"].span),))

    # -- conditions --------------------------------------------------------------------
    def check_condition(self, expr, where: str) -> None:
        self._a_condition(expr, where, self._value_type(expr, where))

    def _a_condition(self, expr, where: str, kind: str) -> None:
        """Report EP410 where `expr`, of value type `kind`, stands where a condition must."""
        if kind in ("date", "duration"):
            self.error("EP410", "a date or a duration is not a condition", expr.span,
                       f"compare it: {where} date >= 1998-01-01, {where} date - X.date <= 30 days")
        elif kind != "number":
            return
        elif isinstance(expr, ast.Var):
            self.error("EP410", f"{expr.name} is a number, not a condition", expr.span,
                       f"compare it: {where} {expr.name} < 40")
        elif isinstance(expr, ast.Attr):
            self.error("EP410", f"{expr.name}.{expr.attr} is a number, not a condition", expr.span,
                       f"compare it: {expr.name}.{expr.attr} > 1")
        else:
            self.error("EP410", "a number is not a condition", expr.span,
                       f"compare something with it, e.g. {'age' if where == 'when' else 'X.count'} > 1")

    def _value_type(self, expr, where: str) -> str:
        """'number', 'truth', 'date', 'duration' or 'unknown' (already reported); reports
        what does not belong in `where` on the way."""
        in_when = where == "when"
        if isinstance(expr, ast.Number):
            return "number"
        if isinstance(expr, ast.DateLit):
            return "date"
        if isinstance(expr, ast.DurationLit):
            return "duration"
        if isinstance(expr, ast.Var):
            if not in_when:
                self.error("EP408", f"{expr.name} is an event field and cannot be used in {where}", expr.span,
                           f"{where} is about the person: use an endpoint's attribute such as X.age, "
                           "or move the filter to `when`")
                return "unknown"  # reported: say nothing more about this operand
            return _VAR_TYPES[expr.name]
        if isinstance(expr, ast.EndpointRef):
            field = FINNGEN_FIELDS.get(expr.name)
            if in_when and field and expr.name not in self.endpoints:
                self.error("EP407", f"{expr.name} is a FinnGen column, not an event field of `when`",
                           expr.span, f"write `{field}` instead of {expr.name}")
                return "unknown"
            return "truth"
        if isinstance(expr, ast.Attr):
            return "date" if expr.attr == "date" else "number"
        if isinstance(expr, ast.Relation):
            if expr.subject is None and not in_when:
                self.error("EP414", f"a time relation in {where} needs an endpoint before it", expr.span,
                           f"write which endpoint's first event it is about, e.g. {where} A "
                           f"{fmt_expr_text(expr)}; without one, only `when` has an event to compare")
            return "truth"
        if isinstance(expr, ast.Arith):
            return self._arith_type(expr, where)
        if isinstance(expr, ast.Compare):
            kinds = [self._value_type(operand, where) for operand in expr.operands]
            for operand, kind in zip(expr.operands, kinds):
                if kind == "truth":
                    self._not_a_number(operand)
            known = [k for k in kinds if k in ("number", "date", "duration")]
            if len(set(known)) > 1:
                self.error("EP413", f"cannot compare {_a(known[0])} with {_a(next(k for k in known if k != known[0]))}",
                           expr.span, "compare numbers with numbers, dates with dates (`date >= 1998-01-01`) "
                           "and durations with durations (`date - X.date <= 30 days`)")
            return "truth"
        if isinstance(expr, (ast.And, ast.Or)):
            for arg in expr.args:
                self._a_condition(arg, where, self._value_type(arg, where))
            return "truth"
        if isinstance(expr, ast.Not):
            self._a_condition(expr.arg, where, self._value_type(expr.arg, where))
            return "truth"
        raise TypeError(f"{type(expr).__name__} is not an expression node")

    def _arith_type(self, expr: ast.Arith, where: str) -> str:
        """A date plus or minus a duration is a date, a date minus a date a duration;
        nothing else adds up."""
        left, right = self._value_type(expr.left, where), self._value_type(expr.right, where)
        if "unknown" in (left, right):
            return "unknown"
        result = _ARITHMETIC.get((left, expr.op, right))
        if result is not None:
            return result
        hint = ("numbers do not add up in conditions: compare them (`X.age <= Y.age + 1` is written "
                "`X.date <= Y.date + 1 year`, on dates), and subtract dates, not ages "
                "(`X.date - Y.date <= 1 year`)" if left == right == "number" else
                "a date plus or minus a duration is a date, and a date minus a date is a duration "
                "(`date - X.date <= 30 days`, `X.date + 1 year`)")
        self.error("EP412", f"cannot compute {_a(left)} {expr.op} {_a(right)}", expr.span, hint)
        return "unknown"

    def _not_a_number(self, expr) -> None:
        if isinstance(expr, ast.EndpointRef):
            self.error("EP409", f"{expr.name} is true or false, not a number: it cannot be compared", expr.span,
                       f"compare {expr.name}.count, {expr.name}.age or {expr.name}.year")
        elif isinstance(expr, ast.Var):
            self.error("EP409", "emergency is true or false, not a number: it cannot be compared", expr.span,
                       "write `when emergency` or `when not emergency`")
        else:
            self.error("EP409", "a condition is not a number: it cannot be compared", expr.span,
                       "put parentheses around the comparison you mean, or compare numbers only")


def _strongly_connected(graph: Mapping[str, list[_Ref]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so deep chains cannot overflow the stack."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = [r.name for r in graph[node]]
            recurse = False
            while i < len(successors):
                nxt = successors[i]
                i += 1
                if nxt not in index:
                    work.append((node, i))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                result.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result


def _cycle_path(graph: Mapping[str, list[_Ref]], start: str, members: set[str]) -> list[tuple[str, _Ref]]:
    """A shortest cycle from `start` back to itself inside one component (breadth first)."""
    previous: dict[str, tuple[str, _Ref]] = {}
    queue = [start]
    seen = {start}
    while queue:
        node = queue.pop(0)
        for ref in graph[node]:
            if ref.name not in members:
                continue
            if ref.name == start:
                path = [(node, ref)]
                while node != start:
                    node, back = previous[node]
                    path.append((node, back))
                return path[::-1]
            if ref.name not in seen:
                seen.add(ref.name)
                previous[ref.name] = (node, ref)
                queue.append(ref.name)
    raise AssertionError("a strongly connected component always has a cycle")  # pragma: no cover
