"""The life of a silo server process: bind, announce, migrate, serve, stop on SIGTERM."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from shared.config import RpcSettings
from shared.db.engine import describe
from shared.db.migrate import MigrationSet
from shared.errors import DatabaseUnavailable, SchemaMismatch
from shared.gc_tuning import tune_for_server
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
                    f"code needs {migrations.head_revision}: run the migrate command"
                )
            check(engine)
            return
        except OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(f"cannot reach {describe(engine)}: {exc.orig}") from exc
            _LOGGER.warning("database %s not reachable yet, retrying", describe(engine))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class BackgroundDrainer:
    """Sweeps due outbox shards every ``interval_s`` on its own thread until stopped."""

    def __init__(self, drain: Callable[[], int], *, interval_s: float = 1.0) -> None:
        self._drain = drain
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-drainer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                done = self._drain()
                if done:
                    _LOGGER.info("outbox drainer delivered %d message(s)", done)
            except Exception:
                _LOGGER.exception("outbox drainer sweep failed")


def run(
    *,
    silo: str,
    listen: str,
    registrars: Iterable[Registrar],
    rpc: RpcSettings,
    prepare: Callable[[], None],
    on_stop: Callable[[], None],
    drain: Callable[[], int] | None = None,
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
    tune_for_server()
    running.set_serving(True)
    _LOGGER.info("%s serving on %s:%d", silo, host, running.port)
    drainer = BackgroundDrainer(drain) if drain is not None else None
    if drainer is not None:
        drainer.start()
    wait_for_stop_signal()
    shut_down(running, rpc.shutdown_grace_s)
    if drainer is not None:
        drainer.stop()
    on_stop()
    served = running.calls.snapshot()
    _LOGGER.info(
        "%s stopped; served %d call(s): %s",
        silo,
        sum(served.values()),
        json.dumps(dict(sorted(served.items())), separators=(",", ":")),
    )
