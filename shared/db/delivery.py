"""Delivery of committed outbox messages on a thread of its own, so a writer goes on with its next
transaction while the other silo is called.

A unit of work given a :class:`BackgroundDelivery` hands it the bounds it committed (each shard's
newest message id at commit) instead of draining them itself. The thread delivers them in commit
order; bounds that arrive while a drain runs are merged and delivered by the next drain, so a fast
writer costs fewer, larger calls. What this changes is only *when* the drain runs: a failed delivery
backs off and is left to the background drainer exactly as a drain right after commit would, and a
crash loses nothing (the messages are committed rows). :meth:`BackgroundDelivery.settle` waits until
everything handed over so far has been drained.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from types import TracebackType

from shared.db.outbox import Handler, Outbox, Shard

_LOGGER = logging.getLogger(__name__)
#: Commits a writer may get ahead of delivery before it waits (bounds how far control lags behind).
MAX_WAITING = 8


class BackgroundDelivery:
    """``with BackgroundDelivery(outbox, handler) as delivery: ... delivery.submit(bounds) ...``; leaving
    the block (or :meth:`close`) waits for what was submitted and stops the thread."""

    def __init__(
        self,
        outbox: Outbox,
        handler: Handler,
        *,
        max_waiting: int = MAX_WAITING,
        drain: Callable[[Mapping[Shard, int]], int] | None = None,
    ) -> None:
        self._outbox = outbox
        self._handler = handler
        #: How a drain runs: here, by default, or handed elsewhere (another process) and waited for.
        self._drain = drain or (lambda bounds: outbox.drain_committed(bounds, handler))
        self._max_waiting = max_waiting
        self._changed = threading.Condition()
        self._pending: dict[Shard, int] = {}
        self._waiting = 0  # commits whose bounds are pending
        self._draining = False
        self._thread: threading.Thread | None = None
        #: A thread a timed-out close left finishing its drain; the next thread waits for it.
        self._retired: threading.Thread | None = None
        #: Set to stop the current thread (each thread has its own, so a new one is never stopped).
        self._stop = threading.Event()
        #: Messages delivered and drains run (for logs and tests).
        self.delivered = 0
        self.drains = 0

    def __enter__(self) -> BackgroundDelivery:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def submit(self, bounds: Mapping[Shard, int]) -> None:
        """Deliver these shards up to these ids soon; waits while ``max_waiting`` commits are pending."""
        if not bounds:
            return
        with self._changed:
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop, self._retired),
                    name="outbox-delivery",
                    daemon=True,
                )
                self._thread.start()
            while self._waiting >= self._max_waiting:
                self._changed.wait()
            for shard, bound in bounds.items():
                self._pending[shard] = max(bound, self._pending.get(shard, bound))
            self._waiting += 1
            self._changed.notify_all()

    def settle(self, timeout_s: float | None = None) -> bool:
        """Wait until every bound submitted so far has been drained; False if ``timeout_s`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._draining, timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        """Settle (for at most ``timeout_s``), then stop the thread; a later :meth:`submit` starts a new
        one. False when the timeout passed first: the thread then stops after its current drain and what
        is left stays in the outbox for the background drainer."""
        settled = self.settle(timeout_s)
        with self._changed:
            self._stop.set()
            thread, self._thread = self._thread, None
            self._retired = None if settled else thread
            self._changed.notify_all()
        if thread is not None and settled:
            thread.join()
        return settled

    def _run(self, stop: threading.Event, previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()  # one drain at a time, in order
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or stop.is_set())
                if stop.is_set():
                    return
                bounds, self._pending = self._pending, {}
                self._waiting, self._draining = 0, True
                self._changed.notify_all()
            try:
                self.delivered += self._drain(bounds)
                self.drains += 1
            except Exception:
                _LOGGER.exception("outbox: delivery after commit failed; the background drainer retries")
            finally:
                with self._changed:
                    self._draining = False
                    self._changed.notify_all()
