"""``column IN (values)`` for long lists of values.

SQLAlchemy renders an IN list as one bound parameter per value, and psycopg then parses the statement's
text for each of them: for thousands of ids that costs more than the query. On PostgreSQL the same
condition is written ``column = ANY(:values)`` with the list bound as one array parameter; SQLite keeps
the IN list (within its limit of bound parameters: ``per_statement`` says how many values a statement
takes, and ``among_parts`` cuts a long list into that many conditions).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute

#: Most values one statement carries (SQLite allows 32,766 bound parameters).
CHUNK = 1000
#: On PostgreSQL one array parameter holds them all; a bound still keeps one statement's array sane.
PG_CHUNK = 50_000


def among(
    dialect: str, column: ColumnElement[Any] | QueryableAttribute[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """The condition ``column`` is one of ``values``, for the dialect named (``Dialect.name``)."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


def per_statement(dialect: str) -> int:
    """How many values to pass to one statement. On PostgreSQL, as many as there are (up to
    ``PG_CHUNK``): where the planner scans the table rather than probe an index for each value (a small
    or freshly filled table), each statement is one more pass over it."""
    return PG_CHUNK if dialect == "postgresql" else CHUNK


def among_parts(
    dialect: str, column: ColumnElement[Any] | QueryableAttribute[Any], values: Iterable[Any]
) -> Iterator[ColumnElement[bool]]:
    """``among`` for any number of values: one condition (one statement) per ``per_statement`` of them."""
    for part in chunks(values, per_statement(dialect)):
        yield among(dialect, column, part)


def chunks(values: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` of ``values`` (one statement or call each)."""
    batch: list[Any] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
