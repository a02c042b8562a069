"""The region's side of global slugs: taking the slug control reserved, the reservation replica, and
the region outbox whose ORGANIZATION_UPDATE messages keep control's organization mappings current.

Every change that control must learn about is written with its outbox message in one transaction and
drained after the commit, with no transaction open while control is called.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import Engine, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from region.db.models import REGION_OUTBOX, RELOCATION_TABLES, OrganizationSlugReservationReplica
from region.errors import RegionError
from region.rpc.control_client import (
    GrpcControlClient,
    MemberMapping,
    MemberTeamReplica,
    OrganizationMappingUpdate,
)
from shared.db.among import among, among_parts, chunks, per_statement
from shared.db.delivery import BackgroundDelivery
from shared.db.outbox import IDS, Message, Outbox, OutboxCategory, OutboxScope, Shard
from shared.db.unit_of_work import Outgoing, UnitOfWork

_LOGGER = logging.getLogger(__name__)
#: Longest a slug callback from control spends delivering this region's outbox before it answers.
CALLBACK_DRAIN_S = 2.0
#: Most members (or team memberships) read and sent to control in one call.
PER_CALL = 2000
ORGANIZATIONS = RELOCATION_TABLES["sentry.organization"]
#: The reservation type of an organization's own slug (control's ReservationType.PRIMARY).
PRIMARY = 0
MEMBERS = RELOCATION_TABLES["sentry.organizationmember"]
MEMBER_TEAMS = RELOCATION_TABLES["sentry.organizationmemberteam"]


class UnknownOrganization(RegionError):
    reason = "unknown_organization"


@dataclass(frozen=True)
class SlugUpdate:
    organization_id: int
    slug: str
    #: Another organization in this region holds the slug; nothing changed.
    taken: bool = False
    message: str = ""


@dataclass(frozen=True)
class ReplicaUpdate:
    """One of control's slug reservations, as this region keeps it."""

    reservation_id: int
    slug: str
    organization_id: int
    region_name: str
    reservation_type: int


def organization_shard(organization_id: int) -> Shard:
    return Shard("", OutboxScope.ORGANIZATION, organization_id)


