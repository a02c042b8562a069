"""Global organization slugs: control's reservations, the rename callback into the region, mappings,
replicas and outboxes, with one control silo and two regions as real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Table, func, insert, select

from control.db.models import (
    CONTROL_OUTBOX,
    OrganizationMapping,
    OrganizationMemberMapping,
    OrganizationMemberTeamReplica,
    OrganizationSlugReservation,
)
from region.db.models import REGION_OUTBOX, RELOCATION_TABLES, OrganizationSlugReservationReplica
from shared.db.engine import make_engine
from shared.db.outbox import OutboxCategory, OutboxScope, Shard, enqueue
from shared.rpc.client import PeerClient
from shared.rpc.errors import RemoteError
from shared.rpc.v1 import control_pb2
from tests.conftest import DatabaseFactory
from tests.exports import generate, write_export
from tests.helpers import (
    CONTROL_SERVICE,
    Silos,
    Topology,
    add_organization,
    eventually,
    rpc,
    running_topology,
    start_control,
    start_region,
)
from tests.importing import run_import

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example-export.json"
ORGANIZATIONS = RELOCATION_TABLES["sentry.organization"]
RESERVATIONS: Table = OrganizationSlugReservation.__table__  # type: ignore[assignment]
MAPPINGS: Table = OrganizationMapping.__table__  # type: ignore[assignment]
MEMBER_MAPPINGS: Table = OrganizationMemberMapping.__table__  # type: ignore[assignment]
MEMBER_TEAM_REPLICAS: Table = OrganizationMemberTeamReplica.__table__  # type: ignore[assignment]
REGION_MEMBERS = RELOCATION_TABLES["sentry.organizationmember"]
REGION_MEMBER_TEAMS = RELOCATION_TABLES["sentry.organizationmemberteam"]


@dataclass
class World:
    topology: Topology
    control_db: str
    region_dbs: dict[str, str]
    workdir: Path

    def region_silos(self, name: str) -> Silos:
        return Silos(self.topology.control, self.topology.regions[name], name)

    def import_into(self, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_import(
            self.region_silos(name),
            self.region_dbs[name],
            "organizations",
            EXAMPLE,
            *extra,
            cwd=self.workdir,
        )

    def control_client(self) -> PeerClient:
        return PeerClient(
            self.topology.control.address, CONTROL_SERVICE, settings=rpc(max_attempts=1), peer="control"
        )


@pytest.fixture
def world(make_database: DatabaseFactory, tmp_path: Path) -> Iterator[World]:
    control_db = make_database("control")
    region_dbs = {"eu": make_database("region_eu"), "us": make_database("region_us")}
    with running_topology(control_db, region_dbs, tmp_path) as topology:
        yield World(topology, control_db, region_dbs, tmp_path)


def organizations(url: str) -> dict[int, str]:
    engine = make_engine(url)
    with engine.connect() as connection:
        found = {r.id: r.slug for r in connection.execute(select(ORGANIZATIONS.c.id, ORGANIZATIONS.c.slug))}
    engine.dispose()
    return found


def assert_everything_agrees(world: World) -> None:
    """Region rows, replicas, mappings and PRIMARY reservations name the same slugs; no alias is left
    and every outbox is empty."""
    control = make_engine(world.control_db)
    with control.connect() as connection:
        reservations = connection.execute(select(RESERVATIONS)).mappings().all()
        mappings = connection.execute(select(MAPPINGS)).mappings().all()
        left = connection.execute(select(func.count()).select_from(CONTROL_OUTBOX)).scalar_one()
        member_mappings = {
            (r.region_name, r.organizationmember_id): (r.organization_id, r.user_id, r.role)
            for r in connection.execute(select(MEMBER_MAPPINGS))
        }
        member_teams = {
            (r.region_name, r.organizationmemberteam_id): (r.organizationmember_id, r.team_id)
            for r in connection.execute(select(MEMBER_TEAM_REPLICAS))
        }
    control.dispose()
    assert [r for r in reservations if r["reservation_type"] != 0] == [], "a temporary alias is left"
    assert left == 0
    primary = {(r["region_name"], r["organization_id"]): r for r in reservations}
    mapped = {(m["region_name"], m["organization_id"]): m["slug"] for m in mappings}
    all_slugs = []
    for name, url in world.region_dbs.items():
        for organization_id, slug in organizations(url).items():
            all_slugs.append(slug)
            assert primary[(name, organization_id)]["slug"] == slug
            assert mapped[(name, organization_id)] == slug
        engine = make_engine(url)
        with engine.connect() as connection:
            replicas = {
                r.reservation_id: r.slug
                for r in connection.execute(
                    select(
                        OrganizationSlugReservationReplica.reservation_id,
                        OrganizationSlugReservationReplica.slug,
                    )
                )
            }
            queued = connection.execute(select(func.count()).select_from(REGION_OUTBOX)).scalar_one()
            members = {
                (name, r.id): (r.organization_id, r.user_id, r.role)
                for r in connection.execute(select(REGION_MEMBERS))
            }
            teams = {
                (name, r.id): (r.organizationmember_id, r.team_id)
                for r in connection.execute(select(REGION_MEMBER_TEAMS))
            }
        engine.dispose()
        # Control's copies of the memberships equal the region's rows.
        assert {k: v for k, v in member_mappings.items() if k[0] == name} == members
        assert {k: v for k, v in member_teams.items() if k[0] == name} == teams
        assert queued == 0
        # The region's replicas are exactly its PRIMARY reservations: no alias replica is left.
        assert replicas == {r["id"]: r["slug"] for (region, _org), r in primary.items() if region == name}
    assert len(all_slugs) == len(set(all_slugs)), "slugs must be globally unique"


def test_colliding_slugs_in_the_same_and_another_region_all_end_unique(world: World) -> None:
    for name in ("eu", "eu"):
        result = world.import_into(name)
        assert result.returncode == 0, result.stderr
    findings_path = world.workdir / "us-findings.json"
    result = world.import_into("us", "--findings-file", str(findings_path))
    assert result.returncode == 0, result.stderr
    eu, us = organizations(world.region_dbs["eu"]), organizations(world.region_dbs["us"])
    assert {"acme", "globex", "initech"} <= set(eu.values())
    assert all(slug.split("-")[0] in ("acme", "globex", "initech") and "-" in slug for slug in us.values())
    # Each global rename is a finding (so that compare can explain it).
    renamed = {
        f["new_pk"]: f["reason"]
        for f in json.loads(findings_path.read_text())
        if f["kind"] == "renamed" and f["model"] == "sentry.organization"
    }
    assert set(renamed) == set(us)
    assert all(f"imported as {us[pk]!r}" in reason for pk, reason in renamed.items())
    eventually(lambda: assert_everything_agrees(world), timeout_s=30)


def test_organizations_that_keep_their_slugs_are_reserved_without_a_rename(world: World) -> None:
    """The first import's slugs are free: control makes them PRIMARY at once and the region sends the
    mappings; only the second region's clashing slugs go through the alias and the rename callback."""
    result = world.import_into("eu")
    assert result.returncode == 0, result.stderr
    eventually(lambda: assert_everything_agrees(world), timeout_s=30)
    assert set(organizations(world.region_dbs["eu"]).values()) == {"acme", "globex", "initech"}
    result = world.import_into("us")
    assert result.returncode == 0, result.stderr
    eventually(lambda: assert_everything_agrees(world), timeout_s=30)
    for name in ("eu", "us"):
        assert world.topology.regions[name].stop() == 0
    served = {name: (world.workdir / f"region-{name}.log").read_text() for name in ("eu", "us")}
    assert "stopped; served" in served["eu"]
    assert "UpdateOrganizationSlugsFromReservations" not in served["eu"]
    assert '"UpdateOrganizationSlugsFromReservations":1' in served["us"]


