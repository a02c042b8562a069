"""Reading an export as a stream of records, with the line and column of each.

An export is a JSON array of ``{"model": ..., "pk": ..., "fields": {...}}`` objects. The reader decodes
one object at a time from a bounded window of the file, so memory does not grow with the file, and a
syntax error names the line and column where it is. A reader can also start at a record in the middle
of a file, or stop at one (two processes check the two halves of a large export).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from shared.errors import SharedError

CHUNK_CHARS = 1 << 20
#: The largest record the reader accepts; also what bounds its memory on malformed input.
MAX_RECORD_CHARS = 64 << 20
_SPACE = re.compile(r"[ \t\n\r]*")
#: Between two records: a comma and the next record's opening brace.
_BETWEEN = re.compile(r"[ \t\n\r]*,[ \t\n\r]*\{")
#: The keys of a record.
_KEYS = frozenset({"model", "pk", "fields"})


class ExportFormatError(SharedError):
    """The export is not a well-formed list of records; the message says where."""

    exit_code = 3

    def __init__(
        self, source: str, line: int, column: int, message: str, *, record: int | None = None
    ) -> None:
        self.source, self.line, self.column, self.record = source, line, column, record
        where = f"{source}:{line}:{column}" + (f" (record {record})" if record is not None else "")
        super().__init__(f"{where}: {message}")


@dataclass(slots=True)
class Record:
    """One instance in an export (not frozen: a frozen dataclass costs twice as much to make, and the
    reader makes one per instance; nothing changes a record)."""

    #: Position in the file: 0-based record index, 1-based line and column of its opening brace.
    index: int
    line: int
    column: int
    model: str
    pk: int
    fields: dict[str, Any]
    #: Characters of its JSON text, where the reader knows them (0 otherwise); not part of its identity.
    size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record starts: its 0-based index, the 1-based line and column of its opening brace."""

    index: int
    line: int
    column: int


