"""Writing one batch of one model in the silo that owns it: collision rules, bulk insert, and the
chunk record of the batch, all in one transaction, so a batch is either written with its record or
not at all, and a replayed batch returns its recorded result without writing."""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from shared.db.among import among_parts
from shared.db.copy import insert_rows_with_new_ids
from shared.db.unit_of_work import UnitOfWork
from shared.errors import DatabaseUnavailable, SharedError
from shared.relocation.batch import Batch, BatchResult, Entry, Row, WriteRefused
from shared.relocation.findings import Finding
from shared.relocation.hooks import REGENERATORS, needs_suffix, suffix_rng, suffixed_candidates
from shared.relocation.pkmap import ImportKind
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ModelSpec, OnClash, Unique
from shared.relocation.values import BadValue, parser_of

_LOGGER = logging.getLogger(__name__)
ATTEMPTS = 3

Key = tuple[Any, ...]
AfterInsert = Callable[[UnitOfWork, str, Sequence[tuple[int, Mapping[str, Any]]]], None]


class WrongSilo(SharedError):
    reason = "wrong_silo"

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(f"{model} is not a model of this silo")


@dataclass
class _Outcome:
    kind: ImportKind
    #: Existing row id, or None until the row is inserted.
    target: int | None = None
    #: Index of an earlier row of this batch that this one maps to (a duplicate within the batch).
    same_as: int | None = None


def _key(spec: ModelSpec, unique: Unique, columns: Mapping[str, Any]) -> Key | None:
    """The row's value of a unique key (None when a part is null: nulls never clash)."""
    values = []
    for name in unique.fields:
        value = columns.get(spec.column(name))
        if value is None:
            return None
        values.append(value.casefold() if unique.casefold and isinstance(value, str) else value)
    return tuple(values)


def _fold(spec: ModelSpec, columns: dict[str, Any]) -> None:
    """Set the ``<name>_ci`` columns from the current values (after any renaming)."""
    for name in spec.folded:
        value = columns.get(name)
        columns[f"{name}_ci"] = value.casefold() if isinstance(value, str) else None


def _first_line(error: DBAPIError) -> str:
    return str(error.orig if error.orig is not None else error).strip().splitlines()[0]


def _is_transient(error: DBAPIError) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back and may simply run again."""
    return getattr(error.orig, "sqlstate", None) in ("40P01", "40001")


def _is_unique_violation(error: IntegrityError) -> bool:
    """A lost race on a unique key (worth a retry), not a broken reference."""
    if getattr(error.orig, "sqlstate", None) == "23505":
        return True
    return "UNIQUE constraint failed" in str(error.orig)


@dataclass(frozen=True)
class _ColumnPlan:
    """How a model's export values become its columns, looked up once per model."""

    #: (field name, column, default, parser) of each plain field.
    fields: tuple[tuple[str, str, object, Callable[[object], object]], ...]
    #: (field name, column) of each foreign key.
    foreign_keys: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, spec: ModelSpec) -> _ColumnPlan:
        return cls(
            tuple((f.name, f.column, f.default, parser_of(f)) for f in spec.fields),
            tuple((fk.name, fk.column) for fk in spec.foreign_keys),
        )


