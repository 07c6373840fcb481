"""FinnGen's regex code columns <-> the language's patterns.

FinnGen matches each code column as the regular expression `^(ALT1|ALT2|...)` against the
code. Import direction, input: one cell's text; output: its alternatives
(`split_alternatives`), the code or exact pattern that means what an alternative means
(`code_pattern`), or, when only a regex says it, why (`regex_reason`, `regex_hints`).
Export direction, input: a pattern of the language; output: its FinnGen alternatives
(`finngen_alternatives`), ranges spelled as FinnGen writes them (`E1[0-4]`, `C1[8-9]|C2[0-1]`).
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Iterable

from .. import ast, codes
from ..lower import EXPANSION_LIMIT, lower_patterns
from ..registers import allows
from ..source import Span

# A FinnGen alternative that reads the same as a code pattern of the language: characters,
# `.` and ascending [..] classes of single characters and ranges.
_CODE_LIKE = re.compile(r"(?:[A-Z0-9.]|\[(?:[A-Z0-9](?:-[A-Z0-9])?)+\])+\Z")

# Completions tried on a prefix before asking the automata (a prefix matches a well-formed
# code when some completion is one).
_COMPLETIONS = ("", "0", "00", "000", "0000", "A", "0A", "00A", "000A", "AA", "A0", "A00", "AA0", "AA00", "0AA")


# -- FinnGen text -> patterns ----------------------------------------------------------------

def split_alternatives(text: str) -> list[str]:
    """FinnGen alternatives: `|` outside [...] classes and (...) groups.

    >>> split_alternatives("D01[7|9]|I21")
    ['D01[7|9]', 'I21']
    """
    parts, current, depth_class, depth_group = [], [], 0, 0
    for char in text:
        if char == "[":
            depth_class = 1
        elif char == "]":
            depth_class = 0
        elif char == "(" and not depth_class:
            depth_group += 1
        elif char == ")" and not depth_class and depth_group:
            depth_group -= 1
        if char == "|" and not depth_class and not depth_group:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def is_code_pair(alternative: str, source: str) -> bool:
    """Whether `A&B` means CODE1 A and CODE2 B of one event: only in the registries with two
    code columns; elsewhere a regex reads `&` literally. Either part may be anchored
    (`^I219$&E11`, as export writes `=I219&E11`)."""
    return alternative.count("&") == 1 and allows(source, "combinations")


def code_pattern(alternative: str, span: Span) -> ast.Code | ast.Exact | None:
    """The code (`I21`) or exact (`^5311$` -> `=5311`) pattern with the alternative's regex
    meaning, or None when no code pattern has it."""
    body = alternative[1:] if alternative.startswith("^") else alternative
    exact = body.endswith("$") and not body.endswith("\\$") and len(body) > 1
    if exact:
        body = body[:-1]
    if not (_CODE_LIKE.match(body) and _classes_ascending(body)):
        return None
    return ast.Exact(span=span, text=body) if exact else ast.Code(span=span, text=body)


def _classes_ascending(body: str) -> bool:
    return all(a <= b for a, b in re.findall(r"([A-Z0-9])-([A-Z0-9])", "".join(re.findall(r"\[[^\]]*\]", body))))


def can_match(vocab: str, pattern: Any) -> bool:
    """codes.can_match, with a fast answer for the usual case: a code pattern one of whose
    expansions is itself a well-formed code (automata cost milliseconds per pattern)."""
    if isinstance(pattern, (ast.Code, ast.Exact)) and "." not in pattern.text:
        exact = isinstance(pattern, ast.Exact)
        positions = re.findall(r"\[[^\]]*\]|.", pattern.text)
        if sum(1 for p in positions if p.startswith("[")) <= 2:
            options = [_class_characters(p) if p.startswith("[") else p for p in positions]
            for combo in itertools.product(*options):
                stem = "".join(combo)
                if any(codes.is_well_formed(vocab, stem + tail) for tail in _COMPLETIONS if not (exact and tail)):
                    return True
    return codes.can_match(vocab, pattern)


def _class_characters(text: str) -> str:
    """The characters a `[...]` class stands for, its ranges spelled out."""
    body = text[1:-1]
    out = re.sub(r"(.)-(.)", lambda m: "".join(chr(c) for c in range(ord(m.group(1)), ord(m.group(2)) + 1)), body)
    return out or "?"


def icd_versions(alternative: str) -> tuple[str, ...]:
    """ICD-10 codes start with a letter, Finnish ICD-9 codes with a digit (E and V codes of
    ICD-9 do not occur in the reimbursement register)."""
    head = alternative.lstrip("^%")[:1]
    if head.isalpha():
        return ("icd10",)
    if head.isdigit():
        return ("icd9",)
    return ("icd10", "icd9")


def regex_reason(alternative: str) -> str:
    """Why an alternative is kept as a regex: how its regex meaning differs from its look."""
    if "&" in alternative:
        return "pairs two codes with `&`, which means CODE1 and CODE2 only for hospital, death and primary care; here the regex matches the text literally"
    if re.search(r"\[[^\]]*\|", alternative):
        return "has `|` inside a character class, which a regex reads as a literal `|`"
    if re.search(r"[*+?{]", alternative):
        return "has a regex quantifier (`*`, `+`, `?`, `{}`), so it does not mean what it looks like"
    if re.search(r"^\^?[A-Z0-9]+-[A-Z0-9]+\$?$", alternative):
        return "looks like a range, but a regex reads `-` literally (it matches the text itself, e.g. a Finnish block code)"
    if "(" in alternative or ")" in alternative:
        return "has regex groups"
    odd = sorted(set(re.sub(r"[A-Z0-9.\[\]\-^$]", "", alternative)))
    if odd:
        return "has characters that are no code characters (" + " ".join(odd) + "), matched literally"
    return "is a regular expression that fits no code pattern of the language"


def regex_hints(alternative: str) -> tuple[str, ...]:
    """What the author probably meant, when the regex suggests it."""
    if re.search(r"\[[^\]]*\|", alternative):
        fixed = re.sub(r"\[([^\]]*)\]", lambda m: "[" + m.group(1).replace("|", "") + "]", alternative)
        return (f"if the class was meant, write {fixed}",)
    if alternative.endswith("*") and alternative.count("*") == 1:
        stem = re.sub(r"(?:\[[^\]]*\]|.)\*$", "", alternative)
        return (f"`{alternative}` matches every code starting with {stem or 'anything'}",)
    match = re.fullmatch(r"\^?([A-Z0-9]+)-([A-Z0-9]+)\$?", alternative)
    if match and len(match.group(1)) == len(match.group(2)):
        return (f"if the range was meant, write {match.group(1)}-{match.group(2)}",)
    return ()


# -- patterns -> FinnGen text ----------------------------------------------------------------

def finngen_alternatives(pattern: Any) -> list[str]:
    """The FinnGen alternatives of a simple pattern (no codelist reference, no combination):
    `E10-E14` -> `E1[0-4]`, `=E119` -> `^E119$`, `any` -> `ANY`, `none` -> `$!$`.

    >>> from endpointc.source import Span
    >>> finngen_alternatives(ast.Range(span=Span(file="x", line=1, column=1, end_line=1, end_column=1),
    ...                                start="C18", end="C21"))
    ['C1[8-9]', 'C2[0-1]']
    """
    if isinstance(pattern, ast.Code):
        return [pattern.text]
    if isinstance(pattern, ast.Exact):
        return [f"^{pattern.text}$"]
    if isinstance(pattern, ast.Range):
        # the range's codes exactly as the plan lists them
        return spell_codes(lower_patterns([pattern]).prefixes)
    if isinstance(pattern, ast.AnyCode):
        return ["ANY"]
    if isinstance(pattern, ast.NoCode):
        return ["$!$"]
    if isinstance(pattern, ast.Regex):
        return [pattern.regex]
    raise ValueError(f"cannot export pattern {type(pattern).__name__}")


def spell_codes(values: Iterable[str]) -> list[str]:
    """Codes of one length as FinnGen writes such a set: characters and ascending `[..]`
    classes, one alternative per group of codes that share their other positions.

    No alternative stands for more than the plan's EXPANSION_LIMIT codes, so that the
    importer's code pattern lowers to the same list of codes as the range did.

    >>> spell_codes(["C00", "C01", "C02", "C10", "C11", "C12", "C13"])
    ['C0[0-2]', 'C1[0-3]']
    >>> spell_codes(["2500A", "2500B", "2500C"])
    ['2500[A-C]']
    """
    out: list[str] = []
    stack = list(reversed(_positions(frozenset(values))))
    while stack:
        positions = stack.pop()
        size = 1
        for chars in positions:
            size *= len(chars)
        if size <= EXPANSION_LIMIT:
            out.append("".join(_class_text(chars) for chars in positions))
            continue
        # Too many codes in one alternative: split its first class in two.
        at = next(i for i, chars in enumerate(positions) if len(chars) > 1)
        half = len(positions[at]) // 2
        for part in (positions[at][half:], positions[at][:half]):
            stack.append((*positions[:at], part, *positions[at + 1:]))
    return out


def _positions(values: frozenset[str]) -> list[tuple[str, ...]]:
    """Equal-length codes as products of per-position character sets: leading characters
    whose sets of tails are the same share one class."""
    if not values or not next(iter(values)):
        return [()] if values else []
    tails: dict[str, set[str]] = {}
    for code in values:
        tails.setdefault(code[0], set()).add(code[1:])
    heads: dict[frozenset[str], str] = {}
    for head in sorted(tails):
        key = frozenset(tails[head])
        heads[key] = heads.get(key, "") + head
    return [(chars, *rest) for key, chars in heads.items() for rest in _positions(key)]


def _class_text(chars: str) -> str:
    """`0123` -> `[0-3]`, `18` -> `[18]`, `A` -> `A`: runs of neighbouring characters as ranges."""
    if len(chars) == 1:
        return chars
    runs = [[c for _, c in run] for _, run in itertools.groupby(enumerate(chars), lambda p: ord(p[1]) - p[0])]
    return "[" + "".join(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs) + "]"
