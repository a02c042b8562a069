"""Transactional outboxes, the same machinery in both silos.

A message row is written in the same transaction as the change it describes (through
:class:`shared.db.unit_of_work.UnitOfWork`). Messages of a *shard* (destination, scope, shard id) are
processed in id order, by one drainer at a time; messages with the same (shard, category, object id)
coalesce to the newest, except a message whose payload lists many objects (``IDS``: one message for an
import batch's rows of a shard), which stands alone; a message is deleted only after its handler
succeeded. Handlers run outside any transaction: a drainer first *claims* its shards by stamping
``claimed_until`` on their rows in a short transaction (row locks taken with ``SKIP LOCKED`` on
PostgreSQL: a shard with a row locked by another drainer is busy and skipped; the single writer lock on
SQLite), commits, calls the handler, then deletes the handled rows. A crashed drainer's claim expires
after the lease. A failing handler leaves its rows in place with exponential backoff (``scheduled_for``,
doubling per attempt, capped at one hour) and stops those shards, so order holds.

One drain claims many shards and hands the handler *runs* of up to ``Outbox.batch`` coalesced
messages, interleaving the shards and keeping each shard's order, so that it can deliver them with a
few calls; a handler must apply a run in order. :func:`each` adapts a handler of one message.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    or_,
    select,
    update,
)

from shared.db.among import among_parts
from shared.db.copy import insert_rows
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


#: Payload key of a message about many objects of its shard at once (an import batch's members of one
#: organization): their ids, in order. Such a message is never coalesced with another.
IDS = "ids"


@dataclass(frozen=True)
class Message:
    id: int
    shard: Shard
    category: OutboxCategory
    object_id: int
    payload: dict[str, Any] | None
    attempts: int = 0

    @property
    def lists_many(self) -> bool:
        """Whether the payload lists the message's objects (``IDS``); such a message is never coalesced."""
        return self.payload is not None and isinstance(self.payload.get(IDS), list)

    @property
    def object_ids(self) -> list[int]:
        """The objects the message is about: those its payload lists, or its one object."""
        listed = self.payload.get(IDS) if self.payload else None
        return [int(i) for i in listed] if isinstance(listed, list) else [self.object_id]

    @property
    def coalesces_as(self) -> tuple[int, int, int]:
        """Messages of a shard with the same key coalesce to the newest."""
        return (int(self.category), self.object_id, self.id if self.lists_many else 0)


#: Takes a run of a shard's messages, oldest first, and applies them in order (or raises).
Handler = Callable[[Sequence[Message]], None]
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
    """Write a message in the caller's transaction (it commits or rolls back with the change); code
    normally writes through :class:`shared.db.unit_of_work.UnitOfWork`, which also drains after commit."""
    enqueue_many(connection, table, [(shard, category, object_id, payload)])


def each(handler: Callable[[Message], None]) -> Handler:
    """A :data:`Handler` that hands the messages of a run to ``handler`` one at a time."""

    def handle(messages: Sequence[Message]) -> None:
        for message in messages:
            handler(message)

    return handle


#: The columns a new message sets (the id and date_added take their defaults).
_ENQUEUED = (
    "destination",
    "shard_scope",
    "shard_id",
    "category",
    "object_id",
    "payload",
    "scheduled_from",
    "scheduled_for",
    "attempts",
)


def enqueue_many(
    connection: Connection,
    table: Table,
    messages: Sequence[tuple[Shard, OutboxCategory, int, dict[str, Any] | None]],
) -> None:
    """Write many messages with one statement (COPY on PostgreSQL), in the caller's transaction and in
    the given order."""
    if not messages:
        return
    rows = [
        (
            shard.destination,
            int(shard.scope),
            shard.shard_id,
            int(category),
            object_id,
            None if payload is None else json.dumps(payload, sort_keys=True),
            EPOCH,
            EPOCH,
            0,
        )
        for shard, category, object_id, payload in messages
    ]
    insert_rows(connection, table, _ENQUEUED, rows)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Claim:
    #: Each claimed shard's highest claimed message id.
    bounds: dict[Shard, int]
    #: The ids of the rows claimed.
    ids: list[int]
    #: Shards another drainer holds.
    busy: set[Shard]


class ShardBusy(Exception):
    """Another drainer holds the shard."""


