"""The check pass in two processes (a large export's halves) gives what one pass gives: the same result,
or the same error at the same place, whatever is in either half."""

from __future__ import annotations

import codecs
import json
import multiprocessing
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.generate import generate
from region.importer import scan as scan_module
from region.importer.errors import NotAnExport
from region.importer.options import ImportOptions
from region.importer.scan import Scan, scan_export, scan_file
from shared.relocation.reader import ExportFormatError
from shared.relocation.spec import ImportScope

OPTIONS = ImportOptions(scope=ImportScope.ORGANIZATIONS, import_id=str(uuid.uuid4()))


def records(orgs: int = 12) -> list[dict[str, Any]]:
    found = list(generate(orgs=orgs, members=3, teams=2, projects=2))
    for record in found:
        if record["model"] == "sentry.organization":  # text beyond ASCII moves characters off bytes
            record["fields"]["name"] = f"Organisation Ünïcødé {record['pk']} 組織"
    return found


def write(path: Path, items: list[dict[str, Any]], *, bom: bool = False, indent: int | None = 2) -> Path:
    text = json.dumps(items, indent=indent, ensure_ascii=False)
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode())
    return path


def sequential(path: Path) -> Scan | Exception:
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            return scan_export(stream, path.name, OPTIONS)
    except (ExportFormatError, UnicodeDecodeError) as exc:
        return exc


def split(path: Path) -> Scan | Exception:
    try:
        return scan_file(path, path.name, OPTIONS, split_from=0)
    except (ExportFormatError, NotAnExport) as exc:
        return exc


def same(path: Path) -> None:
    one, two = sequential(path), split(path)
    if isinstance(one, Exception):
        assert isinstance(two, Exception), two
        if isinstance(one, UnicodeDecodeError):
            assert isinstance(two, NotAnExport) and one.reason in str(two)
        else:
            assert str(two) == str(one)
    else:
        assert two == one


@pytest.mark.parametrize(("bom", "indent"), [(False, 2), (True, 2), (False, None), (True, 4)])
def test_two_halves_give_the_result_of_one_pass(tmp_path: Path, bom: bool, indent: int | None) -> None:
    path = write(tmp_path / "export.json", records(), bom=bom, indent=indent)
    assert scan_module._split_point(path, 3 if bom else 0, path.stat().st_size - (3 if bom else 0))
    same(path)


