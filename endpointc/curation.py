"""Curation rule sets: library-wide conventions a project adopts on top of the language.

The checker proves a library means something; a rule set says whether it is curated the
way a project wants. `finngen` is FinnGen's own definition checker (fg-endpoint-tools) in
diagnostics of the language: every rule has its code (EP8xx, listed in CODES and in
docs/diagnostics.md), a message, the span of the endpoint or include it is about, and a
hint saying how to fix it. FinnGen's other checks are the checker's already (an unknown
include is EP201, a cycle EP206, a self-include EP208, a duplicate name EP204, a name
that is not upper case EP103) and are not repeated here.

A curation finding can be silenced for one endpoint by a comment inside its braces,
`# endpointc: allow EP811` (several codes: `allow EP801, EP811`; text after the codes is
free, e.g. why): the curator has looked and the difference is intended.

>>> from endpointc.parser import parse
>>> from endpointc.check import index_library
>>> tree, _ = parse('endpoint A_COMORB { hospital icd10 I21  death icd10 I21 }', name='x.ep')
>>> [d.code for d in curate(index_library([tree]), rule_sets=("finngen",))]
['EP802']
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Callable, Iterator, Mapping, Sequence

from . import ast
from .check import Library
from .diagnostics import Diagnostic, sort_diagnostics
from .fmt import clause_text, option_text, pattern_text, strip_spans
from .source import Span

__all__ = ["RULE_SETS", "CODES", "curate"]

# What each code checks, with the name of the expectation in FinnGen's checker.
CODES: Mapping[str, str] = MappingProxyType({
    "EP801": "an endpoint is listed twice in one include (include_endpoints_are_unique)",
    "EP802": "a COMORB endpoint is not omit 2 (comorb_are_omit2)",
    "EP803": "an endpoint that is not omit 2 includes an omit 2 endpoint (include_omit2)",
    "EP804": "a C3_ endpoint is not reached through the includes of C3_CANCER (all_c3_basic_included_in_c3_cancer)",
    "EP805": "C3_CANCER_WIDE's include tree is not exactly the C3_..._WIDE endpoints "
             "(all_c3_wide_included_in_c3_cancer_wide)",
    "EP806": "a C3_X_WIDE endpoint has no C3_X (cancer_wide_has_basic_endpoint)",
    "EP807": "C3_X_WIDE and C3_X have different cancer rules (cancer_wide_same_cancer_definition)",
    "EP808": "C3_X_WIDE and C3_X have different controls (cancer_wide_same_control_definition)",
    "EP809": "no hospital rule in a C3_X_WIDE endpoint's include tree (cancer_wide_have_hilmo_definition)",
    "EP810": "a hospital rule in the include tree of a C3_X that has a C3_X_WIDE "
             "(cancer_wide_basic_have_no_hilmo_definition)",
    "EP811": "the hospital and death rules of an endpoint list different ICD patterns (code_hd_cod_same_icd)",
})

# FinnGen's HD_ICD_* columns: rules on the hospital discharge register (Hilmo).
HOSPITAL_SOURCES = ("hospital", "inpatient", "outpatient")
ICD_VOCABULARIES = ("icd10", "icd9", "icd8")
_PRAGMA = re.compile(r"\s*endpointc:\s*allow\s+(EP\d{3}(?:\s*,\s*EP\d{3})*)")
_SHOWN = 5  # patterns named in a message before "and N more"


def curate(library: Library, *, rule_sets: Sequence[str]) -> tuple[Diagnostic, ...]:
    """The findings of the selected rule sets on a library, minus those its endpoints allow.

    Unknown names raise ValueError (the CLI and the config file check them first). Works on
    a library with errors too: unknown names and cycles are skipped, not followed.
    """
    unknown = [name for name in rule_sets if name not in RULE_SETS]
    if unknown:
        raise ValueError(f"unknown rule set {', '.join(unknown)} (known: {', '.join(RULE_SETS)})")
    found = [d for name in dict.fromkeys(rule_sets) for d in RULE_SETS[name](library)]
    return tuple(sort_diagnostics(_not_allowed(library, found)))


def _not_allowed(library: Library, found: list[Diagnostic]) -> Iterator[Diagnostic]:
    """Drop findings inside an endpoint whose braces hold an `endpointc: allow` comment."""
    allowed: list[tuple[Span, frozenset[str]]] = []
    for file in library.files:
        for comment in file.comments:
            match = _PRAGMA.match(comment.text)
            owner = match and next((e for e in file.endpoints if _inside(comment.span, e.span)), None)
            if owner:
                allowed.append((owner.span, frozenset(re.split(r"\s*,\s*", match.group(1)))))
    for diagnostic in found:
        if not any(diagnostic.code in codes and diagnostic.span and _inside(diagnostic.span, span)
                   for span, codes in allowed):
            yield diagnostic


def _inside(span: Span, outer: Span) -> bool:
    return span.file == outer.file and outer.offset <= span.offset and span.end_offset <= outer.end_offset


# -- the finngen rule set -------------------------------------------------------------

class _FinnGen:
    def __init__(self, library: Library):
        self.endpoints = library.endpoints
        self.codelists = library.codelists
        self.order = library.order
        # Read once: the AST computes these properties on every access.
        self.includes = {name: _unique_includes(e) for name, e in self.endpoints.items()}
        self.omit2 = {name for name, e in self.endpoints.items() if e.meta.get("omit") == "2"}
        self.found: list[Diagnostic] = []

    def run(self) -> list[Diagnostic]:
        self.includes_once()
        self.comorb_omit2()
        self.no_omit2_included()
        self.c3_cancer_trees()
        self.c3_wide_pairs()
        self.hospital_death_same_icd()
        return self.found

    def error(self, code: str, message: str, span: Span, *hints: str, related=()) -> None:
        self.found.append(Diagnostic.error(code, message, span, *hints, related=related))

    def warning(self, code: str, message: str, span: Span, *hints: str, related=()) -> None:
        self.found.append(Diagnostic.warning(code, message, span, *hints, related=related))

    # -- include lists --------------------------------------------------------------------
    def includes_once(self) -> None:
        for endpoint in self.endpoints.values():
            first: dict[str, ast.NameRef] = {}
            for ref in endpoint.includes:
                if ref.name in first:
                    self.warning("EP801", f"{endpoint.name} includes {ref.name} twice", ref.span,
                                 f"remove the second {ref.name}: an include adds its cases once",
                                 related=((f"{ref.name} first included here", first[ref.name].span),))
                first.setdefault(ref.name, ref)

    def comorb_omit2(self) -> None:
        for endpoint in self.endpoints.values():
            if "COMORB" in endpoint.name and endpoint.name not in self.omit2:
                omit = endpoint.meta.get("omit")
                self.error("EP802", f"{endpoint.name} is a comorbidity endpoint but is "
                           + (f"omit {omit}" if omit else "not omitted"), endpoint.name_span,
                           "FinnGen keeps COMORB endpoints for reference only: add `omit 2`")

    def no_omit2_included(self) -> None:
        reaching = self._in_tree(lambda e: e.name if e.name in self.omit2 else None)
        for endpoint in self.endpoints.values():
            if endpoint.name in self.omit2:
                continue
            for name, ref in self.includes[endpoint.name]:
                if name not in reaching:
                    continue
                path, omitted = reaching[name]
                what = (f"{name}, which is omit 2" if len(path) == 1 else
                        f"{name}, which includes omit 2 endpoint {omitted} ({' -> '.join(path)})")
                self.error("EP803", f"{endpoint.name} is not omit 2 but includes {what}", ref.span,
                           f"remove {name} from the include, make {endpoint.name} `omit 2` too, or take `omit 2` "
                           f"off {omitted}: an omit 2 endpoint is kept for reference, not to build others")

    # -- cancer: C3_CANCER, C3_CANCER_WIDE and the _WIDE pairs -----------------------------
    def c3_cancer_trees(self) -> None:
        c3 = [n for n in self.endpoints if n.startswith("C3_")]
        basic = sorted(n for n in c3 if not n.endswith("_WIDE") and n != "C3_CANCER")
        wide = {n for n in c3 if n.endswith("_WIDE") and n != "C3_CANCER_WIDE"}
        reached = self._tree("C3_CANCER")
        missing_root = () if "C3_CANCER" in self.endpoints else ("there is no endpoint C3_CANCER",)
        for name in basic:
            if name not in reached:
                self.warning("EP804", f"{name} is not reached through the includes of C3_CANCER",
                             self.endpoints[name].name_span, *missing_root,
                             f"include {name} in C3_CANCER or in a C3_ endpoint that C3_CANCER includes, so that "
                             "C3_CANCER holds every cancer")
        reached = self._tree("C3_CANCER_WIDE")
        missing_root = () if "C3_CANCER_WIDE" in self.endpoints else ("there is no endpoint C3_CANCER_WIDE",)
        for name in sorted(wide - reached):
            self.warning("EP805", f"{name} is not reached through the includes of C3_CANCER_WIDE",
                         self.endpoints[name].name_span, *missing_root,
                         f"include {name} in C3_CANCER_WIDE or in a _WIDE endpoint that C3_CANCER_WIDE includes")
        # Report where the tree leaves the _WIDE endpoints, not everything below that point.
        for parent in sorted({"C3_CANCER_WIDE", *(wide & reached)} & set(self.endpoints)):
            for name, ref in self.includes[parent]:
                if name in self.endpoints and name not in wide:
                    instead = (f"include {name}_WIDE instead" if f"{name}_WIDE" in wide
                               else f"remove {name} from {parent}")
                    self.warning("EP805", f"{name} is in the include tree of C3_CANCER_WIDE but is not a "
                                 "C3_..._WIDE endpoint", ref.span,
                                 f"{instead}: the include tree of C3_CANCER_WIDE holds the _WIDE cancers only")

    def c3_wide_pairs(self) -> None:
        hospital = self._in_tree(self._hospital_rule)
        for wide_name in sorted(n for n in self.endpoints if n.startswith("C3_") and n.endswith("_WIDE")):
            wide = self.endpoints[wide_name]
            basic_name = wide_name.removesuffix("_WIDE")
            basic = self.endpoints.get(basic_name)
            if wide_name not in hospital:
                self.error("EP809", f"{wide_name} has no hospital rule, neither its own nor in its includes",
                           wide.name_span, f"a _WIDE cancer adds hospital diagnoses to {basic_name}: add a "
                           "`hospital icd10 ...` rule")
            if basic is None:
                self.error("EP806", f"{wide_name} has no basic endpoint {basic_name}", wide.name_span,
                           f"define {basic_name} with the cancer registry rule of {wide_name} and no hospital rule")
                continue
            if _cancer_key(wide, self.codelists) != _cancer_key(basic, self.codelists):
                self.error("EP807", f"{wide_name} and {basic_name} have different cancer rules", wide.name_span,
                           f"give both the same cancer rule; {basic_name} has "
                           + (" and ".join(f"`{_rule_text(r)}`" for r in _cancer_rules(basic)) or "none"),
                           related=((f"{basic_name} defined here", basic.name_span),))
            if _controls_key(wide) != _controls_key(basic):
                self.error("EP808", f"{wide_name} and {basic_name} have different controls", wide.name_span,
                           "give both the same `controls` lines: they differ only in who is a case",
                           related=((f"{basic_name} defined here", basic.name_span),))
            if basic_name in hospital:
                path, rule = hospital[basic_name]
                where = "" if len(path) == 1 else f" (in {path[-1]}, through {' -> '.join(path)})"
                self.error("EP810", f"{basic_name} has a hospital rule{where}, but hospital diagnoses belong in "
                           f"{wide_name} only", basic.name_span,
                           f"remove the hospital rule, or the include that brings it, from {basic_name}",
                           related=(("hospital rule here", rule.span),))

    # -- hospital and death -------------------------------------------------------------------
    def hospital_death_same_icd(self) -> None:
        for endpoint in self.endpoints.values():
            hospital = _icd_patterns(endpoint, HOSPITAL_SOURCES, self.codelists)
            death = _icd_patterns(endpoint, ("death",), self.codelists)
            if hospital == death:
                continue
            differences = []
            for key in sorted(set(hospital) | set(death), key=_vocab_order):
                only_h = sorted(hospital.get(key, set()) - death.get(key, set()))
                only_d = sorted(death.get(key, set()) - hospital.get(key, set()))
                differences += [f"{key} {_some(only)} only in {side}"
                                for only, side in ((only_h, "hospital"), (only_d, "death")) if only]
            self.warning("EP811", f"the hospital and death rules of {endpoint.name} list different ICD patterns: "
                         + "; ".join(differences), endpoint.name_span,
                         "list the same ICD codes for hospital and death; if the difference is intended, write "
                         f"`# endpointc: allow EP811` inside the braces of {endpoint.name}")

    # -- include trees ------------------------------------------------------------------------
    def _tree(self, root: str) -> set[str]:
        """Every endpoint reached from `root` through includes (not `root` itself)."""
        seen: set[str] = set()
        todo = [root]
        while todo:
            for name, _ in self.includes.get(todo.pop(), ()):
                if name in self.endpoints and name not in seen:
                    seen.add(name)
                    todo.append(name)
        return seen

    def _in_tree(self, own: Callable[[ast.Endpoint], object]) -> dict[str, tuple[tuple[str, ...], object]]:
        """For each endpoint with something `own` finds in itself or its include tree: the
        path of names to where it is, and what was found (endpoints after their includes)."""
        found: dict[str, tuple[tuple[str, ...], object]] = {}
        for name in self.order:
            endpoint = self.endpoints[name]
            mine = own(endpoint)
            if mine is not None:
                found[name] = ((name,), mine)
                continue
            below = next((found[n] for n, _ in self.includes[name] if n in found and n != name), None)
            if below is not None:
                found[name] = ((name, *below[0]), below[1])
        return found

    def _hospital_rule(self, endpoint: ast.Endpoint) -> ast.Rule | None:
        """A rule of FinnGen's HD_ICD columns: hospital codes other than `none` (`$!$`)."""
        return next((r for r in endpoint.rules if r.source in HOSPITAL_SOURCES
                     and any(not isinstance(p, ast.NoCode) or c.excepts
                             for c in ast.rule_clauses(r, self.codelists) for p in c.patterns)), None)