class OrganizationService:
    def __init__(
        self,
        engine: Engine,
        control: GrpcControlClient | None,
        *,
        region_name: str,
        outbox_lease_s: float = 60.0,
    ) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._control = control
        self._region = region_name
        # Runs of up to 2,000 messages: an import's organization mappings (a message each) go to control
        # in a fifth of the calls (0.50-0.56 s instead of 0.68-0.72 s for 9,804 organizations).
        self.outbox = Outbox(engine, REGION_OUTBOX, lease=timedelta(seconds=outbox_lease_s), batch=2000)

    def update_slugs_from_reservations(self, wanted: Sequence[tuple[int, str]]) -> list[SlugUpdate]:
        """Give organizations the slugs control reserved for them, in one transaction: with one statement,
        or, when a slug another organization here holds stops it, with a savepoint each, so that one
        fails alone; control's mappings follow."""
        results: list[SlugUpdate] = []
        started = time.monotonic()
        with self.unit_of_work() as work:
            connection = work.connection
            known: set[int] = set()
            ids = sorted({organization_id for organization_id, _slug in wanted})
            for condition in among_parts(self._dialect, ORGANIZATIONS.c.id, ids):
                known.update(connection.execute(select(ORGANIZATIONS.c.id).where(condition)).scalars())
            for organization_id in ids:
                if organization_id not in known:
                    raise UnknownOrganization(
                        f"organization {organization_id} is not in region {self._region!r}"
                    )
            try:  # all at once; only when a slug is taken here, one savepoint per organization
                with connection.begin_nested():
                    connection.execute(
                        update(ORGANIZATIONS)
                        .where(ORGANIZATIONS.c.id == bindparam("organization_id"))
                        .values(slug=bindparam("new_slug"), slug_ci=bindparam("new_slug_ci")),
                        [
                            {"organization_id": i, "new_slug": slug, "new_slug_ci": slug.casefold()}
                            for i, slug in wanted
                        ],
                    )
                results = [SlugUpdate(organization_id, slug) for organization_id, slug in wanted]
                wanted = ()
            except IntegrityError:
                _LOGGER.info("a slug is taken in this region; renaming one organization at a time")
            for organization_id, slug in wanted:
                try:
                    with connection.begin_nested():
                        found = connection.execute(
                            update(ORGANIZATIONS)
                            .where(ORGANIZATIONS.c.id == organization_id)
                            .values(slug=slug, slug_ci=slug.casefold())
                        ).rowcount
                except IntegrityError:
                    taken = (
                        f"organization {organization_id} cannot take slug {slug!r}: "
                        "another organization here has it"
                    )
                    results.append(SlugUpdate(organization_id, slug, taken=True, message=taken))
                    continue
                if not found:
                    raise UnknownOrganization(
                        f"organization {organization_id} is not in region {self._region!r}"
                    )
                results.append(SlugUpdate(organization_id, slug))
            work.enqueue_many(
                [
                    (
                        organization_shard(r.organization_id),
                        OutboxCategory.ORGANIZATION_UPDATE,
                        r.organization_id,
                        None,
                    )
                    for r in results
                    if not r.taken
                ]
            )
            bounds = work.commit(drain=False)
        # Deliver the mappings now if the shards are short; a backlog must not hold up control's call, so
        # the rest is left to the background drainer once the budget is spent.
        renamed = time.monotonic()
        delivered = self.outbox.drain_committed(bounds, self.handle, budget_s=CALLBACK_DRAIN_S)
        _LOGGER.info(
            "renamed %d organization(s) in %.2f s; delivered %d mapping message(s) in %.2f s",
            len(results),
            renamed - started,
            delivered,
            time.monotonic() - renamed,
        )
        return results

    def upsert_replicas(self, reservations: Sequence[ReplicaUpdate]) -> None:
        """Replace the replicas of these reservations, in order, with one read, one delete and one insert
        (Core statements: a run holds thousands): whatever conflicts with a newer reservation (same
        reservation, same slug, or same organization and type) is stale, in the table and within the
        batch. An organization of this region whose PRIMARY reservation now backs the slug it has
        gets its mapping queued for control in the same transaction (control refuses a mapping no
        reservation backs, so this is when it can be written; whoever drains the region's outbox
        delivers it, the import right away, the background drainer otherwise)."""
        replica = OrganizationSlugReservationReplica

        # The newest of the batch's reservations that clash with one another wins (looked up by key).
        survivors: dict[int, ReplicaUpdate] = {}
        by_id: dict[int, int] = {}
        by_slug: dict[str, int] = {}
        by_pair: dict[tuple[int, int], int] = {}
        for position, reservation in enumerate(reservations):
            pair = (reservation.organization_id, reservation.reservation_type)
            for older in (
                by_id.get(reservation.reservation_id),
                by_slug.get(reservation.slug),
                by_pair.get(pair),
            ):
                if older is not None:
                    survivors.pop(older, None)
            survivors[position] = reservation
            by_id[reservation.reservation_id] = by_slug[reservation.slug] = by_pair[pair] = position
        kept = list(survivors.values())
        kept_ids, kept_slugs = {r.reservation_id for r in kept}, {r.slug for r in kept}
        kept_pairs = {(r.organization_id, r.reservation_type) for r in kept}
        with self.unit_of_work() as work:
            connection = work.connection
            stale: set[int] = set()
            for part in chunks(kept, per_statement(self._dialect)):
                for row in connection.execute(
                    select(
                        replica.id,
                        replica.reservation_id,
                        replica.slug,
                        replica.organization_id,
                        replica.reservation_type,
                    ).where(
                        among(self._dialect, replica.reservation_id, [r.reservation_id for r in part])
                        | among(self._dialect, replica.slug, [r.slug for r in part])
                        | among(self._dialect, replica.organization_id, [r.organization_id for r in part])
                    )
                ):
                    if (
                        row.reservation_id in kept_ids
                        or row.slug in kept_slugs
                        or (row.organization_id, row.reservation_type) in kept_pairs
                    ):
                        stale.add(row.id)
            for condition in among_parts(self._dialect, replica.id, sorted(stale)):
                connection.execute(delete(replica).where(condition))
            if kept:
                connection.execute(insert(replica), [dataclasses.asdict(r) for r in kept])
            backed = {
                r.organization_id: r.slug
                for r in kept
                if r.reservation_type == PRIMARY and r.region_name == self._region
            }
            o = ORGANIZATIONS.c
            mapped: list[int] = []
            for condition in among_parts(self._dialect, o.id, sorted(backed)):
                mapped.extend(
                    organization_id
                    for organization_id, slug in connection.execute(select(o.id, o.slug).where(condition))
                    if backed[organization_id] == slug
                )
            work.enqueue_many(
                [(organization_shard(i), OutboxCategory.ORGANIZATION_UPDATE, i, None) for i in sorted(mapped)]
            )
            work.commit(drain=False)  # no call back into control from within control's call

    def delete_replicas(self, reservation_ids: Sequence[int]) -> None:
        with self._engine.begin() as connection:
            for condition in among_parts(
                self._dialect, OrganizationSlugReservationReplica.reservation_id, reservation_ids
            ):
                connection.execute(delete(OrganizationSlugReservationReplica).where(condition))

    # ---- the region outbox ----------------------------------------------------------------------------

    def unit_of_work(self, delivery: BackgroundDelivery | None = None) -> UnitOfWork:
        """A transaction whose outbox messages are delivered to control right after it commits (by
        ``delivery``'s thread when given)."""
        return UnitOfWork(self._engine, self.outbox, self.handle, delivery=delivery)

    def drain(self, shards: Sequence[Shard], *, wait_s: float = 20.0) -> None:
        """Deliver these shards' messages now (many shards per call), waiting up to ``wait_s`` for
        shards another drainer holds."""
        self.outbox.drain_all_now(shards, self.handle, wait_s=wait_s)

    def drain_due(self) -> int:
        return self.outbox.drain_due(self.handle)

    def deliver(self, bounds: Mapping[Shard, int]) -> int:
        """Deliver what committed transactions wrote, up to these bounds (an import's background
        delivery, here or in its delivery process); the number of messages delivered."""
        return self.outbox.drain_committed(bounds, self.handle)

    def handle(self, messages: Sequence[Message]) -> None:
        """Deliver a run of messages in order: consecutive member and member-team messages go to control
        in as few calls as their number allows."""
        if self._control is None:
            raise RegionError("this region has no control address; its outbox cannot be delivered")
        control = self._control
        for category, run in groupby(messages, key=lambda m: m.category):
            batch = list(run)
            if category is OutboxCategory.ORGANIZATION_UPDATE:
                self._organizations_updated(control, batch)
            elif category is OutboxCategory.ORGANIZATION_MEMBER_UPDATE:
                self._members_updated(control, batch)
            elif category is OutboxCategory.ORGANIZATION_MEMBER_TEAM_UPDATE:
                self._member_teams_updated(control, batch)
            else:
                _LOGGER.warning("region outbox: no handler for %s", category.name)

    def _organizations_updated(self, control: GrpcControlClient, messages: Sequence[Message]) -> None:
        o = ORGANIZATIONS.c
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(o.id, o.slug, o.name, o.status).where(
                    among(self._dialect, o.id, [m.object_id for m in messages])
                )
            ).all()
        mappings = [
            OrganizationMappingUpdate(r.id, r.slug, r.name, r.status) for r in rows
        ]  # a deleted organization has nothing to map
        if not mappings:
            return
        for organization_id in control.upsert_mappings(self._region, mappings):
            # No reservation backs this slug yet (a fresh import): the mapping comes with the reservation.
            _LOGGER.info("mapping of organization %d waits for its slug reservation", organization_id)

    def _members_updated(self, control: GrpcControlClient, messages: Sequence[Message]) -> None:
        m = MEMBERS.c
        for part in chunks((i for message in messages for i in message.object_ids), PER_CALL):
            with self._engine.connect() as connection:
                members = connection.execute(
                    select(m.id, m.organization_id, m.user_id, m.email, m.role, m.invite_status).where(
                        among(self._dialect, m.id, part)
                    )
                ).all()
            by_id = {member.id: member for member in members}
            updates = [
                MemberMapping(
                    organization_id=member.organization_id,
                    member_id=member.id,
                    user_id=member.user_id,
                    email=member.email,
                    role=member.role,
                    invite_status=member.invite_status or 0,
                )
                for member in (by_id.get(i) for i in part)
                if member is not None  # deleted since: nothing to map
            ]
            if updates:
                control.upsert_member_mappings(self._region, updates)

    def _member_teams_updated(self, control: GrpcControlClient, messages: Sequence[Message]) -> None:
        t = MEMBER_TEAMS.c
        organization_of = {i: message.shard.shard_id for message in messages for i in message.object_ids}
        for part in chunks(organization_of, PER_CALL):
            with self._engine.connect() as connection:
                rows = connection.execute(
                    select(t.id, t.organizationmember_id, t.team_id, t.is_active).where(
                        among(self._dialect, t.id, part)
                    )
                ).all()
            by_id = {row.id: row for row in rows}
            updates = [
                MemberTeamReplica(
                    organization_id=organization_of[i],
                    member_team_id=i,
                    member_id=row.organizationmember_id,
                    team_id=row.team_id,
                    is_active=bool(row.is_active),
                )
                for i, row in ((i, by_id.get(i)) for i in part)
                if row is not None
            ]
            if updates:
                control.upsert_member_team_replicas(self._region, updates)


