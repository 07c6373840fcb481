"""The exporter: ASTs of the language -> a FinnGen sheet.

Input: parsed `.ep` files (and the codelists their patterns refer to).
Output: an `ExportResult`: the FinnGen header (the DF6 column set, plus the optional and
extra columns some endpoint uses), one row per endpoint, and an EP620 warning for each
thing FinnGen's columns cannot say; `export_finngen` also writes it as a TSV.
What the importer kept verbatim in `meta "COLUMN"` goes back into its column.

The promise: an endpoint exported without a warning is imported back to the same meaning
(the same plan, up to spelling: `E10-E14` comes back as `E1[0-4]`). So a construct is
written only in a form the importer reads back as it was, and everything else is an
EP620 warning naming the endpoint and the construct. What decides it is how the importer
reads a row: each registry's columns make at most one rule (hospital and death one more
for the `%` codes; purchases one per column), the flag columns (HD_MAINONLY, HD_ICD_10_ATC,
*_NEEDOTHER) and the *_EXCL columns apply to every code of their columns, and FinnGen
knows no `min` but purchases' 3 (1 with SINGLE_OK).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from .. import ast
from ..check import endpoint_dependencies
from ..diagnostics import Diagnostic
from ..fmt import ast_equal, expr_text, option_text, pattern_text as language_text
from ..registers import REGISTERS
from ..results import write_text_atomic
from .conditions import ConditionParser, Untranslatable
from .patterns import finngen_alternatives, icd_versions, is_code_pair, split_alternatives
from .sheet import (
    CANCER, DEATH, EXPORT_COLUMNS, HOSPITAL, ISSUE_KEY, META_COLUMNS, NAME_KEY, OPERATION, OPTIONAL_EXPORT_COLUMNS,
    PRIMARY, PURCHASE,
)


@dataclass(frozen=True)
class ExportResult:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    diagnostics: tuple[Diagnostic, ...]
    # the endpoints exported with a loss (an EP620 warning each), in row order; every other
    # endpoint imports back to the same plan
    lossy: tuple[str, ...] = ()


def export_finngen(files: Sequence[ast.File], out_path: str | Path, *,
                   codelists: Mapping[str, ast.Codelist] | None = None) -> ExportResult:
    """Write `files` as a FinnGen definition TSV (DF6 column set, plus used extras), atomically."""
    result = export_rows(files, codelists=codelists)
    lines = ["\t".join(result.header)] + ["\t".join(row) for row in result.rows]
    write_text_atomic(Path(out_path), "\n".join(lines) + "\n")
    return result


def export_rows(files: Sequence[ast.File], *, codelists: Mapping[str, ast.Codelist] | None = None) -> ExportResult:
    """The FinnGen table of `files`: header, one row per endpoint, and what could not be said."""
    endpoints = [e for f in files for e in f.endpoints]
    if codelists is None:
        codelists = {c.name: c for f in files for c in f.codelists}
    raw_names = {e.name: str(e.meta.get(NAME_KEY, e.name)) for e in endpoints}
    exporter = _Exporter(raw_names, codelists)
    records = [exporter.endpoint(e) for e in endpoints]
    used = {k for r in records for k, v in r.items() if v}
    header = [c for c in EXPORT_COLUMNS if c not in OPTIONAL_EXPORT_COLUMNS or c in used]
    extra = list(dict.fromkeys(k for r in records for k in r if k not in EXPORT_COLUMNS))
    header += extra
    rows = tuple(tuple(_tsv_cell(r.get(c, "")) for c in header) for r in records)
    lossy = tuple(dict.fromkeys(name for name, _ in exporter.diagnostics))
    return ExportResult(tuple(header), rows, _with_dependents(exporter.diagnostics, endpoints), lossy)


def _tsv_cell(value: str) -> str:
    # A TSV cell cannot hold tabs or line breaks.
    return re.sub(r"[\t\r\n]+", " ", value)


def _with_dependents(found: Sequence[tuple[str, Diagnostic]], endpoints: Sequence[ast.Endpoint]
                     ) -> tuple[Diagnostic, ...]:
    """The warnings, the first of each endpoint with a hint naming the endpoints that read
    it: their rows are exact, but their results change with it."""
    readers: dict[str, list[str]] = {}
    for e in endpoints:
        for name in endpoint_dependencies(e):
            readers.setdefault(name, []).append(e.name)
    out, hinted = [], set()
    for name, diagnostic in found:
        if name not in hinted:
            hinted.add(name)
            affected, stack = {}, list(readers.get(name, ()))
            while stack:
                reader = stack.pop()
                if reader not in affected and reader != name:
                    affected[reader] = None
                    stack.extend(readers.get(reader, ()))
            if affected:
                names = sorted(affected)
                listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                diagnostic = diagnostic.model_copy(update={"hints": (
                    *diagnostic.hints, f"{listed} read{'s' if len(names) == 1 else ''} {name}, so "
                    f"{'its' if len(names) == 1 else 'their'} results change with it")})
        out.append(diagnostic)
    return tuple(out)


@dataclass(frozen=True)
class _Layout:
    """How FinnGen's columns hold one registry's rules."""

    columns: Mapping[str, str]  # vocabulary -> code column
    excepts: frozenset[str] = frozenset()  # vocabularies with an _EXCL column
    # vocabularies of one rule must match the same event (reimbursement, purchase, cancer)
    conjunctive: bool = False
    main: str | None = None  # the MAINONLY column
    with_atc: str | None = None  # the column that asks for an adverse-effect ATC code
    mode: bool = False  # `%` codes
    # the `min` FinnGen implies, and the purchases' one with SINGLE_OK
    mins: tuple[int, ...] = (1,)
    # purchases: KELA_ATC and KELA_VNRO are separate rules, each with a _NEEDOTHER column
    needs_other: bool = False


def _vocab_columns(pairs) -> dict[str, str]:
    return {vocab: column for column, vocab in pairs}


_LAYOUTS: Mapping[str, _Layout] = MappingProxyType({
    "hospital": _Layout(_vocab_columns(HOSPITAL), excepts=frozenset(("icd10", "icd9", "icd8")), main="HD_MAINONLY",
                        with_atc="HD_ICD_10_ATC", mode=True),
    "death": _Layout(_vocab_columns(DEATH), excepts=frozenset(("icd10", "icd9", "icd8")), main="COD_MAINONLY",
                     mode=True),
    "primary": _Layout(_vocab_columns(PRIMARY)),
    "operation": _Layout(_vocab_columns(OPERATION)),
    "reimbursement": _Layout({"kela": "KELA_REIMB", "icd10": "KELA_REIMB_ICD", "icd9": "KELA_REIMB_ICD"},
                             conjunctive=True),
    "purchase": _Layout(_vocab_columns(PURCHASE), conjunctive=True, mins=(REGISTERS["purchase"].default_min, 1),
                        needs_other=True),
    "cancer": _Layout(_vocab_columns(CANCER), excepts=frozenset(("topography", "morphology")), conjunctive=True),
})


@dataclass
class _RuleOptions:
    """A rule's options as FinnGen's columns hold them."""

    main: bool = False
    with_atc: bool = False
    mode: bool = False
    needs_other: bool = False
    min_events: int = 1


@dataclass
class _Written:
    """One clause as written into a column, for the checks across rules."""

    rule: ast.Rule
    options: _RuleOptions
    clause: ast.VocabClause
    column: str
    codes: tuple[str, ...]  # the FinnGen alternatives, without `%`
    excepts: frozenset[str]


class _Exporter:
    """Turns endpoints into FinnGen records (column -> cell text), collecting the warnings."""

    def __init__(self, raw_names: Mapping[str, str], codelists: Mapping[str, ast.Codelist]):
        self.raw_names = raw_names
        self.language_names = {raw: name for name, raw in raw_names.items()}
        self.codelists = codelists
        self.diagnostics: list[tuple[str, Diagnostic]] = []
        self.endpoint_name = ""

    def warn(self, node: Any, message: str) -> None:
        self.diagnostics.append((self.endpoint_name, Diagnostic.warning(
            "EP620", f"{self.endpoint_name}: {message}", getattr(node, "span", None))))

    def endpoint(self, endpoint: ast.Endpoint) -> dict[str, str]:
        self.endpoint_name = endpoint.name
        record: dict[str, list[str]] = {}

        def put(column: str, *values: str) -> None:
            bucket = record.setdefault(column, [])
            bucket.extend(v for v in values if v and v not in bucket)

        put("NAME", self.raw_names[endpoint.name])
        rules_put = False
        for item in endpoint.items:
            if isinstance(item, ast.Rule) and not rules_put:
                # All at once: how one rule is written depends on the others of its registry.
                self._put_rules(endpoint.rules, put)
                rules_put = True
            elif isinstance(item, ast.Meta):
                self._put_meta(item, put)
            elif isinstance(item, ast.Sex):
                if item.value != "any":
                    put("SEX", "1" if item.value == "male" else "2")
            elif isinstance(item, ast.Include):
                put("INCLUDE", *(self._finngen_name(n.name) for n in item.names))
            elif isinstance(item, ast.When):
                self._put_condition("PRE_CONDITIONS", "when", item, put)
            elif isinstance(item, ast.Require):
                self._put_condition("CONDITIONS", "require", item, put)
            elif isinstance(item, ast.Controls):
                for control in item.items:
                    if isinstance(control, ast.ControlExclude):
                        put("CONTROL_EXCLUDE", *(self._finngen_name(n.name) for n in control.names))
                    else:
                        self._put_condition("CONTROL_CONDITIONS", "controls require", control, put)
        joiners = {"TAGS": ",", "CONDITIONS": "&", "PRE_CONDITIONS": "&", "CONTROL_CONDITIONS": "&"}
        out = {}
        for column, values in record.items():
            if column in ("CONDITIONS", "PRE_CONDITIONS", "CONTROL_CONDITIONS") and len(values) > 1:
                values = [f"({v})" if ("|" in v) else v for v in values]
            out[column] = joiners.get(column, "|").join(values)
        return out

    def _finngen_name(self, name: str) -> str:
        return self.raw_names.get(name, name)

    def _put_meta(self, meta: ast.Meta, put) -> None:
        value = meta.value
        if meta.custom:
            if meta.key in (ISSUE_KEY, NAME_KEY):
                return
            put(meta.key, str(value))
            return
        column = {v: k for k, v in META_COLUMNS.items()}.get(meta.key)
        if column is None:
            return
        if meta.key == "tags":
            tags = value if isinstance(value, tuple) else (value,)
            put("TAGS", *("#" + t for t in tags))
        else:
            put(column, str(value))

    # -- rules ------------------------------------------------------------------------------
    def _put_rules(self, rules: Sequence[ast.Rule], put) -> None:
        sources: dict[str, list[_Written]] = {}
        for rule in rules:
            layout = _LAYOUTS.get(rule.source)
            if layout is None:
                self.warn(rule, f"`{rule.source}` rules have no FinnGen column; not exported")
                continue
            written = sources.setdefault(rule.source, [])
            options = self._rule_options(rule, layout)
            columns, vocabs = set(), []
            for clause in ast.rule_clauses(rule, self.codelists):
                vocabs.append(clause.vocab)
                column = layout.columns.get(clause.vocab)
                if column is None:
                    self.warn(clause, f"{rule.source} {clause.vocab} codes have no FinnGen column; not exported")
                    continue
                columns.add(column)
                excepts: list[str] = []
                if clause.excepts:
                    if clause.vocab in layout.excepts:
                        excepts = self._alternatives(rule.source, clause.excepts, clause.vocab)
                        put(column + "_EXCL", *excepts)
                    else:
                        self.warn(clause, f"`except` of {rule.source} {clause.vocab} codes has no FinnGen column; "
                                  "not exported")
                codes = tuple(self._alternatives(rule.source, clause.patterns, clause.vocab))
                put(column, *(("%" if options.mode else "") + a for a in codes))
                written.append(_Written(rule, options, clause, column, codes, frozenset(excepts)))
            if layout.needs_other and len(columns) > 1:
                self.warn(rule, f"a {rule.source} rule with {' and '.join(vocabs)} "
                          f"codes selects events that have both; FinnGen's {' and '.join(sorted(columns))} are "
                          "separate rules; exported as alternatives")
        for source, written in sources.items():
            self._check_shared(source, written, put)

    def _rule_options(self, rule: ast.Rule, layout: _Layout) -> _RuleOptions:
        """The rule's options, each one FinnGen cannot hold warned."""
        options = _RuleOptions(min_events=layout.mins[0])
        source, counted = rule.source, None
        for option in rule.options:
            name = option.name
            if name in ("min", "single"):
                options.min_events = 1 if name == "single" else option.value
                counted = option
            elif (name == "needs_other" and layout.needs_other) or (name == "main" and layout.main) or \
                    (name == "with_atc" and layout.with_atc) or (name == "mode" and layout.mode):
                setattr(options, name, True)
            else:
                self.warn(option, f"`{option_text(option)}` of a {source} rule has no FinnGen column; "
                          "exported without it")
        lost = []
        if counted is not None and counted.window is not None:
            lost.append("FinnGen counts events, never their spacing")
        if options.min_events not in layout.mins:
            lost.append(f"FinnGen counts {layout.mins[0]} purchases, or 1 with SINGLE_OK" if layout.needs_other
                        else "FinnGen's columns hold no `min` (one event is enough)")
            options.min_events = layout.mins[0]
        elif options.needs_other and options.min_events != layout.mins[0]:
            lost.append("the _NEEDOTHER column holds YES (`needs other`) or SINGLE_OK (`single`), not both")
            options.min_events = layout.mins[0]
        if lost:
            self.warn(counted, f"`{option_text(counted)}` of a {source} rule: {'; '.join(lost)}; exported "
                      f"as {options.min_events} event{'s' if options.min_events > 1 else ''}")
        return options

    def _check_shared(self, source: str, written: list[_Written], put) -> None:
        """What the rules of one registry share in FinnGen's row: a rule per column group
        (and per `%`), the flag columns and the _EXCL lists; a difference is a loss."""
        layout = _LAYOUTS[source]
        rules: dict[Any, list[_Written]] = {}
        for w in written:
            key = w.column if layout.needs_other else w.options.mode
            rules.setdefault(key, []).append(w)
        for group in rules.values():
            distinct = list({id(w.rule): w for w in group}.values())
            if layout.needs_other:
                first = distinct[0].options
                put(group[0].column + "_NEEDOTHER", "YES" if first.needs_other else
                    "SINGLE_OK" if first.min_events == 1 else "")
            if len(distinct) < 2:
                continue
            columns = {w.column for w in group}
            why = ("their events would be counted together" if any(w.options.min_events > 1 for w in distinct)
                   else "`mode` would rank their codes together" if any(w.options.mode for w in distinct)
                   else "the codes of each rule must match the same event"
                   if layout.conjunctive and len(columns) > 1 else None)
            if why is not None:
                self.warn(distinct[1].rule, f"{len(distinct)} {source} rules go into the same FinnGen columns "
                          f"({', '.join(sorted(columns))}), and merged {why}; exported merged")
        if layout.main:
            flags = {w.options.main for w in written}
            if flags == {True}:
                put(layout.main, "YES")
            elif len(flags) > 1:
                self.warn(written[0].rule, f"`main` on some {source} rules only: {layout.main} applies to "
                          "all of them; exported without it")
        if layout.with_atc:
            icd10 = {w.options.with_atc for w in written if w.clause.vocab == "icd10"}
            others = [w for w in written if w.options.with_atc and w.clause.vocab != "icd10"]
            if icd10 == {True}:
                put(layout.with_atc, "ANY")
            elif len(icd10) > 1:
                self.warn(written[0].rule, f"`with atc` on some {source} ICD-10 codes only: "
                          f"{layout.with_atc} applies to all of them; exported without it")
            for w in others:
                self.warn(w.clause, f"`with atc` of {source} {w.clause.vocab} codes: {layout.with_atc} asks for "
                          "an ATC code on ICD-10 events only; exported without it")
        for column in dict.fromkeys(w.column for w in written):
            lists = {w.excepts for w in written if w.column == column}
            if len(lists) > 1:
                self.warn(written[0].rule, f"{source} rules with different `except` codes in {column}: "
                          f"{column}_EXCL applies to all its codes; exported with all of them")
        self._check_icd_versions(source, written)

    def _check_icd_versions(self, source: str, written: list[_Written]) -> None:
        """KELA_REIMB_ICD holds ICD-10 and ICD-9 codes, told apart by their first character."""
        seen: dict[str, set[str]] = {}
        for w in written:
            if w.column == "KELA_REIMB_ICD":
                for text in w.codes:
                    seen.setdefault(text, set()).add(w.clause.vocab)
        for text, vocabs in seen.items():
            back = set(icd_versions(text))
            if back != vocabs:
                self.warn(next(w.clause for w in written if w.column == "KELA_REIMB_ICD"),
                          f"{source} {' and '.join(sorted(vocabs))} `{text}`: KELA_REIMB_ICD tells ICD-10 from "
                          f"ICD-9 codes by their first character, so it would be read as "
                          f"{' and '.join(sorted(back))}; exported as written")

    def _alternatives(self, source: str, patterns: Sequence[Any], vocab: str) -> list[str]:
        """FinnGen alternatives of patterns, codelists spelled out; a regex that FinnGen
        would read as something else is warned."""
        out: list[str] = []
        for pattern in patterns:
            if isinstance(pattern, ast.CodelistRef):
                codelist = self.codelists.get(pattern.name)
                inner = codelist.patterns_of(vocab) if codelist is not None else None
                if inner is None:
                    self.warn(pattern, f"codelist @{pattern.name} has no {vocab} codes; not exported")
                    continue
                out.extend(self._alternatives(source, inner, vocab))
            elif isinstance(pattern, ast.Combination):
                firsts = self._alternatives(source, (pattern.first,), vocab)
                seconds = self._alternatives(source, (pattern.second,), vocab)
                out.extend(f"{a}&{b}" for a in firsts for b in seconds)
            else:
                if isinstance(pattern, ast.Regex):
                    self._check_regex(source, pattern)
                out.extend(finngen_alternatives(pattern))
        return out

    def _check_regex(self, source: str, pattern: ast.Regex) -> None:
        """A regex means the same in FinnGen's column unless its text is one of FinnGen's
        own signs (`ANY`, `$!$`, a leading `%`, `A&B` in a registry with CODE2)."""
        special = [a for a in split_alternatives(pattern.regex)
                   if a in ("ANY", "$!$") or a.startswith("%") or is_code_pair(a, source)]
        if special:
            self.warn(pattern, f"{language_text(pattern)}: FinnGen reads `{special[0]}` as its own sign, not as "
                      "a regular expression; exported as written")

    # -- conditions -------------------------------------------------------------------------
    def _put_condition(self, column: str, keyword: str, item: Any, put) -> None:
        """A condition in FinnGen's column, when the importer reads the text back as the same
        condition; else a warning saying why."""
        problem = self._condition_problem(column, item.condition)
        text = None
        if problem is None:
            text = self._condition_text(item.condition)
            try:
                back = ConditionParser(text, item.span, self.language_names,
                                       event_level=column == "PRE_CONDITIONS").parse()
            except Untranslatable as error:
                problem = f"cannot be written so that FinnGen reads it back ({error})"
            else:
                if not ast_equal(back, item.condition):
                    problem = f"would be read back as `{expr_text(back)}`"
        if problem is not None:
            self.warn(item, f"`{keyword} {expr_text(item.condition)}` {problem}; not exported")
            return
        put(column, text)

    @staticmethod
    def _condition_problem(column: str, condition: Any) -> str | None:
        nodes = list(_expression_nodes(condition))
        if any(n.kind in _TIME_KINDS or getattr(n, "name", None) == "date" or getattr(n, "attr", None) == "date"
               for n in nodes):
            return f"uses dates or time relations, which {column} cannot hold"
        if column == "PRE_CONDITIONS" and any(n.kind in ("ref", "attr") for n in nodes):
            return "reads other endpoints, and PRE_CONDITIONS reads only EVENT_AGE, EVENT_YEAR and EMERG"
        return None

    def _condition_text(self, expr: Any, context: int = 0) -> str:
        precedence = {"or": 1, "and": 2, "not": 3, "compare": 4}
        kind = expr.kind
        if kind == "number":
            return expr.text
        if kind == "var":
            return {"age": "EVENT_AGE", "year": "EVENT_YEAR", "emergency": "EMERG"}[expr.name]
        if kind == "ref":
            return self._finngen_name(expr.name)
        if kind == "attr":
            return self._finngen_name(expr.name) + {"count": "_NEVT", "age": "_AGE", "year": "_YEAR"}[expr.attr]
        if kind == "or":
            text = "|".join(self._condition_text(a, precedence["or"] + 1) for a in expr.args)
        elif kind == "and":
            text = "&".join(self._condition_text(a, precedence["and"] + 1) for a in expr.args)
        elif kind == "not":
            text = "!" + self._condition_text(expr.arg, precedence["not"])
        else:
            parts = [self._condition_text(expr.operands[0], precedence["compare"] + 1)]
            for op, operand in zip(expr.ops, expr.operands[1:]):
                parts += [op, self._condition_text(operand, precedence["compare"] + 1)]
            text = "".join(parts)
        return f"({text})" if precedence[kind] < context else text


# Expression nodes FinnGen's condition columns cannot hold.
_TIME_KINDS = frozenset({"date", "duration", "arith", "relation"})


def _expression_nodes(expr: Any):
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(getattr(node, "operands", ()) or getattr(node, "args", ()) or ())
        stack.extend(n for n in (getattr(node, "arg", None), getattr(node, "left", None),
                                 getattr(node, "right", None)) if n is not None)
