"""The language server (`endpointc lsp`), driven over a pipe by pygls's LSP client as an
editor drives it: diagnostics as the text changes (also in files that include a renamed
endpoint), hover, definition, references, rename, completion, outline, folding and
formatting. Plus the pieces that need no server: positions in UTF-16, completion contexts,
and the VS Code grammar's coverage of the language's words.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

from endpointc import ast
from endpointc.fmt import format_text
from endpointc.lsp import analysis as lsp_analysis, features
from endpointc.lsp.analysis import Positions, analyse, parse_text
from endpointc.parser import parse
from endpointc.registers import REGISTERS

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 15

CARDIO = """\
codelist MI_CODES {
  icd10 I21 | I22
  icd9 410
}

endpoint I9_MI {
  title "Myocardial infarction"
  hospital @MI_CODES
}

endpoint I9_MI_EARLY {
  include I9_MI
  when age < 50
}
"""

OTHER = """\
endpoint I9_CHD {
  title "Coronary heart disease"
  include I9_MI
  hospital icd10 I20 | I25
}

test "an infarction is a case" {
  person P1 male born 1950-01-01 followed until 2020-01-01 {
    1990-03-01 INPAT icd10 I21
  }
  expect P1 case of I9_MI
}
"""


def _library(editor: "Editor", name: str) -> Path:
    """A library of its own (a folder: the server checks each folder's files together)."""
    folder = editor.root / name
    folder.mkdir()
    (folder / "cardio.ep").write_text(CARDIO, encoding="utf-8")
    (folder / "other.ep").write_text(OTHER, encoding="utf-8")
    return folder


def _position(text: str, needle: str, nth: int = 0, inside: int = 1) -> types.Position:
    """The position `inside` characters into the `nth` occurrence of `needle` (ASCII text)."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    at += inside
    line = text.count("\n", 0, at)
    return types.Position(line, at - (text.rfind("\n", 0, at) + 1))


def _text_at(text: str, where: types.Range) -> str:
    lines = text.split("\n")
    assert where.start.line == where.end.line
    return lines[where.start.line][where.start.character:where.end.character]


def _apply(text: str, edits) -> str:
    """Apply non-overlapping edits, last first (ASCII text: UTF-16 units are characters)."""
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        begin = starts[edit.range.start.line] + edit.range.start.character
        end = starts[edit.range.end.line] + edit.range.end.character
        text = text[:begin] + edit.new_text + text[end:]
    return text


class Editor:
    """`endpointc lsp` in a child process, and pygls's client speaking to it over its pipes."""

    def __init__(self, root: Path, settings: dict | None = None):
        self.root = root
        self.settings = settings or {}
        self.client = LanguageClient("endpointc-tests", "1")
        self.published: dict[str, list[types.Diagnostic]] = {}
        self.messages: list[str] = []  # window/showMessage
        self._news = asyncio.Event()
        self.versions: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()  # the client's, for the tests' scenarios

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: types.PublishDiagnosticsParams) -> None:
            self.published[params.uri] = list(params.diagnostics)
            self._news.set()

        @self.client.feature(types.WINDOW_SHOW_MESSAGE)
        def message(params: types.ShowMessageParams) -> None:
            self.messages.append(params.message)

    async def start(self) -> None:
        await self.client.start_io(sys.executable, "-m", "endpointc.cli", "lsp")
        await asyncio.wait_for(self.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri=from_fs_path(str(self.root)),
            initialization_options=self.settings)), TIMEOUT)
        self.client.initialized(types.InitializedParams())

    async def stop(self) -> None:
        await asyncio.wait_for(self.client.shutdown_async(None), TIMEOUT)
        self.client.exit(None)
        await asyncio.wait_for(self.client.stop(), TIMEOUT)

    def open(self, path: Path, text: str | None = None) -> str:
        uri = from_fs_path(str(path))
        self.versions[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
            uri=uri, language_id="endpointc", version=1,
            text=path.read_text(encoding="utf-8") if text is None else text)))
        return uri

    def change(self, uri: str, text: str) -> None:
        self.versions[uri] += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            [types.TextDocumentContentChangeWholeDocument(text=text)]))

    async def diagnostics(self, uri: str, until=lambda found: True) -> list[types.Diagnostic]:
        """The diagnostics of `uri` once they satisfy `until`."""
        async def arrived():
            while uri not in self.published or not until(self.published[uri]):
                self._news.clear()
                await self._news.wait()
            return self.published[uri]
        return await asyncio.wait_for(arrived(), TIMEOUT)

    def doc(self, uri: str) -> types.TextDocumentIdentifier:
        return types.TextDocumentIdentifier(uri=uri)


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    """One server for the module (it starts in a second or two); each test works in a
    library (folder) of its own. Hover counts read `events.tsv` of the workspace."""
    editor = Editor(tmp_path_factory.mktemp("workspace"), {"endpointc": {"events": "events.tsv"}})
    editor.loop.run_until_complete(editor.start())
    yield editor
    editor.loop.run_until_complete(editor.stop())
    editor.loop.close()


