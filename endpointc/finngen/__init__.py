"""FinnGen endpoint spreadsheets <-> the endpoint language: import and export.

`import_finngen` reads a FinnGen definition file (CSV, TSV or XLSX, any freeze) and builds
AST nodes directly, with spans that point into the spreadsheet (line = spreadsheet row,
the header being row 1; column = column index from 1). `write_library` prints them with the
canonical formatter into one `<chapter>.ep` file per first tag. `export_finngen` writes the
FinnGen column layout back, so import -> export -> import gives the same ASTs, and an
endpoint of the language exported without an EP620 warning imports back to the same plan.

The steps, one module each (input -> output):

- `sheet`: a FinnGen file -> header and rows of strings; the column layout (which columns
  hold which registry's codes, which hold metadata, the export column order).
- `importer`: sheet rows -> ASTs, one file per chapter, with the EP6xx diagnostics and the
  conversion report; `write_library` writes them as `.ep` files.
- `patterns`: a code column's FinnGen regex alternatives -> patterns of the language, and
  patterns -> FinnGen text (ranges as FinnGen writes them: `E10-E14` -> `E1[0-4]`).
- `conditions`: CONDITIONS / PRE_CONDITIONS text -> expressions of the language.
- `exporter`: ASTs -> the FinnGen sheet (header, rows, EP620 warnings), written as TSV.

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

from .exporter import ExportResult, export_finngen, export_rows
from .importer import WARNING_KINDS, ImportReport, ImportResult, import_finngen, write_library
from .patterns import split_alternatives
from .sheet import EXPORT_COLUMNS, ISSUE_KEY, NAME_KEY, RULE_COLUMNS, read_table

__all__ = [
    "ImportResult", "ImportReport", "ExportResult", "import_finngen", "write_library",
    "export_finngen", "export_rows", "read_table", "WARNING_KINDS", "EXPORT_COLUMNS",
    "RULE_COLUMNS", "ISSUE_KEY", "NAME_KEY", "split_alternatives",
]