class _Cursor:
    """A window over a text stream. Lines and columns are counted only where they are asked for: from a
    mark whose line and line start are known, forward to the offset asked about."""

    def __init__(self, stream: TextIO, source: str, start: Position | None = None) -> None:
        self.stream, self.source = stream, source
        self.buffer = ""
        self.pos = 0
        #: ``line`` is the line of offset ``mark``; ``line_start`` the offset where that line starts
        #: (negative once the start has left the window).
        self.mark, self.line, self.line_start = 0, 1, 0
        #: Characters of the stream before the window.
        self.chars_before = 0
        if start is not None:  # the stream starts at this record's brace
            self.line, self.line_start = start.line, 1 - start.column
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.position_of(self.pos)  # the mark moves to pos before the window drops what precedes it
        shift = self.pos
        self.chars_before += shift
        self.buffer = self.buffer[shift:] + chunk
        self.pos = 0
        self.mark -= shift
        self.line_start -= shift
        return True

    def position_of(self, offset: int) -> tuple[int, int]:
        """1-based line and column of ``offset`` (at or after the mark, which moves there)."""
        if offset > self.mark:
            buffer = self.buffer
            newlines = buffer.count("\n", self.mark, offset)
            if newlines:
                self.line += newlines
                self.line_start = buffer.rfind("\n", self.mark, offset) + 1
            self.mark = offset
        return self.line, offset - self.line_start + 1

    def skip_whitespace(self) -> str | None:
        """The next significant character (not consumed), or None at the end of the stream."""
        while True:
            self.pos = _SPACE.match(self.buffer, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self.fill():
                return None

    def error(self, message: str, offset: int | None = None, record: int | None = None) -> ExportFormatError:
        line, column = self.position_of(self.pos if offset is None else offset)
        return ExportFormatError(self.source, line, column, message, record=record)


_DECODER = json.JSONDecoder()


def _decode_value(cursor: _Cursor, record: int) -> tuple[Any, int]:
    """Decode one JSON value at the cursor, reading more of the stream as needed. Whether a record is
    refused, and why, depends on the record alone (its first ``MAX_RECORD_CHARS`` + 1 characters), not
    on where the reader's window happens to end: a reader that starts in the middle of a file judges it
    as one that starts at the beginning."""
    while True:
        try:
            value, end = _DECODER.raw_decode(cursor.buffer, cursor.pos)
        except json.JSONDecodeError:
            if len(cursor.buffer) - cursor.pos <= MAX_RECORD_CHARS and cursor.fill():
                continue  # the value may simply continue past the window
            raise _refusal(cursor, record) from None
        except RecursionError:
            raise cursor.error("a record nested too deeply", record=record) from None
        if end == len(cursor.buffer) and not cursor.eof and cursor.fill():
            continue  # a number may continue in the next chunk
        if end - cursor.pos > MAX_RECORD_CHARS:
            raise cursor.error(f"a record larger than {MAX_RECORD_CHARS >> 20} MiB", record=record)
        return value, end


def _refusal(cursor: _Cursor, record: int) -> ExportFormatError:
    """Why the record at the cursor cannot be decoded, judged on its first ``MAX_RECORD_CHARS`` + 1
    characters: cut off there (too large), or malformed before."""
    view = cursor.buffer[cursor.pos : cursor.pos + MAX_RECORD_CHARS + 1]
    larger = f"a record larger than {MAX_RECORD_CHARS >> 20} MiB"
    try:
        _DECODER.raw_decode(view)
    except json.JSONDecodeError as exc:
        cut = len(view) > MAX_RECORD_CHARS
        if cut and (exc.pos >= len(view) - 1 or exc.msg.startswith("Unterminated string")):
            return cursor.error(larger, record=record)
        return cursor.error(f"malformed JSON: {exc.msg}", cursor.pos + exc.pos, record)
    except RecursionError:
        return cursor.error("a record nested too deeply", record=record)
    return cursor.error(larger, record=record)


class RecordReader:
    """The records of an export in file order; raises :class:`ExportFormatError` on bad input.

    From the start of a file it reads the whole list. Given ``start`` (where a record starts, with its
    index, line and column) and a stream opened at its byte offset, it reads from that record to the end
    of the list. Given ``stop_at`` (a character offset in the stream), it stops before a record whose
    brace is there, and says so in ``stopped``; iterating again goes on from there."""

    def __init__(
        self,
        stream: TextIO,
        source: str,
        *,
        start: Position | None = None,
        stop_at: int | None = None,
    ) -> None:
        self._cursor = _Cursor(stream, source, start)
        self._start, self._stop_at = start, stop_at
        #: Whether the reader stopped at ``stop_at``.
        self.stopped = False
        self._next_index: int | None = None  # where it stopped

    def _open_list(self) -> str | None:
        """Step over the list's opening bracket: the next significant character."""
        cursor = self._cursor
        first = cursor.skip_whitespace()
        if first is None:
            raise cursor.error("the file is empty; an export is a JSON list")
        if first != "[":
            raise cursor.error("an export is a JSON list of records and starts with '['")
        cursor.pos += 1
        return cursor.skip_whitespace()

    def __iter__(self) -> Iterator[Record]:
        cursor, source, stop_at = self._cursor, self._cursor.source, self._stop_at
        char: str | None
        if self._next_index is not None:  # on from where it stopped, at a record's brace
            index, char, stop_at = self._next_index, "{", None
        elif self._start is None:
            index, char = 0, self._open_list()
        else:
            index, char = self._start.index, cursor.skip_whitespace()
        expect_more = False
        while True:
            if char is None:
                raise cursor.error("the file ends inside the list (no closing ']')")
            if char == "]" and not expect_more:
                cursor.pos += 1
                break
            if char != "{":
                raise cursor.error(f"expected a record object, found {char!r}", record=index)
            if stop_at is not None and cursor.chars_before + cursor.pos == stop_at:
                self.stopped, self._next_index = True, index
                return
            line, column = cursor.position_of(cursor.pos)
            start = cursor.chars_before + cursor.pos  # the window may move while the value is decoded
            value, cursor.pos = _decode_value(cursor, index)
            model, pk, fields = value.get("model"), value.get("pk"), value.get("fields")
            size = cursor.chars_before + cursor.pos - start
            if (
                len(value) == 3
                and type(model) is str
                and type(pk) is int
                and type(fields) is dict
                and "." in model
            ):
                yield Record(
                    index, line, column, model.lower(), pk, fields, size
                )  # the usual record, checked
            else:
                yield _record(value, index, line, column, source, size=size)
            index += 1
            char, expect_more = _after_record(cursor, index - 1)
        trailing = cursor.skip_whitespace()
        if trailing is not None:
            raise cursor.error("unexpected content after the closing ']'")


def read_records(stream: TextIO, source: str) -> Iterator[Record]:
    """Yield the records of an export in file order; raise :class:`ExportFormatError` on bad input."""
    return iter(RecordReader(stream, source))


def _after_record(cursor: _Cursor, index: int) -> tuple[str, bool]:
    """Step over what follows record ``index``: the next significant character, and whether a comma
    was passed (so that another record must follow)."""
    between = _BETWEEN.match(cursor.buffer, cursor.pos)
    if between is not None:  # the usual case: a comma, then the next record's brace in the window
        cursor.pos = between.end() - 1
        return "{", True
    char = cursor.skip_whitespace()
    if char == ",":
        cursor.pos += 1
        char = cursor.skip_whitespace()
        if char is None:
            raise cursor.error("the file ends inside the list (no closing ']')")
        return char, True
    if char == "]":
        return char, False
    if char is None:
        raise cursor.error("the file ends inside the list (no closing ']')")
    raise cursor.error(f"expected ',' or ']' after a record, found {char!r}", record=index)


def _record(value: dict[str, Any], index: int, line: int, column: int, source: str, *, size: int) -> Record:
    def bad(message: str) -> ExportFormatError:
        return ExportFormatError(source, line, column, message, record=index)

    extra = value.keys() - _KEYS
    if extra:
        raise bad(f"unexpected key(s) {sorted(extra)} in a record; expected model, pk and fields")
    model, pk, fields = value.get("model"), value.get("pk"), value.get("fields")
    if not isinstance(model, str) or "." not in model:
        raise bad(f"'model' must be a string like 'sentry.user', got {json.dumps(model)}")
    if isinstance(pk, bool) or not isinstance(pk, int):
        raise bad(f"'pk' of {model} must be an integer, got {json.dumps(pk)}")
    if not isinstance(fields, dict):
        raise bad(f"'fields' of {model} pk {pk} must be an object")
    return Record(index, line, column, model.lower(), pk, fields, size)
