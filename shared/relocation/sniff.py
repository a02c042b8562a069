"""Recognising an import's input by its first bytes: plain JSON, a gzip, or an encrypted archive (a tar).

Kept apart from :mod:`shared.relocation.archive` so that a plain JSON export is recognised without
loading the archive code and the cryptography library it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from shared.relocation.archive_errors import InputUnreadable, UnrecognisedInput

#: How much of a file is looked at: a tar header block (its "ustar" magic is at offset 257).
HEAD_BYTES = 512
_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r\n"


class InputKind(Enum):
    JSON = "json"
    GZIP = "gzip"
    TAR = "tar"


#: (offset, magic, kind, description): what the first block of a file can say about it. A plain JSON
#: export is recognised first (by its first significant byte), so text that happens to hold "ustar" at
#: offset 257 is never taken for a tar.
_SIGNATURES: tuple[tuple[int, bytes, InputKind | None, str], ...] = (
    (257, b"ustar", InputKind.TAR, "tar"),
    (0, b"PK\x03\x04", None, "a zip archive"),
    (0, b"BZh", None, "a bzip2 file"),
    (0, b"\xfd7zXZ\x00", None, "an xz file"),
    (0, b"\x28\xb5\x2f\xfd", None, "a zstd file"),
)
_GZIP_MAGIC = b"\x1f\x8b"
_EXPECTED = "an export is a JSON list of records, a gzip of one, or an encrypted archive (a tar)"


@dataclass(frozen=True)
class Sniffed:
    kind: InputKind | None
    #: What the file holds, in words, for messages.
    found: str
    #: ":LINE:COLUMN" of the first significant character when the file is text, else "".
    position: str = ""

    def error(self, source: str) -> UnrecognisedInput:
        return UnrecognisedInput(f"{source}{self.position}: {_EXPECTED}; found {self.found}")


def sniff(path: Path, source: str) -> Sniffed:
    """What the file holds, recognised by its first bytes."""
    try:
        with path.open("rb") as stream:
            head = stream.read(HEAD_BYTES)
            if head.startswith(_GZIP_MAGIC):
                return Sniffed(InputKind.GZIP, "gzip")
            start, line, column = _first_significant_bytes(head.removeprefix(_BOM), stream)
    except OSError as exc:
        raise InputUnreadable(f"{source}: cannot read ({exc.strerror or exc})") from None
    if start.startswith(b"["):
        return Sniffed(InputKind.JSON, "JSON")
    for offset, magic, kind, what in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return Sniffed(kind, what)
    if not start:
        return Sniffed(None, "an empty file")
    found = "a JSON object" if start.startswith(b"{") else f"content starting with {start!r}"
    return Sniffed(None, found, f":{line}:{column}")


def _first_significant_bytes(data: bytes, stream: BinaryIO) -> tuple[bytes, int, int]:
    """Up to 16 bytes from the first one that is not JSON whitespace (empty if there is none), with its
    line and column."""
    line, column = 1, 1
    while data:
        stripped = data.lstrip(_JSON_WHITESPACE)
        skipped = data[: len(data) - len(stripped)]
        newlines = skipped.count(b"\n")
        line += newlines
        column = len(skipped) - skipped.rfind(b"\n") if newlines else column + len(skipped)
        if stripped:
            return stripped[:16], line, column
        data = stream.read(_CHUNK)
    return b"", line, column
