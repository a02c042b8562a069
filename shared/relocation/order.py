"""The order models are written in an export: every model after the models its foreign keys point to.

The registry lists models grouped by silo, which is not a dependency order (``sentry.useroption``
points at organizations and projects). The order here is computed like Sentry's: start from the models
sorted by name and sweep, placing a model once everything it depends on is placed, re-sorting the
models left over after each sweep. The result is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.relocation.registry import MODELS, REGISTRY
from shared.relocation.spec import ModelSpec

#: Dependencies that are no foreign key: an email is exported for the users whose ``UserEmail`` rows
#: name it, so it comes after users, and a ``UserEmail`` after the emails.
EXTRA_DEPENDENCIES: Mapping[str, frozenset[str]] = {
    "sentry.email": frozenset({"sentry.user"}),
    "sentry.useremail": frozenset({"sentry.email"}),
}


def dependencies(spec: ModelSpec) -> frozenset[str]:
    """The registry models ``spec`` must come after (targets siloport does not know are left out)."""
    targets = {fk.target for fk in spec.foreign_keys} | EXTRA_DEPENDENCIES.get(spec.name, frozenset())
    return frozenset(t for t in targets if t in REGISTRY and t != spec.name)


def _sorted() -> tuple[ModelSpec, ...]:
    waiting = sorted(MODELS, key=lambda spec: spec.name)
    placed: list[ModelSpec] = []
    names: set[str] = set()
    while waiting:
        skipped = []
        for spec in waiting:
            if dependencies(spec) <= names:
                placed.append(spec)
                names.add(spec.name)
            else:
                skipped.append(spec)
        if len(skipped) == len(waiting):
            raise RuntimeError(f"the registry's foreign keys form a cycle among {[s.name for s in skipped]}")
        waiting = sorted(skipped, key=lambda spec: spec.name)
    return tuple(placed)


#: Every registry model, in the order an export lists them.
EXPORT_ORDER: tuple[ModelSpec, ...] = _sorted()
#: Model name -> position in :data:`EXPORT_ORDER`.
POSITION: Mapping[str, int] = {spec.name: i for i, spec in enumerate(EXPORT_ORDER)}
