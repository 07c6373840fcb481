"""The Python examples of docs/api.md and README.md run as written.

Every ```python block of a document is run, in order and in one namespace, in a folder
that holds what the document says it needs: the starter library in definitions/ and the
synthetic registry of `endpointc synth --people 200 --seed 1 --definitions definitions/`
in reg/, as Parquet and as TSV.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import endpointc
from endpointc.synth import write_registry

REPO = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return _BLOCK.findall(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api_docs")
    shutil.copytree(REPO / "definitions", root / "definitions")
    program = endpointc.compile_program([root / "definitions"])
    for fmt in ("parquet", "tsv"):
        write_registry(root / "reg", people=200, seed=1, fmt=fmt, definitions=program)
    return root


@pytest.mark.parametrize("doc", ["docs/api.md", "README.md"])
def test_the_examples_run(doc, workspace, tmp_path, monkeypatch):
    blocks = python_blocks(REPO / doc)
    assert blocks, f"{doc} has no python example"
    here = tmp_path / "here"
    shutil.copytree(workspace, here)
    monkeypatch.chdir(here)
    namespace: dict = {"__name__": "__docs__"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{doc}, python block {number}", "exec"), namespace)
    assert (here / "out" / "counts.tsv").is_file()


def test_the_api_page_states_what_the_code_does(workspace, monkeypatch, capsys):
    """The outputs the api page quotes in its comments are the ones printed."""
    monkeypatch.chdir(workspace)
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    program = endpointc.compile_program(["definitions/"])
    registry = endpointc.load_registry("reg/events.parquet", "reg/people.parquet")
    results = endpointc.evaluate(program, registry.events, registry.people, endpoints=["I9_MI"])
    paths = endpointc.write_results(results.long, results.counts, workspace / "quoted", people=registry.people,
                                    wide=True)
    assert f"print([p.name for p in paths])   # {[p.name for p in paths]}" in text
    with pytest.raises(endpointc.RegistryError) as error:
        endpointc.load_registry("reg/events.tsv", "reg/no_such_people.tsv")
    assert f"# {error.value.code} {error.value}" in text
