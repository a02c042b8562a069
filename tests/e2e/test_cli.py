"""The ``siloport`` command as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DatabaseFactory
from tests.helpers import SECRET, running_silos

pytestmark = pytest.mark.e2e
#: The installed console script, as a user runs it.
SILOPORT = [str(Path(sys.executable).parent / "siloport")]


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SILOPORT, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_up_once_starts_both_silos_on_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILOPORT_")}
    result = subprocess.run(
        [*SILOPORT, "up", "--once"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^control\s+127\.0\.0\.1:\d+\s+SERVING$", result.stdout, re.M)
    assert re.search(r"^region\s+127\.0\.0\.1:\d+\s+SERVING\s+\(name local\)$", result.stdout, re.M)
    assert "ping     region:local -> control -> region:local" in result.stdout
    data = tmp_path / ".siloport"
    assert {p.name for p in data.iterdir()} >= {"control.sqlite3", "region-local.sqlite3", "rpc-secret"}
    assert (data / "rpc-secret").read_text() not in (data / "logs" / "control.log").read_text()


def test_help_explains_every_command(tmp_path: Path) -> None:
    for args in (
        ["--help"],
        ["control", "serve", "--help"],
        ["region", "serve", "--help"],
        ["region", "ping", "--help"],
        ["control", "migrate", "--help"],
        ["up", "--help"],
    ):
        result = run(args, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "usage: siloport" in result.stdout
    assert "SILOPORT_REGION_ADDRESSES" in run(["control", "serve", "--help"], tmp_path).stdout
    assert "SILOPORT_CONTROL_ADDRESS" in run(["region", "serve", "--help"], tmp_path).stdout


def test_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    result = run(["control", "serve", "--region-addresses", "eu"], tmp_path)
    assert result.returncode == 2
    assert "siloport: error: SILOPORT_REGION_ADDRESSES: expected name=host:port, got 'eu'" in result.stderr
    result = run(["region", "serve", "--listen", "nowhere"], tmp_path)
    assert result.returncode == 2 and "--listen: expected HOST:PORT" in result.stderr
    result = run(["region", "serve", "--name", "Bad Name"], tmp_path, env={"SILOPORT_RPC_SECRETS": SECRET})
    assert result.returncode == 2 and "region name 'Bad Name'" in result.stderr
    result = run(["control", "migrate", "--db", "mysql://x/y"], tmp_path)
    assert result.returncode == 2 and "unsupported database 'mysql'" in result.stderr


def test_migrate_and_ping_commands(make_database: DatabaseFactory, tmp_path: Path) -> None:
    control_db, region_db = make_database("control"), make_database("region")
    for silo, url in (("control", control_db), ("region", region_db)):
        result = run([silo, "migrate", "--db", url], tmp_path)
        assert result.returncode == 0, result.stderr
        assert re.search(rf"^{silo} database .*: empty -> [cr]\d{{4}}$", result.stdout, re.M)
        assert "password" not in result.stdout
    with running_silos(
        control_db, region_db, tmp_path, control_extra=["--no-migrate"], region_extra=["--no-migrate"]
    ) as silos:
        result = run(["region", "ping", silos.region.address, "--rpc-secrets", SECRET], tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "region:eu -> control -> region:eu"
        result = run(
            ["region", "ping", silos.region.address, "--rpc-secrets", "wrong-secret-0123456789"], tmp_path
        )
        assert result.returncode == 2
        assert "UNAUTHENTICATED" in result.stderr
