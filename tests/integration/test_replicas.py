"""The region's replica of control's slug reservations: a run of upserts in one transaction, the newest
of clashing reservations winning, in the table and within the run."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from region.db.models import REGION_OUTBOX
from region.db.models import OrganizationSlugReservationReplica as Replica
from region.db.schema import MIGRATIONS
from region.organizations import OrganizationService, ReplicaUpdate
from shared.db.outbox import OutboxCategory
from tests.conftest import MigratedEngineFactory
from tests.helpers import add_organization

PRIMARY, ALIAS = 0, 2


@pytest.fixture
def engine(migrated_engine: MigratedEngineFactory) -> Engine:
    return migrated_engine("region", MIGRATIONS)


def replica(reservation_id: int, slug: str, organization_id: int, kind: int) -> ReplicaUpdate:
    return ReplicaUpdate(
        reservation_id=reservation_id,
        slug=slug,
        organization_id=organization_id,
        region_name="eu",
        reservation_type=kind,
    )


def stored(engine: Engine) -> set[tuple[int, str, int, int]]:
    with engine.connect() as connection:
        return {
            (r.reservation_id, r.slug, r.organization_id, r.reservation_type)
            for r in connection.execute(select(Replica.__table__))
        }


def test_a_run_of_replica_upserts_keeps_the_newest_of_clashing_reservations(engine: Engine) -> None:
    service = OrganizationService(engine, None, region_name="eu")
    service.upsert_replicas([replica(1, "acme", 1, PRIMARY), replica(2, "globex", 2, PRIMARY)])
    assert stored(engine) == {(1, "acme", 1, PRIMARY), (2, "globex", 2, PRIMARY)}
    # In one run: an alias takes org 1 to "acme-x", then org 1's PRIMARY moves there (same slug as the
    # alias: the alias replica goes), org 3 takes "acme" (org 1's old slug, freed within the run), and
    # reservation 2 is sent again with a new slug (same reservation: the older copy goes).
    service.upsert_replicas(
        [
            replica(3, "acme-x", 1, ALIAS),
            replica(1, "acme-x", 1, PRIMARY),
            replica(2, "initech", 2, PRIMARY),
            replica(4, "acme", 3, PRIMARY),
        ]
    )
    assert stored(engine) == {(1, "acme-x", 1, PRIMARY), (2, "initech", 2, PRIMARY), (4, "acme", 3, PRIMARY)}
    service.delete_replicas([4, 99])
    assert stored(engine) == {(1, "acme-x", 1, PRIMARY), (2, "initech", 2, PRIMARY)}


def test_a_primary_that_backs_an_organizations_slug_queues_its_mapping(engine: Engine) -> None:
    """Control refuses a mapping no reservation backs; the region queues it as the PRIMARY's replica
    arrives (in the same transaction), for its own organizations whose slug it is, and only those."""
    with engine.begin() as connection:
        ids = {slug: add_organization(connection, slug) for slug in ("acme", "globex", "initech")}
    service = OrganizationService(engine, None, region_name="eu")
    service.upsert_replicas(
        [
            replica(1, "acme", ids["acme"], PRIMARY),  # backs its slug: queued
            replica(2, "globex-2", ids["globex"], PRIMARY),  # another slug (not renamed yet): not
            replica(3, "initech-x", ids["initech"], ALIAS),  # an alias: not
            ReplicaUpdate(4, "initech", ids["initech"], "us", PRIMARY),  # another region's: not
        ]
    )
    with engine.connect() as connection:
        queued = connection.execute(
            select(REGION_OUTBOX.c.category, REGION_OUTBOX.c.object_id, REGION_OUTBOX.c.shard_id)
        ).all()
    assert [tuple(row) for row in queued] == [
        (int(OutboxCategory.ORGANIZATION_UPDATE), ids["acme"], ids["acme"])
    ]
