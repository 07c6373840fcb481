"""One block of people and their background registry history (no endpoint recipes).

A person's history grows from conditions: each built-in condition strikes with its
lifetime risk scaled by how much of its age window the person lives through, starts at an
onset age, and then produces visits (repeatedly for chronic disease), drug purchases,
a reimbursement decision, a cancer notification, and perhaps the cause of death. Visits
land in a register only if that register existed in that year, and every code is written
in the code system of its year. All of it is array arithmetic over the block.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

from .eras import END_DAY, days_from_epoch, icd_version, year_of
from .model import SRC, SRC_START_YEAR, Model

__all__ = ["Rows", "People", "make_people", "background", "within", "icd_pick", "ver_id", "death_visit"]

DAYS_PER_YEAR = 365.25
_BIRTH_FIRST = days_from_epoch(_dt.date(1920, 1, 1))
_BIRTH_LAST = days_from_epoch(_dt.date(2004, 12, 31))
PURCH_START = days_from_epoch(_dt.date(1995, 1, 1))
_CANC_START_YEAR = 1953
_REIMB_START_YEAR = 1964
_CODE9_START_YEAR = 1996
# Calibrates the number of visits to FinnGen's ~500 registry rows per person.
_VISIT_SCALE = 2.6
_SECOND_DRUG = 0.6


class Rows:
    """Column-wise accumulator of event rows as integer arrays."""

    FIELDS = ("person", "day", "src", "c1", "c2", "c3", "c4", "ver", "cat", "c9", "visit", "order", "dpref")

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {f: [] for f in self.FIELDS}
        self._next_visit = 0

    def visits(self, n: int) -> np.ndarray:
        """Fresh visit keys (one per visit; rows of a visit share it and its INDEX)."""
        out = np.arange(self._next_visit, self._next_visit + n, dtype=np.int64)
        self._next_visit += n
        return out

    def add(self, **cols) -> None:
        n = len(cols["person"])
        if n == 0:
            return
        for f in self.FIELDS:
            v = cols.get(f, 0)
            # int32 halves the memory traffic of the final sort and gathers.
            self.parts[f].append(np.broadcast_to(np.asarray(v, dtype=np.int32), (n,)))

    def concat(self) -> dict[str, np.ndarray]:
        return {f: (np.concatenate(v) if v else np.zeros(0, dtype=np.int32)) for f, v in self.parts.items()}


class People:
    def __init__(self, number, female, birth, fu_end, dead):
        self.number = number      # 1-based person number (FG00000001 ...)
        self.female = female
        self.birth = birth        # day numbers from 1970-01-01
        self.fu_end = fu_end
        self.dead = dead

    def __len__(self) -> int:
        return len(self.number)


def make_people(rng: np.random.Generator, first_number: int, n: int) -> People:
    number = np.arange(first_number, first_number + n, dtype=np.int64)
    female = rng.random(n) < 0.56
    # Biobank donors: born mostly 1940-1975, the oldest around 1920, all adults by 2022.
    birth = _BIRTH_FIRST + (rng.beta(2.0, 2.3, n) * (_BIRTH_LAST - _BIRTH_FIRST)).astype(np.int64)
    birth_year = year_of(birth) + rng.random(n)
    # Alive at recruitment (1992-2022), so deaths cluster after it, as in FinnGen.
    rec_lo = np.maximum(1992.0, birth_year + 18)
    rec_year = rec_lo + rng.random(n) * np.maximum(2022.0 - rec_lo, 0.0)
    rec_age = rec_year - birth_year
    # Gompertz mortality (median ~80 y for men, ~86 y for women), conditional on rec_age.
    a = np.where(female, 2.5e-5, 4.5e-5)
    b = 0.09
    death_age = np.log(np.exp(b * rec_age) - b * np.log(1.0 - rng.random(n)) / a) / b
    death_day = birth + (death_age * DAYS_PER_YEAR).astype(np.int64)
    dead = death_day <= END_DAY
    fu_end = np.where(dead, death_day, END_DAY)
    return People(number, female, birth, fu_end, dead)


def within(counts: np.ndarray) -> np.ndarray:
    """Position of each expanded row inside its group (0, 1, 2, ... per group)."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def _choice(rng, ids: np.ndarray, n: int) -> np.ndarray:
    return ids[rng.integers(0, len(ids), n)]


