"""The options of one import, fixed for its whole life (a resumed run must use the same)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from shared.relocation.spec import ImportScope

#: Instances per batch, unless their text reaches ``BATCH_CHARS`` first. Each batch
#: costs a transaction, a commit, a record and (for control) a round trip of a few milliseconds: on the
#: development machine 4,000 took 10-18% less time than 1,000 from 100,000 to 1,000,000 instances (2,000
#: and 3,000 less, 6,000 no less), for about 50-75 MiB more of the importer's memory.
DEFAULT_BATCH_SIZE = 4000
#: A batch ends before the record that would take its records' JSON text (as the reader measured it)
#: past this many characters, so that a batch of large records stays within gRPC's message limit
#: (``shared.rpc.server.MAX_MESSAGE_BYTES``, 64 MiB: a batch's message is at most a few times its
#: records' text) and within bounds in memory; only a single record larger than this (the reader takes
#: up to 64 MiB) makes a batch of its own that is larger. Usual records are a few hundred characters:
#: a batch of them ends at the batch size.
BATCH_CHARS = 8 << 20


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
    #: Most characters of the records' JSON text per batch (``BATCH_CHARS``); None: no such bound, as
    #: for an import begun before siloport had it.
    batch_chars: int | None = BATCH_CHARS
    #: Whether the operator chose the batch size (``--batch-size``). If not, a resumed import takes the
    #: batching it began with (not part of the fingerprint).
    batch_size_chosen: bool = False
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
                # Absent where there is no bound, so that imports begun before it resume as they began.
                **({"batch_chars": self.batch_chars} if self.batch_chars is not None else {}),
                # Benchmark modes appear only when set, so fingerprints of real imports stay as they were.
                **({"row_by_row": True} if self.row_by_row else {}),
                **({"no_bookkeeping": True} if self.no_bookkeeping else {}),
            },
            sort_keys=True,
        )

    def resuming(self, recorded: str) -> ImportOptions:
        """These options for resuming the import whose first run recorded the fingerprint ``recorded``:
        with the batching it began with, so that its batches are the first run's (the default batch
        size, or the bound on a batch's text, may have changed since); the batch size only where the
        operator did not choose one. Where ``recorded`` is not a fingerprint, as they are."""
        first = _fields(recorded)
        if first is None:
            return self
        size = self.batch_size if self.batch_size_chosen else first.get("batch_size")
        chars = first.get("batch_chars")
        if type(size) is not int or size < 1 or not (chars is None or (type(chars) is int and chars > 0)):
            return self
        return dataclasses.replace(self, batch_size=size, batch_chars=chars)


def differences(started: str, now: str) -> str:
    """What differs between two option fingerprints, in words ("merge_users false then, true now"); the
    recorded text where either is not a fingerprint."""
    before, after = _fields(started), _fields(now)
    if before is None or after is None:
        return started

    def shown(options: dict[str, object], key: str) -> str:
        return json.dumps(options[key]) if key in options else "not set"

    changed = [
        f"{key} {shown(before, key)} then, {shown(after, key)} now"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]
    return "; ".join(changed) or started


def _fields(fingerprint: str) -> dict[str, object] | None:
    """The options a fingerprint (``ImportOptions.fingerprint``) holds, or None where it is not one."""
    try:
        fields = json.loads(fingerprint)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None
