"""Bulk inserts inside a SQLAlchemy transaction: on PostgreSQL the rows go to the server with COPY,
without a statement per row and without SQL text to parse (``copy_rows``); ``insert_rows`` and
``insert_rows_with_new_ids`` take that path where it exists and one multi-row INSERT elsewhere."""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Table, insert, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError


def can_copy(connection: Connection) -> bool:
    """Whether :func:`copy_rows` works on this connection (PostgreSQL through psycopg 3)."""
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg"


#: PostgreSQL's type (as psycopg names it) of each column type the binary format is used for, by the
#: start of its name in PostgreSQL's dialect ("VARCHAR(75)" is a VARCHAR). Not INTEGER or SMALLINT:
#: psycopg's binary dumpers for them wrap a value out of their range instead of refusing it (2**31
#: would be stored as -2**31), so a table with such a column is copied as text, where the server checks.
_BINARY_TYPES = {
    "BIGINT": "int8",
    "BOOLEAN": "bool",
    "TEXT": "text",
    "VARCHAR": "varchar",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}


@functools.cache
def binary_types(table: Table, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The PostgreSQL types of ``table``'s columns ``names`` for a binary COPY, or None when a column
    has a type the binary format is not used for here."""
    found = []
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    for name in names:
        compiled = table.c[name].type.compile(dialect=dialect)
        pg_type = _BINARY_TYPES.get(compiled.split("(", 1)[0])
        if pg_type is None:
            return None
        found.append(pg_type)
    return tuple(found)


def copy_rows(
    connection: Connection, table: Table, names: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    """Load ``rows`` (values in the order of ``names``) into ``table`` in the connection's transaction,
    in the given order (columns left out take their defaults, a serial id row by row). A refusal is
    raised as SQLAlchemy's own statements would raise it: a lost connection is invalidated and says so,
    so that a caller that retries on a dropped connection retries here too.

    Where every column's type allows, the rows travel in COPY's binary format: a date and time is eight
    bytes instead of text that psycopg formats and the server parses again, which made up most of the
    time both spent on a row. Values must then be parsed already, of the column's Python type: an int
    for a BIGINT, a str for text, an aware datetime for a timestamp with time zone (a value of another
    type is refused as the server refuses a bad row), and a bool for a BOOLEAN, which the binary form
    takes by its truth (the text form would refuse "false" where the binary form stores true). Every
    caller passes such values: the relocation writer's come from ``shared.relocation.values``."""
    types = binary_types(table, tuple(names))
    statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(sql.Identifier(name) for name in names),
        sql.SQL(" (FORMAT BINARY)" if types else ""),
    )
    raw = connection.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg 3 connection, not {type(raw).__name__}")
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            if types:
                copy.set_types(list(types))
            for row in rows:
                try:
                    copy.write_row(row)
                except (TypeError, ValueError, OverflowError, AttributeError, struct.error) as exc:
                    # A value of the wrong type for the binary form (the C dumpers raise the first
                    # three, the pure-Python ones the others): abort the COPY, report it as the server
                    # would report a bad row.
                    raise psycopg.DataError(f"a value does not fit its column's type: {exc}") from exc
    except psycopg.Error as exc:
        lost = connection.dialect.is_disconnect(cast(Any, exc), connection.connection, None)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            f"COPY {table.name}", None, exc, psycopg.Error, connection_invalidated=lost
        ) from exc


def copy_rows_with_new_ids(
    connection: Connection, table: Table, names: Sequence[str], rows: Sequence[Sequence[object]]
) -> list[int]:
    """Load ``rows`` as :func:`copy_rows` does, each with a new ``id`` from the table's sequence; the
    ids, in the order of the rows. The ids are taken with one statement: the sequence is looked up once,
    in a sub-select, as a regclass (named in the select list, ``pg_get_serial_sequence`` and the cast
    from its text would run for every row, and took ten times as long as nextval itself)."""
    if not rows:
        return []
    ids = list(
        connection.execute(
            text(
                f"SELECT nextval((SELECT pg_get_serial_sequence('{table.name}', 'id')::regclass)) "  # noqa: S608 - our table
                "FROM generate_series(1, :n)"
            ),
            {"n": len(rows)},
        ).scalars()
    )
    copy_rows(
        connection, table, ["id", *names], ([new_id, *row] for new_id, row in zip(ids, rows, strict=True))
    )
    return ids


def insert_rows(
    connection: Connection, table: Table, names: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """Insert ``rows`` (values in the order of ``names``): COPY on PostgreSQL, one multi-row INSERT
    elsewhere."""
    if not rows:
        return
    if can_copy(connection):
        copy_rows(connection, table, names, rows)
    else:
        connection.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])


def insert_rows_with_new_ids(
    connection: Connection, table: Table, names: Sequence[str], rows: Sequence[Sequence[object]]
) -> list[int]:
    """Insert ``rows`` as :func:`insert_rows` does, each with a new ``id``; the ids, in the order of the
    rows (on PostgreSQL from the sequence at once, elsewhere from ``INSERT ... RETURNING``)."""
    if not rows:
        return []
    if can_copy(connection):
        return copy_rows_with_new_ids(connection, table, names, rows)
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return list(connection.execute(statement, [dict(zip(names, row, strict=True)) for row in rows]).scalars())
