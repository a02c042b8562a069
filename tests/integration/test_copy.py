"""COPY inside a SQLAlchemy transaction (PostgreSQL): rows land in order, roll back with the
transaction, and a lost connection is reported as one, so callers that retry on it retry here too."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, Table, Text, select, text
from sqlalchemy.exc import DBAPIError

from shared.db.copy import (
    binary_types,
    can_copy,
    copy_rows,
    copy_rows_with_new_ids,
    insert_rows,
    insert_rows_with_new_ids,
)
from shared.db.engine import make_engine
from tests.conftest import PG_ADMIN_URL, DatabaseFactory, PostgresServer

METADATA = MetaData()
ITEMS = Table(
    "items",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", BigInteger, nullable=False),
    Column("note", Text, nullable=True),
)


@pytest.fixture
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    made = make_engine(postgres.create_database("copy"))
    METADATA.create_all(made)
    yield made
    made.dispose()


def stored(engine: Engine) -> list[tuple[int, int, str | None]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(select(ITEMS).order_by(ITEMS.c.id))]


def test_rows_land_in_order_with_their_defaults_and_roll_back_with_the_transaction(engine: Engine) -> None:
    rows = [(n, None if n % 3 else f"tab\there, line\nthere, back\\slash {n}") for n in range(10, 0, -1)]
    with engine.connect() as connection:
        assert can_copy(connection)
        with connection.begin():
            copy_rows(connection, ITEMS, ["number", "note"], rows)
        with pytest.raises(RuntimeError), connection.begin():
            copy_rows(connection, ITEMS, ["number", "note"], [(99, "rolled back")])
            raise RuntimeError("the change failed")
    assert stored(engine) == [(i + 1, n, note) for i, (n, note) in enumerate(rows)]


def test_a_refused_row_is_a_dbapi_error_naming_the_table(engine: Engine) -> None:
    with engine.connect() as connection, connection.begin():
        with pytest.raises(DBAPIError, match="COPY items") as caught:
            copy_rows(connection, ITEMS, ["number", "note"], [(1, "fine"), (None, "no number")])
        assert not caught.value.connection_invalidated


def test_a_lost_connection_is_invalidated_and_said_to_be(engine: Engine) -> None:
    with engine.connect() as connection:
        with pytest.raises(DBAPIError, match="COPY items") as caught, connection.begin():
            backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [backend])
            copy_rows(connection, ITEMS, ["number"], [(1,)])
        assert caught.value.connection_invalidated
        assert connection.invalidated
    assert stored(engine) == []  # the pool gives a fresh connection


def test_rows_travel_in_binary_and_a_value_of_the_wrong_type_is_refused_like_a_bad_row(
    engine: Engine,
) -> None:
    """Integer and text columns go in COPY's binary format; a value that is not of its column's type
    (which the text format would have left to the server) is refused as a DBAPIError naming the table,
    the transaction is left to roll back, and the connection stays usable."""
    assert binary_types(ITEMS, ("number", "note")) == ("int8", "text")
    with engine.connect() as connection:
        with pytest.raises(DBAPIError, match="COPY items") as caught, connection.begin():
            copy_rows(connection, ITEMS, ["number", "note"], [(1, "fine"), ("two", "a string for a number")])
        assert not caught.value.connection_invalidated
        with connection.begin():
            copy_rows(connection, ITEMS, ["number", "note"], [(2**62, "é\\t\x01 kept as it is")])
    assert [row[1:] for row in stored(engine)] == [(2**62, "é\\t\x01 kept as it is")]


def test_rows_with_new_ids_get_them_from_the_sequence_in_order(engine: Engine) -> None:
    with engine.connect() as connection, connection.begin():
        assert copy_rows_with_new_ids(connection, ITEMS, ["number", "note"], []) == []
        ids = copy_rows_with_new_ids(
            connection, ITEMS, ["number", "note"], [(30, "c"), (10, "a"), (20, None)]
        )
        copy_rows(connection, ITEMS, ["number"], [(40,)])  # a row that takes the sequence's next value
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert stored(engine) == [
        (ids[0], 30, "c"),
        (ids[1], 10, "a"),
        (ids[2], 20, None),
        (ids[2] + 1, 40, None),
    ]


def test_a_table_with_an_integer_column_is_copied_as_text_so_the_server_checks_its_range(
    engine: Engine,
) -> None:
    """psycopg's binary int4 dumper would wrap 2**31 round to -2**31; as text the server refuses it."""
    assert binary_types(ITEMS, ("id", "number")) is None
    with engine.connect() as connection:
        with pytest.raises(DBAPIError, match="COPY items"), connection.begin():
            copy_rows(connection, ITEMS, ["id", "number"], [(2**31, 1)])
        with connection.begin():
            copy_rows(connection, ITEMS, ["id", "number"], [(2**31 - 1, 2)])
    assert stored(engine) == [(2**31 - 1, 2, None)]


def test_rows_inserted_with_new_ids_on_either_database(make_database: DatabaseFactory) -> None:
    """``insert_rows_with_new_ids`` and ``insert_rows`` give the same outcome on PostgreSQL (COPY) and
    SQLite (one multi-row INSERT): the ids in the order of the rows, every value stored."""
    made = make_engine(make_database("insert_rows"))
    METADATA.create_all(made)
    try:
        with made.connect() as connection, connection.begin():
            assert insert_rows_with_new_ids(connection, ITEMS, ["number", "note"], []) == []
            ids = insert_rows_with_new_ids(connection, ITEMS, ["number", "note"], [(3, "c"), (1, None)])
            insert_rows(connection, ITEMS, ["number"], [(7,)])
        assert stored(made)[:2] == [(ids[0], 3, "c"), (ids[1], 1, None)]
        assert ids[0] < ids[1] and [row[1:] for row in stored(made)[2:]] == [(7, None)]
    finally:
        made.dispose()
