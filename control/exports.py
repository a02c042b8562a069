"""Control's side of an export: pages of the control silo's models, read-only, for a region's exporter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Engine, Table

from control.errors import ControlError
from shared.db.relocation_pages import read_page
from shared.relocation.pages import FieldFilter, Page
from shared.relocation.registry import lookup


class NotExportable(ControlError):
    """The model is unknown, or it is no model of the control silo."""

    reason = "not_exportable"

    def __init__(self, model: str, message: str) -> None:
        self.model = model
        super().__init__(f"{model}: {message}")


class ExportService:
    def __init__(self, engine: Engine, tables: Mapping[str, Table]) -> None:
        self._engine = engine
        self._tables = tables

    def page(self, model: str, *, after_pk: int, limit: int, filters: Sequence[FieldFilter] = ()) -> Page:
        """Instances of ``model`` with a pk above ``after_pk``, in pk order, that pass ``filters``."""
        spec = lookup(model)
        if spec is None:
            raise NotExportable(model or "(no model)", "siloport does not know this model")
        table = self._tables.get(spec.name)
        if table is None:
            raise NotExportable(spec.name, f"a {spec.silo.value} model; the control silo does not hold it")
        return read_page(self._engine, table, spec, after_pk=after_pk, limit=limit, filters=filters)
