"""Reading an export as a stream of records, with the line and column of each.

An export is a JSON array of ``{"model": ..., "pk": ..., "fields": {...}}`` objects. The reader decodes
one object at a time from a bounded window of the file, so memory does not grow with the file, and a
syntax error names the line and column where it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from shared.errors import SharedError

CHUNK_CHARS = 1 << 20
#: The largest record the reader accepts; also what bounds its memory on malformed input.
MAX_RECORD_CHARS = 64 << 20
_WHITESPACE = " \t\n\r"


class ExportFormatError(SharedError):
    """The export is not a well-formed list of records; the message says where."""

    exit_code = 3

    def __init__(
        self, source: str, line: int, column: int, message: str, *, record: int | None = None
    ) -> None:
        self.source, self.line, self.column, self.record = source, line, column, record
        where = f"{source}:{line}:{column}" + (f" (record {record})" if record is not None else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Record:
    """One instance in an export."""

    #: Position in the file: 0-based record index, 1-based line and column of its opening brace.
    index: int
    line: int
    column: int
    model: str
    pk: int
    fields: dict[str, Any]


class _Cursor:
    """A window over a text stream that tracks the line and column of its start."""

    def __init__(self, stream: TextIO, source: str) -> None:
        self.stream, self.source = stream, source
        self.buffer = ""
        self.pos = 0
        self.line, self.column = 1, 1  # of self.pos
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.buffer = self.buffer[self.pos :] + chunk
        self.pos = 0
        return True

    def advance(self, end: int) -> None:
        consumed = self.buffer[self.pos : end]
        newlines = consumed.count("\n")
        if newlines:
            self.line += newlines
            self.column = len(consumed) - consumed.rfind("\n")
        else:
            self.column += len(consumed)
        self.pos = end

    def position_of(self, offset: int) -> tuple[int, int]:
        consumed = self.buffer[self.pos : offset]
        newlines = consumed.count("\n")
        if newlines:
            return self.line + newlines, len(consumed) - consumed.rfind("\n")
        return self.line, self.column + len(consumed)

    def skip_whitespace(self) -> str | None:
        """The next significant character (not consumed), or None at the end of the stream."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in _WHITESPACE:
                self.advance(self.pos + 1)
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self.fill():
                return None

    def error(self, message: str, offset: int | None = None, record: int | None = None) -> ExportFormatError:
        line, column = self.position_of(self.pos if offset is None else offset)
        return ExportFormatError(self.source, line, column, message, record=record)


_DECODER = json.JSONDecoder()


def _decode_value(cursor: _Cursor, record: int) -> tuple[Any, int]:
    """Decode one JSON value at the cursor, reading more of the stream as needed."""
    while True:
        try:
            value, end = _DECODER.raw_decode(cursor.buffer, cursor.pos)
        except json.JSONDecodeError as exc:
            # The value may simply continue past the window: read more and try again.
            if len(cursor.buffer) - cursor.pos < MAX_RECORD_CHARS and cursor.fill():
                continue
            if not cursor.eof and exc.pos >= len(cursor.buffer) - 1:
                raise cursor.error(
                    f"a record larger than {MAX_RECORD_CHARS >> 20} MiB", record=record
                ) from None
            raise cursor.error(f"malformed JSON: {exc.msg}", exc.pos, record) from None
        except RecursionError:
            raise cursor.error("a record nested too deeply", record=record) from None
        if end == len(cursor.buffer) and not cursor.eof and cursor.fill():
            continue  # a number may continue in the next chunk
        return value, end


def read_records(stream: TextIO, source: str) -> Iterator[Record]:
    """Yield the records of an export in file order; raise :class:`ExportFormatError` on bad input."""
    cursor = _Cursor(stream, source)
    first = cursor.skip_whitespace()
    if first is None:
        raise cursor.error("the file is empty; an export is a JSON list")
    if first != "[":
        raise cursor.error("an export is a JSON list of records and starts with '['")
    cursor.advance(cursor.pos + 1)
    index = 0
    expect_more = False
    while True:
        char = cursor.skip_whitespace()
        if char is None:
            raise cursor.error("the file ends inside the list (no closing ']')")
        if char == "]" and not expect_more:
            cursor.advance(cursor.pos + 1)
            break
        if char != "{":
            raise cursor.error(f"expected a record object, found {char!r}", record=index)
        line, column = cursor.line, cursor.column
        value, end = _decode_value(cursor, index)
        cursor.advance(end)
        yield _record(value, index, line, column, source)
        index += 1
        char = cursor.skip_whitespace()
        if char == ",":
            cursor.advance(cursor.pos + 1)
            expect_more = True
        elif char == "]":
            expect_more = False
        elif char is None:
            raise cursor.error("the file ends inside the list (no closing ']')")
        else:
            raise cursor.error(f"expected ',' or ']' after a record, found {char!r}", record=index - 1)
    trailing = cursor.skip_whitespace()
    if trailing is not None:
        raise cursor.error("unexpected content after the closing ']'")


def _record(value: dict[str, Any], index: int, line: int, column: int, source: str) -> Record:
    def bad(message: str) -> ExportFormatError:
        return ExportFormatError(source, line, column, message, record=index)

    extra = set(value) - {"model", "pk", "fields"}
    if extra:
        raise bad(f"unexpected key(s) {sorted(extra)} in a record; expected model, pk and fields")
    model, pk, fields = value.get("model"), value.get("pk"), value.get("fields")
    if not isinstance(model, str) or "." not in model:
        raise bad(f"'model' must be a string like 'sentry.user', got {json.dumps(model)}")
    if isinstance(pk, bool) or not isinstance(pk, int):
        raise bad(f"'pk' of {model} must be an integer, got {json.dumps(pk)}")
    if not isinstance(fields, dict):
        raise bad(f"'fields' of {model} pk {pk} must be an object")
    return Record(index, line, column, model.lower(), pk, fields)
