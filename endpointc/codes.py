"""Vocabularies: what a well-formed code of each looks like, and what a pattern matches.

Each vocabulary has a regular expression for a whole, well-formed code as stored in the
FinnGen longitudinal table (no dots). They were calibrated on the code counts of a real
registry release (FinnGen's dummy-data generator summary, R12) and on every pattern of the
public endpoint definition files DF2 to DF12, so that real patterns are (almost) never
flagged: see docs/diagnostics.md for the numbers.

`can_match` decides whether a pattern can match at least one well-formed code by
intersecting finite automata (`interegular`): the pattern's language (a prefix pattern
`E11` is `E11.*`) with the vocabulary's. Whatever interegular cannot read (look-arounds,
back-references, inner anchors) is assumed to match, so a warning is never a guess.

`pattern_regex` turns a pattern into a Python regular expression anchored at the code's
start, for engines and tools:

>>> from endpointc import ast
>>> from endpointc.source import Span
>>> s = Span(file="x", line=1, column=1, end_line=1, end_column=1)
>>> pattern_regex(ast.Range(span=s, start="E10", end="E14"))
'^E1[0-4]'
>>> pattern_regex(ast.Exact(span=s, text="E119"))
'^E119$'
>>> can_match("icd10", ast.Code(span=s, text="4109A"))
False
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Mapping

from . import ast
from .registers import allowing

__all__ = [
    "VOCABULARY_REGEX", "VOCABULARY_EXAMPLES", "COMBINATION_SOURCES", "ALPHABET",
    "pattern_regex", "can_match", "is_well_formed", "range_regex", "regex_error",
]

# A whole well-formed code per vocabulary (matched with re.fullmatch).
VOCABULARY_REGEX: dict[str, str] = {
    # ICD-10 without dots; Finnish extensions add up to 2 more characters (I2142, W1999)
    # and a few national codes end in letters.
    # FinnGen extras: the Finnish national ZA/ZB codes (ZA10, ZB01).
    "icd10": r"[A-Z][0-9]{2}[0-9A-Z]{0,4}|Z[A-Z][0-9]{1,3}",
    # Finnish ICD-9: 3 to 5 digits with an optional letter suffix (4100B, 2449, E802F, V01).
    "icd9": r"[0-9EV][0-9]{2,4}[A-Z]?",
    # Finnish ICD-8: 3 digits plus up to 2 Finnish digits (28404); E codes (E9209) and
    # a few Y codes used by the registry.
    "icd8": r"[0-9]{3}[0-9]{0,2}[A-Z]?|[EY][0-9]{2,4}[A-Z]?",
    # Finnish extras: X-padded groups (A02BDXX) and E-prefixed national products (E000001).
    "atc": r"[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?|[A-Z][0-9]{2}[A-Z][A-Z0-9]XX|E[0-9]{4}[0-9A-Z]{2}",
    # NOMESCO (Finnish edition): two or three letters then digits/letters (NFB20, FN1AT);
    # a few codes start with a digit (1CX01); FinnGen writes code pairs as one (CKC60CKC20).
    "nomesco": r"[A-Z0-9][A-Z][A-Z0-9]{0,8}",
    # Older Finnish procedure classifications: HL (1983-1996) digits, HP1 digits, HP2
    # (AN2, ASX) two letters and a character.
    "hl": r"[0-9]{2,5}[A-Z]?",
    "hp1": r"[0-9]{2,4}[A-Z]?",
    "hp2": r"[A-Z]{2}[0-9A-Z]{0,3}",
    # ICPC-2 components and the process codes (-30 ... -69).
    "icpc2": r"[A-Z][0-9]{2}|-[0-9]{2}",
    # Primary care procedures mix NOMESCO, the SPAT list (SPAT1213) and local codes.
    "procedure": r"[A-Z0-9]{2,10}",
    # Kela reimbursement rights: 3 digits (103, 115, 215), newer ones 4 digits (1509),
    # some with a letter suffix.
    "kela": r"[0-9]{3,4}[A-Z]?",
    # Nordic article numbers: 6 digits; some are stored with 7.
    "vnr": r"[0-9]{6,7}",
    "topography": r"C[0-9]{2}[0-9]?",
    "morphology": r"[0-9]{4}",
    "behaviour": r"[0-9]",
}

# One example per vocabulary, for hints.
VOCABULARY_EXAMPLES: dict[str, str] = {
    "icd10": "I21, E119", "icd9": "410, 4100B", "icd8": "410, 41099", "atc": "A10, A10BA02",
    "nomesco": "FNA00, NFB20", "hl": "5311", "hp1": "82", "hp2": "AN2", "icpc2": "T90",
    "procedure": "SAA02", "kela": "103, 115", "vnr": "012345", "topography": "C50, C509",
    "morphology": "8140", "behaviour": "3",
}

# Sources whose rows carry a second diagnosis in CODE2, so `A&B` means something.
COMBINATION_SOURCES: frozenset[str] = frozenset(allowing("combinations"))

# Characters that occur in stored codes, in the order ranges use.
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PLAIN = re.compile(r"[0-9A-Z]+")


def is_well_formed(vocab: str, code: str) -> bool:
    """Whether a stored code is a well-formed code of the vocabulary."""
    return _compiled(vocab).fullmatch(code) is not None


@lru_cache(maxsize=None)
def _compiled(vocab: str) -> re.Pattern[str]:
    return re.compile(VOCABULARY_REGEX[vocab])


def range_regex(start: str, end: str) -> str:
    """A regex for the strings of len(start) from start to end (inclusive), in code order.

    Positions where both ends hold digits range over digits only (and likewise letters),
    so `C18-C21` means C18, C19, C20, C21 and not C1A. Both ends must be plain codes of
    the same length with start <= end (check reports anything else before this is called).

    >>> range_regex("E10", "E14")
    'E1[0-4]'
    >>> range_regex("C18", "C21")
    'C(?:1[8-9]|2[0-1])'
    """
    if len(start) != len(end) or not _PLAIN.fullmatch(start) or not _PLAIN.fullmatch(end):
        raise ValueError(f"range ends {start!r} and {end!r} must be plain codes of the same length")
    if _key(start) > _key(end):
        raise ValueError(f"range {start}-{end} is reversed")
    alphabets = tuple(_DIGITS if a.isdigit() and b.isdigit() else _LETTERS if a.isalpha() and b.isalpha()
                      else ALPHABET for a, b in zip(start, end))
    return _between(start, end, alphabets)


_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _key(text: str) -> tuple[int, ...]:
    return tuple(ALPHABET.index(c) for c in text)


def _chars(alphabet: str, lo: int, hi: int) -> str:
    """A character class for alphabet[lo..hi], or '' when empty."""
    if lo > hi:
        return ""
    if lo == hi:
        return alphabet[lo]
    parts = []
    i = lo
    while i <= hi:
        # Digits and letters are separate runs in a character class.
        j = i
        while j + 1 <= hi and (alphabet[j + 1].isdigit() == alphabet[i].isdigit()):
            j += 1
        parts.append(alphabet[i] if i == j else f"{alphabet[i]}-{alphabet[j]}")
        i = j + 1
    return f"[{''.join(parts)}]"


def _alt(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _free(alphabets: tuple[str, ...]) -> str:
    return "".join(_chars(a, 0, len(a) - 1) for a in alphabets)


def _between(lo: str, hi: str, alphabets: tuple[str, ...]) -> str:
    if lo == hi:
        return lo
    i = 0
    while lo[i] == hi[i]:
        i += 1
    here, tail = alphabets[i], alphabets[i + 1:]
    a, b = here.index(lo[i]), here.index(hi[i])
    prefix = lo[:i]
    if not tail:
        return prefix + _chars(here, a, b)
    # Whole sub-ranges collapse to a class when the tails are the extremes.
    if lo[i + 1:] == "".join(t[0] for t in tail) and hi[i + 1:] == "".join(t[-1] for t in tail):
        return prefix + _chars(here, a, b) + _free(tail)
    parts = [lo[i] + _at_least(lo[i + 1:], tail)]
    middle = _chars(here, a + 1, b - 1)
    if middle:
        parts.append(middle + _free(tail))
    parts.append(hi[i] + _at_most(hi[i + 1:], tail))
    return prefix + _alt(parts)


def _at_least(s: str, alphabets: tuple[str, ...]) -> str:
    if not s:
        return ""
    here = alphabets[0]
    if s == "".join(a[0] for a in alphabets):
        return _free(alphabets)
    if len(s) == 1:
        return _chars(here, here.index(s), len(here) - 1)
    parts = [s[0] + _at_least(s[1:], alphabets[1:])]
    above = _chars(here, here.index(s[0]) + 1, len(here) - 1)
    if above:
        parts.append(above + _free(alphabets[1:]))
    return _alt(parts)


def _at_most(s: str, alphabets: tuple[str, ...]) -> str:
    if not s:
        return ""
    here = alphabets[0]
    if s == "".join(a[-1] for a in alphabets):
        return _free(alphabets)
    if len(s) == 1:
        return _chars(here, 0, here.index(s))
    parts = []
    below = _chars(here, 0, here.index(s[0]) - 1)
    if below:
        parts.append(below + _free(alphabets[1:]))
    parts.append(s[0] + _at_most(s[1:], alphabets[1:]))
    return _alt(parts)


def regex_error(regex: str) -> str | None:
    """re's complaint about a raw regular expression, or None when it compiles."""
    try:
        re.compile(regex)
    except re.error as error:
        return str(error)
    return None


