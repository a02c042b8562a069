"""Reading a registry model's rows in export form, one keyset page at a time (``id > after_pk`` in id
order), so an export never holds more than a page of any model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Table, select
from sqlalchemy.exc import OperationalError

from shared.errors import DatabaseUnavailable
from shared.relocation.pages import MAX_PAGE_SIZE, PAGE_BUDGET_CHARS, FieldFilter, Instance, Page
from shared.relocation.spec import ModelSpec
from shared.relocation.values import dump_value


def export_fields(spec: ModelSpec, row: Any) -> dict[str, Any]:
    """A row's fields as an export writes them (the ``<field>_ci`` key columns are no fields)."""
    fields: dict[str, Any] = {f.name: dump_value(f, row[f.column]) for f in spec.fields}
    for fk in spec.foreign_keys:
        fields[fk.name] = row[fk.column]
    return fields


def read_page(
    engine: Engine,
    table: Table,
    spec: ModelSpec,
    *,
    after_pk: int,
    limit: int,
    filters: Sequence[FieldFilter] = (),
) -> Page:
    """Up to ``limit`` instances (0: the most a page holds) with a pk above ``after_pk`` that pass every
    filter, in pk order."""
    limit = MAX_PAGE_SIZE if limit <= 0 else min(limit, MAX_PAGE_SIZE)
    statement = select(table).where(table.c.id > after_pk).order_by(table.c.id).limit(limit)
    for field_filter in filters:
        field_filter.check(spec)
        column = table.c.id if field_filter.field == "pk" else table.c[spec.column(field_filter.field)]
        statement = statement.where(column.in_(sorted(field_filter.values, key=str)))
    instances: list[Instance] = []
    size = 0
    try:
        with engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
    except OperationalError as exc:
        raise DatabaseUnavailable(f"database error while reading {spec.name}: {exc.orig or exc}") from exc
    for row in rows:
        fields = export_fields(spec, row)
        instances.append(Instance(row["id"], fields))
        size += len(json.dumps(fields, ensure_ascii=False, default=str))
        if size >= PAGE_BUDGET_CHARS:
            break
    last = instances[-1].pk if instances else after_pk
    return Page(tuple(instances), last, done=len(rows) < limit and len(instances) == len(rows))
