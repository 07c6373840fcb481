"""examples/freeze runs as its README says: registry, freeze, rerun with everything reused,
one changed endpoint, QC gate; and the gate trips when told to."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FREEZE = Path(__file__).parents[1] / "examples" / "freeze"

# Four CLI runs of the starter library end to end (20 s); each step has its own test:
# synth, run with the release files, --reuse byte for byte, diff --fail-above.
pytestmark = pytest.mark.slow


def make(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("make"), "examples/freeze needs GNU make on PATH"
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        ["make", "-C", str(FREEZE), f"WORK={work}", f"PYTHON={sys.executable}",
         f"ENDPOINTC={bin_dir / 'endpointc'}", "PEOPLE=1000", *args],
        capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("freeze")
    done = make(work)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return work


def test_the_freeze_pipeline_runs_end_to_end(built):
    for folder in ("v1", "v1-again", "v2"):
        assert {"manifest.json", "endpoints.parquet", "counts.tsv", "intermediate_counts.tsv",
                "endpoint_longitudinal.parquet"} <= {p.name for p in (built / folder).iterdir()}
    # nothing outside WORK
    assert not (FREEZE / "work").exists()


def test_a_strict_gate_stops_the_build(built):
    # the targets before `gate` are up to date, so only the gate runs, and trips on I9_MI
    done = make(built, "gate", "FAIL_ABOVE=1", "MIN_CASES=5")
    assert done.returncode != 0
    assert "I9_MI" in done.stdout + done.stderr
