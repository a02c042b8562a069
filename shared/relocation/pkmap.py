"""The primary-key map of an import: for each model, export pk -> pk in the silo that owns it."""

from __future__ import annotations

import enum
from array import array
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator


class ImportKind(enum.Enum):
    INSERTED = "inserted"  # a new row was written
    EXISTING = "existing"  # an existing row was reused
    OVERWRITE = "overwrite"  # an existing row took the imported values


def _run_of(starts: array[int], lengths: array[int], pk: int) -> int | None:
    """The run of increasing ``starts`` that holds ``pk``, or None."""
    i = bisect_right(starts, pk) - 1
    return i if i >= 0 and pk - starts[i] < lengths[i] else None


class _PkColumn:
    """Export pk -> new pk of one model, as runs: while export pks arrive in increasing order (as exports
    write them), a run of consecutive export pks that got consecutive new pks is three numbers, however
    long (24 bytes a run; an export of dense pks written in batches is a few runs a batch). A dict holds
    the few pks that arrive out of order or are mapped again to another pk."""

    def __init__(self) -> None:
        self._old = array("q")  # first export pk of each run, increasing
        self._new = array("q")  # its new pk
        self._length = array("q")
        self._count = 0  # instances in runs
        self._other: dict[int, int] = {}
        self._shadowed = 0  # pks of runs that ``_other`` maps again

    def __setitem__(self, old: int, new: int) -> None:
        if old in self._other:
            self._other[old] = new
            return
        if self._old:
            last = len(self._old) - 1
            end = self._old[last] + self._length[last]
            if old == end and new == self._new[last] + self._length[last]:
                self._length[last] += 1
                self._count += 1
                return
            if old < end:
                run = _run_of(self._old, self._length, old)
                if run is not None:
                    if self._new[run] + (old - self._old[run]) != new:
                        self._other[old] = new
                        self._shadowed += 1
                else:
                    self._other[old] = new
                return
        self._old.append(old)
        self._new.append(new)
        self._length.append(1)
        self._count += 1

    def get(self, old: int) -> int | None:
        if self._other and old in self._other:
            return self._other[old]
        run = _run_of(self._old, self._length, old)
        return None if run is None else self._new[run] + (old - self._old[run])

    def __contains__(self, old: int) -> bool:
        return old in self._other or _run_of(self._old, self._length, old) is not None

    def __len__(self) -> int:
        return self._count + len(self._other) - self._shadowed

    @property
    def runs(self) -> int:
        return len(self._old)

    def items(self) -> Iterator[tuple[int, int]]:
        other = self._other
        for first, new, length in zip(self._old, self._new, self._length, strict=True):
            for offset in range(length):
                if first + offset not in other:
                    yield first + offset, new + offset
        yield from other.items()


class PkSet:
    """A set of export pks, as runs of consecutive pks while they arrive in increasing order (as exports
    write them; 16 bytes a run, so dense pks cost next to nothing and sparse ones 16 bytes each), a set
    for the few that do not."""

    def __init__(self) -> None:
        self._first = array("q")
        self._length = array("q")
        self._count = 0
        self._other: set[int] = set()

    def add(self, pk: int) -> bool:
        """Add ``pk``; False when it was there already."""
        if self._first:
            end = self._first[-1] + self._length[-1]
            if pk == end:
                self._length[-1] += 1
                self._count += 1
                return True
            if pk < end:
                if pk in self:
                    return False
                self._other.add(pk)
                return True
        self._first.append(pk)
        self._length.append(1)
        self._count += 1
        return True

    def __contains__(self, pk: object) -> bool:
        if not isinstance(pk, int):
            return False
        return pk in self._other or _run_of(self._first, self._length, pk) is not None

    def __len__(self) -> int:
        return self._count + len(self._other)

    @property
    def runs(self) -> int:
        return len(self._first)

    def isdisjoint(self, other: PkSet) -> bool:
        """Whether no pk is in both sets (the runs of each are in increasing order: one walk over both)."""
        if any(pk in self for pk in other._other) or any(pk in other for pk in self._other):
            return False
        mine, theirs = 0, 0
        while mine < len(self._first) and theirs < len(other._first):
            start, end = self._first[mine], self._first[mine] + self._length[mine]
            other_start = other._first[theirs]
            other_end = other_start + other._length[theirs]
            if start < other_end and other_start < end:
                return False
            if end <= other_end:
                mine += 1
            else:
                theirs += 1
        return True


class PrimaryKeyMap:
    """Grows with the import (24 bytes a run of consecutive pks, plus the unique values the writer reports);
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

    def set_value(self, model: str, old: int, value: str) -> None:
        """Replace the unique value of an instance already mapped (its pk and kind stay)."""
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
