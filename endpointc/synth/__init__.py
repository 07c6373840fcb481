"""Synthetic FinnGen-format registries: seeded, realistic, and definition-aware.

>>> from endpointc.synth import generate
>>> events, people = generate(people=100, seed=7)
>>> sorted(events.collect()["SOURCE"].unique())[:2]
['CANC', 'DEATH']
"""

from .generate import (BLOCK_PEOPLE, EVENT_SCHEMA, PEOPLE_SCHEMA, generate, write_registry)
from .recipes import Alternative, Recipe, Rule, case_recipes
from .sampler import sample_code, sample_codes

__all__ = [
    "generate",
    "write_registry",
    "Recipe",
    "Rule",
    "Alternative",
    "case_recipes",
    "sample_code",
    "sample_codes",
    "EVENT_SCHEMA",
    "PEOPLE_SCHEMA",
    "BLOCK_PEOPLE",
]
