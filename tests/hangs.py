"""A guard against work that grows with the input (hangs), not a benchmark.

It measures CPU time of the calling thread only, with the garbage collector paused: other
threads of the process (a Polars pool left busy by an earlier test) and the collection of
earlier tests' garbage are not the work under test, and counting them made the guard trip
on a busy CI machine.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Iterator

__all__ = ["cpu_bound"]


@contextmanager
def cpu_bound(seconds: float, what: str) -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    started = time.thread_time()
    try:
        yield
    finally:
        spent = time.thread_time() - started
        if enabled:
            gc.enable()
    assert spent < seconds, f"{spent:.2f} s of CPU for {what}"
