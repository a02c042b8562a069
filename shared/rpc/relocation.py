"""Import batches and their results on the wire (ImportModelBatch)."""

from __future__ import annotations

import json

from shared.errors import SharedError
from shared.relocation.batch import Batch, BatchOptions, BatchResult, Entry, Row
from shared.relocation.findings import Finding
from shared.relocation.pkmap import ImportKind
from shared.relocation.spec import ImportScope
from shared.relocation.values import compact_json
from shared.rpc.v1 import common_pb2, control_pb2

_KINDS = {
    ImportKind.INSERTED: common_pb2.PkMapEntry.INSERTED,
    ImportKind.EXISTING: common_pb2.PkMapEntry.EXISTING,
    ImportKind.OVERWRITE: common_pb2.PkMapEntry.OVERWRITE,
}
_FROM_WIRE = {wire: kind for kind, wire in _KINDS.items()}


def batch_to_proto(batch: Batch) -> control_pb2.ImportModelBatchRequest:
    return control_pb2.ImportModelBatchRequest(
        import_id=batch.options.import_id,
        scope=batch.options.scope.value,
        model=batch.model,
        first_ordinal=batch.first_ordinal,
        merge_users=batch.options.merge_users,
        overwrite_configs=batch.options.overwrite_configs,
        row_by_row=batch.options.row_by_row,
        no_bookkeeping=batch.options.no_bookkeeping,
        instances=[
            common_pb2.ModelInstance(
                ordinal=row.ordinal,
                old_pk=row.old_pk,
                fields_json=compact_json(row.values),
                keep_pk=row.keep_pk,
                hints=row.hints,
            )
            for row in batch.rows
        ],
    )


class MalformedBatch(SharedError):
    """An ImportModelBatch request that does not describe a batch."""

    reason = "malformed_batch"


def batch_from_proto(request: control_pb2.ImportModelBatchRequest) -> Batch:
    if not request.import_id or request.first_ordinal < 1:
        raise MalformedBatch("a batch needs an import id and a first ordinal of at least 1")
    try:
        scope = ImportScope(request.scope)
    except ValueError:
        raise MalformedBatch(f"unknown import scope {request.scope!r}") from None
    options = BatchOptions(
        import_id=request.import_id,
        scope=scope,
        merge_users=request.merge_users,
        overwrite_configs=request.overwrite_configs,
        row_by_row=request.row_by_row,
        no_bookkeeping=request.no_bookkeeping,
    )
    rows = []
    for instance in request.instances:
        try:
            values = json.loads(instance.fields_json)
        except ValueError as exc:
            raise MalformedBatch(f"{request.model} #{instance.ordinal}: fields are not JSON: {exc}") from None
        if not isinstance(values, dict):
            raise MalformedBatch(f"{request.model} #{instance.ordinal}: fields must be a JSON object")
        hints = dict(instance.hints)
        rows.append(Row(instance.ordinal, instance.old_pk, values, keep_pk=instance.keep_pk, hints=hints))
    return Batch(request.model, request.first_ordinal, tuple(rows), options)


def result_to_proto(result: BatchResult) -> control_pb2.ImportModelBatchResponse:
    return control_pb2.ImportModelBatchResponse(
        entries=[
            common_pb2.PkMapEntry(
                old_pk=e.old_pk, new_pk=e.new_pk, kind=_KINDS[e.kind], unique_value=e.value or ""
            )
            for e in result.entries
        ],
        findings=[
            common_pb2.Finding(
                kind=f.kind,
                model=f.model,
                ordinal=f.ordinal,
                old_pk=f.old_pk or 0,
                new_pk=f.new_pk or 0,
                reason=f.reason,
            )
            for f in result.findings
        ],
        replayed=result.replayed,
    )


def result_from_proto(response: control_pb2.ImportModelBatchResponse) -> BatchResult:
    return BatchResult(
        entries=tuple(
            Entry(e.old_pk, e.new_pk, _FROM_WIRE[e.kind], e.unique_value or None) for e in response.entries
        ),
        findings=tuple(
            Finding(f.kind, f.model, f.ordinal, f.old_pk or None, f.new_pk or None, f.reason)
            for f in response.findings
        ),
        replayed=response.replayed,
    )
