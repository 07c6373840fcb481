"""The language server: pygls wiring, the libraries it keeps checked, and when it checks.

A *library* is the set of files checked together, as `endpointc check PATH` checks them:
the folder (or file) of the `definitions` setting that holds a file, else the file's own
folder with the folders below it. Each library is analysed as a whole (`analysis.analyse`)
on a single worker thread, from the editor's text of its open files and the disk's text of
the others; diagnostics are published for every file of a library that has an open file,
so a renamed endpoint shows up in its includers even when they are closed.

Typing schedules an analysis after a short quiet time (`debounce`); a request (hover,
completion, ...) on a library with changes not analysed yet analyses it first, so answers
are always about the text the editor shows.

Settings come from the project configuration file (`endpointc.config`: its `rules`,
`events` and `index`) and from the editor (initialization options, then
`workspace/didChangeConfiguration`, under the `endpointc` section: `definitions`, `events`,
`index`, `rules`, `debounce`); the editor's win where both are given.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from .. import ast
from ..compiler import definition_files
from ..parser import parse_file
from ..source import decode
from . import features
from .analysis import Analysis, Parsed, PatternSite, analyse, library_of, parse_text

if TYPE_CHECKING:
    import polars as pl

__all__ = ["EndpointServer", "Settings", "CodeCounts", "build_server"]

log = logging.getLogger(__name__)

DEBOUNCE = 0.3  # seconds of quiet after a keystroke before the library is checked again
MAX_CODES_SHOWN = 25


@dataclass(frozen=True)
class Settings:
    definitions: tuple[Path, ...] = ()
    events: Path | None = None
    index: Path | None = None
    rules: tuple[str, ...] = ()
    debounce: float = DEBOUNCE

    @classmethod
    def read(cls, data: Mapping[str, Any] | None, root: Path | None) -> "Settings":
        """Editor settings (the `endpointc` section); relative paths are taken from the
        workspace folder."""
        data = dict(data or {})
        data = dict(data.get("endpointc", data))

        def path(value) -> Path:
            value = Path(os.path.expanduser(str(value)))
            return value if value.is_absolute() or root is None else root / value

        events, index = data.get("events") or None, data.get("index") or None
        debounce = data.get("debounce")
        return cls(definitions=tuple(path(p) for p in data.get("definitions") or ()),
                   events=path(events) if events else None, index=path(index) if index else None,
                   rules=tuple(data.get("rules") or ()),
                   debounce=debounce / 1000 if isinstance(debounce, (int, float)) and debounce >= 0 else DEBOUNCE)


def project_settings(start: Path, editor: Settings
                     ) -> tuple[tuple[str, ...], Path | None, Path | None, str | None]:
    """The curation rule sets and the registry for hover counts (its events table and its
    event index): the editor's settings, else the project configuration file found upward
    from `start`; and what is wrong with them, if anything (then the rules in doubt are
    left out)."""
    from ..config import ConfigError, load_config
    from ..curation import RULE_SETS

    problem = None
    try:
        config = load_config(start)
    except ConfigError as error:
        config, problem = None, str(error)
    rules = editor.rules or (config.rules if config else ())
    events = editor.events or (config.events if config else None)
    index = editor.index or (config.index if config else None)
    unknown = [r for r in rules if r not in RULE_SETS]
    if unknown:
        problem = f"unknown rule set {', '.join(unknown)} in the settings (known: {', '.join(RULE_SETS)})"
    return tuple(r for r in rules if r in RULE_SETS), events, index, problem


@dataclass(eq=False)
class LibraryState:
    """One library as the server keeps it between analyses."""

    key: str  # its folder or file (a path), or the URI of an unsaved document
    root: Path | None
    parsed: dict[str, Parsed] = field(default_factory=dict)  # parse cache; worker thread only
    analysis: Analysis | None = None
    dirty: bool = True
    timer: asyncio.TimerHandle | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    published: dict[str, tuple] = field(default_factory=dict)  # uri -> diagnostics last sent
    events: Path | None = None  # the registry for hover counts: its events table
    index: Path | None = None  # and its event index
    problem: str | None = None  # what is wrong with the settings, said once to the editor


def _stat(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class CodeCounts:
    """Which codes of a registry a pattern matches, with masked event counts
    (`describe.matched_codes`, as `compile --codes` shows them).

    The registry's distinct keys with their event counts are read once per state of its
    files and kept: from its event index when one is configured (`keys.parquet`, opened
    again only when the index or a registry file it was built from changes), else by one
    pass over the events table. Each answer then matches one pattern against the keys in
    memory; answers are kept per meaning of the pattern. An index that cannot serve (its
    registry changed) is `problem`, said in the hover instead of counts."""

    def __init__(self):
        self._state: tuple = ()  # what `_keys` was read from
        self._keys: pl.DataFrame | None = None
        self._name = ""  # the events table's file name, for the hover
        self._registry: tuple[str, ...] = ()  # the registry files of the index read last
        self._tables: dict[str, str] = {}
        self.problem: str | None = None

    def _now(self, events: Path | None, index: Path | None) -> tuple:
        """The state of every file the keys come from (sizes and modification times)."""
        from ..index import MANIFEST

        if index is None:
            return (str(events), _stat(events))
        files = (index / MANIFEST, *self._registry)
        return (str(index), str(events), *((str(f), _stat(f)) for f in files))

    def _read(self, events: Path | None, index: Path | None) -> None:
        from ..describe import code_keys
        from ..index import KEY_COLUMNS, EventIndexError, open_index
        from ..registry import RegistryError, scan_events

        self._tables.clear()
        self._keys, self.problem = None, None
        try:
            if index is None:
                self._keys, self._name = code_keys(scan_events(events)), events.name
            else:
                opened = open_index(index, events=events)
                self._registry = (opened.manifest.events.path, opened.manifest.people.path)
                self._keys = opened.keys().select(*KEY_COLUMNS, "_ROWS").collect()
                self._name = Path(opened.manifest.events.path).name
        except EventIndexError as error:
            self.problem = f"cannot use the event index: {error}"
        except RegistryError as error:
            self.problem = f"cannot read the registry: {error}"
        except OSError as error:
            self.problem = f"cannot read the registry {events}: {error.strerror}"
        if self.problem:
            log.warning("%s", self.problem)
        self._state = self._now(events, index)

    def table(self, analysis: Analysis, site: PatternSite, events: Path | None, index: Path | None = None) -> str:
        from ..describe import describe_endpoint, matched_codes
        from ..lower import lower
        from ..masking import MASK_THRESHOLD, SECONDARY_MARK

        clause = ast.VocabClause(span=site.span, vocab=site.vocab, patterns=(site.pattern,))
        rules = tuple(ast.Rule(span=site.span, source=source, clauses=(clause,))
                      for source in features.pattern_sources(site))
        endpoint = ast.Endpoint(span=site.span, name="PATTERN", name_span=site.span, items=rules)
        try:
            program = lower(library_of([endpoint], analysis.library.codelists))
        except Exception:  # an invalid pattern: the checker reports it
            return ""
        if self._now(events, index) != self._state:
            self._read(events, index)
        if self._keys is None:
            return self.problem or ""
        meaning = describe_endpoint(program, "PATTERN")
        if meaning not in self._tables:
            table = matched_codes(program, "PATTERN", self._keys)
            columns = [c for c in ("SOURCE", "CODE1", "CODE2", "CODE3") if table[c].null_count() < table.height]
            rows = [f"| {' | '.join(columns)} | events |", "|" + " --- |" * (len(columns) + 1)]
            rows += [f"| {' | '.join(str(r[c] or '') for c in columns)} | {r['N_EVENTS']} |"
                     for r in table.head(MAX_CODES_SHOWN).iter_rows(named=True)]
            more = f"\n\nand {table.height - MAX_CODES_SHOWN} more codes" if table.height > MAX_CODES_SHOWN else ""
            note = (f"counts 1-{MASK_THRESHOLD - 1} shown as <{MASK_THRESHOLD}, '{SECONDARY_MARK}' where a count "
                    "would give a small one away")
            self._tables[meaning] = (f"Codes of {self._name} it matches ({note}):\n\n" + "\n".join(rows) + more
                                     if table.height else f"No code of {self._name} matches it.")
        return self._tables[meaning]


class EndpointServer(LanguageServer):
    def __init__(self):
        from importlib.metadata import PackageNotFoundError, version

        try:
            release = version("endpointc")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            release = "0"
        super().__init__("endpointc", release)
        self.libraries: dict[str, LibraryState] = {}
        self.editor_settings: Mapping[str, Any] = {}
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="endpointc-check")
        self.lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="endpointc-hover")
        self.counts = CodeCounts()

    # -- names of files -----------------------------------------------------------------
    @staticmethod
    def name_of(uri: str) -> str:
        """A file's name in diagnostics and spans: its path, or the URI of an unsaved one."""
        path = to_fs_path(uri) if uri.startswith("file:") else None
        return os.path.normpath(path) if path else uri

    @staticmethod
    def uri_of(name: str) -> str:
        return from_fs_path(name) if os.path.isabs(name) else name

    @property
    def encoding(self) -> str:
        encoding = self.workspace.position_encoding or "utf-16"
        return getattr(encoding, "value", encoding)

    @property
    def root(self) -> Path | None:
        root = self.workspace.root_path
        return Path(root) if root else None

    @property
    def settings(self) -> Settings:
        return Settings.read(self.editor_settings, self.root)

    # -- libraries --------------------------------------------------------------------
    def library_for(self, name: str) -> LibraryState:
        if not os.path.isabs(name):
            key, root = name, None
        else:
            path = Path(name)
            root = next((d for d in self.settings.definitions if path == d or d in path.parents), path.parent)
            key = str(root)
        if key not in self.libraries:
            self.libraries[key] = LibraryState(key=key, root=root)
        return self.libraries[key]

    def open_documents(self, library: LibraryState) -> dict[str, tuple[str, int | None]]:
        """Names of the library's open documents: their texts and versions."""
        found = {}
        for uri, document in self.workspace.text_documents.items():
            name = self.name_of(uri)
            if self.library_for(name) is library:
                found[name] = document.source, document.version
        return found

    def _load(self, library: LibraryState, open_texts: dict[str, str]) -> tuple[Analysis, str | None]:
        """Worker thread: read the files that are not open, parse what changed, check."""
        names = [str(p) for p in definition_files([library.root])] if library.root and library.root.exists() else []
        parsed: dict[str, Parsed] = {}
        for name in dict.fromkeys([*names, *open_texts]):
            previous = library.parsed.get(name)
            if name in open_texts:
                parsed[name] = parse_text(name, open_texts[name], previous)
                continue
            try:
                text, error = decode(Path(name).read_bytes())
            except OSError:
                continue  # deleted between listing and reading
            parsed[name] = (parse_text(name, text, previous) if error is None
                            else Parsed(text, None, parse_file(name)[1]))
        library.parsed = parsed
        rules, library.events, library.index, problem = project_settings(library.root or self.root or Path.cwd(),
                                                                          self.settings)
        return analyse(parsed, previous=library.analysis, rules=rules), problem

    async def analysed(self, library: LibraryState) -> Analysis:
        """The library's analysis of the texts the editor has now."""
        async with library.lock:
            if library.dirty or library.analysis is None:
                if library.timer is not None:
                    library.timer.cancel()
                    library.timer = None
                library.dirty = False
                documents = self.open_documents(library)
                texts = {name: text for name, (text, _) in documents.items()}
                loop = asyncio.get_running_loop()
                try:
                    library.analysis, problem = await loop.run_in_executor(self.worker, self._load, library, texts)
                except Exception as error:  # a bug must not take the editor's server down
                    log.exception("checking %s failed", library.key)
                    self.window_show_message(types.ShowMessageParams(
                        type=types.MessageType.Error, message=f"endpointc: checking {library.key} failed: {error}"))
                    raise
                if problem != library.problem and problem:
                    self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                                     message=f"endpointc: {problem}"))
                library.problem = problem
                self.publish(library, {self.uri_of(name): version for name, (_, version) in documents.items()})
            return library.analysis

    def schedule(self, library: LibraryState, delay: float) -> None:
        library.dirty = True
        if library.timer is not None:
            library.timer.cancel()
        loop = asyncio.get_running_loop()
        library.timer = loop.call_later(delay, lambda: loop.create_task(self._quietly(library)))

    async def _quietly(self, library: LibraryState) -> None:
        try:
            await self.analysed(library)
        except Exception:  # already reported to the editor
            pass

    def publish(self, library: LibraryState, versions: Mapping[str, int | None]) -> None:
        """Diagnostics of every file of the library, sent when they changed: always for
        open files (`versions`: the versions of the texts analysed), for closed ones when
        they have some (or had some, to clear them)."""
        analysis = library.analysis
        sent: dict[str, tuple] = {}
        for name in analysis.files:
            uri = self.uri_of(name)
            diagnostics = features.to_lsp_diagnostics(analysis, name, self.encoding, self.uri_of)
            key = tuple(map(repr, diagnostics))
            if library.published.get(uri, None if uri in versions else ()) != key:
                self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
                    uri=uri, diagnostics=diagnostics, version=versions.get(uri)))
            if diagnostics or uri in versions:
                sent[uri] = key
        for uri in set(library.published) - {self.uri_of(n) for n in analysis.files}:
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        library.published = sent

    async def at(self, uri: str) -> tuple[Analysis, str]:
        name = self.name_of(uri)
        return await self.analysed(self.library_for(name)), name

    def offset(self, analysis: Analysis, name: str, position: types.Position) -> int:
        return analysis.positions(name).offset(position.line, position.character, self.encoding)

    def reset(self) -> None:
        """Settings changed: libraries may be cut differently, so start again."""
        for library in self.libraries.values():
            if library.timer is not None:
                library.timer.cancel()
            for uri in library.published:
                self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        self.libraries.clear()
        for uri in self.workspace.text_documents:
            self.schedule(self.library_for(self.name_of(uri)), 0)


