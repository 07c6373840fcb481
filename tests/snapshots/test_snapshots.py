"""Error-message snapshots: each cases/NAME.ep is a broken definition, NAME.txt its messages.

The text is what a user sees (without colour): parse errors, or, when the file parses,
every diagnostic of `check`. Regenerate after a deliberate wording change with
`UPDATE_SNAPSHOTS=1 pytest tests/snapshots` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from endpointc.check import check
from endpointc.parser import parse
from endpointc.render import format_diagnostic
from endpointc.source import Source

CASES = Path(__file__).resolve().parent / "cases"
NAMES = sorted(p.stem for p in CASES.glob("*.ep"))


def render(name: str) -> str:
    # A relative file name keeps the snapshots independent of where the repo lives.
    source = Source(f"{name}.ep", (CASES / f"{name}.ep").read_text(encoding="utf-8"))
    tree, diags = parse(source.text, name=source.name)
    if tree is not None:
        diags = check([tree])[1]
    return "\n\n".join(format_diagnostic(d, source) for d in diags) + "\n"


def test_there_are_enough_distinct_mistakes():
    assert len(NAMES) >= 20


@pytest.mark.parametrize("name", NAMES)
def test_snapshot(name):
    text = render(name)
    expected = CASES / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        expected.write_text(text, encoding="utf-8")
    assert expected.exists(), f"no snapshot for {name}: run with UPDATE_SNAPSHOTS=1"
    assert text.strip(), f"{name}.ep produced no diagnostic"
    assert text == expected.read_text(encoding="utf-8")
