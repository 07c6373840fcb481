"""Vocabularies: what a well-formed code of each looks like, and what a pattern matches.

Each vocabulary has a regular expression for a whole, well-formed code as stored in the
FinnGen longitudinal table (no dots). They were calibrated on the code counts of a real
registry release (FinnGen's dummy-data generator summary, R12) and on every pattern of the
public endpoint definition files DF2 to DF12, so that real patterns are (almost) never
flagged: see docs/diagnostics.md for the numbers.

`can_match` decides whether a pattern can match at least one well-formed code by
searching the product of two finite automata: the pattern's (matched at the code's start,
so `E11` is every code that starts with E11) and the vocabulary's. Whatever the automata do
not model (look-arounds, back-references, word boundaries) is assumed to match, so a
warning is never a guess. `pattern_limit` bounds the work: a pattern far longer or bigger
than any code is reported (EP308) instead of analysed.

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
import re._constants as _c
import re._parser as _sre
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

from . import ast

__all__ = [
    "VOCABULARY_REGEX", "VOCABULARY_EXAMPLES", "ALPHABET",
    "pattern_regex", "can_match", "is_well_formed", "range_regex", "regex_error", "pattern_limit",
    "MAX_PATTERN_LENGTH", "MAX_REPEAT", "MAX_POSITIONS", "LONGEST_CODE",
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
    if _PLAIN.fullmatch(regex):  # most code patterns: nothing to compile
        return None
    try:
        # re warns about syntax that may change meaning in future Pythons (`[[`); a curator
        # is told what is wrong now, or nothing.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(regex)
    except (re.error, OverflowError) as error:  # OverflowError: a count beyond 2**32 - 1
        return str(error)
    except RecursionError:
        return "the expression nests too deeply"
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


def _language(pattern) -> tuple[str, bool]:
    """(regex matched at the code's start, whether it must match the whole code)."""
    if isinstance(pattern, ast.Regex):
        return pattern.regex, False
    return _body(pattern, None)


# -- limits ----------------------------------------------------------------------------
# Checking a pattern costs time in proportion to what it expands to, so a pattern far beyond
# any real code is reported (EP308) instead of analysed. The limits leave room for every
# pattern of the FinnGen definition files many times over.
MAX_PATTERN_LENGTH = 200  # characters of one pattern as written
MAX_REPEAT = 100  # a count of {m}, {m,n}
MAX_POSITIONS = 500  # characters a regular expression spells out, its counts expanded


@lru_cache(maxsize=None)
def _longest(vocab: str) -> int:
    """The length of the vocabulary's longest well-formed code."""
    return _sre.parse(VOCABULARY_REGEX[vocab]).getwidth()[1]


# The longest well-formed code of any vocabulary (10, NOMESCO and primary care procedures).
LONGEST_CODE = max(map(_longest, VOCABULARY_REGEX))


def pattern_limit(pattern) -> tuple[str, str] | None:
    """(message, hint) when a simple pattern is beyond what checking analyses, else None.

    >>> from endpointc.source import Span
    >>> s = Span(file="x", line=1, column=1, end_line=1, end_column=1)
    >>> pattern_limit(ast.Regex(span=s, regex="A{1,65535}"))[0]
    'repetition count 65,535 is larger than 100'
    """
    length = _written_length(pattern)
    if length > MAX_PATTERN_LENGTH:
        return (f"pattern is {length:,} characters long; a pattern may have at most {MAX_PATTERN_LENGTH}",
                f"codes have at most {LONGEST_CODE} characters: separate alternatives with `|`")
    if not isinstance(pattern, ast.Regex):
        return None
    try:
        tree = _parse_regex(pattern.regex)
    except OverflowError:  # re's own limit, 2**32 - 1
        return _too_many(None)
    except (re.error, RecursionError):  # EP304 reports what re cannot read
        return None
    count = _largest_count(tree)
    if count > MAX_REPEAT:
        return _too_many(count)
    positions = _positions(tree)
    if positions > MAX_POSITIONS:
        return (f"the regular expression expands to {positions:,} characters; at most {MAX_POSITIONS} "
                "can be checked",
                f"nested counts multiply ((A{{1,9}}){{1,9}} is 81 characters); codes have at most "
                f"{LONGEST_CODE} characters, so write smaller counts")
    return None


def _too_many(count: int | None) -> tuple[str, str]:
    """EP308's words for a count above MAX_REPEAT (None: beyond what re can read)."""
    shown = f"repetition count {count:,}" if count is not None else "a repetition count"
    return (f"{shown} is larger than {MAX_REPEAT}",
            f"codes have at most {LONGEST_CODE} characters, so a smaller count means the same: "
            "e.g. [0-9]{1,4}")


def _parse_regex(regex: str):
    # See regex_error: warnings about future meanings are not for curators.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _sre.parse(regex)


def _written_length(pattern) -> int:
    if isinstance(pattern, ast.Range):
        return len(pattern.start) + 1 + len(pattern.end)
    if isinstance(pattern, ast.Regex):
        return len(pattern.regex)
    return len(getattr(pattern, "text", ""))


def _items(tree):
    """The sub-expressions of one parsed regex node, each a list of (op, argument)."""
    for op, av in tree:
        if op == _c.BRANCH:
            yield from av[1]
        elif op == _c.SUBPATTERN:
            yield av[3]
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            yield av[2]
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            yield av[1]
        elif op == _c.ATOMIC_GROUP:
            yield av
        elif op == _c.GROUPREF_EXISTS:
            yield from (p for p in av[1:] if p is not None)


def _largest_count(tree) -> int:
    counts = [max(av[0], 0 if av[1] == _c.MAXREPEAT else av[1]) for op, av in tree
              if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT)]
    return max([*counts, *(_largest_count(sub) for sub in _items(tree))], default=0)


