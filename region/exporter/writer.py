"""Writing an export as Sentry does (a JSON list, two-space indent), one record at a time."""

from __future__ import annotations

import json
from typing import Any, TextIO

_INDENT = "  "


class ExportWriter:
    """Streams ``{"model", "pk", "fields"}`` records into a JSON list on ``out``."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.count = 0

    def write(self, model: str, pk: int, fields: dict[str, Any]) -> None:
        text = json.dumps({"model": model, "pk": pk, "fields": fields}, indent=2)
        self._out.write("[\n" if self.count == 0 else ",\n")
        self._out.write("\n".join(_INDENT + line for line in text.split("\n")))
        self.count += 1

    def close(self) -> None:
        self._out.write("[]" if self.count == 0 else "\n]")
        self._out.flush()