def test_two_regions_importing_the_same_slugs_at_once(world: World) -> None:
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(name: str) -> None:
        results[name] = world.import_into(name)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("eu", "us")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.returncode == 0 for r in results.values()), {n: r.stderr for n, r in results.items()}
    slugs = [*organizations(world.region_dbs["eu"]).values(), *organizations(world.region_dbs["us"]).values()]
    assert len(slugs) == 6 and len(set(slugs)) == 6
    eventually(lambda: assert_everything_agrees(world), timeout_s=30)


def test_the_bulk_call_is_idempotent_and_guards_temporary_aliases(world: World) -> None:
    import_id = str(uuid.uuid4())
    result = world.import_into("eu", "--import-uuid", import_id)
    assert result.returncode == 0, result.stderr
    eu = organizations(world.region_dbs["eu"])
    client = world.control_client()
    request = control_pb2.BulkReserveOrganizationSlugsRequest(
        import_id=import_id, region_name="eu", slugs_by_organization_id={1: "acme", 2: "globex", 3: "initech"}
    )
    again = client.call(
        "BulkReserveOrganizationSlugs", request, control_pb2.BulkReserveOrganizationSlugsResponse
    )
    assert dict(again.final_slugs) == eu  # a retry after a lost answer: same slugs, nothing renamed twice
    assert organizations(world.region_dbs["eu"]) == eu
    engine = make_engine(world.control_db)
    with engine.begin() as connection:
        connection.execute(
            insert(RESERVATIONS).values(
                slug="held-by-other",
                organization_id=2,
                region_name="eu",
                reservation_type=2,
                import_id="other",
            )
        )
    engine.dispose()
    other = control_pb2.BulkReserveOrganizationSlugsRequest(
        import_id=str(uuid.uuid4()), region_name="eu", slugs_by_organization_id={2: "globex-two"}
    )
    with pytest.raises(RemoteError) as caught:
        client.call("BulkReserveOrganizationSlugs", other, control_pb2.BulkReserveOrganizationSlugsResponse)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION and caught.value.reason == "alias_held"
    unknown = control_pb2.BulkReserveOrganizationSlugsRequest(
        import_id=str(uuid.uuid4()), region_name="mars", slugs_by_organization_id={1: "x"}
    )
    with pytest.raises(RemoteError) as caught:
        client.call("BulkReserveOrganizationSlugs", unknown, control_pb2.BulkReserveOrganizationSlugsResponse)
    assert caught.value.reason == "unknown_region"
    client.close()


