"""Scale: bounded memory for big cohorts (run with `pytest -m slow`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_large_cohort_in_bounded_memory(tmp_path):
    # A child process, so that its peak memory is the generator's alone.
    script = (
        "import resource, sys\n"
        "from endpointc.synth import write_registry\n"
        "r = write_registry(sys.argv[1], people=60_000, seed=1)\n"
        "print(r['n_events'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split()
    n_events, peak_mb = int(out[0]), int(out[1])
    assert n_events > 60_000 * 300
    assert peak_mb < 4_000, f"peak memory {peak_mb} MB"
