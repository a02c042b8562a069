"""What the import engine asks the silo that owns a model to write, and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.errors import SharedError
from shared.relocation.findings import Finding
from shared.relocation.pkmap import ImportKind
from shared.relocation.spec import ImportScope


@dataclass(slots=True)
class Row:
    """One instance ready to write: foreign keys already remapped to the owning silos' pks. (Not frozen:
    two are made per instance, by the engine and by the silo that writes it, and a frozen dataclass
    costs four times as much to make; nothing changes a row once made.)"""

    #: 1-based position among the export's instances of this model.
    ordinal: int
    old_pk: int
    #: Field name -> value in export form (JSON values, dates as strings).
    values: dict[str, Any]
    #: Keep this primary key if it is free (projects in global imports keep their ids).
    keep_pk: bool = False
    #: Context for collision handling that is not a field (e.g. ``org_slug`` for minted tokens).
    hints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchOptions:
    import_id: str
    scope: ImportScope
    merge_users: bool = False
    overwrite_configs: bool = False
    #: Benchmark baseline: one INSERT statement per instance, as an ORM saving one row at a time would.
    row_by_row: bool = False
    #: Benchmark only: no batch record (no replay, so the import cannot be resumed).
    no_bookkeeping: bool = False
    #: The import's first run: its batches are not looked up among the recorded ones before they are
    #: written (a query per batch); should one be recorded after all, its record's unique key refuses the
    #: write, which is rolled back, and the recorded result is returned.
    fresh: bool = False


@dataclass(frozen=True)
class Batch:
    """Consecutive instances of one model; ``first_ordinal`` with the import id and model is the key
    under which the write is recorded (and replayed)."""

    model: str
    first_ordinal: int
    rows: tuple[Row, ...]
    options: BatchOptions


@dataclass(slots=True)
class Entry:
    """What became of one instance (not frozen, for the reason given at :class:`Row`)."""

    old_pk: int
    new_pk: int
    kind: ImportKind
    #: The row's unique value after collision handling (username, slug), when the model has one.
    value: str | None = None


@dataclass(frozen=True)
class BatchResult:
    entries: tuple[Entry, ...]
    findings: tuple[Finding, ...] = ()
    #: True when an earlier run of the same import had written this batch already.
    replayed: bool = False


class WriteRefused(SharedError):
    """The database refused a row; names the model, the instance and the database's reason."""

    reason = "write_refused"
    exit_code = 4

    def __init__(self, model: str, ordinal: int, pk: int, message: str) -> None:
        self.model, self.ordinal, self.pk = model, ordinal, pk
        self.fields = {"ordinal": str(ordinal)}
        super().__init__(f"{model} #{ordinal} (pk {pk}): {message}")
