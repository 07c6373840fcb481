"""Hypothesis strategies for random valid definition texts.

Texts are generated directly (not through endpointc.fmt) so they can test the formatter:
random spacing and line breaks between tokens, redundant parentheses, trailing and
free-standing comments, items and declarations in any order. What they produce is also
meant to pass `check`: every vocabulary belongs to its source, codes are well-formed
prefixes of their vocabulary, names referenced by include/require/controls/@codelist are
declared, and dependencies point only to earlier endpoints (no cycles).

    definition_texts()                      a whole file, as text
    library_texts(files=2)                  several files' texts sharing one name space
    patterns_for(vocab)                     one pattern's text
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from hypothesis import strategies as st

from endpointc.ast import SOURCES

__all__ = [
    "CODES", "comment_texts", "string_values", "names", "patterns_for", "expr_texts",
    "definition_texts", "library_texts", "VALID_EXAMPLES",
]

# Well-formed code prefixes per vocabulary (a pattern's text is a prefix of real codes).
CODES: dict[str, tuple[str, ...]] = {
    "icd10": ("I21", "I22", "I10", "E11", "E10", "E119", "C50", "C34", "F32", "F20", "J45", "K50", "M05",
              "I2", "O24", "Z35"),
    "icd9": ("410", "250", "2500A", "4109", "174", "295", "493", "714", "250.B"),
    "icd8": ("410", "250", "174", "29500", "493", "71210"),
    "icpc2": ("K86", "T90", "R96", "P76"),
    "procedure": ("SPAT1", "WX110", "SK"),
    "nomesco": ("FNG", "FNA", "NFB", "NGB20", "JKA"),
    "hl": ("FNG", "NFB"),
    "hp1": ("FNG",),
    "hp2": ("NFB",),
    "kela": ("115", "202", "103", "205"),
    "atc": ("A10B", "A10BA02", "C10AA", "N06A", "H03AA", "R03"),
    "vnr": ("012345", "123456"),
    "topography": ("C50", "C34", "C509", "C18"),
    "morphology": ("8140", "8500", "9590"),
    "behaviour": ("3", "2"),
}
# Vocabularies where ranges, classes and dots read naturally: (start, end) of same length.
RANGES: dict[str, tuple[tuple[str, str], ...]] = {
    "icd10": (("E10", "E14"), ("I20", "I25"), ("C18", "C20")),
    "icd9": (("401", "405"), ("410", "414")),
    "icd8": (("400", "404"),),
    "atc": (("A10A", "A10B"),),
}
CLASSES: dict[str, tuple[str, ...]] = {
    "icd10": ("F3[2-3]", "C34.[123457]", "I2[12]", "E1[0-4]9"),
    "icd9": ("250[01]", "4[01]0"),
    "icd8": ("712[1-3]",),
}
REGEXES: tuple[str, ...] = ("^C34.?[12]", "^I2[0-5]", "^(E10|E11)9", "^A10B[AX]")

HOSPITAL_LIKE = ("hospital", "inpatient", "outpatient", "death")

# Every example of the language reference (docs/language.md), verbatim: valid texts for tests and fuzzing.
VALID_EXAMPLES: tuple[str, ...] = (
    """# definitions/cardio.ep -- a comment runs to the end of the line
endpoint I9_MI {
  title "Myocardial infarction"
  tags I9, CARDIO
  level 3
  hospital icd10 I21 | I22   icd9 410   icd8 410
  death    icd10 I21 | I22   icd9 410   icd8 410
}
""",
    """endpoint E4_DM2 {
  title "Type 2 diabetes"
  hospital icd10 E11
  death    icd10 E11
  purchase atc A10B
  include  E4_DM2COMA, E4_DM2KETO
}

