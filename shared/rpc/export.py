"""ExportModel on the wire: pages and filters between their domain form and protobuf."""

from __future__ import annotations

import json
from collections.abc import Sequence

from shared.errors import SharedError
from shared.relocation.pages import FieldFilter, Instance, Page, Scalar
from shared.relocation.values import compact_json
from shared.rpc.v1 import export_pb2


class MalformedExportRequest(SharedError):
    reason = "malformed_export_request"


def filter_to_proto(field_filter: FieldFilter) -> export_pb2.ExportFilter:
    message = export_pb2.ExportFilter(field=field_filter.field)
    for value in sorted(field_filter.values, key=str):
        if isinstance(value, bool):
            message.bool_values.append(value)
        elif isinstance(value, int):
            message.int_values.append(value)
        else:
            message.str_values.append(value)
    return message


def filters_from_proto(messages: Sequence[export_pb2.ExportFilter]) -> tuple[FieldFilter, ...]:
    filters = []
    for message in messages:
        if not message.field:
            raise MalformedExportRequest("an export filter needs a field name")
        values: set[Scalar] = {*message.int_values, *message.str_values, *message.bool_values}
        filters.append(FieldFilter(message.field, frozenset(values)))
    return tuple(filters)


def request_to_proto(
    model: str, after_pk: int, limit: int, filters: Sequence[FieldFilter]
) -> export_pb2.ExportModelRequest:
    return export_pb2.ExportModelRequest(
        model=model, after_pk=after_pk, limit=limit, filters=[filter_to_proto(f) for f in filters]
    )


def page_to_proto(page: Page) -> export_pb2.ExportModelResponse:
    return export_pb2.ExportModelResponse(
        instances=[
            export_pb2.ExportedInstance(pk=i.pk, fields_json=compact_json(i.fields)) for i in page.instances
        ],
        last_pk=page.last_pk,
        done=page.done,
    )


def page_from_proto(message: export_pb2.ExportModelResponse) -> Page:
    instances = tuple(Instance(i.pk, json.loads(i.fields_json)) for i in message.instances)
    return Page(instances, message.last_pk, message.done)