def test_a_slug_the_region_cannot_take_is_already_exists_and_leaves_no_alias(world: World) -> None:
    ids = {slug: insert_organization(world.region_dbs["eu"], slug) for slug in ("taken", "mine")}
    client = world.control_client()
    request = control_pb2.BulkReserveOrganizationSlugsRequest(
        import_id=str(uuid.uuid4()), region_name="eu", slugs_by_organization_id={ids["mine"]: "taken"}
    )
    with pytest.raises(RemoteError) as caught:
        client.call("BulkReserveOrganizationSlugs", request, control_pb2.BulkReserveOrganizationSlugsResponse)
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert caught.value.detail.fields["slug"] == "taken"
    assert caught.value.detail.fields["organization_id"] == str(ids["mine"])
    control = make_engine(world.control_db)
    with control.connect() as connection:
        aliases = connection.execute(
            select(func.count())
            .select_from(RESERVATIONS)
            .where(OrganizationSlugReservation.reservation_type == 2)
        ).scalar_one()
    control.dispose()
    assert aliases == 0
    client.close()


def test_queued_messages_are_delivered_after_control_comes_back(world: World) -> None:
    result = world.import_into("eu")
    assert result.returncode == 0, result.stderr
    control_address = world.topology.control.address
    assert world.topology.control.stop() == 0
    engine = make_engine(world.region_dbs["eu"])
    with engine.begin() as connection:
        for name in ("Acme Renamed", "Acme Final"):
            connection.execute(ORGANIZATIONS.update().where(ORGANIZATIONS.c.id == 1).values(name=name))
            enqueue(
                connection,
                REGION_OUTBOX,
                Shard("", OutboxScope.ORGANIZATION, 1),
                OutboxCategory.ORGANIZATION_UPDATE,
                1,
            )
    engine.dispose()
    addresses = ",".join(f"{n}={p.address}" for n, p in world.topology.regions.items())
    restarted = start_control(world.control_db, world.workdir, regions=addresses, listen=control_address)
    world.topology.control = restarted
    restarted.wait_healthy()

    def delivered() -> None:
        control = make_engine(world.control_db)
        with control.connect() as connection:
            name = connection.execute(
                select(OrganizationMapping.name).where(
                    OrganizationMapping.region_name == "eu", OrganizationMapping.organization_id == 1
                )
            ).scalar_one()
        control.dispose()
        assert name == "Acme Final"
        assert_everything_agrees(world)

    eventually(delivered, timeout_s=60)


