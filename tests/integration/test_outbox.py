"""The outbox on both databases: same-transaction writes, order, coalescing, delete after success,
backoff, claims outside transactions, and one drainer per shard at a time."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from region.db.models import REGION_OUTBOX
from region.db.schema import MIGRATIONS
from shared.db.delivery import BackgroundDelivery
from shared.db.engine import make_engine
from shared.db.outbox import (
    IDS,
    LEASE,
    MAX_BACKOFF,
    Message,
    Outbox,
    OutboxCategory,
    OutboxScope,
    Shard,
    ShardBusy,
    each,
    enqueue,
    enqueue_many,
)
from shared.db.unit_of_work import UnitOfWork
from tests.conftest import MigratedEngineFactory, PostgresServer

ORG = OutboxCategory.ORGANIZATION_UPDATE
MEMBER = OutboxCategory.ORGANIZATION_MEMBER_UPDATE


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(migrated_engine: MigratedEngineFactory) -> Engine:
    return migrated_engine("region", MIGRATIONS)


def shard(shard_id: int = 1) -> Shard:
    return Shard("", OutboxScope.ORGANIZATION, shard_id)


def rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(REGION_OUTBOX)).scalar_one())


def test_a_message_commits_or_rolls_back_with_its_change(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as connection:
        enqueue(connection, REGION_OUTBOX, shard(), ORG, 1)
        raise RuntimeError("the change failed")
    assert rows(engine) == 0
    with engine.begin() as connection:
        enqueue(connection, REGION_OUTBOX, shard(), ORG, 1)
    assert rows(engine) == 1


def test_many_messages_written_at_once_keep_their_order_payloads_and_defaults(engine: Engine) -> None:
    """One call writes them all (COPY on PostgreSQL): ids follow the given order across shards, and
    the columns a message does not set take their defaults."""
    given: list[tuple[Shard, OutboxCategory, int, dict[str, Any] | None]] = [
        (shard(i % 3), MEMBER if i % 2 else ORG, 100 + i, {IDS: [i, i + 1], "é": "\t\n\\"}) for i in range(50)
    ]
    given.append((shard(9), ORG, 1, None))
    with engine.begin() as connection:
        enqueue_many(connection, REGION_OUTBOX, given)
    c = REGION_OUTBOX.c
    with engine.connect() as connection:
        stored = connection.execute(
            select(
                c.shard_id, c.category, c.object_id, c.payload, c.attempts, c.claimed_until, c.date_added
            ).order_by(c.id)
        ).all()
    assert [(r.shard_id, r.category, r.object_id) for r in stored] == [
        (s.shard_id, int(category), object_id) for s, category, object_id, _payload in given
    ]
    assert [None if r.payload is None else json.loads(r.payload) for r in stored] == [p for *_, p in given]
    assert {(r.attempts, r.claimed_until) for r in stored} == {(0, None)}
    assert all(r.date_added is not None for r in stored)


def test_order_coalescing_and_delete_after_success(engine: Engine) -> None:
    with engine.begin() as connection:
        enqueue(connection, REGION_OUTBOX, shard(), ORG, 1, payload={"v": 1})
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 7, payload={"v": 2})
        enqueue(connection, REGION_OUTBOX, shard(), ORG, 1, payload={"v": 3})
        enqueue(connection, REGION_OUTBOX, shard(2), ORG, 2, payload={"v": 4})
    seen: list[tuple[OutboxCategory, int, object]] = []
    outbox = Outbox(engine, REGION_OUTBOX)
    assert outbox.drain_shard(shard(), each(lambda m: seen.append((m.category, m.object_id, m.payload)))) == 2
    assert seen == [(ORG, 1, {"v": 3}), (MEMBER, 7, {"v": 2})]  # the newest of a group stands for it
    assert rows(engine) == 1  # shard 2 untouched


def test_a_drain_after_commit_is_bounded_and_later_messages_survive(engine: Engine) -> None:
    with engine.begin() as connection:
        enqueue(connection, REGION_OUTBOX, shard(), ORG, 1)
    outbox = Outbox(engine, REGION_OUTBOX)
    bound = outbox.last_id([shard()])[shard()]

    def handler(message: Message) -> None:
        with engine.begin() as connection:  # a message written while handling (no transaction is open here)
            enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 9)

    assert outbox.drain_shard(shard(), each(handler), up_to=bound) == 1
    assert rows(engine) == 1


def test_a_handler_gets_runs_of_coalesced_messages_in_order(engine: Engine) -> None:
    with engine.begin() as connection:
        for object_id in (1, 2, 1, 3, 4, 2, 5):
            enqueue(connection, REGION_OUTBOX, shard(), MEMBER, object_id, payload={"n": object_id})
    runs: list[list[int]] = []
    outbox = Outbox(engine, REGION_OUTBOX, batch=2)
    assert outbox.drain_shard(shard(), lambda ms: runs.append([m.object_id for m in ms])) == 5
    # Groups in order of their oldest message, at most two per run; 1 and 2 coalesced.
    assert runs == [[1, 2], [3, 4], [5]]
    assert rows(engine) == 0


def test_a_message_listing_many_objects_is_never_coalesced(engine: Engine) -> None:
    with engine.begin() as connection:
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 5)
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 5, payload={IDS: [5, 6, 7]})
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 5, payload={IDS: [5, 8]})
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 5)  # coalesces with the first only
    runs: list[list[list[int]]] = []
    Outbox(engine, REGION_OUTBOX).drain_shard(shard(), lambda ms: runs.append([m.object_ids for m in ms]))
    assert runs == [[[5], [5, 6, 7], [5, 8]]]
    assert rows(engine) == 0


def test_runs_are_cut_by_the_objects_their_messages_list(engine: Engine) -> None:
    with engine.begin() as connection:
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 1, payload={IDS: [1, 2, 3]})
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 4, payload={IDS: [4, 5, 6]})
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 7)
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 8, payload={IDS: list(range(8, 20))})
    runs: list[list[list[int]]] = []
    outbox = Outbox(engine, REGION_OUTBOX, batch_objects=5)
    outbox.drain_shard(shard(), lambda ms: runs.append([m.object_ids for m in ms]))
    # A run holds at most 5 objects, except a message listing more, which goes alone.
    assert runs == [[[1, 2, 3]], [[4, 5, 6], [7]], [list(range(8, 20))]]


def test_a_unit_of_work_rolls_back_unless_committed(engine: Engine) -> None:
    outbox = Outbox(engine, REGION_OUTBOX)
    with UnitOfWork(engine, outbox, each(lambda m: None)) as work:
        work.enqueue(shard(), ORG, 1)
    with pytest.raises(RuntimeError), UnitOfWork(engine, outbox) as work:
        work.enqueue(shard(), ORG, 1)
        work.commit(drain=False)
        work.enqueue(shard(), ORG, 2)  # after the commit: a new transaction, which is not committed
        raise RuntimeError("the change failed")
    with engine.connect() as connection:
        assert connection.execute(select(REGION_OUTBOX.c.object_id)).scalars().all() == [1]


def test_a_unit_of_work_delivers_its_shards_after_commit_up_to_what_existed(engine: Engine) -> None:
    outbox = Outbox(engine, REGION_OUTBOX)
    handled: list[int] = []

    def handler(message: Message) -> None:
        handled.append(message.object_id)
        if message.object_id == 1:  # a message the handler writes is past the bound: left for later
            with engine.begin() as connection:
                enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 99)

    with UnitOfWork(engine, outbox, each(handler)) as work:
        work.enqueue(shard(), ORG, 1)
        work.enqueue_many([(shard(2), ORG, 2, None), (shard(2), MEMBER, 3, None)])
        bounds = work.commit()
    assert set(bounds) == {shard(), shard(2)}
    assert handled == [1, 2, 3]
    with engine.connect() as connection:
        assert connection.execute(select(REGION_OUTBOX.c.object_id)).scalars().all() == [99]


def test_delivery_after_commit_takes_many_shards_in_few_runs_each_in_order(engine: Engine) -> None:
    outbox = Outbox(engine, REGION_OUTBOX, batch=4)
    runs: list[list[tuple[int, int]]] = []
    with UnitOfWork(
        engine, outbox, lambda ms: runs.append([(m.shard.shard_id, m.object_id) for m in ms])
    ) as work:
        work.enqueue_many([(shard(s), MEMBER, 10 * s + i, None) for s in (1, 2) for i in range(3)])
        work.enqueue(shard(1), MEMBER, 10)  # coalesces with the first message of shard 1
        work.commit()
    assert runs == [[(1, 10), (2, 20), (1, 11), (2, 21)], [(1, 12), (2, 22)]]
    assert rows(engine) == 0


def test_a_failed_delivery_after_commit_keeps_the_commit_and_backs_off(engine: Engine) -> None:
    outbox = Outbox(engine, REGION_OUTBOX)

    def fail(message: Message) -> None:
        raise ConnectionError("control is down")

    with UnitOfWork(engine, outbox, each(fail)) as work:
        work.enqueue(shard(), ORG, 1)
        work.commit()
    with engine.connect() as connection:
        attempts, due = connection.execute(
            select(REGION_OUTBOX.c.attempts, REGION_OUTBOX.c.scheduled_for)
        ).one()
    assert attempts == 1
    assert (due if due.tzinfo else due.replace(tzinfo=UTC)) > datetime.now(UTC)


def test_background_delivery_delivers_every_commit_in_order_while_the_writer_goes_on(
    engine: Engine,
) -> None:
    outbox = Outbox(engine, REGION_OUTBOX)
    handled: list[tuple[int, int]] = []
    release = threading.Event()

    def handler(messages: Sequence[Message]) -> None:
        release.wait(10)  # the first drain is held up: the writer must not wait for it
        handled.extend((m.shard.shard_id, m.object_id) for m in messages)

    with BackgroundDelivery(outbox, handler) as delivery:
        for batch in range(5):
            with UnitOfWork(engine, outbox, handler, delivery=delivery) as work:
                work.enqueue_many([(shard(s), MEMBER, 100 * batch + s, None) for s in (1, 2)])
                work.commit()
        assert handled == []  # every commit returned while the first delivery was still held up
        release.set()
        assert delivery.settle(10)
        # Commits that arrived during a drain were merged into the next one.
        assert 1 <= delivery.drains < 5
        assert delivery.delivered == 10
    for shard_id in (1, 2):
        assert [o for s, o in handled if s == shard_id] == [100 * b + shard_id for b in range(5)]
    assert rows(engine) == 0


def test_background_delivery_waits_when_too_many_commits_are_pending(engine: Engine) -> None:
    outbox = Outbox(engine, REGION_OUTBOX)
    release = threading.Event()

    def held(messages: Sequence[Message]) -> None:
        release.wait(10)

    with BackgroundDelivery(outbox, held, max_waiting=1) as delivery:
        for batch in range(2):  # the first is being drained, the second waits
            with UnitOfWork(engine, outbox, delivery=delivery) as work:
                work.enqueue(shard(), MEMBER, batch)
                work.commit()
        submitted = threading.Event()

        def third() -> None:
            with UnitOfWork(engine, outbox, delivery=delivery) as work:
                work.enqueue(shard(), MEMBER, 3)
                work.commit()
            submitted.set()

        writer = threading.Thread(target=third)
        writer.start()
        assert not submitted.wait(0.5)  # held back: one commit is already waiting
        release.set()
        assert submitted.wait(10)
        writer.join()
    assert rows(engine) == 0


def test_closing_a_busy_background_delivery_gives_up_after_its_timeout_and_can_start_again(
    engine: Engine,
) -> None:
    outbox = Outbox(engine, REGION_OUTBOX)
    release = threading.Event()
    handled: list[int] = []

    def held(messages: Sequence[Message]) -> None:
        release.wait(10)
        handled.extend(m.object_id for m in messages)

    delivery = BackgroundDelivery(outbox, held, max_waiting=1)
    for object_id in (1, 2):  # the first is being drained, the second waits for the next drain
        with UnitOfWork(engine, outbox, delivery=delivery) as work:
            work.enqueue(shard(object_id), MEMBER, object_id)
            work.commit()
    assert delivery.close(timeout_s=0.3) is False  # a drain is stuck: close does not wait for it
    release.set()
    with UnitOfWork(engine, outbox, delivery=delivery) as work:  # a new thread takes what was left
        work.enqueue(shard(3), MEMBER, 3)
        work.commit()
    assert delivery.close(timeout_s=10) is True
    assert sorted(handled) == [1, 2, 3]
    assert rows(engine) == 0


def test_a_failed_background_delivery_keeps_the_commit_and_backs_off(engine: Engine) -> None:
    outbox = Outbox(engine, REGION_OUTBOX)

    def fail(messages: Sequence[Message]) -> None:
        raise ConnectionError("control is down")

    with BackgroundDelivery(outbox, fail) as delivery:
        with UnitOfWork(engine, outbox, delivery=delivery) as work:
            work.enqueue(shard(), ORG, 1)
            work.commit()
        assert delivery.settle(10)
        assert delivery.delivered == 0
    with engine.connect() as connection:
        assert connection.execute(select(REGION_OUTBOX.c.object_id, REGION_OUTBOX.c.attempts)).all() == [
            (1, 1)
        ]
    assert outbox.due_shards() == []  # backing off: the background drainer takes it later


def test_the_sweep_isolates_a_shard_whose_message_fails(engine: Engine) -> None:
    with engine.begin() as connection:
        for shard_id in (1, 2, 3):
            enqueue(connection, REGION_OUTBOX, shard(shard_id), MEMBER, shard_id)
    outbox = Outbox(engine, REGION_OUTBOX)
    handled: list[int] = []

    def handler(messages: Sequence[Message]) -> None:
        if any(m.object_id == 2 for m in messages):
            raise ValueError("a message control refuses")
        handled.extend(m.object_id for m in messages)

    # The run over all three shards fails; shard by shard, only shard 2 fails and backs off.
    assert outbox.drain_due(handler) == 2
    assert sorted(handled) == [1, 3]
    with engine.begin() as connection:
        assert connection.execute(select(REGION_OUTBOX.c.shard_id, REGION_OUTBOX.c.attempts)).all() == [
            (2, 1)
        ]
        enqueue(connection, REGION_OUTBOX, shard(2), MEMBER, 9)
    # A new message does not make a backing-off shard due: the shard backs off as a whole.
    assert outbox.due_shards() == []


def test_failure_keeps_the_message_and_backs_off_up_to_an_hour(engine: Engine) -> None:
    clock = Clock()
    with engine.begin() as connection:
        enqueue(connection, REGION_OUTBOX, shard(), ORG, 1)
        enqueue(connection, REGION_OUTBOX, shard(), MEMBER, 2)
    outbox = Outbox(engine, REGION_OUTBOX, clock=clock)

    def fail(message: Message) -> None:
        raise ConnectionError("control is down")

    delays = []
    for _ in range(14):
        with pytest.raises(ConnectionError):
            outbox.drain_shard(shard(), each(fail))
        with engine.connect() as connection:
            due = connection.execute(select(func.min(REGION_OUTBOX.c.scheduled_for))).scalar_one()
        due = due if due.tzinfo else due.replace(tzinfo=UTC)
        delays.append(due - clock.now)
        assert outbox.drain_due(each(fail)) == 0  # not due yet: the sweeper leaves it alone
        clock.now = due
    assert delays[:3] == [timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=4)]
    assert max(delays) == MAX_BACKOFF
    assert rows(engine) == 2
    handled: list[int] = []
    assert outbox.drain_due(each(lambda m: handled.append(m.object_id))) == 2
    assert handled == [1, 2] and rows(engine) == 0


def test_a_claimed_shard_is_busy_until_its_claim_expires(engine: Engine) -> None:
    clock = Clock()
    with engine.begin() as connection:
        enqueue(connection, REGION_OUTBOX, shard(), ORG, 1)
    first, second = Outbox(engine, REGION_OUTBOX, clock=clock), Outbox(engine, REGION_OUTBOX, clock=clock)
    assert first._claim_many(first.last_id([shard()])).bounds  # then the drainer "dies"
    with pytest.raises(ShardBusy):
        second.drain_shard(shard(), each(lambda m: None))
    assert second.due_shards() == []
    clock.now += LEASE + timedelta(seconds=1)
    assert second.drain_shard(shard(), each(lambda m: None)) == 1


def test_a_long_drain_renews_its_claim_on_the_shards_it_has_not_reached(engine: Engine) -> None:
    with engine.begin() as connection:
        for shard_id in (1, 2, 3, 4):
            enqueue(connection, REGION_OUTBOX, shard(shard_id), MEMBER, shard_id)
    lease = timedelta(seconds=0.4)
    first = Outbox(engine, REGION_OUTBOX, batch=1, lease=lease)
    second = Outbox(engine, REGION_OUTBOX, lease=lease)
    seen: list[int] = []

    def slow(messages: Sequence[Message]) -> None:
        seen.extend(m.object_id for m in messages)
        time.sleep(0.2)
        if len(seen) == 3:  # 0.4 s in: past the first claim's lease, so only a renewal keeps shard 4
            with pytest.raises(ShardBusy):
                second.drain_shard(shard(4), each(lambda m: None))

    assert first.drain_committed(first.last_id([shard(i) for i in (1, 2, 3, 4)]), slow) == 4
    assert seen == [1, 2, 3, 4] and rows(engine) == 0


DRAINER = textwrap.dedent("""
    import json, os, sys, time
    from region.db.models import REGION_OUTBOX
    from shared.db.engine import make_engine
    from shared.db.outbox import Outbox, each
    engine = make_engine(sys.argv[1])
    outbox = Outbox(engine, REGION_OUTBOX)
    log = open(sys.argv[2], "a")
    def handler(message):
        start = time.monotonic()
        time.sleep(0.05)
        event = [os.getpid(), message.shard.shard_id, message.object_id, start, time.monotonic()]
        log.write(json.dumps(event) + "\\n")
        log.flush()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if outbox.drain_due(each(handler), limit=2) == 0 and not outbox.due_shards():
            break
""")


@pytest.mark.postgresql
def test_two_drainer_processes_never_hold_the_same_shard(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.create_database("outbox")
    engine = make_engine(url)
    MIGRATIONS.upgrade(engine)
    with engine.begin() as connection:
        for shard_id in range(1, 9):
            for object_id in range(12):
                enqueue(connection, REGION_OUTBOX, shard(shard_id), MEMBER, object_id)
    log = tmp_path / "log.jsonl"
    processes = [subprocess.Popen([sys.executable, "-c", DRAINER, url, str(log)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((e[1], e[2]) for e in events) == sorted((s, o) for s in range(1, 9) for o in range(12))
    assert len({e[0] for e in events}) == 2, "both drainers should have worked"
    for shard_id in range(1, 9):
        spans = sorted((e[3], e[4], e[0]) for e in events if e[1] == shard_id)
        for (_start, end, pid), (next_start, _end, next_pid) in itertools.pairwise(spans):
            assert pid == next_pid or next_start >= end, f"shard {shard_id} drained by two processes at once"
        assert [e[2] for e in sorted((e for e in events if e[1] == shard_id), key=lambda e: e[3])] == list(
            range(12)
        ), "messages of a shard are handled in order"
    assert rows(engine) == 0
    engine.dispose()
