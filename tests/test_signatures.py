"""Signatures: which endpoints are folded into the key table, which are complex, and keys
that do the same thing sharing one signature (engine/signatures.py)."""

from __future__ import annotations

import polars as pl

from endpointc import compile_program_text
from endpointc.engine.matching import match_keys
from endpointc.engine.signatures import ALL_SEXES, SEX_BITS, signatures

PROGRAM = compile_program_text("""
endpoint A { hospital icd10 E11 }
endpoint B { include A  sex female }
endpoint C { include B }
endpoint D { include A  when age < 40 }
endpoint E { include D }
endpoint F { hospital icd10 I21  require A }
endpoint G { include F }
endpoint H { purchase min 2 atc A10 }
endpoint J { hospital icd10 I10 }
endpoint K { include J  include H }
""")
KEYS = pl.DataFrame({
    "SOURCE": ["INPAT", "INPAT", "INPAT", "INPAT", "PURCH"],
    "ICDVER": ["10", "10", "10", "10", None],
    "CODE1": ["E110", "E119", "I21", "I10", "A10BA02"],
    "CATEGORY": [None] * 5, "CODE2": [None] * 5, "CODE3": [None] * 5,
})
POS = {ep.name: i for i, ep in enumerate(PROGRAM.endpoints)}


def _sigs():
    return signatures(PROGRAM, match_keys(PROGRAM, KEYS))


def _names(positions) -> set[str]:
    return {PROGRAM.endpoints[i].name for i in positions}


def _sig_of(code: str) -> int:
    keys = _sigs().keys
    return keys.filter(pl.col("CODE1") == code)["SIG"].item()


def _flat_of(code: str) -> dict[str, int]:
    flat = _sigs().flat.filter(pl.col("SIG") == _sig_of(code))
    return {PROGRAM.endpoints[e].name: m for e, m in flat.select("EP", "MASK").iter_rows()}


def test_complex_endpoints_are_those_with_a_when_a_counted_rule_or_an_impure_include():
    sigs = _sigs()
    # D has a `when`, H a `min`; E, G and K include an impure endpoint (D, F, H).
    assert _names(sigs.complex) == {"D", "E", "G", "H", "K"}
    # the impure endpoints that are included keep their case rows as rows
    assert _names(sigs.carried) == {"D", "F", "H"}


def test_pure_includes_are_folded_with_their_sex_as_a_mask():
    # E11 rows are A's, B's and C's: C reads them only for women (the sex of B, which it
    # includes; B's own sex is applied to B's cases). D folds A too; its `when` is applied
    # when D is resolved level by level.
    assert _flat_of("E110") == {"A": ALL_SEXES, "B": ALL_SEXES, "C": SEX_BITS["female"],
                                "D": ALL_SEXES}
    # J is pure: folded into K; H's counted rule is not folded anywhere
    assert _flat_of("I10") == {"J": ALL_SEXES, "K": ALL_SEXES}
    assert _sigs().counted.filter(pl.col("SIG") == _sig_of("A10BA02"))["EP"].to_list() == [POS["H"]]


def test_keys_that_do_the_same_thing_share_a_signature():
    assert _sig_of("E110") == _sig_of("E119")
    assert len({_sig_of(c) for c in ("E110", "I21", "I10", "A10BA02")}) == 4


def test_rows_a_when_reads_stay_single():
    sigs = _sigs()
    # D's `when` reads A's rows (D includes A); nothing reads I10 rows by a `when`
    assert _sig_of("E110") in sigs.single
    assert _sig_of("I10") not in sigs.single
