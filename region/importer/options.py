"""The options of one import, fixed for its whole life (a resumed run must use the same)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from shared.relocation.spec import ImportScope

#: Instances per batch, unless their text reaches ``region.importer.engine.BATCH_CHARS`` first. Each batch
#: costs a transaction, a commit, a record and (for control) a round trip of a few milliseconds: on the
#: development machine 4,000 took 10-18% less time than 1,000 from 100,000 to 1,000,000 instances (2,000
#: and 3,000 less, 6,000 no less), for about 55-75 MiB more of the importer's memory.
DEFAULT_BATCH_SIZE = 4000


@dataclass(frozen=True)
class ImportOptions:
    scope: ImportScope
    import_id: str
    merge_users: bool = False
    overwrite_configs: bool = False
    #: Keep only these usernames (users scope); None keeps all.
    filter_usernames: frozenset[str] | None = None
    #: Keep only these organization slugs and their members (organizations scope); None keeps all.
    filter_org_slugs: frozenset[str] | None = None
    #: Unknown models and unresolved references are errors instead of findings.
    strict: bool = False
    #: Most instances per batch (one transaction, one chunk record, at most one RPC).
    batch_size: int = DEFAULT_BATCH_SIZE
    #: Resume even though the export's contents changed since the first run (not part of the fingerprint).
    accept_changed_source: bool = False
    #: Benchmark modes, see :class:`shared.relocation.batch.BatchOptions`.
    row_by_row: bool = False
    no_bookkeeping: bool = False

    def fingerprint(self) -> str:
        """What a resumed run must match: everything that decides what gets written."""
        return json.dumps(
            {
                "scope": self.scope.value,
                "merge_users": self.merge_users,
                "overwrite_configs": self.overwrite_configs,
                "filter_usernames": sorted(self.filter_usernames)
                if self.filter_usernames is not None
                else None,
                "filter_org_slugs": sorted(self.filter_org_slugs)
                if self.filter_org_slugs is not None
                else None,
                "strict": self.strict,
                "batch_size": self.batch_size,
                # Benchmark modes appear only when set, so fingerprints of real imports stay as they were.
                **({"row_by_row": True} if self.row_by_row else {}),
                **({"no_bookkeeping": True} if self.no_bookkeeping else {}),
            },
            sort_keys=True,
        )
