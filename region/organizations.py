"""The region's side of global slugs: taking the slug control reserved, the reservation replica, and
the region outbox whose ORGANIZATION_UPDATE messages keep control's organization mappings current.

Every change that control must learn about is written with its outbox message in one transaction and
drained after the commit, with no transaction open while control is called.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from region.db.models import REGION_OUTBOX, RELOCATION_TABLES, OrganizationSlugReservationReplica
from region.errors import RegionError
from region.rpc.control_client import GrpcControlClient
from shared.db.outbox import Message, Outbox, OutboxCategory, OutboxScope, Shard, ShardBusy, enqueue

_LOGGER = logging.getLogger(__name__)
ORGANIZATIONS = RELOCATION_TABLES["sentry.organization"]


class UnknownOrganization(RegionError):
    reason = "unknown_organization"


class SlugUnavailable(RegionError):
    """The region already has an organization with that slug."""

    reason = "slug_taken"

    def __init__(self, organization_id: int, slug: str) -> None:
        self.fields = {"organization_id": str(organization_id), "slug": slug}
        super().__init__(
            f"organization {organization_id} cannot take slug {slug!r}: another organization here has it"
        )


def organization_shard(organization_id: int) -> Shard:
    return Shard("", OutboxScope.ORGANIZATION, organization_id)


class OrganizationService:
    def __init__(self, engine: Engine, control: GrpcControlClient | None, *, region_name: str) -> None:
        self._engine = engine
        self._control = control
        self._region = region_name
        self.outbox = Outbox(engine, REGION_OUTBOX)

    def update_slug_from_reservation(self, organization_id: int, slug: str) -> str:
        """Give the organization the slug control reserved for it; control's mapping follows."""
        try:
            with self._engine.begin() as connection:
                found = connection.execute(
                    update(ORGANIZATIONS)
                    .where(ORGANIZATIONS.c.id == organization_id)
                    .values(slug=slug, slug_ci=slug.casefold())
                ).rowcount
                if not found:
                    raise UnknownOrganization(
                        f"organization {organization_id} is not in region {self._region!r}"
                    )
                enqueue(
                    connection,
                    REGION_OUTBOX,
                    organization_shard(organization_id),
                    OutboxCategory.ORGANIZATION_UPDATE,
                    organization_id,
                )
        except IntegrityError:
            raise SlugUnavailable(organization_id, slug) from None
        self.drain(organization_shard(organization_id))
        return slug

    def upsert_replica(self, reservation: OrganizationSlugReservationReplica) -> None:
        replica = OrganizationSlugReservationReplica
        with Session(self._engine) as session, session.begin():
            # Whatever could conflict is stale: the reservation itself, its (organization, type), its slug.
            session.execute(
                delete(replica).where(
                    (replica.reservation_id == reservation.reservation_id)
                    | (replica.slug == reservation.slug)
                    | (
                        (replica.organization_id == reservation.organization_id)
                        & (replica.reservation_type == reservation.reservation_type)
                    )
                )
            )
            session.add(reservation)

    def delete_replica(self, reservation_id: int) -> None:
        replica = OrganizationSlugReservationReplica
        with Session(self._engine) as session, session.begin():
            session.execute(delete(replica).where(replica.reservation_id == reservation_id))

    # ---- the region outbox ----------------------------------------------------------------------------

    def drain(self, shard: Shard, *, wait_s: float = 20.0) -> None:
        """Drain a shard now (waiting for another drainer that holds it)."""
        deadline = time.monotonic() + wait_s
        while self.outbox.last_id([shard]):
            try:
                self.outbox.drain_shard(shard, self.handle)
            except ShardBusy:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)

    def drain_due(self) -> int:
        return self.outbox.drain_due(self.handle)

    def handle(self, message: Message) -> None:
        if message.category is not OutboxCategory.ORGANIZATION_UPDATE:
            _LOGGER.warning("region outbox: no handler for %s", message.category.name)
            return
        if self._control is None:
            raise RegionError("this region has no control address; its outbox cannot be delivered")
        with self._engine.connect() as connection:
            organization = connection.execute(
                select(ORGANIZATIONS.c.slug, ORGANIZATIONS.c.name, ORGANIZATIONS.c.status).where(
                    ORGANIZATIONS.c.id == message.object_id
                )
            ).first()
        if organization is None:
            return  # deleted since: nothing to map
        self._control.upsert_mapping(
            message.object_id, self._region, organization.slug, organization.name, organization.status
        )
