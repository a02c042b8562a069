"""Errors of the control silo, under one root."""

from __future__ import annotations

from shared.errors import SharedError


class ControlError(SharedError):
    """Root of the control silo's errors."""


class UnknownRegion(ControlError):
    """Control has no address for a region it must call."""

    reason = "unknown_region"

    def __init__(self, name: str, known: list[str]) -> None:
        self.fields = {"region": name}
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"region {name!r} is not configured in SILOPORT_REGION_ADDRESSES (known regions: {listed})"
        )
