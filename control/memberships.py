"""Control's copies of the regions' memberships, kept current by the regions' outboxes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from control.db.models import OrganizationMemberMapping, OrganizationMemberTeamReplica


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
    """Applies a run of updates in order, in one transaction: rows are looked up in bulk, the last update
    of a row wins."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert_members(self, updates: Sequence[MemberUpdate]) -> None:
        mapping = OrganizationMemberMapping
        with Session(self._engine) as session, session.begin():
            rows = _existing(
                session,
                mapping,
                mapping.organizationmember_id,
                {(u.region_name, u.organizationmember_id) for u in updates},
            )
            for update in updates:
                row = rows.get((update.region_name, update.organizationmember_id))
                if row is None:
                    row = mapping(
                        region_name=update.region_name, organizationmember_id=update.organizationmember_id
                    )
                    session.add(row)
                    rows[(update.region_name, update.organizationmember_id)] = row
                row.organization_id, row.user_id, row.email = (
                    update.organization_id,
                    update.user_id,
                    update.email,
                )
                row.role, row.invite_status = update.role, update.invite_status

    def upsert_member_teams(self, updates: Sequence[MemberTeamUpdate]) -> None:
        replica = OrganizationMemberTeamReplica
        with Session(self._engine) as session, session.begin():
            rows = _existing(
                session,
                replica,
                replica.organizationmemberteam_id,
                {(u.region_name, u.organizationmemberteam_id) for u in updates},
            )
            for update in updates:
                key = (update.region_name, update.organizationmemberteam_id)
                row = rows.get(key)
                if row is None:
                    row = replica(
                        region_name=update.region_name,
                        organizationmemberteam_id=update.organizationmemberteam_id,
                    )
                    session.add(row)
                    rows[key] = row
                row.organization_id, row.organizationmember_id = (
                    update.organization_id,
                    update.organizationmember_id,
                )
                row.team_id, row.is_active = update.team_id, update.is_active


def _existing(
    session: Session, model: Any, id_column: Any, keys: set[tuple[str, int]]
) -> dict[tuple[str, int], Any]:
    """The rows already stored for (region name, id) keys, looked up in chunks."""
    found: dict[tuple[str, int], Any] = {}
    by_region: dict[str, list[int]] = {}
    for region_name, object_id in keys:
        by_region.setdefault(region_name, []).append(object_id)
    for region_name, ids in by_region.items():
        for start in range(0, len(ids), 500):
            for row in session.scalars(
                select(model).where(model.region_name == region_name, id_column.in_(ids[start : start + 500]))
            ):
                found[(region_name, getattr(row, id_column.key))] = row
    return found
