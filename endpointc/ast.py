"""The syntax tree: frozen models that mirror the text, each carrying its span.

The tree keeps what the author wrote (order of items, the spelling of patterns,
comments) so the formatter can print it back; meaning is decided later, in `lower`.
Node class names are the rule aliases of grammar/endpoint.lark.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field

from .registers import REGISTERS
from .source import Span

__all__ = [
    "Node", "Code", "Range", "Exact", "AnyCode", "NoCode", "Regex", "Combination",
    "CodelistRef", "Pattern", "SimplePattern", "VocabClause", "Option", "Rule",
    "NameRef", "Include", "When", "Require", "Sex", "ControlExclude", "ControlRequire",
    "Controls", "Meta", "Endpoint", "Codelist", "CodelistPart", "Comment", "File", "DurationLit", "DateLit", "Arith", "Relation",
    "EventCode", "TestEvent", "TestPerson", "Expect", "TestBlock", "rule_clauses",
    "Number", "Var", "EndpointRef", "Attr", "Compare", "And", "Or", "Not", "Expr",
    "SOURCES", "VOCABULARIES", "META_KEYS", "OPTIONS",
]

# Rule sources and their vocabularies, as written in the language (from the one table).
SOURCES: dict[str, tuple[str, ...]] = {name: tuple(r.vocabularies) for name, r in REGISTERS.items()}
VOCABULARIES: tuple[str, ...] = (
    "icd10", "icd9", "icd8", "icpc2", "procedure", "nomesco", "hl", "hp1", "hp2",
    "kela", "atc", "vnr", "topography", "morphology", "behaviour",
)
META_KEYS: tuple[str, ...] = ("title", "tags", "level", "parent", "latin", "omit", "note", "version")
OPTIONS: tuple[str, ...] = ("main", "min", "single", "needs_other", "mode", "with_atc")


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span


# -- code patterns -------------------------------------------------------------

class Code(Node):
    """`E11`, `F3[2-3]`, `C34.[123457]`: a prefix, with FinnGen character classes."""
    kind: Literal["code"] = "code"
    text: str


class Range(Node):
    """`E10-E14`: prefixes from start to end, both the same length."""
    kind: Literal["range"] = "range"
    start: str
    end: str


class Exact(Node):
    """`=E119`: the whole code, nothing longer."""
    kind: Literal["exact"] = "exact"
    text: str


class AnyCode(Node):
    kind: Literal["any"] = "any"


class NoCode(Node):
    kind: Literal["none"] = "none"


class Regex(Node):
    """`re"^C34.?[12]"`: a raw regular expression, anchored at the code's start."""
    kind: Literal["regex"] = "regex"
    regex: str


class CodelistRef(Node):
    """`@DIABETES_ICD10`: the patterns of a named codelist of the same vocabulary."""
    kind: Literal["codelist"] = "codelist"
    name: str


SimplePattern = Annotated[
    Union[Code, Range, Exact, AnyCode, NoCode, Regex, CodelistRef], Field(discriminator="kind")
]


class Combination(Node):
    """`I21&I10`: the first part matches CODE1 and the second CODE2 of the same event."""
    kind: Literal["combination"] = "combination"
    first: SimplePattern
    second: SimplePattern


Pattern = Annotated[
    Union[Code, Range, Exact, AnyCode, NoCode, Regex, CodelistRef, Combination],
    Field(discriminator="kind"),
]


# -- rules ---------------------------------------------------------------------

class VocabClause(Node):
    """`icd10 I21 | I22 except I219`."""
    vocab: str
    patterns: tuple[Pattern, ...]
    excepts: tuple[Pattern, ...] = ()


class DurationLit(Node):
    """`30 days`, `1 year`, `2.5 weeks`: `unit` as written (day/days, week/weeks, ...)."""
    kind: Literal["duration"] = "duration"
    amount: float
    text: str  # the amount as written
    unit: str


class Option(Node):
    """A rule option; `value` and `text` only for `min N` (text as written, so `min 2.5`
    survives formatting to be reported by check); `spacing` and `window` only for
    `min N apart D` and `min N within D`."""
    name: str  # one of OPTIONS; check reports anything else
    value: int | None = None
    text: str | None = None
    spacing: Literal["apart", "within"] | None = None
    window: DurationLit | None = None


