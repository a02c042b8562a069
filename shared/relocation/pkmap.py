"""The primary-key map of an import: for each model, export pk -> pk in the silo that owns it."""

from __future__ import annotations

import enum
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator


class ImportKind(enum.Enum):
    INSERTED = "inserted"  # a new row was written
    EXISTING = "existing"  # an existing row was reused
    OVERWRITE = "overwrite"  # an existing row took the imported values


def _position(ordered: array[int], pk: int) -> int | None:
    """Where ``pk`` is in an increasing array, or None."""
    i = bisect_left(ordered, pk)
    return i if i < len(ordered) and ordered[i] == pk else None


class _PkColumn:
    """Export pk -> new pk of one model in 16 bytes an instance: two parallel arrays while export pks
    arrive in increasing order (as exports write them), looked up by bisection; a dict for the few that
    do not."""

    def __init__(self) -> None:
        self._old = array("q")
        self._new = array("q")
        self._other: dict[int, int] = {}

    def _index(self, old: int) -> int | None:
        return _position(self._old, old)

    def __setitem__(self, old: int, new: int) -> None:
        if old in self._other:
            self._other[old] = new
        elif not self._old or old > self._old[-1]:
            self._old.append(old)
            self._new.append(new)
        elif (i := self._index(old)) is not None:
            self._new[i] = new
        else:
            self._other[old] = new

    def get(self, old: int) -> int | None:
        if old in self._other:
            return self._other[old]
        i = self._index(old)
        return None if i is None else self._new[i]

    def __contains__(self, old: int) -> bool:
        return old in self._other or self._index(old) is not None

    def __len__(self) -> int:
        return len(self._old) + len(self._other)

    def items(self) -> Iterator[tuple[int, int]]:
        yield from zip(self._old, self._new, strict=True)
        yield from self._other.items()


class PkSet:
    """A set of export pks in about 8 bytes each: an array while they arrive in increasing order (as
    exports write them), a set for the few that do not."""

    def __init__(self) -> None:
        self._ordered = array("q")
        self._other: set[int] = set()

    def add(self, pk: int) -> bool:
        """Add ``pk``; False when it was there already."""
        if not self._ordered or pk > self._ordered[-1]:
            self._ordered.append(pk)
            return True
        if pk in self:
            return False
        self._other.add(pk)
        return True

    def __contains__(self, pk: object) -> bool:
        if not isinstance(pk, int):
            return False
        return pk in self._other or _position(self._ordered, pk) is not None

    def __len__(self) -> int:
        return len(self._ordered) + len(self._other)


class PrimaryKeyMap:
    """Grows with the import (about 16 bytes per instance, plus the unique values the writer reports);
    kinds other than INSERTED are kept only for the few instances that have them."""

    def __init__(self) -> None:
        self._pks: dict[str, _PkColumn] = defaultdict(_PkColumn)
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
