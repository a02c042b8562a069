"""The life of a silo server process: bind, announce, migrate, serve, stop on SIGTERM."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from shared.config import RpcSettings
from shared.db.engine import describe
from shared.db.migrate import MigrationSet
from shared.errors import DatabaseUnavailable, SchemaMismatch
from shared.rpc.server import Registrar, create_server, shut_down, wait_for_stop_signal

_LOGGER = logging.getLogger(__name__)
ANNOUNCEMENT = "listening on"


def prepare_database(
    engine: Engine, migrations: MigrationSet, *, migrate: bool, wait_s: float, check: Callable[[Engine], None]
) -> None:
    """Migrate (or insist the schema is current), then run the silo's own ``check``; retries while
    the database cannot be reached, for at most ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        try:
            if migrate:
                migrations.upgrade(engine)
            elif not migrations.is_current(engine):
                raise SchemaMismatch(
                    f"schema of {describe(engine)} is at {migrations.current(engine) or 'nothing'}, "
                    f"code needs {migrations.head()}: run the migrate command"
                )
            check(engine)
            return
        except OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(f"cannot reach {describe(engine)}: {exc.orig}") from exc
            _LOGGER.warning("database %s not reachable yet, retrying", describe(engine))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def run(
    *,
    silo: str,
    listen: str,
    registrars: Iterable[Registrar],
    rpc: RpcSettings,
    prepare: Callable[[], None],
    on_stop: Callable[[], None],
    out: TextIO = sys.stdout,
) -> None:
    """Serve until SIGTERM/SIGINT. The first line on ``out`` is ``<silo> listening on HOST:PORT``;
    health turns SERVING only once ``prepare`` (database reachable and migrated) succeeded."""
    running = create_server(listen, registrars, settings=rpc)
    host = listen.rpartition(":")[0]
    print(f"{silo} {ANNOUNCEMENT} {host}:{running.port}", file=out, flush=True)
    try:
        prepare()
    except BaseException:
        running.server.stop(None)
        on_stop()
        raise
    running.set_serving(True)
    _LOGGER.info("%s serving on %s:%d", silo, host, running.port)
    wait_for_stop_signal()
    shut_down(running, rpc.shutdown_grace_s)
    on_stop()
    _LOGGER.info("%s stopped", silo)
