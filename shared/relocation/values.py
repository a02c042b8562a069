"""Field values between their export form (Sentry's JSON) and their database form."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from shared.relocation.spec import Field, Kind

#: The range of a 64-bit signed integer (primary keys, foreign keys, big integer fields).
INT64 = (-(2**63), 2**63 - 1)

#: JSON text without spaces, non-ASCII kept (one encoder for every call: ``json.dumps`` with options makes
#: a new one each time, which costs more than encoding a small object).
compact_json: Callable[[object], str] = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class BadValue(ValueError):
    """A field's value has the wrong type or size; the message says what was expected."""


def parse_datetime(value: str) -> datetime:
    try:  # the usual form ("2023-06-22T22:59:57.023Z") is read as it is, already in UTC
        parsed = datetime.fromisoformat(value)
    except ValueError:
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise BadValue(f"expected an ISO 8601 date and time, got {value!r}") from None
    if parsed.tzinfo is UTC:
        return parsed
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before the first representable instant
        raise BadValue(f"{value!r} is out of the range of dates in UTC") from None


def format_datetime(value: datetime) -> str:
    """Sentry's export form: UTC, milliseconds, ``Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(f"expected an integer, got {json.dumps(value)[:60]}")
    if not INT64[0] <= value <= INT64[1]:
        raise BadValue(f"integer {value} does not fit in 64 bits")
    return value


def _str(field: Field, value: object) -> str:
    if not isinstance(value, str):
        raise BadValue(f"expected a string, got {json.dumps(value)[:60]}")
    if field.max_length is not None and len(value) > field.max_length:
        raise BadValue(f"longer than {field.max_length} characters ({len(value)})")
    return value


def _bool(_field: Field, value: object) -> bool:
    if not isinstance(value, bool):
        raise BadValue(f"expected true or false, got {json.dumps(value)[:60]}")
    return value


def _datetime(_field: Field, value: object) -> datetime:
    if not isinstance(value, str):
        raise BadValue(f"expected a date string, got {json.dumps(value)[:60]}")
    return parse_datetime(value)


def _flags(_field: Field, value: object) -> int:
    # Decimal digits only: "²" is a digit to str.isdigit, but int() refuses it.
    return _int(int(value)) if isinstance(value, str) and value.isdecimal() else _int(value)


_PARSERS: dict[Kind, Callable[[Field, object], object]] = {
    Kind.STR: _str,
    Kind.TEXT: _str,
    Kind.INT: lambda _field, value: _int(value),
    Kind.BOOL: _bool,
    Kind.DATETIME: _datetime,
    Kind.FLAGS: _flags,
    Kind.JSON: lambda _field, value: compact_json(value),
}


#: As the parsers, without building the database value where only its validity matters.
_CHECKERS: dict[Kind, Callable[[Field, object], object]] = {
    **_PARSERS,
    Kind.JSON: lambda _field, value: value,
}


def parser_of(field: Field) -> Callable[[object], object]:
    """The function from an export value of ``field`` to its database value (raises
    :class:`BadValue`), with the lookups done once: the write path calls it for every field of every
    instance."""
    return _with_fast_path(field, _PARSERS[field.kind])


def checker_of(field: Field) -> Callable[[object], object]:
    """A function that raises :class:`BadValue` where the field's parser would (the check pass calls
    it for every field of every instance)."""
    return _with_fast_path(field, _CHECKERS[field.kind])


def _with_fast_path(field: Field, convert: Callable[[Field, object], object]) -> Callable[[object], object]:
    """``convert`` with nulls handled, behind one test that passes the usual values of the field's kind
    straight through (one call per value instead of three); any other value takes the general path,
    so results and errors are the same."""
    nullable = field.nullable

    def general(value: object) -> object:
        if value is None:
            if not nullable:
                raise BadValue("must not be null")
            return None
        return convert(field, value)

    kind = field.kind
    if kind in (Kind.STR, Kind.TEXT):
        limit = field.max_length if field.max_length is not None else sys.maxsize

        def text(value: object) -> object:
            return value if type(value) is str and len(value) <= limit else general(value)

        return text
    if kind is Kind.BOOL:

        def boolean(value: object) -> object:
            return value if value is True or value is False else general(value)

        return boolean
    if kind is Kind.INT:
        low, high = INT64

        def integer(value: object) -> object:
            return value if type(value) is int and low <= value <= high else general(value)

        return integer
    if kind is Kind.FLAGS:  # an integer, or (in Sentry's exports) its decimal digits as a string
        low, high = INT64

        def flags(value: object) -> object:
            if type(value) is int and low <= value <= high:
                return value
            if type(value) is str and value.isdecimal() and len(value) < 19:  # up to 10**18 - 1
                return int(value)
            return general(value)

        return flags
    if kind is Kind.DATETIME:

        def moment(value: object) -> object:
            return parse_datetime(value) if type(value) is str else general(value)

        return moment
    return general


def check_value(field: Field, value: object) -> None:
    """Raise :class:`BadValue` where the field's parser (:func:`parser_of`) would."""
    if value is None:
        if not field.nullable:
            raise BadValue("must not be null")
        return
    _CHECKERS[field.kind](field, value)


def dump_value(field: Field, value: object) -> object:
    """The export value of ``field`` for a database value."""
    if value is None:
        return None
    if field.kind is Kind.DATETIME:
        assert isinstance(value, datetime)
        return format_datetime(value)
    if field.kind is Kind.FLAGS:
        return str(value)
    if field.kind is Kind.JSON:
        assert isinstance(value, str)
        return json.loads(value)
    return value
