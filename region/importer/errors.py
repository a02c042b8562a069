"""Why an import stops. Every error names where: file position, model, instance."""

from __future__ import annotations

from region.errors import RegionError


class ImportFailed(RegionError):
    """Root of the import's own failures."""

    exit_code = 2


class NotAnExport(ImportFailed):
    """The source cannot be read as an export at all."""

    exit_code = 3

    @classmethod
    def not_utf8(cls, source: str, exc: UnicodeDecodeError) -> NotAnExport:
        return cls(f"{source}: not UTF-8 text ({exc.reason}); an export is a JSON list of records")


class OptionsMismatch(ImportFailed):
    """A resumed import was started with other options than its first run."""

    reason = "options_mismatch"


class SourceChanged(ImportFailed):
    """A resumed import was given another file than its first run."""

    reason = "source_changed"


class ReplayMismatch(ImportFailed):
    """A batch an earlier run wrote holds other instances than the same batch of this export (records
    were added or removed since): replaying it would map the wrong instances."""

    reason = "replay_mismatch"


class BatchFailed(ImportFailed):
    """A batch could not be written; earlier batches stay written and a rerun with the same import id
    resumes after them."""

    exit_code = 4

    def __init__(self, where: str, model: str, pk: int, message: str) -> None:
        self.model, self.pk = model, pk
        super().__init__(f"{where}: {message}")


class WriteFailed(ImportFailed):
    """A batch could not be written for a reason other than its data (e.g. the database went away)."""


class ControlUnreachable(ImportFailed):
    """Control did not answer in time; control may or may not have written the batch, and a rerun
    with the same import id replays or writes it."""

    exit_code = 5
