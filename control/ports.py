"""What the control silo's domain code needs from the outside, as Protocols."""

from __future__ import annotations

from typing import Protocol

from shared.ping import Hop
from shared.relocation.batch import Batch, BatchResult


class RegionPort(Protocol):
    """The region silos, as control calls them back (routed by region name)."""

    def ping(self, region_name: str, path: list[Hop], bounces: int) -> list[Hop]: ...


class BatchWriterPort(Protocol):
    """Writes one import batch of a control model (and records it, so a replay returns the record)."""

    def write(self, batch: Batch) -> BatchResult: ...