def produce_outbox(work: UnitOfWork, model: str, inserted: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
    """Outbox messages for imported rows control must learn about, in the batch's own transaction: for
    members and team memberships one per organization listing their ids. An imported organization has
    none here: control would refuse its mapping, since no reservation backs its slug yet; the import's
    slug step sends it with the answer (or control's rename callback does)."""
    if model == "sentry.organizationmember":
        work.enqueue_many(
            _listing(
                OutboxCategory.ORGANIZATION_MEMBER_UPDATE,
                ((int(columns["organization_id"]), new_id) for new_id, columns in inserted),
            )
        )
    elif model == "sentry.organizationmemberteam":
        member_ids = sorted({int(columns["organizationmember_id"]) for _id, columns in inserted})
        organization_of: dict[int, int] = {}
        dialect = work.connection.dialect.name
        for part in chunks(member_ids, PER_CALL):
            organization_of.update(
                work.connection.execute(
                    select(MEMBERS.c.id, MEMBERS.c.organization_id).where(among(dialect, MEMBERS.c.id, part))
                )
                .tuples()
                .all()
            )
        work.enqueue_many(
            _listing(
                OutboxCategory.ORGANIZATION_MEMBER_TEAM_UPDATE,
                (
                    (organization_of[int(columns["organizationmember_id"])], new_id)
                    for new_id, columns in inserted
                ),
            )
        )


def _listing(category: OutboxCategory, objects: Iterable[tuple[int, int]]) -> list[Outgoing]:
    """One message per organization listing its objects, from (organization id, object id) pairs in
    order (never coalesced; see ``shared.db.outbox``)."""
    by_organization: dict[int, list[int]] = {}
    for organization_id, object_id in objects:
        by_organization.setdefault(organization_id, []).append(object_id)
    return [
        (organization_shard(organization_id), category, ids[0], {IDS: ids})
        for organization_id, ids in by_organization.items()
    ]