class BatchWriter:
    """Writes batches of the models whose tables it is given."""

    def __init__(
        self,
        engine: Engine,
        tables: Mapping[str, Table],
        chunks: Table,
        *,
        after_insert: AfterInsert | None = None,
        unit_of_work: Callable[[], UnitOfWork] | None = None,
        settle: Callable[[float | None], object] | None = None,
    ) -> None:
        self._engine = engine
        self._tables = tables
        self._chunks = chunks
        #: Called in the batch's transaction with the rows it inserted (the region writes outbox messages).
        self._after_insert = after_insert
        #: Each batch is one unit of work: its outbox messages are delivered right after its commit.
        self._unit_of_work = unit_of_work or (lambda: UnitOfWork(engine))
        self._settle = settle
        self._plans: dict[str, _ColumnPlan] = {}

    @property
    def overlaps(self) -> bool:
        """Two batches may be written at once on PostgreSQL (each its own transaction and connection);
        SQLite has one writer at a time, so there it would only wait."""
        return self._engine.dialect.name == "postgresql"

    def settle(self, timeout_s: float | None = None) -> None:
        """Wait (at most ``timeout_s``) for the deliveries the units of work handed to a background
        delivery, if any."""
        if self._settle is not None:
            self._settle(timeout_s)

    def write(self, batch: Batch) -> BatchResult:
        table = self._tables.get(batch.model)
        if table is None:
            raise WrongSilo(batch.model)
        try:
            return self._write_with_retries(table, batch)
        except OperationalError as exc:
            raise DatabaseUnavailable(
                f"database error while writing {batch.model}: {_first_line(exc)}"
            ) from exc

    def _write_with_retries(self, table: Table, batch: Batch) -> BatchResult:
        last: DBAPIError | None = None
        for attempt in range(ATTEMPTS):
            try:
                with self._unit_of_work() as work:
                    bookkeeping = not batch.options.no_bookkeeping
                    look_up = bookkeeping and not (batch.options.fresh and attempt == 0)
                    stored = self.stored(work.connection, batch) if look_up else None
                    if stored is not None:
                        return stored
                    result = self._write(work, table, batch)
                    if bookkeeping:
                        self._record(work.connection, batch, result)
                    work.commit()
                    return result
            except IntegrityError as exc:
                last = exc
                if not _is_unique_violation(exc):
                    break
                # Another writer took a unique value (or recorded this very batch) since we looked.
                with self._engine.connect() as connection:
                    stored = self.stored(connection, batch)
                if stored is not None:
                    return stored
                _LOGGER.info(
                    "batch %s#%d hit a unique key, attempt %d", batch.model, batch.first_ordinal, attempt + 1
                )
            except OperationalError as exc:
                # Worth another attempt: a deadlock or serialization failure with a batch written at
                # the same time, or a pooled connection the server dropped (connections used within the
                # last second are not pinged). Anything else means the database is unavailable.
                if attempt + 1 == ATTEMPTS or not (exc.connection_invalidated or _is_transient(exc)):
                    raise
                _LOGGER.info(
                    "batch %s#%d: %s, attempt %d",
                    batch.model,
                    batch.first_ordinal,
                    _first_line(exc),
                    attempt + 1,
                )
            except DBAPIError as exc:
                last = exc
                break
        assert last is not None
        raise self._locate(table, batch, last)

    # ---- replay -----------------------------------------------------------------------------------

    def stored(self, connection: Connection, batch: Batch) -> BatchResult | None:
        c = self._chunks.c
        row = connection.execute(
            select(c.entries, c.findings).where(
                c.import_id == batch.options.import_id,
                c.model == batch.model,
                c.first_ordinal == batch.first_ordinal,
            )
        ).first()
        if row is None:
            return None
        entries = tuple(
            Entry(old, new, ImportKind(kind), value) for old, new, kind, value in json.loads(row.entries)
        )
        findings = tuple(Finding.from_json(f) for f in json.loads(row.findings))
        return BatchResult(entries, findings, replayed=True)

    def _record(self, connection: Connection, batch: Batch, result: BatchResult) -> None:
        connection.execute(
            insert(self._chunks).values(
                import_id=batch.options.import_id,
                model=batch.model,
                first_ordinal=batch.first_ordinal,
                last_ordinal=batch.rows[-1].ordinal if batch.rows else batch.first_ordinal,
                entries=json.dumps([[e.old_pk, e.new_pk, e.kind.value, e.value] for e in result.entries]),
                findings=json.dumps([f.to_json() for f in result.findings]),
            )
        )

    # ---- the write --------------------------------------------------------------------------------

    def _columns(self, spec: ModelSpec, row: Row) -> dict[str, Any]:
        plan = self._plans.get(spec.name)
        if plan is None:
            plan = self._plans[spec.name] = _ColumnPlan.of(spec)
        columns: dict[str, Any] = {}
        values = row.values
        for name, column, default, parse in plan.fields:
            try:
                columns[column] = parse(values.get(name, default))
            except BadValue as exc:
                raise WriteRefused(spec.name, row.ordinal, row.old_pk, f"field {name!r}: {exc}") from None
        for name, column in plan.foreign_keys:
            value = columns[column] = values.get(name)
            if value is not None and type(value) is not int:  # a pk, remapped by the importer
                raise WriteRefused(spec.name, row.ordinal, row.old_pk, f"field {name!r} must hold a pk")
        _fold(spec, columns)
        return columns

    def _write(self, work: UnitOfWork, table: Table, batch: Batch) -> BatchResult:
        spec = REGISTRY[batch.model]
        columns = [self._columns(spec, row) for row in batch.rows]
        write = _BatchWrite(work.connection, table, spec, batch, columns, one_by_one=batch.options.row_by_row)
        result = write.run()
        if self._after_insert is not None:
            self._after_insert(work, spec.name, write.inserted())
        return result

    def _locate(self, table: Table, batch: Batch, error: DBAPIError) -> WriteRefused:
        """Write the batch again, the same way, one row at a time, to name the row the database refuses."""
        spec = REGISTRY[batch.model]
        with self._engine.connect() as connection:
            transaction = connection.begin()
            try:
                columns = [self._columns(spec, row) for row in batch.rows]
                _BatchWrite(connection, table, spec, batch, columns, one_by_one=True).run()
            except WriteRefused as refused:
                return refused
            except DBAPIError:
                pass
            finally:
                transaction.rollback()
        first = batch.rows[0]
        return WriteRefused(
            spec.name,
            first.ordinal,
            first.old_pk,
            f"the database refused batch #{batch.first_ordinal}: {_first_line(error)}",
        )


