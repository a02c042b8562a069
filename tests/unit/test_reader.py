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
