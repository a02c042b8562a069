"""``siloport export``'s options and its destination: complete or absent, never partial."""

from __future__ import annotations

from pathlib import Path

import pytest

from region.export_cli import _destination
from shared.cli import CliError, build_parser, main


def test_filters_go_with_their_scope(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "organizations", "-", "--filter-usernames", "a"]) == 2
    assert "--filter-usernames goes with 'export users'" in capsys.readouterr().err
    assert main(["export", "users", "-", "--filter-org-slugs", "a"]) == 2
    assert "--filter-org-slugs goes with 'export organizations'" in capsys.readouterr().err
    assert main(["export", "global", "-", "--page-size", "0"]) == 2


def test_the_export_command_is_registered() -> None:
    args = build_parser().parse_args(["export", "global", "out.json", "--encrypt-with", "key.pem"])
    assert (args.scope, args.dest, args.encrypt_with) == ("global", "out.json", "key.pem")


def test_a_destination_appears_only_when_complete(tmp_path: Path) -> None:
    dest = tmp_path / "export.json"
    with _destination(str(dest)) as (work, target):
        (work / "export.json").write_text("[]")
        assert not dest.exists()
        (work / "export.json").replace(target)
    assert dest.read_text() == "[]"
    assert [p.name for p in tmp_path.iterdir()] == ["export.json"]


def test_a_failure_leaves_no_destination_and_no_temporary_files(tmp_path: Path) -> None:
    dest, kept = tmp_path / "new.json", tmp_path / "kept.json"
    kept.write_text("earlier")
    for path in (dest, kept):
        with pytest.raises(RuntimeError), _destination(str(path)) as (work, _target):
            (work / "export.json").write_text("[\n  {")
            raise RuntimeError("control went away half way")
    assert not dest.exists()
    assert kept.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.json"]


def test_a_destination_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="no such directory"), _destination(str(tmp_path / "no" / "x.json")):
        pass
    with pytest.raises(CliError, match="is a directory"), _destination(str(tmp_path)):
        pass
