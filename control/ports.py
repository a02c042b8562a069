"""What the control silo's domain code needs from the outside, as Protocols."""

from __future__ import annotations

from typing import Protocol

from shared.ping import Hop


class RegionPort(Protocol):
    """The region silos, as control calls them back (routed by region name)."""

    def ping(self, region_name: str, path: list[Hop], bounces: int) -> list[Hop]: ...