def run(editor: Editor, scenario) -> None:
    editor.loop.run_until_complete(asyncio.wait_for(scenario(), 4 * TIMEOUT))


# -- over the pipe -------------------------------------------------------------------

def test_errors_are_reported_at_their_place_as_the_file_changes(editor):
    folder = _library(editor, "errors")
    broken = "endpoint A {\n  hospital icd10 I21 I22\n}\n"

    async def scenario():
        uri = editor.open(folder / "new.ep", broken)
        (found,) = await editor.diagnostics(uri, lambda d: bool(d))
        expected = parse(broken, name="x")[1][0]
        assert (found.code, found.severity) == (expected.code, types.DiagnosticSeverity.Error) == (
            "EP105", types.DiagnosticSeverity.Error)
        assert _text_at(broken, found.range) == "I22"
        assert any(r.message.startswith("hint: ") for r in found.related_information)

        # a checker error: an unknown endpoint, with a did-you-mean hint
        fixed = broken.replace("I21 I22", "I21 | I22\n  include I9_MJ")
        editor.change(uri, fixed)
        found = await editor.diagnostics(uri, lambda d: [x.code for x in d] == ["EP201"])
        assert _text_at(fixed, found[0].range) == "I9_MJ"
        assert "hint: did you mean I9_MI?" in [r.message for r in found[0].related_information]

        editor.change(uri, fixed.replace("I9_MJ", "I9_MI"))
        assert await editor.diagnostics(uri, lambda d: not d) == []

    run(editor, scenario)


def test_a_renamed_endpoint_breaks_its_includers_in_other_files(editor):
    folder = _library(editor, "rename")
    other = from_fs_path(str(folder / "other.ep"))

    async def scenario():
        uri = editor.open(folder / "cardio.ep")
        assert await editor.diagnostics(uri) == []
        renamed = CARDIO.replace("endpoint I9_MI {", "endpoint I9_MYOCARDIAL {")
        editor.change(uri, renamed)
        # other.ep is not open: its diagnostics come all the same
        found = await editor.diagnostics(other, lambda d: len(d) >= 2)
        assert {d.code for d in found} == {"EP201"}
        assert {_text_at(OTHER, d.range) for d in found} == {"I9_MI"}
        # and in the renamed file, its own includer
        own = await editor.diagnostics(uri, lambda d: bool(d))
        assert [_text_at(renamed, d.range) for d in own] == ["I9_MI"]

        editor.change(uri, CARDIO)
        await editor.diagnostics(other, lambda d: not d)
        # while cardio.ep does not parse, its last names stay: no noise in its includers
        editor.change(uri, CARDIO + "endpoint {")
        await editor.diagnostics(uri, lambda d: [x.code for x in d] == ["EP101"])
        assert editor.published[other] == []

    run(editor, scenario)


