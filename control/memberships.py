"""Control's copies of the regions' memberships, kept current by the regions' outboxes."""

from __future__ import annotations

from dataclasses import dataclass

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
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert_member(self, update: MemberUpdate) -> None:
        mapping = OrganizationMemberMapping
        with Session(self._engine) as session, session.begin():
            row = session.scalar(
                select(mapping).where(
                    mapping.region_name == update.region_name,
                    mapping.organizationmember_id == update.organizationmember_id,
                )
            )
            if row is None:
                row = mapping(
                    region_name=update.region_name, organizationmember_id=update.organizationmember_id
                )
                session.add(row)
            row.organization_id, row.user_id, row.email = update.organization_id, update.user_id, update.email
            row.role, row.invite_status = update.role, update.invite_status

    def upsert_member_team(self, update: MemberTeamUpdate) -> None:
        replica = OrganizationMemberTeamReplica
        with Session(self._engine) as session, session.begin():
            row = session.scalar(
                select(replica).where(
                    replica.region_name == update.region_name,
                    replica.organizationmemberteam_id == update.organizationmemberteam_id,
                )
            )
            if row is None:
                row = replica(
                    region_name=update.region_name, organizationmemberteam_id=update.organizationmemberteam_id
                )
                session.add(row)
            row.organization_id, row.organizationmember_id = (
                update.organization_id,
                update.organizationmember_id,
            )
            row.team_id, row.is_active = update.team_id, update.is_active
