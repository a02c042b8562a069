"""Fixtures every test may use: databases on both backends (SQLite files and a real PostgreSQL server,
one fresh database per need, all dropped at the end of the session)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine

from shared.db.engine import make_engine
from shared.db.migrate import MigrationSet

#: Where the PostgreSQL server is; the databases of a test session are created (and dropped) there.
PG_ADMIN_URL = os.environ.get("SILOPORT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

BACKENDS = ("sqlite", "postgresql")
DatabaseFactory = Callable[[str], str]
#: ``migrated_engine(label, migrations)``: an engine on a new database with the silo's schema.
MigratedEngineFactory = Callable[[str, MigrationSet], Engine]


class PostgresServer:
    """A PostgreSQL server on which this session creates fresh databases."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.prefix = f"siloport_test_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []
        self._admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)

    def create_database(self, label: str) -> str:
        name = f"{self.prefix}_{len(self.created)}_{label}"[:63]
        self._admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        info = self._admin.info
        return f"postgresql+psycopg://{info.user}@{info.host}:{info.port}/{name}"

    def drop_all(self) -> None:
        for name in self.created:
            self._admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self._admin.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer(PG_ADMIN_URL)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required and not reachable at {PG_ADMIN_URL} ({exc}). Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            "or point SILOPORT_TEST_PG at a server.",
            pytrace=False,
        )
    yield server
    server.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def make_database(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DatabaseFactory:
    """``make_database(label)`` gives the URL of a new, empty database on the test's backend."""
    if backend == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        return server.create_database
    directory = tmp_path_factory.mktemp("sqlite")
    return lambda label: f"sqlite:///{directory / label}.sqlite3"


@pytest.fixture
def migrated_engine(make_database: DatabaseFactory) -> Iterator[MigratedEngineFactory]:
    """``migrated_engine(label, MIGRATIONS)`` gives an engine on a new database of the test's backend,
    migrated to the silo's schema; every engine it gave is disposed of at the end of the test."""
    made: list[Engine] = []

    def make(label: str, migrations: MigrationSet) -> Engine:
        engine = make_engine(make_database(label))
        made.append(engine)
        migrations.upgrade(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()
