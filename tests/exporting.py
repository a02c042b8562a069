"""Helpers for export tests: run ``siloport export`` / ``siloport compare`` as subprocesses, or the
export engine and the comparison in this process against running silos."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from region.db.exports import RegionRows
from region.exporter.engine import Exporter, ExportSummary
from region.exporter.options import ExportOptions
from region.rpc.export_client import ControlRows
from shared.db.engine import make_engine
from shared.launcher import SiloProcess, free_port
from shared.relocation.compare import (
    CompareOptions,
    Comparison,
    Explanations,
    ExportContents,
    compare_exports,
    load_export,
)
from shared.relocation.spec import ImportScope, Silo
from tests.helpers import SECRET, Silos, rpc, start_control, start_region
from tests.importing import SILOPORT


def cli_env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILOPORT_")}
    env["SILOPORT_RPC_SECRETS"] = SECRET
    env["SILOPORT_DATA_DIR"] = str(cwd / ".siloport")
    return env


def run_export(
    silos: Silos | None,
    region_db: str | None,
    scope: str,
    dest: Path | str,
    *extra: str,
    cwd: Path,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    args = [SILOPORT, "export", scope, str(dest), *extra]
    if silos is not None:
        args += ["--control-address", silos.control.address, "--name", silos.region_name]
    if region_db is not None:
        args += ["--db", region_db]
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=cli_env(cwd), check=False
    )


def run_compare(left: Path, right: Path, *extra: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SILOPORT, "compare", str(left), str(right), *extra],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(cwd),
        check=False,
    )


class _Quiet:
    def exported(self, model: str, count: int) -> None:
        pass


def export_in_process(
    silos: Silos, region_db: str, dest: Path, scope: ImportScope = ImportScope.GLOBAL, **options: object
) -> ExportSummary:
    """What ``siloport export`` writes, made by the engine in this process (region database directly,
    control over gRPC), without a subprocess's start-up time."""
    engine = make_engine(region_db)
    control = ControlRows(silos.control.address, settings=rpc())
    try:
        exporter = Exporter(
            ExportOptions(scope=scope, **options),  # type: ignore[arg-type]
            sources={Silo.REGION: RegionRows(engine), Silo.CONTROL: control},
            progress=_Quiet(),
        )
        with dest.open("w", encoding="utf-8") as out:
            return exporter.run(out)
    finally:
        control.close()
        engine.dispose()


def read_export(path: Path) -> ExportContents:
    with path.open(encoding="utf-8") as stream:
        return load_export(stream, str(path))


def compare_files(
    left: Path, right: Path, import_findings: Path | None = None, import_scope: ImportScope | None = None
) -> Comparison:
    explanations = Explanations()
    if import_findings is not None:
        with import_findings.open(encoding="utf-8") as stream:
            explanations = Explanations.read(stream, str(import_findings))
    options = CompareOptions(import_scope=import_scope)
    return compare_exports(read_export(left), read_export(right), options, explanations)


def records(path: Path) -> list[dict[str, object]]:
    loaded: list[dict[str, object]] = json.loads(path.read_text())
    return loaded


@dataclass
class FreshSilos:
    silos: Silos
    control_db: str
    region_db: str
    workdir: Path


class SiloSupply:
    """A fresh pair of silos on fresh databases for each test that needs its own: the next pair starts
    in the background while a test uses the current one, and used pairs stop in the background."""

    def __init__(self, databases: Callable[[str], str], root: Path, region_name: str = "eu") -> None:
        self._databases, self._root, self._region = databases, root, region_name
        self._numbers = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="silo-supply")
        self._stopping: list[Future[None]] = []
        self._next: Future[FreshSilos] = self._pool.submit(self._start)

    def _start(self) -> FreshSilos:
        workdir = self._root / f"silos-{next(self._numbers)}"
        workdir.mkdir()
        control_db, region_db = self._databases("control"), self._databases("region")
        region_port = free_port()
        control = start_control(control_db, workdir, regions=f"{self._region}=127.0.0.1:{region_port}")
        region: SiloProcess | None = None
        try:
            region = start_region(
                region_db,
                workdir,
                name=self._region,
                control_address=control.address,
                listen=f"127.0.0.1:{region_port}",
            )
            control.wait_healthy()
            region.wait_healthy()
        except BaseException:
            if region is not None:
                region.stop()
            control.stop()
            raise
        return FreshSilos(Silos(control, region, self._region), control_db, region_db, workdir)

    @staticmethod
    def _stop(fresh: FreshSilos) -> None:
        fresh.silos.region.stop()
        fresh.silos.control.stop()

    @contextmanager
    def take(self) -> Iterator[FreshSilos]:
        fresh = self._next.result()
        self._next = self._pool.submit(self._start)
        try:
            yield fresh
        finally:
            self._stopping.append(self._pool.submit(self._stop, fresh))

    def close(self) -> None:
        try:
            self._stop(self._next.result())
        finally:
            for stopping in self._stopping:
                stopping.result()
            self._pool.shutdown()
