"""The import's outbox deliveries in a process of their own (PostgreSQL).

While an import writes members and team memberships, each batch's messages are delivered to control
as the next batches are written (``shared.db.delivery.BackgroundDelivery``). Delivering is Python work
too (claiming the shards, reading the rows back, building the calls, deleting what was delivered), and
on a thread of the importer it shares one interpreter with the reading, preparing and writing. Here the
delivery thread only hands each drain's bounds (shard -> newest message id at commit) to that process,
which drains them through its own engine and control client and answers with the number of messages
delivered. The import CLI starts it during the check pass, once the importer has loaded the database
layer and gRPC, forked while the importer still has one thread and no connection or channel open, so
that it starts with every module loaded; one started at a drain (in tests, or replacing one that died)
is spawned, since a fork would then copy threads mid-flight. Forked after the check pass's own forked
process, it holds a copy of the importer's end of that process's pipe until it ends (at most a second
after the importer, below).

Nothing is lost if that process dies: the messages are committed rows. The drain that was running
counts as failed (the background delivery logs it; the shards it had claimed wait for their lease to
end), the next drain starts a new process, and the import's own drain of the organizations' shards at
its end (or the region's background drainer) delivers what is left. Where no process can be started at
all, the drains run in the importer, as on SQLite.
SQLite keeps the deliveries in the importer: a second process would only wait for its one writer.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from region.config import RegionSettings
from region.errors import RegionError
from shared.db.outbox import Shard
from shared.gc_tuning import tune_for_server

_LOGGER = logging.getLogger(__name__)
#: Longest a stopping delivery process gets to finish its drain and exit.
STOP_WAIT_S = 30.0
#: How often an idle delivery process checks that the importer is still there.
PARENT_CHECK_S = 1.0


class DeliveryLost(RegionError):
    """The delivery process died or could not start; what it had not delivered stays in the outbox."""


class DeliveryProcess:
    """``drain(bounds)`` in a process of its own (started by ``start`` or at the first drain; one drain at
    a time)."""

    def __init__(
        self, settings: RegionSettings, *, fallback: Callable[[Mapping[Shard, int]], int] | None = None
    ) -> None:
        self._settings = settings
        #: Drains here once a process could not be started (so each drain does not try again).
        self.fallback = fallback
        self._cannot_start = False
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        #: How the running process was started ("fork" or "spawn"), None before.
        self.method: str | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        """Start the process now instead of at the first drain. Where this process runs one thread
        (the operating system's count, so gRPC's own threads count too), it is forked: the child has
        every module loaded already, where a spawned one spends most of a second of CPU loading them
        again, in the middle of the import's writes. So call this before this process opens a gRPC
        channel or a database connection (the child opens its own). Otherwise it is spawned; where it
        cannot be started, the first drain tries again."""
        with self._lock:
            if self.alive:
                return
            try:
                self._launch("fork" if _forkable() else "spawn")
            except DeliveryLost:
                _LOGGER.info("the delivery process did not start early", exc_info=True)

    def drain(self, bounds: Mapping[Shard, int]) -> int:
        """Deliver these shards up to these ids; the number of messages delivered."""
        if self._cannot_start and self.fallback is not None:
            return self.fallback(bounds)
        with self._lock:
            try:
                connection = self._connected()
            except DeliveryLost:
                if self.fallback is None:
                    raise
                self._cannot_start = True
                _LOGGER.warning("no delivery process; the import delivers its outbox itself", exc_info=True)
                return self.fallback(bounds)
            try:
                connection.send(dict(bounds))
                done = connection.recv()
            except (EOFError, OSError) as exc:
                self._stop(wait_s=0)
                raise DeliveryLost(f"the delivery process stopped ({exc or type(exc).__name__})") from None
        if not isinstance(done, int):
            raise DeliveryLost(f"the delivery process failed: {done}")
        return done

    def close(self) -> None:
        with self._lock:
            self._stop(wait_s=STOP_WAIT_S)

    def _connected(self) -> Connection:
        if self._connection is not None and self.alive:
            return self._connection
        # Spawned: by now this process has threads, gRPC channels and connections a fork would copy.
        return self._launch("spawn")

    def _launch(self, method: str) -> Connection:
        self._stop(wait_s=0)
        if method == "fork":
            for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written twice
                with contextlib.suppress(Exception):
                    stream.flush()
        context = (
            multiprocessing.get_context("fork") if method == "fork" else multiprocessing.get_context("spawn")
        )
        ours, theirs = context.Pipe(duplex=True)
        # A forked child holds a copy of our end too: it closes it, so that it reads end-of-file when
        # this process dies (a spawned child gets only its own end).
        parent_end = ours if method == "fork" else None
        process = context.Process(
            target=_serve, args=(self._settings, theirs, os.getpid(), parent_end), name="outbox-delivery"
        )
        try:
            process.start()
        except OSError as exc:
            ours.close()
            raise DeliveryLost(f"could not start the delivery process: {exc}") from None
        finally:
            theirs.close()
        self._process, self._connection, self.method = process, ours, method
        return ours

    def _stop(self, *, wait_s: float) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            with contextlib.suppress(OSError):  # it may be gone already
                connection.send(None)
            connection.close()
        if process is not None:
            process.join(wait_s)
            if process.is_alive():
                process.terminate()
                process.join()


def _forkable() -> bool:
    """Whether a fork copies no thread but this one (Linux tells; elsewhere, assume it would)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    try:
        return sum(1 for _ in Path("/proc/self/task").iterdir()) == 1
    except OSError:
        return False


def _serve(
    settings: RegionSettings, connection: Connection, parent: int, parent_end: Connection | None = None
) -> None:
    """The delivery process: drain the bounds it is sent until it is sent None or its parent is gone."""
    if parent_end is not None:
        parent_end.close()
    # Ctrl-C reaches the whole process group: the importer stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(  # forced: a forked child has the importer's handlers and level
        level=logging.WARNING,
        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s",
        force=True,
    )
    tune_for_server()
    from region.bootstrap import bootstrap  # noqa: PLC0415 - the child builds its own app

    app = bootstrap(settings)
    try:
        while True:
            # A parent that dies ends this process even where another of its children still holds
            # the parent's end of the pipe (a process forked from the parent after this one), so no
            # end-of-file comes:
            # an orphan is adopted by another process.
            if not multiprocessing.connection.wait([connection], timeout=PARENT_CHECK_S):
                if os.getppid() != parent:
                    return
                continue
            try:
                bounds = connection.recv()
            except (EOFError, OSError):
                return
            if bounds is None:
                return
            try:
                done = app.organizations.deliver(bounds)
            except Exception as exc:
                _LOGGER.exception("outbox: delivery failed in the delivery process")
                connection.send(f"{type(exc).__name__}: {exc}")
            else:
                connection.send(done)
    finally:
        app.close()
        connection.close()
