"""Control writing import batches in worker processes (``control serve --write-workers``): the same
answers and the same typed errors as in its own process, a worker's death is a retryable error the pool
recovers from, and SQLite is refused with a clear message. PostgreSQL only, as the option is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from control.db.models import RELOCATION_TABLES as CONTROL_TABLES
from shared.db.engine import make_engine
from shared.relocation.batch import Batch, BatchOptions, Row
from shared.relocation.spec import ImportScope
from shared.rpc.client import PeerClient
from shared.rpc.errors import RemoteError
from shared.rpc.relocation import batch_to_proto, result_from_proto
from shared.rpc.v1 import control_pb2
from tests.conftest import PostgresServer
from tests.helpers import SECRET, Silos, assert_typed_batch_errors, eventually, rpc, running_silos

pytestmark = pytest.mark.e2e
USERS = CONTROL_TABLES["sentry.user"]


@pytest.fixture
def silos(postgres: PostgresServer, tmp_path: Path) -> Iterator[tuple[Silos, str]]:
    control_db = postgres.create_database("control")
    with running_silos(
        control_db, postgres.create_database("region"), tmp_path, control_extra=["--write-workers", "2"]
    ) as running:
        assert "2 write worker(s) ready" in (tmp_path / "control.log").read_text()
        yield running, control_db


def users_batch(import_id: str, *names: str, first: int = 1) -> Batch:
    rows = tuple(
        Row(first + i, 100 + first + i, {"username": name, "password": "x", "email": f"{name}@example.com"})
        for i, name in enumerate(names)
    )
    return Batch("sentry.user", first, rows, BatchOptions(import_id, ImportScope.GLOBAL, fresh=True))


def send(client: PeerClient, batch: Batch) -> control_pb2.ImportModelBatchResponse:
    answer: control_pb2.ImportModelBatchResponse = client.call(
        "ImportModelBatch", batch_to_proto(batch), control_pb2.ImportModelBatchResponse, timeout=30
    )
    return answer


def count_users(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(USERS)).scalar_one())
    finally:
        engine.dispose()


def workers_of(pid: int) -> list[int]:
    """The write workers: the control process's children that run multiprocessing's spawn entry point
    (not its resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in command:
                found.append(int(child))
    return found


def test_batches_written_by_workers_answer_and_replay_as_in_process(silos: tuple[Silos, str]) -> None:
    running, control_db = silos
    client = running.control_client()
    try:
        batch = users_batch("workers-replay", "alice", "bob", "carol")
        first = result_from_proto(send(client, batch))
        again = result_from_proto(send(client, batch))
        later = result_from_proto(send(client, users_batch("workers-replay", "dave", first=4)))
    finally:
        client.close()
    assert not first.replayed and again.replayed
    assert again.entries == first.entries
    assert [e.old_pk for e in first.entries] == [101, 102, 103]
    assert [e.value for e in first.entries] == ["alice", "bob", "carol"]
    assert [e.old_pk for e in later.entries] == [104]
    assert count_users(control_db) == 4


def test_errors_raised_in_a_worker_keep_their_status_reason_and_detail(silos: tuple[Silos, str]) -> None:
    running, control_db = silos
    client = running.control_client()
    try:
        with pytest.raises(RemoteError) as refused:
            send(client, users_batch("workers-errors", "fine", "x" * 300))
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.reason == "write_refused"
        assert refused.value.detail.fields["ordinal"] == "2"
        assert "sentry.user #2 (pk 102): field 'username'" in refused.value.message
        assert_typed_batch_errors(client)
    finally:
        client.close()
    assert count_users(control_db) == 0  # the refused batch rolled back whole


def test_a_dead_worker_is_a_retryable_error_and_new_workers_take_over(silos: tuple[Silos, str]) -> None:
    running, control_db = silos
    workers = workers_of(running.control.process.pid)
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    client = running.control_client(rpc(max_attempts=1))
    try:
        with pytest.raises(RemoteError) as lost:
            send(client, users_batch("workers-lost", "erin"))
        assert lost.value.code == grpc.StatusCode.UNAVAILABLE
        assert lost.value.reason == "worker_lost"
        assert "send the batch again" in lost.value.message
        # The same batch again: written by the new workers.
        answer = result_from_proto(send(client, users_batch("workers-lost", "erin")))
    finally:
        client.close()
    assert [e.value for e in answer.entries] == ["erin"]
    assert count_users(control_db) == 1
    replaced = eventually(lambda: _two(workers_of(running.control.process.pid)))
    assert not set(replaced) & set(workers)
    assert running.control.stop() == 0


def test_workers_leave_when_control_is_killed_outright(silos: tuple[Silos, str]) -> None:
    running, _control_db = silos
    workers = workers_of(running.control.process.pid)
    assert len(workers) == 2
    running.control.process.send_signal(signal.SIGKILL)
    running.control.process.wait(10)
    eventually(lambda: _gone(workers), timeout_s=10)


def _gone(pids: list[int]) -> None:
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # reaped
        assert state == "Z", f"write worker {pid} still runs (state {state})"


def _two(pids: list[int]) -> list[int]:
    assert len(pids) == 2
    return pids


def test_write_workers_on_sqlite_are_refused_with_a_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "control",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            f"sqlite:///{tmp_path}/control.sqlite3",
            "--rpc-secrets",
            SECRET,
            "--write-workers",
            "2",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("SILOPORT_")},
    )
    assert result.returncode != 0
    assert "--write-workers needs PostgreSQL" in result.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "control", "serve", "--write-workers", "many"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--write-workers: not a whole number: 'many'" in bad.stderr
