"""Everything the generator derives once from its arguments, shared by all person blocks.

Codes never travel through the generator as strings: every code, category and label is
interned once here into a string table, and blocks work on integer ids that become Polars
String columns with a single gather at the end. That keeps the per-event work vectorised.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from . import codes as C
from .eras import REGISTER_START, SOURCES

__all__ = ["Strings", "Model", "SRC", "VERSION_INDEX"]

SRC = {name: i for i, name in enumerate(SOURCES)}
SRC_START_YEAR = np.array([REGISTER_START[s] for s in SOURCES], dtype=np.int64)
# Row index of each ICD version in the per-version code tables.
VERSION_INDEX = {10: 0, 9: 1, 8: 2}


class Strings:
    """Interned strings; id 0 is the missing value."""

    def __init__(self) -> None:
        self._list: list[str | None] = [None]
        self._ids: dict[str, int] = {}
        self._series: pl.Series | None = None

    def id(self, s: str | None) -> int:
        if s is None:
            return 0
        i = self._ids.get(s)
        if i is None:
            i = self._ids[s] = len(self._list)
            self._list.append(s)
            self._series = None
        return i

    def ids(self, seq) -> np.ndarray:
        return np.array([self.id(s) for s in seq], dtype=np.int64)

    def text(self, i: int) -> str | None:
        return self._list[i]

    def series(self) -> pl.Series:
        if self._series is None:
            self._series = pl.Series("s", self._list, dtype=pl.String)
        return self._series


class _Ragged:
    """Per-condition lists of code ids as flat array + offsets (vectorised lookups)."""

    def __init__(self, strings: Strings, lists) -> None:
        counts = np.array([len(x) for x in lists], dtype=np.int64)
        self.count = counts
        self.offset = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        flat = [s for x in lists for s in x]
        self.flat = np.concatenate([strings.ids(flat), [0]]).astype(np.int64)

    def pick(self, cond: np.ndarray, pick: np.ndarray) -> np.ndarray:
        """Code id per row (0 where the condition has no code of this kind)."""
        cnt = self.count[cond]
        idx = self.offset[cond] + pick % np.maximum(cnt, 1)
        return np.where(cnt > 0, self.flat[np.where(cnt > 0, idx, len(self.flat) - 1)], 0)


class Model:
    """Built-in code mix and label ids; optional frequency tables and recipe plan attach later."""

    def __init__(self) -> None:
        s = self.strings = Strings()
        conds = C.CONDITIONS
        self.n_cond = len(conds)
        self.cond_key = {c.key: i for i, c in enumerate(conds)}
        self.risk = np.array([c.risk for c in conds])
        self.age_lo = np.array([c.age_lo for c in conds])
        self.age_hi = np.array([c.age_hi for c in conds])
        self.rate = np.array([c.rate for c in conds])
        # The table's weights are per condition; these factors calibrate the registers'
        # overall shares to FinnGen's (few inpatient stays, many outpatient visits).
        place = np.array([c.place for c in conds], dtype=np.float64) * np.array([0.5, 1.6, 1.4])
        self.place_cdf = np.cumsum(place / place.sum(axis=1, keepdims=True), axis=1)
        self.sex = np.array([{None: 0, "female": 1, "male": 2}[c.sex] for c in conds], dtype=np.int8)
        self.fatal = np.array([c.fatal for c in conds])
        self.chronic_drug = np.array([c.chronic_drug for c in conds])
        self.injury = np.array([c.injury for c in conds])
        self.heart = np.array([c.heart for c in conds])

        self.icd = [_Ragged(s, [c.codes(v) for c in conds]) for v in (10, 9, 8)]
        # Kela reimbursement rows carry the 3-character ICD-10 category (E11, I10 ...).
        self.icd10_3 = _Ragged(s, [tuple(dict.fromkeys(x[:3] for x in c.icd10)) for c in conds])
        self.icpc = _Ragged(s, [c.icpc2 for c in conds])
        self.atc = _Ragged(s, [c.atc for c in conds])
        self.kela = _Ragged(s, [c.kela for c in conds])
        self.nomesco = _Ragged(s, [c.nomesco for c in conds])
        self.hl = _Ragged(s, [c.hl for c in conds])
        self.dental = _Ragged(s, [c.dental for c in conds])
        self.topo = _Ragged(s, [(c.cancer[0],) if c.cancer else () for c in conds])
        self.morph = _Ragged(s, [(c.cancer[1],) if c.cancer else () for c in conds])

        # Package numbers per ATC id: row = ATC id, three VNRs each.
        atc_ids = sorted(set(int(x) for x in self.atc.flat if x))
        self.vnr = np.zeros((len(s._list) + 1, 3), dtype=np.int64)
        for a in atc_ids:
            self.vnr[a] = s.ids(C.vnrs_for(s.text(a)))

        self.ext = {v: s.ids(C.EXTERNAL_CAUSES[v]) for v in (10, 9, 8)}
        self.immediate = {v: s.ids(C.IMMEDIATE_CAUSES[v]) for v in (10, 9, 8)}
        self.filler = {v: s.ids(C.FILLER_MAIN[v]) for v in (10, 9, 8)}
        self.generic_ops = s.ids(C.GENERIC_OPERATIONS)
        self.heart_old = s.ids(C.HEART_PROCEDURES[0])
        self.heart_new = s.ids(C.HEART_PROCEDURES[1])
        self.prim_procs = s.ids(C.PRIMARY_PROCEDURES)
        self.aging = self.cond_key["AGING"]
        # Underlying causes for deaths that none of the person's conditions explains,
        # roughly in Finland's order of frequency (repeats are weights).
        self.death_fallback = np.array([self.cond_key[k] for k in (
            "IHD", "IHD", "IHD", "DEMENTIA", "DEMENTIA", "STROKE", "LUNGCA", "COPD", "HF",
            "PNEUMON", "AGING", "MI", "COLONCA", "ALCLIVER")])

        self.num = s.ids([str(i) for i in range(1000)])
        self.ver_id = {10: s.id("10"), 9: s.id("9"), 8: s.id("8")}
        self.ver_ids = np.array([self.ver_id[10], self.ver_id[9], self.ver_id[8]])
        self.hosp_cat = s.ids([str(i) for i in range(10)])
        names = ["EX1", "U", "I", "ATC", "O3", "ICP", "OP", "MOP", "NOM", "MFHL", "HPO", "HPN",
                 "OP0", "MOP0", "NOM1", "NOM2", "MFHL1", "HPO1", "HPN1", "E"]
        self.lbl = {n: s.id(n) for n in names}
        self.icd_cat = s.ids([f"ICD{i}" for i in range(10)])
        self.icp_cat = s.ids([f"ICP{i}" for i in range(10)])
        self.c_cat = s.ids([f"c{i}" for i in range(10)])
        self.urgency = s.ids(["E", "1", "3", "4", "5", "6"])
        self.src_series = pl.Series("src", list(SOURCES), dtype=pl.String)

        self.freq = None     # filled by attach_frequencies
        self.recipes = None  # filled by the recipe planner


class InternedFrequencies:
    """A frequency table whose codes are string ids of a Model."""

    def __init__(self, strings: Strings, table) -> None:
        self.c1 = strings.ids(table.code1)
        self.c2 = strings.ids(table.code2)
        self.c3 = strings.ids(table.code3)
        self.table = table

    def draw(self, u: np.ndarray, female: np.ndarray):
        rows = self.table.draw(u, female)
        return self.c1[rows], self.c2[rows], self.c3[rows]


def attach_frequencies(model: Model, tables) -> None:
    model.freq = {key: InternedFrequencies(model.strings, t) for key, t in tables.items()}
