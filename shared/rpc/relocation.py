"""Import batches and their results on the wire (ImportModelBatch)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from shared.errors import SharedError
from shared.relocation.batch import Batch, BatchOptions, BatchResult, Entry, Row
from shared.relocation.findings import Finding
from shared.relocation.pkmap import ImportKind
from shared.relocation.spec import ImportScope
from shared.relocation.values import INT64, compact_json
from shared.rpc.v1 import common_pb2, control_pb2

_KINDS = {
    ImportKind.INSERTED: common_pb2.INSERTED,
    ImportKind.EXISTING: common_pb2.EXISTING,
    ImportKind.OVERWRITE: common_pb2.OVERWRITE,
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
        fresh=batch.options.fresh,
        instances_json=compact_json(
            [[r.ordinal, r.old_pk, r.values, r.keep_pk, r.hints] for r in batch.rows]
        ),
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
        fresh=request.fresh,
    )
    try:
        instances = json.loads(request.instances_json) if request.instances_json else []
    except ValueError as exc:
        raise MalformedBatch(f"{request.model}: instances_json is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedBatch(f"{request.model}: instances_json is nested too deeply") from None
    if type(instances) is not list:
        raise MalformedBatch(f"{request.model}: instances_json must be a JSON array")
    rows = []
    for position, instance in enumerate(instances):
        if type(instance) is not list or len(instance) != 5:
            raise MalformedBatch(
                f"{request.model} instance {position}: not [ordinal, old_pk, fields, keep_pk, hints]"
            )
        ordinal, old_pk, values, keep_pk, hints = instance
        if not (
            type(ordinal) is int
            and 1 <= ordinal <= INT64[1]
            and type(old_pk) is int
            and INT64[0] <= old_pk <= INT64[1]
            and type(values) is dict
            and type(keep_pk) is bool
            and type(hints) is dict
            and (not hints or all(type(v) is str for v in hints.values()))
        ):
            raise MalformedBatch(
                f"{request.model} instance {position}: expected [ordinal >= 1, 64-bit pk, object of fields, "
                f"boolean, object of strings], got {compact_json(instance)[:200]}"
            )
        rows.append(Row(ordinal, old_pk, values, keep_pk, hints))
    return Batch(request.model, request.first_ordinal, tuple(rows), options)


def result_to_proto(result: BatchResult) -> control_pb2.ImportModelBatchResponse:
    entries = result.entries
    values = [e.value or "" for e in entries]
    return control_pb2.ImportModelBatchResponse(
        old_pks=[e.old_pk for e in entries],
        new_pks=[e.new_pk for e in entries],
        kinds=[_KINDS[e.kind] for e in entries],
        unique_values=values if any(values) else (),
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


class MalformedResult(SharedError):
    """An ImportModelBatch response whose columns do not line up."""

    reason = "malformed_result"


def result_from_proto(response: control_pb2.ImportModelBatchResponse) -> BatchResult:
    old_pks, new_pks, kinds = response.old_pks, response.new_pks, response.kinds
    values: Sequence[str] = response.unique_values or [""] * len(old_pks)
    if not len(old_pks) == len(new_pks) == len(kinds) == len(values):
        raise MalformedResult(
            f"ImportModelBatch answered {len(old_pks)} old pks, {len(new_pks)} new pks, {len(kinds)} kinds "
            f"and {len(values)} unique values"
        )
    try:
        entries = tuple(
            Entry(old, new, _FROM_WIRE[kind], value or None)
            for old, new, kind, value in zip(old_pks, new_pks, kinds, values, strict=True)
        )
    except KeyError as exc:
        raise MalformedResult(f"ImportModelBatch answered an unknown kind {exc}") from None
    return BatchResult(
        entries=entries,
        findings=tuple(
            Finding(f.kind, f.model, f.ordinal, f.old_pk or None, f.new_pk or None, f.reason)
            for f in response.findings
        ),
        replayed=response.replayed,
    )