def test_the_project_configuration_selects_curation_rules(editor):
    folder = editor.root / "curated"
    folder.mkdir()
    (folder / "endpointc.toml").write_text('rules = ["finngen"]\n', encoding="utf-8")
    text = "endpoint I9_COMORB {\n  hospital icd10 I21\n}\n"

    async def scenario():
        uri = editor.open(folder / "comorb.ep", text)
        found = await editor.diagnostics(uri, lambda d: bool(d))
        (comorb,) = [d for d in found if d.code == "EP802"]  # a COMORB endpoint must be omit 2
        assert _text_at(text, comorb.range) == "I9_COMORB"

    run(editor, scenario)


def test_hover_definition_references_and_rename(editor):
    folder = _library(editor, "navigation")

    async def scenario():
        client = editor.client
        uri = editor.open(folder / "other.ep")
        cardio = from_fs_path(str(folder / "cardio.ep"))
        await editor.diagnostics(uri)
        on_include = _position(OTHER, "I9_MI")

        hover = await client.text_document_hover_async(types.HoverParams(editor.doc(uri), on_include))
        text = hover.contents.value
        assert "**I9_MI**: Myocardial infarction" in text
        assert "rule 1 (hospital)" in text and "CODE1 starts with I21 or I22" in text  # describe's words
        assert "included by: `I9_CHD`, `I9_MI_EARLY`" in text
        assert _text_at(OTHER, hover.range) == "I9_MI"

        (target,) = await client.text_document_definition_async(types.DefinitionParams(editor.doc(uri), on_include))
        assert target.uri == cardio and _text_at(CARDIO, target.range) == "I9_MI"
        assert target.range.start.line == CARDIO.split("\n").index("endpoint I9_MI {")

        found = await client.text_document_references_async(types.ReferenceParams(
            text_document=editor.doc(uri), position=on_include, context=types.ReferenceContext(include_declaration=True)))
        places = sorted((Path(f.uri).name, f.range.start.line) for f in found)
        assert places == [("cardio.ep", 5), ("cardio.ep", 11), ("other.ep", 2), ("other.ep", 10)]

        # a codelist name, from its use after `@`
        on_codelist = _position(CARDIO, "@MI_CODES", inside=3)
        editor.open(folder / "cardio.ep")
        (target,) = await client.text_document_definition_async(
            types.DefinitionParams(editor.doc(cardio), on_codelist))
        assert _text_at(CARDIO, target.range) == "MI_CODES" and target.range.start.line == 0

        prepared = await client.text_document_prepare_rename_async(
            types.PrepareRenameParams(editor.doc(uri), on_include))
        assert prepared.placeholder == "I9_MI"
        edit = await client.text_document_rename_async(types.RenameParams(editor.doc(uri), on_include, "I9_AMI"))
        texts = {cardio: CARDIO, uri: OTHER}
        renamed = {u: _apply(texts[u], edits) for u, edits in edit.changes.items()}
        assert set(renamed) == {cardio, uri}
        assert "I9_MI " not in renamed[cardio] and renamed[uri].count("I9_AMI") == 2
        trees = [parse(t, name=u)[0] for u, t in renamed.items()]
        from endpointc.check import check
        assert check(trees)[1] == ()

        for bad in ("i9_ami", "I9_MI_EARLY"):
            with pytest.raises(JsonRpcException):
                await client.text_document_rename_async(types.RenameParams(editor.doc(uri), on_include, bad))

    run(editor, scenario)


