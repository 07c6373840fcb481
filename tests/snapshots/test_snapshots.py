"""Error-message snapshots: each NAME.ep is a broken definition, NAME.txt its messages.

Two folders, one format:

- ``cases/``: the messages as they should be, at least one per kind of mistake;
- ``known_bad/``: messages known to be poor, recorded as they are today (each file's first
  comment says what is weak and what a better message would do). An improvement shows up
  here as a snapshot change: review it, then move the pair to ``cases/``. A known_bad case
  may record that nothing is reported at all (``NO_DIAGNOSTICS``).

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

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
KNOWN_BAD = HERE / "known_bad"
FOLDERS = (CASES, KNOWN_BAD)
NAMES = sorted(p.stem for p in CASES.glob("*.ep"))
KNOWN_BAD_NAMES = sorted(p.stem for p in KNOWN_BAD.glob("*.ep"))
# The snapshot of a file that produces no diagnostic (only allowed in known_bad/).
NO_DIAGNOSTICS = "(no diagnostics)\n"


def render(name: str, folder: Path = CASES) -> str:
    # A relative file name keeps the snapshots independent of where the repo lives.
    source = Source(f"{name}.ep", (folder / f"{name}.ep").read_text(encoding="utf-8"))
    tree, diags = parse(source.text, name=source.name)
    if tree is not None:
        diags = check([tree])[1]
    if not diags:
        return NO_DIAGNOSTICS
    return "\n\n".join(format_diagnostic(d, source) for d in diags) + "\n"


def _compare(folder: Path, name: str) -> str:
    text = render(name, folder)
    expected = folder / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        expected.write_text(text, encoding="utf-8")
    assert expected.exists(), f"no snapshot for {folder.name}/{name}: run with UPDATE_SNAPSHOTS=1"
    assert text == expected.read_text(encoding="utf-8"), (
        f"{folder.name}/{name}.ep: the messages changed; if this is an improvement, review it, "
        "update the snapshot (UPDATE_SNAPSHOTS=1)"
        + (" and move the pair to cases/" if folder == KNOWN_BAD else ""))
    return text


def test_there_are_enough_distinct_mistakes():
    assert len(NAMES) >= 20


def test_known_bad_messages_are_recorded():
    assert KNOWN_BAD_NAMES, "tests/snapshots/known_bad/ holds the known weak messages"
    for folder in FOLDERS:
        pairs = {p.stem for p in folder.glob("*.ep")}
        orphans = sorted(p.name for p in folder.glob("*.txt") if p.stem not in pairs)
        assert not orphans, f"snapshots without a definition in {folder.name}/: {orphans}"
    assert not set(NAMES) & set(KNOWN_BAD_NAMES), "a name is in both cases/ and known_bad/"
    for name in KNOWN_BAD_NAMES:
        first = (KNOWN_BAD / f"{name}.ep").read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# Known weak:"), f"known_bad/{name}.ep: say what is weak first"


@pytest.mark.parametrize("name", NAMES)
def test_snapshot(name):
    text = _compare(CASES, name)
    assert text != NO_DIAGNOSTICS, f"{name}.ep produced no diagnostic"


@pytest.mark.parametrize("name", KNOWN_BAD_NAMES)
def test_known_bad_snapshot(name):
    _compare(KNOWN_BAD, name)
