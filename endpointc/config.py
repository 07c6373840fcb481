"""Project configuration: what `endpointc check` and the language server read from the project.

The configuration is the first `endpointc.toml`, or `pyproject.toml` with a
`[tool.endpointc]` table, found in the starting folder or above it (a pyproject.toml
without the table is passed over). Its keys:

    rules = ["finngen"]                   # curation rule sets `check` runs (see curation.py)
    events = "registry/events.parquet"    # a registry for the language server's code counts
    people = "registry/people.parquet"
    index = "registry/index"              # its event index (`endpointc index`): counts without a pass

Paths are relative to the file that names them; whether they exist is checked where they
are read. Without a file the configuration is empty. A file that is not valid TOML, an
unknown key or a value of the wrong kind is a `ConfigError` naming the file and the key.

>>> import tempfile, pathlib
>>> project = pathlib.Path(tempfile.mkdtemp())
>>> _ = (project / "endpointc.toml").write_text('rules = ["finngen"]\\nevents = "reg/events.parquet"\\n')
>>> (project / "definitions").mkdir()
>>> config = load_config(project / "definitions")
>>> config.rules, config.events == project / "reg" / "events.parquet", config.people
(('finngen',), True, None)
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .curation import RULE_SETS

__all__ = ["CONFIG_NAME", "Config", "ConfigError", "load_config", "read_config"]

CONFIG_NAME = "endpointc.toml"
_KEYS = ("rules", "events", "people", "index")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[str, ...] = ()
    events: Path | None = None
    people: Path | None = None
    index: Path | None = None
    file: Path | None = None  # where it was read from; None: no configuration file


def load_config(start: str | Path) -> Config:
    """The configuration of the project `start` (a file or folder) is in."""
    here = Path(start).absolute()
    if not here.is_dir():
        here = here.parent
    for folder in (here, *here.parents):
        for candidate in (folder / CONFIG_NAME, folder / "pyproject.toml"):
            if candidate.is_file():
                config = read_config(candidate)
                if config is not None:
                    return config
    return Config()


def read_config(path: str | Path) -> Config | None:
    """One file's configuration; None for a pyproject.toml without `[tool.endpointc]`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    prefix = ""
    if path.name == "pyproject.toml":
        tool = data.get("tool")
        if not isinstance(tool, dict) or "endpointc" not in tool:
            return None
        data, prefix = tool["endpointc"], "tool.endpointc."
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: tool.endpointc must be a table ([tool.endpointc])")
    for key in data:
        if key not in _KEYS:
            raise ConfigError(f"{path}: unknown key {prefix}{key} (known: {', '.join(_KEYS)})")

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {prefix}{key}: {problem}")

    rules = data.get("rules", [])
    if isinstance(rules, str):
        rules = [rules]
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise fail("rules", 'a list of rule set names, e.g. rules = ["finngen"]')
    unknown = [r for r in rules if r not in RULE_SETS]
    if unknown:
        raise fail("rules", f"unknown rule set {', '.join(map(repr, unknown))} (known: {', '.join(RULE_SETS)})")
    paths = {}
    for key, example in (("events", "events.parquet"), ("people", "people.parquet"), ("index", "index")):
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            kind = "folder" if key == "index" else "file"
            raise fail(key, f'a {kind} path in quotes, e.g. {key} = "registry/{example}"')
        paths[key] = path.parent.absolute() / value if value else None
    return Config(rules=tuple(dict.fromkeys(rules)), file=path.absolute(), **paths)
