"""The options of one export."""

from __future__ import annotations

from dataclasses import dataclass

from shared.relocation.spec import ImportScope

DEFAULT_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ExportOptions:
    #: What the export holds; Sentry's export scopes admit the same relocation scopes as its imports.
    scope: ImportScope
    #: Keep only these usernames (users scope); None keeps all.
    filter_usernames: frozenset[str] | None = None
    #: Keep only these organization slugs, their members' users and what hangs off them
    #: (organizations scope); None keeps all.
    filter_org_slugs: frozenset[str] | None = None
    #: Instances per page read from a silo (one query or one call).
    page_size: int = DEFAULT_PAGE_SIZE