def _positions(tree) -> int:
    total = 0
    for op, av in tree:
        if op == _c.BRANCH:
            total += sum(_positions(sub) for sub in av[1])
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            low, high, sub = av
            total += _positions(sub) * max(1, low + 1 if high == _c.MAXREPEAT else high)
        elif op != _c.AT:
            total += max(1, sum(_positions(sub) for sub in _items([(op, av)])))
    return total


# -- automata --------------------------------------------------------------------------
# Whether a pattern can match a well-formed code is whether the product of two automata,
# the pattern's and the vocabulary's, reaches a state where both accept. Searching the
# product of the nondeterministic automata costs at most their sizes multiplied; turning
# the pattern into a deterministic automaton first can cost exponential time
# (`(A|B)*A(A|B){12}`).

# Stored codes use these characters only, so the vocabulary automata read nothing else and
# a set of characters is a bit mask over them.
_CODE_CHARS = ALPHABET + "-"
_EVERY = (1 << len(_CODE_CHARS)) - 1
_BIT = {ord(ch): 1 << i for i, ch in enumerate(_CODE_CHARS)}


def _mask(test) -> int:
    return sum(1 << i for i, ch in enumerate(_CODE_CHARS) if test(ch))


_CATEGORIES = {
    _c.CATEGORY_DIGIT: _mask(str.isdigit), _c.CATEGORY_NOT_DIGIT: _EVERY & ~_mask(str.isdigit),
    _c.CATEGORY_WORD: _mask(str.isalnum), _c.CATEGORY_NOT_WORD: _EVERY & ~_mask(str.isalnum),
    _c.CATEGORY_SPACE: 0, _c.CATEGORY_NOT_SPACE: _EVERY,
}
# Zero-width steps: plain, only before the first character, only after the last.
_FREE, _AT_START, _AT_END = 0, 1, 2
_ANCHORS = {_c.AT_BEGINNING: _AT_START, _c.AT_BEGINNING_STRING: _AT_START,
            _c.AT_END: _AT_END, _c.AT_END_STRING: _AT_END}


class _Unsupported(Exception):
    """A construct whose language the automaton does not model (look-arounds,
    back-references, word boundaries, ignore-case): the pattern is assumed to match."""


