"""The FinnGen sheet: its column layout, and reading it.

Input: a FinnGen endpoint definition file (CSV, TSV or XLSX, any freeze).
Output: its header and rows, every cell a string (`read_table`); and the column layout that
the importer reads and the exporter writes (which columns hold codes of which registry,
which hold metadata, and the column order of an exported sheet).

The freezes differ in layout, not in meaning: encodings (UTF-8 with or without a BOM,
Windows-1252, Mac Roman), separators (tab or comma), line ends (CRLF or LF), and columns
that only some freezes have (OUTPAT_OPER, the CONTROL_ columns, which later freezes publish
in a separate workbook keyed by NAME).
"""

from __future__ import annotations

import io
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from ..diagnostics import Diagnostic
from ..source import Span

# Metadata keys the importer adds: why an endpoint is marked, and its original FinnGen NAME
# when that is not a valid name of the language.
ISSUE_KEY = "IMPORT_ISSUE"
NAME_KEY = "FINNGEN_NAME"

# Code columns of each registry, with the vocabulary of their codes.
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
OPTIONAL_EXPORT_COLUMNS = frozenset({"OUTPAT_OPER", "CONTROL_EXCLUDE", "CONTROL_PRECONDITIONS",
                                     "CONTROL_CONDITIONS"})
CONTROL_COLUMNS = ("CONTROL_EXCLUDE", "CONTROL_PRECONDITIONS", "CONTROL_CONDITIONS")
# The registry (source of the language) whose events each code column reads.
SOURCE_OF_COLUMN = {
    **{c: "hospital" for c, _ in HOSPITAL}, **{c + "_EXCL": "hospital" for c, _ in HOSPITAL},
    **{c: "death" for c, _ in DEATH}, **{c + "_EXCL": "death" for c, _ in DEATH},
    **{c: "primary" for c, _ in PRIMARY}, **{c: "operation" for c, _ in OPERATION},
    "KELA_REIMB": "reimbursement", "KELA_REIMB_ICD": "reimbursement", "KELA_ATC": "purchase",
    "KELA_VNRO": "purchase", **{c: "cancer" for c, _ in CANCER}, "CANC_TOPO_EXCL": "cancer",
    "CANC_MORPH_EXCL": "cancer",
}
CONDITION_COLUMNS = frozenset({"PRE_CONDITIONS", "CONDITIONS", "CONTROL_CONDITIONS", "CONTROL_PRECONDITIONS"})

# Characters whose presence in a text decoded with a guessed 8-bit encoding suggests the
# guess was right: Finnish and Latin letters, the no-break space, typographic quotes.
_SIGNS_OF_RIGHT_ENCODING = set("äöåÄÖÅéèüçÉ\u00a0’–")


def cell_span(file: str, line: int, column: int) -> Span:
    """The span of one spreadsheet cell: line = spreadsheet row, column = column index from 1."""
    return Span(file=file, line=line, column=column, end_line=line, end_column=column + 1)


class UnreadableSheet(Exception):
    """The file cannot be read as a table; `diagnostic` is the EP601 error saying why."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def read_table(path: str | Path) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[Diagnostic, ...]]:
    """Header and rows of a CSV, TSV or XLSX file, every cell a string ('' when empty).

    CSV and TSV may use CRLF or LF, with or without a BOM; a file that is not UTF-8 is
    decoded with the 8-bit encoding (Windows-1252 or Mac Roman) that reads most like text,
    with a warning.
    """
    import polars as pl

    path = Path(path)
    diagnostics: list[Diagnostic] = []
    span = cell_span(str(path), 1, 1)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".ods"):
        try:
            frame = pl.read_excel(path, infer_schema_length=0)
        except ModuleNotFoundError as error:
            raise UnreadableSheet(Diagnostic.error(
                "EP601", f"cannot read {path.name}: reading XLSX needs the `fastexcel` package ({error})",
                span, "pip install fastexcel, or save the sheet as TSV")) from error
        except Exception as error:  # polars/fastexcel raise many kinds; the user needs the message
            raise UnreadableSheet(Diagnostic.error("EP601", f"cannot read {path.name}: {error}", span)) from error
    else:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UnreadableSheet(Diagnostic.error("EP601", f"cannot read {path}: {error.strerror}", span)) from error
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
            raise UnreadableSheet(Diagnostic.error("EP601", f"cannot read {path.name}: {error}", span)) from error
    header = tuple(str(c).strip().lstrip("\ufeff") for c in frame.columns)
    rows = tuple(tuple("" if v is None else str(v).rstrip("\r") for v in row) for row in frame.iter_rows())
    return header, rows, tuple(diagnostics)


def _decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 when it is, else the 8-bit encoding that reads most like text."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = max(("cp1252", "mac_roman"),
               key=lambda enc: sum(c in _SIGNS_OF_RIGHT_ENCODING for c in data.decode(enc, errors="replace")))
    return data.decode(best, errors="replace"), best
