"""FinnGen endpoint spreadsheets <-> the endpoint language: import and export.

`import_finngen` reads a FinnGen definition file (CSV, TSV or XLSX, any freeze) and builds
AST nodes directly, with spans that point into the spreadsheet (line = spreadsheet row,
the header being row 1; column = column index from 1). `write_library` prints them with the
canonical formatter into one `<chapter>.ep` file per first tag. `export_finngen` writes the
FinnGen column layout back, so import -> export -> import gives the same ASTs.

Principles:

- Nothing is silently changed or dropped. Every quirk is an EP6xx warning naming the
  spreadsheet row, the endpoint NAME and the column.
- A pattern keeps FinnGen's *regex* meaning. FinnGen matches each column as the regular
  expression `^(ALT1|ALT2|...)` against the code; each alternative becomes the most specific
  language pattern with that meaning (`I21` -> code, `^5311$` -> `=5311`, `$!$` -> none,
  `ANY` -> any, `%J45` -> a rule with `mode`, `A&B` -> a combination) and anything whose
  regex meaning differs from its look (`W[0-1]*`, `D01[7|9]`, `X85-Y09`, `N05C#`) is kept
  as `re"..."` with a warning.
- What the language cannot say (e.g. `CONDITIONS BMI>25`, a reference to a name missing
  from the file) is kept verbatim in `meta "COLUMN" "..."`, reported, and the endpoint is
  marked with `meta "IMPORT_ISSUE" "..."`; export puts the verbatim text back in its column.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from . import ast, codes
from .diagnostics import Diagnostic
from .results import write_text_atomic
from .source import Span

__all__ = [
    "ImportResult", "ImportReport", "ExportResult", "import_finngen", "write_library",
    "export_finngen", "export_rows", "read_table", "WARNING_KINDS", "EXPORT_COLUMNS",
    "RULE_COLUMNS", "ISSUE_KEY", "NAME_KEY", "split_alternatives",
]

# Metadata keys the importer adds: why an endpoint is marked, and its original FinnGen NAME
# when that is not a valid name of the language.
ISSUE_KEY = "IMPORT_ISSUE"
NAME_KEY = "FINNGEN_NAME"

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

# -- the FinnGen column layout --------------------------------------------------------------

HOSPITAL = (("HD_ICD_10", "icd10"), ("HD_ICD_9", "icd9"), ("HD_ICD_8", "icd8"))
DEATH = (("COD_ICD_10", "icd10"), ("COD_ICD_9", "icd9"), ("COD_ICD_8", "icd8"))
OPERATION = (("OPER_NOM", "nomesco"), ("OPER_HL", "hl"), ("OPER_HP1", "hp1"), ("OPER_HP2", "hp2"))
PRIMARY = (("OUTPAT_ICD", "icd10"), ("OUTPAT_OPER", "procedure"))
CANCER = (("CANC_TOPO", "topography"), ("CANC_MORPH", "morphology"), ("CANC_BEHAV", "behaviour"))
PURCHASE = (("KELA_ATC", "atc"), ("KELA_VNRO", "vnr"))

# Columns with structure: everything else is metadata.
RULE_COLUMNS: tuple[str, ...] = (
    "SEX", "INCLUDE", "PRE_CONDITIONS", "CONDITIONS", "OUTPAT_ICD", "OUTPAT_OPER",
    "HD_MAINONLY", "HD_ICD_10_ATC", "HD_ICD_10", "HD_ICD_9", "HD_ICD_8", "HD_ICD_10_EXCL",
    "HD_ICD_9_EXCL", "HD_ICD_8_EXCL", "COD_MAINONLY", "COD_ICD_10", "COD_ICD_9", "COD_ICD_8",
    "COD_ICD_10_EXCL", "COD_ICD_9_EXCL", "COD_ICD_8_EXCL", "OPER_NOM", "OPER_HL", "OPER_HP1",
    "OPER_HP2", "KELA_REIMB", "KELA_REIMB_ICD", "KELA_ATC_NEEDOTHER", "KELA_ATC",
    "KELA_VNRO_NEEDOTHER", "KELA_VNRO", "CANC_TOPO", "CANC_TOPO_EXCL", "CANC_MORPH",
    "CANC_MORPH_EXCL", "CANC_BEHAV", "CONTROL_EXCLUDE", "CONTROL_PRECONDITIONS",
    "CONTROL_CONDITIONS",
)
# Metadata columns with a key of the language.
META_COLUMNS: Mapping[str, str] = MappingProxyType({
    "TAGS": "tags", "LEVEL": "level", "OMIT": "omit", "LONGNAME": "title", "Special": "note",
    "version": "version", "PARENT": "parent", "Latin": "latin",
})
# The DF6 column set, written by export in this order; OUTPAT_OPER and the CONTROL_ columns
# only when some endpoint uses them; other metadata columns after these.
EXPORT_COLUMNS: tuple[str, ...] = (
    "TAGS", "LEVEL", "OMIT", "NAME", "LONGNAME", "SEX", "INCLUDE", "PRE_CONDITIONS", "CONDITIONS",
    "OUTPAT_ICD", "OUTPAT_OPER", "HD_MAINONLY", "HD_ICD_10_ATC", "HD_ICD_10", "HD_ICD_9", "HD_ICD_8",
    "HD_ICD_10_EXCL", "HD_ICD_9_EXCL", "HD_ICD_8_EXCL", "COD_MAINONLY", "COD_ICD_10", "COD_ICD_9",
    "COD_ICD_8", "COD_ICD_10_EXCL", "COD_ICD_9_EXCL", "COD_ICD_8_EXCL", "OPER_NOM", "OPER_HL",
    "OPER_HP1", "OPER_HP2", "KELA_REIMB", "KELA_REIMB_ICD", "KELA_ATC_NEEDOTHER", "KELA_ATC",
    "KELA_VNRO_NEEDOTHER", "KELA_VNRO", "CANC_TOPO", "CANC_TOPO_EXCL", "CANC_MORPH",
    "CANC_MORPH_EXCL", "CANC_BEHAV", "CONTROL_EXCLUDE", "CONTROL_PRECONDITIONS",
    "CONTROL_CONDITIONS", "Special", "version", "PARENT", "Latin",
)
_OPTIONAL_COLUMNS = frozenset({"OUTPAT_OPER", "CONTROL_EXCLUDE", "CONTROL_PRECONDITIONS", "CONTROL_CONDITIONS"})
_CONTROL_COLUMNS = ("CONTROL_EXCLUDE", "CONTROL_PRECONDITIONS", "CONTROL_CONDITIONS")
_SOURCE_OF = {
    **{c: "hospital" for c, _ in HOSPITAL}, **{c + "_EXCL": "hospital" for c, _ in HOSPITAL},
    **{c: "death" for c, _ in DEATH}, **{c + "_EXCL": "death" for c, _ in DEATH},
    **{c: "primary" for c, _ in PRIMARY}, **{c: "operation" for c, _ in OPERATION},
    "KELA_REIMB": "reimbursement", "KELA_REIMB_ICD": "reimbursement", "KELA_ATC": "purchase",
    "KELA_VNRO": "purchase", **{c: "cancer" for c, _ in CANCER}, "CANC_TOPO_EXCL": "cancer",
    "CANC_MORPH_EXCL": "cancer",
}
_CONDITION_COLUMNS = frozenset({"PRE_CONDITIONS", "CONDITIONS", "CONTROL_CONDITIONS", "CONTROL_PRECONDITIONS"})

_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_NUMBER = re.compile(r"\d+(?:\.\d+)?\Z")
# A FinnGen alternative that reads the same as a code pattern of the language: characters,
# `.` and ascending [..] classes of single characters and ranges.
_CODE = re.compile(r"(?:[A-Z0-9.]|\[(?:[A-Z0-9](?:-[A-Z0-9])?)+\])+\Z")
_WHITESPACE = re.compile(r"[\s\u00a0\u2007\u202f\ufeff]+")
# Characters whose presence in a text decoded with a guessed 8-bit encoding suggests the
# guess was right: Finnish and Latin letters, the no-break space, typographic quotes.
_LIKELY = set("äöåÄÖÅéèüçÉ\u00a0’–")


# -- results -------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class ExportResult:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    diagnostics: tuple[Diagnostic, ...]


# -- reading spreadsheets -------------------------------------------------------------------

def read_table(path: str | Path) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[Diagnostic, ...]]:
    """Header and rows of a CSV, TSV or XLSX file, every cell a string ('' when empty).

    CSV and TSV may use CRLF or LF, with or without a BOM; a file that is not UTF-8 is
    decoded with the 8-bit encoding (Windows-1252 or Mac Roman) that reads most like text,
    with a warning.
    """
    import polars as pl

    path = Path(path)
    diagnostics: list[Diagnostic] = []
    span = _span(str(path), 1, 1)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".ods"):
        try:
            frame = pl.read_excel(path, infer_schema_length=0)
        except ModuleNotFoundError as error:
            raise _ReadError(Diagnostic.error(
                "EP601", f"cannot read {path.name}: reading XLSX needs the `fastexcel` package ({error})",
                span, "pip install fastexcel, or save the sheet as TSV")) from error
        except Exception as error:  # polars/fastexcel raise many kinds; the user needs the message
            raise _ReadError(Diagnostic.error("EP601", f"cannot read {path.name}: {error}", span)) from error
    else:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise _ReadError(Diagnostic.error("EP601", f"cannot read {path}: {error.strerror}", span)) from error
        text, encoding = _decode(data)
        if encoding != "utf-8":
            diagnostics.append(Diagnostic.warning(
                "EP609", f"{path.name} is not UTF-8; decoded as {encoding}", span,
                "save the file as UTF-8 to be sure of its accented letters"))
        first = text.split("\n", 1)[0]
        separator = "\t" if first.count("\t") >= first.count(",") else ","
        try:
            frame = pl.read_csv(io.BytesIO(text.encode("utf-8")), separator=separator, infer_schema=False,
                                quote_char='"', truncate_ragged_lines=True)
        except Exception as error:
            raise _ReadError(Diagnostic.error("EP601", f"cannot read {path.name}: {error}", span)) from error
    header = tuple(str(c).strip().lstrip("\ufeff") for c in frame.columns)
    rows = tuple(tuple("" if v is None else str(v).rstrip("\r") for v in row) for row in frame.iter_rows())
    return header, rows, tuple(diagnostics)


class _ReadError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def _decode(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = max(("cp1252", "mac_roman"),
               key=lambda enc: sum(c in _LIKELY for c in data.decode(enc, errors="replace")))
    return data.decode(best, errors="replace"), best


# -- import ----------------------------------------------------------------------------------

def import_finngen(path: str | Path, *, controls: str | Path | None = None) -> ImportResult:
    """Import a FinnGen endpoint definition file into ASTs, one File per chapter.

    `controls` is an optional separate workbook keyed by NAME with CONTROL_EXCLUDE,
    CONTROL_CONDITIONS and CONTROL_PRECONDITIONS columns (later freezes publish controls so).
    Never raises on content: an unreadable file gives no files and an EP601 error.
    """
    path = Path(path)
    try:
        header, rows, read_diags = read_table(path)
    except _ReadError as error:
        report = ImportReport(str(path), 0, 0, 0, (("unreadable file", 1),), ())
        return ImportResult((), (error.diagnostic,), report)
    importer = _Importer(str(path), header, rows)
    importer.diagnostics.extend(read_diags)
    if controls is not None:
        try:
            c_header, c_rows, c_diags = read_table(controls)
        except _ReadError as error:
            importer.diagnostics.append(error.diagnostic)
        else:
            importer.diagnostics.extend(c_diags)
            importer.add_controls(str(controls), c_header, c_rows)
    return importer.run()


def write_library(result: ImportResult, out_dir: str | Path) -> tuple[Path, ...]:
    """Write each chapter as `<out_dir>/<chapter>.ep`, formatted, each file atomically."""
    from .fmt import format_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file in result.files:
        target = out / file.name
        write_text_atomic(target, format_file(file))
        written.append(target)
    return tuple(written)


def _span(file: str, line: int, column: int) -> Span:
    return Span(file=file, line=line, column=column, end_line=line, end_column=column + 1)


@dataclass
class _Cell:
    """One non-empty cell: its column, its text, and where it is (file, row, column index)."""

    column: str
    text: str
    where: tuple[str, int, int]
    _span: Span | None = None

    @property
    def span(self) -> Span:
        # Made on demand: most cells of a freeze never need one.
        if self._span is None:
            self._span = _span(*self.where)
        return self._span


@dataclass
class _Row:
    number: int
    file: str
    name: str  # the language name
    raw_name: str
    cells: dict[str, _Cell]
    name_span: Span
    issues: list[str] = field(default_factory=list)
    leftovers: dict[str, list[str]] = field(default_factory=dict)  # column -> untranslated parts
    cut: set[str] = field(default_factory=set)  # names whose references close a cycle


class _Importer:
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
            span = _span(self.file, number, index)
        self.diagnostics.append(Diagnostic.warning(code, f"{where}: {message}", span, *hints))

    def mark(self, row: _Row, column: str, message: str, leftover: str | None = None) -> None:
        """Record what could not be imported: verbatim text kept in `meta COLUMN`, endpoint marked."""
        row.issues.append(f"{column}: {message}")
        if leftover is not None:
            row.leftovers.setdefault(column, []).append(leftover)

    # -- the whole file ----------------------------------------------------------------------
    def run(self) -> ImportResult:
        if "NAME" not in self.header:
            diag = Diagnostic.error("EP601", f"{Path(self.file).name} has no NAME column; is it a FinnGen "
                                    "endpoint definition file?", _span(self.file, 1, 1))
            report = ImportReport(self.file, len(self.raw_rows), 0, len(self.raw_rows), (("unreadable file", 1),), ())
            return ImportResult((), (*self.diagnostics, diag), report)
        self._collect()
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

    def _collect(self) -> None:
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
                          "carries the file's version and credits, not an endpoint", _span(self.file, number, 1))
                continue
            if not raw_name:
                self.skipped += 1
                self.warn("EP610", number, "NAME", "row has no NAME; skipped (its cells: "
                          + ", ".join(sorted(cells)) + ")", _span(self.file, number, 1))
                continue
            name = self._fix_name(raw_name, used, number, cells["NAME"].span)
            used.add(name)
            self.names.setdefault(raw_name, name)
            self.rows.append(_Row(number, self.file, name, raw_name, cells, cells["NAME"].span))

    def _fix_name(self, raw: str, used: set[str], number: int, span: Span) -> str:
        name = raw
        if not _NAME.match(raw):
            name = re.sub(r"[^A-Z0-9_]", "", raw.upper().replace("-", "_").replace(".", "_").replace(" ", "_"))
            name = re.sub(r"^[^A-Z]+", "", name) or "UNNAMED"
        candidate, n = name, 2
        while candidate in used:
            candidate, n = f"{name}_{n}", n + 1
        if candidate != raw:
            code = "EP611" if raw in self.names or _NAME.match(raw) else "EP608"
            why = ("appears twice in the file" if raw in self.names
                   else "is taken by an endpoint renamed earlier" if _NAME.match(raw)
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
        from .check import endpoint_dependencies

        index = {e.name: i for i, e in enumerate(endpoints)}
        deps = {e.name: [d for d in endpoint_dependencies(e) if d in index] for e in endpoints}
        state: dict[str, int] = {}  # 1 on the stack, 2 done
        cuts: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for start in (e.name for e in endpoints):
            if start in state:
                continue
            stack = [(start, iter(deps[start]))]
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
                        stack.append((child, iter(deps[child])))
                        path.append(child)
                        break
                else:
                    stack.pop()
                    path.pop()
                    state[node] = 2
        for name, dropped in cuts.items():
            row = self.rows[index[name]]
            row.cut = {child for child, _ in dropped}
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
                                                     _span(file, 1, 1)))
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
                    f"{Path(self.file).name}; its controls are not imported", _span(file, number, 1)))
                continue
            for col_index, column in enumerate(header, start=1):
                if column in _CONTROL_COLUMNS and cells.get(column):
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
    def _text(self, row: _Row, column: str | None) -> str:
        """The cell's text with stray whitespace (incl. no-break spaces) removed, warned once.

        Code columns lose every space; conditions keep single spaces between tokens.
        """
        cell = row.cells.get(column) if column else None
        if cell is None:
            return ""
        text = cell.text
        if column in _CONDITION_COLUMNS:
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
                ok = _NUMBER.match(word) if key == "omit" else (
                    _NUMBER.match(word) or _NAME.match(word) if key == "level"
                    else _NAME.match(word) and self.names.get(word) == word)
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
        text = self._text(row, "SEX")
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
        text = self._text(row, column)
        if not text:
            return [], []
        span = row.cells[column].span
        plain: list[ast.Pattern] = []
        mode: list[ast.Pattern] = []
        for alt in self._unique(row, column, split_alternatives(text)):
            is_mode = alt.startswith("%")
            body = alt[1:] if is_mode else alt
            if is_mode and not allow_mode:
                self.warn("EP607", row, column, f"`{alt}`: the `%` (mode) prefix means nothing for this "
                          "registry; not imported, endpoint marked", span)
                self.mark(row, column, f"`%` prefix in {alt!r}", alt)
                continue
            pattern = self._pattern(row, column, vocab, body, span)
            if pattern is None:
                continue
            (mode if is_mode else plain).append(pattern)
        return plain, mode

    def _unique(self, row: _Row, column: str, alternatives: list[str]) -> list[str]:
        unique = list(dict.fromkeys(alternatives))
        if len(unique) < len(alternatives):
            twice = sorted({a for a in alternatives if alternatives.count(a) > 1})
            self.warn("EP615", row, column, f"{', '.join(twice)} written more than once; the repeats add "
                      "nothing and are dropped")
        return unique

    def _pattern(self, row: _Row, column: str, vocab: str, alt: str, span: Span) -> ast.Pattern | None:
        source = _SOURCE_OF.get(column, "")
        if alt == "$!$":
            return ast.NoCode(span=span)
        if alt == "ANY":
            return ast.AnyCode(span=span)
        if "&" in alt and alt.count("&") == 1 and not alt.startswith("^") and source in codes.COMBINATION_SOURCES:
            first_text, second_text = alt.split("&")
            first = self._simple(row, column, vocab, first_text, span)
            second = self._simple(row, column, vocab, second_text, span)
            if first is None or second is None:
                return None
            return ast.Combination(span=span, first=first, second=second)
        return self._simple(row, column, vocab, alt, span)

    def _simple(self, row: _Row, column: str, vocab: str, alt: str, span: Span) -> Any:
        if alt == "$!$":
            return ast.NoCode(span=span)
        if alt == "ANY":
            return ast.AnyCode(span=span)
        body = alt[1:] if alt.startswith("^") else alt
        exact = body.endswith("$") and not body.endswith("\\$") and len(body) > 1
        if exact:
            body = body[:-1]
        if _CODE.match(body) and _classes_ascending(body):
            pattern = ast.Exact(span=span, text=body) if exact else ast.Code(span=span, text=body)
        else:
            error = codes.regex_error(alt)
            if error is not None:
                self.warn("EP607", row, column, f"`{alt}` is not a valid regular expression ({error}); "
                          "not imported, endpoint marked", span)
                self.mark(row, column, f"invalid regular expression {alt!r}", alt)
                return None
            pattern = ast.Regex(span=span, regex=alt)
            self.warn("EP604", row, column, f"`{alt}` {_regex_reason(alt)}; kept as re\"{alt}\" with "
                      "FinnGen's regular-expression meaning", span, *_regex_hints(alt))
        if vocab in codes.VOCABULARY_REGEX and not _can_match(vocab, pattern):
            self.warn("EP605", row, column, f"`{alt}` can match no well-formed {vocab} code: a typo? "
                      "Imported as written", span, f"{vocab} codes look like {codes.VOCABULARY_EXAMPLES[vocab]}")
        return pattern

    # -- rules -------------------------------------------------------------------------------------
    def _flag(self, row: _Row, column: str | None, expected: str, meaning: str) -> bool:
        if column is None:
            return False
        text = self._text(row, column)
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
        main = self._flag(row, main_col, "YES", "main diagnosis only")
        with_atc = self._flag(row, atc_col, "ANY", "an adverse-effect ATC code") if atc_col else False
        groups: dict[tuple[str, ...], list[ast.VocabClause]] = {}
        spans: dict[tuple[str, ...], Span] = {}
        any_clause = False
        for column, vocab in columns:
            plain, mode = self._alternatives(row, column, vocab, allow_mode=True)
            excepts, except_mode = self._alternatives(row, column + "_EXCL", vocab, allow_mode=False)
            if not plain and not mode:
                if excepts:
                    self._orphan(row, column + "_EXCL", column)
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
                self.mark(row, flag_col, f"{flag_col} without codes", self._text(row, flag_col))
        return [ast.Rule(span=spans[options], source=source,
                         options=tuple(ast.Option(span=spans[options], name=o) for o in options),
                         clauses=tuple(clauses)) for options, clauses in groups.items()]

    def _orphan(self, row: _Row, column: str, needed: str) -> None:
        self.warn("EP607", row, column, f"{column} is given but {needed} is empty, so there are no events to "
                  "discard codes from; kept verbatim, endpoint marked")
        self.mark(row, column, f"{column} without {needed}", self._text(row, column))

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
        text = self._text(row, "KELA_REIMB_ICD")
        if text:
            span = row.cells["KELA_REIMB_ICD"].span
            by_vocab: dict[str, list[ast.Pattern]] = {"icd10": [], "icd9": []}
            for alt in self._unique(row, "KELA_REIMB_ICD", split_alternatives(text)):
                for vocab in _icd_versions(alt):
                    pattern = self._pattern(row, "KELA_REIMB_ICD", vocab, alt, span)
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
            flag = self._text(row, flag_col).upper()
            patterns, _ = self._alternatives(row, column, vocab, allow_mode=False)
            option = {"": None, "YES": "needs_other", "SINGLE_OK": "single"}.get(flag, "?")
            if option == "?":
                self.warn("EP607", row, flag_col, f"`{self._text(row, flag_col)}` is not a known value "
                          "(empty, YES or SINGLE_OK); kept verbatim, endpoint marked")
                self.mark(row, flag_col, f"unknown value {self._text(row, flag_col)!r}", self._text(row, flag_col))
                option = None
            elif option and not patterns:
                self.warn("EP607", row, flag_col, f"{flag_col} is set but {column} is empty; kept verbatim, "
                          "endpoint marked")
                self.mark(row, flag_col, f"{flag_col} without {column}", self._text(row, flag_col))
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
                    self._orphan(row, excl, column)
                continue
            clauses.append(ast.VocabClause(span=row.cells[column].span, vocab=vocab, patterns=tuple(plain),
                                           excepts=tuple(excepts)))
        if not clauses:
            return []
        return [ast.Rule(span=clauses[0].span, source="cancer", clauses=tuple(clauses))]

    # -- references and conditions ---------------------------------------------------------------
    def _include(self, row: _Row) -> ast.Include | None:
        text = self._text(row, "INCLUDE")
        if not text:
            return None
        span = row.cells["INCLUDE"].span
        names, missing = [], []
        selves = []
        for raw in (p for p in text.split("|") if p):
            name = self.names.get(raw)
            if name is None:
                missing.append(raw)
            elif name == row.name:
                selves.append(raw)
            elif name in row.cut:
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
        text = self._text(row, column)
        if not text:
            return None
        span = row.cells[column].span
        try:
            expr = _ConditionParser(text, span, self.names, event_level=event_level).parse()
            if row.cut and not event_level and _refers_to(expr, row.cut):
                self.mark(row, column, f"refers to {', '.join(sorted(row.cut))}, closing a dependency cycle", text)
                return None
        except _Untranslatable as problem:
            code = "EP606" if problem.missing else "EP607"
            self.warn(code, row, column, f"`{text}`: {problem}; kept verbatim in meta \"{column}\", endpoint marked", span)
            self.mark(row, column, str(problem), text)
            return None
        return expr

    def _controls(self, row: _Row) -> ast.Controls | None:
        items: list[Any] = []
        text = self._text(row, "CONTROL_EXCLUDE")
        if text:
            span = row.cells["CONTROL_EXCLUDE"].span
            raws = [p for p in re.split(r"[|,]", text) if p]
            missing = [r for r in raws if r not in self.names]
            if missing:
                self.warn("EP606", row, "CONTROL_EXCLUDE", f"{', '.join(missing)} not defined in this file; "
                          "kept verbatim in meta \"CONTROL_EXCLUDE\", endpoint marked", span)
                self.mark(row, "CONTROL_EXCLUDE", f"names not in the file: {', '.join(missing)}", "|".join(missing))
            cut = [r for r in raws if self.names.get(r) in row.cut]
            if cut:
                self.mark(row, "CONTROL_EXCLUDE", f"{', '.join(cut)} dropped: closes a dependency cycle", "|".join(cut))
            names = list(dict.fromkeys(self.names[r] for r in raws if r in self.names and r not in cut))
            if names:
                items.append(ast.ControlExclude(span=span, names=tuple(ast.NameRef(span=span, name=n) for n in names)))
        condition = self._condition(row, "CONTROL_CONDITIONS", event_level=False)
        if condition is not None:
            items.append(ast.ControlRequire(span=row.cells["CONTROL_CONDITIONS"].span, condition=condition))
        text = self._text(row, "CONTROL_PRECONDITIONS")
        if text:
            self.warn("EP607", row, "CONTROL_PRECONDITIONS", f"`{text}`: the language has no event filter for "
                      "controls; kept verbatim, endpoint marked")
            self.mark(row, "CONTROL_PRECONDITIONS", "no event filter for controls in the language", text)
        if not items:
            return None
        return ast.Controls(span=items[0].span, items=tuple(items))


def _can_match(vocab: str, pattern: Any) -> bool:
    """codes.can_match, with a fast answer for the usual case: a code pattern one of whose
    expansions is itself a well-formed code (automata cost milliseconds per pattern)."""
    if isinstance(pattern, (ast.Code, ast.Exact)) and "." not in pattern.text:
        exact = isinstance(pattern, ast.Exact)
        positions = re.findall(r"\[[^\]]*\]|.", pattern.text)
        if sum(1 for p in positions if p.startswith("[")) <= 2:
            options = [_class_chars(p) if p.startswith("[") else p for p in positions]
            import itertools
            for combo in itertools.product(*options):
                stem = "".join(combo)
                if any(codes.is_well_formed(vocab, stem + tail) for tail in _TAILS if not (exact and tail)):
                    return True
    return codes.can_match(vocab, pattern)


# Completions tried on a prefix before asking the automata (a prefix matches a well-formed
# code when some completion is one).
_TAILS = ("", "0", "00", "000", "0000", "A", "0A", "00A", "000A", "AA", "A0", "A00", "AA0", "AA00", "0AA")


def _class_chars(text: str) -> str:
    body = text[1:-1]
    out = re.sub(r"(.)-(.)", lambda m: "".join(chr(c) for c in range(ord(m.group(1)), ord(m.group(2)) + 1)), body)
    return out or "?"


def _refers_to(expr: Any, names: set[str]) -> bool:
    if isinstance(expr, (ast.EndpointRef, ast.Attr)):
        return expr.name in names
    children = getattr(expr, "args", None) or getattr(expr, "operands", None) or (
        (expr.arg,) if isinstance(expr, ast.Not) else ())
    return any(_refers_to(c, names) for c in children)


def split_alternatives(text: str) -> list[str]:
    """FinnGen alternatives: `|` outside [...] classes and (...) groups.

    >>> split_alternatives("D01[7|9]|I21")
    ['D01[7|9]', 'I21']
    """
    parts, current, depth_class, depth_group = [], [], 0, 0
    for char in text:
        if char == "[":
            depth_class = 1
        elif char == "]":
            depth_class = 0
        elif char == "(" and not depth_class:
            depth_group += 1
        elif char == ")" and not depth_class and depth_group:
            depth_group -= 1
        if char == "|" and not depth_class and not depth_group:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _classes_ascending(body: str) -> bool:
    return all(a <= b for a, b in re.findall(r"([A-Z0-9])-([A-Z0-9])", "".join(re.findall(r"\[[^\]]*\]", body))))


def _icd_versions(alt: str) -> tuple[str, ...]:
    """ICD-10 codes start with a letter, Finnish ICD-9 codes with a digit (E and V codes of
    ICD-9 do not occur in the reimbursement register)."""
    head = alt.lstrip("^%")[:1]
    if head.isalpha():
        return ("icd10",)
    if head.isdigit():
        return ("icd9",)
    return ("icd10", "icd9")


def _regex_reason(alt: str) -> str:
    if "&" in alt:
        return "pairs two codes with `&`, which means CODE1 and CODE2 only for hospital, death and primary care; here the regex matches the text literally"
    if re.search(r"\[[^\]]*\|", alt):
        return "has `|` inside a character class, which a regex reads as a literal `|`"
    if re.search(r"[*+?{]", alt):
        return "has a regex quantifier (`*`, `+`, `?`, `{}`), so it does not mean what it looks like"
    if re.search(r"^\^?[A-Z0-9]+-[A-Z0-9]+\$?$", alt):
        return "looks like a range, but a regex reads `-` literally (it matches the text itself, e.g. a Finnish block code)"
    if "(" in alt or ")" in alt:
        return "has regex groups"
    odd = sorted(set(re.sub(r"[A-Z0-9.\[\]\-^$]", "", alt)))
    if odd:
        return "has characters that are no code characters (" + " ".join(odd) + "), matched literally"
    return "is a regular expression that fits no code pattern of the language"


def _regex_hints(alt: str) -> tuple[str, ...]:
    if re.search(r"\[[^\]]*\|", alt):
        fixed = re.sub(r"\[([^\]]*)\]", lambda m: "[" + m.group(1).replace("|", "") + "]", alt)
        return (f"if the class was meant, write {fixed}",)
    if alt.endswith("*") and alt.count("*") == 1:
        stem = re.sub(r"(?:\[[^\]]*\]|.)\*$", "", alt)
        return (f"`{alt}` matches every code starting with {stem or 'anything'}",)
    match = re.fullmatch(r"\^?([A-Z0-9]+)-([A-Z0-9]+)\$?", alt)
    if match and len(match.group(1)) == len(match.group(2)):
        return (f"if the range was meant, write {match.group(1)}-{match.group(2)}",)
    return ()


class _Untranslatable(Exception):
    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing


_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_.']*)|(?P<op><=|>=|==|!=|<|>)"
                    r"|(?P<punct>[!&|()]))")
_EVENT_FIELDS = {"EVENT_AGE": "age", "EVENT_YEAR": "year", "EMERG": "emergency"}


class _ConditionParser:
    """FinnGen PRE_CONDITIONS / CONDITIONS: `!`, `&`, `|`, parentheses, comparisons.

    PRE_CONDITIONS read EVENT_AGE, EVENT_YEAR and EMERG; CONDITIONS read endpoint names,
    NAME_NEVT (-> NAME.count), NAME_AGE (-> NAME.age) and NAME_YEAR (-> NAME.year).
    """

    def __init__(self, text: str, span: Span, names: Mapping[str, str], *, event_level: bool):
        self.text, self.span, self.names, self.event_level = text, span, names, event_level
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise _Untranslatable(f"cannot read {text[pos:]!r}")
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.pos = 0

    def _resolve(self, value: str) -> Any:
        """NAME -> the endpoint; NAME_NEVT, NAME_AGE, NAME_YEAR -> its attribute; else None."""
        if value in self.names:
            return ast.EndpointRef(span=self.span, name=self.names[value])
        for suffix, attr in (("_NEVT", "count"), ("_AGE", "age"), ("_YEAR", "year")):
            if value.endswith(suffix) and value[: -len(suffix)] in self.names:
                return ast.Attr(span=self.span, name=self.names[value[: -len(suffix)]], attr=attr)
        return None

    def parse(self) -> Any:
        expr = self._or()
        if self.pos != len(self.tokens):
            raise _Untranslatable(f"unexpected {self.tokens[self.pos][1]!r}")
        return expr

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, value: str) -> bool:
        token = self._peek()
        if token and token[1] == value and token[0] in ("punct", "op"):
            self.pos += 1
            return True
        return False

    def _or(self) -> Any:
        args = [self._and()]
        while self._take("|"):
            args.append(self._and())
        return args[0] if len(args) == 1 else ast.Or(span=self.span, args=tuple(args))

    def _and(self) -> Any:
        args = [self._not()]
        while self._take("&"):
            args.append(self._not())
        return args[0] if len(args) == 1 else ast.And(span=self.span, args=tuple(args))

    def _not(self) -> Any:
        if self._take("!"):
            return ast.Not(span=self.span, arg=self._not())
        return self._compare()

    def _compare(self) -> Any:
        token, following = self._peek(), self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        if (not self.event_level and token and token[0] == "name" and following and following[0] == "op"
                and self._resolve(token[1]) is None and token[1] not in _EVENT_FIELDS):
            raise _Untranslatable(f"{token[1]} is compared like a measurement, and the language has no "
                                  f"measurements ({token[1]} is no endpoint of this file)")
        operands = [self._operand()]
        ops = []
        while (token := self._peek()) and token[0] == "op":
            self.pos += 1
            ops.append(token[1])
            operands.append(self._operand())
        if not ops:
            return operands[0]
        if len(ops) == 1 and isinstance(operands[0], ast.EndpointRef) and isinstance(operands[1], ast.Number):
            # FinnGen's `NAME==1` is the endpoint's status; the language reads NAME as true/false.
            value, op = operands[1].value, ops[0]
            if op in ("==", "!=") and value in (0, 1):
                is_case = (op == "==") == (value == 1)
                return operands[0] if is_case else ast.Not(span=self.span, arg=operands[0])
            raise _Untranslatable(f"{operands[0].name} is a case or not; `{op} {operands[1].text}` compares it "
                                  "with a number")
        if any(isinstance(o, ast.EndpointRef) for o in operands):
            raise _Untranslatable("an endpoint's status (case or not) cannot be compared")
        return ast.Compare(span=self.span, operands=tuple(operands), ops=tuple(ops))

    def _operand(self) -> Any:
        token = self._peek()
        if token is None:
            raise _Untranslatable("the condition ends too early")
        self.pos += 1
        kind, value = token
        if kind == "num":
            return ast.Number(span=self.span, value=float(value), text=value)
        if kind == "punct" and value == "(":
            expr = self._or()
            if not self._take(")"):
                raise _Untranslatable("unbalanced parentheses")
            return expr
        if kind != "name":
            raise _Untranslatable(f"unexpected {value!r}")
        if self.event_level:
            if value in _EVENT_FIELDS:
                return ast.Var(span=self.span, name=_EVENT_FIELDS[value])
            raise _Untranslatable(f"{value} is not an event field (EVENT_AGE, EVENT_YEAR, EMERG)")
        resolved = self._resolve(value)
        if resolved is not None:
            return resolved
        if value in _EVENT_FIELDS:
            raise _Untranslatable(f"{value} is an event field, which CONDITIONS cannot read")
        raise _Untranslatable(f"{value} is not an endpoint of this file", missing=True)


# -- export ----------------------------------------------------------------------------------------

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
    header = [c for c in EXPORT_COLUMNS if c not in _OPTIONAL_COLUMNS or c in used]
    extra = list(dict.fromkeys(k for r in records for k in r if k not in EXPORT_COLUMNS))
    header += extra
    rows = tuple(tuple(_cell(r.get(c, "")) for c in header) for r in records)
    return ExportResult(tuple(header), rows, tuple(exporter.diagnostics))


def _cell(value: str) -> str:
    # A TSV cell cannot hold tabs or line breaks.
    return re.sub(r"[\t\r\n]+", " ", value)


class _Exporter:
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
                self._meta(item, put)
            elif isinstance(item, ast.Sex):
                if item.value != "any":
                    put("SEX", "1" if item.value == "male" else "2")
            elif isinstance(item, ast.Rule):
                self._rule(endpoint, item, put)
            elif isinstance(item, ast.Include):
                put("INCLUDE", *(self._name(n.name) for n in item.names))
            elif isinstance(item, ast.When):
                put("PRE_CONDITIONS", self._expr(item.condition))
            elif isinstance(item, ast.Require):
                put("CONDITIONS", self._expr(item.condition))
            elif isinstance(item, ast.Controls):
                for control in item.items:
                    if isinstance(control, ast.ControlExclude):
                        put("CONTROL_EXCLUDE", *(self._name(n.name) for n in control.names))
                    else:
                        put("CONTROL_CONDITIONS", self._expr(control.condition))
        joiners = {"TAGS": ",", "CONDITIONS": "&", "PRE_CONDITIONS": "&", "CONTROL_CONDITIONS": "&"}
        out = {}
        for column, values in record.items():
            if column in ("CONDITIONS", "PRE_CONDITIONS", "CONTROL_CONDITIONS") and len(values) > 1:
                values = [f"({v})" if ("|" in v) else v for v in values]
            out[column] = joiners.get(column, "|").join(values)
        return out

    def _name(self, name: str) -> str:
        return self.raw_names.get(name, name)

    def _meta(self, meta: ast.Meta, put) -> None:
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

    def _rule(self, endpoint: ast.Endpoint, rule: ast.Rule, put) -> None:
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
        unknown = options - {"main", "mode", "with_atc", "needs_other", "single"}
        if unknown or (options & {"mode"} and source not in ("hospital", "death")):
            self.warn(rule, f"{endpoint.name}: options {', '.join(sorted(unknown or {'mode'}))} of a {source} "
                      "rule have no FinnGen column; exported without them")
        for clause in rule.clauses:
            column = columns.get(clause.vocab)
            if column is None:
                self.warn(clause, f"{endpoint.name}: {source} {clause.vocab} has no FinnGen column; not exported")
                continue
            mode = "%" if "mode" in options and source in ("hospital", "death") else ""
            put(column, *(mode + self._pattern(p) for p in clause.patterns))
            if clause.excepts:
                if source in ("hospital", "death", "cancer") and column + "_EXCL" in EXPORT_COLUMNS:
                    put(column + "_EXCL", *(self._pattern(p) for p in clause.excepts))
                else:
                    self.warn(clause, f"{endpoint.name}: `except` of {source} {clause.vocab} has no FinnGen "
                              "column; not exported")
            if source == "purchase":
                flag = "YES" if "needs_other" in options else "SINGLE_OK" if "single" in options else ""
                put(column + "_NEEDOTHER", flag)

    def _pattern(self, pattern: Any) -> str:
        if isinstance(pattern, ast.Code):
            return pattern.text
        if isinstance(pattern, ast.Exact):
            return f"^{pattern.text}$"
        if isinstance(pattern, ast.Range):
            return codes.range_regex(pattern.start, pattern.end)
        if isinstance(pattern, ast.AnyCode):
            return "ANY"
        if isinstance(pattern, ast.NoCode):
            return "$!$"
        if isinstance(pattern, ast.Regex):
            return pattern.regex
        if isinstance(pattern, ast.Combination):
            return f"{self._pattern(pattern.first)}&{self._pattern(pattern.second)}"
        if isinstance(pattern, ast.CodelistRef):
            codelist = self.codelists.get(pattern.name)
            if codelist is None:
                self.warn(pattern, f"codelist @{pattern.name} is not defined; not exported")
                return ""
            return "|".join(self._pattern(p) for p in codelist.patterns)
        raise ValueError(f"cannot export pattern {type(pattern).__name__}")

    def _expr(self, expr: Any, context: int = 0) -> str:
        prec = {"or": 1, "and": 2, "not": 3, "compare": 4}
        kind = expr.kind
        if kind == "number":
            return expr.text
        if kind == "var":
            return {"age": "EVENT_AGE", "year": "EVENT_YEAR", "emergency": "EMERG"}[expr.name]
        if kind == "ref":
            return self._name(expr.name)
        if kind == "attr":
            return self._name(expr.name) + {"count": "_NEVT", "age": "_AGE", "year": "_YEAR"}[expr.attr]
        if kind == "or":
            text = "|".join(self._expr(a, prec["or"] + 1) for a in expr.args)
        elif kind == "and":
            text = "&".join(self._expr(a, prec["and"] + 1) for a in expr.args)
        elif kind == "not":
            text = "!" + self._expr(expr.arg, prec["not"])
        else:
            parts = [self._expr(expr.operands[0], prec["compare"] + 1)]
            for op, operand in zip(expr.ops, expr.operands[1:]):
                parts += [op, self._expr(operand, prec["compare"] + 1)]
            text = "".join(parts)
        return f"({text})" if prec[kind] < context else text