class Rule(Node):
    """`SOURCE [options] VOCAB PATTERNS ...`, or `SOURCE [options] @NAME` with a codelist
    of several vocabularies (`codelist` is then its reference and `clauses` is empty)."""
    kind: Literal["rule"] = "rule"
    source: str
    options: tuple[Option, ...] = ()
    clauses: tuple[VocabClause, ...]
    codelist: CodelistRef | None = None

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


# -- expressions (when / require) ----------------------------------------------

class Number(Node):
    kind: Literal["number"] = "number"
    value: float
    text: str


class Var(Node):
    """An event field in `when`: age, year, emergency or date."""
    kind: Literal["var"] = "var"
    name: Literal["age", "year", "emergency", "date"]


class DateLit(Node):
    """`1998-01-01`."""
    kind: Literal["date"] = "date"
    value: dt.date


class EndpointRef(Node):
    """An endpoint name in `require`: true where the person is a case."""
    kind: Literal["ref"] = "ref"
    name: str


class Attr(Node):
    """`X.count`, `X.age`, `X.year`, `X.date`: a case's number of events, and the age,
    year and date of its first event."""
    kind: Literal["attr"] = "attr"
    name: str
    attr: Literal["count", "age", "year", "date"]


class Arith(Node):
    """`date - X.date`, `X.date + 1 year`: a date and a duration, or two dates."""
    kind: Literal["arith"] = "arith"
    op: Literal["+", "-"]
    left: "Expr"
    right: "Expr"


class Relation(Node):
    """`within 1 year after X`, `before X` (in `when`: the event is the subject), and
    `A within 30 days before B`, `A after B` (in `require`: the endpoint `subject`)."""
    kind: Literal["relation"] = "relation"
    subject: EndpointRef | None = None
    relation: Literal["within_after", "within_before", "after", "before"]
    window: DurationLit | None = None
    anchor: EndpointRef


class Compare(Node):
    """`4 <= age <= 40`: a chain; operands[i] ops[i] operands[i+1], all must hold."""
    kind: Literal["compare"] = "compare"
    operands: tuple["Expr", ...]
    ops: tuple[Literal["<", "<=", ">", ">=", "==", "!="], ...]


class And(Node):
    kind: Literal["and"] = "and"
    args: tuple["Expr", ...]


class Or(Node):
    kind: Literal["or"] = "or"
    args: tuple["Expr", ...]


class Not(Node):
    kind: Literal["not"] = "not"
    arg: "Expr"


Expr = Annotated[
    Union[Number, Var, DateLit, DurationLit, EndpointRef, Attr, Arith, Relation, Compare, And, Or, Not],
    Field(discriminator="kind"),
]


# -- endpoint items ------------------------------------------------------------

class NameRef(Node):
    name: str


class Include(Node):
    kind: Literal["include"] = "include"
    names: tuple[NameRef, ...]


class When(Node):
    kind: Literal["when"] = "when"
    condition: Expr


class Require(Node):
    kind: Literal["require"] = "require"
    condition: Expr


class Sex(Node):
    kind: Literal["sex"] = "sex"
    value: Literal["female", "male", "any"]


class ControlExclude(Node):
    kind: Literal["exclude"] = "exclude"
    names: tuple[NameRef, ...]


class ControlRequire(Node):
    kind: Literal["require"] = "require"
    condition: Expr


class Controls(Node):
    kind: Literal["controls"] = "controls"
    items: tuple[Annotated[Union[ControlExclude, ControlRequire], Field(discriminator="kind")], ...]


class Meta(Node):
    """Metadata never changes who is a case. `custom` marks `meta "KEY" "value"`."""
    kind: Literal["meta"] = "meta"
    key: str
    value: str | tuple[str, ...]
    custom: bool = False


Item = Annotated[
    Union[Rule, Include, When, Require, Sex, Controls, Meta], Field(discriminator="kind")
]