RULE_SETS: Mapping[str, Callable[[Library], list[Diagnostic]]] = MappingProxyType({
    "finngen": lambda library: _FinnGen(library).run(),
})


# -- helpers ---------------------------------------------------------------------------------

def _unique_includes(endpoint: ast.Endpoint) -> list[tuple[str, ast.NameRef]]:
    """Each included name once, with its first mention."""
    first: dict[str, ast.NameRef] = {}
    for ref in endpoint.includes:
        first.setdefault(ref.name, ref)
    return list(first.items())


def _cancer_rules(endpoint: ast.Endpoint) -> list[ast.Rule]:
    return [r for r in endpoint.rules if r.source == "cancer"]


def _cancer_key(endpoint: ast.Endpoint, codelists) -> frozenset:
    """The cancer rules as sets of patterns per vocabulary: order and spelling of the
    lists do not matter (FinnGen compares the CANC_ columns as text)."""
    return frozenset(
        (tuple(sorted(option_text(o) for o in rule.options)),
         frozenset((c.vocab, frozenset(map(pattern_text, c.patterns)), frozenset(map(pattern_text, c.excepts)))
                   for c in ast.rule_clauses(rule, codelists)))
        for rule in _cancer_rules(endpoint))


def _controls_key(endpoint: ast.Endpoint) -> tuple[frozenset, frozenset]:
    items = [i for c in endpoint.items if isinstance(c, ast.Controls) for i in c.items]
    excluded = frozenset(n.name for i in items if isinstance(i, ast.ControlExclude) for n in i.names)
    required = frozenset(repr(strip_spans(i.condition)) for i in items if isinstance(i, ast.ControlRequire))
    return excluded, required