def ver_id(m: Model, ver: np.ndarray) -> np.ndarray:
    """ICDVER string id ("10", "9", "8") of each ICD version number."""
    return m.ver_ids[np.select([ver == 10, ver == 9], [0, 1], 2)]


def icd_pick(m: Model, ver: np.ndarray, cond: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """ICD code id of each (version, condition, pick); 0 where the condition has none."""
    out = np.zeros(len(cond), dtype=np.int64)
    for v, table in zip((10, 9, 8), m.icd):
        sel = ver == v
        if sel.any():
            out[sel] = table.pick(cond[sel], pick[sel])
    return out


def _freq_override(m: Model, key, codes: np.ndarray, sel: np.ndarray, u: np.ndarray, female: np.ndarray):
    """Replace codes[sel] by draws from the frequency table `key`, if one was given."""
    t = m.freq.get(key) if m.freq else None
    if t is None or not sel.any():
        return None
    c1, c2, c3 = t.draw(u[sel], female[sel])
    codes[sel] = c1
    return c2, c3


def background(m: Model, rng: np.random.Generator, people: People, rows: Rows) -> None:
    n = len(people)
    birth, fu_end, female = people.birth, people.fu_end, people.female
    fu_age = (fu_end - birth) / DAYS_PER_YEAR

    # --- conditions -------------------------------------------------------------
    top = np.minimum(m.age_hi[None, :], fu_age[:, None])
    cover = np.clip((top - m.age_lo) / (m.age_hi - m.age_lo), 0.0, 1.0)
    sex_ok = (m.sex == 0) | ((m.sex == 1) & female[:, None]) | ((m.sex == 2) & ~female[:, None])
    has = rng.random((n, m.n_cond)) < m.risk * cover * sex_ok
    pi, ci = np.nonzero(has)                      # sorted by person
    n_inst = len(pi)
    onset_age = m.age_lo[ci] + rng.random(n_inst) * (top[pi, ci] - m.age_lo[ci])
    onset = birth[pi] + (onset_age * DAYS_PER_YEAR).astype(np.int64)
    pick = rng.integers(0, 1 << 30, n_inst)
    ufreq = rng.random(n_inst)                    # persistent draw for frequency tables
    inst_start = np.searchsorted(pi, np.arange(n))
    inst_count = np.bincount(pi, minlength=n)
    fem_i = female[pi]

    # --- visits -----------------------------------------------------------------
    chronic = m.rate[ci] > 0
    years_left = (fu_end[pi] - onset) / DAYS_PER_YEAR
    n_vis = 1 + rng.poisson(np.where(chronic, _VISIT_SCALE * m.rate[ci] * years_left, 0.6))
    n_vis = np.minimum(n_vis, 300)
    vi = np.repeat(np.arange(n_inst), n_vis)
    pos = within(n_vis)
    span = np.where(chronic[vi], fu_end[pi[vi]] - onset[vi], 60)
    vday = onset[vi] + np.where(pos == 0, 0, (rng.random(len(vi)) * (span + 1)).astype(np.int64))
    # Visits past the end of follow-up are not seen (clipping them would pile them up on
    # the last day).
    seen = vday <= fu_end[pi[vi]]
    vi, vday = vi[seen], vday[seen]
    vyear = year_of(vday)
    vc = ci[vi]

    _acute_purchases(m, rng, people, rows, pi, ci, vi, vday, pick, ufreq)

    u = rng.random(len(vi))
    place = (u > m.place_cdf[vc, 0]).astype(np.int64) + (u > m.place_cdf[vc, 1])
    src = np.array([SRC["INPAT"], SRC["OUTPAT"], SRC["PRIM_OUT"]])[place]
    # A visit to a register that did not exist yet is simply not in the data.
    keep = vyear >= SRC_START_YEAR[src]
    vi, vday, vyear, vc, src, place = vi[keep], vday[keep], vyear[keep], vc[keep], src[keep], place[keep]
    vp = pi[vi]
    ver = icd_version(vyear).astype(np.int64)
    hosp = place < 2

    # PRIM_OUT codes are ICD-10 or ICPC-2; the visit's choice also drives its side codes.
    icp = ~hosp & (rng.random(len(vi)) < 0.45) & (m.icpc.count[vc] > 0)
    code = np.where(icp, m.icpc.pick(vc, pick[vi]), icd_pick(m, np.where(hosp, ver, 10), vc, pick[vi]))
    if m.freq:
        for s_name, s_id in (("INPAT", SRC["INPAT"]), ("OUTPAT", SRC["OUTPAT"])):
            for v in (10, 9, 8):
                _freq_override(m, (s_name, str(v)), code, (src == s_id) & (ver == v), ufreq[vi], fem_i[vi])
        _freq_override(m, ("PRIM_OUT", "ICD"), code, ~hosp & ~icp, ufreq[vi], fem_i[vi])
        _freq_override(m, ("PRIM_OUT", "ICP"), code, ~hosp & icp, ufreq[vi], fem_i[vi])
    ok = code > 0
    vi, vday, vyear, vc, src, place, vp, ver, hosp, icp, code = (
        x[ok] for x in (vi, vday, vyear, vc, src, place, vp, ver, hosp, icp, code))
    nv = len(vi)
    visit = rows.visits(nv)
    inpat = src == SRC["INPAT"]
    stay = np.where(inpat, np.minimum(rng.geometric(0.22, nv) - 1, 999), -1)
    c4 = np.where(stay >= 0, m.num[np.maximum(stay, 0)], 0)
    urgent_p = np.where(inpat, 0.45, 0.12)
    r = rng.random(nv)
    urg = np.where(r < urgent_p, m.urgency[1],
                   np.where(r < urgent_p + (1 - urgent_p) * 0.8, m.urgency[0], _choice(rng, m.urgency[2:], nv)))
    c9 = np.where(hosp & (vyear >= _CODE9_START_YEAR), urg, 0)
    vdict = dict(person=vp, day=vday, src=src, visit=visit)
    rows.add(**vdict, c1=code, c4=c4, c9=c9, order=0,
             ver=np.where(hosp, ver_id(m, ver),
                          np.where(icp, m.lbl["ICP"], m.ver_id[10])),
             cat=np.where(hosp, m.hosp_cat[0], np.where(icp, m.icp_cat[0], m.icd_cat[0])))

    # --- side diagnoses: the patient's other conditions, once diagnosed ----------
    ns = np.minimum(rng.poisson(np.select([inpat, src == SRC["OUTPAT"]], [1.1, 0.6], 0.35)), 6)
    sv = np.repeat(np.arange(nv), ns)
    p_s = vp[sv]
    j = inst_start[p_s] + (rng.random(len(sv)) * inst_count[p_s]).astype(np.int64)
    valid = (j != vi[sv]) & (onset[j] <= vday[sv])
    sv, j = sv[valid], j[valid]
    s_icp = icp[sv] & (m.icpc.count[ci[j]] > 0)
    s_code = np.where(s_icp, m.icpc.pick(ci[j], pick[j]),
                      icd_pick(m, np.where(hosp[sv], ver[sv], 10), ci[j], pick[j]))
    if m.freq:
        for s_name, s_id in (("INPAT", SRC["INPAT"]), ("OUTPAT", SRC["OUTPAT"])):
            for v in (10, 9, 8):
                _freq_override(m, (s_name, str(v)), s_code, (src[sv] == s_id) & (ver[sv] == v), ufreq[j], fem_i[j])
        _freq_override(m, ("PRIM_OUT", "ICD"), s_code, ~hosp[sv] & ~s_icp, ufreq[j], fem_i[j])
        _freq_override(m, ("PRIM_OUT", "ICP"), s_code, ~hosp[sv] & s_icp, ufreq[j], fem_i[j])
    good = (s_code > 0) & (s_code != code[sv])
    sv, s_icp, s_code = sv[good], s_icp[good], s_code[good]
    k = 1 + within(np.bincount(sv, minlength=nv))      # sv is sorted: number sides 1..k
    k = np.minimum(k, 9)
    rows.add(person=vp[sv], day=vday[sv], src=src[sv], visit=visit[sv], c1=s_code, c9=c9[sv],
             order=k, ver=np.where(hosp[sv], ver_id(m, ver[sv]),
                                   np.where(s_icp, m.lbl["ICP"], m.ver_id[10])),
             cat=np.where(hosp[sv], m.hosp_cat[k], np.where(s_icp, m.icp_cat[k], m.icd_cat[k])))

    # --- external causes of injuries --------------------------------------------
    ex = np.nonzero(hosp & m.injury[vc])[0]
    if len(ex):
        e_code = np.zeros(len(ex), dtype=np.int64)
        for v in (10, 9, 8):
            sel = ver[ex] == v
            e_code[sel] = _choice(rng, m.ext[v], int(sel.sum()))
        if m.freq:
            for s_name, s_id in (("INPAT", SRC["INPAT"]), ("OUTPAT", SRC["OUTPAT"])):
                for v in (10, 9, 8):
                    _freq_override(m, (s_name, f"{v}EX"), e_code, (src[ex] == s_id) & (ver[ex] == v),
                                   rng.random(len(ex)), female[vp[ex]])
        rows.add(person=vp[ex], day=vday[ex], src=src[ex], visit=visit[ex], c1=e_code, c9=c9[ex],
                 order=20, cat=m.lbl["EX1"], ver=ver_id(m, ver[ex]))

    _operations(m, rng, rows, vc, vp, vday, vyear, src, hosp, inpat, visit, c4, c9, pick[vi], female)
    _primary_procedures(m, rng, rows, vc, vp, vday, src, hosp, visit, pick[vi], female)
    _chronic_purchases(m, rng, people, rows, pi, ci, onset, pick, ufreq)
    _reimbursements(m, rng, people, rows, pi, ci, onset, pick, ufreq)
    _cancers(m, rng, people, rows, pi, ci, onset, ufreq)
    _deaths(m, rng, people, rows, pi, ci, onset, pick, inst_start, inst_count, ufreq)


def _operations(m, rng, rows, vc, vp, vday, vyear, src, hosp, inpat, visit, c4, c9, pick, female):
    has_op = (m.nomesco.count[vc] > 0) | (m.hl.count[vc] > 0)
    # Imaging, anaesthesia and minor procedures make operation rows common even where
    # the diagnosis has no operation of its own (FinnGen: ~0.4 per outpatient visit).
    p = np.where(has_op, np.where(inpat, 0.7, 0.5), np.where(inpat, 0.3, 0.3))
    op = np.nonzero(hosp & (rng.random(len(vc)) < p) & (vyear >= 1983))[0]
    if not len(op):
        return
    nom = vyear[op] >= 1996
    cond = vc[op]
    code = np.where(nom, np.where(m.nomesco.count[cond] > 0, m.nomesco.pick(cond, pick[op]),
                                  _choice(rng, m.generic_ops, len(op))),
                    m.hl.pick(cond, pick[op]))
    if m.freq:
        u = rng.random(len(op))
        for s_name in ("OPER_IN", "OPER_OUT"):
            is_src = src[op] == (SRC["INPAT"] if s_name == "OPER_IN" else SRC["OUTPAT"])
            _freq_override(m, (s_name, "NOM"), code, is_src & nom, u, female[vp[op]])
            _freq_override(m, (s_name, "MFHL"), code, is_src & ~nom, u, female[vp[op]])
    ok = code > 0
    op, nom, code = op[ok], nom[ok], code[ok]
    o_src = np.where(inpat[op], SRC["OPER_IN"], SRC["OPER_OUT"])
    # Operation rows repeat the visit's urgency only half the time, as in Hilmo extracts.
    o_c9 = np.where(rng.random(len(op)) < 0.5, c9[op], 0)
    base = dict(person=vp[op], day=vday[op], src=o_src, visit=visit[op], c4=np.where(inpat[op], c4[op], 0), c9=o_c9)
    rows.add(**base, c1=code, order=30, cat=np.where(nom, m.lbl["NOM1"], m.lbl["MFHL1"]),
             ver=np.where(nom, m.lbl["NOM"], m.lbl["MFHL"]))
    # Inpatient NOMESCO operations come with supplementary codes (anaesthesia, imaging).
    sup = np.nonzero(nom & inpat[op] & (rng.random(len(op)) < 0.5))[0]
    rows.add(**{k: v[sup] for k, v in base.items()}, c1=_choice(rng, m.generic_ops, len(sup)),
             order=31, cat=m.lbl["NOM2"], ver=m.lbl["NOM"])
    yr = vyear[op]
    hp = np.nonzero(m.heart[vc[op]] & (yr >= 1994))[0]
    old = yr[hp] <= 2006
    rows.add(**{k: v[hp] for k, v in base.items()}, order=32,
             c1=np.where(old, _choice(rng, m.heart_old, len(hp)), _choice(rng, m.heart_new, len(hp))),
             cat=np.where(old, m.lbl["HPO1"], m.lbl["HPN1"]), ver=np.where(old, m.lbl["HPO"], m.lbl["HPN"]))


def _primary_procedures(m, rng, rows, vc, vp, vday, src, hosp, visit, pick, female):
    prim = ~hosp
    op = np.nonzero(prim & (rng.random(len(vc)) < 0.25))[0]
    code = _choice(rng, m.prim_procs, len(op))
    if m.freq:
        _freq_override(m, ("PRIM_OUT", "OP"), code, np.ones(len(op), bool), rng.random(len(op)), female[vp[op]])
    rows.add(person=vp[op], day=vday[op], src=src[op], visit=visit[op], c1=code, order=40,
             cat=m.lbl["OP0"], ver=m.lbl["OP"])
    dent = np.nonzero(prim & (m.dental.count[vc] > 0) & (rng.random(len(vc)) < 0.7))[0]
    code = m.dental.pick(vc[dent], pick[dent] // 3 + rng.integers(0, 4, len(dent)))
    if m.freq:
        _freq_override(m, ("PRIM_OUT", "MOP"), code, np.ones(len(dent), bool), rng.random(len(dent)), female[vp[dent]])
    rows.add(person=vp[dent], day=vday[dent], src=src[dent], visit=visit[dent], c1=code, order=41,
             cat=m.lbl["MOP0"], ver=m.lbl["MOP"])


def _package_counts(m, rng, n):
    r = rng.random(n)
    k = np.where(r < 0.75, 1, np.where(r < 0.92, 2, np.where(r < 0.97, 3, rng.integers(4, 11, n))))
    return m.num[k]


def _purchase_rows(m, rng, people, rows, person, day, cond, pick, ufreq, reimb_from):
    atc = m.atc.pick(cond, pick)
    c2 = np.where(day >= reimb_from, m.kela.pick(cond, pick), 0)
    c3 = m.vnr[atc, pick % 3]
    if m.freq and ("PURCH", "purch") in m.freq:
        c1, c2f, c3f = m.freq[("PURCH", "purch")].draw(ufreq, people.female[person])
        atc, c2, c3 = c1, c2f, c3f
    rows.add(person=person, day=day, src=SRC["PURCH"], c1=atc, c2=c2, c3=c3,
             c4=_package_counts(m, rng, len(person)), ver=m.lbl["ATC"], visit=rows.visits(len(person)))


def _reimb_day(m, rng, onset, ci, fu_end_i):
    """Day each instance's special reimbursement starts (far future when it never does)."""
    eligible = (m.kela.count[ci] > 0) & (rng.random(len(ci)) < 0.7)
    day = onset + (rng.random(len(ci)) * 2 * 365.25).astype(np.int64)
    return np.where(eligible & (day <= fu_end_i), day, np.iinfo(np.int64).max)


def _chronic_purchases(m, rng, people, rows, pi, ci, onset, pick, ufreq):
    sel = np.nonzero((m.atc.count[ci] > 0) & m.chronic_drug[ci])[0]
    # Combination therapy: half the patients buy a second drug of the same condition.
    second = sel[rng.random(len(sel)) < _SECOND_DRUG]
    drug_pick = np.concatenate([pick[sel] // 7, pick[second] // 7 + 1])
    drug_u = np.concatenate([ufreq[sel], rng.random(len(second))])
    sel = np.concatenate([sel, second])
    p, c = pi[sel], ci[sel]
    fu = people.fu_end[p]
    # Patients already on the drug when the register opened are seen at their first
    # refill in 1995, spread over its first three months, not all on 1 January.
    start = np.maximum(onset[sel] + rng.integers(0, 30, len(sel)), PURCH_START + rng.integers(0, 90, len(sel)))
    # Most keep taking the drug; the rest stop after a few years.
    dur = np.where(rng.random(len(sel)) < 0.7, 10**9, (rng.exponential(5 * 365.25, len(sel))).astype(np.int64))
    stop = np.minimum(fu, start + dur)
    interval = 90
    n = np.where(stop >= start, (stop - start) // interval + 1, 0)
    n = np.minimum(n, 160)
    e = np.repeat(np.arange(len(sel)), n)
    k = within(n)
    day = start[e] + k * interval + rng.integers(-12, 13, len(e))
    inside = (day >= start[e]) & (day <= stop[e])
    e, day = e[inside], day[inside]
    reimb = _reimb_day(m, rng, onset[sel], c, fu)
    # The drug chosen per patient (pick // 7) differs from the diagnosis code's pick.
    _purchase_rows(m, rng, people, rows, p[e], day, c[e], drug_pick[e], drug_u[e], reimb[e])


def _acute_purchases(m, rng, people, rows, pi, ci, vi, vday, pick, ufreq):
    vc = ci[vi]
    sel = np.nonzero((m.atc.count[vc] > 0) & ~m.chronic_drug[vc] & (rng.random(len(vi)) < 0.6))[0]
    day = vday[sel] + rng.integers(0, 4, len(sel))
    p = pi[vi[sel]]
    ok = (day >= PURCH_START) & (day <= people.fu_end[p])
    sel, day, p = sel[ok], day[ok], p[ok]
    never = np.full(len(sel), np.iinfo(np.int64).max)
    # An acute course gets a fresh drug pick (and frequency draw) per episode.
    _purchase_rows(m, rng, people, rows, p, day, vc[sel], rng.integers(0, 1 << 30, len(sel)),
                   rng.random(len(sel)), never)


def _reimbursements(m, rng, people, rows, pi, ci, onset, pick, ufreq):
    fu = people.fu_end[pi]
    day = _reimb_day(m, rng, onset, ci, fu)
    year = year_of(np.minimum(day, END_DAY))
    sel = np.nonzero((day <= fu) & (year >= _REIMB_START_YEAR) & (m.kela.count[ci] > 0))[0]
    c, d, yr = ci[sel], day[sel], year[sel]
    ver = icd_version(yr).astype(np.int64)
    c2 = np.where(ver == 10, m.icd10_3.pick(c, pick[sel]),
                  np.where((ver == 9) & (rng.random(len(sel)) < 0.5), m.icd[1].pick(c, pick[sel]), 0))
    c1 = m.kela.pick(c, pick[sel])
    if m.freq:
        fem = people.female[pi[sel]]
        for v in (10, 9, 8):
            t = m.freq.get(("REIMB", str(v)))
            s = ver == v
            if t is not None and s.any():
                a, b, _ = t.draw(ufreq[sel][s], fem[s])
                c1[s], c2[s] = a, b
    rows.add(person=pi[sel], day=d, src=SRC["REIMB"], c1=c1, c2=c2,
             ver=ver_id(m, ver), visit=rows.visits(len(sel)))


def _cancers(m, rng, people, rows, pi, ci, onset, ufreq):
    sel = np.nonzero((m.topo.count[ci] > 0) & (year_of(onset) >= _CANC_START_YEAR))[0]
    c = ci[sel]
    zeros = np.zeros(len(sel), dtype=np.int64)
    c1, c2 = m.topo.pick(c, zeros), m.morph.pick(c, zeros)
    c3 = np.full(len(sel), m.num[3])
    if m.freq and ("CANC", "canc") in m.freq:
        c1, c2, c3 = m.freq[("CANC", "canc")].draw(ufreq[sel], people.female[pi[sel]])
    rows.add(person=pi[sel], day=onset[sel], src=SRC["CANC"], c1=c1, c2=c2, c3=c3, ver=m.lbl["O3"],
             visit=rows.visits(len(sel)))


def death_visit(people: People) -> np.ndarray:
    """Visit key of each person's death record: fixed, so recipe rows can join it."""
    return -1 - np.arange(len(people), dtype=np.int64)


def _deaths(m, rng, people, rows, pi, ci, onset, pick, inst_start, inst_count, ufreq):
    fu_end = people.fu_end
    dead = np.nonzero(people.dead & (year_of(fu_end) >= SRC_START_YEAR[SRC["DEATH"]]))[0]
    if not len(dead):
        return
    n = len(people)
    # Underlying cause: one of the person's conditions, weighted by how often it kills.
    w = m.fatal[ci] * (onset <= fu_end[pi]) * people.dead[pi]
    cw = np.cumsum(w)
    before = np.concatenate([[0.0], cw])[inst_start]           # cumulative weight before person
    total = np.concatenate([[0.0], cw])[inst_start + inst_count] - before
    target = before + rng.random(n) * total
    chosen = np.searchsorted(cw, target, side="right")
    has_cause = total > 0
    d = dead
    dday = fu_end[d]
    ver = icd_version(year_of(dday)).astype(np.int64)
    fallback_cond = m.death_fallback[rng.integers(0, len(m.death_fallback), len(d))]
    cause_cond = np.where(has_cause[d], ci[np.minimum(chosen[d], len(ci) - 1)] if len(ci) else 0, fallback_cond)
    cause_pick = np.where(has_cause[d], pick[np.minimum(chosen[d], len(ci) - 1)] if len(ci) else 0, 0)
    u_code = icd_pick(m, ver, cause_cond, cause_pick)
    fallback = icd_pick(m, ver, np.full(len(d), m.aging), cause_pick)
    u_code = np.where(u_code > 0, u_code, fallback)
    fem = people.female[d]
    if m.freq:
        u = rng.random(len(d))
        for v in (10, 9, 8):
            _freq_override(m, ("DEATH", str(v)), u_code, ver == v, u, fem)
    vkey = death_visit(people)[d]
    base = dict(person=d, day=dday, src=SRC["DEATH"], visit=vkey, ver=ver_id(m, ver))
    rows.add(**base, c1=u_code, cat=m.lbl["U"], order=0, dpref=1)
    imm = np.nonzero(rng.random(len(d)) < 0.55)[0]
    i_code = np.zeros(len(imm), dtype=np.int64)
    for v in (10, 9, 8):
        s = ver[imm] == v
        i_code[s] = _choice(rng, m.immediate[v], int(s.sum()))
    rows.add(**{k: (x[imm] if isinstance(x, np.ndarray) else x) for k, x in base.items()},
             c1=i_code, cat=m.lbl["I"], order=1, dpref=2)
    # Contributing causes: up to two other conditions the person had.
    for slot in range(2):
        has_inst = inst_count[d] > 0
        j = inst_start[d] + (rng.random(len(d)) * inst_count[d]).astype(np.int64)
        j = np.minimum(j, max(len(ci) - 1, 0))
        take = np.nonzero(has_inst & (rng.random(len(d)) < 0.45))[0]
        if not len(take) or not len(ci):
            continue
        jj = j[take]
        c_code = icd_pick(m, ver[take], ci[jj], pick[jj])
        good = (c_code > 0) & (c_code != u_code[take])
        take, c_code = take[good], c_code[good]
        rows.add(**{k: (x[take] if isinstance(x, np.ndarray) else x) for k, x in base.items()},
                 c1=c_code, cat=m.c_cat[1 + slot], order=2 + slot, dpref=3)