def _class_mask(items) -> int:
    negate = False
    mask = 0
    for op, av in items:
        if op == _c.NEGATE:
            negate = True
        elif op == _c.LITERAL:
            mask |= _BIT.get(av, 0)
        elif op == _c.RANGE:
            mask |= sum(bit for code, bit in _BIT.items() if av[0] <= code <= av[1])
        elif op == _c.CATEGORY and av in _CATEGORIES:
            mask |= _CATEGORIES[av]
        else:
            raise _Unsupported(op)
    return _EVERY & ~mask if negate else mask


class _Automaton:
    """A nondeterministic automaton: per state, zero-width steps and (mask, next) steps."""

    def __init__(self) -> None:
        self.free: list[list[tuple[int, int]]] = []  # (kind, next)
        self.steps: list[list[tuple[int, int]]] = []  # (mask, next)

    def state(self) -> int:
        self.free.append([])
        self.steps.append([])
        return len(self.free) - 1

    def add(self, tree, start: int) -> int:
        """States for `tree` from `start`; returns the state where it ends."""
        at = start
        for op, av in tree:
            if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN):
                mask = (_class_mask([(op, av)]) if op == _c.LITERAL else
                        _EVERY & ~_class_mask([(_c.LITERAL, av)]) if op == _c.NOT_LITERAL else
                        _EVERY if op == _c.ANY else _class_mask(av))
                end = self.state()
                self.steps[at].append((mask, end))
                at = end
            elif op == _c.BRANCH:
                end = self.state()
                for sub in av[1]:
                    self.free[self.add(sub, at)].append((_FREE, end))
                at = end
            elif op == _c.SUBPATTERN:
                if av[1] & ~_IGNORED_FLAGS:
                    raise _Unsupported("flags")
                at = self.add(av[3], at)
            elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):  # laziness changes no language
                at = self._repeat(*av, at)
            elif op == _c.AT and av in _ANCHORS:
                end = self.state()
                self.free[at].append((_ANCHORS[av], end))
                at = end
            else:
                raise _Unsupported(op)
        return at

    def _repeat(self, low: int, high, sub, at: int) -> int:
        for _ in range(low):
            at = self.add(sub, at)
        if high == _c.MAXREPEAT:
            self.free[self.add(sub, at)].append((_FREE, at))
            return at
        end = self.state()
        for _ in range(high - low):
            self.free[at].append((_FREE, end))
            at = self.add(sub, at)
        self.free[at].append((_FREE, end))
        return end


# Flags that change nothing for upper-case codes without line breaks.
_IGNORED_FLAGS = re.UNICODE | re.ASCII | re.MULTILINE | re.DOTALL | re.VERBOSE


def _automaton(regex: str) -> tuple[_Automaton, int]:
    tree = _parse_regex(regex)
    if tree.state.flags & ~_IGNORED_FLAGS:
        raise _Unsupported("flags")
    automaton = _Automaton()
    start = automaton.state()
    return automaton, automaton.add(tree, start)


@dataclass(frozen=True)
class _Vocabulary:
    """A vocabulary's deterministic automaton over the code characters (state 0 starts;
    no step means no well-formed code goes on that way)."""

    steps: tuple[dict[int, int], ...]  # state -> {character bit: next state}
    grouped: tuple[tuple[tuple[int, int], ...], ...]  # state -> ((mask, next), ...)
    accepting: frozenset[int]
    live: frozenset[int]  # states from which an accepting one can be reached


@lru_cache(maxsize=None)
def _vocabulary(vocab: str) -> _Vocabulary:
    # Vocabularies are small and fixed, so making their automata deterministic is cheap
    # (unlike a user's pattern's).
    nfa, final = _automaton(VOCABULARY_REGEX[vocab])
    start = frozenset(_closure(nfa, {0}))
    index = {start: 0}
    sets = [start]
    steps: list[dict[int, int]] = []
    for current in sets:
        row = {}
        for bit in _BIT.values():
            following = frozenset(_closure(nfa, {nxt for state in current for mask, nxt in nfa.steps[state]
                                                 if mask & bit}))
            if following:
                row[bit] = index.setdefault(following, len(sets))
                if row[bit] == len(sets):
                    sets.append(following)
        steps.append(row)
    accepting = {i for i, states in enumerate(sets) if final in states}
    live = set(accepting)
    grew = True
    while grew:
        grew = False
        for i, row in enumerate(steps):
            if i not in live and not live.isdisjoint(row.values()):
                live.add(i)
                grew = True
    grouped = []
    for row in steps:
        masks: dict[int, int] = {}
        for bit, nxt in row.items():
            masks[nxt] = masks.get(nxt, 0) | bit
        grouped.append(tuple((mask, nxt) for nxt, mask in masks.items()))
    return _Vocabulary(tuple(steps), tuple(grouped), frozenset(accepting), frozenset(live))


