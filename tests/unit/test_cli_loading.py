"""What ``siloport`` loads before it runs a command: a silo's command loads only its own plug-in, so
that ``siloport import`` starts checking an export before the database layer and gRPC are loaded."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
HEAVY = {"sqlalchemy", "psycopg", "grpc", "alembic", "control", "cryptography"}


def packages_loaded_by(argv: list[str]) -> set[str]:
    script = (
        "import json, sys\n"
        "from shared.cli import build_parser\n"
        f"build_parser(argv={argv!r}).parse_args({argv!r})\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT, timeout=60
    )
    return set(json.loads(done.stdout))


def test_the_import_command_is_parsed_without_the_database_layer_or_grpc() -> None:
    loaded = packages_loaded_by(["-v", "import", "organizations", "export.json", "--no-prompt"])
    assert "region" in loaded
    assert not loaded & HEAVY, loaded & HEAVY


@pytest.mark.parametrize("argv", [["--help"], ["imprt", "organizations", "x.json"]])
def test_help_and_an_unknown_command_list_every_command(argv: list[str]) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "siloport"), *argv],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    listing = done.stdout if argv == ["--help"] else done.stderr
    for command in ("control", "region", "import", "export", "keys", "up", "compare"):
        assert command in listing, listing


def test_a_plain_json_export_is_taken_without_the_archive_code_and_a_gzip_with_it(tmp_path: Path) -> None:
    plain = tmp_path / "export.json"
    plain.write_text('\n  [{"model": "sentry.email", "pk": 1, "fields": {}}]')
    packed = tmp_path / "export.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from shared.cli import build_parser\n"
        "from region.import_cli import _plain_export\n"
        "argv = ['import', 'organizations', sys.argv[1]]\n"
        "args = build_parser(argv=argv).parse_args(argv)\n"
        "path = _plain_export(args, Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[1])\n"
        "print(json.dumps([str(path), path.read_text()[:9], 'cryptography' in sys.modules, "
        "'region.importer.engine' in sys.modules]))\n"
    )

    def run(source: Path) -> list[object]:
        done = subprocess.run(
            [sys.executable, "-c", script, str(source), str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            timeout=60,
        )
        answer: list[object] = json.loads(done.stdout)
        return answer

    assert run(plain) == [str(plain), '\n  [{"mod', False, False]
    path, head, crypto, _engine = run(packed)
    assert path != str(packed) and head == '\n  [{"mod' and crypto is True
