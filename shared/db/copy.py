"""PostgreSQL's bulk load inside a SQLAlchemy transaction: rows go to the server with COPY, without a
statement per row and without SQL text to parse."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError


def copy_rows(
    connection: Connection, table: Table, names: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    """Load ``rows`` (values in the order of ``names``) into ``table`` in the connection's transaction,
    in the given order (columns left out take their defaults, a serial id row by row). A refusal is
    raised as SQLAlchemy's own statements would raise it."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(name) for name in names)
    )
    raw = connection.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        raise DBAPIError.instance(f"COPY {table.name}", None, exc, psycopg.Error) from exc
