"""The exporter: ASTs of the language -> a FinnGen sheet.

Input: parsed `.ep` files (and the codelists their patterns refer to).
Output: an `ExportResult`: the FinnGen header (the DF6 column set, plus the optional and
extra columns some endpoint uses), one row per endpoint, and an EP620 warning for each
thing FinnGen's columns cannot say; `export_finngen` also writes it as a TSV.
What the importer kept verbatim in `meta "COLUMN"` goes back into its column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import ast
from ..diagnostics import Diagnostic
from ..results import write_text_atomic
from ..fmt import expr_text, option_text
from .patterns import pattern_text
from .sheet import CANCER, EXPORT_COLUMNS, ISSUE_KEY, META_COLUMNS, NAME_KEY, OPERATION, OPTIONAL_EXPORT_COLUMNS


@dataclass(frozen=True)
class ExportResult:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    diagnostics: tuple[Diagnostic, ...]


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
    return ExportResult(tuple(header), rows, tuple(exporter.diagnostics))


def _tsv_cell(value: str) -> str:
    # A TSV cell cannot hold tabs or line breaks.
    return re.sub(r"[\t\r\n]+", " ", value)


class _Exporter:
    """Turns endpoints into FinnGen records (column -> cell text), collecting the warnings."""

    def __init__(self, raw_names: Mapping[str, str], codelists: Mapping[str, ast.Codelist]):
        self.raw_names = raw_names
        self.codelists = codelists
        self.diagnostics: list[Diagnostic] = []

    def warn(self, node: Any, message: str) -> None:
        self.diagnostics.append(Diagnostic.warning("EP620", message, getattr(node, "span", None)))

    def endpoint(self, endpoint: ast.Endpoint) -> dict[str, str]:
        record: dict[str, list[str]] = {}

        def put(column: str, *values: str) -> None:
            bucket = record.setdefault(column, [])
            bucket.extend(v for v in values if v and v not in bucket)

        put("NAME", self.raw_names[endpoint.name])
        for item in endpoint.items:
            if isinstance(item, ast.Meta):
                self._put_meta(item, put)
            elif isinstance(item, ast.Sex):
                if item.value != "any":
                    put("SEX", "1" if item.value == "male" else "2")
            elif isinstance(item, ast.Rule):
                self._put_rule(endpoint, item, put)
            elif isinstance(item, ast.Include):
                put("INCLUDE", *(self._finngen_name(n.name) for n in item.names))
            elif isinstance(item, ast.When):
                self._put_condition(endpoint, "PRE_CONDITIONS", "when", item, put)
            elif isinstance(item, ast.Require):
                self._put_condition(endpoint, "CONDITIONS", "require", item, put)
            elif isinstance(item, ast.Controls):
                for control in item.items:
                    if isinstance(control, ast.ControlExclude):
                        put("CONTROL_EXCLUDE", *(self._finngen_name(n.name) for n in control.names))
                    else:
                        self._put_condition(endpoint, "CONTROL_CONDITIONS", "controls require", control, put)
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

    def _put_rule(self, endpoint: ast.Endpoint, rule: ast.Rule, put) -> None:
        options = {o.name for o in rule.options}
        source = rule.source
        columns: dict[str, str] | None = None
        if source in ("hospital", "death"):
            prefix = "HD" if source == "hospital" else "COD"
            columns = {v: f"{prefix}_ICD_{v[3:]}" for v in ("icd10", "icd9", "icd8")}
            if "main" in options:
                put(f"{prefix}_MAINONLY", "YES")
            if "with_atc" in options and source == "hospital":
                put("HD_ICD_10_ATC", "ANY")
        elif source == "primary":
            columns = {"icd10": "OUTPAT_ICD", "procedure": "OUTPAT_OPER"}
        elif source == "operation":
            columns = {v: c for c, v in OPERATION}
        elif source == "reimbursement":
            columns = {"kela": "KELA_REIMB", "icd10": "KELA_REIMB_ICD", "icd9": "KELA_REIMB_ICD"}
        elif source == "purchase":
            columns = {"atc": "KELA_ATC", "vnr": "KELA_VNRO"}
        elif source == "cancer":
            columns = {v: c for c, v in CANCER}
        if columns is None:
            self.warn(rule, f"{endpoint.name}: `{source}` rules have no FinnGen column; not exported")
            return
        for option in rule.options:
            if option.window is not None:
                self.warn(option, f"{endpoint.name}: `{option_text(option)}` of a {source} rule has no FinnGen "
                          "column (FinnGen counts events, never their spacing); exported without it")
        unknown = options - {"main", "mode", "with_atc", "needs_other", "single"}
        if unknown or (options & {"mode"} and source not in ("hospital", "death")):
            self.warn(rule, f"{endpoint.name}: options {', '.join(sorted(unknown or {'mode'}))} of a {source} "
                      "rule have no FinnGen column; exported without them")
        for clause in ast.rule_clauses(rule, self.codelists):
            column = columns.get(clause.vocab)
            if column is None:
                self.warn(clause, f"{endpoint.name}: {source} {clause.vocab} has no FinnGen column; not exported")
                continue
            mode = "%" if "mode" in options and source in ("hospital", "death") else ""
            put(column, *(mode + self._pattern_text(p) for p in clause.patterns))
            if clause.excepts:
                if source in ("hospital", "death", "cancer") and column + "_EXCL" in EXPORT_COLUMNS:
                    put(column + "_EXCL", *(self._pattern_text(p) for p in clause.excepts))
                else:
                    self.warn(clause, f"{endpoint.name}: `except` of {source} {clause.vocab} has no FinnGen "
                              "column; not exported")
            if source == "purchase":
                flag = "YES" if "needs_other" in options else "SINGLE_OK" if "single" in options else ""
                put(column + "_NEEDOTHER", flag)

    def _pattern_text(self, pattern: Any) -> str:
        return pattern_text(pattern, self._codelist_text)

    def _codelist_text(self, ref: ast.CodelistRef) -> str:
        codelist = self.codelists.get(ref.name)
        if codelist is None:
            self.warn(ref, f"codelist @{ref.name} is not defined; not exported")
            return ""
        return "|".join(self._pattern_text(p) for p in codelist.patterns)

    def _put_condition(self, endpoint: ast.Endpoint, column: str, keyword: str, item: Any, put) -> None:
        """A condition in FinnGen's column, or a warning where FinnGen cannot hold it: it
        compares ages, never dates, and knows no time relations."""
        timed = [n for n in _expression_nodes(item.condition) if n.kind in _TIME_KINDS
                 or (n.kind == "var" and n.name == "date") or (n.kind == "attr" and n.attr == "date")]
        if timed:
            self.warn(item, f"{endpoint.name}: `{keyword} {expr_text(item.condition)}` uses dates or time "
                      f"relations, which {column} cannot hold; not exported")
            return
        put(column, self._condition_text(item.condition))

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
