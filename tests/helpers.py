"""Helpers for tests: settings, clients and silo processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from sqlalchemy import Connection, Engine, insert

from region.db.models import RELOCATION_TABLES
from region.db.schema import MIGRATIONS
from region.rpc.control_client import GrpcControlClient
from shared.config import RpcSettings
from shared.db.engine import make_engine
from shared.launcher import SiloProcess, free_port
from shared.rpc.client import PeerClient
from shared.rpc.errors import RemoteError
from shared.rpc.v1 import control_pb2, region_pb2

SECRET = "test-secret-0123456789abcdef"
CONTROL_SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlService"]
REGION_SERVICE = region_pb2.DESCRIPTOR.services_by_name["RegionService"]
T = TypeVar("T")


def rpc(secret: str = SECRET, **overrides: object) -> RpcSettings:
    return RpcSettings(secrets=(secret.encode(),), **overrides)  # type: ignore[arg-type]


def eventually(check: Callable[[], T], *, timeout_s: float = 20.0, interval_s: float = 0.1) -> T:
    """Retry ``check`` until it returns without raising; raise its last error after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval_s)


@dataclass
class Silos:
    control: SiloProcess
    region: SiloProcess
    region_name: str

    def region_client(self, settings: RpcSettings | None = None) -> PeerClient:
        return PeerClient(self.region.address, REGION_SERVICE, settings=settings or rpc(), peer="region")

    def control_client(self, settings: RpcSettings | None = None) -> PeerClient:
        return PeerClient(self.control.address, CONTROL_SERVICE, settings=settings or rpc(), peer="control")


def start_control(
    db_url: str,
    logs: Path,
    *,
    regions: str = "",
    extra: Sequence[str] = (),
    listen: str = "127.0.0.1:0",
    secrets: str = SECRET,
) -> SiloProcess:
    args = ["--listen", listen, "--db", db_url, "--rpc-secrets", secrets, "--grace", "5", *extra]
    if regions:
        args += ["--region-addresses", regions]
    return SiloProcess.start("control", args, log_path=logs / "control.log")


def region_beside(control: SiloProcess, region_db: str) -> tuple[Engine, GrpcControlClient]:
    """A migrated region database's engine and a client of ``control``, as an import in that region has
    them (the caller disposes of the one and closes the other)."""
    region = make_engine(region_db)
    MIGRATIONS.upgrade(region)
    return region, GrpcControlClient(control.address, settings=rpc())


def start_region(
    db_url: str,
    logs: Path,
    *,
    name: str,
    control_address: str,
    listen: str = "127.0.0.1:0",
    extra: Sequence[str] = (),
    secrets: str = SECRET,
) -> SiloProcess:
    args = [
        "--listen",
        listen,
        "--db",
        db_url,
        "--name",
        name,
        "--control-address",
        control_address,
        "--rpc-secrets",
        secrets,
        "--grace",
        "5",
        *extra,
    ]
    return SiloProcess.start("region", args, log_path=logs / f"region-{name}.log")


@contextmanager
def running_silos(
    control_db: str,
    region_db: str,
    logs: Path,
    *,
    region_name: str = "eu",
    control_extra: Sequence[str] = (),
    region_extra: Sequence[str] = (),
    control_secrets: str = SECRET,
    region_secrets: str = SECRET,
) -> Iterator[Silos]:
    """Control and one region as real subprocesses on loopback, both SERVING."""
    region_port = free_port()
    control = start_control(
        control_db,
        logs,
        regions=f"{region_name}=127.0.0.1:{region_port}",
        extra=control_extra,
        secrets=control_secrets,
    )
    region: SiloProcess | None = None
    try:
        region = start_region(
            region_db,
            logs,
            name=region_name,
            control_address=control.address,
            listen=f"127.0.0.1:{region_port}",
            extra=region_extra,
            secrets=region_secrets,
        )
        control.wait_healthy()
        region.wait_healthy()
        yield Silos(control, region, region_name)
    finally:
        if region is not None:
            region.stop()
        control.stop()


@dataclass
class Topology:
    """One control silo and several regions, all real subprocesses."""

    control: SiloProcess
    regions: dict[str, SiloProcess]


@contextmanager
def running_topology(control_db: str, region_dbs: dict[str, str], logs: Path) -> Iterator[Topology]:
    ports = {name: free_port() for name in region_dbs}
    addresses = ",".join(f"{name}=127.0.0.1:{port}" for name, port in ports.items())
    control = start_control(control_db, logs, regions=addresses)
    regions: dict[str, SiloProcess] = {}
    topology = Topology(control, regions)
    try:
        for name, url in region_dbs.items():
            regions[name] = start_region(
                url, logs, name=name, control_address=control.address, listen=f"127.0.0.1:{ports[name]}"
            )
        control.wait_healthy()
        for region in regions.values():
            region.wait_healthy()
        yield topology
    finally:
        # Tests restart silos by replacing them in the topology: stop what is there now.
        for region in topology.regions.values():
            region.stop()
        topology.control.stop()
        if topology.control is not control:
            control.stop()


def assert_typed_batch_errors(client: PeerClient) -> None:
    """Batches control cannot take are refused with typed, specific errors (status, reason, message):
    a model control does not own, an unknown scope, an instance that is not one."""

    def refusal(**fields: object) -> RemoteError:
        request = control_pb2.ImportModelBatchRequest(import_id="x", first_ordinal=1, **fields)  # type: ignore[arg-type]
        with pytest.raises(RemoteError) as caught:
            client.call("ImportModelBatch", request, control_pb2.ImportModelBatchResponse, timeout=5)
        return caught.value

    wrong_silo = refusal(scope="global", model="sentry.team")
    assert wrong_silo.code == grpc.StatusCode.FAILED_PRECONDITION and wrong_silo.reason == "wrong_silo"
    galaxy = refusal(scope="galaxy", model="sentry.user")
    assert galaxy.code == grpc.StatusCode.INVALID_ARGUMENT and galaxy.reason == "malformed_batch"
    assert "unknown import scope 'galaxy'" in galaxy.message
    bad_instance = refusal(
        scope="global",
        model="sentry.user",
        instances_json='[[1, 5, {"username": "a"}, false, {}], [2, 6, {}, "no", {}]]',
    )
    assert bad_instance.code == grpc.StatusCode.INVALID_ARGUMENT and bad_instance.reason == "malformed_batch"
    assert "sentry.user instance 1: expected [ordinal >= 1" in bad_instance.message


def add_organization(connection: Connection, slug: str) -> int:
    """A region organization row with this slug (and its title as name); its id."""
    organizations = RELOCATION_TABLES["sentry.organization"]
    new_id = connection.execute(
        insert(organizations)
        .values(
            name=slug.title(),
            slug=slug,
            slug_ci=slug,
            status=0,
            default_role="member",
            is_test=False,
            flags=0,
        )
        .returning(organizations.c.id)
    ).scalar_one()
    return int(new_id)
