"""The unit of work both silos write through: one transaction that rolls back unless committed, with
the outbox messages describing its changes written in the same transaction and, after the commit,
delivered right away up to what existed at commit (the background drainer takes whatever is left), or
handed to a :class:`shared.db.delivery.BackgroundDelivery` that delivers them while the writer goes on."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from shared.db.delivery import BackgroundDelivery
from shared.db.outbox import Handler, Outbox, OutboxCategory, Shard, enqueue_many

#: A message to write: (shard, category, object id, payload).
Outgoing = tuple[Shard, OutboxCategory, int, "dict[str, Any] | None"]


class UnitOfWork:
    """``with UnitOfWork(engine, outbox, handler) as work: ...; work.commit()``. Leaving the block without
    :meth:`commit` (or on an exception) rolls everything back, messages included."""

    def __init__(
        self,
        engine: Engine,
        outbox: Outbox | None = None,
        handler: Handler | None = None,
        *,
        drain_budget_s: float | None = None,
        delivery: BackgroundDelivery | None = None,
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._handler = handler
        self._budget = drain_budget_s
        self._delivery = delivery
        self._session: Session | None = None
        self._shards: set[Shard] = set()
        self.committed = False

    def __enter__(self) -> UnitOfWork:
        self._session = Session(self._engine, expire_on_commit=False)
        self._session.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._session is not None
        if not self.committed:
            self._session.rollback()
        self._session.close()

    @property
    def session(self) -> Session:
        assert self._session is not None, "use the unit of work in a with block"
        return self._session

    @property
    def connection(self) -> Connection:
        return self.session.connection()

    def enqueue(
        self, shard: Shard, category: OutboxCategory, object_id: int, payload: dict[str, Any] | None = None
    ) -> None:
        self.enqueue_many([(shard, category, object_id, payload)])

    def enqueue_many(self, messages: Sequence[Outgoing]) -> None:
        if self._outbox is None:
            raise RuntimeError("this unit of work has no outbox")
        self.session.flush()  # the change a message describes goes first
        enqueue_many(self.connection, self._outbox.table, messages)
        self._shards.update(shard for shard, _category, _object_id, _payload in messages)

    def commit(self, *, drain: bool = True) -> dict[Shard, int]:
        """Commit; then (unless ``drain`` is false) deliver the shards written to, up to their newest
        message at commit, or hand them to the background delivery. Returns those bounds."""
        bounds = self._bounds()
        self.session.commit()
        self.committed = True
        if not drain or not bounds:
            return bounds
        if self._delivery is not None:
            self._delivery.submit(bounds)
        elif self._outbox is not None and self._handler is not None:
            self._outbox.drain_committed(bounds, self._handler, budget_s=self._budget)
        return bounds

    def _bounds(self) -> dict[Shard, int]:
        if not self._shards or self._outbox is None:
            return {}
        return self._outbox.last_id(self._shards, self.connection)
