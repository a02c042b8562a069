"""The streaming export reader: same records as json.load at any window size, exact error positions."""

from __future__ import annotations

import io
import json

import pytest

from shared.relocation import reader
from shared.relocation.reader import ExportFormatError, read_records
from tests.importing import FIXTURES


@pytest.mark.parametrize("window", [1, 2, 3, 7, 64, 1 << 20])
def test_records_equal_json_load_at_any_window(monkeypatch: pytest.MonkeyPatch, window: int) -> None:
    monkeypatch.setattr(reader, "CHUNK_CHARS", window)
    for path in sorted(FIXTURES.glob("*.json")):
        expected = json.loads(path.read_text())
        with path.open() as stream:
            got = [
                {"model": r.model, "pk": r.pk, "fields": r.fields} for r in read_records(stream, path.name)
            ]
        assert got == [{**e, "model": e["model"].lower()} for e in expected], path.name


def test_positions_are_those_of_the_records() -> None:
    text = '[\n  {"model": "a.b", "pk": 1, "fields": {}},\n\n    {"model": "a.c", "pk": 2, "fields": {}}\n]'
    records = list(read_records(io.StringIO(text), "x"))
    assert [(r.index, r.line, r.column) for r in records] == [(0, 2, 3), (1, 4, 5)]


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("", "x:1:1", "the file is empty"),
        ('[{"model": "a.b", "pk": 1, "fields": {}} x', "x:1:42 (record 0)", "expected ',' or ']'"),
        ('[{"model": "a.b", "pk": 1, "fields": {"k": [1, 2,]}}]', "x:1:50 (record 0)", "malformed JSON"),
        ('[{"model": "a.b", "pk": 1, "fields": {}},]', "x:1:42 (record 1)", "expected a record object"),
        ('[{"model": "ab", "pk": 1, "fields": {}}]', "x:1:2 (record 0)", "'model' must be a string like"),
        (
            '[{"model": "a.b", "pk": 1, "fields": []}]',
            "x:1:2 (record 0)",
            "'fields' of a.b pk 1 must be an object",
        ),
        ('[{"model": "a.b", "pk": 1, "fields": {}, "extra": 1}]', "x:1:2 (record 0)", "unexpected key(s)"),
        ("[" + "[" * 100_000 + "]" * 100_000 + "]", "x:1:2 (record 0)", "expected a record object"),
        (
            '[{"model": "a.b", "pk": 1, "fields": ' + "[" * 100_000 + "]" * 100_000 + "}]",
            "x:1:2 (record 0)",
            "nested too deeply",
        ),
    ],
)
def test_errors_name_the_place(text: str, where: str, message: str) -> None:
    with pytest.raises(ExportFormatError) as caught:
        list(read_records(io.StringIO(text), "x"))
    assert str(caught.value).startswith(where), str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize("length", [150, 199, 200, 201, 260])
def test_a_records_verdict_depends_on_the_record_not_on_the_window(
    monkeypatch: pytest.MonkeyPatch, length: int
) -> None:
    """A record near the size limit is taken or refused, with the same message, whatever the window
    size and however many characters come before it (the check pass reads halves from other offsets)."""
    monkeypatch.setattr(reader, "MAX_RECORD_CHARS", 200)
    big = '{"model": "a.b", "pk": 9, "fields": {"v": "' + "x" * 10 + '"}}'
    big = big.replace("x" * 10, "x" * (10 + length - len(big)))
    assert len(big) == length
    outcomes: set[tuple[str, object]] = set()
    for window in (1, 7, 64, 100, 333, 1 << 20):
        monkeypatch.setattr(reader, "CHUNK_CHARS", window)
        for padding in (0, 1, 37, 99):
            text = "[" + " " * padding + '{"model": "a.b", "pk": 1, "fields": {}}, ' + big + "]"
            try:
                records = list(read_records(io.StringIO(text), "x"))
                outcomes.add(("taken", len(records)))
            except ExportFormatError as exc:
                outcomes.add(("refused", str(exc).split(": ", 1)[1]))  # without the line and column
    assert len(outcomes) == 1, outcomes
    assert outcomes == ({("taken", 2)} if length <= 200 else {("refused", "a record larger than 0 MiB")})


def test_a_malformed_record_is_named_so_at_any_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "MAX_RECORD_CHARS", 200)
    text = '[{"model": "a.b", "pk": 1, "fields": {"v": tru}}, ' + " " * 500 + "]"
    for window in (1, 64, 1 << 20):
        monkeypatch.setattr(reader, "CHUNK_CHARS", window)
        with pytest.raises(ExportFormatError, match=r"x:1:44 \(record 0\): malformed JSON: Expecting value"):
            list(read_records(io.StringIO(text), "x"))