endpoint T2D_EARLY {
  title "Type 2 diabetes, onset before 40"
  include E4_DM2
  when age < 40               # event filter, also on included events (FinnGen PRE_CONDITIONS)
  require not E4_DM1          # person condition (FinnGen CONDITIONS)
  sex any
  controls {
    exclude E4_DM1, E4_DIABETES     # FinnGen CONTROL_EXCLUDE
    require not DIABETES_FG         # FinnGen CONTROL_CONDITIONS
  }
}

endpoint C3_BREAST {
  title "Malignant neoplasm of breast"
  sex female
  death         icd10 C50  icd9 174  icd8 174
  reimbursement kela 115
  cancer        topography C50  behaviour 3
}
""",
    """endpoint I9_HF_AFTER_MI {
  title "Heart failure within a year after a first myocardial infarction"
  include I9_HEARTFAIL
  when within 1 year after I9_MI
}

endpoint I9_MI_INCIDENT {
  title "Myocardial infarction without an earlier angina"
  include I9_MI
  require not I9_ANGINA before I9_MI_INCIDENT
}

endpoint E4_DM2_CONFIRMED {
  title "Type 2 diabetes: two hospital diagnoses at least 30 days apart, from 1998 on"
  hospital min 2 apart 30 days icd10 E11
  when date >= 1998-01-01
}

endpoint J10_ASTHMA_DRUGS {
  title "Three asthma drug purchases within one year"
  purchase min 3 within 1 year atc R03
}

endpoint I9_EARLY_HF {
  include I9_HEARTFAIL
  when date - I9_MI.date <= 30 days and date >= I9_MI.date
}
""",
    """codelist MI_CODES {
  icd10 I21 | I22
  icd9  410
  icd8  410
}

endpoint I9_MI_SHARED {
  hospital @MI_CODES
  death    main @MI_CODES
}
""",
    """test "heart failure soon after an infarction" {
  person P1 female born 1950-01-01 followed until 2020-01-01 {
    1990-03-01 INPAT icd10 I21
    1990-06-01 INPAT icd10 I50
  }
  person P2 male born 1950-01-01 followed until 2020-01-01 {
    1990-03-01 INPAT icd10 I21
    1993-06-01 INPAT icd10 I50
  }
  expect P1 case of I9_HF_AFTER_MI at 1990-06-01 nevt 1
  expect P2 control of I9_HF_AFTER_MI
}
""",
)


# -- leaves ----------------------------------------------------------------------------

_COMMENT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=30)
_STRING = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from('"\\'), max_size=25)
_NAME = st.tuples(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
                  st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", max_size=8)).map("".join)


def comment_texts() -> st.SearchStrategy[str]:
    """A comment's text after '#': any characters but line breaks (and surrogates)."""
    return _COMMENT


def string_values() -> st.SearchStrategy[str]:
    """A quoted text's value: printable unicode including quotes and backslashes."""
    return _STRING


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def names() -> st.SearchStrategy[str]:
    """A name: [A-Z][A-Z0-9_]*."""
    return _NAME


def patterns_for(vocab: str, codelists: dict[str, str] | None = None,
                 *, combination: bool = False) -> st.SearchStrategy[str]:
    """One pattern of `vocab`: prefix, =exact, range, class, regex, any, none, @codelist, A&B."""
    own = tuple(sorted(n for n, v in (codelists or {}).items() if v == vocab))
    return _patterns_for(vocab, own, combination)


@lru_cache(maxsize=None)
def _patterns_for(vocab: str, own_lists: tuple[str, ...], combination: bool) -> st.SearchStrategy[str]:
    codes = CODES[vocab]
    options = [st.sampled_from(codes), st.sampled_from(codes).map(lambda c: "=" + c.replace(".", "0"))]
    if vocab in RANGES:
        options.append(st.sampled_from(RANGES[vocab]).map(lambda r: f"{r[0]}-{r[1]}"))
    if vocab in CLASSES:
        options.append(st.sampled_from(CLASSES[vocab]))
    if vocab in ("icd10", "topography"):
        options.append(st.sampled_from(REGEXES[:3]).map(lambda r: f're"{r}"'))
    options.append(st.sampled_from(("any", "none")))
    if own_lists:
        options.append(st.sampled_from(own_lists).map(lambda n: "@" + n))
    simple = st.one_of(*options)
    if combination:
        pair = st.tuples(st.sampled_from(codes), st.sampled_from(codes)).map(lambda p: f"{p[0]}&{p[1]}")
        return st.one_of(simple, pair)
    return simple