def test_completion_outline_folding_and_formatting(editor):
    folder = _library(editor, "completion")

    async def scenario():
        client = editor.client
        text = "endpoint I9_NEW {\n  include I9\n  hospital \n  \n}\n"
        uri = editor.open(folder / "new.ep", text)
        await editor.diagnostics(uri)

        async def labels(position):
            items = await client.text_document_completion_async(
                types.CompletionParams(editor.doc(uri), position))
            return {i.label for i in (items.items if isinstance(items, types.CompletionList) else items)}

        assert {"I9_MI", "I9_CHD", "I9_MI_EARLY"} <= await labels(types.Position(1, 12))
        after_source = await labels(types.Position(2, 11))
        assert set(REGISTERS["hospital"].vocabularies) | {"main", "with", "min"} <= after_source
        assert "atc" not in after_source
        assert {"hospital", "purchase", "include", "title", "controls"} <= await labels(types.Position(3, 2))

        symbols = await client.text_document_document_symbol_async(
            types.DocumentSymbolParams(editor.doc(from_fs_path(str(folder / "other.ep")))))
        assert [(s.name, s.detail) for s in symbols] == [
            ("I9_CHD", "Coronary heart disease"), ("test 'an infarction is a case'", None)]
        assert [c.name for c in symbols[1].children] == ["P1"]

        folds = await client.text_document_folding_range_async(
            types.FoldingRangeParams(editor.doc(from_fs_path(str(folder / "other.ep")))))
        assert {(f.start_line, f.end_line) for f in folds} >= {(0, 4), (6, 11), (7, 9)}

        messy = 'endpoint   I9_NEW{hospital icd10 I21|I22  # MI\ntitle "New"}\n'
        editor.change(uri, messy)
        (edit,) = await client.text_document_formatting_async(types.DocumentFormattingParams(
            editor.doc(uri), types.FormattingOptions(tab_size=2, insert_spaces=True)))
        assert _apply(messy, [edit]) == format_text(messy)[0]

    run(editor, scenario)