def _icd_patterns(endpoint: ast.Endpoint, sources, codelists) -> dict[str, set[str]]:
    """Per ICD vocabulary (and its `except` list), the patterns of the endpoint's rules of
    `sources`; a pattern of a `mode` rule is marked as FinnGen writes it, with `%`."""
    found: dict[str, set[str]] = {}
    for rule in endpoint.rules:
        if rule.source not in sources:
            continue
        mark = "%" if rule.option("mode") else ""
        for clause in ast.rule_clauses(rule, codelists):
            if clause.vocab in ICD_VOCABULARIES:
                found.setdefault(clause.vocab, set()).update(mark + pattern_text(p) for p in clause.patterns)
                if clause.excepts:
                    found.setdefault(f"{clause.vocab} except", set()).update(map(pattern_text, clause.excepts))
    return found


def _vocab_order(key: str) -> tuple[int, str]:
    return ICD_VOCABULARIES.index(key.split()[0]), key


def _some(patterns: list[str]) -> str:
    shown = " | ".join(patterns[:_SHOWN])
    return shown + (f" and {len(patterns) - _SHOWN} more" if len(patterns) > _SHOWN else "")


def _rule_text(rule: ast.Rule) -> str:
    head = " ".join([rule.source, *(option_text(o) for o in rule.options)])
    if rule.codelist is not None:
        return f"{head} @{rule.codelist.name}"
    return head + " " + "  ".join(clause_text(c) for c in rule.clauses)
