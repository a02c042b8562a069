"""PostgreSQL engines ping a pooled connection only when it sat idle: one the server dropped while idle is
replaced without an error, and a connection handed back a moment ago is used without a round trip."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from shared.db import engine as engine_module
from shared.db.engine import make_engine
from tests.conftest import PostgresServer


def test_a_connection_dropped_while_idle_is_replaced_and_a_busy_one_is_not_pinged(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.2)
    url = postgres.create_database("ping")
    engine = make_engine(url)
    pings: list[object] = []
    original = engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return original(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    try:
        with engine.connect() as connection:
            first_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as connection:  # back in the pool just now: no ping
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() == first_pid
        assert pings == []

        admin = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        with admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
        time.sleep(0.3)  # idle for longer than PING_AFTER_IDLE_S

        with engine.connect() as connection:  # pinged, found dead, replaced: no error reaches us
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != first_pid
        assert len(pings) == 1
    finally:
        engine.dispose()
