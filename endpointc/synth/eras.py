"""Calendar facts about the Finnish registers: when each existed and which code system it used.

Every generated event passes through these tables, so an event can never be older than its
register or written in a code system that was not in use that year. The years are those a
FinnGen analyst works with (FinnGen's registry documentation and the R12 summary counts).
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

__all__ = [
    "END_YEAR",
    "END_DAY",
    "SOURCES",
    "REGISTER_START",
    "ICD_ERAS",
    "OPERATION_ERAS",
    "days_from_epoch",
    "year_of",
    "icd_version",
    "year_start_day",
    "year_end_day",
    "source_years",
]

# Follow-up ends at the end of the latest data freeze year.
END_YEAR = 2023

_EPOCH = _dt.date(1970, 1, 1)


def days_from_epoch(d: _dt.date) -> int:
    return (d - _EPOCH).days


END_DAY = days_from_epoch(_dt.date(END_YEAR, 12, 31))

# Order fixes the small integer id of each SOURCE inside the generator.
SOURCES = ("INPAT", "OUTPAT", "PRIM_OUT", "DEATH", "OPER_IN", "OPER_OUT", "REIMB", "PURCH", "CANC")

# First calendar year with rows of each register in the FinnGen longitudinal table.
REGISTER_START = {
    "INPAT": 1969,      # Hilmo (its predecessor, the discharge register)
    "OUTPAT": 1998,     # specialist outpatient care enters Hilmo
    "PRIM_OUT": 2011,   # AvoHilmo, primary care
    "DEATH": 1969,
    "OPER_IN": 1983,    # operations, with the Finnish Hospital League codes at first
    "OPER_OUT": 1998,
    "REIMB": 1964,      # Kela special reimbursements
    "PURCH": 1995,      # Kela drug purchases
    "CANC": 1953,       # Finnish Cancer Registry
}

# ICD revision by calendar year, inclusive ranges (Finland switched on 1 January).
ICD_ERAS = {"8": (1969, 1986), "9": (1987, 1995), "10": (1996, END_YEAR)}

# Operation code systems by calendar year (CATEGORY prefix -> inclusive years). MFHL/SFHL
# are the Finnish Hospital League codes, NOM the NOMESCO codes that replaced them in 1996;
# HPO/HPN are the old and new heart-procedure codes recorded beside them.
OPERATION_ERAS = {
    "MFHL": (1983, 1995),
    "SFHL": (1983, 1995),
    "NOM": (1996, END_YEAR),
    "HPO": (1994, 2006),
    "HPN": (2007, END_YEAR),
}


_LUT_FIRST = days_from_epoch(_dt.date(1900, 1, 1))
_LUT_LAST = days_from_epoch(_dt.date(2100, 12, 31))
# Year of every day 1900-2100: a table lookup is far cheaper than datetime64 casts.
_YEAR_LUT = (np.arange(_LUT_FIRST, _LUT_LAST + 1).astype("datetime64[D]").astype("datetime64[Y]")
             .astype(np.int64) + 1970).astype(np.int16)


def year_of(days) -> np.ndarray:
    """Calendar year of day numbers counted from 1970-01-01 (vectorised)."""
    days = np.asarray(days)
    if days.size and (days.min() < _LUT_FIRST or days.max() > _LUT_LAST):
        return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    return _YEAR_LUT[days - _LUT_FIRST].astype(np.int64)


def year_start_day(year) -> np.ndarray:
    y = np.asarray(year, dtype=np.int64) - 1970
    return y.astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)


def year_end_day(year) -> np.ndarray:
    return year_start_day(np.asarray(year, dtype=np.int64) + 1) - 1


def icd_version(years: np.ndarray) -> np.ndarray:
    """8, 9 or 10 for each calendar year (years before 1969 get 8: no ICD register then)."""
    return np.where(years >= 1996, 10, np.where(years >= 1987, 9, 8)).astype(np.int8)


def source_years(source: str, icdver: str | None = None, category: str | None = None) -> tuple[int, int] | None:
    """Inclusive calendar years in which `source` can hold a row of that ICD version or
    operation/primary-care category; None when it never can (e.g. ICD-9 in OUTPAT)."""
    lo, hi = REGISTER_START[source], END_YEAR
    if icdver in ICD_ERAS and source in ("INPAT", "OUTPAT", "DEATH", "REIMB"):
        e_lo, e_hi = ICD_ERAS[icdver]
        lo, hi = max(lo, e_lo), min(hi, e_hi)
    if category and source in ("OPER_IN", "OPER_OUT"):
        for prefix, (e_lo, e_hi) in OPERATION_ERAS.items():
            if category.startswith(prefix):
                lo, hi = max(lo, e_lo), min(hi, e_hi)
                break
    return (lo, hi) if lo <= hi else None
