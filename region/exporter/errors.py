"""Why an export stops. Nothing is left at the destination when it does."""

from __future__ import annotations

from region.errors import RegionError


class ExportFailed(RegionError):
    """Root of the export's own failures."""

    exit_code = 2


class SourceRefused(ExportFailed):
    """A silo refused to give a page of a model (the message names model and position)."""

    exit_code = 4


class ControlUnreachable(ExportFailed):
    """Control did not answer in time."""

    exit_code = 5
