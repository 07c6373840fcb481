"""Synthetic FinnGen-format registries: seeded, realistic, and definition-aware.

Python API: `generate()` returns (events, people) LazyFrames; `write_registry()` writes
events.{parquet,tsv} and people.{parquet,tsv} chunk by chunk. Definitions (a compiled
Program, definition paths, or hand-made `Recipe`s) give every endpoint cases;
`code_frequencies` draws background codes from a FinnGen summary file.

>>> from endpointc.synth import generate
>>> events, people = generate(people=20, seed=7)
>>> people.collect().columns
['FINNGENID', 'SEX', 'APPROX_BIRTH_DATE', 'FU_END_AGE', 'DEATH']
>>> events.collect().columns[:4]
['FINNGENID', 'SOURCE', 'EVENT_AGE', 'APPROX_EVENT_DAY']
"""

from .generate import (BLOCK_PEOPLE, EVENT_SCHEMA, PEOPLE_SCHEMA, generate, write_registry)
from .recipes import Alternative, Recipe, Relative, Rule, case_recipes
from .sampler import sample_code, sample_codes

__all__ = [
    "generate",
    "write_registry",
    "Recipe",
    "Rule",
    "Alternative",
    "Relative",
    "case_recipes",
    "sample_code",
    "sample_codes",
    "EVENT_SCHEMA",
    "PEOPLE_SCHEMA",
    "BLOCK_PEOPLE",
]
