"""Errors of the region silo, under one root."""

from __future__ import annotations

from shared.errors import SharedError


class RegionError(SharedError):
    """Root of the region silo's errors."""


class ControlNotConfigured(RegionError):
    """The region was started without a control address."""

    reason = "control_not_configured"
