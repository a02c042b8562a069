"""An import's outbox drains in a process of their own (PostgreSQL): members written by a batch reach a
real control silo through the delivery process, not the writer's; a delivery process that dies is
replaced at the next drain, and closing stops it."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from control.db.models import OrganizationMemberMapping
from region.bootstrap import ImportSlugs
from region.config import RegionSettings
from region.db.models import IMPORT_CHUNKS, REGION_OUTBOX, RELOCATION_TABLES
from region.db.schema import MIGRATIONS
from region.delivery_process import DeliveryLost, DeliveryProcess
from region.importer.options import ImportOptions
from region.importer.scan import scan_file
from region.organizations import OrganizationService, produce_outbox
from region.rpc.control_client import GrpcControlClient
from shared.db.delivery import BackgroundDelivery
from shared.db.engine import make_engine
from shared.db.outbox import OutboxScope, Shard
from shared.db.relocation_writer import BatchWriter
from shared.relocation.batch import Batch, BatchOptions
from shared.relocation.spec import ImportScope
from tests.conftest import PostgresServer
from tests.exports import generate, write_export
from tests.helpers import region_beside, rpc, start_control
from tests.integration.test_member_delivery import rows_of


def control_copies(url: str) -> set[tuple[int, int, int | None]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {
                (r.organizationmember_id, r.organization_id, r.user_id)
                for r in connection.execute(select(OrganizationMemberMapping.__table__))
            }
    finally:
        engine.dispose()


def outbox_writer(region: Engine, service: OrganizationService, delivery: BackgroundDelivery) -> BatchWriter:
    """The region's batch writer as an import has it: each batch's outbox messages handed to ``delivery``."""
    return BatchWriter(
        region,
        RELOCATION_TABLES,
        IMPORT_CHUNKS,
        after_insert=produce_outbox,
        unit_of_work=lambda: service.unit_of_work(delivery),
    )


def test_members_reach_control_through_the_delivery_process(postgres: PostgresServer, tmp_path: Path) -> None:
    control_db, region_db = postgres.create_database("control"), postgres.create_database("region")
    control = start_control(control_db, tmp_path)
    region, client = region_beside(control, region_db)
    remote = DeliveryProcess(
        RegionSettings(name="eu", db_url=region_db, control_address=control.address, rpc=rpc())
    )
    here: list[int] = []
    try:
        control.wait_healthy()
        service = OrganizationService(region, client, region_name="eu")

        def handled_here(messages: object) -> None:
            here.append(1)

        delivery = BackgroundDelivery(service.outbox, handled_here, drain=remote.drain)
        writer = outbox_writer(region, service, delivery)
        options = BatchOptions(import_id=str(uuid.uuid4()), scope=ImportScope.ORGANIZATIONS)
        records = list(generate(orgs=2, members=5, teams=1, projects=1))

        def write_members(organization_ordinal: int) -> int:
            (organization,) = writer.write(
                Batch(
                    "sentry.organization",
                    organization_ordinal,
                    rows_of("sentry.organization", records)[organization_ordinal - 1 : organization_ordinal],
                    options,
                )
            ).entries
            members = [
                row
                for row in rows_of("sentry.organizationmember", records, inviter_id=None)
                if row.values["organization"] == organization.old_pk
            ]
            for row in members:
                row.values["organization"] = organization.new_pk
            first = (organization_ordinal - 1) * len(members) + 1
            writer.write(Batch("sentry.organizationmember", first, tuple(members), options))
            return organization.new_pk

        first_org = write_members(1)
        assert delivery.settle(30)
        process = remote._process
        assert process is not None and process.pid is not None and process.is_alive()
        assert process.pid != os.getpid()
        assert {org for _m, org, _u in control_copies(control_db)} == {first_org}
        assert len(control_copies(control_db)) == 5
        assert delivery.delivered >= 1 and here == []  # delivered there, never here

        # The delivery process dies: the next drain starts another.
        os.kill(process.pid, signal.SIGKILL)
        process.join(10)
        second_org = write_members(2)
        assert delivery.settle(30)
        assert remote._process is not None and remote._process.pid != process.pid
        assert {org for _m, org, _u in control_copies(control_db)} == {first_org, second_org}
        assert len(control_copies(control_db)) == 10
        with region.connect() as connection:
            assert connection.execute(select(func.count()).select_from(REGION_OUTBOX)).scalar_one() == 0
        delivery.close()
        replacement = remote._process
        remote.close()
        assert replacement is not None and not replacement.is_alive()
        assert here == []
    finally:
        remote.close()
        client.close()
        control.stop()
        region.dispose()


def write_two_organizations(writer: BatchWriter) -> dict[int, int]:
    """Two organizations, then their five members each, as an import's batches write them; the
    organizations' new pks by their export pks."""
    options = BatchOptions(import_id=str(uuid.uuid4()), scope=ImportScope.ORGANIZATIONS)
    records = list(generate(orgs=2, members=5, teams=1, projects=1))
    organizations = writer.write(
        Batch("sentry.organization", 1, rows_of("sentry.organization", records), options)
    ).entries
    new_pks = {e.old_pk: e.new_pk for e in organizations}
    members = rows_of("sentry.organizationmember", records, inviter_id=None)
    for row in members:
        row.values["organization"] = new_pks[row.values["organization"]]
    writer.write(Batch("sentry.organizationmember", 1, tuple(members), options))
    return new_pks


