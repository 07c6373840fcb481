from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endpointc.synth.sampler import SHAPES, UnsampleableError, sample_code, sample_codes


@pytest.mark.parametrize("regex, shape", [
    ("E11", "icd10"), ("E10|E11|E12", "icd10"), ("F3[2-3]", "icd10"), ("C34.[123457]", "icd10"),
    ("^C34.?[12]", "icd10"), ("410", "icd9"), ("4019X", "icd9"), ("410", "icd8"), ("A10B", "atc"),
    ("N0[56]", "atc"), ("1[0-5]", "kela"), ("FNG", "nomesco"), ("C50", "topography"),
    ("(I2[0-5])|(I6[0-9])", "icd10"), ("[^A-M]1", "icd10"), (r"\d{2}", "vnr"), ("K5[01](?!9)", "icd10"),
])
def test_samples_match(regex, shape):
    rnd = random.Random(1)
    codes = sample_codes(regex, shape, rnd, 20)
    assert codes
    assert all(re.match(regex, c) for c in codes)


def test_padding_gives_well_formed_codes():
    rnd = random.Random(2)
    icd9 = sample_codes("410", "icd9", rnd, 30)
    assert all(re.fullmatch(r"410\d[A-Z]", c) for c in icd9)
    atc = sample_codes("A10B", "atc", rnd, 30)
    assert all(re.fullmatch(r"A10B[A-Z]\d\d", c) for c in atc)
    icd10 = sample_codes("I2", "icd10", rnd, 30)
    assert all(re.fullmatch(r"I2[0-9X]\d{0,2}", c) for c in icd10)
    assert any(len(c) == 3 for c in sample_codes("E11", "icd10", rnd, 40))  # E11 itself occurs


def test_exact_code_is_not_padded():
    rnd = random.Random(3)
    assert set(sample_codes("E119$", "icd10", rnd, 5)) == {"E119"}


def test_alternatives_are_all_reached():
    codes = sample_codes("I21|I22|I23", "icd10", random.Random(4), 60)
    assert {c[:3] for c in codes} == {"I21", "I22", "I23"}


def test_excludes_are_honoured():
    codes = sample_codes("E11", "icd10", random.Random(5), 40, excludes=("E119",))
    assert codes and not any(c.startswith("E119") for c in codes)
    assert sample_code("E119", "icd10", random.Random(5), excludes=("E11",)) is None


def test_deterministic():
    first = sample_codes("M[0-9]", "icd10", random.Random(6), 10)
    assert first == sample_codes("M[0-9]", "icd10", random.Random(6), 10)


def test_unsupported_constructs_raise():
    with pytest.raises(UnsampleableError):
        sample_code(r"(A)\1", "icd10", random.Random(0))
    with pytest.raises(UnsampleableError):
        sample_code("E1[", "icd10", random.Random(0))


_piece = st.one_of(
    st.sampled_from(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")),
    st.sampled_from(["[0-9]", "[1-3]", "[A-C]", ".", "[012]"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_piece, min_size=1, max_size=4).map("".join), min_size=1, max_size=3),
       st.sampled_from(sorted(SHAPES)))
def test_random_patterns(alternatives, shape):
    regex = "|".join(alternatives)
    code = sample_code(regex, shape, random.Random(0))
    assert code is not None and re.match(regex, code)
