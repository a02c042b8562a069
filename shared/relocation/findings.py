"""Findings: every notable decision or error of an import, as records a person or a program reads."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO


@dataclass(frozen=True)
class Finding:
    #: What happened, e.g. "renamed", "reused", "regenerated", "dropped_orphan", "error".
    kind: str
    model: str
    #: 1-based position of the instance among the export's instances of its model (0: the model as a whole).
    ordinal: int
    old_pk: int | None
    new_pk: int | None
    reason: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Finding:
        return cls(
            kind=str(data["kind"]),
            model=str(data["model"]),
            ordinal=int(data["ordinal"]),  # type: ignore[call-overload]
            old_pk=None if data.get("old_pk") is None else int(data["old_pk"]),  # type: ignore[call-overload]
            new_pk=None if data.get("new_pk") is None else int(data["new_pk"]),  # type: ignore[call-overload]
            reason=str(data["reason"]),
        )

    def __str__(self) -> str:
        where = self.model + (f" #{self.ordinal}" if self.ordinal else "")
        pks = ""
        if self.old_pk is not None:
            pks = f" pk {self.old_pk}" + (f" -> {self.new_pk}" if self.new_pk is not None else "")
        return f"{self.kind}: {where}{pks}: {self.reason}"


class FindingsLog:
    """Collects findings: counts them by kind and streams them to a JSON file as a list, so the file
    is complete (and valid JSON) even when the import fails half way."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self.errors: list[Finding] = []
        self._file: IO[str] | None = None
        self._first = True
        self._lock = threading.Lock()  # the import's lanes add findings at the same time

    def __enter__(self) -> FindingsLog:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
            self._file.write("[")
        return self

    def add(self, finding: Finding) -> None:
        with self._lock:
            self.counts[finding.kind] += 1
            if finding.kind == "error":
                self.errors.append(finding)
            if self._file is not None:
                self._file.write("\n  " if self._first else ",\n  ")
                self._file.write(json.dumps(finding.to_json(), sort_keys=True, ensure_ascii=False))
                self._first = False

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.write("\n]\n" if not self._first else "]\n")
            self._file.close()
            self._file = None
