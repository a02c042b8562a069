"""Control's swap of temporary aliases for PRIMARY reservations, on both databases: a row the swap read
but that changed before it was updated rolls the whole swap back (for the drain to retry), as the ORM's
stale-data check did; otherwise the PRIMARY takes the alias's slug and the alias is gone."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert, select

from control.db.models import OrganizationSlugReservation as Reservation
from control.db.models import SlugRequest
from control.db.schema import MIGRATIONS
from control.errors import ControlError
from control.rpc.region_client import GrpcRegionClients
from control.slugs import ReservationType, SlugService
from shared.config import RpcSettings
from tests.conftest import MigratedEngineFactory

IMPORT = "00000000-0000-0000-0000-00000000000a"


@pytest.fixture
def engine(migrated_engine: MigratedEngineFactory) -> Engine:
    return migrated_engine("control", MIGRATIONS)


def reserve(engine: Engine, slug: str, organization_id: int, kind: ReservationType) -> Reservation:
    with engine.begin() as connection:
        reservation_id = connection.execute(
            insert(Reservation)
            .values(
                slug=slug,
                organization_id=organization_id,
                region_name="eu",
                reservation_type=kind,
                import_id=IMPORT if kind is ReservationType.TEMPORARY_RENAME_ALIAS else None,
            )
            .returning(Reservation.id)
        ).scalar_one()
    with engine.connect() as connection:
        row = connection.execute(select(Reservation).where(Reservation.id == reservation_id)).one()
    return Reservation(**row._asdict())


def held(engine: Engine) -> set[tuple[str, int, int]]:
    with engine.connect() as connection:
        return {
            (r.slug, r.organization_id, r.reservation_type)
            for r in connection.execute(
                select(Reservation.slug, Reservation.organization_id, Reservation.reservation_type)
            )
        }


def test_the_primary_takes_the_alias_slug_and_a_vanished_primary_rolls_the_swap_back(engine: Engine) -> None:
    service = SlugService(engine, GrpcRegionClients({}, settings=RpcSettings(secrets=(b"x" * 16,))))
    reserve(engine, "old-one", 1, ReservationType.PRIMARY)
    alias = reserve(engine, "new-one", 1, ReservationType.TEMPORARY_RENAME_ALIAS)

    service._swap_done([alias], {1: None})
    assert held(engine) == {("new-one", 1, ReservationType.PRIMARY)}
    with engine.connect() as connection:
        answer = connection.execute(select(SlugRequest.final, SlugRequest.refusal)).one()
    assert tuple(answer) == ("new-one", None)

    # The swap reads organization 2's PRIMARY, which is deleted before its UPDATE runs (as if another
    # drainer changed it in between): nothing of the swap may stay.
    reserve(engine, "two-old", 2, ReservationType.PRIMARY)
    second = reserve(engine, "two-new", 2, ReservationType.TEMPORARY_RENAME_ALIAS)
    before = held(engine)
    with engine.begin() as connection:
        primaries = {("eu", 2): 999_999}  # no such row
        with pytest.raises(ControlError, match="changed under the swap"):
            service._take_slugs(connection, [second], {2: None}, primaries)
        connection.rollback()
    assert held(engine) == before
