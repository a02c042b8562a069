"""Garbage collection tuned for the processes that move bulk data (the importer and both silo servers).

An import allocates a few container objects per instance (the record's dict, its row, its result) that
live for as long as their batch is in flight, so CPython's default thresholds (a young collection every
700 allocations) run a collection every few instances and, as survivors pile up, full collections that
walk every object of the process, including the hundreds of thousands that importing SQLAlchemy,
gRPC and protobuf created. Measured on the benchmark's 300,000-instance export: about a fifth of the
import's wall time and of the importer's and control's CPU (1,000,000 instances: 46-51 s tuned, 55-65 s
with the defaults, in alternating runs).

``tune_for_bulk_work`` (the importer) moves the objects alive at start-up out of the collector's sight
(``gc.freeze``: they live as long as the process anyway) and collects the young generation once
allocations of container objects exceed deallocations by 20,000 instead of 700: the same peak memory in
the benchmark, and cyclic garbage is still collected. ``tune_for_server`` (both silo servers, which run
for months) raises only the young threshold and freezes nothing; measured at 300,000 instances it is as
fast as the importer's settings in control."""

from __future__ import annotations

import gc

#: (young, middle, old) thresholds of the importer, a process that ends with its import.
BULK_THRESHOLDS = (20_000, 50, 100)
#: The silo servers' thresholds: young collections as rare as the importer's, older ones at CPython's
#: own ratios, so cyclic garbage of a server that runs for months still reaches a full collection.
SERVER_THRESHOLDS = (20_000, 10, 10)


def tune_for_bulk_work() -> None:
    """The importer's settings. Call once start-up is done (modules imported, database prepared); a
    second call also freezes what was built since."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*BULK_THRESHOLDS)


def tune_for_server() -> None:
    """A silo server's settings: only the thresholds. Nothing is frozen, since what a server holds at
    start (pooled connections, say) may become garbage months later."""
    gc.set_threshold(*SERVER_THRESHOLDS)