class Endpoint(Node):
    kind: Literal["endpoint"] = "endpoint"
    name: str
    name_span: Span
    items: tuple[Item, ...]

    def _of(self, cls):
        return tuple(i for i in self.items if isinstance(i, cls))

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._of(Rule)

    @property
    def includes(self) -> tuple[NameRef, ...]:
        return tuple(n for i in self._of(Include) for n in i.names)

    @property
    def meta(self) -> dict[str, str | tuple[str, ...]]:
        return {m.key: m.value for m in self._of(Meta)}

    @property
    def sex(self) -> str:
        found = self._of(Sex)
        return found[-1].value if found else "any"


class CodelistPart(Node):
    """One vocabulary's patterns in a codelist."""
    vocab: str
    patterns: tuple[Pattern, ...]


class Codelist(Node):
    """`codelist NAME VOCAB PATTERNS`, or `codelist NAME { VOCAB PATTERNS ... }` (`braced`)
    with one part per vocabulary."""
    kind: Literal["codelist"] = "codelist"
    name: str
    name_span: Span
    parts: tuple[CodelistPart, ...]
    braced: bool = False

    @property
    def vocabs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.vocab for p in self.parts))

    @property
    def vocab(self) -> str | None:
        """The vocabulary of a one-vocabulary codelist (None for several)."""
        return self.vocabs[0] if len(self.vocabs) == 1 else None

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return tuple(p for part in self.parts for p in part.patterns)

    def patterns_of(self, vocab: str) -> tuple[Pattern, ...] | None:
        """The patterns of one vocabulary (None where the codelist has none)."""
        found = [p for part in self.parts if part.vocab == vocab for p in part.patterns]
        return tuple(found) if vocab in self.vocabs else None


def rule_clauses(rule: "Rule", codelists: Mapping[str, Codelist]) -> tuple[VocabClause, ...]:
    """A rule's clauses; `SOURCE @NAME` has one per vocabulary of the codelist (none for
    an unknown codelist, which check reports)."""
    if rule.codelist is None:
        return rule.clauses
    codelist = codelists.get(rule.codelist.name)
    if codelist is None:
        return ()
    return tuple(VocabClause(span=rule.codelist.span, vocab=vocab, patterns=codelist.patterns_of(vocab))
                 for vocab in codelist.vocabs)


# -- tests inside definition files -----------------------------------------------

class EventCode(Node):
    """On a test event line: `icd10 I21` (a code of a vocabulary: `vocab` set) or
    `CODE2=I10` (a column's value: `column` set)."""
    vocab: str | None = None
    column: str | None = None
    value: str


class TestEvent(Node):
    """`1990-03-01 INPAT icd10 I21 CATEGORY=1`."""
    date: dt.date
    source: str
    codes: tuple[EventCode, ...]


class TestPerson(Node):
    """`person P1 female born 1950-01-01 followed until 2020-01-01 { events }`."""
    id: str
    sex: Literal["female", "male"]
    born: dt.date
    followed_until: dt.date
    events: tuple[TestEvent, ...] = ()


class Expect(Node):
    """`expect P1 case of X at 1990-06-01 nevt 1`: `at` a date, or an age (a number)."""
    person: NameRef
    status: Literal["case", "control", "excluded"]
    endpoint: NameRef
    at_date: dt.date | None = None
    at_age: float | None = None
    nevt: int | None = None


class TestBlock(Node):
    """`test "..." { person ... expect ... }`: what a definition must do on made-up people."""
    kind: Literal["test"] = "test"
    name: str
    persons: tuple[TestPerson, ...]
    expects: tuple[Expect, ...]


class Comment(Node):
    text: str  # without the leading '#'


class File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    declarations: tuple[Annotated[Union[Endpoint, Codelist, TestBlock], Field(discriminator="kind")], ...]
    comments: tuple[Comment, ...] = ()

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(d for d in self.declarations if isinstance(d, Endpoint))

    @property
    def codelists(self) -> tuple[Codelist, ...]:
        return tuple(d for d in self.declarations if isinstance(d, Codelist))

    @property
    def tests(self) -> tuple[TestBlock, ...]:
        return tuple(d for d in self.declarations if isinstance(d, TestBlock))


for _model in (Arith, Relation, Compare, And, Or, Not, When, Require, ControlRequire, Controls, Endpoint, File):
    _model.model_rebuild()
