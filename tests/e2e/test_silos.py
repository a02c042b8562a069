"""Both silos as real subprocesses on loopback ports, on SQLite and on PostgreSQL."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select

from control.db.models import RELOCATION_TABLES as CONTROL_TABLES
from shared.db.engine import make_engine
from shared.launcher import SiloProcess, free_port, health_status
from shared.relocation.batch import Batch, BatchOptions, BatchResult, Row
from shared.relocation.spec import ImportScope
from shared.rpc.auth import Signer
from shared.rpc.client import PeerClient
from shared.rpc.errors import (
    RemoteDeadlineExceeded,
    RemoteError,
    RemoteUnauthenticated,
    RemoteUnavailable,
)
from shared.rpc.relocation import batch_to_proto, result_from_proto
from shared.rpc.v1 import common_pb2, control_pb2
from tests.conftest import DatabaseFactory
from tests.helpers import (
    CONTROL_SERVICE,
    REGION_SERVICE,
    SECRET,
    assert_typed_batch_errors,
    eventually,
    rpc,
    running_silos,
    start_control,
    start_region,
)

pytestmark = pytest.mark.e2e


def hops(answer: common_pb2.PingResponse) -> list[str]:
    return [f"{h.silo}:{h.name}" if h.name else h.silo for h in answer.path]


def test_health_and_round_trip_region_control_region(make_database: DatabaseFactory, tmp_path: Path) -> None:
    with running_silos(make_database("control"), make_database("region"), tmp_path) as silos:
        assert health_status(silos.control.address) == "SERVING"
        assert health_status(silos.region.address) == "SERVING"
        client = silos.region_client()
        answer = client.call("Ping", common_pb2.PingRequest(bounces=2), common_pb2.PingResponse, timeout=10)
        assert hops(answer) == ["region:eu", "control", "region:eu"]
        # Many round trips at once: each waits on control while control's callback is served by
        # another region thread.
        results: list[list[str]] = []

        def one() -> None:
            reply = client.call(
                "Ping", common_pb2.PingRequest(bounces=4), common_pb2.PingResponse, timeout=20
            )
            results.append(hops(reply))

        threads = [threading.Thread(target=one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [["region:eu", "control", "region:eu", "control", "region:eu"]] * 6
        client.close()


def raw_call(
    address: str, method: str, body: bytes, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        try:
            stub(body, timeout=10, metadata=metadata)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
        return grpc.StatusCode.OK


def test_unsigned_wrongly_signed_and_replayed_calls_are_refused_in_both_directions(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    with running_silos(make_database("control"), make_database("region"), tmp_path) as silos:
        body = common_pb2.PingRequest().SerializeToString()
        for address, service in (
            (silos.control.address, CONTROL_SERVICE),
            (silos.region.address, REGION_SERVICE),
        ):
            method = f"/{service.full_name}/Ping"
            assert raw_call(address, method, body, ()) == grpc.StatusCode.UNAUTHENTICATED
            wrong = Signer([b"not-the-secret-at-all"]).metadata(method, body)
            assert raw_call(address, method, body, wrong) == grpc.StatusCode.UNAUTHENTICATED
            stale = Signer([SECRET.encode()], clock=lambda: time.time() - 3600).metadata(method, body)
            assert raw_call(address, method, body, stale) == grpc.StatusCode.UNAUTHENTICATED
            good = Signer([SECRET.encode()]).metadata(method, body)
            assert raw_call(address, method, body, good) == grpc.StatusCode.OK
            assert raw_call(address, method, body, good) == grpc.StatusCode.UNAUTHENTICATED  # replay
            other_body = common_pb2.PingRequest(bounces=0, origin_region="x").SerializeToString()
            fresh = Signer([SECRET.encode()]).metadata(method, body)
            assert raw_call(address, method, other_body, fresh) == grpc.StatusCode.UNAUTHENTICATED
            # The standard health service stays open to probes.
            with grpc.insecure_channel(address) as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
        # The typed error carries the server's reason.
        with pytest.raises(RemoteUnauthenticated, match="signature does not match"):
            silos.control_client(rpc("a-different-secret-entirely")).call(
                "Ping", common_pb2.PingRequest(), common_pb2.PingResponse, timeout=5
            )


def test_control_refuses_a_region_signing_with_another_secret(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    with running_silos(
        make_database("control"), make_database("region"), tmp_path, region_secrets="region-only-secret-xyz"
    ) as silos:
        client = silos.region_client(rpc("region-only-secret-xyz"))
        with pytest.raises(RemoteUnauthenticated) as caught:
            client.call("Ping", common_pb2.PingRequest(bounces=2), common_pb2.PingResponse, timeout=10)
        assert "/siloport.v1.ControlService/Ping" in str(caught.value) or "signature" in caught.value.message
        client.close()


def test_rotated_secrets_interoperate(make_database: DatabaseFactory, tmp_path: Path) -> None:
    old, new = "old-secret-0123456789", "new-secret-0123456789"
    with running_silos(
        make_database("control"),
        make_database("region"),
        tmp_path,
        control_secrets=f"{old},{new}",
        region_secrets=f"{new},{old}",
    ) as silos:
        answer = silos.region_client(rpc(old)).call(
            "Ping", common_pb2.PingRequest(bounces=2), common_pb2.PingResponse, timeout=10
        )
        assert hops(answer) == ["region:eu", "control", "region:eu"]


def test_control_down_fails_within_the_deadline_then_recovers(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    control_port, region_port = free_port(), free_port()
    region = start_region(
        make_database("region"),
        tmp_path,
        name="eu",
        control_address=f"127.0.0.1:{control_port}",
        listen=f"127.0.0.1:{region_port}",
    )
    control: SiloProcess | None = None
    try:
        region.wait_healthy()
        client = PeerClient(region.address, REGION_SERVICE, settings=rpc(max_attempts=1), peer="region")
        started = time.monotonic()
        with pytest.raises(RemoteUnavailable) as caught:
            client.call("Ping", common_pb2.PingRequest(bounces=2), common_pb2.PingResponse, timeout=8)
        elapsed = time.monotonic() - started
        assert elapsed < 8
        assert (
            f"control at 127.0.0.1:{control_port} is unavailable after 5 attempt(s)" in caught.value.message
        )

        # A short outer deadline bounds the region's own retries too.
        started = time.monotonic()
        with pytest.raises((RemoteUnavailable, RemoteDeadlineExceeded)):
            client.call("Ping", common_pb2.PingRequest(bounces=2), common_pb2.PingResponse, timeout=0.5)
        assert time.monotonic() - started < 1.5

        control = start_control(
            make_database("control"),
            tmp_path,
            regions=f"eu=127.0.0.1:{region_port}",
            listen=f"127.0.0.1:{control_port}",
        )
        control.wait_healthy()
        answer = eventually(
            lambda: client.call(
                "Ping", common_pb2.PingRequest(bounces=2), common_pb2.PingResponse, timeout=8
            ),
            timeout_s=10,
        )
        assert hops(answer) == ["region:eu", "control", "region:eu"]
        client.close()
    finally:
        region.stop()
        if control is not None:
            control.stop()


def test_unknown_region_and_malformed_batches_are_typed_errors(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    with running_silos(make_database("control"), make_database("region"), tmp_path) as silos:
        control = silos.control_client()
        with pytest.raises(RemoteError) as caught:
            control.call(
                "Ping", common_pb2.PingRequest(bounces=1, origin_region="mars"), common_pb2.PingResponse
            )
        assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert caught.value.reason == "unknown_region"
        assert "region 'mars' is not configured" in caught.value.message
        assert caught.value.detail.fields["region"] == "mars"
        drained = control.call("DrainOutbox", common_pb2.DrainOutboxRequest(), common_pb2.DrainOutboxResponse)
        assert drained.processed == 0
        assert_typed_batch_errors(control)


def test_a_first_runs_batch_recorded_already_is_replayed_by_control(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    """A first run does not look its batches up; control, given one it has recorded (the same import id
    sent again), answers with the record and writes nothing twice."""
    control_db = make_database("control")
    rows = tuple(
        Row(i, 100 + i, {"username": f"u{i}", "password": "x", "email": f"u{i}@example.com"})
        for i in (1, 2, 3)
    )
    batch = Batch("sentry.user", 1, rows, BatchOptions("first-run", ImportScope.GLOBAL, fresh=True))
    with running_silos(control_db, make_database("region"), tmp_path) as silos:
        control = silos.control_client()

        def send() -> BatchResult:
            answer = control.call(
                "ImportModelBatch", batch_to_proto(batch), control_pb2.ImportModelBatchResponse, timeout=10
            )
            return result_from_proto(answer)

        first, again = send(), send()
    assert not first.replayed and again.replayed
    assert again.entries == first.entries and [e.old_pk for e in first.entries] == [101, 102, 103]
    engine = make_engine(control_db)
    try:
        with engine.connect() as connection:
            users = connection.execute(
                select(func.count()).select_from(CONTROL_TABLES["sentry.user"])
            ).scalar()
    finally:
        engine.dispose()
    assert users == 3


def test_sigterm_lets_in_flight_calls_finish_and_exits_cleanly(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    with running_silos(make_database("control"), make_database("region"), tmp_path) as silos:
        client = silos.region_client()
        client.call("Ping", common_pb2.PingRequest(bounces=2), common_pb2.PingResponse, timeout=10)
        silos.region.process.send_signal(signal.SIGTERM)
        assert silos.region.process.wait(timeout=15) == 0
        assert silos.control.stop() == 0
        client.close()


def test_a_region_will_not_serve_another_regions_database(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    region_db = make_database("region")
    with running_silos(make_database("control"), region_db, tmp_path, region_name="eu"):
        pass
    other = start_region(region_db, tmp_path, name="us", control_address="127.0.0.1:1")
    assert other.process.wait(timeout=30) != 0
    other.stop()
    assert "belongs to region 'eu', not 'us'" in (tmp_path / "region-us.log").read_text()


def test_no_migrate_refuses_an_unmigrated_database(make_database: DatabaseFactory, tmp_path: Path) -> None:
    control = start_control(make_database("control"), tmp_path, extra=["--no-migrate"])
    assert control.process.wait(timeout=30) != 0
    control.stop()
    assert "run the migrate command" in (tmp_path / "control.log").read_text()
