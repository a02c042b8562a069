"""The import engine's pipeline: a batch read and prepared on its way to the silo that owns it, and the
rules for which batches may be in flight together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from shared.relocation.batch import Batch, Row
from shared.relocation.findings import Finding
from shared.relocation.reader import Record
from shared.relocation.spec import ModelSpec, Unique


@dataclass
class PreparedBatch:
    """A batch read and prepared, ready to send: its rows, and what to report once it is written."""

    spec: ModelSpec
    #: Instances of the export in the batch (written or not).
    records: int
    batch: Batch | None = None
    where: dict[int, Record] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    skipped: int = 0
    #: Its rows' unique key values (see ``unique_values``), once asked for.
    unique_values: tuple[set[object], ...] | None = None

    @cached_property
    def keeps_pks(self) -> bool:
        """Whether a row keeps its export pk (asked once the batch is prepared, then remembered)."""
        return self.batch is not None and any(row.keep_pk for row in self.batch.rows)


def unique_values(prepared: PreparedBatch) -> tuple[set[object], ...]:
    """The values of each unique key of the spec (in its order) over the batch's rows, casefolded where
    the key is (export form, foreign keys already remapped): a key of one field by its value, a key of
    several by the tuple of their values. Nulls never clash, so a value with one is left out."""
    if prepared.unique_values is not None:
        return prepared.unique_values
    rows = prepared.batch.rows if prepared.batch is not None else ()
    prepared.unique_values = tuple(_key_values(unique, rows) for unique in prepared.spec.uniques)
    return prepared.unique_values


def _key_values(unique: Unique, rows: Sequence[Row]) -> set[object]:
    fields = unique.fields
    found: set[object]
    if len(fields) == 1:
        name = fields[0]
        found = {row.values.get(name) for row in rows}
        found.discard(None)
        if unique.casefold:
            found = {v.casefold() if isinstance(v, str) else v for v in found}
        return found
    tuples = {tuple([row.values.get(name) for name in fields]) for row in rows}
    if unique.casefold:
        tuples = {tuple([v.casefold() if isinstance(v, str) else v for v in t]) for t in tuples}
    return {t for t in tuples if None not in t}


def may_overlap(writing: PreparedBatch, following: PreparedBatch, *, concurrent: bool = True) -> bool:
    """Whether ``following`` may be sent while ``writing`` is still being written, where the writer of
    ``following``'s silo takes two batches at once (``concurrent``) or the two go to different silos:
    batches of two models when ``following``'s model does not refer to ``writing``'s (two tables, no
    unique key or sequence in common), or two batches of one model that share no unique key value."""
    if writing.spec.name != following.spec.name:
        if writing.spec.name in following.spec.targets:
            return False  # its foreign keys are remapped with the pks the writing batch brings
        return concurrent or writing.spec.silo is not following.spec.silo
    if not concurrent:
        return False
    if writing.keeps_pks or following.keeps_pks:
        return False  # kept pks and the sequence's new ids could meet in both batches
    if writing.batch is None or following.batch is None:
        return True
    return not any(
        mine & theirs for mine, theirs in zip(unique_values(writing), unique_values(following), strict=True)
    )
