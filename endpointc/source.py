"""Source text and positions: the only stage that knows about files and offsets."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["Span", "Source", "decode"]

_BOM = b"\xef\xbb\xbf"


def decode(raw: bytes) -> tuple[str, UnicodeDecodeError | None]:
    """The text of a file's bytes and the first UTF-8 error, if any (its offsets count bytes
    after the BOM). Bad bytes become U+FFFD, so the text before the first one is exact.

    >>> text, error = decode(b"\\xef\\xbb\\xbfA\\xe4")
    >>> text == "A\\N{REPLACEMENT CHARACTER}", error.start, error.reason
    (True, 1, 'unexpected end of data')
    """
    # Files saved by spreadsheet tools often start with a BOM.
    body = raw[len(_BOM):] if raw.startswith(_BOM) else raw
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return body.decode("utf-8", errors="replace"), error


class Span(BaseModel):
    """A half-open region of one source file; lines and columns count from 1."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    offset: int = 0
    end_offset: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Source:
    """A definitions file's text, kept so diagnostics can quote the offending line."""

    name: str
    text: str
    _lines: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Lines end at '\n' only, as the parser counts them: str.splitlines() would also break
        # at form feeds, vertical tabs, U+0085, U+2028 and U+2029 and quote the wrong line.
        object.__setattr__(self, "_lines", tuple(self.text.split("\n")))
        # Offsets where lines start, so a position is a bisection, not a scan of the text.
        starts = [0]
        find = self.text.find
        at = find("\n")
        while at != -1:
            starts.append(at + 1)
            at = find("\n", at + 1)
        object.__setattr__(self, "_starts", tuple(starts))

    @classmethod
    def read(cls, path: str | Path) -> "Source":
        """A file as diagnostics quote it: bytes that are not UTF-8 show as U+FFFD (the
        parser reports them; see `decode`)."""
        path = Path(path)
        return cls(str(path), decode(path.read_bytes())[0])

    def line(self, number: int) -> str:
        """The text of a line, without its line break (\\n, or \\r\\n)."""
        text = self._lines[number - 1] if 0 < number <= len(self._lines) else ""
        return text[:-1] if text.endswith("\r") else text

    def span(self, offset: int, end_offset: int | None = None) -> Span:
        end_offset = offset if end_offset is None else end_offset
        line, column = self.position(offset)
        end_line, end_column = self.position(end_offset)
        return Span(file=self.name, line=line, column=column, end_line=end_line,
                    end_column=end_column, offset=offset, end_offset=end_offset)

    def position(self, offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1
