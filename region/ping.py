"""The region's half of the Ping round trip."""

from __future__ import annotations

from region.errors import ControlNotConfigured
from region.ports import ControlPort
from shared.ping import Hop


def ping(path: list[Hop], bounces: int, *, region_name: str, control: ControlPort | None) -> list[Hop]:
    """Add this region to ``path``; with bounces left, hand the trip to control."""
    path = [*path, Hop("region", region_name)]
    if bounces == 0:
        return path
    if control is None:
        raise ControlNotConfigured(
            f"region {region_name!r} has no control address (SILOPORT_CONTROL_ADDRESS)"
        )
    return control.ping(path, bounces - 1, origin_region=region_name)