def _body(pattern, codelists: Mapping[str, ast.Codelist] | None, seen: frozenset[str] = frozenset()
          ) -> tuple[str, bool]:
    """(regex body without anchors, whether it must match the whole code)."""
    if isinstance(pattern, ast.Code):
        return pattern.text, False
    if isinstance(pattern, ast.Exact):
        return pattern.text, True
    if isinstance(pattern, ast.Range):
        return range_regex(pattern.start, pattern.end), False
    if isinstance(pattern, ast.AnyCode):
        return "", False
    if isinstance(pattern, ast.NoCode):
        return "(?!)", False
    if isinstance(pattern, ast.Regex):
        return f"(?:{pattern.regex})", False
    if isinstance(pattern, ast.CodelistRef):
        if codelists is None or pattern.name not in codelists or pattern.name in seen:
            raise ValueError(f"codelist @{pattern.name} cannot be resolved here")
        parts = [pattern_regex(p, codelists=codelists, _seen=seen | {pattern.name})[1:]
                 for p in codelists[pattern.name].patterns]
        return ("(?:" + "|".join(parts) + ")") if parts else "(?!)", False
    raise ValueError(f"{type(pattern).__name__} is not a simple pattern")


def pattern_regex(pattern, *, codelists: Mapping[str, ast.Codelist] | None = None,
                  _seen: frozenset[str] = frozenset()) -> str:
    """A Python regex for a simple pattern, anchored at the code's start (use re.match).

    `@NAME` needs `codelists` (e.g. Library.codelists); a Combination is two patterns
    (CODE1 and CODE2) and raises ValueError, as do malformed ranges.
    """
    body, exact = _body(pattern, codelists, _seen)
    return "^" + body + ("$" if exact else "")


