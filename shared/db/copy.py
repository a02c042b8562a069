"""PostgreSQL's bulk load inside a SQLAlchemy transaction: rows go to the server with COPY, without a
statement per row and without SQL text to parse."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError


def can_copy(connection: Connection) -> bool:
    """Whether :func:`copy_rows` works on this connection (PostgreSQL through psycopg 3)."""
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg"


def copy_rows(
    connection: Connection, table: Table, names: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    """Load ``rows`` (values in the order of ``names``) into ``table`` in the connection's transaction,
    in the given order (columns left out take their defaults, a serial id row by row). A refusal is
    raised as SQLAlchemy's own statements would raise it: a lost connection is invalidated and says so,
    so that a caller that retries on a dropped connection retries here too."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(name) for name in names)
    )
    raw = connection.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg 3 connection, not {type(raw).__name__}")
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        lost = connection.dialect.is_disconnect(cast(Any, exc), connection.connection, None)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            f"COPY {table.name}", None, exc, psycopg.Error, connection_invalidated=lost
        ) from exc