def build_server() -> EndpointServer:
    server = EndpointServer()

    @server.feature(types.INITIALIZE)
    def initialize(ls: EndpointServer, params: types.InitializeParams) -> None:
        ls.editor_settings = params.initialization_options or {}

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: EndpointServer, params: types.DidChangeConfigurationParams) -> None:
        if not isinstance(params.settings, Mapping) or not params.settings:
            return
        before = ls.settings
        ls.editor_settings = params.settings
        if ls.settings.definitions != before.definitions:
            ls.reset()
        elif ls.settings != before:
            for library in ls.libraries.values():
                ls.schedule(library, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls: EndpointServer, params: types.DidOpenTextDocumentParams) -> None:
        library = ls.library_for(ls.name_of(params.text_document.uri))
        library.dirty = True
        await ls._quietly(library)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: EndpointServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.schedule(ls.library_for(ls.name_of(params.text_document.uri)), ls.settings.debounce)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: EndpointServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.schedule(ls.library_for(ls.name_of(params.text_document.uri)), 0)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: EndpointServer, params: types.DidChangeWatchedFilesParams) -> None:
        for change in params.changes:
            name = ls.name_of(change.uri)
            for library in list(ls.libraries.values()):
                if library.root is not None and (Path(name) == library.root or library.root in Path(name).parents):
                    ls.schedule(library, 0)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: EndpointServer, params: types.HoverParams) -> types.Hover | None:
        analysis, name = await ls.at(params.text_document.uri)
        offset = ls.offset(analysis, name, params.position)
        occurrence = analysis.at(name, offset)
        loop = asyncio.get_running_loop()
        if occurrence is not None:  # lowering and describing take a moment on a large library
            return await loop.run_in_executor(ls.lookups, features.name_hover, analysis, occurrence, ls.encoding)
        site = analysis.pattern_at(name, offset)
        if site is not None:
            counts, library = None, ls.library_for(name)
            if library.events is not None or library.index is not None:
                shown = ls.counts.problem
                counts = await loop.run_in_executor(ls.lookups, ls.counts.table, analysis, site, library.events,
                                                    library.index)
                if ls.counts.problem and ls.counts.problem != shown:  # said once, not at every hover
                    ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                                   message=f"endpointc: {ls.counts.problem}"))
            return features.pattern_hover(analysis, site, ls.encoding, counts)
        word = features.word_at(analysis.files[name].text, offset)
        return features.word_hover(word[0]) if word else None

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    async def definition(ls: EndpointServer, params: types.DefinitionParams) -> list[types.Location]:
        analysis, name = await ls.at(params.text_document.uri)
        occurrence = analysis.at(name, ls.offset(analysis, name, params.position))
        target = occurrence and analysis.definition(occurrence.kind, occurrence.name)
        return features.locations(analysis, [target] if target else [], ls.encoding, ls.uri_of)

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    async def references(ls: EndpointServer, params: types.ReferenceParams) -> list[types.Location]:
        analysis, name = await ls.at(params.text_document.uri)
        occurrence = analysis.at(name, ls.offset(analysis, name, params.position))
        if occurrence is None:
            return []
        found = [o for o in analysis.occurrences_of(occurrence.kind, occurrence.name)
                 if params.context.include_declaration or not o.definition]
        return features.locations(analysis, found, ls.encoding, ls.uri_of)

    async def renamable(ls: EndpointServer, uri: str, position: types.Position, new_name: str | None):
        """The analysis and the name at `position`, if it can be renamed (to `new_name`;
        None: to itself, as a prepare asks); an invalid new name is the client's error."""
        analysis, name = await ls.at(uri)
        occurrence = analysis.at(name, ls.offset(analysis, name, position))
        if occurrence is not None:
            problem = features.check_new_name(analysis, occurrence, occurrence.name if new_name is None else new_name)
            if problem:
                raise JsonRpcInvalidParams(problem)
        return analysis, occurrence

    @server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
    async def prepare_rename(ls: EndpointServer, params: types.PrepareRenameParams):
        analysis, occurrence = await renamable(ls, params.text_document.uri, params.position, None)
        if occurrence is None:
            return None
        return types.PrepareRenamePlaceholder(features.locations(analysis, [occurrence], ls.encoding,
                                                                 ls.uri_of)[0].range, occurrence.name)

    @server.feature(types.TEXT_DOCUMENT_RENAME)
    async def rename(ls: EndpointServer, params: types.RenameParams) -> types.WorkspaceEdit | None:
        analysis, occurrence = await renamable(ls, params.text_document.uri, params.position, params.new_name)
        if occurrence is None:
            return None
        return features.rename_edit(analysis, occurrence, params.new_name, ls.encoding, ls.uri_of)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["@"]))
    async def completion(ls: EndpointServer, params: types.CompletionParams) -> list[types.CompletionItem]:
        analysis, name = await ls.at(params.text_document.uri)
        return features.completions(analysis, name, ls.offset(analysis, name, params.position))

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    async def document_symbol(ls: EndpointServer, params: types.DocumentSymbolParams):
        analysis, name = await ls.at(params.text_document.uri)
        return features.document_symbols(analysis, name, ls.encoding)

    @server.feature(types.TEXT_DOCUMENT_FOLDING_RANGE)
    async def folding_range(ls: EndpointServer, params: types.FoldingRangeParams):
        analysis, name = await ls.at(params.text_document.uri)
        return features.folding_ranges(analysis, name)

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    async def formatting(ls: EndpointServer, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        analysis, name = await ls.at(params.text_document.uri)
        return features.formatting_edits(analysis, name, ls.encoding)

    return server