def test_a_backlog_in_the_region_does_not_stall_the_slug_call(world: World) -> None:
    source = write_export(world.workdir / "big-org.json", generate(orgs=1, members=1000, teams=1, projects=1))
    result = run_import(
        world.region_silos("eu"), world.region_dbs["eu"], "organizations", source, cwd=world.workdir
    )
    assert result.returncode == 0, result.stderr
    # Queue a backlog of 2000 messages, each an RPC to control, in the organization's shard.
    engine = make_engine(world.region_dbs["eu"])
    members = RELOCATION_TABLES["sentry.organizationmember"]
    member_teams = RELOCATION_TABLES["sentry.organizationmemberteam"]
    with engine.begin() as connection:
        (organization_id,) = connection.execute(select(ORGANIZATIONS.c.id)).one()
        shard = Shard("", OutboxScope.ORGANIZATION, organization_id)
        for (member_id,) in connection.execute(select(members.c.id)).all():
            enqueue(connection, REGION_OUTBOX, shard, OutboxCategory.ORGANIZATION_MEMBER_UPDATE, member_id)
        for (member_team_id,) in connection.execute(select(member_teams.c.id)).all():
            enqueue(
                connection,
                REGION_OUTBOX,
                shard,
                OutboxCategory.ORGANIZATION_MEMBER_TEAM_UPDATE,
                member_team_id,
            )
    engine.dispose()
    client = world.control_client()
    request = control_pb2.BulkReserveOrganizationSlugsRequest(
        import_id=str(uuid.uuid4()),
        region_name="eu",
        slugs_by_organization_id={organization_id: "renamed-org"},
    )
    started = time.monotonic()
    answer = client.call(
        "BulkReserveOrganizationSlugs", request, control_pb2.BulkReserveOrganizationSlugsResponse, timeout=15
    )
    elapsed = time.monotonic() - started
    client.close()
    assert dict(answer.final_slugs) == {organization_id: "renamed-org"}
    assert elapsed < 15
    assert organizations(world.region_dbs["eu"]) == {organization_id: "renamed-org"}
    eventually(lambda: assert_everything_agrees(world), timeout_s=120)


def test_a_lost_answer_is_retried_to_the_same_slugs_without_a_second_rename(world: World) -> None:
    engine = make_engine(world.region_dbs["eu"])
    with engine.begin() as connection:
        connection.execute(
            insert(ORGANIZATIONS).values(
                name="Lost",
                slug="lost",
                slug_ci="lost",
                status=0,
                default_role="member",
                is_test=False,
                flags=0,
            )
        )
        (organization_id,) = connection.execute(select(ORGANIZATIONS.c.id)).one()
    engine.dispose()
    import_id = str(uuid.uuid4())
    request = control_pb2.BulkReserveOrganizationSlugsRequest(
        import_id=import_id, region_name="eu", slugs_by_organization_id={organization_id: "lost"}
    )
    client = world.control_client()
    # The caller gives up before control can answer: the answer is lost, whatever control had done.
    with pytest.raises(RemoteError):
        client.call(
            "BulkReserveOrganizationSlugs",
            request,
            control_pb2.BulkReserveOrganizationSlugsResponse,
            timeout=0.01,
        )
    first = client.call(
        "BulkReserveOrganizationSlugs", request, control_pb2.BulkReserveOrganizationSlugsResponse
    )
    again = client.call(
        "BulkReserveOrganizationSlugs", request, control_pb2.BulkReserveOrganizationSlugsResponse
    )
    client.close()
    assert dict(first.final_slugs) == dict(again.final_slugs) == {organization_id: "lost"}
    assert organizations(world.region_dbs["eu"]) == {organization_id: "lost"}
    control = make_engine(world.control_db)
    with control.connect() as connection:
        held = connection.execute(select(RESERVATIONS.c.slug, RESERVATIONS.c.reservation_type)).all()
    control.dispose()
    assert held == [("lost", 0)]  # one PRIMARY, no orphan alias
    eventually(lambda: assert_everything_agrees(world), timeout_s=30)


def insert_organization(url: str, slug: str) -> int:
    engine = make_engine(url)
    with engine.begin() as connection:
        organization_id = add_organization(connection, slug)
    engine.dispose()
    return organization_id


def reservations(world: World) -> list[tuple[int, str, str, int]]:
    control = make_engine(world.control_db)
    with control.connect() as connection:
        held = connection.execute(
            select(
                RESERVATIONS.c.organization_id,
                RESERVATIONS.c.region_name,
                RESERVATIONS.c.slug,
                RESERVATIONS.c.reservation_type,
            ).order_by(RESERVATIONS.c.id)
        ).all()
    control.dispose()
    return [tuple(r) for r in held]


def reserve(
    world: World, import_id: str, region: str, wanted: dict[int, str], timeout: float = 30
) -> dict[int, str]:
    client = world.control_client()
    try:
        answer = client.call(
            "BulkReserveOrganizationSlugs",
            control_pb2.BulkReserveOrganizationSlugsRequest(
                import_id=import_id, region_name=region, slugs_by_organization_id=wanted
            ),
            control_pb2.BulkReserveOrganizationSlugsResponse,
            timeout=timeout,
        )
    finally:
        client.close()
    return dict(answer.final_slugs)


