"""Globally unique organization slugs: reservations, the rename callback into the region, mappings.

``reserve`` is Sentry's bulk slug reservation made replay-safe. In one transaction control picks a free
slug for each organization and holds it as a TEMPORARY_RENAME_ALIAS with an outbox message; after the
commit it drains those shards: the handler mirrors the reservation into the region and asks the region
to take the slug; the region renames the organization and, through its own outbox, upserts the
organization mapping here; then the alias becomes the PRIMARY reservation. The answers are recorded per
(import id, organization), so a retry or a resumed import gets the same slugs and nothing is renamed
twice. No transaction is open while a region is called.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Engine,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control.db.models import CONTROL_OUTBOX, OrganizationMapping, OrganizationSlugReservation, SlugRequest
from control.errors import ControlError
from control.rpc.region_client import GrpcRegionClients
from shared.db.among import among, among_parts, chunks, per_statement
from shared.db.copy import insert_rows, insert_rows_with_new_ids
from shared.db.outbox import Message, Outbox, OutboxCategory, OutboxScope, Shard
from shared.db.unit_of_work import Outgoing, UnitOfWork
from shared.relocation.hooks import needs_suffix, slugify, suffix_rng, suffixed_candidates
from shared.rpc.deadline import remaining

_LOGGER = logging.getLogger(__name__)
SLUG_LENGTH = 30
RESERVATIONS = cast(Table, OrganizationSlugReservation.__table__)
REQUESTS = cast(Table, SlugRequest.__table__)
#: The columns an import's direct reservations and its recorded answers are written with.
_RESERVATION_COLUMNS = ("slug", "organization_id", "region_name", "reservation_type")
_REQUEST_COLUMNS = ("import_id", "region_name", "organization_id", "wanted", "final")


class ReservationType(enum.IntEnum):
    PRIMARY = 0
    VANITY_ALIAS = 1
    TEMPORARY_RENAME_ALIAS = 2


class AliasHeld(ControlError):
    """Another import is still renaming this organization."""

    reason = "alias_held"


class SlugTaken(ControlError):
    """The region could not give the organization the slug control picked."""

    reason = "slug_taken"

    def __init__(self, organization_id: int, slug: str, message: str) -> None:
        self.fields = {"organization_id": str(organization_id), "slug": slug}
        super().__init__(f"organization {organization_id} cannot take slug {slug!r} in its region: {message}")


class SwapIncomplete(ControlError):
    """The rename did not finish within the call; control keeps trying in the background."""

    reason = "swap_incomplete"


class MappingRejected(ControlError):
    """An organization mapping update that no reservation backs."""

    reason = "mapping_rejected"


@dataclass(frozen=True)
class MappingUpdate:
    organization_id: int
    region_name: str
    slug: str
    name: str
    status: int


def shard_of(region_name: str, organization_id: int) -> Shard:
    return Shard(region_name, OutboxScope.ORGANIZATION, organization_id)


class SlugService:
    def __init__(
        self,
        engine: Engine,
        regions: GrpcRegionClients,
        *,
        drain_wait_s: float = 20.0,
        outbox_lease_s: float = 60.0,
    ) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._regions = regions
        self._outbox = Outbox(engine, CONTROL_OUTBOX, lease=timedelta(seconds=outbox_lease_s), batch=2000)
        self._deliver = self.handle
        self._drain_wait = drain_wait_s

    # ---- the bulk call ------------------------------------------------------------------------------

    def reserve(
        self, import_id: str, region_name: str, wanted: Mapping[int, str], *, held_in_region: bool = False
    ) -> dict[int, str]:
        """Each organization's final slug. With ``held_in_region`` the organizations already hold the
        slugs they ask for in their region (an import's new organizations): where that slug is free
        everywhere, it becomes their PRIMARY reservation at once, with no alias and no rename, and the
        region sends their mappings once it has the answer."""
        self._regions.peer(region_name)  # an unknown region is an error before anything is written
        started = time.monotonic()
        pending = self._hold_aliases(import_id, region_name, wanted, held_in_region)
        held = time.monotonic()
        self._outbox.drain_all_now(
            [shard_of(region_name, organization_id) for organization_id in pending],
            self._deliver,
            wait_s=remaining(self._drain_wait),  # never past the caller's deadline
        )
        drained = time.monotonic()
        answer = self._answer(import_id, region_name, wanted)
        _LOGGER.info(
            "slugs of %d organization(s) of import %s in region %s: %.2f s holding and renaming, "
            "%.2f s draining, %.2f s answering",
            len(wanted),
            import_id,
            region_name,
            held - started,
            drained - held,
            time.monotonic() - drained,
        )
        return answer

    def _hold_aliases(
        self, import_id: str, region_name: str, wanted: Mapping[int, str], held_in_region: bool
    ) -> list[int]:
        for attempt in range(5):
            try:
                with UnitOfWork(self._engine, self._outbox, self._deliver) as work:
                    pending = self._hold(work, import_id, region_name, wanted, held_in_region)
                    work.commit()  # delivers the messages: replicas, and the aliases' renames
                    return pending
            except IntegrityError:
                _LOGGER.info("slug race lost (attempt %d); choosing again", attempt + 1)
        raise ControlError("could not reserve slugs after 5 attempts: every candidate was taken concurrently")

    def _hold(
        self,
        work: UnitOfWork,
        import_id: str,
        region_name: str,
        wanted: Mapping[int, str],
        held_in_region: bool,
    ) -> list[int]:
        """Hold a temporary alias for each organization that needs a new slug, or (``held_in_region``)
        give one that already holds a slug free everywhere its PRIMARY reservation and its answer;
        reservations and the holders of the slugs asked for are read in bulk, the rows written with
        one statement per kind."""
        session = work.session
        organization_ids = sorted(wanted)
        requests, held = _requests_and_reservations(session, import_id, region_name, organization_ids)
        answered: set[int] = set()
        for request in requests.values():
            if request.refusal is None:
                answered.add(request.organization_id)
            else:  # refused last time: this call tries again
                session.delete(request)
        bases = sorted({slugify(slug, SLUG_LENGTH) for slug in wanted.values()})
        holders: dict[str, _Holder | None] = dict.fromkeys(bases)
        for condition in among_parts(self._dialect, OrganizationSlugReservation.slug, bases):
            holders.update(_holders(work.connection, condition))
        pending: list[int] = []
        aliases: list[tuple[int, str]] = []  # (organization, slug chosen)
        direct: list[tuple[int, str]] = []  # (organization, the slug it holds and keeps)
        for organization_id in organization_ids:
            if organization_id in answered:
                continue
            pending.append(organization_id)
            alias = held.get((organization_id, ReservationType.TEMPORARY_RENAME_ALIAS))
            if alias is not None:
                if alias.import_id != import_id:
                    raise AliasHeld(
                        f"organization {organization_id} is being renamed by import {alias.import_id}; "
                        "finish or retry that import first"
                    )
                continue  # our own alias from an interrupted call: the drain below finishes it
            chosen = self._free_slug(
                work.connection,
                holders,
                import_id=import_id,
                region_name=region_name,
                organization_id=organization_id,
                wanted=wanted[organization_id],
            )
            primary = held.get((organization_id, ReservationType.PRIMARY))
            if primary is not None and primary.slug == chosen:
                # Already holds what this import would give it (asked for, or a rename finished by the
                # background drainer after an answer was lost): nothing to rename.
                continue
            if held_in_region and primary is None and chosen == wanted[organization_id]:
                # It has this slug in its region already and nobody holds it: nothing to rename.
                holders[chosen] = (organization_id, region_name, ReservationType.PRIMARY)
                direct.append((organization_id, chosen))
                continue
            holders[chosen] = (organization_id, region_name, ReservationType.TEMPORARY_RENAME_ALIAS)
            aliases.append((organization_id, chosen))
        session.flush()  # the refused requests deleted above go first
        if direct:
            self._reserve_directly(work, import_id, region_name, direct)
        if aliases:  # one statement (and one outbox insert), however many organizations
            created = work.connection.execute(
                insert(OrganizationSlugReservation).returning(
                    OrganizationSlugReservation.id, sort_by_parameter_order=True
                ),
                [
                    {
                        "slug": slug,
                        "organization_id": organization_id,
                        "region_name": region_name,
                        "reservation_type": ReservationType.TEMPORARY_RENAME_ALIAS,
                        "import_id": import_id,
                    }
                    for organization_id, slug in aliases
                ],
            ).scalars()
            work.enqueue_many(
                [
                    (
                        shard_of(region_name, organization_id),
                        OutboxCategory.ORGANIZATION_SLUG_RESERVATION_UPDATE,
                        alias_id,
                        None,
                    )
                    for (organization_id, _slug), alias_id in zip(aliases, created, strict=True)
                ]
            )
        return pending

    def _reserve_directly(
        self, work: UnitOfWork, import_id: str, region_name: str, direct: Sequence[tuple[int, str]]
    ) -> None:
        """PRIMARY reservations for organizations that keep the slug they hold, their recorded answers
        and their replicas' messages: one statement each, however many organizations."""
        connection = work.connection
        reservations = [
            (slug, organization_id, region_name, ReservationType.PRIMARY) for organization_id, slug in direct
        ]
        requests = [(import_id, region_name, organization_id, slug, slug) for organization_id, slug in direct]
        # Thousands of rows for an import: COPY on PostgreSQL, the ids from the sequence at once.
        created = insert_rows_with_new_ids(connection, RESERVATIONS, _RESERVATION_COLUMNS, reservations)
        insert_rows(connection, REQUESTS, _REQUEST_COLUMNS, requests)
        work.enqueue_many(
            [
                (
                    shard_of(region_name, organization_id),
                    OutboxCategory.ORGANIZATION_SLUG_RESERVATION_UPDATE,
                    reservation_id,
                    None,
                )
                for (organization_id, _slug), reservation_id in zip(direct, created, strict=True)
            ]
        )

    def _free_slug(
        self,
        connection: Connection,
        holders: dict[str, _Holder | None],
        *,
        import_id: str,
        region_name: str,
        organization_id: int,
        wanted: str,
    ) -> str:
        """The first of this import's candidates for the organization that is free or already its own
        (``holders`` caches who holds which slug)."""
        base = slugify(wanted, SLUG_LENGTH)
        candidates = _candidates(import_id, organization_id, base)
        candidate = base
        for candidate in candidates:
            if candidate not in holders:
                holders[candidate] = _holders(connection, OrganizationSlugReservation.slug == candidate).get(
                    candidate
                )
            if holders[candidate] in (None, (organization_id, region_name, ReservationType.PRIMARY)):
                return candidate
        return candidate  # all taken: the unique index refuses it and the transaction is retried

    def _answer(self, import_id: str, region_name: str, wanted: Mapping[int, str]) -> dict[int, str]:
        """Each organization's final slug, recorded against the import (read in bulk)."""
        final: dict[int, str] = {}
        organization_ids = sorted(wanted)
        with Session(self._engine) as session, session.begin():
            recorded, held = _requests_and_reservations(session, import_id, region_name, organization_ids)
            for organization_id in organization_ids:
                if organization_id in recorded:
                    request = recorded[organization_id]
                    if request.refusal is not None:
                        raise SlugTaken(organization_id, request.final, request.refusal)
                    final[organization_id] = request.final
                    continue
                if (organization_id, ReservationType.TEMPORARY_RENAME_ALIAS) in held:
                    raise SwapIncomplete(
                        f"the rename of organization {organization_id} is still in progress; call again"
                    )
                primary = held.get((organization_id, ReservationType.PRIMARY))
                if primary is None:
                    raise SwapIncomplete(f"organization {organization_id} has no slug yet; call again")
                session.add(
                    SlugRequest(
                        import_id=import_id,
                        organization_id=organization_id,
                        region_name=region_name,
                        wanted=wanted[organization_id],
                        final=primary.slug,
                    )
                )
                final[organization_id] = primary.slug
        return final

    # ---- the outbox handler (runs with no transaction open) -------------------------------------------

    def handle(self, messages: Sequence[Message]) -> None:
        """Deliver a run of reservation messages: per region, one call deletes the replicas of
        reservations that are gone, one upserts the others, one renames the organizations of temporary
        aliases; then every alias is swapped for its PRIMARY reservation in one transaction."""
        wanted: list[Message] = []
        for message in messages:
            if message.category is OutboxCategory.ORGANIZATION_SLUG_RESERVATION_UPDATE:
                wanted.append(message)
            else:
                _LOGGER.warning("control outbox: no handler for %s", message.category.name)
        with Session(self._engine) as session:
            found = {
                r.id: r
                for r in session.scalars(
                    select(OrganizationSlugReservation).where(
                        among(self._dialect, OrganizationSlugReservation.id, [m.object_id for m in wanted])
                    )
                )
            }
            session.expunge_all()
        by_region: dict[str, list[Message]] = {}
        for message in wanted:
            by_region.setdefault(message.shard.destination, []).append(message)
        for region_name, region_messages in by_region.items():
            gone = [m.object_id for m in region_messages if m.object_id not in found]
            present = [found[m.object_id] for m in region_messages if m.object_id in found]
            if gone:
                self._regions.delete_replicas(region_name, gone)
            if present:
                self._regions.upsert_replicas(region_name, present)
            aliases = [r for r in present if r.reservation_type == ReservationType.TEMPORARY_RENAME_ALIAS]
            if aliases:
                self._swap_done(aliases, self._regions.update_slugs(region_name, aliases))

    def _swap_done(
        self, aliases: Sequence[OrganizationSlugReservation], refusals: Mapping[int, str | None]
    ) -> None:
        """Drop the aliases; where the region took the slug, the organization's PRIMARY reservation takes
        it, and where it could not, the failure is kept for the answer. Core statements, a few per run
        whatever its size. The new messages are delivered by the drain this runs in."""
        reservation = OrganizationSlugReservation
        dialect = self._dialect
        with UnitOfWork(self._engine, self._outbox, self._deliver) as work:
            connection = work.connection
            # The aliases still there are deleted and named in one statement (another drainer may have
            # swapped some already); their slugs are then free for the PRIMARY reservations below.
            still_held = set(
                connection.execute(
                    delete(reservation)
                    .where(among(dialect, reservation.id, [a.id for a in aliases]))
                    .returning(reservation.id)
                ).scalars()
            )
            primaries: dict[tuple[str, int], int] = {
                (region_name, organization_id): reservation_id
                for reservation_id, region_name, organization_id in connection.execute(
                    select(reservation.id, reservation.region_name, reservation.organization_id).where(
                        among(dialect, reservation.organization_id, [a.organization_id for a in aliases]),
                        reservation.reservation_type == ReservationType.PRIMARY,
                    )
                )
            }
            outgoing: list[Outgoing] = []
            for alias in aliases:
                if alias.id in still_held and refusals.get(alias.organization_id, "no answer") is not None:
                    # The region's replica of the alias goes with a message of its own; where the swap
                    # succeeds, the PRIMARY's replica, with the same slug, replaces it in the region.
                    outgoing.append(self._message(alias, alias.id))
            outgoing.extend(self._take_slugs(connection, aliases, refusals, primaries))
            work.enqueue_many(outgoing)
            work.commit(drain=False)

    def _take_slugs(
        self,
        connection: Connection,
        aliases: Sequence[OrganizationSlugReservation],
        refusals: Mapping[int, str | None],
        primaries: Mapping[tuple[str, int], int],
    ) -> list[Outgoing]:
        """Record each alias's answer and give its organization's PRIMARY reservation its slug (the
        aliases are gone); returns the PRIMARY reservations' messages."""
        reservation, request = OrganizationSlugReservation, SlugRequest
        outgoing: list[Outgoing] = []
        answered = _recorded_requests(connection, aliases)
        new_requests: dict[tuple[str, str, int], dict[str, object]] = {}
        changed_requests: list[dict[str, object]] = []
        new_primaries: list[OrganizationSlugReservation] = []
        moved_primaries: list[dict[str, object]] = []
        for alias in aliases:
            refusal = refusals.get(alias.organization_id, "the region did not answer for it")
            if alias.import_id:
                # The answer is recorded with the swap, so a retry of the import (even after this
                # process died, or when another process's drainer did the swap) gets the same one.
                key = (alias.import_id, alias.region_name, alias.organization_id)
                if key in answered:
                    changed_requests.append(
                        {"k_import": key[0], "k_region": key[1], "k_org": key[2], "n_slug": alias.slug}
                        | {"n_refusal": refusal}
                    )
                else:
                    new_requests[key] = {
                        "import_id": key[0],
                        "region_name": key[1],
                        "organization_id": key[2],
                        "wanted": alias.slug,
                        "final": alias.slug,
                        "refusal": refusal,
                    }
            if refusal is not None:
                continue
            primary_id = primaries.get((alias.region_name, alias.organization_id))
            if primary_id is None:
                new_primaries.append(alias)
            else:
                moved_primaries.append({"k_id": primary_id, "n_slug": alias.slug})
                outgoing.append(self._message(alias, primary_id))
        if changed_requests:
            _all_updated(
                changed_requests,
                connection.execute(
                    update(request)
                    .where(
                        request.import_id == bindparam("k_import"),
                        request.region_name == bindparam("k_region"),
                        request.organization_id == bindparam("k_org"),
                    )
                    .values(
                        wanted=bindparam("n_slug"), final=bindparam("n_slug"), refusal=bindparam("n_refusal")
                    ),
                    changed_requests,
                ),
            )
        if new_requests:
            connection.execute(insert(request), list(new_requests.values()))
        if moved_primaries:
            _all_updated(
                moved_primaries,
                connection.execute(
                    update(reservation)
                    .where(reservation.id == bindparam("k_id"))
                    .values(slug=bindparam("n_slug")),
                    moved_primaries,
                ),
            )
        if new_primaries:
            created = connection.execute(
                insert(reservation).returning(reservation.id, sort_by_parameter_order=True),
                [
                    {
                        "slug": alias.slug,
                        "organization_id": alias.organization_id,
                        "region_name": alias.region_name,
                        "reservation_type": ReservationType.PRIMARY,
                    }
                    for alias in new_primaries
                ],
            ).scalars()
            outgoing.extend(
                self._message(alias, primary_id)
                for alias, primary_id in zip(new_primaries, created, strict=True)
            )
        return outgoing

    @staticmethod
    def _message(alias: OrganizationSlugReservation, reservation_id: int) -> Outgoing:
        return (
            shard_of(alias.region_name, alias.organization_id),
            OutboxCategory.ORGANIZATION_SLUG_RESERVATION_UPDATE,
            reservation_id,
            None,
        )

    def drain_due(self) -> int:
        """One sweep over every due shard (the background drainer and DrainOutbox call this)."""
        return self._outbox.drain_due(self._deliver)

    # ---- organization mappings ----------------------------------------------------------------------

    def upsert_mappings(self, updates: Sequence[MappingUpdate]) -> list[int]:
        """Create or update organizations' mappings in one transaction (the last update of an
        organization wins), with one read per table and one UPDATE and one INSERT statement. A mapping
        is written only when a reservation of its region backs its slug; the others are returned (they
        are written when the reservation is)."""
        rejected: list[int] = []
        mapping, reservation = OrganizationMapping, OrganizationSlugReservation
        with self._engine.begin() as connection:
            backed: set[tuple[str, int, str]] = set()
            existing: dict[tuple[str, int], int] = {}
            for region_name in {u.region_name for u in updates}:
                ids = sorted({u.organization_id for u in updates if u.region_name == region_name})
                for chunk in chunks(ids, per_statement(self._dialect)):
                    backed.update(
                        (region_name, organization_id, slug)
                        for organization_id, slug in connection.execute(
                            select(reservation.organization_id, reservation.slug).where(
                                reservation.region_name == region_name,
                                among(self._dialect, reservation.organization_id, chunk),
                            )
                        )
                    )
                    existing.update(
                        ((region_name, organization_id), mapping_id)
                        for mapping_id, organization_id in connection.execute(
                            select(mapping.id, mapping.organization_id).where(
                                mapping.region_name == region_name,
                                among(self._dialect, mapping.organization_id, chunk),
                            )
                        )
                    )
            latest: dict[tuple[str, int], MappingUpdate] = {}
            for change in updates:
                if (change.region_name, change.organization_id, change.slug) not in backed:
                    rejected.append(change.organization_id)
                    continue
                key = (change.region_name, change.organization_id)
                latest.pop(key, None)  # written in the order of each organization's last update
                latest[key] = change
            changed = [
                {"k_id": existing[key], "n_slug": u.slug, "n_name": u.name, "n_status": u.status}
                for key, u in latest.items()
                if key in existing
            ]
            if changed:
                connection.execute(
                    update(mapping)
                    .where(mapping.id == bindparam("k_id"))
                    .values(slug=bindparam("n_slug"), name=bindparam("n_name"), status=bindparam("n_status")),
                    changed,
                )
            fresh = [
                {
                    "organization_id": u.organization_id,
                    "region_name": u.region_name,
                    "slug": u.slug,
                    "name": u.name,
                    "status": u.status,
                }
                for key, u in latest.items()
                if key not in existing
            ]
            if fresh:
                connection.execute(insert(mapping), fresh)
        return rejected


def _candidates(import_id: str, organization_id: int, base: str) -> Iterator[str]:
    """The slugs to try for an organization, in order: the one asked for (unless it may not be used),
    then this import's suffixed ones, made only when they are reached."""
    if not needs_suffix("sentry.organization", base):
        yield base
    yield from suffixed_candidates(base or "org", SLUG_LENGTH, suffix_rng(import_id, "slug", organization_id))


def _all_updated(parameters: Sequence[object], result: CursorResult[Any]) -> None:
    """Raise (rolling the swap back, for the drain to retry) when a row read in this transaction was
    gone by the time it was updated: another drainer changed it."""
    if result.context.dialect.supports_sane_multi_rowcount and result.rowcount != len(parameters):
        raise ControlError(
            f"{len(parameters) - result.rowcount} row(s) changed under the swap; it is retried"
        )


#: Who holds a slug: (organization id, region, reservation type).
_Holder = tuple[int, str, int]


def _holders(connection: Connection, condition: ColumnElement[bool]) -> dict[str, _Holder]:
    """The holders of the slugs ``condition`` selects, by slug."""
    r = OrganizationSlugReservation
    return {
        slug: (organization_id, region_name, reservation_type)
        for slug, organization_id, region_name, reservation_type in connection.execute(
            select(r.slug, r.organization_id, r.region_name, r.reservation_type).where(condition)
        )
    }


def _recorded_requests(
    connection: Connection, aliases: Sequence[OrganizationSlugReservation]
) -> set[tuple[str, str, int]]:
    """Which of these aliases' (import, region, organization) have a recorded answer, read in bulk."""
    keys = {(a.import_id, a.region_name, a.organization_id) for a in aliases if a.import_id}
    organization_ids = sorted({key[2] for key in keys})
    found: set[tuple[str, str, int]] = set()
    dialect = connection.dialect.name
    for condition in among_parts(dialect, SlugRequest.organization_id, organization_ids):
        for key in connection.execute(
            select(SlugRequest.import_id, SlugRequest.region_name, SlugRequest.organization_id).where(
                SlugRequest.import_id.in_(sorted({key[0] for key in keys})),
                condition,
            )
        ):
            if tuple(key) in keys:
                found.add((key[0], key[1], key[2]))
    return found


def _requests_and_reservations(
    session: Session, import_id: str, region_name: str, organization_ids: Sequence[int]
) -> tuple[dict[int, SlugRequest], dict[tuple[int, ReservationType], OrganizationSlugReservation]]:
    """The import's recorded answers and the organizations' reservations, by organization (and type),
    read with two queries (per ``per_statement`` organizations)."""
    requests: dict[int, SlugRequest] = {}
    held: dict[tuple[int, ReservationType], OrganizationSlugReservation] = {}
    dialect = session.get_bind().dialect.name
    for chunk in chunks(organization_ids, per_statement(dialect)):
        for request in session.scalars(
            select(SlugRequest).where(
                SlugRequest.import_id == import_id,
                SlugRequest.region_name == region_name,
                among(dialect, SlugRequest.organization_id, chunk),
            )
        ):
            requests[request.organization_id] = request
        for reservation in session.scalars(
            select(OrganizationSlugReservation).where(
                OrganizationSlugReservation.region_name == region_name,
                among(dialect, OrganizationSlugReservation.organization_id, chunk),
            )
        ):
            held[(reservation.organization_id, ReservationType(reservation.reservation_type))] = reservation
    return requests, held
