"""Per-model behaviour that the registry's rules do not cover: scope sanitization, slug
normalization, regenerated secrets. Pure functions over export-form values."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import string
from collections.abc import Callable, Iterator
from datetime import datetime
from random import Random
from typing import Any

from shared.relocation import tokens
from shared.relocation.spec import ImportScope
from shared.relocation.values import format_datetime

#: Organization slugs that name parts of the product, never an organization.
RESERVED_ORG_SLUGS = frozenset(
    {
        "admin",
        "api",
        "auth",
        "login",
        "logout",
        "organizations",
        "register",
        "settings",
        "sentry",
        "static",
        "support",
        "www",
        "out",
        "accept",
        "account",
        "onboarding",
        "projects",
        "manage",
        "new",
    }
)
#: Suffix alphabet: 36 characters (Sentry's has a typo that drops '8'; ours does not).
SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
#: (suffix length, tries) in order; after the last, the database's unique index decides.
SUFFIX_PLAN = ((2, 2), (3, 5), (5, 20), (12, 1))

Values = dict[str, Any]


def slugify(value: str, max_length: int) -> str:
    """Lower case, '_' to '-', anything but [a-z0-9-] to '-', runs of '-' collapsed, ends trimmed."""
    text = value.strip().lower().replace("_", "-")
    text = re.sub(r"[^a-z0-9-]+", "-", text)
    text = re.sub(r"-{2,}", "-", text).strip("-")
    return text[:max_length].rstrip("-")


def needs_suffix(model: str, value: str) -> bool:
    """A value that may not be used as it is even when nobody holds it."""
    if model == "sentry.organization":
        return value in RESERVED_ORG_SLUGS or value.isdigit() or not value
    return not value


def suffixed_candidates(value: str, max_length: int, rng: Random) -> Iterator[str]:
    """The values to try, in order, when ``value`` is taken (made as they are asked for)."""
    for length, tries in SUFFIX_PLAN:
        base = value[: max_length - length - 1]
        for _ in range(tries):
            yield base + "-" + "".join(rng.choice(SUFFIX_ALPHABET) for _ in range(length))


def suffix_rng(import_id: str, model: str, old_pk: int) -> Random:
    """Deterministic per instance, so a resumed import picks the same names as a clean run."""
    return Random(hashlib.sha256(f"{import_id}:{model}:{old_pk}".encode()).hexdigest())


# ---- regenerated secrets ------------------------------------------------------------------------------


def _mint_org_token(values: Values, hints: dict[str, str]) -> None:
    """A new organization token for the organization's final slug (given as the hint ``org_slug``)."""
    payload = (
        base64.urlsafe_b64encode(
            json.dumps({"org": hints.get("org_slug", ""), "nonce": tokens.token_hex(4)}).encode()
        )
        .decode()
        .rstrip("=")
    )
    token = f"sntrys_{payload}_{tokens.token_urlsafe(32)}"
    values["token_hashed"] = hashlib.sha256(token.encode()).hexdigest()
    values["token_last_characters"] = token[-4:]


def _setter(field: str, make: Callable[[], str]) -> Callable[[Values, dict[str, str]], None]:
    def regenerate(values: Values, _hints: dict[str, str]) -> None:
        values[field] = make()

    return regenerate


#: (model, field) -> how to give an instance a fresh value when its secret clashes.
REGENERATORS: dict[tuple[str, str], Callable[[Values, dict[str, str]], None]] = {
    ("sentry.projectkey", "public_key"): _setter("public_key", tokens.uuid4_hex),
    ("sentry.projectkey", "secret_key"): _setter("secret_key", tokens.uuid4_hex),
    ("sentry.organizationmember", "token"): _setter("token", lambda: tokens.token_hex(32)),
    ("sentry.apiapplication", "client_id"): _setter("client_id", lambda: tokens.token_hex(32)),
    ("sentry.orgauthtoken", "token_hashed"): _mint_org_token,
}


# ---- preparation before writing ------------------------------------------------------------------------


#: The import's clock reading in export form: one value per import, formatted once, not once per instance.
_formatted = functools.lru_cache(maxsize=4)(format_datetime)


def _unusable_password() -> str:
    return "!" + tokens.token_urlsafe(30)


def prepare_user(values: Values, scope: ImportScope, now: datetime) -> None:
    if not scope.keeps_privileges:
        values["is_staff"] = values["is_superuser"] = values["is_managed"] = False
    if not scope.keeps_credentials:
        # The owner must claim the account: nobody knows its password.
        values["is_unclaimed"] = True
        values["password"] = _unusable_password()
        values["last_password_change"] = _formatted(now)
        values["is_password_expired"] = False
    if not values.get("username"):
        values["username"] = values.get("email") or ""


def prepare_useremail(values: Values, scope: ImportScope, now: datetime) -> None:
    if not scope.keeps_credentials:
        values["is_verified"] = False
        values["validation_hash"] = tokens.token_hex(16)
        values["date_hash_added"] = _formatted(now)


def prepare_organization(values: Values, scope: ImportScope, now: datetime) -> None:
    values["slug"] = slugify(str(values.get("slug") or ""), 30)


PREPARERS: dict[str, Callable[[Values, ImportScope, datetime], None]] = {
    "sentry.user": prepare_user,
    "sentry.useremail": prepare_useremail,
    "sentry.organization": prepare_organization,
}

#: Children dropped when their user was merged into an existing user (the existing user's rows stay).
DROPPED_WITH_MERGED_USER = frozenset({"sentry.useremail", "sentry.userpermission"})
#: Models whose instances keep their export pk in a global import (so DSNs stay valid).
KEEP_PK_IN_GLOBAL = frozenset({"sentry.project"})
