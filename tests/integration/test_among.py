"""``among`` selects exactly what an IN list would, on both databases (an array parameter on PostgreSQL)."""

from __future__ import annotations

import random

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