class _BatchWrite:
    """One batch inside one transaction: decide each row's outcome, then insert and update in bulk."""

    def __init__(
        self,
        connection: Connection,
        table: Table,
        spec: ModelSpec,
        batch: Batch,
        columns: list[dict[str, Any]],
        *,
        one_by_one: bool = False,
    ) -> None:
        self.connection, self.table, self.spec, self.batch = connection, table, spec, batch
        #: Insert each row in its own savepoint and name the first one refused (to explain a failure).
        self.one_by_one = one_by_one
        self.rows = batch.rows
        self.columns = columns
        self.outcomes: list[_Outcome] = []
        self.findings: list[Finding] = []
        #: Per unique key: each row's value of it, kept current when a row is renamed.
        self.keys = [[_key(spec, unique, c) for c in columns] for unique in spec.uniques]
        self.existing = [self._existing(position) for position in range(len(spec.uniques))]
        #: Per unique key: the keys that rows of this batch will insert, to the row's index.
        self.in_batch: list[dict[Key, int]] = [{} for _ in spec.uniques]

    def run(self) -> BatchResult:
        for index in range(len(self.rows)):
            outcome = self._decide(index)
            self.outcomes.append(outcome)
            if outcome.kind is ImportKind.INSERTED:
                for position, keys in enumerate(self.keys):
                    key = keys[index]
                    if key is not None:
                        self.in_batch[position][key] = index
        self._insert()
        return BatchResult(self._entries(), tuple(self.findings))

    def inserted(self) -> list[tuple[int, dict[str, Any]]]:
        """(new id, columns) of every row this batch inserted."""
        return [
            (outcome.target, self.columns[i])
            for i, outcome in enumerate(self.outcomes)
            if outcome.kind is ImportKind.INSERTED and outcome.target is not None
        ]

    def _existing(self, position: int) -> dict[Key, int]:
        spec, table, unique = self.spec, self.table, self.spec.uniques[position]
        keys = {key for key in self.keys[position] if key is not None}
        if not keys:
            return {}
        key_columns = [table.c[spec.key_column(unique, name)] for name in unique.fields]
        found: dict[Key, int] = {}
        dialect = self.connection.dialect.name
        for condition in among_parts(dialect, key_columns[0], sorted({k[0] for k in keys})):
            statement = select(table.c.id, *key_columns).where(condition).order_by(table.c.id)
            for row in self.connection.execute(statement):
                key = tuple(row[1:])
                if key in keys:
                    found.setdefault(key, row.id)
        return found

    def _clashes(self, position: int, columns: Mapping[str, Any]) -> bool:
        """Whether the row's value of unique key ``position`` is taken (in this batch or the table)."""
        unique = self.spec.uniques[position]
        key = _key(self.spec, unique, columns)
        if key is None:
            return False
        if key in self.in_batch[position]:
            return True
        conditions = [
            self.table.c[self.spec.key_column(unique, name)] == value
            for name, value in zip(unique.fields, key, strict=True)
        ]
        statement = select(self.table.c.id).where(*conditions).limit(1)
        return self.connection.execute(statement).first() is not None

    def _decide(self, index: int) -> _Outcome:
        spec, row, columns = self.spec, self.rows[index], self.columns[index]
        options = self.batch.options

        def note(kind: str, reason: str) -> None:
            self.findings.append(Finding(kind, spec.name, row.ordinal, row.old_pk, None, reason))

        for position, unique in enumerate(spec.uniques):
            key = self.keys[position][index]
            if key is None:
                continue
            db_hit = self.existing[position].get(key)
            batch_hit = self.in_batch[position].get(key)
            target = unique.fields[-1]
            forced = unique.on_clash in (OnClash.SUFFIX, OnClash.MERGE_OR_SUFFIX) and needs_suffix(
                spec.name, str(columns[spec.column(target)])
            )
            if db_hit is None and batch_hit is None and not forced:
                continue
            clash = _Outcome(ImportKind.EXISTING, db_hit, None if db_hit is not None else batch_hit)
            described = ", ".join(f"{n}={columns[spec.column(n)]!r}" for n in unique.fields)
            if unique.on_clash is OnClash.REUSE:
                note("reused", f"an instance with {described} exists; it is used instead")
                return clash
            if unique.on_clash is OnClash.CONFIG:
                if options.overwrite_configs:
                    note("overwritten", f"the existing instance with {described} takes the imported values")
                    return _Outcome(ImportKind.OVERWRITE, db_hit, clash.same_as)
                note(
                    "kept_existing",
                    f"an instance with {described} exists and is kept (no --overwrite-configs)",
                )
                return clash
            if unique.on_clash is OnClash.MERGE_OR_SUFFIX and options.merge_users and not forced:
                note("merged", f"merged into the existing user with {described}")
                return clash
            if unique.on_clash is OnClash.REGENERATE:
                self._regenerate(position, index)
                self._changed(index)
                note("regenerated", f"{target} clashed with an existing instance; a new one was generated")
                continue
            old_value = str(columns[spec.column(target)])
            self._suffix(position, index)
            self._changed(index)
            note("renamed", f"{target} {old_value!r} is taken; imported as {columns[spec.column(target)]!r}")
        return _Outcome(ImportKind.INSERTED)

    def _changed(self, index: int) -> None:
        """Row ``index`` was renamed or given new values: fold them again and take its new keys."""
        columns = self.columns[index]
        _fold(self.spec, columns)
        for position, unique in enumerate(self.spec.uniques):
            self.keys[position][index] = _key(self.spec, unique, columns)

    def _regenerate(self, position: int, index: int) -> None:
        """Fresh secret values until the unique key is free."""
        spec, row, columns = self.spec, self.rows[index], self.columns[index]
        target = spec.uniques[position].fields[-1]
        regenerate = REGENERATORS[(spec.name, target)]
        for _ in range(20):
            regenerate(columns, row.hints)
            if not self._clashes(position, columns):
                return
        raise WriteRefused(spec.name, row.ordinal, row.old_pk, f"no free value for {target} after 20 tries")

    def _suffix(self, position: int, index: int) -> None:
        """The first free suffixed value (the database's unique index decides if all are taken)."""
        spec, row, columns = self.spec, self.rows[index], self.columns[index]
        unique = spec.uniques[position]
        column = spec.column(unique.fields[-1])
        rng = suffix_rng(self.batch.options.import_id, spec.name, row.old_pk)
        for candidate in suffixed_candidates(str(columns[column]), unique.max_length, rng):
            columns[column] = candidate
            if not self._clashes(position, columns):
                return

    def _insert(self) -> None:
        connection, table = self.connection, self.table
        new_rows = [i for i, o in enumerate(self.outcomes) if o.kind is ImportKind.INSERTED]
        keep = [i for i in new_rows if self.rows[i].keep_pk]
        if keep:
            self._insert_keeping_pks(keep)
        fresh = [i for i in new_rows if self.outcomes[i].target is None]
        if fresh and self.one_by_one:
            for i in fresh:
                row = self.rows[i]
                try:
                    # Locating a refused row needs a savepoint per row; the per-row baseline does not.
                    with nullcontext() if self.batch.options.row_by_row else connection.begin_nested():
                        statement = insert(table).returning(table.c.id)
                        new_id = connection.execute(statement, self.columns[i]).scalar_one()
                except DBAPIError as exc:
                    raise WriteRefused(
                        self.spec.name,
                        row.ordinal,
                        row.old_pk,
                        f"the database refused it: {_first_line(exc)}",
                    ) from None
                self.outcomes[i].target = new_id
        elif fresh:
            self._insert_fresh(fresh)
        for i, outcome in enumerate(self.outcomes):
            if outcome.same_as is not None:
                outcome.target = self.outcomes[outcome.same_as].target
            if outcome.kind is ImportKind.OVERWRITE and outcome.target is not None:
                connection.execute(
                    update(table).where(table.c.id == outcome.target).values(**self.columns[i])
                )

    def _insert_fresh(self, fresh: list[int]) -> None:
        """The bulk path: on PostgreSQL the new ids from the table's sequence with one statement, then
        the rows with COPY (no per-row statement and no SQL text to parse); elsewhere one multi-row
        ``INSERT ... RETURNING``."""
        # Every row has the model's columns (``_columns`` makes them; renaming and regenerating only
        # change values), so one row names them and each row's values are taken in one call.
        names = sorted(self.columns[fresh[0]])
        take = operator.itemgetter(*names)
        rows = [take(self.columns[i]) if len(names) > 1 else (take(self.columns[i]),) for i in fresh]
        ids = insert_rows_with_new_ids(self.connection, self.table, names, rows)
        for i, new_id in zip(fresh, ids, strict=True):
            self.outcomes[i].target = new_id

    def _insert_keeping_pks(self, indexes: list[int]) -> None:
        connection, table = self.connection, self.table
        taken = {
            r.id
            for condition in among_parts(
                connection.dialect.name, table.c.id, (self.rows[i].old_pk for i in indexes)
            )
            for r in connection.execute(select(table.c.id).where(condition))
        }
        free: list[int] = []
        for i in indexes:
            row = self.rows[i]
            if row.old_pk in taken:
                reason = f"pk {row.old_pk} is taken; the instance gets a new pk"
                self.findings.append(Finding("new_pk", self.spec.name, row.ordinal, row.old_pk, None, reason))
            else:
                free.append(i)
        kept = [{"id": self.rows[i].old_pk, **self.columns[i]} for i in free]
        if self.one_by_one:  # the per-row baseline, and the search for a refused row, insert singly
            for values in kept:
                connection.execute(insert(table).values(**values))
        elif kept:  # one statement for the batch
            connection.execute(insert(table), kept)
        for i in free:
            self.outcomes[i].target = self.rows[i].old_pk
        if connection.dialect.name == "postgresql":
            # Explicit ids do not move the sequence: move it past them.
            connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608 - our own table
                    f"GREATEST((SELECT MAX(id) FROM {table.name}), "
                    f"nextval(pg_get_serial_sequence('{table.name}', 'id'))))"
                )
            )

    def _entries(self) -> tuple[Entry, ...]:
        spec = self.spec
        named = next(
            (u.fields[-1] for u in spec.uniques if u.on_clash in (OnClash.SUFFIX, OnClash.MERGE_OR_SUFFIX)),
            None,
        )
        column = spec.column(named) if named else None
        entries = []
        for row, outcome, columns in zip(self.rows, self.outcomes, self.columns, strict=True):
            assert outcome.target is not None
            value = str(columns[column]) if column and outcome.kind is ImportKind.INSERTED else None
            entries.append(Entry(row.old_pk, outcome.target, outcome.kind, value))
        if not self.findings:
            return tuple(entries)
        new_pks = {e.old_pk: e.new_pk for e in entries}
        self.findings[:] = [
            Finding(
                f.kind,
                f.model,
                f.ordinal,
                f.old_pk,
                None if f.old_pk is None else new_pks.get(f.old_pk),
                f.reason,
            )
            for f in self.findings
        ]
        return tuple(entries)
