"""Which instances an export keeps, as Sentry's export decides it: the models of the scope; the
filtered users and organizations; and only instances whose foreign keys point at instances the export
holds (so whatever hangs off a filtered-out user or organization goes too).

Keeping the pks of every exported instance would grow with the export. Only models that may lose
instances (a filter or a rule applies to them, or to something they point at) are *partial*, and only
the pks of partial models that others point at are kept; a reference to any other model passes,
because its every instance is exported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.relocation.order import EXPORT_ORDER
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ForeignKey, ModelSpec

#: References that never decide whether an instance is exported: an inviter may be a user outside
#: the exported organizations (Sentry makes the same exception).
NOT_FILTERING = frozenset({("sentry.organizationmember", "inviter_id")})


def filtering_keys(spec: ModelSpec) -> tuple[ForeignKey, ...]:
    """The foreign keys that decide whether an instance of ``spec`` is exported."""
    return tuple(
        fk
        for fk in spec.foreign_keys
        if fk.target in REGISTRY and fk.target != spec.name and (spec.name, fk.name) not in NOT_FILTERING
    )


@dataclass
class Selection:
    in_scope: frozenset[str]
    #: Models that may lose instances.
    partial: frozenset[str]
    #: Partial models that others point at: their exported pks are kept.
    tracked: frozenset[str]
    kept: dict[str, set[int]] = field(default_factory=dict)

    @classmethod
    def plan(cls, in_scope: Iterable[str], ruled: Iterable[str], needed: Iterable[str] = ()) -> Selection:
        """``ruled``: the models a filter or rule of the export applies to directly; ``needed``: models
        whose exported pks a rule reads (kept when partial)."""
        scope, rules = frozenset(in_scope), frozenset(ruled)
        partial: set[str] = set()
        for spec in EXPORT_ORDER:
            if spec.name not in scope:
                continue
            if spec.name in rules or any(
                fk.target not in scope or fk.target in partial for fk in filtering_keys(spec)
            ):
                partial.add(spec.name)
        referenced = {
            fk.target for spec in EXPORT_ORDER if spec.name in scope for fk in filtering_keys(spec)
        } | set(needed)
        tracked = frozenset(partial & referenced)
        return cls(scope, frozenset(partial), tracked, {name: set() for name in tracked})

    def references_kept(self, spec: ModelSpec, fields: dict[str, Any]) -> bool:
        """Whether every non-null filtering reference of an instance points at an exported instance."""
        for fk in filtering_keys(spec):
            value = fields.get(fk.name)
            if value is None:
                continue
            if fk.target not in self.in_scope:
                return False
            if fk.target in self.tracked and value not in self.kept[fk.target]:
                return False
        return True

    def keep(self, model: str, pk: int) -> None:
        if model in self.tracked:
            self.kept[model].add(pk)

    def kept_pks(self, model: str) -> frozenset[int] | None:
        """The exported pks of ``model`` when only some are exported, None when all are."""
        if model in self.tracked:
            return frozenset(self.kept[model])
        if model in self.partial:
            raise AssertionError(f"{model} is partial but its pks are not kept")
        return None
