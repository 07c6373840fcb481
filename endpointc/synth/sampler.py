"""Sample codes that an anchored regular expression matches.

Endpoint patterns reach the generator as regexes matched at the code's start (`re.match`):
`I21` matches I21, I210, I2190 ... A sampled code walks the regex (literals, classes,
`.`, alternation, optional parts, `$`) and, unless the regex ends with `$`, pads the code
to a realistic length with characters that a code of that vocabulary has at each position,
so `I2` becomes e.g. I219 and not I2%Q. Every sample is re-checked with `re` itself, so
constructs the walker only approximates (lookarounds, odd raw regexes) can only cost
retries, never produce a wrong code.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

try:  # Python 3.11+ keeps the regex parser here; it is the one `re` itself uses.
    from re import _constants as _c, _parser as _p
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

__all__ = ["Shape", "SHAPES", "sample_code", "sample_codes", "UnsampleableError"]

_DIGITS = "0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Finnish ICD-9 suffix letters in common use (4019X, 2500A, 4140B ...).
_ICD9_LETTERS = "ABCDEFGHJKMNPRSTUWXY"


@dataclass(frozen=True)
class Shape:
    """What a well-formed code of one vocabulary looks like, position by position."""

    positions: tuple[str, ...]   # allowed characters at each position (last repeats)
    lengths: tuple[int, ...]     # typical full lengths, most common first
    weights: tuple[float, ...]

    def alphabet(self, pos: int) -> str:
        return self.positions[min(pos, len(self.positions) - 1)]


SHAPES: dict[str, Shape] = {
    "icd10": Shape((_UPPER, _DIGITS, _DIGITS + "X", _DIGITS, _DIGITS), (4, 3, 5), (0.6, 0.25, 0.15)),
    "icd9": Shape((_DIGITS, _DIGITS, _DIGITS, _DIGITS, _ICD9_LETTERS), (5,), (1.0,)),
    "icd8": Shape((_DIGITS,), (5,), (1.0,)),
    "icpc2": Shape((_UPPER, _DIGITS, _DIGITS), (3,), (1.0,)),
    "atc": Shape((_UPPER, _DIGITS, _DIGITS, _UPPER, _UPPER, _DIGITS, _DIGITS), (7,), (1.0,)),
    "vnr": Shape((_DIGITS,), (6,), (1.0,)),
    "kela": Shape((_DIGITS,), (3,), (1.0,)),
    "nomesco": Shape((_UPPER, _UPPER, _UPPER, _DIGITS, _DIGITS), (5,), (1.0,)),
    "procedure": Shape((_UPPER, _UPPER, _UPPER, _DIGITS, _DIGITS), (5,), (1.0,)),
    "hl": Shape((_DIGITS,), (4,), (1.0,)),
    "hp1": Shape((_DIGITS,), (2, 3), (0.7, 0.3)),
    "hp2": Shape((_UPPER, _UPPER, _DIGITS), (3,), (1.0,)),
    "topography": Shape(("C", _DIGITS, _DIGITS, _DIGITS), (4,), (1.0,)),
    "morphology": Shape((_DIGITS,), (4,), (1.0,)),
    "behaviour": Shape(("0123",), (1,), (1.0,)),
    "any": Shape((_UPPER + _DIGITS,), (4,), (1.0,)),
}


class UnsampleableError(ValueError):
    """The regex uses a construct the sampler cannot walk (e.g. a back-reference)."""


_MAX_EXTRA_REPEATS = 2


def _category_chars(cat) -> str:
    if cat is _c.CATEGORY_DIGIT:
        return _DIGITS
    if cat is _c.CATEGORY_WORD:
        return _UPPER + _DIGITS + "_"
    if cat is _c.CATEGORY_NOT_DIGIT:
        return _UPPER
    return ""  # whitespace classes never occur in codes


def _class_chars(items, alphabet: str) -> list[str]:
    negate = False
    chars: set[str] = set()
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            chars.add(chr(av))
        elif op is _c.RANGE:
            chars.update(chr(x) for x in range(av[0], av[1] + 1))
        elif op is _c.CATEGORY:
            chars.update(_category_chars(av))
        else:
            raise UnsampleableError(f"unsupported class item {op}")
    if negate:
        return sorted(set(alphabet) - chars) or sorted(set(_UPPER + _DIGITS) - chars)
    inside = sorted(chars & set(alphabet))
    return inside or sorted(chars)


class _Walker:
    def __init__(self, shape: Shape, rnd: random.Random):
        self.shape = shape
        self.rnd = rnd
        self.out: list[str] = []
        self.ended = False

    def walk(self, items) -> None:
        for op, av in items:
            if op is _c.LITERAL:
                self.out.append(chr(av))
            elif op is _c.NOT_LITERAL:
                alpha = self.shape.alphabet(len(self.out))
                self.out.append(self.rnd.choice([ch for ch in alpha if ch != chr(av)] or ["0"]))
            elif op is _c.ANY:
                self.out.append(self.rnd.choice(self.shape.alphabet(len(self.out))))
            elif op is _c.IN:
                self.out.append(self.rnd.choice(_class_chars(av, self.shape.alphabet(len(self.out)))))
            elif op is _c.BRANCH:
                self.walk(self.rnd.choice(av[1]))
            elif op is _c.SUBPATTERN:
                self.walk(av[-1])
            elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
                lo, hi, sub = av
                hi = lo + _MAX_EXTRA_REPEATS if hi is _c.MAXREPEAT else min(hi, lo + _MAX_EXTRA_REPEATS)
                for _ in range(self.rnd.randint(lo, hi)):
                    self.walk(sub)
            elif op is _c.AT:
                if av in (_c.AT_END, _c.AT_END_STRING):
                    self.ended = True
            elif op in (_c.ASSERT, _c.ASSERT_NOT):
                pass  # the final re-check enforces lookarounds
            else:
                raise UnsampleableError(f"unsupported regex construct {op}")

    def pad(self) -> None:
        if self.ended:
            return
        shape, n = self.shape, len(self.out)
        longer = [(length, w) for length, w in zip(shape.lengths, shape.weights) if length > n]
        # A code that already has a valid length may end here (E11 is a code as is).
        if not longer or (n in shape.lengths and self.rnd.random() < 0.2):
            return
        target = self.rnd.choices([x for x, _ in longer], [w for _, w in longer])[0]
        while len(self.out) < target:
            self.out.append(self.rnd.choice(shape.alphabet(len(self.out))))


@lru_cache(maxsize=4096)
def _parsed(regex: str):
    try:
        return _p.parse(regex).data, re.compile(regex)
    except re.error as e:
        raise UnsampleableError(f"invalid regex {regex!r}: {e}") from e


def sample_code(regex: str, shape: str | Shape, rnd: random.Random, *, tries: int = 50,
                excludes: tuple[str, ...] = ()) -> str | None:
    """One code that `re.match(regex, code)` accepts and no exclude regex matches, or None."""
    sh = SHAPES[shape] if isinstance(shape, str) else shape
    items, compiled = _parsed(regex)
    ex = [_parsed(e)[1] for e in excludes]
    for attempt in range(tries):
        w = _Walker(sh, rnd)
        w.walk(items)
        # Later attempts skip padding: a pattern like `E11(?!9)` may only work unpadded.
        if attempt < tries // 2:
            w.pad()
        code = "".join(w.out)
        if code and compiled.match(code) and not any(e.match(code) for e in ex):
            return code
    return None


def sample_codes(regex: str, shape: str | Shape, rnd: random.Random, k: int, *,
                 excludes: tuple[str, ...] = ()) -> list[str]:
    """Up to k distinct codes for `regex`, in sampling order (deterministic for a seeded rnd)."""
    seen: dict[str, None] = {}
    for _ in range(k * 6):
        code = sample_code(regex, shape, rnd, excludes=excludes)
        if code is None:
            break
        seen.setdefault(code, None)
        if len(seen) >= k:
            break
    return list(seen)
