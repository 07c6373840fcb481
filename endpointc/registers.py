"""The registers a rule can read: one table, read by check, lower and everything after.

A rule starts with a source word (`hospital`, `purchase`, ...). What that word means in
the FinnGen longitudinal table is written here and nowhere else:

* which SOURCE values its rows have;
* which vocabularies it takes, the column each one's patterns match, and the *pins*:
  further tests that keep a vocabulary to its own rows (ICD-10 codes are the rows with
  ICDVER 10; primary care ICPC-2 codes the rows whose CATEGORY starts with ICP);
* which options it allows: `main` (and which CATEGORY values a main diagnosis has),
  `with atc`, combination codes `A&B`; and its default `min`.

The table is plain data so that the checker (which speaks about the text) and lowering
(which builds the plan) read the same facts.

>>> REGISTERS["death"].main
('U',)
>>> allowing("with_atc")
('hospital', 'inpatient', 'outpatient', 'death')
>>> REGISTERS["reimbursement"].vocabularies["icd10"]
Vocabulary(column='CODE2', pins=(Pin(column='ICDVER', exact=('10',), prefixes=()),))
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

__all__ = ["Pin", "Vocabulary", "Register", "REGISTERS", "allows", "allowing", "in_words"]


@dataclass(frozen=True)
class Pin:
    """A test that keeps a vocabulary to its rows: `column` is one of `exact` or starts
    with one of `prefixes`."""

    column: str
    exact: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    """Where a vocabulary's codes are on a register's rows."""

    column: str
    pins: tuple[Pin, ...] = ()


@dataclass(frozen=True)
class Register:
    """What a rule's source word means (see the module docstring)."""

    rows: tuple[str, ...]
    vocabularies: Mapping[str, Vocabulary]
    # CATEGORY values of a main diagnosis; empty where `main` means nothing
    main: tuple[str, ...] = ()
    # the rows carry an adverse-effect ATC code in CODE3
    with_atc: bool = False
    # the rows carry a second diagnosis in CODE2, so `A&B` means something
    combinations: bool = False
    default_min: int = 1


def _icd(column: str = "CODE1", *versions: str) -> dict[str, Vocabulary]:
    return {f"icd{v}": Vocabulary(column, (Pin("ICDVER", exact=(v,)),)) for v in versions}


def _category(*prefixes: str) -> Vocabulary:
    return Vocabulary("CODE1", (Pin("CATEGORY", prefixes=prefixes),))


_DIAGNOSES = _icd("CODE1", "10", "9", "8")
_HOSPITAL = dict(vocabularies=MappingProxyType(_DIAGNOSES), main=("0",), with_atc=True, combinations=True)

REGISTERS: Mapping[str, Register] = MappingProxyType({
    "hospital": Register(rows=("INPAT", "OUTPAT"), **_HOSPITAL),
    "inpatient": Register(rows=("INPAT",), **_HOSPITAL),
    "outpatient": Register(rows=("OUTPAT",), **_HOSPITAL),
    "primary": Register(
        rows=("PRIM_OUT",),
        vocabularies=MappingProxyType({"icd10": _category("ICD"), "icpc2": _category("ICP"),
                                       "procedure": _category("OP", "MOP")}),
        main=("ICD0", "ICP0", "OP0", "MOP0"), combinations=True),
    "death": Register(rows=("DEATH",), vocabularies=MappingProxyType(_DIAGNOSES), main=("U",), with_atc=True,
                      combinations=True),
    "operation": Register(
        rows=("OPER_IN", "OPER_OUT"),
        vocabularies=MappingProxyType({"nomesco": _category("NOM"), "hl": _category("MFHL", "SFHL"),
                                       "hp1": _category("HPO"), "hp2": _category("HPN")})),
    "reimbursement": Register(
        rows=("REIMB",),
        vocabularies=MappingProxyType({"kela": Vocabulary("CODE1"), **_icd("CODE2", "10", "9")})),
    "purchase": Register(
        rows=("PURCH",),
        vocabularies=MappingProxyType({"atc": Vocabulary("CODE1"), "vnr": Vocabulary("CODE3"),
                                       "kela": Vocabulary("CODE2")}),
        default_min=3),
    "cancer": Register(
        rows=("CANC",),
        vocabularies=MappingProxyType({"topography": Vocabulary("CODE1"), "morphology": Vocabulary("CODE2"),
                                       "behaviour": Vocabulary("CODE3")})),
})


# Options that every rule allows, whatever its source.
_ANY_SOURCE = frozenset({"min", "single", "needs_other", "mode"})


def allows(source: str, feature: str) -> bool:
    """Whether rules of `source` allow an option (`main`, `with_atc`, `min`, ...) or
    combination codes (`combinations`); an unknown source allows nothing."""
    register = REGISTERS.get(source)
    if register is None:
        return False
    if feature == "main":
        return bool(register.main)
    if feature == "with_atc":
        return register.with_atc
    if feature == "combinations":
        return register.combinations
    return feature in _ANY_SOURCE


def allowing(feature: str) -> tuple[str, ...]:
    """The source words whose rules allow `feature`, in the table's order."""
    return tuple(name for name in REGISTERS if allows(name, feature))


def in_words(names: tuple[str, ...]) -> str:
    """`a, b and c`: for hints that list sources."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
