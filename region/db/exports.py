"""The region's own models for an export, read from its database a page at a time."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from region.db.models import RELOCATION_TABLES
from region.exporter.errors import SourceRefused
from shared.db.relocation_pages import read_page
from shared.relocation.pages import FieldFilter, Page
from shared.relocation.spec import ModelSpec


class RegionRows:
    """Implements ``region.exporter.ports.RowSource`` over the region database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def page(self, spec: ModelSpec, *, after_pk: int, limit: int, filters: Sequence[FieldFilter]) -> Page:
        table = RELOCATION_TABLES.get(spec.name)
        if table is None:
            raise SourceRefused(f"{spec.name} is not a model of the region silo")
        return read_page(self._engine, table, spec, after_pk=after_pk, limit=limit, filters=filters)
