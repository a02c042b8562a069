"""What the import engine needs from the outside, as Protocols."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from region.importer.options import ImportOptions
from shared.relocation.batch import Batch, BatchResult


class Writer(Protocol):
    """Writes one batch in the silo that owns its model, with its chunk record (replays return it)."""

    @property
    def overlaps(self) -> bool:
        """Whether two batches of one model may be written at the same time (each in its own
        transaction)."""
        ...

    def write(self, batch: Batch) -> BatchResult: ...

    def settle(self, timeout_s: float | None = None) -> None:
        """Wait (at most ``timeout_s``) until what the written batches set going after their commit
        (outbox deliveries to the other silo) is done."""
        ...


class Ledger(Protocol):
    """The region's record of imports."""

    def begin(self, options: ImportOptions, digest: str) -> tuple[bool, ImportOptions]:
        """Start or resume an import: whether it resumes, and the options it runs with (a resumed one
        with the batching of its first run, ``ImportOptions.resuming``). Refuses other options than
        the first run's."""
        ...

    def finish(self, import_id: str, summary: Mapping[str, object]) -> None: ...

    def fail(self, import_id: str) -> None: ...


class SlugReserver(Protocol):
    """Control's global slug reservation, as the import calls it (replayable by import id)."""

    def reserve(self, import_id: str, wanted: Mapping[int, str]) -> dict[int, str]:
        """Organization id (here) -> the slug it finally holds."""
        ...

    def deliver_rest(self, organization_ids: Sequence[int]) -> None:
        """Deliver what is left in these organizations' outbox shards (what a delivery that failed, or
        found a shard busy, left), waiting for shards another drainer holds."""
        ...


class Progress(Protocol):
    """Called from the threads of the import's lanes at once."""

    def start(self, totals: Mapping[str, int]) -> None: ...

    def begin(self, model: str) -> None:
        """A batch of ``model`` is being taken (its first starts the model's clock)."""
        ...

    def advance(self, model: str, count: int) -> None: ...

    def finish(self) -> None: ...
