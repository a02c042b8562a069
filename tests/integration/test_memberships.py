"""Control's copies of the regions' members and team memberships: a run of updates inserts new rows
(with COPY on PostgreSQL), updates held ones (an upsert, the whole run, when any row is held), and keeps
the last update of a row; a run never fails because some of its rows arrived before."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.exc import DBAPIError

from control import memberships
from control.db.models import OrganizationMemberMapping, OrganizationMemberTeamReplica
from control.db.schema import MIGRATIONS
from control.memberships import MembershipService, MemberTeamUpdate, MemberUpdate
from shared.db.copy import copy_rows as real_copy_rows
from shared.db.engine import make_engine
from tests.conftest import MigratedEngineFactory, PostgresServer


def members(engine: Engine) -> dict[tuple[str, int], tuple[int, int | None, str | None, str, int]]:
    table = OrganizationMemberMapping.__table__
    with engine.connect() as connection:
        return {
            (r.region_name, r.organizationmember_id): (
                r.organization_id,
                r.user_id,
                r.email,
                r.role,
                r.invite_status,
            )
            for r in connection.execute(select(table))
        }


def member(region: str, member_id: int, role: str = "member", user_id: int | None = 7) -> MemberUpdate:
    return MemberUpdate(region, 3, member_id, user_id, None if user_id else f"{member_id}@x.io", role, 0)


def test_new_rows_then_a_run_mixing_held_and_new_ones(
    migrated_engine: MigratedEngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = migrated_engine("memberships", MIGRATIONS)
    service = MembershipService(engine)
    copied: list[int] = []  # rows of each COPY that went through (PostgreSQL)

    def copy_rows(connection: Connection, table: Table, names: Sequence[str], rows: list[Any]) -> None:
        real_copy_rows(connection, table, names, rows)
        copied.append(len(rows))

    monkeypatch.setattr(memberships, "copy_rows", copy_rows)
    service.upsert_members([member("eu", 1), member("eu", 2, user_id=None), member("us", 1)])
    assert members(engine) == {
        ("eu", 1): (3, 7, None, "member", 0),
        ("eu", 2): (3, None, "2@x.io", "member", 0),
        ("us", 1): (3, 7, None, "member", 0),
    }
    assert copied == ([3] if engine.dialect.name == "postgresql" else [])
    # A redelivery of one, an update of another, a new one, and two updates of one row in one run.
    service.upsert_members(
        [
            member("eu", 1),
            member("eu", 2, "owner", None),
            member("eu", 9, "admin"),
            member("eu", 9, "manager"),
        ]
    )
    assert members(engine) == {
        ("eu", 1): (3, 7, None, "member", 0),
        ("eu", 2): (3, None, "2@x.io", "owner", 0),
        ("eu", 9): (3, 7, None, "manager", 0),
        ("us", 1): (3, 7, None, "member", 0),
    }
    # The same run again changes nothing and does not fail.
    service.upsert_members([member("eu", 9, "manager"), member("eu", 2, "owner", None)])
    assert len(members(engine)) == 4
    assert copied == ([3] if engine.dialect.name == "postgresql" else [])  # the others held a key


def test_team_memberships_are_inserted_then_updated(migrated_engine: MigratedEngineFactory) -> None:
    engine = migrated_engine("member_teams", MIGRATIONS)
    service = MembershipService(engine)
    service.upsert_member_teams([MemberTeamUpdate("eu", 3, n, 10 + n, 5, True) for n in (1, 2, 3)])
    service.upsert_member_teams(
        [MemberTeamUpdate("eu", 3, 2, 12, 5, False), MemberTeamUpdate("eu", 3, 4, 14, 6, True)]
    )
    table = OrganizationMemberTeamReplica.__table__
    with engine.connect() as connection:
        stored = {
            r.organizationmemberteam_id: (r.organizationmember_id, r.team_id, r.is_active)
            for r in connection.execute(select(table))
        }
    assert stored == {1: (11, 5, True), 2: (12, 5, False), 3: (13, 5, True), 4: (14, 6, True)}


@pytest.mark.postgresql
def test_a_value_too_long_for_its_column_is_refused_whether_the_run_is_new_or_not(
    postgres: PostgresServer,
) -> None:
    """The COPY of new rows and the upsert of held ones treat a string longer than its column alike:
    both refuse it, and nothing of the run is written. PostgreSQL only: SQLite does not enforce string
    lengths."""
    engine = make_engine(postgres.create_database("memberships_long"))
    try:
        MIGRATIONS.upgrade(engine)
        service = MembershipService(engine)
        service.upsert_members([member("eu", 1)])
        long_email = "x" * 80 + "@x.io"
        for ids in ([2], [1, 2]):  # all new (COPY), then one held (the upsert)
            run = [MemberUpdate("eu", 3, n, None, long_email, "member", 0) for n in ids]
            with pytest.raises(DBAPIError, match="too long"):
                service.upsert_members(run)
        assert members(engine) == {("eu", 1): (3, 7, None, "member", 0)}
    finally:
        engine.dispose()
