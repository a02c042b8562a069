"""Field values: the parsers and checkers the write path and the check pass call for every field take
the usual values on a fast path; every value must get the result, or the error, the general path gives."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.generate import generate
from region.importer.options import ImportOptions
from region.importer.scan import scan_file
from shared.relocation.reader import ExportFormatError
from shared.relocation.spec import Field, ImportScope, Kind
from shared.relocation.values import BadValue, check_value, checker_of, parse_datetime, parser_of

FIELDS = [
    Field("name", Kind.STR, nullable=False, max_length=5),
    Field("note", Kind.STR, max_length=5),
    Field("body", Kind.TEXT, nullable=False),
    Field("count", Kind.INT, nullable=False),
    Field("maybe", Kind.INT),
    Field("flag", Kind.BOOL, nullable=False),
    Field("when", Kind.DATETIME, nullable=False),
    Field("later", Kind.DATETIME),
    Field("flags", Kind.FLAGS, nullable=False),
    Field("data", Kind.JSON),
]


class Text(str):
    """A str subclass: not the exact type the fast path takes."""


VALUES: list[object] = [
    None,
    "",
    "abcde",
    "abcdef",
    Text("abc"),
    "2023-06-22T22:59:57.023Z",
    "2023-06-22T22:59:57.023z",
    "2023-06-22T22:59:57+02:00",
    "2023-06-22T22:59:57",
    "2023-06-22",
    "yesterday",
    "12",
    "0",
    "²",
    "٣",
    "-3",
    " 4",
    "9" * 18,
    "9" * 19,
    "9223372036854775807",
    "9223372036854775808",
    Text("5"),
    0,
    -1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    True,
    False,
    1.5,
    [1],
    {"a": 1},
]


def _outcome(call: object, value: object) -> tuple[str, object]:
    try:
        return "ok", call(value)  # type: ignore[operator]
    except BadValue as exc:
        return "refused", str(exc)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_the_checker_refuses_exactly_what_check_value_refuses_with_its_message(field: Field) -> None:
    check = checker_of(field)
    for value in VALUES:
        expected = _outcome(lambda v: check_value(field, v), value)
        got = _outcome(check, value)
        assert got[0] == expected[0], (field.name, value)
        if expected[0] == "refused":
            assert got[1] == expected[1], (field.name, value)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_the_parser_refuses_what_the_checker_refuses_and_keeps_the_exact_type(field: Field) -> None:
    parse, check = parser_of(field), checker_of(field)
    for value in VALUES:
        parsed, checked = _outcome(parse, value), _outcome(check, value)
        assert parsed[0] == checked[0], (field.name, value)
        if parsed[0] == "refused":
            assert parsed[1] == checked[1], (field.name, value)


def test_parsed_values() -> None:
    by_name = {f.name: parser_of(f) for f in FIELDS}
    assert by_name["name"]("abcde") == "abcde"
    assert by_name["count"](2**63 - 1) == 2**63 - 1
    assert by_name["flag"](False) is False
    assert by_name["maybe"](None) is None
    assert by_name["flags"]("12") == 12
    assert by_name["flags"]("٣") == 3  # a decimal digit of another script, as int() reads it
    assert type(by_name["flags"](Text("5"))) is int
    assert by_name["data"]({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    when = by_name["when"]("2023-06-22T22:59:57.023Z")
    assert when == datetime(2023, 6, 22, 22, 59, 57, 23000, tzinfo=UTC)
    assert isinstance(when, datetime) and when.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-06-22T22:59:57.023Z", datetime(2023, 6, 22, 22, 59, 57, 23000, tzinfo=UTC)),
        ("2023-06-22T22:59:57.023z", datetime(2023, 6, 22, 22, 59, 57, 23000, tzinfo=UTC)),
        ("2023-06-22T22:59:57+02:00", datetime(2023, 6, 22, 20, 59, 57, tzinfo=UTC)),
        ("2023-06-22T22:59:57", datetime(2023, 6, 22, 22, 59, 57, tzinfo=UTC)),
        ("2023-06-22", datetime(2023, 6, 22, tzinfo=UTC)),
    ],
)
def test_dates_are_read_in_utc(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo is UTC


def test_a_date_that_is_not_one_is_named() -> None:
    with pytest.raises(BadValue, match="expected an ISO 8601 date and time, got 'yesterday'"):
        parse_datetime("yesterday")


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_date_beyond_the_range_of_utc_is_a_bad_value(text: str) -> None:
    with pytest.raises(BadValue, match="out of the range of dates in UTC"):
        parse_datetime(text)


def test_the_check_pass_names_the_record_holding_such_a_date(tmp_path: Path) -> None:
    found = [r for r in generate(orgs=1, members=1, teams=1, projects=1) if r["model"] == "sentry.user"]
    found[0]["fields"]["date_joined"] = "0001-01-01T00:00:00+01:00"
    path = tmp_path / "export.json"
    path.write_text(json.dumps(found, indent=2))
    options = ImportOptions(scope=ImportScope.ORGANIZATIONS, import_id=str(uuid.uuid4()))
    with pytest.raises(
        ExportFormatError, match=r"export.json:2:3 \(record 0\): sentry.user pk 1: field 'date_joined'"
    ):
        scan_file(path, path.name, options)