def _fsm_regex(pattern) -> str | None:
    """The pattern as a whole-code regex for interegular, or None if it cannot say."""
    if isinstance(pattern, ast.Regex):
        text = pattern.regex
        text = text[1:] if text.startswith("^") else text
        # A final unescaped `$` (FinnGen's `^5311$`) means the whole code.
        if text.endswith("$") and not text.endswith("\\$"):
            return f"(?:{text[:-1]})"
        return f"(?:{text}).*"
    body, exact = _body(pattern, None)
    return body if exact else body + ".*"


_PLAIN_CODE = re.compile(r"[A-Z0-9]+")


@lru_cache(maxsize=None)
def _vocab_fsm(vocab: str):
    import interegular
    return interegular.parse_pattern(VOCABULARY_REGEX[vocab]).to_fsm()


@lru_cache(maxsize=4096)
def _can_match(vocab: str, regex: str) -> bool:
    import interegular
    try:
        fsm = interegular.parse_pattern(regex).to_fsm()
        return not fsm.intersection(_vocab_fsm(vocab)).empty()
    except Exception:  # interegular does not read every Python regex: assume it matches
        return True


def can_match(vocab: str, pattern) -> bool:
    """Whether a simple pattern can match at least one well-formed code of `vocab`.

    `any`, `none`, codelist references, unknown vocabularies and patterns that are not
    valid regexes answer True: other checks report those.
    """
    if vocab not in VOCABULARY_REGEX or isinstance(pattern, (ast.AnyCode, ast.NoCode, ast.CodelistRef)):
        return True
    # Most patterns are themselves well-formed codes; building automata for them would
    # make checking a FinnGen-sized library take minutes instead of seconds.
    plain = pattern.start if isinstance(pattern, ast.Range) else getattr(pattern, "text", None)
    if plain is not None and _PLAIN_CODE.fullmatch(plain) and is_well_formed(vocab, plain):
        return True
    try:
        regex = _fsm_regex(pattern)
    except ValueError:
        return True
    if regex is None or regex_error(regex) is not None:
        return True
    return _can_match(vocab, regex)
