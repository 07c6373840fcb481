"""Tests inside definition files: `test` blocks -> made-up registries -> every engine -> verdicts.

A `test` block (see docs/language.md, "Tests inside definition files") describes a few
made-up people with their events, and what the definitions must say about them. This
module turns each block into the two registry tables the engines read, runs the program
on them with every engine, and compares each `expect` line with what came out:

- `registry_of(block)`: the events and people tables, in the normalised registry schema.
  An event line's vocabulary sets the code column and the columns that keep it to its rows
  (ICDVER, CATEGORY), as the registers table says; hospital rows are main diagnoses
  (CATEGORY 0), death rows underlying causes (U), primary care and operation rows get the
  CATEGORY their vocabulary implies; each line is a visit of its own (INDEX) unless it
  says otherwise. Ages are days since birth / 365.25, rounded to two decimals.
- `run_tests(program, blocks)`: one `Verdict` per expectation and engine.
- `junit_xml(verdicts)`: the verdicts as JUnit XML, for CI systems.

Test people are made up, so verdicts may name them; nothing here reads a real registry.

>>> from endpointc.compiler import compile_text
>>> text = '''endpoint A { hospital icd10 I21 }
... test "an infarction" {
...   person P1 male born 1950-01-01 followed until 2020-01-01 { 1990-03-01 INPAT icd10 I21 }
...   person P2 male born 1950-01-01 followed until 2020-01-01 { 1990-03-01 INPAT icd10 I20 }
...   expect P1 case of A at 1990-03-01 nevt 1
...   expect P2 control of A
... }'''
>>> program, diagnostics = compile_text(text)
>>> from endpointc.parser import parse
>>> blocks = parse(text)[0].tests
>>> [(v.engine, v.passed) for v in run_tests(program, blocks)]
[('reference', True), ('reference', True), ('polars', True), ('polars', True)]
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence
from xml.etree import ElementTree

from typing import TYPE_CHECKING

from . import ast
from .fmt import expectation_text
from .registers import REGISTERS, Register
from .source import Span

if TYPE_CHECKING:  # the engines load Polars: `check` places test events without them
    import polars as pl

    from .plan import Program

__all__ = ["ENGINES", "Verdict", "Outcome", "registry_of", "run_tests", "junit_xml", "event_columns",
           "TestDataError"]

ENGINES = ("reference", "polars")
_DAYS_PER_YEAR = 365.25


class TestDataError(ValueError):
    """An event line the registers cannot place (`check` reports these first)."""

    def __init__(self, message: str, span: Span | None):
        super().__init__(message)
        self.span = span


@dataclass(frozen=True)
class Outcome:
    """What an engine said about one person and endpoint: status, and for a case the date
    (reference engine) or age of its first event and NEVT."""

    status: str
    date: dt.date | None = None
    age: float | None = None
    nevt: int | None = None

    def describe(self) -> str:
        if self.status != "case":
            return self.status
        when = f"at {self.date.isoformat()}" if self.date is not None else f"at age {self.age:g}"
        return f"case {when} nevt {self.nevt}"


@dataclass(frozen=True)
class Verdict:
    """One `expect` line judged on one engine."""

    test: str
    expect: ast.Expect
    engine: str
    passed: bool
    actual: Outcome

    @property
    def expected(self) -> str:
        return expectation_text(self.expect)


# -- made-up registries ----------------------------------------------------------------

def _age(born: dt.date, day: dt.date) -> float:
    return round((day - born).days / _DAYS_PER_YEAR, 2)


def _registers_of(source: str) -> list[Register]:
    return [r for r in REGISTERS.values() if source in r.rows]


def event_columns(event: ast.TestEvent) -> dict[str, str]:
    """The code columns an event line sets: vocabularies placed as the registers say, then
    columns given by name, which win. Raises `TestDataError` for a vocabulary that no
    register of the line's SOURCE reads."""
    registers = _registers_of(event.source)
    if not registers:
        raise TestDataError(f"{event.source} is not a SOURCE of the longitudinal table", event.span)
    columns: dict[str, str] = {}
    main = registers[0].main
    if main:  # a main diagnosis (hospital 0, death U, primary care ICD0) unless told otherwise
        columns["CATEGORY"] = main[0]
    for code in event.codes:
        if code.vocab is None:
            continue
        vocabulary = next((r.vocabularies[code.vocab] for r in registers if code.vocab in r.vocabularies), None)
        if vocabulary is None:
            raise TestDataError(f"{event.source} rows hold no {code.vocab} codes", code.span)
        columns[vocabulary.column] = code.value
        for pin in vocabulary.pins:
            if pin.exact:
                columns[pin.column] = pin.exact[0]
            else:  # a CATEGORY prefix: its main category where the register has one
                columns[pin.column] = next((m for m in main if m.startswith(pin.prefixes[0])), pin.prefixes[0])
    for code in event.codes:
        if code.column is not None:
            columns[code.column] = code.value
    return columns


