"""Garbage collection tuned for the processes that move bulk data (the importer and both silo servers).

An import allocates a few container objects per instance (the record's dict, its row, its result) that
live for as long as their batch is in flight, so CPython's default thresholds (a young collection every
700 allocations) run a collection every few instances and, as survivors pile up, full collections that
walk every object of the process, including the hundreds of thousands that importing SQLAlchemy,
gRPC and protobuf created. Measured on the benchmark's 300,000-instance export: about a fifth of the
import's wall time and of the importer's and control's CPU (1,000,000 instances: 46-51 s tuned, 55-65 s
with the defaults, in alternating runs).

``tune_for_bulk_work`` moves the objects alive at start-up out of the collector's sight (``gc.freeze``:
they live as long as the process anyway) and collects the young generation every 20,000 allocations
instead: the same peak memory in the benchmark, and cyclic garbage is still collected."""

from __future__ import annotations

import gc

#: (young, middle, old) thresholds; see ``gc.set_threshold``.
BULK_THRESHOLDS = (20_000, 50, 100)


def tune_for_bulk_work() -> None:
    """Call once start-up is done (modules imported, settings read), before the bulk work starts."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*BULK_THRESHOLDS)
