"""A small library, a synthetic registry made for it, and `endpointc run` over them: for the
tests of the run manifest and of incremental re-runs."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from endpointc.cli import app

__all__ = ["LIBRARY", "invoke", "write_library", "write_registry", "run"]

LIBRARY = """\
codelist MI_CODES {
  icd10 I21 | I22
  icd9 410
}

endpoint I9_MI {
  title "Myocardial infarction"
  tags I9, CARDIO
  hospital @MI_CODES
  death    @MI_CODES
}

endpoint I9_CHD {
  hospital icd10 I20-I25
  include I9_MI
}

endpoint I9_CHD_EARLY {
  include I9_CHD
  when age < 55
  controls {
    exclude I9_CHD
  }
}

endpoint E4_DM2 {
  hospital icd10 E11
  purchase atc A10B
}
"""

_runner = CliRunner()


def invoke(*args):
    return _runner.invoke(app, [str(a) for a in args])


def write_library(folder: Path, text: str = LIBRARY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lib.ep").write_text(text)
    return folder


def write_registry(folder: Path, library: Path) -> Path:
    result = invoke("synth", "--people", "300", "--seed", "5", "--out", folder, "--definitions", library,
                    "--prevalence", "0.2")
    assert result.exit_code == 0, result.output
    return folder


def run(library: Path, registry: Path, out: Path, *extra, exit_code: int = 0):
    result = invoke("run", library, "--events", registry / "events.parquet", "--people",
                    registry / "people.parquet", "--out", out, *extra)
    assert result.exit_code == exit_code, result.output
    return result