# -- layout ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """How tokens are separated: a random but valid choice per gap."""

    messy: bool
    comments: bool


_GAPS = (" ", "  ", "\t", "\n", "\n    ", "\n\n  ", " ", "\n  ", " ", "  ")
_AFTER_COMMENT = ("", "  ", "    # x\n  ")


@st.composite
def _join(draw, tokens: list[str], layout: _Layout) -> str:
    """Tokens with a random whitespace gap each, sometimes a comment running to a line end."""
    if not layout.messy:
        return " ".join(tokens)
    n = len(tokens) - 1
    # One draw per join, not per gap: building strategies per token is what makes
    # generation slow.
    kinds = draw(st.lists(st.integers(0, 10 * len(_GAPS) - 1), min_size=n, max_size=n))
    out = [tokens[0]]
    for kind, token in zip(kinds, tokens[1:]):
        gap = _GAPS[kind % len(_GAPS)]
        if layout.comments and kind < len(_GAPS):
            gap = " #" + draw(_COMMENT) + "\n" + _AFTER_COMMENT[kind % 3]
        out += [gap, token]
    return "".join(out)


@st.composite
def _pattern_list(draw, vocab: str, codelists: dict[str, str], layout: _Layout, *,
                  combination: bool, max_size: int = 4) -> list[str]:
    items = draw(st.lists(patterns_for(vocab, codelists, combination=combination), min_size=1, max_size=max_size))
    style = draw(st.sampled_from(["bar", "bar", "paren_bar", "paren_lines"]))
    if style == "bar":
        return [t for i, p in enumerate(items) for t in (["|"] if i else []) + [p]]
    if style == "paren_bar":
        return ["(", *[t for i, p in enumerate(items) for t in (["|"] if i else []) + [p]], ")"]
    # One per line inside parentheses: the `|` may be left out.
    out = ["("]
    for i, p in enumerate(items):
        if i and draw(st.booleans()):
            out.append("|")
        out.append(p)
    return out + [")"]


# -- expressions -------------------------------------------------------------------------

@st.composite
def _bool_expr(draw, atom: st.SearchStrategy[str], depth: int = 2) -> tuple[str, int]:
    """(text, precedence) with precedence or=1 and=2 not=3 atom/comparison=4; parentheses
    only where needed, plus random redundant ones."""
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        text, prec = draw(atom), 4
    else:
        kind = draw(st.sampled_from(["or", "and", "not"]))
        if kind == "not":
            inner, p = draw(_bool_expr(atom, depth - 1))
            text, prec = "not " + (inner if p >= 3 else f"({inner})"), 3
        else:
            need = 2 if kind == "or" else 3
            parts = []
            for _ in range(draw(st.integers(2, 3))):
                inner, p = draw(_bool_expr(atom, depth - 1))
                parts.append(inner if p >= need else f"({inner})")
            text, prec = f" {kind} ".join(parts), 1 if kind == "or" else 2
    if draw(st.integers(0, 5)) == 0:
        return f"({text})", 4
    return text, prec


@st.composite
def _when_atom(draw) -> str:
    var = draw(st.sampled_from(["age", "year", "emergency"]))
    if var == "emergency":
        return var
    low, high = (0, 100) if var == "age" else (1960, 2025)
    n = draw(st.integers(low, high))
    form = draw(st.sampled_from(["lt", "gt", "chain", "flip", "float"]))
    if form == "chain":
        return f"{n} <= {var} <= {draw(st.integers(n, high))}"
    if form == "flip":
        return f"{n} {draw(st.sampled_from(['<', '<=', '>', '>=']))} {var}"
    if form == "float" and var == "age":
        return f"{var} < {n}.5"
    return f"{var} {draw(st.sampled_from(['<', '<=', '>', '>=', '==', '!=']))} {n}"