def early_fork_main() -> None:
    """Run by the test below in a fresh interpreter (argv: control address, region database URL): start
    the delivery process first, as the import CLI does before its check pass, then write two
    organizations' members and print (start method, delivered, the child's pid, this pid) as JSON."""
    control_address, region_db = sys.argv[1:3]
    remote = DeliveryProcess(
        RegionSettings(name="eu", db_url=region_db, control_address=control_address, rpc=rpc())
    )
    remote.start()  # before any channel, connection or thread exists here
    region = make_engine(region_db)
    client = GrpcControlClient(control_address, settings=rpc())
    service = OrganizationService(region, client, region_name="eu")
    delivery = BackgroundDelivery(service.outbox, service.handle, drain=remote.drain)
    writer = outbox_writer(region, service, delivery)
    write_two_organizations(writer)
    settled = delivery.settle(30)
    child = remote._process
    print(json.dumps([remote.method, settled and delivery.delivered, child and child.pid, os.getpid()]))
    delivery.close()
    remote.close()
    client.close()
    region.dispose()


def test_what_the_deliveries_left_reaches_control_at_the_end_of_the_import(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Deliveries that failed leave the members' messages in the organizations' shards; the import's
    last step (``ImportSlugs.deliver_rest``) takes them to control, so it still ends up to date."""
    control_db, region_db = postgres.create_database("control"), postgres.create_database("region")
    control = start_control(control_db, tmp_path)
    region, client = region_beside(control, region_db)
    try:
        control.wait_healthy()
        service = OrganizationService(region, client, region_name="eu")

        def failing(bounds: Mapping[Shard, int]) -> int:
            raise RuntimeError("control did not answer")

        delivery = BackgroundDelivery(service.outbox, service.handle, drain=failing)
        writer = outbox_writer(region, service, delivery)
        new_pks = write_two_organizations(writer)
        assert delivery.close(30)
        assert control_copies(control_db) == set()  # nothing got through
        with region.connect() as connection:
            assert connection.execute(select(func.count()).select_from(REGION_OUTBOX)).scalar_one() > 0

        ImportSlugs(service, client, region_name="eu").deliver_rest(sorted(new_pks.values()))
        assert len(control_copies(control_db)) == 10
        assert {org for _m, org, _u in control_copies(control_db)} == set(new_pks.values())
        with region.connect() as connection:
            assert connection.execute(select(func.count()).select_from(REGION_OUTBOX)).scalar_one() == 0
    finally:
        client.close()
        region.dispose()
        control.stop()


def test_started_before_anything_else_the_delivery_process_is_forked_and_delivers(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """The import CLI starts it before its check pass: forked (every module already loaded, none
    loaded again), it still opens its own connections and delivers every member to control."""
    control_db, region_db = postgres.create_database("control"), postgres.create_database("region")
    control = start_control(control_db, tmp_path)
    try:
        migrated = make_engine(region_db)
        MIGRATIONS.upgrade(migrated)
        migrated.dispose()
        control.wait_healthy()
        script = "from tests.integration.test_delivery_process import early_fork_main; early_fork_main()"
        done = subprocess.run(
            [sys.executable, "-c", script, control.address, region_db],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=Path(__file__).parents[2],
        )
        assert done.returncode == 0, done.stderr
        method, delivered, child_pid, parent_pid = json.loads(done.stdout.strip().splitlines()[-1])
        assert method == "fork"
        assert delivered and delivered >= 1
        assert child_pid and child_pid != parent_pid
        assert len(control_copies(control_db)) == 10  # both organizations' five members
    finally:
        control.stop()


def orphan_main() -> None:
    """Run by the test below in a fresh interpreter: start the delivery process (forked), fork a child
    that holds every descriptor as the check pass's half does, print both pids and wait to be killed."""
    settings = RegionSettings(name="eu", db_url=sys.argv[1], control_address="127.0.0.1:1", rpc=rpc())
    remote = DeliveryProcess(settings)
    remote.start()
    holder = os.fork()
    if holder == 0:
        time.sleep(60)
        os._exit(0)
    child = remote._process
    print(json.dumps([remote.method, child and child.pid, holder]), flush=True)
    time.sleep(60)


def test_the_delivery_process_ends_when_the_importer_is_killed(tmp_path: Path) -> None:
    """Killed with SIGKILL, the importer closes nothing; its delivery process still ends, even while
    another child of the importer keeps the importer's end of their pipe open."""
    script = "from tests.integration.test_delivery_process import orphan_main; orphan_main()"
    importer = subprocess.Popen(
        [sys.executable, "-c", script, f"sqlite:///{tmp_path / 'region.db'}"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    holder = 0
    try:
        assert importer.stdout is not None
        method, child, holder = json.loads(importer.stdout.readline())
        assert method == "fork" and child
        assert _running(child)
        importer.kill()
        importer.wait(10)
        deadline = time.monotonic() + 10
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(child), "the delivery process outlived the importer"
    finally:
        importer.kill()
        importer.wait(10)
        if importer.stdout is not None:
            importer.stdout.close()
        if holder:
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGKILL)


def check_then_fork_main() -> None:
    """Run by the test below in a fresh interpreter, in the import command's order: the check pass forks
    the process that checks the other part of the export, and meanwhile the delivery process is forked
    (``region.import_cli._WarmUp``); print the start method and both pids, then wait, mid-check, to be
    killed."""
    export = Path(sys.argv[1])
    settings = RegionSettings(name="eu", db_url=sys.argv[2], control_address="127.0.0.1:1", rpc=rpc())
    remote = DeliveryProcess(settings)

    def meanwhile() -> None:
        remote.start()
        delivering = remote._process.pid if remote._process else 0
        checking = [p.pid for p in multiprocessing.active_children() if p.pid != delivering]
        print(json.dumps([remote.method, delivering, checking]), flush=True)
        time.sleep(60)

    options = ImportOptions(scope=ImportScope.ORGANIZATIONS, import_id=str(uuid.uuid4()))
    scan_file(export, export.name, options, split_from=0, meanwhile=meanwhile)


def test_forked_during_the_check_pass_it_ends_with_a_killed_importer(tmp_path: Path) -> None:
    """Forked while the check pass's other process runs, the delivery process is still forked (one
    thread), and when the importer is killed mid-check, neither child outlives it."""
    export = write_export(tmp_path / "export.json", generate(orgs=30, members=3, teams=2, projects=2))
    script = (
        "from tests.integration.test_delivery_process import check_then_fork_main; check_then_fork_main()"
    )
    importer = subprocess.Popen(
        [sys.executable, "-c", script, str(export), f"sqlite:///{tmp_path / 'region.db'}"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    children: list[int] = []
    try:
        assert importer.stdout is not None
        method, delivering, checking = json.loads(importer.stdout.readline())
        assert method == "fork" and delivering and len(checking) == 1
        children = [delivering, *checking]
        assert _running(delivering)
        importer.kill()
        importer.wait(10)
        deadline = time.monotonic() + 10
        while any(map(_running, children)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_running, children)), "a child outlived the importer"
    finally:
        importer.kill()
        importer.wait(10)
        if importer.stdout is not None:
            importer.stdout.close()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting to be reaped by whoever adopted it, has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def test_where_no_process_can_start_the_drains_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """One failed start, then the fallback for every drain (no new start per drain)."""
    starts: list[int] = []

    def no_process(self: object) -> None:
        starts.append(1)
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.get_context("spawn").Process, "start", no_process)
    drained: list[dict[Shard, int]] = []

    def here(bounds: Mapping[Shard, int]) -> int:
        drained.append(dict(bounds))
        return len(bounds)

    settings = RegionSettings(name="eu", db_url="sqlite://", control_address="127.0.0.1:1", rpc=rpc())
    remote = DeliveryProcess(settings, fallback=here)
    shard = Shard("", OutboxScope.ORGANIZATION, 1)
    assert remote.drain({shard: 5}) == 1
    assert remote.drain({shard: 9}) == 1
    assert starts == [1] and drained == [{shard: 5}, {shard: 9}]
    with pytest.raises(DeliveryLost):
        DeliveryProcess(settings).drain({shard: 5})  # without a fallback the failure is the caller's
    remote.close()
