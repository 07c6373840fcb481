"""Background code frequencies from a FinnGen aggregate summary file.

FinnGen publishes per-code event counts of its registry data (the dummy-data generator's
`CODE1_CODE2_CODE3_vocabulary_summary.tsv`: SOURCE, CODE1, CODE2, CODE3, vocabulary,
n_events, n_patients). Given such a file, background codes are drawn with those
frequencies instead of the built-in mix. The file is read at run time only: nothing from
it is stored in this repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from .codes import sex_of_code

__all__ = ["FrequencyTable", "read_code_frequencies", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("SOURCE", "CODE1", "CODE2", "CODE3", "vocabulary", "n_events")

# Which code system CODE1 of a (SOURCE, vocabulary) group belongs to, for the sex filter.
_SEX_VOCAB = {
    "10": "icd10", "10EX": "icd10", "9": "icd9", "8": "icd8",
    "ICD": "icd10", "ICP": "icpc2", "NOM": "nomesco", "canc": "topography",
}
# Male breast cancer exists but is about a hundred times rarer than in women.
_MALE_DOWNWEIGHT = {"icd10": (("C50", 0.01),), "topography": (("C50", 0.01),), "icd9": (("174", 0.01),)}


@dataclass(frozen=True)
class FrequencyTable:
    """Codes of one (SOURCE, vocabulary) group with cumulative draw weights per sex."""

    code1: tuple[str | None, ...]
    code2: tuple[str | None, ...]
    code3: tuple[str | None, ...]
    cdf_female: np.ndarray   # normalised cumulative weights, last element 1.0
    cdf_male: np.ndarray

    def draw(self, u: np.ndarray, female: np.ndarray) -> np.ndarray:
        """Row numbers for uniform draws `u` (the same u always gives the same code)."""
        rf = np.searchsorted(self.cdf_female, u, side="right")
        rm = np.searchsorted(self.cdf_male, u, side="right")
        rows = np.where(female, rf, rm)
        return np.minimum(rows, len(self.code1) - 1)


def _cdf(weights: np.ndarray) -> np.ndarray:
    total = weights.sum()
    if total <= 0:
        weights = np.ones_like(weights)
        total = weights.sum()
    return np.cumsum(weights) / total


def read_code_frequencies(path: str | Path) -> dict[tuple[str, str], FrequencyTable]:
    """Read a summary file into tables keyed by (SOURCE, vocabulary).

    Raises ValueError naming the path when the file is missing or lacks a column."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"code frequency file not found: {path}")
    try:
        df = pl.read_csv(path, separator="\t", infer_schema=False, null_values=["NA", ""],
                         quote_char=None)
    except Exception as e:  # polars raises several error types for malformed text
        raise ValueError(f"cannot read code frequency file {path}: {e}") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"code frequency file {path} lacks column(s) {', '.join(missing)}; "
                         f"expected the FinnGen summary layout {', '.join(REQUIRED_COLUMNS)}")
    df = (df.with_columns(pl.col("n_events").cast(pl.Float64, strict=False).fill_null(0.0))
          .filter(pl.col("n_events") > 0, pl.col("CODE1").is_not_null() | pl.col("CODE2").is_not_null())
          # A fixed order makes draws independent of the file's row order.
          .sort(["SOURCE", "vocabulary", "CODE1", "CODE2", "CODE3"], nulls_last=True))
    tables: dict[tuple[str, str], FrequencyTable] = {}
    for (source, vocab), part in df.group_by(["SOURCE", "vocabulary"], maintain_order=True):
        c1 = part["CODE1"].to_list()
        w = part["n_events"].to_numpy().astype(np.float64)
        wf, wm = w.copy(), w.copy()
        sv = _SEX_VOCAB.get(str(vocab))
        if sv:
            for i, code in enumerate(c1):
                if code is None:
                    continue
                s = sex_of_code(sv, code)
                if s == "female":
                    wm[i] = 0.0
                elif s == "male":
                    wf[i] = 0.0
                for prefix, factor in _MALE_DOWNWEIGHT.get(sv, ()):
                    if code.startswith(prefix):
                        wm[i] *= factor
        tables[(str(source), str(vocab))] = FrequencyTable(
            tuple(c1), tuple(part["CODE2"].to_list()), tuple(part["CODE3"].to_list()),
            _cdf(wf), _cdf(wm))
    if not tables:
        raise ValueError(f"code frequency file {path} holds no usable rows")
    return tables