class Outbox:
    """Drains one silo's outbox table."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        batch: int = 500,
        batch_objects: int = 5000,
        lease: timedelta = LEASE,
    ) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._table = table
        self._clock = clock
        #: The most coalesced messages a handler gets in one run.
        self.batch = batch
        #: The most objects those messages may list together (messages listing many count each).
        self.batch_objects = batch_objects
        self._lease = lease

    @property
    def table(self) -> Table:
        return self._table

    def _shard_sets(self, shards: Iterable[Shard]) -> Iterator[tuple[str, OutboxScope, Any]]:
        """(destination, scope, condition) covering ``shards``: one condition per destination and scope
        (per ``per_statement`` shard ids), for reading or updating many shards with a few statements."""
        c = self._table.c
        by_kind: dict[tuple[str, OutboxScope], list[int]] = {}
        for shard in shards:
            by_kind.setdefault((shard.destination, shard.scope), []).append(shard.shard_id)
        for (destination, scope), ids in by_kind.items():
            ids.sort()
            for condition in among_parts(self._dialect, c.shard_id, ids):
                yield (
                    destination,
                    scope,
                    and_(
                        c.destination == destination,
                        c.shard_scope == int(scope),
                        condition,
                    ),
                )

    def _in_shard(self, shard: Shard) -> Any:
        c = self._table.c
        return and_(
            c.destination == shard.destination,
            c.shard_scope == int(shard.scope),
            c.shard_id == shard.shard_id,
        )

    # ---- finding work -------------------------------------------------------------------------------

    def due_shards(self, limit: int = 100) -> list[Shard]:
        """Shards whose messages are all due now (a shard backs off as a whole) and none of them claimed,
        oldest first."""
        c, now = self._table.c, self._clock()
        statement = (
            select(c.destination, c.shard_scope, c.shard_id)
            .group_by(c.destination, c.shard_scope, c.shard_id)
            .having(
                func.max(c.scheduled_for) <= now,
                or_(func.max(c.claimed_until).is_(None), func.max(c.claimed_until) <= now),
            )
            .order_by(func.min(c.id))
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [Shard(d, OutboxScope(s), i) for d, s, i in connection.execute(statement)]

    def last_id(self, shards: Iterable[Shard], connection: Connection | None = None) -> dict[Shard, int]:
        """The newest message id of each shard that has messages (a bound for a drain right after a
        commit), in one grouped query per destination and scope; inside ``connection``'s transaction
        when given."""
        c = self._table.c
        result: dict[Shard, int] = {}

        def read(conn: Connection) -> None:
            for destination, scope, where in self._shard_sets(set(shards)):
                for shard_id, top in conn.execute(
                    select(c.shard_id, func.max(c.id)).where(where).group_by(c.shard_id)
                ):
                    result[Shard(destination, scope, shard_id)] = int(top)

        if connection is not None:
            read(connection)
        else:
            with self._engine.connect() as own:
                read(own)
        return result

    def drain_due(self, handler: Handler, *, limit: int = 100) -> int:
        """Drain every due shard once, many shards per call; a busy shard is left for later. When a run
        fails, the shards are drained one by one, so that only the shard with the failing message backs
        off; after two failures in a row (the other silo is down, most likely) the rest back off too,
        without a call each. Returns messages done."""
        due = self.due_shards(limit)
        if not due:
            return 0
        try:
            return self.drain_committed(self.last_id(due), handler, raise_errors=True, back_off=False)
        except Exception as exc:  # noqa: BLE001 - isolate the failing shard below
            _LOGGER.info("outbox: a run over %d shards failed (%s); draining them one by one", len(due), exc)
        done, failures = 0, 0
        for position, shard in enumerate(due):
            if failures >= 2:
                for rest in due[position:]:
                    self._back_off(rest)
                break
            try:
                done += self.drain_shard(shard, handler, respect_schedule=True)
                failures = 0
            except ShardBusy:
                continue
            except Exception:
                failures += 1
                _LOGGER.exception("outbox shard %s failed; it backs off", shard)
        return done

    # ---- draining -----------------------------------------------------------------------------------

    def drain_all_now(self, shards: Iterable[Shard], handler: Handler, *, wait_s: float = 20.0) -> None:
        """Drain these shards completely right away, including what handlers add, many shards per call;
        wait up to ``wait_s`` for shards another drainer holds. A handler's error propagates."""
        wanted = list(shards)
        deadline = time.monotonic() + wait_s
        while bounds := self.last_id(wanted):
            done = self.drain_committed(bounds, handler, respect_schedule=False, raise_errors=True)
            if not done:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)

    def drain_committed(
        self,
        bounds: Mapping[Shard, int],
        handler: Handler,
        *,
        budget_s: float | None = None,
        respect_schedule: bool = True,
        raise_errors: bool = False,
        back_off: bool = True,
    ) -> int:
        """Deliver what a committed transaction wrote: each shard up to the message id it had at commit,
        many shards at once. Shards are claimed together in one transaction; their runs are interleaved
        (each shard's messages stay in order) and handed over in runs of up to ``batch`` messages, so a
        batch that touched a hundred shards costs a few calls, not a hundred. A shard another drainer
        holds or one backing off is skipped; when a run fails, every shard not yet done backs off and the
        background drainer, which drains shard by shard, takes them (and so isolates a bad message).
        Works at most ``budget_s`` when given. Returns messages done."""
        stop = None if budget_s is None else time.monotonic() + budget_s
        claim = self._claim_many(bounds, respect_schedule=respect_schedule)
        return self._deliver(claim, handler, stop=stop, back_off=back_off, raise_errors=raise_errors)

    def _deliver(
        self, claim: _Claim, handler: Handler, *, stop: float | None, back_off: bool, raise_errors: bool
    ) -> int:
        """Hand the claimed shards' messages to ``handler`` in runs, deleting each run once it succeeded
        and renewing the claim on the rest once a third of the lease has passed (renewing after every run
        would rewrite the rest once per run); release what is left at the end. Returns messages done."""
        if not claim.bounds:
            return 0
        done = 0
        ours = set(claim.ids)
        renew_after = self._lease.total_seconds() / 3
        renewed = time.monotonic()
        try:
            order = self._interleaved(claim.bounds)
            for start, end in self._runs(order):
                run = order[start:end]
                try:
                    handler([group[-1] for group in run])
                except Exception as exc:
                    _LOGGER.warning("outbox: delivery failed (%s); the shards back off", exc)
                    for shard in {group[0].shard for group in order[start:]} if back_off else ():
                        self._back_off(shard)
                    if raise_errors:
                        raise
                    return done
                handled = [m.id for group in run for m in group]
                ours.difference_update(handled)
                renew = time.monotonic() - renewed > renew_after
                self._delete(handled, renew=sorted(ours) if renew else ())
                if renew:
                    renewed = time.monotonic()
                done += len(run)
                if stop is not None and time.monotonic() > stop:
                    return done
            return done
        finally:
            self._release_ids(sorted(ours))

    def _runs(self, order: Sequence[Sequence[Message]]) -> Iterator[tuple[int, int]]:
        """(start, end) of consecutive runs of at most ``batch`` messages and, unless one message alone
        lists more, ``batch_objects`` objects (a run must end well within the lease)."""
        start, objects = 0, 0
        for position, group in enumerate(order):
            listed = len(group[-1].object_ids)
            if position > start and (position - start >= self.batch or objects + listed > self.batch_objects):
                yield start, position
                start, objects = position, 0
            objects += listed
        if start < len(order):
            yield start, len(order)

    def _claim_many(self, bounds: Mapping[Shard, int], *, respect_schedule: bool = True) -> _Claim:
        """Claim every shard that is free and due, up to its bound, in one transaction."""
        c, now = self._table.c, self._clock()
        claimed: dict[Shard, int] = {}
        stamp: list[int] = []
        busy: set[Shard] = set()
        with self._engine.begin() as connection:
            for destination, scope, where in self._shard_sets(bounds):
                query = select(c.id, c.shard_id, c.scheduled_for, c.claimed_until).where(where).order_by(c.id)
                present: dict[int, list[int]] = {}
                if connection.dialect.name == "postgresql":
                    rows = connection.execute(query.with_for_update(skip_locked=True)).all()
                    for i, shard_id in connection.execute(select(c.id, c.shard_id).where(where)):
                        present.setdefault(shard_id, []).append(i)
                else:  # SQLite: this transaction holds the single writer lock
                    rows = connection.execute(query).all()
                per_shard: dict[int, list[Any]] = {}
                for r in rows:
                    per_shard.setdefault(r.shard_id, []).append(r)
                # Rows there that another drainer holds locked right now: the shard is busy.
                busy.update(Shard(destination, scope, i) for i in present if i not in per_shard)
                for shard_id, shard_rows in per_shard.items():
                    shard = Shard(destination, scope, shard_id)
                    top = shard_rows[-1].id
                    locked = {r.id for r in shard_rows}
                    if any(i not in locked for i in present.get(shard_id, ()) if i <= top):
                        busy.add(shard)  # another drainer is claiming it
                        continue
                    mine = [r for r in shard_rows if r.id <= bounds[shard]]
                    if not mine or (respect_schedule and _aware(mine[0].scheduled_for) > now):
                        continue  # nothing up to the bound, or backing off
                    if any(r.claimed_until is not None and _aware(r.claimed_until) > now for r in mine):
                        busy.add(shard)  # claimed by a live drainer
                        continue
                    claimed[shard] = mine[-1].id
                    stamp.extend(r.id for r in mine)
            for condition in among_parts(self._dialect, c.id, stamp):
                connection.execute(
                    update(self._table).where(condition).values(claimed_until=now + self._lease)
                )
        return _Claim(claimed, stamp, busy)

    def _interleaved(self, claimed: Mapping[Shard, int]) -> list[list[Message]]:
        """Every claimed shard's coalesced groups, interleaved round by round (each shard's order kept);
        read with one query per destination and scope."""
        c = self._table.c
        per_shard: dict[Shard, dict[tuple[int, int, int], list[Message]]] = {
            shard: {} for shard in sorted(claimed)
        }
        with self._engine.connect() as connection:
            for destination, scope, where in self._shard_sets(claimed):
                rows = connection.execute(
                    select(c.id, c.shard_id, c.category, c.object_id, c.payload, c.attempts)
                    .where(where)
                    .order_by(c.id)
                )
                for r in rows:
                    shard = Shard(destination, scope, r.shard_id)
                    if r.id > claimed[shard]:
                        continue
                    payload = json.loads(r.payload) if r.payload else None
                    message = Message(
                        r.id, shard, OutboxCategory(r.category), r.object_id, payload, r.attempts
                    )
                    per_shard[shard].setdefault(message.coalesces_as, []).append(message)
        # dicts keep insertion order: groups come in the order of their oldest message
        groups = [list(found.values()) for found in per_shard.values()]
        order: list[list[Message]] = []
        for position in range(max((len(g) for g in groups), default=0)):
            order.extend(shard_groups[position] for shard_groups in groups if position < len(shard_groups))
        return order

    def drain_shard(
        self,
        shard: Shard,
        handler: Handler,
        *,
        up_to: int | None = None,
        respect_schedule: bool = False,
        deadline: float | None = None,
    ) -> int:
        """Process one shard's messages (ids up to ``up_to``, if given) in order; returns how many. With
        a ``deadline`` (``time.monotonic()``), stop between runs once it has passed and leave the rest.

        Raises :class:`ShardBusy` when another drainer holds the shard, and the handler's error when a
        run fails (the shard then waits with backoff)."""
        bound = up_to if up_to is not None else self.last_id([shard]).get(shard)
        if bound is None:
            return 0
        claim = self._claim_many({shard: bound}, respect_schedule=respect_schedule)
        if shard in claim.busy:
            raise ShardBusy(str(shard))
        return self._deliver(claim, handler, stop=deadline, back_off=True, raise_errors=True)

    def _delete(self, ids: Sequence[int], *, renew: Sequence[int] = ()) -> None:
        """Delete handled messages and renew the claim on ``renew`` (the rest of ours) in one transaction."""
        c, now = self._table.c, self._clock()
        with self._engine.begin() as connection:
            for condition in among_parts(self._dialect, c.id, ids):
                connection.execute(delete(self._table).where(condition))
            for condition in among_parts(self._dialect, c.id, renew):
                connection.execute(
                    update(self._table).where(condition).values(claimed_until=now + self._lease)
                )

    def _release_ids(self, ids: Sequence[int]) -> None:
        """Give up our claim on these rows (never on rows another drainer claimed since)."""
        c = self._table.c
        with self._engine.begin() as connection:
            for condition in among_parts(self._dialect, c.id, ids):
                connection.execute(update(self._table).where(condition).values(claimed_until=None))

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
