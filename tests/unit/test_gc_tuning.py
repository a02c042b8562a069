"""The collector settings of the importer and the servers, checked in fresh interpreters (never in this
test process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared.gc_tuning import BULK_THRESHOLDS, SERVER_THRESHOLDS

_PROBE = """
import gc, json, sqlalchemy
from shared import gc_tuning
before = [list(gc.get_threshold()), gc.get_freeze_count()]
getattr(gc_tuning, {function!r})()
after = [list(gc.get_threshold()), gc.get_freeze_count(), gc.isenabled()]
print(json.dumps({{"before": before, "after": after}}))
"""


def _probe(function: str) -> dict[str, list[object]]:
    code = _PROBE.format(function=function)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    seen: dict[str, list[object]] = json.loads(out)
    return seen


@pytest.mark.parametrize(
    ("function", "thresholds", "freezes"),
    [("tune_for_bulk_work", BULK_THRESHOLDS, True), ("tune_for_server", SERVER_THRESHOLDS, False)],
)
def test_tuning_sets_the_thresholds_and_freezes_only_in_the_importer(
    function: str, thresholds: tuple[int, int, int], freezes: bool
) -> None:
    seen = _probe(function)
    (default, frozen_before), (threshold, frozen, enabled) = seen["before"], seen["after"]
    assert frozen_before == 0 and default != list(thresholds)
    assert threshold == list(thresholds)
    if freezes:
        assert isinstance(frozen, int) and frozen > 10_000  # importing SQLAlchemy alone leaves that many
    else:
        assert frozen == 0
    assert enabled  # cyclic garbage is still collected
