"""The import command as an operator meets it: the bundled example on the embedded default, progress,
the summary, the confirmation prompt, --help."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import time
from pathlib import Path

import pytest

from bench.generate import generate, write_export
from region.importer.options import ImportOptions
from region.importer.scan import SPLIT_FROM_BYTES, scan_export
from shared.relocation.reader import ExportFormatError
from shared.relocation.spec import ImportScope
from tests.importing import SILOPORT

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example-export.json"


def clean_env() -> dict[str, str]:
    """The environment without any SILOPORT_ setting: the embedded default."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SILOPORT_")}


def siloport(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``siloport ARGS`` in ``cwd`` on the embedded default, its output captured."""
    return subprocess.run(
        [SILOPORT, *args], cwd=cwd, capture_output=True, text=True, timeout=180, env=clean_env(), check=False
    )


def test_example_import_on_the_embedded_default_ends_with_the_summary(tmp_path: Path) -> None:
    result = siloport(tmp_path, "import", "organizations", str(EXAMPLE), "--no-prompt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^import id: [0-9a-f-]{36}$", result.stdout, re.M)
    assert re.search(r"^sentry\.organization\s+3\s+0\s+0\s+0$", result.stdout, re.M)
    assert re.search(r"^sentry\.user\s+9\s+0\s+0\s+0$", result.stdout, re.M)
    for slug in ("acme", "globex", "initech"):
        assert f"  {slug} -> {slug}\n" in result.stdout
    # Progress, one line per model when not on a terminal.
    assert re.search(r"sentry\.organizationmember\s+9/9\s+100%", result.stderr)
    assert {p.name for p in (tmp_path / ".siloport").iterdir()} >= {"control.sqlite3", "region-local.sqlite3"}
    # The local silos were stopped.
    again = siloport(tmp_path, "import", "organizations", str(EXAMPLE), "--no-prompt", "--silent")
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""


def test_the_prompt_asks_before_writing(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [SILOPORT, "import", "organizations", str(EXAMPLE)],
        cwd=tmp_path,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=clean_env(),
    )
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 60
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(primary, 1024)
        except OSError:
            break
    assert b"Import 93 instances of 14 models" in seen and b"(organizations scope)" in seen
    os.write(primary, b"n\n")
    assert process.wait(timeout=60) == 1
    while True:
        try:
            chunk = os.read(primary, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert b"import cancelled; nothing was written" in seen
    assert not (tmp_path / ".siloport" / "region-local.sqlite3").exists()


def test_import_help_explains_scopes_flags_and_exit_codes(tmp_path: Path) -> None:
    result = siloport(tmp_path, "import", "--help")
    assert result.returncode == 0
    for text in (
        "--filter-usernames",
        "--filter-org-slugs",
        "--merge-users",
        "--overwrite-configs",
        "--findings-file",
        "--no-prompt",
        "--silent",
        "--import-uuid",
        "--strict",
        "organizations",
        "exit codes",
        "resumable",
    ):
        assert text in result.stdout, text


def test_flags_that_do_not_fit_the_scope_are_refused(tmp_path: Path) -> None:
    result = siloport(tmp_path, "import", "users", str(EXAMPLE), "--filter-org-slugs", "acme")
    assert result.returncode == 2
    assert "--filter-org-slugs goes with 'import organizations'" in result.stderr
    result = siloport(tmp_path, "import", "users", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "missing.json: no such file" in result.stderr


def test_a_large_export_is_checked_as_one_pass_would_by_the_command(tmp_path: Path) -> None:
    """An export above SPLIT_FROM_BYTES, checked in two processes: a bad record in its second half stops
    the command with the error and position one pass gives, before anything is written."""
    records = list(generate(orgs=300, members=1, teams=1, projects=1))
    for record in records:
        if record["model"] == "sentry.organizationoption":  # large values: few records, many bytes
            record["fields"]["value"] = "x" * (SPLIT_FROM_BYTES // 250)
    # The options hold most of the bytes; the projects come after them, past the middle of the file.
    late = max(i for i, r in enumerate(records) if r["model"] == "sentry.project")
    records[late]["fields"]["date_added"] = "not a date"
    source = write_export(tmp_path / "large.json", records)
    assert source.stat().st_size > SPLIT_FROM_BYTES
    with pytest.raises(ExportFormatError) as one_pass, source.open() as stream:
        scan_export(stream, str(source), ImportOptions(scope=ImportScope.ORGANIZATIONS, import_id="x"))
    result = siloport(tmp_path, "import", "organizations", str(source), "--no-prompt")
    assert result.returncode == 3, result.stderr
    assert str(one_pass.value) in result.stderr
    assert "field 'date_added'" in str(one_pass.value)
    assert not (tmp_path / ".siloport").exists()  # stopped at the check: no silo was started
