"""Transactional outboxes, the same machinery in both silos.

A message row is written in the same transaction as the change it describes (:func:`enqueue`). A
drain processes one *shard* (destination, scope, shard id) at a time, in id order; messages with the
same (shard, category, object id) coalesce to the newest; a message is deleted only after its handler
succeeded. Handlers run outside any transaction: a drainer first *claims* the shard by stamping
``claimed_until`` on its rows in a short transaction (row locks with ``NOWAIT`` on PostgreSQL, the
single writer lock on SQLite), commits, calls the handler, then deletes the handled rows. A crashed
drainer's claim expires on its own. A failing handler leaves its rows in place with exponential backoff
(``scheduled_for``, doubling per attempt, capped at one hour) and stops the shard, so order holds.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import OperationalError

from shared.db.relocation_tables import ID

_LOGGER = logging.getLogger(__name__)
#: Longest wait before a failed message is tried again.
MAX_BACKOFF = timedelta(hours=1)
#: How long a claim on a shard lasts unless renewed (a drainer renews it after every message).
LEASE = timedelta(seconds=60)
#: A new message is due at once.
EPOCH = datetime(2016, 8, 1, tzinfo=UTC)


class OutboxScope(enum.IntEnum):
    ORGANIZATION = 0


class OutboxCategory(enum.IntEnum):
    ORGANIZATION_UPDATE = 2
    ORGANIZATION_MEMBER_UPDATE = 3
    ORGANIZATION_MEMBER_TEAM_UPDATE = 26
    ORGANIZATION_SLUG_RESERVATION_UPDATE = 27


@dataclass(frozen=True, order=True)
class Shard:
    #: The silo the messages go to: a region name for control's outbox, "" for a region's.
    destination: str
    scope: OutboxScope
    shard_id: int


@dataclass(frozen=True)
class Message:
    id: int
    shard: Shard
    category: OutboxCategory
    object_id: int
    payload: dict[str, Any] | None
    attempts: int = 0


Handler = Callable[[Message], None]
Clock = Callable[[], datetime]


def outbox_table(metadata: MetaData, name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("id", ID, primary_key=True, autoincrement=True),
        Column("destination", String(48), nullable=False, server_default=""),
        Column("shard_scope", Integer(), nullable=False),
        Column("shard_id", BigInteger(), nullable=False),
        Column("category", Integer(), nullable=False),
        Column("object_id", BigInteger(), nullable=False),
        Column("payload", Text(), nullable=True),
        Column("scheduled_from", DateTime(timezone=True), nullable=False),
        Column("scheduled_for", DateTime(timezone=True), nullable=False),
        Column("claimed_until", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer(), nullable=False, server_default="0"),
        Column("date_added", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index(f"ix_{name}_shard", "destination", "shard_scope", "shard_id", "id"),
        Index(f"ix_{name}_coalesce", "destination", "shard_scope", "shard_id", "category", "object_id"),
        Index(f"ix_{name}_scheduled_for", "scheduled_for"),
    )


def enqueue(
    connection: Connection,
    table: Table,
    shard: Shard,
    category: OutboxCategory,
    object_id: int,
    *,
    payload: dict[str, Any] | None = None,
) -> None:
    """Write a message in the caller's transaction (it commits or rolls back with the change)."""
    connection.execute(
        insert(table).values(
            destination=shard.destination,
            shard_scope=int(shard.scope),
            shard_id=shard.shard_id,
            category=int(category),
            object_id=object_id,
            payload=None if payload is None else json.dumps(payload, sort_keys=True),
            scheduled_from=EPOCH,
            scheduled_for=EPOCH,
            attempts=0,
        )
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class ShardBusy(Exception):
    """Another drainer holds the shard."""


class Outbox:
    """Drains one silo's outbox table."""

    def __init__(self, engine: Engine, table: Table, *, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._table = table
        self._clock = clock

    def _in_shard(self, shard: Shard) -> Any:
        c = self._table.c
        return and_(
            c.destination == shard.destination,
            c.shard_scope == int(shard.scope),
            c.shard_id == shard.shard_id,
        )

    # ---- finding work -------------------------------------------------------------------------------

    def due_shards(self, limit: int = 100) -> list[Shard]:
        """Shards with a message due now and no live claim, oldest first."""
        c, now = self._table.c, self._clock()
        statement = (
            select(c.destination, c.shard_scope, c.shard_id)
            .where(c.scheduled_for <= now, or_(c.claimed_until.is_(None), c.claimed_until <= now))
            .group_by(c.destination, c.shard_scope, c.shard_id)
            .order_by(func.min(c.id))
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [Shard(d, OutboxScope(s), i) for d, s, i in connection.execute(statement)]

    def last_id(self, shards: Iterable[Shard]) -> dict[Shard, int]:
        """The newest message id of each shard (a bound for a drain right after a commit)."""
        c = self._table.c
        result: dict[Shard, int] = {}
        with self._engine.connect() as connection:
            for shard in shards:
                top = connection.execute(select(func.max(c.id)).where(self._in_shard(shard))).scalar()
                if top is not None:
                    result[shard] = int(top)
        return result

    def drain_due(self, handler: Handler, *, limit: int = 100) -> int:
        """Drain every due shard once; a failing or busy shard is left for later. Returns messages done."""
        done = 0
        for shard in self.due_shards(limit):
            try:
                done += self.drain_shard(shard, handler, respect_schedule=True)
            except ShardBusy:
                continue
            except Exception:
                _LOGGER.exception("outbox shard %s failed; it backs off", shard)
        return done

    # ---- draining -----------------------------------------------------------------------------------

    def drain_now(
        self, shard: Shard, handler: Handler, *, wait_s: float = 20.0, budget_s: float | None = None
    ) -> None:
        """Drain a shard right away, including what handlers add to it: wait up to ``wait_s`` for another
        drainer that holds it, and work at most ``budget_s`` when given (the rest stays for later)."""
        start = time.monotonic()
        stop = None if budget_s is None else start + budget_s
        while self.last_id([shard]):
            if stop is not None and time.monotonic() > stop:
                return
            try:
                self.drain_shard(shard, handler, deadline=stop)
            except ShardBusy:
                if time.monotonic() > start + wait_s:
                    return
                time.sleep(0.05)

    def drain_shard(
        self,
        shard: Shard,
        handler: Handler,
        *,
        up_to: int | None = None,
        respect_schedule: bool = False,
        deadline: float | None = None,
    ) -> int:
        """Process the shard's messages (ids up to ``up_to``, if given) in order; returns how many. With
        a ``deadline`` (``time.monotonic()``), stop between messages once it has passed and leave the rest.

        Raises :class:`ShardBusy` when another drainer holds the shard, and the handler's error when a
        message fails (its rows then wait with backoff)."""
        bound = self._claim(shard, up_to, respect_schedule)
        if bound is None:
            return 0
        done = 0
        try:
            while True:
                group = self._next_group(shard, bound)
                if not group:
                    return done
                representative = group[-1]
                try:
                    handler(representative)
                except Exception:
                    self._back_off(shard)
                    raise
                self._finish(shard, [m.id for m in group])
                done += 1
                if deadline is not None and time.monotonic() > deadline:
                    return done
        finally:
            self._release(shard)

    def _claim(self, shard: Shard, up_to: int | None, respect_schedule: bool) -> int | None:
        """Stamp the shard's rows as ours; the highest id to process, or None when there is nothing."""
        c, now = self._table.c, self._clock()
        with self._engine.begin() as connection:
            query = select(c.id, c.scheduled_for, c.claimed_until).where(self._in_shard(shard)).order_by(c.id)
            if connection.dialect.name == "postgresql":
                query = query.with_for_update(nowait=True)
            try:
                rows = connection.execute(query).all()
            except OperationalError as exc:  # NOWAIT: another drainer is claiming it right now
                raise ShardBusy(str(shard)) from exc
            if up_to is not None:
                rows = [r for r in rows if r.id <= up_to]
            if not rows:
                return None
            if any(r.claimed_until is not None and _aware(r.claimed_until) > now for r in rows):
                raise ShardBusy(str(shard))
            if respect_schedule and _aware(rows[0].scheduled_for) > now:
                return None
            bound = rows[-1].id
            connection.execute(
                update(self._table)
                .where(self._in_shard(shard), c.id <= bound)
                .values(claimed_until=now + LEASE)
            )
            return int(bound)

    def _next_group(self, shard: Shard, bound: int) -> list[Message]:
        """The oldest message and every message it coalesces with, oldest first (up to ``bound``)."""
        c = self._table.c
        with self._engine.connect() as connection:
            head = connection.execute(
                select(c.category, c.object_id)
                .where(self._in_shard(shard), c.id <= bound)
                .order_by(c.id)
                .limit(1)
            ).first()
            if head is None:
                return []
            rows = connection.execute(
                select(c.id, c.category, c.object_id, c.payload, c.attempts)
                .where(
                    self._in_shard(shard),
                    c.id <= bound,
                    c.category == head.category,
                    c.object_id == head.object_id,
                )
                .order_by(c.id)
            ).all()
        return [
            Message(
                r.id,
                shard,
                OutboxCategory(r.category),
                r.object_id,
                json.loads(r.payload) if r.payload else None,
                r.attempts,
            )
            for r in rows
        ]

    def _finish(self, shard: Shard, ids: Sequence[int]) -> None:
        c, now = self._table.c, self._clock()
        with self._engine.begin() as connection:
            connection.execute(delete(self._table).where(c.id.in_(ids)))
            # Renew the claim for what is left.
            connection.execute(
                update(self._table)
                .where(self._in_shard(shard), c.claimed_until.is_not(None))
                .values(claimed_until=now + LEASE)
            )

    def _back_off(self, shard: Shard) -> None:
        c, now = self._table.c, self._clock()
        with self._engine.begin() as connection:
            attempts = (
                connection.execute(select(func.max(c.attempts)).where(self._in_shard(shard))).scalar() or 0
            )
            delay = min(timedelta(seconds=2 ** min(attempts, 12)), MAX_BACKOFF)
            connection.execute(
                update(self._table)
                .where(self._in_shard(shard))
                .values(attempts=attempts + 1, scheduled_from=now, scheduled_for=now + delay)
            )

    def _release(self, shard: Shard) -> None:
        with self._engine.begin() as connection:
            connection.execute(update(self._table).where(self._in_shard(shard)).values(claimed_until=None))
