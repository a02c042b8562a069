"""The import's lanes: control's models and the region's are written at the same time, a thread each,
a lane waiting only where one of its models refers to a model of the other lane.

A lane is the set of models one thread writes: ``control`` and ``region`` in the first pass, and
``deferred`` (models written after the global slug step) after them. The check pass keeps each model's
records in a file of its own (``region.importer.spool``), so a lane reads one model after another, each
in file order. It takes its models in the order the export first lists them, except that it takes a
model that is ready (every model it refers to is complete, or is its own and already taken) before one
that is not: the region's teams and projects are written while control still writes the users its
members need.

Before a lane prepares a batch whose model refers to a model of the other lane, it takes the results
of its own batches in flight, then waits until every instance of that model has been written (or left
out). That never deadlocks: the check pass refuses an export in which an instance of a model comes
after the first instance of a model that refers to it, so the unfinished model the export lists first
refers only to complete models; it is ready, and its lane is not waiting.

The global slug step waits for the organizations and the models that refer to them (``BEFORE_SLUG_STEP``:
options, teams, projects): it reserves their slugs through control while the region's lane writes
project keys, options and teams' projects, and control's writes users. The region's members and team
memberships wait for it in turn, as for a model of the other lane (``AFTER_SLUG_STEP``); they refer to
control's users, so they could rarely start sooner anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from region.importer.errors import ImportFailed
from shared.relocation.registry import MODELS, lookup

CONTROL = "control"
REGION = "region"
DEFERRED = "deferred"
#: The lanes of the first pass, written at the same time.
FIRST_PASS = (CONTROL, REGION)
#: The spool file of the models siloport does not know (their records are skipped, with a finding).
UNKNOWN = "unknown"
#: The global slug step, on the board as a model of one instance: it runs on a thread of its own once
#: the organizations are written, while both lanes go on.
SLUG_STEP = "siloport:slug-step"
#: The region's models whose batches queue outbox messages in the organizations' shards
#: (``region.organizations.produce_outbox``): they wait for the slug step, so that its drains of those
#: shards and the import's deliveries never hold up one another.
AFTER_SLUG_STEP = frozenset({"sentry.organizationmember", "sentry.organizationmemberteam"})
ORGANIZATION = "sentry.organization"


def lane_of(model: str) -> str:
    """The lane that writes ``model`` (a model siloport does not know: the region's, which skips it)."""
    spec = lookup(model)
    if spec is None:
        return REGION
    if spec.deferred:
        return DEFERRED
    return spec.silo.value


#: What the slug step waits for: the organizations, and the region's models that refer to them (but
#: wait for the slug step themselves). Where a slug clashes, control has the region rename the
#: organization, and a batch inserting rows that refer to it holds a lock the rename would wait for
#: (on PostgreSQL, two such transactions could even wait for each other).
BEFORE_SLUG_STEP = (
    ORGANIZATION,
    *sorted(
        spec.name
        for spec in MODELS
        if ORGANIZATION in spec.targets and lane_of(spec.name) == REGION and spec.name not in AFTER_SLUG_STEP
    ),
)


def spool_key(model: str) -> str:
    """The spool file that keeps ``model``'s records (a file name: the registry's names are safe)."""
    return model if lookup(model) is not None else UNKNOWN


def lane_models(counts: Mapping[str, int], lane: str) -> list[str]:
    """The spool keys of ``lane``'s models in ``counts`` (in the order the export first lists them)."""
    keys = [spool_key(model) for model in counts if lane_of(model) == lane]
    return list(dict.fromkeys(keys))


class LaneStopped(ImportFailed):
    """Another lane failed, so this one stopped (its own work up to here is written and recorded)."""


class LaneBoard:
    """What the lanes know of each other: how many instances of each model are still to be written."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self._left = dict(counts)
        self._changed = threading.Condition()
        self._stopped = False
        #: The first error a lane stopped the board for (not a LaneStopped), to be the one raised.
        self.cause: BaseException | None = None

    def passed(self, model: str, count: int) -> None:
        """``count`` instances of ``model`` were written or left out."""
        with self._changed:
            self._left[model] = left = self._left.get(model, 0) - count
            if left <= 0:
                self._changed.notify_all()

    def complete(self, models: Iterable[str]) -> bool:
        """Whether every instance of ``models`` has passed."""
        with self._changed:
            return all(self._left.get(m, 0) <= 0 for m in models)

    def wait_for(self, models: Iterable[str]) -> None:
        """Wait until every instance of ``models`` has passed; LaneStopped once another lane failed."""
        wanted = tuple(models)
        with self._changed:
            while not self._stopped and any(self._left.get(m, 0) > 0 for m in wanted):
                self._changed.wait()
            if self._stopped:
                raise LaneStopped("stopped: another lane of the import failed")

    def short(self, models: Iterable[str]) -> list[str]:
        """Those of ``models`` with instances still to pass. Asked by a lane that has read all its
        records, any is an internal fault (the check pass counted more than the lane read): the lane
        fails, which stops the board, so no lane waits on them for ever."""
        with self._changed:
            return [m for m in models if self._left.get(m, 0) > 0]

    def check(self) -> None:
        """LaneStopped once another lane failed."""
        if self._stopped:
            raise LaneStopped("stopped: another lane of the import failed")

    def stop(self, cause: BaseException | None = None) -> None:
        """Stop every lane before its next batch; ``cause``, the first of its kind, is the import's
        error (a lane stopped by another may fail on its own afterwards, from the same outage)."""
        with self._changed:
            if self.cause is None and cause is not None and not isinstance(cause, LaneStopped):
                self.cause = cause
            self._stopped = True
            self._changed.notify_all()
