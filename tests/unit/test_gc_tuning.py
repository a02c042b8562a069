"""The bulk processes' collector settings, checked in a fresh interpreter (not this test process)."""

from __future__ import annotations

import json
import subprocess
import sys

from shared.gc_tuning import BULK_THRESHOLDS

_PROBE = """
import gc, json, sqlalchemy
from shared.gc_tuning import tune_for_bulk_work
before = [gc.get_threshold(), gc.get_freeze_count()]
tune_for_bulk_work()
print(json.dumps({"before": before, "after": [gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()]}))
"""


def test_tuning_freezes_start_up_objects_and_raises_the_thresholds() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    seen = json.loads(out)
    assert seen["before"] == [[700, 10, 10], 0]
    threshold, frozen, enabled = seen["after"]
    assert tuple(threshold) == BULK_THRESHOLDS
    assert frozen > 10_000  # importing SQLAlchemy alone leaves tens of thousands of objects
    assert enabled  # cyclic garbage is still collected
