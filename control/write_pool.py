"""Control's import batches written in worker processes (``control serve --write-workers N``).

One interpreter runs one thread of Python at a time, and writing a batch is mostly Python: decoding its
instances, parsing and checking every value, deciding what clashes. With workers, each ImportModelBatch
is handed, as the request's bytes, to a process of its own that decodes, writes and records it through
its own engine and answers with the response's bytes; the server's threads only pass bytes along. Two
batches in flight are then written on two cores. PostgreSQL only: SQLite takes one writer at a time, so
workers there would only wait for one another.

Workers are started (spawned, so nothing of the server's gRPC state is inherited) and warmed once the
database is ready, so the first batches do not pay their start-up. Domain errors cross back as the
same exceptions (``shared.errors`` makes them picklable), so the servicer's error table applies
unchanged. A worker that dies fails the batches in flight with UNAVAILABLE (so do workers not yet
started or shutting down), the pool is replaced, and a retry or the importer's rerun replays what was
recorded. A worker leaves when the server does, even one killed outright.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from control.db.models import IMPORT_CHUNKS, RELOCATION_TABLES
from control.errors import ControlError
from shared.db.engine import make_engine
from shared.db.relocation_writer import BatchWriter
from shared.errors import SharedError
from shared.gc_tuning import tune_for_server
from shared.rpc.relocation import batch_from_proto, result_to_proto
from shared.rpc.v1 import control_pb2

_LOGGER = logging.getLogger(__name__)


class WorkerLost(ControlError):
    """A write worker died while writing the batch; the pool was replaced and the batch may be sent
    again (a batch that was recorded replays)."""

    reason = "worker_lost"


class WritePool:
    """Writes ImportModelBatch requests in ``workers`` processes, each with its own engine."""

    def __init__(self, db_url: str, workers: int) -> None:
        if workers < 1:
            raise ValueError("a write pool needs at least one worker")
        self._db_url = db_url
        self.workers = workers
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the workers and wait until each has its engine (call once the database is ready)."""
        with self._lock:
            pool = self._pool = self._new_pool()
        self._warm(pool)

    def _warm(self, pool: ProcessPoolExecutor) -> None:
        # A pool starts a process per task while none is idle: one task per worker starts them all.
        for ready in [pool.submit(_ready) for _ in range(self.workers)]:
            ready.result()
        _LOGGER.info("%d write worker(s) ready", self.workers)

    def write(self, request: control_pb2.ImportModelBatchRequest) -> control_pb2.ImportModelBatchResponse:
        """The batch written by a worker. Whatever keeps the workers from answering (one died, which
        fails every batch in flight; they are not started yet, are being replaced or are shutting
        down) is UNAVAILABLE ``worker_lost``: the batch may be sent again, and one that was recorded
        replays."""
        where = f"{request.model} from #{request.first_ordinal}"
        pool = self._current(where)
        try:
            answer = pool.submit(_write, request.SerializeToString()).result()
        except BrokenProcessPool:
            try:
                self._replace(pool)
            except (BrokenProcessPool, OSError) as exc:
                _LOGGER.error("could not start new write workers: %s", exc)
            raise WorkerLost(f"a write worker died while writing {where}; send the batch again") from None
        except (CancelledError, RuntimeError) as exc:  # shut down meanwhile, or submit after shutdown
            raise WorkerLost(
                f"the write workers stopped while writing {where}: {exc or 'cancelled'}"
            ) from None
        return control_pb2.ImportModelBatchResponse.FromString(answer)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self._db_url,),
        )

    def _current(self, where: str) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                raise WorkerLost(f"the write workers are not running (writing {where}); send the batch again")
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Put new workers in place of a broken pool (once, however many calls saw it break), ready
        before the caller answers, so that its retry finds them."""
        fresh = None
        with self._lock:
            if self._pool is broken:
                _LOGGER.warning("a write worker died; starting new workers")
                fresh = self._pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)
        if fresh is not None:
            self._warm(fresh)


# ---- in the worker processes ---------------------------------------------------------------------

#: The worker's own writer, made by its initializer.
_WORKER: dict[str, BatchWriter] = {}


def _start_worker(db_url: str) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the server shuts its workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker waits on the pool's queue, whose ends it holds too, so it would not notice the server
    # dying (killed, say): it leaves when its parent does, with its database connections.
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    # A spawned process starts with no logging set up; its stderr is the server's.
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s"
    )
    _WORKER["writer"] = BatchWriter(make_engine(db_url), RELOCATION_TABLES, IMPORT_CHUNKS)
    tune_for_server()


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _ready() -> bool:
    return "writer" in _WORKER


def _write(request_bytes: bytes) -> bytes:
    request = control_pb2.ImportModelBatchRequest.FromString(request_bytes)
    try:
        return result_to_proto(_WORKER["writer"].write(batch_from_proto(request))).SerializeToString()
    except SharedError:
        raise  # crosses back as itself, for the servicer's error table
    except Exception as exc:
        # Anything else may not survive pickling (and a result that cannot be unpickled breaks the
        # pool): it is logged here, with its traceback, and crosses back as its type and message.
        _LOGGER.exception("unexpected error writing %s from #%d", request.model, request.first_ordinal)
        raise RuntimeError(f"{type(exc).__name__} in a write worker: {exc}") from None
