"""The check pass's records, kept for the import pass, so that an export's JSON is parsed once.

The check pass parses every record anyway; as it goes it writes them (with their index, line and
column) to private files, marshalled in chunks of up to a thousand records and about 4 MiB, and the
import pass reads them back about three times as fast as it would parse the JSON again. A part is a
directory with a file per key (the name the writer's ``key`` function gives a model: in the import, a
file per model), so that the import's lanes read one model's records at a time, in file order; read
together, the files' records are merged back into file order by index. Each process of a split
check writes its own part; the second part's indexes are counted from its first record, so it
carries the offset that makes them the file's. Writing stops, without failing the check, on an OS
error (a full disk, say), and the part is removed; the import pass then reads the export itself, as
it does when there is no spool.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import marshal
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.relocation.reader import Record

_LOGGER = logging.getLogger(__name__)
#: Most records marshalled together.
CHUNK = 1000
#: A chunk ends once its records' JSON text reaches this many characters.
CHUNK_BYTES = 4 << 20
#: Each chunk is its length, then its marshalled bytes.
_LENGTH = struct.Struct("<Q")


#: The one file of a writer that is given no ``key`` function.
ALL = "all"


@dataclass(frozen=True)
class SpoolPart:
    #: A directory holding a file per key.
    path: Path
    #: Added to each record's index (the second half of a split check counts from its first record).
    index_offset: int = 0

    def keys(self) -> list[str]:
        return sorted(entry.name for entry in self.path.iterdir())


class SpoolWriter:
    """Passes records on while writing them to the directory ``path`` (which it creates), a file per
    key."""

    def __init__(self, path: Path, key: Callable[[str], str] | None = None) -> None:
        self.path = path
        self.failed = False
        self._key = key
        self._files: dict[str, BinaryIO] = {}
        try:
            path.mkdir()
        except OSError as exc:
            self._fail(exc, remove=False)

    def passing(self, records: Iterable[Record]) -> Iterator[Record]:
        """``records``, each written before it is passed on (the last chunks once they end)."""
        chunks: dict[str, list[tuple[object, ...]]] = {}
        sizes: dict[str, int] = {}  # characters of each chunk's records, as the reader measured them
        keys: dict[str, str] = {}  # model -> key
        key_of = self._key
        for record in records:
            key = keys.get(record.model)
            if key is None:
                key = keys[record.model] = ALL if key_of is None else key_of(record.model)
                chunks.setdefault(key, [])
                sizes.setdefault(key, 0)
            chunk = chunks[key]
            chunk.append(
                (
                    record.index,
                    record.line,
                    record.column,
                    record.model,
                    record.pk,
                    record.fields,
                    record.size,
                )
            )
            size = sizes[key] = sizes[key] + record.size
            if len(chunk) == CHUNK or size >= CHUNK_BYTES:  # large records do not pile up in memory
                self._dump(key, chunk)
                chunks[key], sizes[key] = [], 0
            yield record
        for key, chunk in chunks.items():
            self._dump(key, chunk)

    def close(self) -> bool:
        """Close the files; whether everything passed on was written."""
        for key, file in list(self._files.items()):
            try:
                file.close()
            except OSError as exc:
                self._fail(exc)
            self._files.pop(key, None)
        return not self.failed

    def _dump(self, key: str, chunk: list[tuple[object, ...]]) -> None:
        if self.failed or not chunk:
            return
        blob = marshal.dumps(chunk)
        try:
            file = self._files.get(key)
            if file is None:
                file = self._files[key] = (self.path / key).open("wb")
            file.write(_LENGTH.pack(len(blob)))
            file.write(blob)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError, *, remove: bool = True) -> None:
        """Stop keeping records, and give back the space the files took (a full disk is the usual
        reason, and the import still needs room for its other temporary files)."""
        self.failed = True
        for file in self._files.values():
            with contextlib.suppress(OSError):
                file.close()
        self._files.clear()
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)
        _LOGGER.info(
            "not keeping the checked records in %s (%s); the import reads the export again", self.path, exc
        )


def read_spool(parts: Sequence[SpoolPart], key: str | None = None) -> Iterator[Record]:
    """The spooled records of ``key`` (of every key when None), in file order."""
    for part in parts:
        keys = [key] if key is not None else part.keys()
        readers = [_read_file(part, name) for name in keys if (part.path / name).exists()]
        if len(readers) == 1:
            yield from readers[0]
        else:
            yield from heapq.merge(*readers, key=_index)


def _index(record: Record) -> int:
    return record.index


def _read_file(part: SpoolPart, key: str) -> Iterator[Record]:
    offset = part.index_offset
    with (part.path / key).open("rb") as spooled:
        while header := spooled.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            # marshal.load on a file reads it in small pieces, ten times slower: a chunk at a time.
            chunk = marshal.loads(spooled.read(length))  # noqa: S302 - our own file, in our private directory
            for index, line, column, model, pk, fields, size in chunk:
                yield Record(index + offset, line, column, model, pk, fields, size)