def restart_control(world: World, *extra: str) -> None:
    address = world.topology.control.address
    addresses = ",".join(f"{n}={p.address}" for n, p in world.topology.regions.items())
    world.topology.control.stop()
    world.topology.control = start_control(
        world.control_db, world.workdir, regions=addresses, listen=address, extra=extra
    )
    world.topology.control.wait_healthy()


def test_control_killed_after_its_commit_then_the_retry_gives_the_same_slug(world: World) -> None:
    """The answer is lost the hard way: control commits the temporary alias, then dies mid-callback.
    (A short outbox lease, so that the dead control's claim on the shard expires quickly.)"""
    restart_control(world, "--outbox-lease", "3")
    holder = insert_organization(world.region_dbs["us"], "taken")
    assert reserve(world, str(uuid.uuid4()), "us", {holder: "taken"}) == {holder: "taken"}
    organization_id = insert_organization(world.region_dbs["eu"], "mine")
    import_id = str(uuid.uuid4())
    region = world.topology.regions["eu"].process
    region.send_signal(signal.SIGSTOP)  # the callback into the region hangs: control is caught mid-flow
    lost: list[BaseException] = []

    def call() -> None:
        try:
            reserve(world, import_id, "eu", {organization_id: "taken"})
        except RemoteError as exc:
            lost.append(exc)

    caller = threading.Thread(target=call)
    try:
        caller.start()

        def alias_committed() -> None:
            assert [r for r in reservations(world) if r[3] != 0], "no alias committed yet"

        eventually(alias_committed, timeout_s=30)
        world.topology.control.process.kill()
        world.topology.control.stop()
        caller.join(timeout=30)
    finally:
        region.send_signal(signal.SIGCONT)
    assert lost, "the caller must see the call fail"
    (alias,) = [r for r in reservations(world) if r[3] != 0]
    assert alias[:2] == (organization_id, "eu") and alias[2].startswith("taken-")
    restart_control(world, "--outbox-lease", "3")
    time.sleep(3)  # the dead drainer's claim runs out
    final = reserve(world, import_id, "eu", {organization_id: "taken"})
    assert final == {organization_id: alias[2]}, "the retry finishes the rename it had started"
    assert reserve(world, import_id, "eu", {organization_id: "taken"}) == final
    assert organizations(world.region_dbs["eu"]) == {organization_id: alias[2]}
    assert sorted(reservations(world)) == sorted(
        [(holder, "us", "taken", 0), (organization_id, "eu", alias[2], 0)]
    ), "one PRIMARY each, no orphan alias"
    eventually(lambda: assert_everything_agrees(world), timeout_s=30)


def test_queued_messages_are_delivered_after_a_region_restart(world: World) -> None:
    """Both directions queue while a region is down: control's slug messages for it and the region's own
    updates for control; after the restart each lands once and the last value wins."""
    organization_id = insert_organization(world.region_dbs["eu"], "before")
    assert reserve(world, str(uuid.uuid4()), "eu", {organization_id: "before"}) == {organization_id: "before"}
    region = world.topology.regions["eu"]
    address = region.address
    assert region.stop() == 0
    with pytest.raises(RemoteError):  # control commits the alias; its callback cannot reach the region
        reserve(world, str(uuid.uuid4()), "eu", {organization_id: "after"}, timeout=5)
    engine = make_engine(world.region_dbs["eu"])
    with engine.begin() as connection:
        for name in ("Renamed Once", "Renamed Twice"):
            connection.execute(
                ORGANIZATIONS.update().where(ORGANIZATIONS.c.id == organization_id).values(name=name)
            )
            enqueue(
                connection,
                REGION_OUTBOX,
                Shard("", OutboxScope.ORGANIZATION, organization_id),
                OutboxCategory.ORGANIZATION_UPDATE,
                organization_id,
            )
    engine.dispose()
    world.topology.regions["eu"] = start_region(
        world.region_dbs["eu"],
        world.workdir,
        name="eu",
        control_address=world.topology.control.address,
        listen=address,
    )
    world.topology.regions["eu"].wait_healthy()

    def delivered() -> None:
        assert organizations(world.region_dbs["eu"]) == {organization_id: "after"}
        control = make_engine(world.control_db)
        with control.connect() as connection:
            mapping = connection.execute(
                select(OrganizationMapping.slug, OrganizationMapping.name).where(
                    OrganizationMapping.region_name == "eu",
                    OrganizationMapping.organization_id == organization_id,
                )
            ).one()
        control.dispose()
        assert tuple(mapping) == ("after", "Renamed Twice")
        assert_everything_agrees(world)

    eventually(delivered, timeout_s=90)
    assert reservations(world) == [(organization_id, "eu", "after", 0)]
