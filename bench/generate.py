"""A generator of realistic exports of any size, in the shape of Sentry's fixtures: users with emails and
options; organizations with an option, members, teams, member-team links, projects with a key, an option
and a team link, and an org auth token. Records come in dependency order and are written one per line
without holding the export in memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATE = "2023-06-22T22:54:28.773Z"


def _user(pk: int, name: str) -> dict[str, Any]:
    return {
        "password": "pbkdf2_sha256$150000$iEvdIknqYjTr$+QsGn0tfIJ1FZLxQI37mVU1gL2KbL/wqjMtG/dFhsMA=",
        "last_login": None,
        "username": name,
        "name": name.split("@", maxsplit=1)[0],
        "email": name,
        "is_staff": pk % 7 == 0,
        "is_active": True,
        "is_superuser": pk % 11 == 0,
        "is_managed": False,
        "is_sentry_app": None,
        "is_password_expired": False,
        "is_unclaimed": False,
        "last_password_change": DATE,
        "flags": "0",
        "session_nonce": None,
        "date_joined": DATE,
        "last_active": DATE,
        "avatar_type": 0,
        "avatar_url": None,
        "is_suspended": False,
    }


def generate(
    orgs: int, members: int = 5, teams: int = 2, projects: int = 2, prefix: str = "gen"
) -> Iterator[dict[str, Any]]:
    """Records in dependency order: ``orgs`` organizations, each with ``members`` users as members,
    ``teams`` teams and ``projects`` projects with a key, options and team links."""
    users = orgs * members

    def rec(model: str, pk: int, fields: dict[str, Any]) -> dict[str, Any]:
        return {"model": model, "pk": pk, "fields": fields}

    for u in range(1, users + 1):
        yield rec("sentry.user", u, _user(u, f"{prefix}-user{u}@example.com"))
    for u in range(1, users + 1):
        yield rec("sentry.email", u, {"email": f"{prefix}-user{u}@example.com", "date_added": DATE})
    for u in range(1, users + 1):
        yield rec(
            "sentry.useremail",
            u,
            {
                "user": u,
                "email": f"{prefix}-user{u}@example.com",
                "validation_hash": f"{u:032d}",
                "date_hash_added": DATE,
                "is_verified": True,
            },
        )
    for o in range(1, orgs + 1):
        yield rec(
            "sentry.organization",
            o,
            {
                "name": f"Org {o}",
                "slug": f"{prefix}-org-{o}",
                "status": 0,
                "date_added": DATE,
                "default_role": "member",
                "is_test": False,
                "flags": "1",
            },
        )
    for o in range(1, orgs + 1):
        yield rec(
            "sentry.organizationoption", o, {"organization": o, "key": "sentry:scrub_data", "value": True}
        )
    for o in range(1, orgs + 1):
        for m in range(members):
            pk = (o - 1) * members + m + 1
            yield rec(
                "sentry.organizationmember",
                pk,
                {
                    "organization": o,
                    "user_id": pk,
                    "email": None,
                    "role": "owner" if m == 0 else "member",
                    "flags": "0",
                    "token": None,
                    "date_added": DATE,
                    "token_expires_at": None,
                    "has_global_access": True,
                    "inviter_id": (o - 1) * members + 1 if m else None,
                    "invite_status": 0,
                    "type": 50,
                    "user_is_active": True,
                    "user_email": None,
                },
            )
    for o in range(1, orgs + 1):
        for t in range(teams):
            pk = (o - 1) * teams + t + 1
            yield rec(
                "sentry.team",
                pk,
                {
                    "organization": o,
                    "slug": f"team-{t}",
                    "name": f"Team {t}",
                    "status": 0,
                    "idp_provisioned": False,
                    "date_added": DATE,
                },
            )
    for o in range(1, orgs + 1):
        for p in range(projects):
            pk = (o - 1) * projects + p + 1
            yield rec(
                "sentry.project",
                pk,
                {
                    "slug": f"project-{p}",
                    "name": f"Project {p}",
                    "forced_color": None,
                    "organization": o,
                    "public": False,
                    "date_added": DATE,
                    "status": 0,
                    "first_event": None,
                    "flags": "10",
                    "platform": "python",
                },
            )
    for u in range(1, users + 1):
        yield rec(
            "sentry.useroption",
            u,
            {
                "user": u,
                "project_id": None,
                "organization_id": None,
                "key": "timezone",
                "value": '"Europe/Vienna"',
            },
        )
    for pk in range(1, orgs * projects + 1):
        yield rec(
            "sentry.projectkey",
            pk,
            {
                "project": pk,
                "label": "Default",
                "public_key": f"{pk:032x}",
                "secret_key": f"{pk + 10**9:032x}",
                "roles": "1",
                "status": 0,
                "date_added": DATE,
                "rate_limit_count": None,
                "rate_limit_window": None,
                "data": {"dynamicSdkLoaderOptions": {}},
            },
        )
    for pk in range(1, orgs * projects + 1):
        yield rec("sentry.projectoption", pk, {"project": pk, "key": "sentry:option-epoch", "value": 11})
    for o in range(1, orgs + 1):
        for p in range(projects):
            pk = (o - 1) * projects + p + 1
            yield rec("sentry.projectteam", pk, {"project": pk, "team": (o - 1) * teams + p % teams + 1})
    for o in range(1, orgs + 1):
        for m in range(members):
            pk = (o - 1) * members + m + 1
            yield rec(
                "sentry.organizationmemberteam",
                pk,
                {
                    "team": (o - 1) * teams + m % teams + 1,
                    "organizationmember": pk,
                    "is_active": True,
                    "role": None,
                },
            )
    for o in range(1, orgs + 1):
        yield rec(
            "sentry.orgauthtoken",
            o,
            {
                "organization_id": o,
                "token_hashed": f"{o:064x}",
                "token_last_characters": "abcd",
                "name": "CI",
                "scope_list": ["org:ci"],
                "created_by": (o - 1) * members + 1,
                "date_added": DATE,
                "date_last_used": None,
                "project_last_used_id": None,
                "date_deactivated": None,
            },
        )


#: Members, teams and projects of each organization in a sized export: 102 instances per organization.
SIZED_SHAPE = {"members": 14, "teams": 3, "projects": 3}


def per_organization(members: int, teams: int, projects: int) -> int:
    """Instances one organization brings: each member is a user with an email, a user-email link and an
    option, plus the membership and a team link."""
    return 6 * members + teams + 4 * projects + 3


def sized(instances: int, prefix: str = "gen") -> Iterator[dict[str, Any]]:
    """An export of about ``instances`` instances (10,000 organizations and 140,000 users per million)."""
    orgs = max(1, round(instances / per_organization(**SIZED_SHAPE)))
    return generate(orgs, prefix=prefix, **SIZED_SHAPE)


def write_export(path: Path, records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> Path:
    """One record per line, like Sentry's exports (so errors have meaningful line numbers)."""
    with path.open("w") as out:
        out.write("[\n")
        first = True
        for record in records:
            out.write(("" if first else ",\n") + json.dumps(record))
            first = False
        out.write("\n]\n")
    return path
