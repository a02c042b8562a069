"""Engines for PostgreSQL (psycopg 3) and the embedded SQLite default."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

from shared.errors import ConfigError

# Constraint names are explicit and stable across databases, so migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use psycopg 3 for them."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"not a database URL: {url!r}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise ConfigError(f"unsupported database {parsed.get_backend_name()!r}: use PostgreSQL or SQLite")
    return parsed.render_as_string(hide_password=False)


def backend_of(url: str) -> str:
    """``postgresql`` or ``sqlite`` (ConfigError for anything else, or what is not a database URL)."""
    return make_url(normalise_url(url)).get_backend_name()


def make_engine(url: str) -> Engine:
    """An engine that does not connect until first used."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # SQLite's driver opens transactions lazily; begin them explicitly so that reads inside a
        # unit of work see one snapshot and writes take the lock at BEGIN.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    engine = create_engine(url)
    event.listen(engine, "connect", _binary_arrays)
    # Pessimistic disconnect handling, but only for connections that sat idle in the pool: a ping on
    # every checkout is one more round trip per transaction, which a bulk import makes thousands of.
    event.listen(engine, "checkin", _idle_since_now)
    event.listen(engine, "checkout", lambda dbapi, record, _proxy: _ping_if_idle(engine, dbapi, record))
    return engine


#: A pooled connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 1.0


def _idle_since_now(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(engine: Engine, dbapi_connection: Any, record: Any) -> None:
    idle_since = record.info.pop("idle_since", None)
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
        return  # new, or just used
    try:
        engine.dialect.do_ping(dbapi_connection)
    except Exception as exc:
        # The pool discards this connection and checks out another (a new one if need be).
        raise DisconnectionError(f"a pooled connection is gone ({exc})") from exc


def _binary_arrays(dbapi_connection: Any, _record: object) -> None:
    """Send list parameters (the arrays of ``among`` and of the replicas' ``unnest``) in PostgreSQL's
    binary array format. psycopg's default for a list is the text format, built element by element in
    Python: for a thousand ids that is about five times the time the binary form takes, and the
    existence look-ups and replica upserts of an import send hundreds of thousands of ids. The last
    dumper registered for a type is the one a ``%s`` placeholder uses."""
    dbapi_connection.adapters.register_dumper(list, ListBinaryDumper)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # let the "begin" listener issue BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def describe(engine: Engine) -> str:
    """The URL without its password, for logs."""
    return engine.url.render_as_string(hide_password=True)