def joined_parts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The instances of each part the first process takes from the forked one (filled as they come)."""
    joined: list[int] = []
    original = scan_module._Checker.joins

    def spy(self: scan_module._Checker, tail: scan_module._Tail) -> bool:
        joined.append(tail.total)
        return original(self, tail)

    monkeypatch.setattr(scan_module._Checker, "joins", spy)
    return joined


def test_the_split_happens_and_the_second_half_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "export.json", records())
    joined = joined_parts(monkeypatch)
    result = split(path)
    assert isinstance(result, Scan) and result.records == len(records())
    assert len(joined) == 1 and 0 < joined[0] < result.records


def error_in_second_half(items: list[dict[str, Any]], change: str) -> list[dict[str, Any]]:
    late = len(items) * 3 // 4
    if change == "bad value":
        items[late]["fields"]["date_added"] = "not a date"
    elif change == "duplicate pk":  # the same pk in both halves
        first = next(r for r in items if r["model"] == items[late]["model"])
        items[late]["pk"] = first["pk"]
    elif change == "order":  # a user after the organizations that refer to users
        items.insert(late, {**items[0], "pk": 999_999})
    elif change == "duplicate in second half":
        items[late + 1]["pk"] = items[late]["pk"]
        items[late + 1]["model"] = items[late]["model"]
    return items


@pytest.mark.parametrize("change", ["bad value", "duplicate pk", "order", "duplicate in second half"])
def test_an_error_in_the_second_half_is_the_error_of_one_pass(tmp_path: Path, change: str) -> None:
    path = write(tmp_path / "export.json", error_in_second_half(records(), change))
    assert isinstance(sequential(path), ExportFormatError)
    same(path)


def test_an_error_in_the_first_half_is_the_error_of_one_pass(tmp_path: Path) -> None:
    items = records()
    items[len(items) // 5]["fields"]["unknown_field"] = 1
    path = write(tmp_path / "export.json", items)
    assert isinstance(sequential(path), ExportFormatError)
    same(path)


def test_bytes_that_are_not_utf8_in_the_second_half_are_named_as_in_one_pass(tmp_path: Path) -> None:
    path = write(tmp_path / "export.json", records())
    data = bytearray(path.read_bytes())
    at = data.index(b'"sentry.', len(data) * 3 // 4)
    data[at + 1] = 0xFF
    path.write_bytes(bytes(data))
    same(path)


def test_a_boundary_that_is_not_one_is_noticed_and_one_pass_goes_on(tmp_path: Path) -> None:
    """A JSON value that holds a list of objects looks like the end of one record and the start of the
    next to the search for a boundary: the first process never lands on it, so it reads the rest."""
    items = records()
    option = next(r for r in items[len(items) // 2 :] if r["model"].endswith("option"))
    option["fields"]["value"] = [{"x": 1}, {"pk": 2, "fields": {}}]
    path = write(tmp_path / "export.json", items, indent=None)
    text = path.read_bytes()
    found = scan_module._BOUNDARY.search(text, text.index(b'"value": [{"x": 1}'))
    assert found is not None and text[found.start(1) :].startswith(b'{"pk": 2, "fields": {}}]')
    offset = found.start(1)
    where = scan_module._position_at(path, 0, offset)
    assert where is not None
    split = scan_module._Split(offset, where[1], where[0])
    started = scan_module._start_half(path, 0, split, path.name, OPTIONS)
    result = scan_module._scan_halves(path, 0, split, source=path.name, options=OPTIONS, started=started)
    assert result == sequential(path)


def test_a_second_half_that_fails_leaves_the_first_process_to_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: scan_module._Checker, spooled: bool) -> scan_module._Tail:
        raise RuntimeError("the other process could not finish")

    monkeypatch.setattr(scan_module._Checker, "tail", broken)  # the forked process inherits it
    path = write(tmp_path / "export.json", records())
    assert split(path) == sequential(path)


def test_small_exports_and_strict_or_filtered_imports_are_checked_in_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_split(*args: object) -> None:
        raise AssertionError("split")

    monkeypatch.setattr(scan_module, "_scan_halves", no_split)
    path = write(tmp_path / "export.json", records(2))
    scan_file(path, path.name, OPTIONS)  # far below SPLIT_FROM_BYTES
    for options in (
        ImportOptions(scope=ImportScope.ORGANIZATIONS, import_id=str(uuid.uuid4()), strict=True),
        ImportOptions(
            scope=ImportScope.ORGANIZATIONS, import_id=str(uuid.uuid4()), filter_org_slugs=frozenset({"x"})
        ),
    ):
        scan_file(path, path.name, options, split_from=0)


def test_without_a_second_process_one_pass_checks_it_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork(*args: object, **kwargs: object) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(scan_module, "_start_half", no_fork)
    path = write(tmp_path / "export.json", records())
    assert split(path) == sequential(path)


def test_no_fork_while_threads_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork(*args: object, **kwargs: object) -> None:
        raise AssertionError("forked while a thread ran")

    monkeypatch.setattr(scan_module, "_start_half", no_fork)
    path = write(tmp_path / "export.json", records())
    stop = threading.Event()
    running = threading.Thread(target=stop.wait)
    running.start()
    try:
        assert split(path) == sequential(path)
    finally:
        stop.set()
        running.join()


def test_a_second_half_that_hangs_is_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def hangs(self: scan_module._Checker) -> scan_module._Tail:
        time.sleep(60)
        raise AssertionError("not reached")

    monkeypatch.setattr(scan_module._Checker, "tail", hangs)  # the forked process inherits it
    monkeypatch.setattr(scan_module, "TAIL_GRACE_S", 0.5)
    path = write(tmp_path / "export.json", records())
    started = time.monotonic()
    assert split(path) == sequential(path)
    assert time.monotonic() - started < 20


def test_the_first_process_takes_less_while_busy_with_something_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``meanwhile`` runs once, while the forked process checks its part, and that part is larger by what
    the first process could have checked in that time: the result is still the one of one pass."""
    path = write(tmp_path / "export.json", records())
    joined = joined_parts(monkeypatch)
    children_during: list[int] = []

    def meanwhile() -> None:
        children_during.append(len(multiprocessing.active_children()))

    size = path.stat().st_size
    result = scan_file(path, path.name, OPTIONS, split_from=0, meanwhile=meanwhile, meanwhile_bytes=size // 2)
    assert result == sequential(path)
    assert children_during == [1]  # the other part was being checked
    assert isinstance(result, Scan) and len(joined) == 1
    assert joined[0] > result.records * 0.6  # about three quarters (a quarter here, split at a record)
    # Checked in one pass (a small export), it is called once too, before the pass.
    children_during.clear()
    assert scan_file(path, path.name, OPTIONS, meanwhile=meanwhile, meanwhile_bytes=size // 2) == result
    assert children_during == [0]


def test_the_first_processs_share() -> None:
    assert scan_module._own_share(1000, 0) == 0.5
    assert scan_module._own_share(1000, 400) == 0.3
    assert scan_module._own_share(1000, 1000) == scan_module.MIN_OWN_SHARE
    assert scan_module._own_share(1000, 5000) == scan_module.MIN_OWN_SHARE
