"""The check pass's records, kept for the import pass, so that an export's JSON is parsed once.

The check pass parses every record anyway; as it goes it writes them (with their index, line and
column) to a private file, marshalled in chunks of up to a thousand records and about 4 MiB, and the
import pass reads them back about three times as fast as it would parse the JSON again. Each process
of a split check writes its own part; the second part's indexes are counted from its first record, so
it carries the offset that makes them the file's. Writing stops, without failing the check, on an OS
error (a full disk, say), and the file is removed; the import pass then reads the export itself, as
it does when there is no spool.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import struct
from collections.abc import Iterable, Iterator, Sequence
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


@dataclass(frozen=True)
class SpoolPart:
    path: Path
    #: Added to each record's index (the second half of a split check counts from its first record).
    index_offset: int = 0


class SpoolWriter:
    """Passes records on while writing them to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed = False
        self._file: BinaryIO | None = None
        try:
            self._file = path.open("wb")
        except OSError as exc:
            self._fail(exc)

    def passing(self, records: Iterable[Record]) -> Iterator[Record]:
        """``records``, each written before it is passed on (the last chunk once they end)."""
        chunk: list[tuple[object, ...]] = []
        size = 0  # characters of the chunk's records, as the reader measured them
        for record in records:
            chunk.append((record.index, record.line, record.column, record.model, record.pk, record.fields))
            size += record.size
            if len(chunk) == CHUNK or size >= CHUNK_BYTES:  # large records do not pile up in memory
                self._dump(chunk)
                chunk, size = [], 0
            yield record
        self._dump(chunk)

    def close(self) -> bool:
        """Close the file; whether everything passed on was written."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self._fail(exc)
            self._file = None
        return not self.failed

    def _dump(self, chunk: list[tuple[object, ...]]) -> None:
        if self._file is None or not chunk:
            return
        blob = marshal.dumps(chunk)
        try:
            self._file.write(_LENGTH.pack(len(blob)))
            self._file.write(blob)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        """Stop keeping records, and give back the space the file took (a full disk is the usual
        reason, and the import still needs room for its other temporary file)."""
        self.failed = True
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        _LOGGER.info(
            "not keeping the checked records in %s (%s); the import reads the export again", self.path, exc
        )


def read_spool(parts: Sequence[SpoolPart]) -> Iterator[Record]:
    """The spooled records, in file order."""
    for part in parts:
        offset = part.index_offset
        with part.path.open("rb") as spooled:
            while header := spooled.read(_LENGTH.size):
                (length,) = _LENGTH.unpack(header)
                # marshal.load on a file reads it in small pieces, ten times slower: a chunk at a time.
                chunk = marshal.loads(spooled.read(length))  # noqa: S302 - our own file, in our private directory
                for index, line, column, model, pk, fields in chunk:
                    yield Record(index + offset, line, column, model, pk, fields)
