"""What the region's domain code needs from the outside, as Protocols."""

from __future__ import annotations

from typing import Protocol

from shared.ping import Hop


class ControlPort(Protocol):
    """The control silo, as the region calls it."""

    def ping(self, path: list[Hop], bounces: int, *, origin_region: str) -> list[Hop]: ...
