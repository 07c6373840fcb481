"""The runnable examples in docstrings are part of the documentation: they must run."""

import doctest
import importlib
import pkgutil

import pytest

import endpointc

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(endpointc.__path__, "endpointc.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
