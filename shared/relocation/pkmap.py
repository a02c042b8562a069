"""The primary-key map of an import: for each model, export pk -> pk in the silo that owns it."""

from __future__ import annotations

import enum
from collections import defaultdict


class ImportKind(enum.Enum):
    INSERTED = "inserted"  # a new row was written
    EXISTING = "existing"  # an existing row was reused
    OVERWRITE = "overwrite"  # an existing row took the imported values


class PrimaryKeyMap:
    """Grows with the import (about 40 bytes per instance); kinds other than INSERTED are kept only
    for the few instances that have them."""

    def __init__(self) -> None:
        self._pks: dict[str, dict[int, int]] = defaultdict(dict)
        self._kinds: dict[str, dict[int, ImportKind]] = defaultdict(dict)
        #: Unique values after collision handling (usernames, slugs), where the writer reported one.
        self._values: dict[str, dict[int, str]] = defaultdict(dict)

    def insert(self, model: str, old: int, new: int, kind: ImportKind, value: str | None = None) -> None:
        self._pks[model][old] = new
        if kind is not ImportKind.INSERTED:
            self._kinds[model][old] = kind
        else:
            self._kinds[model].pop(old, None)
        if value:
            self._values[model][old] = value

    def get(self, model: str, old: int) -> int | None:
        return self._pks[model].get(old)

    def kind(self, model: str, old: int) -> ImportKind | None:
        if old not in self._pks[model]:
            return None
        return self._kinds[model].get(old, ImportKind.INSERTED)

    def value(self, model: str, old: int) -> str | None:
        return self._values[model].get(old)

    def values(self, model: str) -> dict[int, str]:
        return dict(self._values[model])

    def entries(self, model: str) -> list[tuple[int, int]]:
        """(export pk, pk here) of every instance of ``model``."""
        return list(self._pks[model].items())

    def count(self, model: str) -> int:
        return len(self._pks[model])
