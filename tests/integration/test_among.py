"""``among`` selects exactly what an IN list would, on both databases (an array parameter on PostgreSQL)."""

from __future__ import annotations

import random

import psycopg
from psycopg.adapt import PyFormat
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, select

from shared.db.among import among
from shared.db.engine import make_engine
from tests.conftest import DatabaseFactory


def test_among_matches_in_for_numbers_and_strings(make_database: DatabaseFactory) -> None:
    engine = make_engine(make_database("among"))
    metadata = MetaData()
    table = Table("t", metadata, Column("id", BigInteger(), primary_key=True), Column("name", String(20)))
    metadata.create_all(engine)
    rng = random.Random(5)
    with engine.begin() as connection:
        connection.execute(insert(table), [{"id": i, "name": f"n{i}"} for i in range(1, 3001)])
        dialect = connection.dialect.name
        for size in (1, 7, 999):
            ids = rng.sample(range(-50, 3100), size)
            found = connection.execute(select(table.c.id).where(among(dialect, table.c.id, ids))).scalars()
            assert sorted(found) == sorted(i for i in ids if 1 <= i <= 3000)
        names = ["n5", "n2999", "nope"]
        found = connection.execute(select(table.c.id).where(among(dialect, table.c.name, names))).scalars()
        assert sorted(found) == [5, 2999]
    engine.dispose()


def test_array_parameters_travel_in_binary_and_keep_every_value(make_database: DatabaseFactory) -> None:
    """Lists go to PostgreSQL in the binary array format (built in C, not element by element in Python),
    and values that the text format would have to quote or escape arrive unchanged."""
    engine = make_engine(make_database("among_binary"))
    metadata = MetaData()
    table = Table("t", metadata, Column("id", BigInteger(), primary_key=True), Column("name", String(20)))
    metadata.create_all(engine)
    names = ['a "quoted" one', "back\\slash", "{braces,comma}", "NULL", "é ü", " spaced "]
    with engine.begin() as connection:
        connection.execute(insert(table), [{"id": i, "name": n} for i, n in enumerate(names, 1)])
        dialect = connection.dialect.name
        found = connection.execute(select(table.c.name).where(among(dialect, table.c.name, names))).scalars()
        assert sorted(found) == sorted(names)
        big = [2**62, 1, -(2**40)]
        assert connection.execute(
            select(table.c.id).where(among(dialect, table.c.id, big))
        ).scalars().all() == [1]
        if dialect == "postgresql":
            raw = connection.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            assert issubclass(raw.adapters.get_dumper(list, PyFormat.AUTO), ListBinaryDumper)
    engine.dispose()