def _closure(automaton: _Automaton, states: set[int]) -> set[int]:
    """The states reachable without reading (the automata of vocabularies have no anchors)."""
    todo = list(states)
    while todo:
        for _, nxt in automaton.free[todo.pop()]:
            if nxt not in states:
                states.add(nxt)
                todo.append(nxt)
    return states


def _reads(vocab: str, text: str, *, whole: bool) -> bool:
    """Whether some well-formed code starts with `text` (or is `text`, if `whole`)."""
    codes = _vocabulary(vocab)
    state: int | None = 0
    for char in text:
        state = codes.steps[state].get(_BIT.get(ord(char), 0))
        if state is None:
            return False
    return state in (codes.accepting if whole else codes.live)


@lru_cache(maxsize=4096)
def _can_match(vocab: str, regex: str, whole: bool) -> bool:
    """Whether `regex`, matched at the start of a code (and to its end if `whole`), matches
    some well-formed code of `vocab`: a search of the product automaton."""
    try:
        pattern, final = _automaton(regex + ("$" if whole else ""))
    except (_Unsupported, re.error, RecursionError, OverflowError):
        return True
    codes = _vocabulary(vocab)
    # A product state: pattern state, vocabulary state, and where in the code the search is
    # (0 before the first character, 1 inside, 2 at the end: `$` passed, nothing more read).
    seen = {(0, 0, 0)}
    todo = [(0, 0, 0)]
    while todo:
        p, v, where = todo.pop()
        if p == final and v in (codes.accepting if where == 2 else codes.live):
            return True
        following = [(p2, v, 2 if kind == _AT_END else where) for kind, p2 in pattern.free[p]
                     if kind != _AT_START or where == 0]
        if where != 2:
            following += [(p2, v2, 1) for mask, p2 in pattern.steps[p]
                          for code_mask, v2 in codes.grouped[v] if mask & code_mask]
        for state in following:
            if state not in seen:
                seen.add(state)
                todo.append(state)
    return False


_PLAIN_CODE = re.compile(r"[A-Z0-9]+")


def can_match(vocab: str, pattern) -> bool:
    """Whether a simple pattern can match at least one well-formed code of `vocab`.

    `any`, `none`, codelist references, unknown vocabularies, patterns that are not valid
    regexes and patterns beyond `pattern_limit` answer True: other checks report those.
    """
    if vocab not in VOCABULARY_REGEX or isinstance(pattern, (ast.AnyCode, ast.NoCode, ast.CodelistRef)):
        return True
    # Most patterns are themselves well-formed codes: no automaton needed.
    plain = pattern.start if isinstance(pattern, ast.Range) else getattr(pattern, "text", None)
    if plain is not None and _PLAIN_CODE.fullmatch(plain) and is_well_formed(vocab, plain):
        return True
    if pattern_limit(pattern) is not None:
        return True
    if plain is not None and not isinstance(pattern, ast.Range) and _PLAIN_CODE.fullmatch(plain):
        # The common case in long code lists needs no automaton of its own.
        return _reads(vocab, plain, whole=isinstance(pattern, ast.Exact))
    # A range spells out every code between its ends (its regex grows with their length
    # squared), so a range longer than any code is answered before it is spelt out.
    if isinstance(pattern, ast.Range) and len(pattern.start) > _longest(vocab):
        return False
    try:
        regex, whole = _language(pattern)
    except ValueError:
        return True
    if regex_error(regex) is not None:
        return True
    return _can_match(vocab, regex, whole)

