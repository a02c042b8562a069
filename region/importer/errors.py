"""Why an import stops. Every error names where: file position, model, instance."""

from __future__ import annotations

from region.errors import RegionError


class ImportFailed(RegionError):
    """Root of the import's own failures."""

    exit_code = 2


class OptionsMismatch(ImportFailed):
    """A resumed import was started with other options than its first run."""

    reason = "options_mismatch"


class BatchFailed(ImportFailed):
    """A batch could not be written; earlier batches stay written and a rerun with the same import id
    resumes after them."""

    exit_code = 4

    def __init__(self, where: str, model: str, pk: int, message: str) -> None:
        self.model, self.pk = model, pk
        super().__init__(f"{where}: {message}")


class ControlUnreachable(ImportFailed):
    """Control did not answer; nothing of the failed batch was written there."""

    exit_code = 5
