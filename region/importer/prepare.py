"""From an export record to a row the owning silo can write: filters, scope, foreign keys remapped
through the primary-key map, per-model preparation. Every instance left out becomes a finding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from region.importer.options import ImportOptions
from region.importer.scan import Scan
from shared.relocation.batch import Row
from shared.relocation.findings import Finding
from shared.relocation.hooks import DROPPED_WITH_MERGED_USER, KEEP_PK_IN_GLOBAL, PREPARERS
from shared.relocation.pkmap import ImportKind, PrimaryKeyMap
from shared.relocation.reader import Record
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ImportScope, ModelSpec


@dataclass(frozen=True)
class _Plan:
    """What preparing a model's records needs to know about the model, worked out once per import."""

    #: (field, target model, nullable, drop when the user was merged into an existing one)
    foreign_keys: tuple[tuple[str, str, bool, bool], ...]
    hook: Callable[[dict[str, Any], ImportScope, datetime], None] | None
    keep_pk: bool
    #: The import keeps only some of this model's instances (a filter or the users the export names).
    filtered: bool
    #: Organization auth tokens are minted for their organization's final slug.
    minted: bool


@dataclass(frozen=True)
class Preparer:
    options: ImportOptions
    scan: Scan
    pkmap: PrimaryKeyMap
    now: datetime
    _plans: dict[str, _Plan] = field(default_factory=dict, init=False, repr=False, compare=False)

    def prepare(self, spec: ModelSpec, record: Record, ordinal: int) -> tuple[Row | None, list[Finding]]:
        """The row to write (None when the instance is left out) and the findings about it."""
        plan = self._plans.get(spec.name) or self._plan(spec)
        if plan.filtered:
            filtered = self._filtered(spec, record)
            if filtered:
                return _drop(spec, record, ordinal, "filtered_out", filtered)
        values = dict(record.fields)
        findings: list[Finding] = []
        get = self.pkmap.get
        for name, target, nullable, merged in plan.foreign_keys:
            old = values.get(name)
            if old is None:
                continue
            new = get(target, old)
            if new is not None:
                if merged and self.pkmap.kind(target, old) is ImportKind.EXISTING:
                    return _drop(
                        spec,
                        record,
                        ordinal,
                        "dropped_merged",
                        f"user pk {old} was merged into an existing user, whose "
                        f"{spec.name} instances are kept instead",
                    )
                values[name] = new
                continue
            why = self._missing(target, old)
            if not nullable:
                return _drop(
                    spec,
                    record,
                    ordinal,
                    "dropped_orphan",
                    f"{name} refers to {target} pk {old}, which {why}",
                )
            reason = f"{name} referred to {target} pk {old}, which {why}; set to null"
            findings.append(Finding("nulled_reference", spec.name, ordinal, record.pk, None, reason))
            values[name] = None
        if plan.hook is not None:
            plan.hook(values, self.options.scope, self.now)
        if plan.minted:
            slug = self.pkmap.value("sentry.organization", record.fields.get("organization_id") or 0)
            return Row(ordinal, record.pk, values, plan.keep_pk, {"org_slug": slug or ""}), findings
        return Row(ordinal, record.pk, values, plan.keep_pk, {}), findings

    def _plan(self, spec: ModelSpec) -> _Plan:
        scan = self.scan
        plan = self._plans[spec.name] = _Plan(
            foreign_keys=tuple(
                (
                    fk.name,
                    fk.target,
                    fk.nullable,
                    fk.target == "sentry.user" and spec.name in DROPPED_WITH_MERGED_USER,
                )
                for fk in spec.foreign_keys
            ),
            hook=PREPARERS.get(spec.name),
            keep_pk=self.options.scope is ImportScope.GLOBAL and spec.name in KEEP_PK_IN_GLOBAL,
            filtered=(
                (spec.name == "sentry.user" and scan.keep_users is not None)
                or (spec.name == "sentry.email" and scan.keep_emails is not None)
                or (spec.name == "sentry.organization" and scan.keep_orgs is not None)
            ),
            minted=spec.name == "sentry.orgauthtoken",
        )
        return plan

    def _filtered(self, spec: ModelSpec, record: Record) -> str | None:
        scan = self.scan
        if spec.name == "sentry.user" and scan.keep_users is not None and record.pk not in scan.keep_users:
            return "not among the filtered users"
        if (
            spec.name == "sentry.email"
            and scan.keep_emails is not None
            and (str(record.fields.get("email") or "").casefold() not in scan.keep_emails)
        ):
            return "not an email of a filtered user"
        if (
            spec.name == "sentry.organization"
            and scan.keep_orgs is not None
            and record.pk not in scan.keep_orgs
        ):
            return "not among the filtered organizations"
        return None

    def _missing(self, target: str, old: int) -> str:
        if target not in REGISTRY:
            return "siloport does not import"
        if self.scan.counts.get(target, 0) == 0:
            return "is not in the export"
        return "was not imported (filtered out, out of scope or dropped)"


def _drop(
    spec: ModelSpec, record: Record, ordinal: int, kind: str, reason: str
) -> tuple[None, list[Finding]]:
    return None, [Finding(kind, spec.name, ordinal, record.pk, None, reason)]
