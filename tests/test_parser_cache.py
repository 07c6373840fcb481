"""The parser's tables kept between processes (`parser.parser_cache`): a parser loaded from
the cache file parses, records comments and explains syntax errors as a freshly built one
does; a damaged file is rebuilt; a folder others can write is never read."""

from __future__ import annotations

import os

import pytest

from endpointc import parser

TEXT = """# a comment
endpoint A { hospital icd10 I21 | I22  # another
  when age >= 18 }
"""
BROKEN = "endpoint A { hospital icd10 I21 I22 }"


def _outcome():
    file, diags = parser.parse(TEXT, name="a.ep")
    _, errors = parser.parse(BROKEN, name="b.ep")
    return file, diags, [(d.code, d.message, d.hints) for d in errors]


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    parser._lark.cache_clear()
    yield tmp_path
    parser._lark.cache_clear()  # later tests build (or load) the parser of the real environment


def test_a_parser_loaded_from_the_cache_parses_as_a_built_one(cache_home):
    path = parser.parser_cache()
    assert path is not None and path.parent == cache_home / "endpointc" and not path.exists()
    built = _outcome()
    assert path.exists()
    parser._lark.cache_clear()
    loaded = _outcome()
    assert loaded == built
    assert built[0].comments and built[2][0][0] == "EP105"


def test_a_damaged_cache_file_is_rebuilt(cache_home):
    path = parser.parser_cache()
    path.write_bytes(b"not a parser\n")
    assert _outcome()[2][0][0] == "EP105"
    assert path.read_bytes() != b"not a parser\n"


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_cache_folder_others_can_write_is_not_used(cache_home):
    (cache_home / "endpointc").mkdir(mode=0o777)
    os.chmod(cache_home / "endpointc", 0o777)
    assert parser.parser_cache() is None
