"""Message snapshots of the curation rule sets: each curation/NAME.ep is a library that
breaks a FinnGen curation rule, NAME.txt every diagnostic of `check` with the `finngen`
rule set (the same format as test_snapshots.py; regenerate with
`UPDATE_SNAPSHOTS=1 pytest tests/snapshots` and review the diff)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from endpointc.check import check
from endpointc.curation import CODES
from endpointc.parser import parse
from endpointc.render import format_diagnostic
from endpointc.source import Source

CASES = Path(__file__).resolve().parent / "curation"
NAMES = sorted(p.stem for p in CASES.glob("*.ep"))


def render(name: str) -> str:
    source = Source(f"{name}.ep", (CASES / f"{name}.ep").read_text(encoding="utf-8"))
    tree, diags = parse(source.text, name=source.name)
    assert tree is not None, diags
    diags = check([tree], rules=("finngen",))[1]
    return "\n\n".join(format_diagnostic(d, source) for d in diags) + "\n"


@pytest.mark.parametrize("name", NAMES)
def test_curation_snapshot(name):
    text = render(name)
    expected = CASES / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        expected.write_text(text, encoding="utf-8")
    assert expected.exists(), f"no snapshot for curation/{name}: run with UPDATE_SNAPSHOTS=1"
    assert text == expected.read_text(encoding="utf-8"), (
        f"curation/{name}.ep: the messages changed; review them and update the snapshot (UPDATE_SNAPSHOTS=1)")


def test_every_curation_code_has_a_snapshot():
    shown = {code for name in NAMES for code in re.findall(r"\[(EP8\d\d)\]", render(name))}
    assert shown == set(CODES)
