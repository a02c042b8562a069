"""From an export record to a row the owning silo can write: filters, scope, foreign keys remapped
through the primary-key map, per-model preparation. Every instance left out becomes a finding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
class Preparer:
    options: ImportOptions
    scan: Scan
    pkmap: PrimaryKeyMap
    now: datetime

    def prepare(self, spec: ModelSpec, record: Record, ordinal: int) -> tuple[Row | None, list[Finding]]:
        """The row to write (None when the instance is left out) and the findings about it."""

        def drop(kind: str, reason: str) -> tuple[None, list[Finding]]:
            return None, [Finding(kind, spec.name, ordinal, record.pk, None, reason)]

        filtered = self._filtered(spec, record)
        if filtered:
            return drop("filtered_out", filtered)
        values = dict(record.fields)
        findings: list[Finding] = []
        for fk in spec.foreign_keys:
            old = values.get(fk.name)
            if old is None:
                continue
            new = self.pkmap.get(fk.target, old)
            if new is not None:
                if (
                    fk.target == "sentry.user"
                    and spec.name in DROPPED_WITH_MERGED_USER
                    and (self.pkmap.kind(fk.target, old) is ImportKind.EXISTING)
                ):
                    return drop(
                        "dropped_merged",
                        f"user pk {old} was merged into an existing user, whose "
                        f"{spec.name} instances are kept instead",
                    )
                values[fk.name] = new
                continue
            why = self._missing(fk.target, old)
            if not fk.nullable:
                return drop("dropped_orphan", f"{fk.name} refers to {fk.target} pk {old}, which {why}")
            reason = f"{fk.name} referred to {fk.target} pk {old}, which {why}; set to null"
            findings.append(Finding("nulled_reference", spec.name, ordinal, record.pk, None, reason))
            values[fk.name] = None
        prepare = PREPARERS.get(spec.name)
        if prepare is not None:
            prepare(values, self.options.scope, self.now)
        hints = {}
        if spec.name == "sentry.orgauthtoken":
            slug = self.pkmap.value("sentry.organization", record.fields.get("organization_id") or 0)
            hints["org_slug"] = slug or ""
        keep = self.options.scope is ImportScope.GLOBAL and spec.name in KEEP_PK_IN_GLOBAL
        return Row(ordinal, record.pk, values, keep_pk=keep, hints=hints), findings

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