@st.composite
def _require_atom(draw, earlier: list[str]) -> str:
    name = draw(st.sampled_from(earlier))
    form = draw(st.sampled_from(["ref", "ref", "count", "age", "age2"]))
    if form == "count":
        return f"{name}.count {draw(st.sampled_from(['>', '>=', '==']))} {draw(st.integers(0, 5))}"
    if form == "age":
        return f"{name}.age < {draw(st.integers(1, 90))}"
    if form == "age2":
        return f"{name}.age < {draw(st.sampled_from(earlier))}.age"
    return name


def expr_texts(kind: str, earlier: list[str] | None = None) -> st.SearchStrategy[str]:
    """A `when` (kind="when") or `require` condition's text."""
    atom = _when_atom() if kind == "when" else _require_atom(earlier or ["A"])
    return _bool_expr(atom).map(lambda t: t[0])


# -- items and declarations -------------------------------------------------------------

@st.composite
def _rule(draw, codelists: dict[str, str], layout: _Layout) -> list[str]:
    source = draw(st.sampled_from(sorted(SOURCES)))
    vocabs = draw(st.lists(st.sampled_from(SOURCES[source]), min_size=1, max_size=3, unique=True))
    options: list[str] = []
    if source in HOSPITAL_LIKE and draw(st.booleans()):
        options.append("main")
    if draw(st.integers(0, 3)) == 0:
        options += ["min", str(draw(st.integers(1, 4)))]
    elif draw(st.integers(0, 5)) == 0:
        options.append("single")
    if source == "purchase" and draw(st.integers(0, 3)) == 0:
        options += ["needs", "other"]
    if source in ("hospital", "inpatient", "outpatient") and "icd10" in vocabs and draw(st.integers(0, 5)) == 0:
        options += ["with", "atc"]
    if source in HOSPITAL_LIKE and draw(st.integers(0, 5)) == 0:
        options.append("mode")
    tokens = [source, *options]
    for vocab in vocabs:
        combination = source in HOSPITAL_LIKE and vocab == "icd10"
        tokens += [vocab, *draw(_pattern_list(vocab, codelists, layout, combination=combination))]
        if draw(st.integers(0, 3)) == 0:
            tokens += ["except", *draw(_pattern_list(vocab, {}, layout, combination=False, max_size=2))]
    return tokens


@st.composite
def _meta(draw, earlier: list[str]) -> list[str]:
    keys = ["title", "latin", "note", "version", "tags", "level", "omit", "meta"] + (["parent"] if earlier else [])
    key = draw(st.sampled_from(keys))
    if key in ("title", "latin", "note", "version"):
        return [key, _quote(draw(string_values()))]
    if key == "tags":
        tags = draw(st.lists(names() | string_values().map(_quote), min_size=1, max_size=3))
        return ["tags", *[t for i, tag in enumerate(tags) for t in ([","] if i else []) + [tag]]]
    if key == "level":
        return ["level", draw(st.sampled_from(["1", "2", "3", "4", "5", "C"]))]
    if key == "parent":
        return ["parent", draw(st.sampled_from(earlier))]
    if key == "omit":
        return ["omit", draw(st.sampled_from(["1", "2"]))]
    return ["meta", _quote(draw(names())), _quote(draw(string_values()))]


