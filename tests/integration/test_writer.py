"""The batch writer on both databases: collision rules, replay, and naming the refused row."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from sqlalchemy import Engine, Table, func, select

from control.db.models import IMPORT_CHUNKS as CONTROL_CHUNKS
from control.db.models import RELOCATION_TABLES as CONTROL_TABLES
from control.db.schema import MIGRATIONS as CONTROL_MIGRATIONS
from region.db.models import IMPORT_CHUNKS as REGION_CHUNKS
from region.db.models import RELOCATION_TABLES as REGION_TABLES
from region.db.schema import MIGRATIONS as REGION_MIGRATIONS
from shared.db.engine import make_engine
from shared.db.relocation_writer import BatchWriter
from shared.db.unit_of_work import UnitOfWork
from shared.errors import DatabaseUnavailable
from shared.relocation.batch import Batch, BatchOptions, Row, WriteRefused
from shared.relocation.hooks import suffix_rng, suffixed_candidates
from shared.relocation.pkmap import ImportKind
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ImportScope
from tests.conftest import MigratedEngineFactory, PostgresServer

DATE = "2023-06-22T22:54:28.773Z"


@pytest.fixture
def control(migrated_engine: MigratedEngineFactory) -> BatchWriter:
    return BatchWriter(migrated_engine("control", CONTROL_MIGRATIONS), CONTROL_TABLES, CONTROL_CHUNKS)


@pytest.fixture
def region(migrated_engine: MigratedEngineFactory) -> BatchWriter:
    return BatchWriter(migrated_engine("region", REGION_MIGRATIONS), REGION_TABLES, REGION_CHUNKS)


def user(pk: int, username: str) -> Row:
    return Row(pk, pk, {"username": username, "password": "x", "email": f"{pk}@example.com"})


def options(import_id: str = "i1", *, merge: bool = False) -> BatchOptions:
    return BatchOptions(import_id, ImportScope.GLOBAL, merge_users=merge)


def count(writer: BatchWriter, model: str, tables: Mapping[str, Table]) -> int:
    engine: Engine = writer._engine
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(tables[model])).scalar_one())


def test_a_replayed_batch_returns_its_record_and_writes_nothing(control: BatchWriter) -> None:
    batch = Batch("sentry.user", 1, (user(1, "a"), user(2, "b")), options())
    first = control.write(batch)
    again = control.write(batch)
    assert not first.replayed and again.replayed
    assert again.entries == first.entries
    assert count(control, "sentry.user", CONTROL_TABLES) == 2


def test_a_fresh_batch_is_not_looked_up_and_one_recorded_after_all_is_replayed(
    control: BatchWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run's batches skip the lookup of their record; a batch that is recorded anyway (another
    run with the same import id got there first) is refused by the record's unique key, rolled back,
    and answered from the record: nothing is written twice."""
    lookups: list[int] = []
    original = control.stored

    def counting(connection: object, batch: Batch) -> object:
        lookups.append(batch.first_ordinal)
        return original(connection, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(control, "stored", counting)
    fresh = BatchOptions("i1", ImportScope.GLOBAL, fresh=True)
    first = control.write(Batch("sentry.user", 1, (user(1, "a"), user(2, "b")), fresh))
    assert lookups == [] and not first.replayed
    again = control.write(Batch("sentry.user", 1, (user(1, "a"), user(2, "b")), fresh))
    assert again.replayed and again.entries == first.entries
    assert lookups == [1]  # only once the record's unique key refused the write
    assert count(control, "sentry.user", CONTROL_TABLES) == 2  # the second write was rolled back
    resumed = control.write(Batch("sentry.user", 1, (user(1, "a"), user(2, "b")), options()))
    assert resumed.replayed and lookups == [1, 1]  # a resumed run looks its batches up first


def test_duplicates_within_a_batch_are_renamed_or_merged(control: BatchWriter) -> None:
    renamed = control.write(Batch("sentry.user", 1, (user(1, "Same"), user(2, "same")), options("r")))
    assert [e.kind for e in renamed.entries] == [ImportKind.INSERTED, ImportKind.INSERTED]
    assert renamed.entries[0].value == "Same" and renamed.entries[1].value != "same"
    assert renamed.entries[1].value is not None and renamed.entries[1].value.startswith("same-")
    merged = control.write(Batch("sentry.user", 1, (user(1, "x"), user(2, "X")), options("m", merge=True)))
    assert merged.entries[1].kind is ImportKind.EXISTING
    assert merged.entries[1].new_pk == merged.entries[0].new_pk


def test_a_row_renamed_in_a_batch_holds_its_new_name_for_the_rest_of_it(control: BatchWriter) -> None:
    """The second row is renamed; the third asks, in other case, for exactly the name the second got, so
    it must be renamed too, and the folded column must hold each row's final name."""
    unique = REGISTRY["sentry.user"].uniques[0]
    taken = next(suffixed_candidates("SAME", unique.max_length, suffix_rng("k", "sentry.user", 2))).casefold()
    rows = (user(1, "same"), user(2, "SAME"), user(3, taken.upper()))
    result = control.write(Batch("sentry.user", 1, rows, options("k")))
    names = [e.value for e in result.entries]
    assert names[0] == "same" and names[1] is not None and names[1].casefold() == taken
    assert names[2] is not None and names[2].startswith(taken.upper() + "-")
    assert [f.kind for f in result.findings] == ["renamed", "renamed"]
    table = CONTROL_TABLES["sentry.user"]
    with control._engine.connect() as connection:
        stored = connection.execute(select(table.c.username, table.c.username_ci).order_by(table.c.id)).all()
    assert [tuple(r) for r in stored] == [(n, n.casefold()) for n in names if n is not None]


def test_case_insensitive_keys_fold_beyond_ascii(control: BatchWriter) -> None:
    control.write(Batch("sentry.user", 1, (user(1, "Émile"),), options("a")))
    merged = control.write(Batch("sentry.user", 1, (user(1, "émile"),), options("b", merge=True)))
    assert merged.entries[0].kind is ImportKind.EXISTING
    renamed = control.write(Batch("sentry.user", 1, (user(1, "ÉMILE"),), options("c")))
    assert renamed.entries[0].value is not None and renamed.entries[0].value.startswith("ÉMILE-")
    assert count(control, "sentry.user", CONTROL_TABLES) == 2


def test_the_refused_row_is_named_not_a_reused_one(region: BatchWriter) -> None:
    orgs = region.write(Batch("sentry.organization", 1, (Row(1, 1, {"name": "A", "slug": "a"}),), options()))
    org = orgs.entries[0].new_pk
    member = {"organization": org, "user_id": 7, "role": "member"}
    region.write(Batch("sentry.organizationmember", 1, (Row(1, 1, member),), options("first")))
    rows = (
        Row(1, 10, {**member, "user_id": 8}),
        Row(2, 11, member),  # reuses the existing (organization, user) member
        Row(3, 12, {**member, "organization": org + 1000, "user_id": 9}),  # no such organization
    )
    with pytest.raises(WriteRefused) as caught:
        region.write(Batch("sentry.organizationmember", 1, rows, options("second")))
    assert (caught.value.ordinal, caught.value.pk) == (3, 12)
    assert "the database refused it" in str(caught.value)
    assert count(region, "sentry.organizationmember", REGION_TABLES) == 1


@pytest.mark.postgresql
@pytest.mark.parametrize(("sqlstate", "retried"), [("40P01", True), ("40001", True), ("53100", False)])
def test_a_deadlock_or_serialization_failure_is_retried_and_other_database_errors_are_not(
    postgres: PostgresServer, sqlstate: str, retried: bool
) -> None:
    """Two batches written at once can deadlock; PostgreSQL rolls one back, which then runs again. A
    database error of another kind (here: disk full) stops the import as unavailable."""
    engine = make_engine(postgres.create_database("transient"))
    CONTROL_MIGRATIONS.upgrade(engine)
    calls: list[str] = []

    def fail_once(work: UnitOfWork, model: str, rows: object) -> None:
        calls.append(model)
        if len(calls) == 1:  # raised by the server, inside the batch's transaction
            work.connection.exec_driver_sql(
                f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$"
            )

    writer = BatchWriter(engine, CONTROL_TABLES, CONTROL_CHUNKS, after_insert=fail_once)
    batch = Batch("sentry.user", 1, (user(1, "a"), user(2, "b")), options())
    try:
        if retried:
            assert not writer.write(batch).replayed
            assert calls == ["sentry.user", "sentry.user"]
            assert count(writer, "sentry.user", CONTROL_TABLES) == 2
        else:
            with pytest.raises(DatabaseUnavailable, match="injected"):
                writer.write(batch)
            assert calls == ["sentry.user"]
            assert count(writer, "sentry.user", CONTROL_TABLES) == 0
    finally:
        engine.dispose()


def test_kept_pks_are_inserted_together_and_a_taken_one_gets_a_new_pk(region: BatchWriter) -> None:
    org = (
        region.write(Batch("sentry.organization", 1, (Row(1, 1, {"name": "A", "slug": "a"}),), options()))
        .entries[0]
        .new_pk
    )

    def project(ordinal: int, pk: int, *, keep: bool = True) -> Row:
        values = {"organization": org, "slug": f"p{pk}", "name": f"P{pk}", "date_added": DATE}
        return Row(ordinal, pk, values, keep_pk=keep)

    region.write(Batch("sentry.project", 1, (project(1, 50),), options("first")))
    result = region.write(
        Batch("sentry.project", 1, (project(1, 50), project(2, 60), project(3, 61)), options("second"))
    )
    new_pks = {e.old_pk: e.new_pk for e in result.entries}
    assert new_pks[60] == 60 and new_pks[61] == 61 and new_pks[50] not in (50, 60, 61)
    assert [(f.kind, f.old_pk) for f in result.findings if f.kind == "new_pk"] == [("new_pk", 50)]
    # The sequence moved past the kept pks: a later project without one takes a higher id.
    later = region.write(Batch("sentry.project", 1, (project(1, 70, keep=False),), options("third")))
    assert later.entries[0].new_pk > 61
    assert count(region, "sentry.project", REGION_TABLES) == 5  # 1 + 3 + 1


def test_a_foreign_key_that_is_not_a_pk_is_refused_not_stored(region: BatchWriter) -> None:
    """A batch names its foreign keys by the owning silo's pks; ``true`` is not one (the binary COPY would
    otherwise store it as 1)."""
    orgs = region.write(Batch("sentry.organization", 1, (Row(1, 1, {"name": "A", "slug": "a"}),), options()))
    member = {"organization": True, "user_id": 7, "role": "member"}
    with pytest.raises(WriteRefused, match="field 'organization' must hold a pk") as caught:
        region.write(Batch("sentry.organizationmember", 1, (Row(1, 5, member),), options("second")))
    assert (caught.value.ordinal, caught.value.pk) == (1, 5)
    assert count(region, "sentry.organizationmember", REGION_TABLES) == 0
    assert orgs.entries[0].new_pk >= 1
