"""The importer: FinnGen sheet rows -> ASTs of the language, with the conversion report.

Input: a FinnGen definition file, and optionally a separate controls workbook.
Output: an `ImportResult`: one `ast.File` per chapter (first tag), with spans that point
into the spreadsheet; every EP6xx diagnostic, in spreadsheet order; and the conversion
report (rows read, endpoints written, warnings by kind, endpoints marked).
`write_library` then writes the files as formatted `.ep` files.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from .. import ast, codes
from ..diagnostics import Diagnostic
from ..results import write_text_atomic
from ..source import Span
from .conditions import ConditionParser, Untranslatable, refers_to
from .patterns import (
    can_match, code_pattern, icd_versions, is_code_pair, regex_hints, regex_reason, split_alternatives,
)
from .sheet import (
    CANCER, CONDITION_COLUMNS, CONTROL_COLUMNS, DEATH, HOSPITAL, ISSUE_KEY, META_COLUMNS, NAME_KEY,
    OPERATION, PRIMARY, PURCHASE, RULE_COLUMNS, SOURCE_OF_COLUMN, UnreadableSheet, cell_span, read_table,
)

# Warning codes and the kind each counts as in the conversion report.
WARNING_KINDS: Mapping[str, str] = MappingProxyType({
    "EP601": "unreadable file",
    "EP602": "banner row skipped",
    "EP603": "whitespace stripped",
    "EP604": "regex kept as re\"...\"",
    "EP605": "pattern matches no well-formed code",
    "EP606": "reference to a missing name",
    "EP607": "no meaning in the language",
    "EP608": "name renamed",
    "EP609": "not UTF-8",
    "EP610": "row without NAME skipped",
    "EP611": "duplicate name",
    "EP612": "metadata adjusted",
    "EP613": "controls row without endpoint",
    "EP614": "self reference dropped",
    "EP615": "duplicate alternative dropped",
    "EP616": "dependency cycle broken",
    "EP620": "not expressible in FinnGen columns",
})

_LANGUAGE_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?\Z")
_WHITESPACE = re.compile(r"[\s\u00a0\u2007\u202f\ufeff]+")


@dataclass(frozen=True)
class ImportReport:
    """The conversion report: what was read, written, warned about and marked."""

    path: str
    rows_read: int  # data rows, header excluded, banner and empty rows included
    endpoints_written: int
    skipped_rows: int
    warnings_by_kind: tuple[tuple[str, int], ...]  # (kind, count), in code order
    marked: tuple[str, ...]  # endpoints carrying meta IMPORT_ISSUE

    @property
    def warnings(self) -> int:
        return sum(n for _, n in self.warnings_by_kind)


@dataclass(frozen=True)
class ImportResult:
    files: tuple[ast.File, ...]  # one per chapter (first tag), in order of first appearance
    diagnostics: tuple[Diagnostic, ...]
    report: ImportReport

    @property
    def endpoints(self) -> tuple[ast.Endpoint, ...]:
        return tuple(e for f in self.files for e in f.endpoints)


def import_finngen(path: str | Path, *, controls: str | Path | None = None) -> ImportResult:
    """Import a FinnGen endpoint definition file into ASTs, one File per chapter.

    `controls` is an optional separate workbook keyed by NAME with CONTROL_EXCLUDE,
    CONTROL_CONDITIONS and CONTROL_PRECONDITIONS columns (later freezes publish controls so).
    Never raises on content: an unreadable file gives no files and an EP601 error.
    """
    path = Path(path)
    try:
        header, rows, read_diagnostics = read_table(path)
    except UnreadableSheet as error:
        report = ImportReport(str(path), 0, 0, 0, (("unreadable file", 1),), ())
        return ImportResult((), (error.diagnostic,), report)
    importer = _Importer(str(path), header, rows)
    importer.diagnostics.extend(read_diagnostics)
    if controls is not None:
        try:
            controls_header, controls_rows, controls_diagnostics = read_table(controls)
        except UnreadableSheet as error:
            importer.diagnostics.append(error.diagnostic)
        else:
            importer.diagnostics.extend(controls_diagnostics)
            importer.add_controls(str(controls), controls_header, controls_rows)
    return importer.run()


def write_library(result: ImportResult, out_dir: str | Path) -> tuple[Path, ...]:
    """Write each chapter as `<out_dir>/<chapter>.ep`, formatted, each file atomically."""
    from ..fmt import format_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file in result.files:
        target = out / file.name
        write_text_atomic(target, format_file(file))
        written.append(target)
    return tuple(written)


@dataclass
class _Cell:
    """One non-empty cell: its column, its text, and where it is (file, row, column index)."""

    column: str
    text: str
    where: tuple[str, int, int]
    _cached_span: Span | None = None

    @property
    def span(self) -> Span:
        # Made on demand: most cells of a freeze never need one.
        if self._cached_span is None:
            self._cached_span = cell_span(*self.where)
        return self._cached_span


@dataclass
class _Row:
    """One endpoint row, and what its import could not keep."""

    number: int
    file: str
    name: str  # the language name
    raw_name: str
    cells: dict[str, _Cell]
    name_span: Span
    issues: list[str] = field(default_factory=list)
    leftovers: dict[str, list[str]] = field(default_factory=dict)  # column -> untranslated parts
    dropped_for_cycle: set[str] = field(default_factory=set)  # names whose references close a cycle


class _Importer:
    """Imports one sheet's rows (plus any controls workbooks), collecting the diagnostics."""

    def __init__(self, file: str, header: Sequence[str], rows: Sequence[Sequence[str]]):
        self.file = file
        self.header = list(header)
        self.raw_rows = rows
        self.diagnostics: list[Diagnostic] = []
        self.rows: list[_Row] = []
        self.names: dict[str, str] = {}  # FinnGen NAME -> language name
        self.skipped = 0
        self.controls: list[tuple[str, Sequence[str], Sequence[Sequence[str]]]] = []
        self._warned: set[tuple[int, str]] = set()

    def add_controls(self, file: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.controls.append((file, header, rows))

    # -- diagnostics ------------------------------------------------------------------------
    def warn(self, code: str, row: _Row | int, column: str | None, message: str, span: Span | None = None,
             *hints: str) -> None:
        number = row.number if isinstance(row, _Row) else row
        where = f"row {number}"
        if isinstance(row, _Row):
            where += f", {row.raw_name}"
        if column:
            where += f", {column}"
        if span is None:
            index = self.header.index(column) + 1 if column in self.header else 1
            span = cell_span(self.file, number, index)
        self.diagnostics.append(Diagnostic.warning(code, f"{where}: {message}", span, *hints))

    def mark(self, row: _Row, column: str, message: str, leftover: str | None = None) -> None:
        """Record what could not be imported: verbatim text kept in `meta COLUMN`, endpoint marked."""
        row.issues.append(f"{column}: {message}")
        if leftover is not None:
            row.leftovers.setdefault(column, []).append(leftover)

    # -- the whole file ----------------------------------------------------------------------
    def run(self) -> ImportResult:
        if "NAME" not in self.header:
            diagnostic = Diagnostic.error("EP601", f"{Path(self.file).name} has no NAME column; is it a FinnGen "
                                          "endpoint definition file?", cell_span(self.file, 1, 1))
            report = ImportReport(self.file, len(self.raw_rows), 0, len(self.raw_rows), (("unreadable file", 1),), ())
            return ImportResult((), (*self.diagnostics, diagnostic), report)
        self._collect_rows()
        for file, header, rows in self.controls:
            self._merge_controls(file, header, rows)
        endpoints = [self._endpoint(row) for row in self.rows]
        self._break_cycles(endpoints)
        files = self._chapters(endpoints)
        kinds = Counter(d.code for d in self.diagnostics if not d.is_error)
        report = ImportReport(
            path=self.file, rows_read=len(self.raw_rows), endpoints_written=len(endpoints),
            skipped_rows=self.skipped,
            warnings_by_kind=tuple((WARNING_KINDS.get(code, code), kinds[code]) for code in sorted(kinds)),
            marked=tuple(e.name for e in endpoints if any(m.key == ISSUE_KEY for m in e._of(ast.Meta))),
        )
        # Spreadsheet order: by file, row, column (spans carry no offsets here).
        ordered = sorted(self.diagnostics, key=lambda d: (d.span.file, d.span.line, d.span.column, d.code)
                         if d.span else ("", 0, 0, d.code))
        return ImportResult(tuple(files), tuple(ordered), report)

    def _collect_rows(self) -> None:
        """Rows worth importing, with their names fixed so references can be resolved."""
        columns = self.header
        used: set[str] = set()
        for index, values in enumerate(self.raw_rows):
            number = index + 2
            cells: dict[str, _Cell] = {}
            for col_index, (column, value) in enumerate(zip(columns, values), start=1):
                if value is None or value == "":
                    continue
                cells[column] = _Cell(column, value, (self.file, number, col_index))
            if not cells or all(not c.text.strip() for c in cells.values()):
                self.skipped += 1
                continue
            raw_name = cells["NAME"].text.strip() if "NAME" in cells else ""
            tags = cells["TAGS"].text.strip() if "TAGS" in cells else ""
            if raw_name.startswith("#") or tags.upper().startswith("#ALL"):
                self.skipped += 1
                self.warn("EP602", number, None, "banner row (" + (tags or raw_name)[:40] + ") skipped: it "
                          "carries the file's version and credits, not an endpoint",
                          cell_span(self.file, number, 1))
                continue
            if not raw_name:
                self.skipped += 1
                self.warn("EP610", number, "NAME", "row has no NAME; skipped (its cells: "
                          + ", ".join(sorted(cells)) + ")", cell_span(self.file, number, 1))
                continue
            name = self._language_name(raw_name, used, number, cells["NAME"].span)
            used.add(name)
            self.names.setdefault(raw_name, name)
            self.rows.append(_Row(number, self.file, name, raw_name, cells, cells["NAME"].span))

    def _language_name(self, raw: str, used: set[str], number: int, span: Span) -> str:
        """A valid name of the language not in `used` for the FinnGen NAME `raw`, warned when it differs."""
        name = raw
        if not _LANGUAGE_NAME.match(raw):
            name = re.sub(r"[^A-Z0-9_]", "", raw.upper().replace("-", "_").replace(".", "_").replace(" ", "_"))
            name = re.sub(r"^[^A-Z]+", "", name) or "UNNAMED"
        candidate, n = name, 2
        while candidate in used:
            candidate, n = f"{name}_{n}", n + 1
        if candidate != raw:
            code = "EP611" if raw in self.names or _LANGUAGE_NAME.match(raw) else "EP608"
            why = ("appears twice in the file" if raw in self.names
                   else "is taken by an endpoint renamed earlier" if _LANGUAGE_NAME.match(raw)
                   else "is not a valid name ([A-Z][A-Z0-9_]*)")
            self.diagnostics.append(Diagnostic.warning(
                code, f"row {number}, {raw}, NAME: `{raw}` {why}; imported as {candidate} "
                f"(meta \"{NAME_KEY}\" keeps the original for export)", span))
        return candidate

    def _break_cycles(self, endpoints: list[ast.Endpoint]) -> None:
        """FinnGen files hold a few reference cycles (KRA_PSY_ANYMENTAL includes
        KRA_PSY_ANYMENTAL_SUICID, which includes KRA_PSY_ANYMENTAL); the language forbids them.
        A depth-first walk in file order finds the reference that closes each cycle; it is
        dropped (kept verbatim in meta, endpoint marked) and the endpoint rebuilt."""
        from ..check import endpoint_dependencies

        index = {e.name: i for i, e in enumerate(endpoints)}
        dependencies = {e.name: [d for d in endpoint_dependencies(e) if d in index] for e in endpoints}
        state: dict[str, int] = {}  # 1 on the stack, 2 done
        cuts: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for start in (e.name for e in endpoints):
            if start in state:
                continue
            stack = [(start, iter(dependencies[start]))]
            path = [start]
            state[start] = 1
            while stack:
                node, children = stack[-1]
                for child in children:
                    if state.get(child) == 1:
                        cycle = tuple(path[path.index(child):]) + (child,)
                        cuts.setdefault(node, []).append((child, cycle))
                    elif child not in state:
                        state[child] = 1
                        stack.append((child, iter(dependencies[child])))
                        path.append(child)
                        break
                else:
                    stack.pop()
                    path.pop()
                    state[node] = 2
        for name, dropped in cuts.items():
            row = self.rows[index[name]]
            row.dropped_for_cycle = {child for child, _ in dropped}
            row.issues.clear()
            row.leftovers.clear()
            before = len(self.diagnostics)
            endpoints[index[name]] = self._endpoint(row)
            del self.diagnostics[before:]  # the rebuild repeats the row's warnings
            for child, cycle in dropped:
                self.warn("EP616", row, None, f"dependency cycle {' -> '.join(cycle)}: the reference to {child} "
                          f"closes it and is dropped (kept verbatim in meta), endpoint marked", row.name_span)

    def _merge_controls(self, file: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        by_name = {r.raw_name: r for r in self.rows}
        if "NAME" not in header:
            self.diagnostics.append(Diagnostic.error("EP601", f"controls file {Path(file).name} has no NAME column",
                                                     cell_span(file, 1, 1)))
            return
        for index, values in enumerate(rows):
            number = index + 2
            cells = {c: v for c, v in zip(header, values) if v}
            raw = cells.get("NAME", "").strip()
            if not raw or raw.startswith("#"):
                continue
            target = by_name.get(raw)
            if target is None:
                self.diagnostics.append(Diagnostic.warning(
                    "EP613", f"row {number}, {raw}: the controls file names an endpoint that is not in "
                    f"{Path(self.file).name}; its controls are not imported", cell_span(file, number, 1)))
                continue
            for col_index, column in enumerate(header, start=1):
                if column in CONTROL_COLUMNS and cells.get(column):
                    target.cells[column] = _Cell(column, cells[column], (file, number, col_index))

    def _chapters(self, endpoints: list[ast.Endpoint]) -> list[ast.File]:
        groups: dict[str, list[ast.Endpoint]] = {}
        for endpoint in endpoints:
            tags = endpoint.meta.get("tags")
            first = tags[0] if isinstance(tags, tuple) and tags else "untagged"
            chapter = re.sub(r"[^A-Za-z0-9_-]", "_", first) or "untagged"
            groups.setdefault(chapter, []).append(endpoint)
        return [ast.File(name=f"{chapter}.ep", declarations=tuple(group)) for chapter, group in groups.items()]

    # -- one endpoint ----------------------------------------------------------------------
    def _cell_text(self, row: _Row, column: str | None) -> str:
        """The cell's text with stray whitespace (incl. no-break spaces) removed, warned once.

        Code columns lose every space; conditions keep single spaces between tokens.
        """
        cell = row.cells.get(column) if column else None
        if cell is None:
            return ""
        text = cell.text
        if column in CONDITION_COLUMNS:
            cleaned = _WHITESPACE.sub(" ", text).strip()
            stray = _WHITESPACE.sub(" ", text) != text.replace("\t", " ")
        elif column in RULE_COLUMNS:
            cleaned = _WHITESPACE.sub("", text)
            stray = cleaned != text
        else:
            return text
        if stray and (row.number, column) not in self._warned:
            self._warned.add((row.number, column))
            kind = "no-break spaces" if "\u00a0" in text else "whitespace"
            self.warn("EP603", row, column, f"{kind} removed from {text!r}", cell.span)
        return cleaned

    def _endpoint(self, row: _Row) -> ast.Endpoint:
        items: list[Any] = []
        items.extend(self._metadata(row))
        sex = self._sex(row)
        if sex:
            items.append(sex)
        items.extend(self._hospital_like(row, "hospital", HOSPITAL, "HD_MAINONLY", "HD_ICD_10_ATC"))
        items.extend(self._hospital_like(row, "death", DEATH, "COD_MAINONLY", None))
        items.extend(self._simple_rule(row, "primary", PRIMARY))
        items.extend(self._simple_rule(row, "operation", OPERATION))
        items.extend(self._reimbursement(row))
        items.extend(self._purchases(row))
        items.extend(self._cancer(row))
        include = self._include(row)
        if include:
            items.append(include)
        when = self._condition(row, "PRE_CONDITIONS", event_level=True)
        if when is not None:
            items.append(ast.When(span=row.cells["PRE_CONDITIONS"].span, condition=when))
        require = self._condition(row, "CONDITIONS", event_level=False)
        if require is not None:
            items.append(ast.Require(span=row.cells["CONDITIONS"].span, condition=require))
        controls = self._controls(row)
        if controls is not None:
            items.append(controls)
        span = Span(file=self.file, line=row.number, column=1, end_line=row.number,
                    end_column=len(self.header) + 1)
        for column, parts in row.leftovers.items():
            cell = row.cells.get(column)
            items.append(ast.Meta(span=cell.span if cell else span, key=column, value="|".join(parts), custom=True))
        if row.issues:
            items.append(ast.Meta(span=span, key=ISSUE_KEY, value="; ".join(row.issues), custom=True))
        return ast.Endpoint(span=span, name=row.name, name_span=row.name_span, items=tuple(items))

    # -- metadata ------------------------------------------------------------------------------
    def _metadata(self, row: _Row) -> list[ast.Meta]:
        metas: list[ast.Meta] = []
        if row.name != row.raw_name:
            metas.append(ast.Meta(span=row.name_span, key=NAME_KEY, value=row.raw_name, custom=True))
        for column in self.header:
            cell = row.cells.get(column)
            if cell is None or column == "NAME" or column in RULE_COLUMNS:
                continue
            key = META_COLUMNS.get(column)
            value = cell.text
            if "\n" in value or "\r" in value:
                # Text of the language is one line; a line break in a cell is layout, not content.
                value = re.sub(r"\s*[\r\n]+\s*", " ", value).strip()
                self.warn("EP612", row, column, "line break in the text replaced by a space", cell.span)
            if key is None:
                metas.append(ast.Meta(span=cell.span, key=column, value=value, custom=True))
            elif key == "tags":
                tags = self._tags(row, cell)
                if tags:
                    metas.append(ast.Meta(span=cell.span, key="tags", value=tags))
            elif key in ("level", "omit", "parent"):
                word = value.strip()
                # PARENT is mostly an ICD-10 block (B15-B19, A04), not an endpoint: only a
                # name defined in the file becomes `parent`, the rest stays verbatim metadata.
                ok = _PLAIN_NUMBER.match(word) if key == "omit" else (
                    _PLAIN_NUMBER.match(word) or _LANGUAGE_NAME.match(word) if key == "level"
                    else _LANGUAGE_NAME.match(word) and self.names.get(word) == word)
                if ok:
                    metas.append(ast.Meta(span=cell.span, key=key, value=word))
                else:
                    metas.append(ast.Meta(span=cell.span, key=column, value=value, custom=True))
            else:
                metas.append(ast.Meta(span=cell.span, key=key, value=value))
        return metas

    def _tags(self, row: _Row, cell: _Cell) -> tuple[str, ...]:
        tags = []
        for part in cell.text.split(","):
            stripped = part.strip(" \t\u00a0")
            if not stripped:
                continue
            if not stripped.startswith("#"):
                self.warn("EP612", row, "TAGS", f"tag `{stripped}` lacks the leading '#'; imported as tag "
                          f"{stripped.lstrip('#')}", cell.span)
            elif stripped != part:
                self.warn("EP603", row, "TAGS", f"whitespace around tag `{stripped}` removed", cell.span)
            tags.append(stripped.lstrip("#"))
        return tuple(tags)

    def _sex(self, row: _Row) -> ast.Sex | None:
        text = self._cell_text(row, "SEX")
        if not text:
            return None
        value = {"1": "male", "2": "female"}.get(text)
        if value is None:
            self.warn("EP607", row, "SEX", f"SEX `{text}` is neither 1 (male) nor 2 (female); not imported, endpoint marked")
            self.mark(row, "SEX", f"unknown SEX value {text!r}", text)
            return None
        return ast.Sex(span=row.cells["SEX"].span, value=value)

    # -- patterns --------------------------------------------------------------------------------
    def _alternatives(self, row: _Row, column: str, vocab: str, *, allow_mode: bool
                      ) -> tuple[list[ast.Pattern], list[ast.Pattern]]:
        """(plain patterns, `%` mode patterns) of a code column."""
        text = self._cell_text(row, column)
        if not text:
            return [], []
        span = row.cells[column].span
        plain: list[ast.Pattern] = []
        mode: list[ast.Pattern] = []
        for alt in self._drop_repeats(row, column, split_alternatives(text)):
            is_mode = alt.startswith("%")
            body = alt[1:] if is_mode else alt
            if is_mode and not allow_mode:
                self.warn("EP607", row, column, f"`{alt}`: the `%` (mode) prefix means nothing for this "
                          "registry; not imported, endpoint marked", span)
                self.mark(row, column, f"`%` prefix in {alt!r}", alt)
                continue
            pattern = self._alternative_pattern(row, column, vocab, body, span)
            if pattern is None:
                continue
            (mode if is_mode else plain).append(pattern)
        return plain, mode

    def _drop_repeats(self, row: _Row, column: str, alternatives: list[str]) -> list[str]:
        """The alternatives, each once, in order; repeats warned."""
        unique = list(dict.fromkeys(alternatives))
        if len(unique) < len(alternatives):
            twice = sorted({a for a in alternatives if alternatives.count(a) > 1})
            self.warn("EP615", row, column, f"{', '.join(twice)} written more than once; the repeats add "
                      "nothing and are dropped")
        return unique

    def _alternative_pattern(self, row: _Row, column: str, vocab: str, alt: str, span: Span) -> ast.Pattern | None:
        if is_code_pair(alt, SOURCE_OF_COLUMN.get(column, "")):
            first_text, second_text = alt.split("&")
            first = self._simple_pattern(row, column, vocab, first_text, span)
            second = self._simple_pattern(row, column, vocab, second_text, span)
            if first is None or second is None:
                return None
            return ast.Combination(span=span, first=first, second=second)
        return self._simple_pattern(row, column, vocab, alt, span)

    def _simple_pattern(self, row: _Row, column: str, vocab: str, alt: str, span: Span) -> Any:
        if alt == "$!$":
            return ast.NoCode(span=span)
        if alt == "ANY":
            return ast.AnyCode(span=span)
        pattern = code_pattern(alt, span)
        if pattern is None:
            error = codes.regex_error(alt)
            if error is not None:
                self.warn("EP607", row, column, f"`{alt}` is not a valid regular expression ({error}); "
                          "not imported, endpoint marked", span)
                self.mark(row, column, f"invalid regular expression {alt!r}", alt)
                return None
            pattern = ast.Regex(span=span, regex=alt)
            self.warn("EP604", row, column, f"`{alt}` {regex_reason(alt)}; kept as re\"{alt}\" with "
                      "FinnGen's regular-expression meaning", span, *regex_hints(alt))
        if vocab in codes.VOCABULARY_REGEX and not can_match(vocab, pattern):
            self.warn("EP605", row, column, f"`{alt}` can match no well-formed {vocab} code: a typo? "
                      "Imported as written", span, f"{vocab} codes look like {codes.VOCABULARY_EXAMPLES[vocab]}")
        return pattern

    # -- rules -------------------------------------------------------------------------------------
    def _flag_set(self, row: _Row, column: str | None, expected: str, meaning: str) -> bool:
        """Whether a flag column holds `expected`; any other value is warned and kept verbatim."""
        if column is None:
            return False
        text = self._cell_text(row, column)
        if not text:
            return False
        if text.upper() == expected:
            return True
        self.warn("EP607", row, column, f"`{text}` is not a known value (expected {expected} for {meaning}); "
                  "not imported, endpoint marked")
        self.mark(row, column, f"unknown value {text!r}", text)
        return False

    def _hospital_like(self, row: _Row, source: str, columns, main_col: str, atc_col: str | None) -> list[ast.Rule]:
        """HD_ / COD_ columns: rules grouped by option set (mode and `with atc` split them)."""
        main = self._flag_set(row, main_col, "YES", "main diagnosis only")
        with_atc = self._flag_set(row, atc_col, "ANY", "an adverse-effect ATC code") if atc_col else False
        groups: dict[tuple[str, ...], list[ast.VocabClause]] = {}
        spans: dict[tuple[str, ...], Span] = {}
        any_clause = False
        for column, vocab in columns:
            plain, mode = self._alternatives(row, column, vocab, allow_mode=True)
            excepts, except_mode = self._alternatives(row, column + "_EXCL", vocab, allow_mode=False)
            if not plain and not mode:
                if excepts:
                    self._exclusion_without_codes(row, column + "_EXCL", column)
                continue
            any_clause = True
            span = row.cells[column].span
            for patterns, is_mode in ((plain, False), (mode, True)):
                if not patterns:
                    continue
                options = tuple(o for o, on in (("main", main), ("mode", is_mode),
                                                ("with_atc", with_atc and vocab == "icd10")) if on)
                clause = ast.VocabClause(span=span, vocab=vocab, patterns=tuple(patterns), excepts=tuple(excepts))
                groups.setdefault(options, []).append(clause)
                spans.setdefault(options, span)
        has_icd10 = any(c.vocab == "icd10" for clauses in groups.values() for c in clauses)
        for flag_col, on, needed in ((main_col, main, any_clause), (atc_col, with_atc, has_icd10)):
            if on and flag_col and not needed:
                self.warn("EP607", row, flag_col, f"{flag_col} is set but no {source} codes it could apply "
                          "to are given; kept verbatim, endpoint marked")
                self.mark(row, flag_col, f"{flag_col} without codes", self._cell_text(row, flag_col))
        return [ast.Rule(span=spans[options], source=source,
                         options=tuple(ast.Option(span=spans[options], name=o) for o in options),
                         clauses=tuple(clauses)) for options, clauses in groups.items()]

    def _exclusion_without_codes(self, row: _Row, column: str, needed: str) -> None:
        self.warn("EP607", row, column, f"{column} is given but {needed} is empty, so there are no events to "
                  "discard codes from; kept verbatim, endpoint marked")
        self.mark(row, column, f"{column} without {needed}", self._cell_text(row, column))

    def _simple_rule(self, row: _Row, source: str, columns) -> list[ast.Rule]:
        clauses = []
        for column, vocab in columns:
            plain, _ = self._alternatives(row, column, vocab, allow_mode=False)
            if plain:
                clauses.append(ast.VocabClause(span=row.cells[column].span, vocab=vocab, patterns=tuple(plain)))
        if not clauses:
            return []
        return [ast.Rule(span=clauses[0].span, source=source, clauses=tuple(clauses))]

    def _reimbursement(self, row: _Row) -> list[ast.Rule]:
        """KELA_REIMB and KELA_REIMB_ICD: one rule, both must hold for the same event.

        FinnGen means a conjunction (K11_KELACROHN and K11_KELAUC share KELA_REIMB 208 and
        differ only in KELA_REIMB_ICD). The ICD column mixes ICD-10 and ICD-9 codes (G20|3320A):
        ICD-10 codes start with a letter and ICD-9 codes with a digit, so the alternatives are
        split by their first character without changing what matches.
        """
        clauses = []
        kela, _ = self._alternatives(row, "KELA_REIMB", "kela", allow_mode=False)
        if kela:
            clauses.append(ast.VocabClause(span=row.cells["KELA_REIMB"].span, vocab="kela", patterns=tuple(kela)))
        text = self._cell_text(row, "KELA_REIMB_ICD")
        if text:
            span = row.cells["KELA_REIMB_ICD"].span
            by_vocab: dict[str, list[ast.Pattern]] = {"icd10": [], "icd9": []}
            for alt in self._drop_repeats(row, "KELA_REIMB_ICD", split_alternatives(text)):
                for vocab in icd_versions(alt):
                    pattern = self._alternative_pattern(row, "KELA_REIMB_ICD", vocab, alt, span)
                    if pattern is not None:
                        by_vocab[vocab].append(pattern)
            for vocab, patterns in by_vocab.items():
                if patterns:
                    clauses.append(ast.VocabClause(span=span, vocab=vocab, patterns=tuple(patterns)))
        if not clauses:
            return []
        return [ast.Rule(span=clauses[0].span, source="reimbursement", clauses=tuple(clauses))]

    def _purchases(self, row: _Row) -> list[ast.Rule]:
        """KELA_ATC and KELA_VNRO: separate rules, since vocabularies of one purchase rule are
        conjunctive and FinnGen's columns are alternatives."""
        rules = []
        for column, vocab in PURCHASE:
            flag_col = column + "_NEEDOTHER"
            flag = self._cell_text(row, flag_col).upper()
            patterns, _ = self._alternatives(row, column, vocab, allow_mode=False)
            option = {"": None, "YES": "needs_other", "SINGLE_OK": "single"}.get(flag, "?")
            if option == "?":
                self.warn("EP607", row, flag_col, f"`{self._cell_text(row, flag_col)}` is not a known value "
                          "(empty, YES or SINGLE_OK); kept verbatim, endpoint marked")
                self.mark(row, flag_col, f"unknown value {self._cell_text(row, flag_col)!r}",
                          self._cell_text(row, flag_col))
                option = None
            elif option and not patterns:
                self.warn("EP607", row, flag_col, f"{flag_col} is set but {column} is empty; kept verbatim, "
                          "endpoint marked")
                self.mark(row, flag_col, f"{flag_col} without {column}", self._cell_text(row, flag_col))
                option = None
            if not patterns:
                continue
            span = row.cells[column].span
            options = (ast.Option(span=row.cells[flag_col].span, name=option),) if option else ()
            rules.append(ast.Rule(span=span, source="purchase", options=options,
                                  clauses=(ast.VocabClause(span=span, vocab=vocab, patterns=tuple(patterns)),)))
        return rules

    def _cancer(self, row: _Row) -> list[ast.Rule]:
        clauses = []
        for column, vocab in CANCER:
            plain, _ = self._alternatives(row, column, vocab, allow_mode=False)
            excl = column + "_EXCL" if column != "CANC_BEHAV" else None
            excepts = self._alternatives(row, excl, vocab, allow_mode=False)[0] if excl else []
            if not plain:
                if excepts:
                    self._exclusion_without_codes(row, excl, column)
                continue
            clauses.append(ast.VocabClause(span=row.cells[column].span, vocab=vocab, patterns=tuple(plain),
                                           excepts=tuple(excepts)))
        if not clauses:
            return []
        return [ast.Rule(span=clauses[0].span, source="cancer", clauses=tuple(clauses))]

    # -- references and conditions ---------------------------------------------------------------
    def _include(self, row: _Row) -> ast.Include | None:
        text = self._cell_text(row, "INCLUDE")
        if not text:
            return None
        span = row.cells["INCLUDE"].span
        names, missing = [], []
        selves = []
        for raw in self._drop_repeats(row, "INCLUDE", [p for p in text.split("|") if p]):
            name = self.names.get(raw)
            if name is None:
                missing.append(raw)
            elif name == row.name:
                selves.append(raw)
            elif name in row.dropped_for_cycle:
                self.mark(row, "INCLUDE", f"{raw} dropped: it closes a dependency cycle", raw)
            elif name not in (n.name for n in names):
                names.append(ast.NameRef(span=span, name=name))
        if missing:
            hint = ("FinnGen's `K.` prefix (death events only?) has no equivalent; "
                    "write `include NAME` if all events are meant") if any(m.startswith("K.") for m in missing) else None
            self.warn("EP606", row, "INCLUDE", f"{', '.join(missing)} not defined in this file; dropped from "
                      "include, kept verbatim in meta \"INCLUDE\", endpoint marked", span, *([hint] if hint else []))
            self.mark(row, "INCLUDE", f"names not in the file: {', '.join(missing)}", "|".join(missing))
        if selves:
            # Including oneself adds nothing; the language calls it a cycle.
            self.warn("EP614", row, "INCLUDE", f"{row.raw_name} includes itself; the reference adds nothing and "
                      "is dropped (kept verbatim in meta \"INCLUDE\" for export)", span)
            row.leftovers.setdefault("INCLUDE", []).append(selves[0])
        return ast.Include(span=span, names=tuple(names)) if names else None

    def _condition(self, row: _Row, column: str, *, event_level: bool) -> Any:
        text = self._cell_text(row, column)
        if not text:
            return None
        span = row.cells[column].span
        try:
            expr = ConditionParser(text, span, self.names, event_level=event_level).parse()
            if row.dropped_for_cycle and not event_level and refers_to(expr, row.dropped_for_cycle):
                self.mark(row, column, f"refers to {', '.join(sorted(row.dropped_for_cycle))}, closing a "
                          "dependency cycle", text)
                return None
        except Untranslatable as problem:
            code = "EP606" if problem.missing else "EP607"
            self.warn(code, row, column, f"`{text}`: {problem}; kept verbatim in meta \"{column}\", endpoint marked", span)
            self.mark(row, column, str(problem), text)
            return None
        return expr

    def _controls(self, row: _Row) -> ast.Controls | None:
        items: list[Any] = []
        text = self._cell_text(row, "CONTROL_EXCLUDE")
        if text:
            span = row.cells["CONTROL_EXCLUDE"].span
            raws = [p for p in re.split(r"[|,]", text) if p]
            missing = [r for r in raws if r not in self.names]
            if missing:
                self.warn("EP606", row, "CONTROL_EXCLUDE", f"{', '.join(missing)} not defined in this file; "
                          "kept verbatim in meta \"CONTROL_EXCLUDE\", endpoint marked", span)
                self.mark(row, "CONTROL_EXCLUDE", f"names not in the file: {', '.join(missing)}", "|".join(missing))
            cut = [r for r in raws if self.names.get(r) in row.dropped_for_cycle]
            if cut:
                self.mark(row, "CONTROL_EXCLUDE", f"{', '.join(cut)} dropped: closes a dependency cycle", "|".join(cut))
            names = list(dict.fromkeys(self.names[r] for r in raws if r in self.names and r not in cut))
            if names:
                items.append(ast.ControlExclude(span=span, names=tuple(ast.NameRef(span=span, name=n) for n in names)))
        condition = self._condition(row, "CONTROL_CONDITIONS", event_level=False)
        if condition is not None:
            items.append(ast.ControlRequire(span=row.cells["CONTROL_CONDITIONS"].span, condition=condition))
        text = self._cell_text(row, "CONTROL_PRECONDITIONS")
        if text:
            self.warn("EP607", row, "CONTROL_PRECONDITIONS", f"`{text}`: the language has no event filter for "
                      "controls; kept verbatim, endpoint marked")
            self.mark(row, "CONTROL_PRECONDITIONS", "no event filter for controls in the language", text)
        if not items:
            return None
        return ast.Controls(span=items[0].span, items=tuple(items))


