"""The check pass keeps the records it checked, and the import pass reads the same records back from
them as from the export: in one pass, in two processes, when the halves do not join, and not at all
(without failing the check) when a spool file cannot be written."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from region.importer import scan as scan_module
from region.importer import spool as spool_module
from region.importer.options import ImportOptions
from region.importer.scan import Scan, scan_file
from region.importer.spool import CHUNK, read_spool
from shared.relocation.reader import Record, read_records
from shared.relocation.spec import ImportScope
from tests.unit.test_scan_split import records, write

OPTIONS = ImportOptions(scope=ImportScope.ORGANIZATIONS, import_id=str(uuid.uuid4()))


def from_export(path: Path) -> list[Record]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return list(read_records(stream, path.name))


def spooled(scan: Scan) -> list[Record]:
    assert scan.spool is not None
    return list(read_spool(scan.spool))


def sized(records: list[Record]) -> list[tuple[Record, int]]:
    """Records with their text's size, which their equality leaves out (batches end by it)."""
    assert all(record.size > 0 for record in records)
    return [(record, record.size) for record in records]


@pytest.fixture
def export(tmp_path: Path) -> Path:
    # More than two chunks in all, so that each half writes several, and text beyond ASCII.
    path = write(tmp_path / "export.json", records(orgs=80), bom=True)
    assert len(from_export(path)) > 2 * CHUNK
    return path


def test_one_pass_keeps_every_record_with_its_position(export: Path, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    scan = scan_file(export, export.name, OPTIONS, spool_dir=spool_dir)
    assert scan.spool is not None and len(scan.spool) == 1
    assert sized(spooled(scan)) == sized(from_export(export))
    assert scan.records == len(from_export(export))


def test_two_processes_keep_a_part_each_numbered_as_in_the_file(export: Path, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    scan = scan_file(export, export.name, OPTIONS, split_from=0, spool_dir=spool_dir)
    assert scan.spool is not None and len(scan.spool) == 2
    assert scan.spool[1].index_offset > 0
    assert sized(spooled(scan)) == sized(from_export(export))
    # Each model's records are a file of their own in each part, read back alone in file order.
    every = from_export(export)
    for model in scan.counts:
        assert list(read_spool(scan.spool, model)) == [r for r in every if r.model == model]
    without = scan_file(export, export.name, OPTIONS, split_from=0)
    assert without.spool is None
    assert (without.records, without.counts, without.digest) == (scan.records, scan.counts, scan.digest)


def test_when_the_halves_do_not_join_the_first_process_keeps_them_all(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: scan_module._Checker, spooled: bool) -> scan_module._Tail:
        raise RuntimeError("the other process could not finish")

    monkeypatch.setattr(scan_module._Checker, "tail", broken)  # the forked process inherits it
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    scan = scan_file(export, export.name, OPTIONS, split_from=0, spool_dir=spool_dir)
    assert scan.spool is not None and len(scan.spool) == 1
    assert sized(spooled(scan)) == sized(from_export(export))


def test_a_spool_that_cannot_be_written_leaves_the_import_to_read_the_export(
    export: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-directory"
    assert scan_file(export, export.name, OPTIONS, spool_dir=missing).spool is None
    assert scan_file(export, export.name, OPTIONS, split_from=0, spool_dir=missing).spool is None
    # Only the second process's file cannot be written: the first half alone is no spool.
    spool_dir = tmp_path / "spool"
    (spool_dir / "second.spool").mkdir(parents=True)
    scan = scan_file(export, export.name, OPTIONS, split_from=0, spool_dir=spool_dir)
    assert scan.spool is None
    assert scan.records == len(from_export(export))


def test_large_records_are_kept_in_small_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk ends once its records' text reaches CHUNK_BYTES, so large records do not pile up a
    thousand at a time in either pass."""
    monkeypatch.setattr(spool_module, "CHUNK_BYTES", 64 << 10)
    big = [dict(r) for r in records(orgs=4)]
    for record in big:
        if record["model"] == "sentry.organizationoption":
            record["fields"] = {**record["fields"], "value": "x" * (256 << 10)}
    path = write(tmp_path / "export.json", big)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    scan = scan_file(path, path.name, OPTIONS, spool_dir=spool_dir)
    assert spooled(scan) == from_export(path)
    sizes = []
    with (spool_dir / "checked.spool" / "sentry.organizationoption").open("rb") as spooled_file:
        while header := spooled_file.read(8):
            length = int.from_bytes(header, "little")
            sizes.append(length)
            spooled_file.seek(length, 1)
    # A chunk ends with the record that takes it past the limit: one big record at most in each.
    assert len(sizes) >= 4 and max(sizes) < (256 << 10) + 2 * (64 << 10)


def test_a_write_that_fails_removes_the_partial_file(tmp_path: Path) -> None:
    writer = spool_module.SpoolWriter(tmp_path / "part.spool")
    assert (tmp_path / "part.spool").exists()
    writer._fail(OSError(28, "No space left on device"))
    assert writer.failed and not (tmp_path / "part.spool").exists()
    assert list(writer.passing(iter([]))) == []
    assert writer.close() is False
