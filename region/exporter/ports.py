"""What the export engine needs from the outside: pages of each silo's models, and a progress display."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.relocation.pages import FieldFilter, Page
from shared.relocation.spec import ModelSpec


class RowSource(Protocol):
    """The instances of the models one silo holds, in keyset pages."""

    def page(self, spec: ModelSpec, *, after_pk: int, limit: int, filters: Sequence[FieldFilter]) -> Page: ...


class ExportProgress(Protocol):
    def exported(self, model: str, count: int) -> None:
        """Called once per model of the scope, when all its instances are written."""