def registry_of(block: ast.TestBlock) -> "tuple[pl.DataFrame, pl.DataFrame]":
    """The (events, people) tables of a test block, in the normalised registry schema."""
    import polars as pl

    from .registry import EVENTS_SCHEMA, PEOPLE_SCHEMA

    events, people = [], []
    for person in block.persons:
        people.append({"FINNGENID": person.id, "SEX": person.sex, "APPROX_BIRTH_DATE": person.born,
                       "FU_END_AGE": _age(person.born, person.followed_until), "DEATH": None})
        for number, event in enumerate(person.events, start=1):
            # A visit of its own unless the line names one: a name no author writes.
            row = {"FINNGENID": person.id, "SOURCE": event.source, "EVENT_AGE": _age(person.born, event.date),
                   "APPROX_EVENT_DAY": event.date, "INDEX": f"{person.id}#{number}"}
            row.update(event_columns(event))
            events.append(row)
    return (pl.DataFrame(events, schema=EVENTS_SCHEMA, orient="row"),
            pl.DataFrame(people, schema=PEOPLE_SCHEMA, orient="row"))


# -- running ------------------------------------------------------------------------------

def _first_dates():
    from .engine.reference import Observer

    class FirstDates(Observer):
        """Hears the reference engine's cases, for the date of their first event."""

        def __init__(self):
            self.dates: dict[tuple[str, str], dt.date | None] = {}

        def case(self, endpoint, person, case) -> None:
            self.dates[(endpoint.name, person)] = case.date

    return FirstDates()


def _outcomes(program: "Program", block: ast.TestBlock, engine: str) -> dict[tuple[str, str], Outcome]:
    from .engine.polars import evaluate
    from .engine.reference import evaluate_reference

    events, people = registry_of(block)
    names = sorted({e.endpoint.name for e in block.expects})
    if engine == "reference":
        dates = _first_dates()
        long = evaluate_reference(program, events, people, endpoints=names, observer=dates)
    elif engine == "polars":
        dates = None
        long = evaluate(program, events.lazy(), people.lazy(), endpoints=names).long.collect()
    else:
        raise ValueError(f"unknown engine {engine!r}; engines are {', '.join(ENGINES)}")
    found = {}
    for row in long.iter_rows(named=True):
        key = (row["ENDPOINT"], row["FINNGENID"])
        found[key] = Outcome(row["STATUS"], dates.dates.get(key) if dates else None, row["AGE"], row["NEVT"])
    return found


def _judge(expect: ast.Expect, actual: Outcome, born: dt.date) -> bool:
    if actual.status != expect.status:
        return False
    if expect.nevt is not None and actual.nevt != expect.nevt:
        return False
    if expect.at_age is not None and actual.age != expect.at_age:
        return False
    if expect.at_date is not None:
        if actual.date is not None:
            return actual.date == expect.at_date
        # An engine that reports ages only: the first event's age is that of the date.
        return actual.age == _age(born, expect.at_date)
    return True


def run_tests(program: "Program", blocks: Sequence[ast.TestBlock], *,
              engines: Sequence[str] = ENGINES) -> tuple[Verdict, ...]:
    """Every expectation of every block, on every engine (engine by engine, block by block)."""
    verdicts = []
    for engine in engines:
        for block in blocks:
            outcomes = _outcomes(program, block, engine)
            born = {p.id: p.born for p in block.persons}
            for expect in block.expects:
                actual = outcomes.get((expect.endpoint.name, expect.person.name), Outcome("control"))
                passed = _judge(expect, actual, born[expect.person.name])
                verdicts.append(Verdict(block.name, expect, engine, passed, actual))
    return tuple(verdicts)


def junit_xml(verdicts: Sequence[Verdict]) -> str:
    """JUnit XML: a test suite per engine, a test case per expectation."""
    suites = ElementTree.Element("testsuites", name="endpointc test")
    for engine in dict.fromkeys(v.engine for v in verdicts):
        mine = [v for v in verdicts if v.engine == engine]
        failures = sum(not v.passed for v in mine)
        suite = ElementTree.SubElement(suites, "testsuite", name=engine, tests=str(len(mine)),
                                       failures=str(failures), errors="0")
        for v in mine:
            span = v.expect.span
            case = ElementTree.SubElement(
                suite, "testcase", classname=f"{engine}.{v.test}",
                name=f"expect {v.expect.person.name} {v.expected}",
                file=span.file, line=str(span.line))
            if not v.passed:
                failure = ElementTree.SubElement(case, "failure", message=f"got {v.actual.describe()}")
                failure.text = (f"{span.file}:{span.line}:{span.column}: expected {v.expect.person.name} "
                                f"{v.expected}, got {v.actual.describe()}")
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
