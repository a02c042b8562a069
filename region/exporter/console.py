"""What an operator sees of an export: a line per model on stderr as it is done."""

from __future__ import annotations

from typing import TextIO


class ConsoleExportProgress:
    def __init__(self, out: TextIO, *, enabled: bool = True) -> None:
        self._out = out
        self._enabled = enabled

    def exported(self, model: str, count: int) -> None:
        if self._enabled:
            self._out.write(f"  {model:<32} {count:>10,}\n")
            self._out.flush()
