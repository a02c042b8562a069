"""Control's copies of the regions' memberships, kept current by the regions' outboxes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, String, Text, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from control.db.models import OrganizationMemberMapping, OrganizationMemberTeamReplica
from shared.db.copy import can_copy, copy_rows


@dataclass(frozen=True)
class MemberUpdate:
    region_name: str
    organization_id: int
    organizationmember_id: int
    user_id: int | None
    email: str | None
    role: str
    invite_status: int


@dataclass(frozen=True)
class MemberTeamUpdate:
    region_name: str
    organization_id: int
    organizationmemberteam_id: int
    organizationmember_id: int
    team_id: int
    is_active: bool


class MembershipService:
    """Applies a run of updates in one statement per table: an upsert keyed by (region, id), where the
    last update of a row wins. On PostgreSQL a run of rows that are all new (an import's) is loaded with
    COPY instead."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert_members(self, updates: Sequence[MemberUpdate]) -> None:
        rows = {
            (u.region_name, u.organizationmember_id): {
                "region_name": u.region_name,
                "organizationmember_id": u.organizationmember_id,
                "organization_id": u.organization_id,
                "user_id": u.user_id,
                "email": u.email,
                "role": u.role,
                "invite_status": u.invite_status,
            }
            for u in updates
        }
        self._upsert(OrganizationMemberMapping.__table__, ["region_name", "organizationmember_id"], rows)

    def upsert_member_teams(self, updates: Sequence[MemberTeamUpdate]) -> None:
        rows = {
            (u.region_name, u.organizationmemberteam_id): {
                "region_name": u.region_name,
                "organizationmemberteam_id": u.organizationmemberteam_id,
                "organization_id": u.organization_id,
                "organizationmember_id": u.organizationmember_id,
                "team_id": u.team_id,
                "is_active": u.is_active,
            }
            for u in updates
        }
        self._upsert(
            OrganizationMemberTeamReplica.__table__, ["region_name", "organizationmemberteam_id"], rows
        )

    def _upsert(self, table: Any, keys: list[str], rows: dict[tuple[str, int], dict[str, Any]]) -> None:
        if not rows:
            return
        values = list(rows.values())  # one per key: a statement may not touch a row twice
        names = list(values[0])
        with self._engine.begin() as connection:
            if can_copy(connection) and _copied(connection, table, names, values):
                return
            if connection.dialect.name == "postgresql":
                # One statement for the whole run: each column arrives as one array and is unnested
                # into rows (executemany would run the upsert once per row on the server).
                # Strings as text[], not varchar(n)[]: an explicit cast of a text-form array to
                # varchar(n)[] cuts a longer value short, where the insert (as the COPY) refuses it.
                source = select(
                    *(
                        func.unnest(
                            bindparam(f"all_{name}", type_=ARRAY(_unbounded(table.c[name].type)))
                        ).label(name)
                        for name in names
                    )
                )
                statement = _on_conflict_update(
                    postgresql_insert(table).from_select(names, source), keys, names
                )
                connection.execute(
                    statement, {f"all_{name}": [row[name] for row in values] for name in names}
                )
            else:  # one statement, compiled once, executed for many rows
                connection.execute(_on_conflict_update(sqlite_insert(table), keys, names), values)


def _unbounded(column_type: Any) -> Any:
    return Text() if isinstance(column_type, String) else column_type


def _copied(connection: Connection, table: Any, names: list[str], values: list[dict[str, Any]]) -> bool:
    """The rows loaded with COPY, in a savepoint, if none of their keys is held yet (an import's
    members are new: COPY costs the server about half of what the upsert does); False, with nothing
    written, when one is (a redelivery, or an update), for the upsert to take them all."""
    try:
        with connection.begin_nested():
            copy_rows(connection, table, names, [[row[name] for name in names] for row in values])
    except IntegrityError:
        return False
    return True


def _on_conflict_update(statement: Any, keys: list[str], names: list[str]) -> Any:
    """``statement`` (PostgreSQL's or SQLite's INSERT) updating the row a key already holds."""
    return statement.on_conflict_do_update(
        index_elements=keys, set_={name: statement.excluded[name] for name in names if name not in keys}
    )
