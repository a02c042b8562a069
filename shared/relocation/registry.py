"""Every model siloport imports, declared once: silo, relocation scope, fields, foreign keys, unique
keys and collision rules. Adding a model is a declaration here (plus, where it needs behaviour no rule
covers, one hook in ``hooks.py``); both silos build their tables from these declarations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.relocation.spec import (
    Field,
    ForeignKey,
    Kind,
    ModelSpec,
    OnClash,
    RelocationScope,
    Silo,
    Unique,
)

C, R = Silo.CONTROL, Silo.REGION
USER, ORG, CONFIG, GLOBAL = (
    RelocationScope.USER,
    RelocationScope.ORGANIZATION,
    RelocationScope.CONFIG,
    RelocationScope.GLOBAL,
)


def s(name: str, length: int = 200, *, null: bool = False, default: object = None) -> Field:
    return Field(name, Kind.STR, nullable=null, max_length=length, default=default)


def t(name: str, *, null: bool = True, default: object = None) -> Field:
    return Field(name, Kind.TEXT, nullable=null, default=default)


def i(name: str, *, null: bool = False, default: object = None) -> Field:
    return Field(name, Kind.INT, nullable=null, default=default)


def b(name: str, *, null: bool = False, default: object = None) -> Field:
    return Field(name, Kind.BOOL, nullable=null, default=default)


def d(name: str, *, null: bool = True) -> Field:
    return Field(name, Kind.DATETIME, nullable=null)


def j(name: str) -> Field:
    return Field(name, Kind.JSON, nullable=True)


def flags(name: str = "flags") -> Field:
    return Field(name, Kind.FLAGS, nullable=False, default="0")


def fk(name: str, target: str, *, null: bool = False) -> ForeignKey:
    return ForeignKey(name, target, nullable=null)


def u(
    *fields: str, on_clash: OnClash = OnClash.REUSE, casefold: bool = False, max_length: int = 128
) -> Unique:
    return Unique(tuple(fields), on_clash, casefold, max_length)


MODELS: tuple[ModelSpec, ...] = (
    # ---- configuration -------------------------------------------------------------------------
    ModelSpec(
        "sentry.controloption",
        C,
        CONFIG,
        (s("key", 128), j("value"), d("last_updated"), s("last_updated_by", 16, default="unknown")),
        uniques=(u("key", on_clash=OnClash.CONFIG),),
    ),
    ModelSpec(
        "sentry.option",
        R,
        CONFIG,
        (s("key", 128), j("value"), d("last_updated"), s("last_updated_by", 16, default="unknown")),
        uniques=(u("key", on_clash=OnClash.CONFIG),),
    ),
    ModelSpec(
        "sentry.relay",
        R,
        CONFIG,
        (
            s("relay_id", 64),
            s("public_key", 200),
            d("first_seen"),
            d("last_seen"),
            b("is_internal", null=True),
        ),
        uniques=(u("relay_id", on_clash=OnClash.CONFIG),),
    ),
    ModelSpec(
        "sentry.relayusage",
        R,
        CONFIG,
        (
            s("relay_id", 64),
            s("version", 32),
            d("first_seen"),
            d("last_seen"),
            s("public_key", 200, null=True),
        ),
        uniques=(u("relay_id", "version", on_clash=OnClash.CONFIG),),
    ),
    # ---- users (control) -----------------------------------------------------------------------
    ModelSpec(
        "sentry.user",
        C,
        USER,
        (
            s("password", 128),
            d("last_login"),
            s("username", 128),
            s("name", 200, default=""),
            s("email", 75, default=""),
            b("is_staff", default=False),
            b("is_active", default=True),
            b("is_superuser", default=False),
            b("is_managed", default=False),
            b("is_sentry_app", null=True),
            b("is_password_expired", default=False),
            b("is_unclaimed", default=False),
            b("is_suspended", default=False),
            d("last_password_change"),
            flags(),
            s("session_nonce", 12, null=True),
            d("date_joined"),
            d("last_active"),
            i("avatar_type", default=0),
            s("avatar_url", 120, null=True),
        ),
        uniques=(u("username", on_clash=OnClash.MERGE_OR_SUFFIX, casefold=True, max_length=128),),
    ),
    ModelSpec(
        "sentry.email",
        C,
        USER,
        (s("email", 75), d("date_added")),
        uniques=(u("email", casefold=True),),
    ),
    ModelSpec(
        "sentry.useremail",
        C,
        USER,
        (s("email", 75), s("validation_hash", 32), d("date_hash_added"), b("is_verified", default=False)),
        (fk("user", "sentry.user"),),
        (u("user", "email"),),
    ),
    ModelSpec(
        "sentry.useroption",
        C,
        USER,
        (s("key", 64), j("value")),
        (
            fk("user", "sentry.user"),
            fk("project_id", "sentry.project", null=True),
            fk("organization_id", "sentry.organization", null=True),
        ),
        (u("user", "key", "project_id", "organization_id"),),
    ),
    ModelSpec(
        "sentry.userpermission",
        C,
        CONFIG,
        (s("permission", 32),),
        (fk("user", "sentry.user"),),
        (u("user", "permission"),),
    ),
    ModelSpec(
        "sentry.userrole",
        C,
        CONFIG,
        (d("date_updated"), d("date_added"), s("name", 32), j("permissions")),
        uniques=(u("name", on_clash=OnClash.CONFIG),),
    ),
    ModelSpec(
        "sentry.userroleuser",
        C,
        CONFIG,
        (d("date_updated"), d("date_added")),
        (fk("user", "sentry.user"), fk("role", "sentry.userrole")),
        (u("user", "role"),),
    ),
    ModelSpec(
        "sentry.userip",
        C,
        GLOBAL,
        (
            s("ip_address", 45),
            s("country_code", 16, null=True),
            s("region_code", 16, null=True),
            d("first_seen"),
            d("last_seen"),
        ),
        (fk("user", "sentry.user"),),
        (u("user", "ip_address"),),
    ),
    ModelSpec(
        "sentry.authenticator",
        C,
        GLOBAL,
        (d("created_at"), d("last_used_at"), i("type"), j("config")),
        (fk("user", "sentry.user"),),
        (u("user", "type"),),
    ),
    ModelSpec(
        "sentry.apiapplication",
        C,
        GLOBAL,
        (
            s("client_id", 64),
            s("client_secret", 128),
            s("name", 64, default=""),
            i("status", default=0),
            t("allowed_origins"),
            t("redirect_uris"),
            s("homepage_url", 200, null=True),
            s("privacy_url", 200, null=True),
            s("terms_url", 200, null=True),
            d("date_added"),
        ),
        (fk("owner", "sentry.user", null=True),),
        (u("client_id", on_clash=OnClash.REGENERATE),),
    ),
    ModelSpec(
        "sentry.integration",
        C,
        GLOBAL,
        (
            s("provider", 64),
            s("external_id", 64),
            s("name", 200),
            j("metadata"),
            i("status", null=True),
            d("date_added"),
            d("date_updated"),
        ),
        uniques=(u("provider", "external_id"),),
    ),
    # ---- organizations (region) ------------------------------------------------------------------
    ModelSpec(
        "sentry.organization",
        R,
        ORG,
        (
            s("name", 64),
            s("slug", 50),
            i("status", default=0),
            d("date_added"),
            s("default_role", 32, default="member"),
            b("is_test", default=False),
            flags(),
        ),
        uniques=(u("slug", on_clash=OnClash.SUFFIX, casefold=True, max_length=30),),
    ),
    ModelSpec(
        "sentry.organizationoption",
        R,
        ORG,
        (s("key", 64), j("value")),
        (fk("organization", "sentry.organization"),),
        (u("organization", "key"),),
    ),
    ModelSpec(
        "sentry.team",
        R,
        ORG,
        (
            s("slug", 50),
            s("name", 64),
            i("status", default=0),
            b("idp_provisioned", default=False),
            d("date_added"),
            s("org_role", 32, null=True),
        ),
        (fk("organization", "sentry.organization"), fk("actor", "sentry.actor", null=True)),
        (u("organization", "slug", on_clash=OnClash.SUFFIX, casefold=True, max_length=50),),
    ),
    ModelSpec(
        "sentry.project",
        R,
        ORG,
        (
            s("slug", 50),
            s("name", 200),
            s("forced_color", 6, null=True),
            b("public", default=False),
            d("date_added"),
            i("status", default=0),
            d("first_event"),
            flags(),
            s("platform", 64, null=True),
        ),
        (fk("organization", "sentry.organization"), fk("template", "sentry.projecttemplate", null=True)),
        (u("organization", "slug", on_clash=OnClash.SUFFIX, casefold=True, max_length=50),),
    ),
    ModelSpec(
        "sentry.organizationmember",
        R,
        ORG,
        (
            s("email", 75, null=True),
            s("role", 32, default="member"),
            flags(),
            s("token", 64, null=True),
            d("date_added"),
            d("token_expires_at"),
            b("has_global_access", default=True),
            i("invite_status", null=True, default=0),
            i("type", default=50),
            b("user_is_active", default=True),
            s("user_email", 75, null=True),
        ),
        (
            fk("organization", "sentry.organization"),
            fk("user_id", "sentry.user", null=True),
            fk("inviter_id", "sentry.user", null=True),
        ),
        (u("organization", "user_id"), u("organization", "email"), u("token", on_clash=OnClash.REGENERATE)),
    ),
    ModelSpec(
        "sentry.environment",
        R,
        ORG,
        (s("name", 64), d("date_added")),
        (fk("organization_id", "sentry.organization"),),
        (u("organization_id", "name"),),
    ),
    ModelSpec(
        "sentry.environmentproject",
        R,
        ORG,
        (b("is_hidden", null=True),),
        (fk("project", "sentry.project"), fk("environment", "sentry.environment")),
        (u("project", "environment"),),
    ),
    ModelSpec(
        "sentry.projectkey",
        R,
        ORG,
        (
            s("label", 64, null=True),
            s("public_key", 32),
            s("secret_key", 32),
            flags("roles"),
            i("status", default=0),
            d("date_added"),
            i("rate_limit_count", null=True),
            i("rate_limit_window", null=True),
            j("data"),
            b("use_case", null=True),
        ),
        (fk("project", "sentry.project"),),
        (u("public_key", on_clash=OnClash.REGENERATE), u("secret_key", on_clash=OnClash.REGENERATE)),
    ),
    ModelSpec(
        "sentry.projectoption",
        R,
        ORG,
        (s("key", 64), j("value")),
        (fk("project", "sentry.project"),),
        (u("project", "key"),),
    ),
    ModelSpec(
        "sentry.projectteam",
        R,
        ORG,
        (),
        (fk("project", "sentry.project"), fk("team", "sentry.team")),
        (u("project", "team"),),
    ),
    ModelSpec(
        "sentry.organizationmemberteam",
        R,
        ORG,
        (b("is_active", default=True), s("role", 32, null=True)),
        (fk("team", "sentry.team"), fk("organizationmember", "sentry.organizationmember")),
        (u("team", "organizationmember"),),
    ),
    ModelSpec(
        "sentry.rule",
        R,
        ORG,
        (s("label", 256), t("data"), i("status", default=0), i("source", default=0), d("date_added")),
        (
            fk("project", "sentry.project"),
            fk("environment_id", "sentry.environment", null=True),
            fk("owner", "sentry.actor", null=True),
            fk("owner_team", "sentry.team", null=True),
            fk("owner_user_id", "sentry.user", null=True),
        ),
    ),
    # Django's site record: part of full restores only.
    ModelSpec(
        "sites.site",
        R,
        GLOBAL,
        (s("domain", 100), s("name", 50)),
        uniques=(u("domain"),),
        table="django_site",
    ),
    # ---- organization auth tokens (control; written after the slugs are final) -------------------
    ModelSpec(
        "sentry.orgauthtoken",
        C,
        ORG,
        (
            s("token_hashed", 128),
            s("token_last_characters", 4, null=True),
            s("name", 255),
            j("scope_list"),
            d("date_added"),
            d("date_last_used"),
            d("date_deactivated"),
        ),
        (
            fk("organization_id", "sentry.organization"),
            fk("created_by", "sentry.user", null=True),
            fk("project_last_used_id", "sentry.project", null=True),
        ),
        (u("token_hashed", on_clash=OnClash.REGENERATE),),
        deferred=True,
    ),
)

REGISTRY: Mapping[str, ModelSpec] = {spec.name: spec for spec in MODELS}
#: The models some foreign key points at: the import looks their primary keys up again, and an export
#: must list each before the models that point at it.
REFERENCED: frozenset[str] = frozenset().union(*(spec.targets for spec in MODELS))


def models_of(silo: Silo) -> Iterable[ModelSpec]:
    return (spec for spec in MODELS if spec.silo is silo)


def lookup(name: str) -> ModelSpec | None:
    """The spec of a model named as in an export (model names are case-insensitive)."""
    return REGISTRY.get(name.lower())
