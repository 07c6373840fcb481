from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from endpointc.synth import generate

REPO = Path(__file__).resolve().parents[2]
SUMMARY = (REPO / ".." / "shared" / "reference" / "finngen" / "LongitudinalDummyDataGenerator_summary_R12v1"
           / "CODE1_CODE2_CODE3_vocabulary_summary.tsv").resolve()


@pytest.fixture(scope="session")
def registry() -> tuple[pl.DataFrame, pl.DataFrame]:
    """A small background-only registry shared by the read-only tests."""
    events, people = generate(people=1500, seed=11)
    return events.collect(), people.collect()


@pytest.fixture(scope="session")
def summary_path() -> Path:
    if not SUMMARY.is_file():
        pytest.skip(f"FinnGen summary file not available at {SUMMARY}")
    return SUMMARY