@st.composite
def _endpoint(draw, name: str, earlier: list[str], codelists: dict[str, str], layout: _Layout) -> str:
    items: list[list[str]] = [draw(_rule(codelists, layout)) for _ in range(draw(st.integers(0, 3)))]
    items += [draw(_meta(earlier)) for _ in range(draw(st.integers(0, 3)))]
    if earlier and draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=3, unique=True))
        items.append(["include", *[t for i, n in enumerate(chosen) for t in ([","] if i else []) + [n]]])
    if not items or not any(i[0] in SOURCES or i[0] == "include" for i in items):
        items.append(draw(_rule(codelists, layout)))
    if draw(st.integers(0, 2)) == 0:
        items.append(["when", draw(expr_texts("when"))])
    if earlier and draw(st.integers(0, 2)) == 0:
        items.append(["require", draw(expr_texts("require", earlier))])
    if draw(st.integers(0, 3)) == 0:
        items.append(["sex", draw(st.sampled_from(["female", "male", "any"]))])
    if earlier and draw(st.integers(0, 3)) == 0:
        inner = []
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=2, unique=True))
            inner.append(["exclude", *[t for i, n in enumerate(chosen) for t in ([","] if i else []) + [n]]])
        if draw(st.booleans()) or not inner:
            inner.append(["require", draw(expr_texts("require", earlier))])
        items.append(["controls", "{", *[t for i in inner for t in i], "}"])
    items = draw(st.permutations(items))
    tokens = ["endpoint", name, "{", *[t for item in items for t in item], "}"]
    return draw(_join(tokens, layout))


@st.composite
def _codelist(draw, name: str, vocab: str, layout: _Layout) -> str:
    tokens = ["codelist", name, vocab, *draw(_pattern_list(vocab, {}, layout, combination=False))]
    return draw(_join(tokens, layout))


@st.composite
def _declarations(draw, *, taken: set[str], max_endpoints: int, messy: bool, comments: bool,
                  known: list[str] | None = None, known_lists: dict[str, str] | None = None
                  ) -> tuple[list[str], list[str], dict[str, str]]:
    layout = _Layout(messy=messy, comments=comments)
    fresh = _NAME.filter(lambda n: n not in taken)
    codelists: dict[str, str] = dict(known_lists or {})
    texts: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        name = draw(fresh)
        taken.add(name)
        vocab = draw(st.sampled_from(sorted(CODES)))
        codelists[name] = vocab
        texts.append(draw(_codelist(name, vocab, layout)))
    earlier: list[str] = list(known or [])
    for _ in range(draw(st.integers(1, max_endpoints))):
        name = draw(fresh)
        taken.add(name)
        texts.append(draw(_endpoint(name, list(earlier), codelists, layout)))
        earlier.append(name)
    return texts, earlier, codelists


@st.composite
def _file(draw, texts: list[str], comments: bool, messy: bool) -> str:
    texts = draw(st.permutations(texts))
    out = []
    for text in texts:
        if comments and draw(st.integers(0, 3)) == 0:
            out.append("#" + draw(comment_texts()) + "\n")
        out.append(text + "\n" + (draw(st.sampled_from(["", "\n", "\n\n"])) if messy else "\n"))
    if comments and draw(st.booleans()):
        out.append("# " + draw(comment_texts()))
    return "".join(out)


@st.composite
def definition_texts(draw, *, max_endpoints: int = 4, messy: bool = True, comments: bool = True) -> str:
    """One valid definitions file as text (declarations in random order)."""
    texts, _, _ = draw(_declarations(taken=set(), max_endpoints=max_endpoints, messy=messy, comments=comments))
    return draw(_file(texts, comments, messy))


@st.composite
def library_texts(draw, *, files: int = 2, max_endpoints: int = 3, messy: bool = False,
                  comments: bool = False) -> tuple[str, ...]:
    """Several files whose endpoints may refer to each other's (earlier) names."""
    taken: set[str] = set()
    known: list[str] = []
    lists: dict[str, str] = {}
    out = []
    for _ in range(files):
        texts, known, lists = draw(_declarations(taken=taken, max_endpoints=max_endpoints, messy=messy,
                                                 comments=comments, known=known, known_lists=lists))
        out.append(draw(_file(texts, comments, messy)))
    return tuple(out)
