"""FinnGen's curation rules run on every real FinnGen freeze in ../shared/reference/finngen/,
imported: nothing crashes, and each finding is about what its rule says.

DF6 runs by default (its import is shared with test_finngen_freezes.py); the other freezes
are `slow`. The counts per rule and freeze are in docs/diagnostics.md.
"""

from __future__ import annotations

import pytest

from endpointc.check import index_library
from endpointc.curation import CODES, curate
from test_finngen_freezes import FREEZES, REFERENCE, freeze_params, imported

pytestmark = pytest.mark.skipif(not FREEZES, reason=f"no FinnGen reference files in {REFERENCE}")


@pytest.mark.parametrize("name", freeze_params(default_fast=True))
def test_finngen_rules_run_on_the_imported_freeze(name):
    result = imported(name)
    library = index_library(result.files)
    found = curate(library, rule_sets=("finngen",))
    assert found, "every published freeze breaks some curation rule"
    assert {d.code for d in found} <= set(CODES)
    assert all(d.span is not None and d.span.file == str(REFERENCE / name) for d in found)
    endpoints = library.endpoints
    by_code: dict[str, list[str]] = {}
    for d in found:
        by_code.setdefault(d.code, []).append(d.message)
    for message in by_code.get("EP802", []):
        name_ = message.split()[0]
        assert "COMORB" in name_ and endpoints[name_].meta.get("omit") != "2"
    for message in by_code.get("EP803", []):
        assert endpoints[message.split()[0]].meta.get("omit") != "2"
    for message in by_code.get("EP804", []):
        assert message.startswith("C3_") and not message.split()[0].endswith("_WIDE")
    assert curate(library, rule_sets=("finngen",)) == found  # deterministic
