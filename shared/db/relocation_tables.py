"""Tables of the imported models, built from the model registry for the silo that owns them, and the
import-chunk table that records every written batch (the key of resumable imports)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.types import TypeEngine

from shared.relocation.registry import REGISTRY, models_of
from shared.relocation.spec import Kind, ModelSpec, Silo

#: An id column that is an auto-incrementing BIGINT on PostgreSQL and SQLite's rowid alias there.
ID = BigInteger().with_variant(Integer(), "sqlite")

_TYPES: Mapping[Kind, TypeEngine[Any]] = {
    Kind.TEXT: Text(),
    Kind.INT: BigInteger(),
    Kind.BOOL: Boolean(create_constraint=False),
    Kind.DATETIME: DateTime(timezone=True),
    Kind.FLAGS: BigInteger(),
    Kind.JSON: Text(),
}


def _table(metadata: MetaData, spec: ModelSpec) -> Table:
    columns: list[Column[object]] = [Column("id", ID, primary_key=True, autoincrement=True)]
    for field in spec.fields:
        kind_type = String(field.max_length) if field.kind is Kind.STR else _TYPES[field.kind]
        columns.append(Column(field.column, kind_type, nullable=field.nullable))
    for name in spec.folded:
        field = next(f for f in spec.fields if f.name == name)
        # Casefolding may lengthen a string (e.g. "ß" -> "ss"); at most threefold.
        length = field.max_length * 3 if field.max_length else None
        columns.append(Column(f"{name}_ci", String(length), nullable=field.nullable))
    for fk in spec.foreign_keys:
        target = REGISTRY.get(fk.target)
        constraint = (
            [ForeignKey(f"{target.table}.id")] if target is not None and target.silo is spec.silo else []
        )
        columns.append(Column(fk.column, BigInteger(), *constraint, nullable=fk.nullable, index=True))
    uniques = [
        UniqueConstraint(
            *(spec.key_column(unique, name) for name in unique.fields), name=f"uq_{spec.table}_{i}"
        )
        for i, unique in enumerate(spec.uniques)
    ]
    return Table(spec.table, metadata, *columns, *uniques)


def relocation_tables(metadata: MetaData, silo: Silo) -> dict[str, Table]:
    """Model name -> table, for every registry model ``silo`` owns."""
    return {spec.name: _table(metadata, spec) for spec in models_of(silo)}


def import_chunk_table(metadata: MetaData, name: str) -> Table:
    """One row per written batch: (import id, model, first ordinal) and the batch's results."""
    return Table(
        name,
        metadata,
        Column("id", ID, primary_key=True, autoincrement=True),
        Column("import_id", String(36), nullable=False),
        Column("model", String(64), nullable=False),
        Column("first_ordinal", BigInteger(), nullable=False),
        Column("last_ordinal", BigInteger(), nullable=False),
        # JSON: [[old pk, new pk, kind, unique value or null], ...]
        Column("entries", Text(), nullable=False),
        # JSON: [finding, ...]
        Column("findings", Text(), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        UniqueConstraint("import_id", "model", "first_ordinal", name=f"uq_{name}_batch"),
    )