def _events(path: Path, codes: dict[str, int]) -> None:
    """A FinnGen events table: `count` hospital rows of each ICD-10 code."""
    columns = ["FINNGENID", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY", "CODE1", "CODE2", "CODE3", "CODE4",
               "ICDVER", "CATEGORY", "INDEX"]
    rows = ["\t".join(columns)]
    for code, count in codes.items():
        rows += [f"FG{i:08d}\tINPAT\t50.0\t2000-01-01\t{code}\tNA\tNA\tNA\t10\t0\t{i}" for i in range(count)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_hover_on_a_pattern_lists_the_registry_codes_it_matches_masked(editor):
    folder = _library(editor, "registry")
    _events(editor.root / "events.tsv", {"I219": 7, "I220": 2, "I209": 9})

    async def scenario():
        uri = editor.open(folder / "cardio.ep")
        await editor.diagnostics(uri)
        hover = await editor.client.text_document_hover_async(
            types.HoverParams(editor.doc(uri), _position(CARDIO, "I21 |")))
        text = hover.contents.value
        assert "**icd10** pattern `I21`: the code starts with I21" in text
        assert "- hospital: CODE1 of INPAT, OUTPAT rows, ICDVER 10" in text
        assert "| INPAT | I219 | 7 |" in text
        assert "I220" not in text and "I209" not in text  # not this pattern's codes
        assert _text_at(CARDIO, hover.range) == "I21"

        hover = await editor.client.text_document_hover_async(
            types.HoverParams(editor.doc(uri), _position(CARDIO, "I22")))
        assert "| INPAT | I220 | <5 |" in hover.contents.value  # 2 events: masked

    run(editor, scenario)


def _people(path: Path, count: int) -> None:
    """A people table of the first `count` people of `_events`."""
    rows = ["FINNGENID\tSEX\tAPPROX_BIRTH_DATE\tFU_END_AGE\tDEATH"]
    rows += [f"FG{i:08d}\tfemale\t1950-01-01\t70.0\t0" for i in range(count)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_hover_counts_come_from_the_configured_index_until_it_cannot_serve(editor):
    from endpointc.index import build_index

    folder = _library(editor, "indexed")
    events, people = editor.root / "events.tsv", editor.root / "people.tsv"
    _events(events, {"I219": 7, "I220": 2})
    _people(people, 5)  # the index keeps the registry as checked: 5 of the 7 I219 events
    build_index(events, people, folder / "idx")
    (folder / "endpointc.toml").write_text('index = "idx"\n', encoding="utf-8")

    async def scenario():
        uri = editor.open(folder / "cardio.ep")
        await editor.diagnostics(uri)
        hover = await editor.client.text_document_hover_async(
            types.HoverParams(editor.doc(uri), _position(CARDIO, "I21 |")))
        assert "| INPAT | I219 | 5 |" in hover.contents.value

        _events(events, {"I219": 8})
        hover = await editor.client.text_document_hover_async(
            types.HoverParams(editor.doc(uri), _position(CARDIO, "I22")))
        text = hover.contents.value
        assert "cannot use the event index" in text and "has changed since" in text and "| INPAT" not in text
        assert any("has changed since" in m for m in editor.messages)

    run(editor, scenario)


# -- without a server --------------------------------------------------------------------

def test_code_counts_open_the_index_once_and_again_when_it_changes(tmp_path):
    from unittest import mock

    from endpointc import index as index_module
    from endpointc.lsp.server import CodeCounts

    _events(tmp_path / "events.tsv", {"I219": 7, "I220": 9})
    _people(tmp_path / "people.tsv", 9)
    for name in ("idx", "other"):
        index_module.build_index(tmp_path / "events.tsv", tmp_path / "people.tsv", tmp_path / name)
    text = "endpoint A { hospital icd10 I21 | I22 }"
    analysis = _analysis(x=text)
    i21, i22 = (analysis.pattern_at("x", text.index(code)) for code in ("I21", "I22"))
    counts = CodeCounts()
    with mock.patch.object(index_module, "open_index", wraps=index_module.open_index) as opened:
        assert "| INPAT | I219 | 7 |" in counts.table(analysis, i21, None, tmp_path / "idx")
        assert "| INPAT | I220 | 9 |" in counts.table(analysis, i22, None, tmp_path / "idx")
        assert opened.call_count == 1
        for _ in range(2):  # the settings changed
            assert "| INPAT | I219 | 7 |" in counts.table(analysis, i21, tmp_path / "events.tsv", tmp_path / "other")
        assert opened.call_count == 2
        _events(tmp_path / "events.tsv", {"I219": 70})  # the registry changed
        assert "has changed since" in counts.table(analysis, i21, None, tmp_path / "other")
        assert opened.call_count == 3 and counts.problem


def test_positions_count_utf16_units_and_lines_at_newlines_only():
    text = "# \N{GRINNING FACE} ok\nendpoint A {}\n"
    positions = Positions(text)
    at = text.index("ok")
    assert positions.position(at, "utf-16") == (0, 5)  # the emoji is two UTF-16 units
    assert positions.position(at, "utf-32") == (0, 4)
    assert positions.position(at, "utf-8") == (0, 7)
    for encoding in ("utf-8", "utf-16", "utf-32"):
        assert positions.offset(*positions.position(at, encoding), encoding) == at
    assert positions.offset(1, 9, "utf-16") == text.index("A")
    assert positions.offset(9, 0, "utf-16") == len(text)


def _analysis(**texts: str):
    return analyse({name: parse_text(name, text) for name, text in texts.items()})


def test_occurrences_cover_every_place_a_name_is_written():
    text = ('codelist C icd10 I21\n'
            'endpoint A { hospital icd10 @C | I22&@C except @C  parent B }\n'
            'endpoint B { include A  when within 1 year after A  require A.count > 1\n'
            '  controls { exclude A  require not A }  death @C }\n'
            'test "t" { person P male born 1950-01-01 followed until 2000-01-01 { } expect P control of A }\n')
    found = _analysis(x=text).occurrences["x"]
    spans = {(o.kind, o.name, text[o.span.offset:o.span.end_offset], o.definition) for o in found}
    assert all(written == name for _, name, written, _ in spans)
    counts = {(kind, name): sum(1 for o in found if (o.kind, o.name) == (kind, name)) for kind, name, *_ in spans}
    assert counts == {("codelist", "C"): 5, ("endpoint", "A"): 7, ("endpoint", "B"): 2}


def test_a_stale_file_keeps_its_names_and_reports_only_its_syntax_error():
    first = _analysis(a="endpoint A { hospital icd10 I21 }", b="endpoint B { include A }")
    broken = {"a": parse_text("a", "endpoint A { hospital icd10 I21 } endpoint"), "b": first.files["b"]}
    second = analyse(broken, previous=first)
    assert second.stale == {"a"}
    assert [d.code for d in second.diagnostics["a"]] == ["EP101"]
    assert second.diagnostics.get("b", ()) == ()
    assert second.at("a", 10) is None  # positions in a stale file are not looked up


@pytest.mark.parametrize(("before", "expected", "absent"), [
    ("", {"endpoint", "codelist", "test"}, {"hospital"}),
    ("endpoint A {\n  ", {"hospital", "title", "include", "sex"}, {"endpoint"}),
    ("endpoint A {\n  purchase ", {"atc", "vnr", "kela", "min"}, {"main", "with", "icd10"}),
    ("endpoint A {\n  hospital icd10 I21 ", {"icd9", "except"}, {"main"}),
    ("endpoint A {\n  hospital with ", {"atc"}, {"icd10"}),
    ("endpoint A {\n  sex ", {"female", "male", "any"}, set()),
    ("endpoint A {\n  when ", {"age", "emergency", "within", "B"}, set()),
    ("endpoint A {\n  controls {\n    ", {"exclude", "require"}, {"hospital"}),
    ("endpoint A {\n  hospital @", {"C"}, {"B"}),
    ('test "t" {\n  expect P1 ', {"case", "control", "excluded"}, set()),
    ('test "t" {\n  expect P1 case of ', {"B"}, {"case"}),
    ('test "t" {\n  person P female born 1950-01-01 followed until 2000-01-01 {\n    1990-01-01 ',
     {"INPAT", "PURCH"}, {"icd10"}),
    ('test "t" {\n  person P female born 1950-01-01 followed until 2000-01-01 {\n    1990-01-01 PURCH ',
     {"atc", "vnr"}, {"icd10"}),
    ('codelist C {\n  ', {"icd10", "atc"}, set()),
])
def test_completion_offers_what_can_follow(before, expected, absent):
    library = "endpoint B { hospital icd10 I21 }\ncodelist C icd10 I22\n"
    analysis = _analysis(lib=library, x=before)
    labels = {i.label for i in features.completions(analysis, "x", len(before))}
    assert expected <= labels and not (absent & labels), labels


def test_codelist_patterns_are_matched_on_sources_that_do_not_overlap():
    site = lsp_analysis.PatternSite(span=None, pattern=None, vocab="icd10", source=None, owner="C")  # type: ignore[arg-type]
    assert features.pattern_sources(site) == ("hospital", "primary", "death", "reimbursement")


def _regexes(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k in ("match", "begin")] + [r for v in node.values() for r in _regexes(v)]
    return [r for v in node for r in _regexes(v)] if isinstance(node, list) else []


def test_the_vscode_grammar_knows_every_word_of_the_language():
    grammar = json.loads((REPO / "editors" / "vscode" / "syntaxes" / "endpointc.tmLanguage.json").read_text())
    regexes = [re.compile(r) for r in _regexes(grammar)]  # Oniguruma's syntax, as far as used, is Python's
    lark = (REPO / "endpointc" / "grammar" / "endpoint.lark").read_text(encoding="utf-8")
    words = set(re.findall(r'"([a-z][a-z0-9]*)"', lark))
    assert {"endpoint", "hospital", "icd10", "within", "nevt", "day"} <= words

    def highlighted(word: str) -> bool:
        # the word at the start of a line, or after a number (units)
        for line, start in ((f"{word} A", 0), (f"1 {word}", 2)):
            if any(m.start() <= start and m.end() >= start + len(word) for r in regexes for m in r.finditer(line)):
                return True
        return False

    missing = sorted(w for w in words if not highlighted(w))
    assert not missing, f"words of endpoint.lark the VS Code grammar does not highlight: {missing}"
    assert set(ast.VOCABULARIES) | set(REGISTERS) <= words
