"""Helpers for import tests: run ``siloport import`` as a subprocess and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from control.db.models import IMPORT_CHUNKS as CONTROL_CHUNKS
from control.db.models import RELOCATION_TABLES as CONTROL_TABLES
from region.db.models import IMPORT_CHUNKS as REGION_CHUNKS
from region.db.models import RELOCATION_TABLES as REGION_TABLES
from shared.db.engine import make_engine
from tests.helpers import SECRET, Silos

#: Copies of Sentry's export fixtures (tests/fixtures/sentry/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sentry"
SILOPORT = str(Path(sys.executable).parent / "siloport")
TABLES = {**CONTROL_TABLES, **REGION_TABLES}


def run_import(
    silos: Silos | None,
    region_db: str | None,
    scope: str,
    source: Path | str,
    *extra: str,
    cwd: Path,
    stdin: str | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    args = [SILOPORT, "import", scope, str(source), "--no-prompt", *extra]
    if silos is not None:
        args += ["--control-address", silos.control.address, "--name", silos.region_name]
    if region_db is not None:
        args += ["--db", region_db]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILOPORT_")}
    env["SILOPORT_RPC_SECRETS"] = SECRET
    env["SILOPORT_DATA_DIR"] = str(cwd / ".siloport")
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        input=stdin,
    )


@dataclass
class Imported:
    """What an import left in both databases, keyed by the export's pks through the chunk records."""

    control: Engine
    region: Engine
    #: model -> export pk -> (new pk, kind, unique value)
    entries: dict[str, dict[int, tuple[int, str, str | None]]] = field(default_factory=dict)

    @classmethod
    def read(cls, control_url: str, region_url: str, import_id: str) -> Imported:
        state = cls(make_engine(control_url), make_engine(region_url))
        for engine, chunks in ((state.control, CONTROL_CHUNKS), (state.region, REGION_CHUNKS)):
            with engine.connect() as connection:
                rows = connection.execute(
                    select(chunks.c.model, chunks.c.entries).where(chunks.c.import_id == import_id)
                )
                for model, entries in rows:
                    for old, new, kind, value in json.loads(entries):
                        state.entries.setdefault(model, {})[old] = (new, kind, value)
        return state

    def row(self, model: str, new_pk: int) -> dict[str, Any]:
        table = TABLES[model]
        engine = self.control if model in CONTROL_TABLES else self.region
        with engine.connect() as connection:
            found = connection.execute(select(table).where(table.c.id == new_pk)).mappings().one()
        return dict(found)

    def count(self, model: str) -> int:
        table = TABLES[model]
        engine = self.control if model in CONTROL_TABLES else self.region
        with engine.connect() as connection:
            return len(connection.execute(select(table.c.id)).all())

    def close(self) -> None:
        self.control.dispose()
        self.region.dispose()


def import_id_of(result: subprocess.CompletedProcess[str]) -> str:
    for line in result.stdout.splitlines():
        if line.startswith("import id: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no import id printed:\n{result.stdout}\n{result.stderr}")


def load(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(path.read_text())
    return records
