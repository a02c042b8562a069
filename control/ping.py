"""Control's half of the Ping round trip."""

from __future__ import annotations

from control.ports import RegionPort
from shared.ping import Hop


def ping(path: list[Hop], bounces: int, *, origin_region: str, regions: RegionPort) -> list[Hop]:
    """Add control to ``path``; with bounces left, call the origin region back."""
    path = [*path, Hop("control")]
    if bounces == 0:
        return path
    return regions.ping(origin_region, path, bounces - 1)
