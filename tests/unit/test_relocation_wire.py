"""A batch crosses the wire to control unchanged (options, rows, hints), and its result comes back
unchanged."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from shared.relocation.batch import Batch, BatchOptions, BatchResult, Entry, Row
from shared.relocation.findings import Finding
from shared.relocation.pkmap import ImportKind
from shared.relocation.spec import ImportScope
from shared.rpc.relocation import (
    MalformedBatch,
    MalformedResult,
    batch_from_proto,
    batch_to_proto,
    result_from_proto,
    result_to_proto,
)
from shared.rpc.v1 import control_pb2


@pytest.mark.parametrize("flag", [f.name for f in dataclasses.fields(BatchOptions) if f.type == "bool"])
def test_every_batch_option_survives_the_wire(flag: str) -> None:
    flags: dict[str, Any] = {flag: True}
    options = dataclasses.replace(BatchOptions("i1", ImportScope.CONFIG), **flags)
    rows = (
        Row(3, 17, {"username": "ann", "is_active": True, "date_joined": "2023-06-22T22:54:28.773Z"}),
        Row(4, 18, {"username": "bob", "name": None}, keep_pk=True, hints={"org_slug": "acme"}),
    )
    batch = Batch("sentry.user", 3, rows, options)
    received = batch_from_proto(batch_to_proto(batch))
    assert received == batch
    assert getattr(received.options, flag) is True


def test_an_empty_batch_survives_the_wire() -> None:
    batch = Batch("sentry.email", 1, (), BatchOptions("i1", ImportScope.USERS))
    assert batch_from_proto(batch_to_proto(batch)) == batch


@pytest.mark.parametrize(
    ("instances_json", "expected"),
    [
        ("[[1, 2, {}", "instances_json is not JSON"),
        ("[" * 100_000, "nested too deeply"),
        ('{"a": 1}', "must be a JSON array"),
        ("[[1, 2, {}, false]]", "instance 0: not [ordinal, old_pk, fields, keep_pk, hints]"),
        ("[[1, 2, {}, false, {}], [0, 3, {}, false, {}]]", "instance 1: expected [ordinal >= 1"),
        ("[[1, 9223372036854775808, {}, false, {}]]", "64-bit pk"),
        ("[[1, 2, [], false, {}]]", "object of fields"),
        ("[[1, 2, {}, 1, {}]]", "boolean"),
        ('[[1, 2, {}, false, {"org_slug": 5}]]', "object of strings"),
    ],
)
def test_a_malformed_batch_is_refused_with_where_and_what(instances_json: str, expected: str) -> None:
    request = control_pb2.ImportModelBatchRequest(
        import_id="i1", scope="users", model="sentry.user", first_ordinal=1, instances_json=instances_json
    )
    with pytest.raises(MalformedBatch, match=r"^sentry\.user") as raised:
        batch_from_proto(request)
    assert expected in str(raised.value)


def test_a_batch_result_survives_the_wire() -> None:
    plain = BatchResult(tuple(Entry(pk, 1000 + pk, ImportKind.INSERTED, None) for pk in range(1, 6)))
    assert result_from_proto(result_to_proto(plain)) == plain
    assert not result_to_proto(plain).unique_values  # no column of empty strings
    mixed = BatchResult(
        (
            Entry(1, 7, ImportKind.EXISTING, "acme"),
            Entry(2, 8, ImportKind.INSERTED, None),
            Entry(3, 7, ImportKind.OVERWRITE, "Émile-x1"),
        ),
        (Finding("renamed", "sentry.user", 3, 3, 7, "username 'Émile' is taken"),),
        replayed=True,
    )
    assert result_from_proto(result_to_proto(mixed)) == mixed
    assert result_from_proto(result_to_proto(BatchResult(()))) == BatchResult(())


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"old_pks": [1, 2], "new_pks": [3], "kinds": [1, 1]}, "2 old pks, 1 new pks, 2 kinds"),
        ({"old_pks": [1], "new_pks": [3], "kinds": [1], "unique_values": ["a", "b"]}, "2 unique values"),
        ({"old_pks": [1], "new_pks": [3], "kinds": [0]}, "unknown kind 0"),
    ],
)
def test_a_result_whose_columns_do_not_line_up_is_refused(columns: dict[str, Any], expected: str) -> None:
    with pytest.raises(MalformedResult, match=expected):
        result_from_proto(control_pb2.ImportModelBatchResponse(**columns))
