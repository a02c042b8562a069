"""The primary-key map agrees with a plain dict whatever order export pks come in."""

from __future__ import annotations

import random

from shared.relocation.pkmap import ImportKind, PkSet, PrimaryKeyMap


def test_the_map_agrees_with_a_dict_for_ordered_and_unordered_pks() -> None:
    rng = random.Random(7)
    reference: dict[int, int] = {}
    pkmap = PrimaryKeyMap()
    for step in range(20_000):
        # Mostly increasing pks (as exports write them), with repeats and stragglers mixed in.
        old = step * 3 + rng.randint(0, 2) if rng.random() < 0.7 else rng.randint(-50, 60_000)
        new = rng.randint(1, 10**12)
        reference[old] = new
        pkmap.insert("sentry.user", old, new, ImportKind.INSERTED)
        probe = rng.randint(-60, 61_000)
        assert pkmap.get("sentry.user", probe) == reference.get(probe)
    assert pkmap.count("sentry.user") == len(reference)
    assert dict(pkmap.entries("sentry.user")) == reference
    assert pkmap.get("sentry.email", 1) is None and pkmap.kind("sentry.user", -99) is None


def test_kinds_and_values_follow_the_latest_insert() -> None:
    pkmap = PrimaryKeyMap()
    pkmap.insert("sentry.user", 5, 50, ImportKind.EXISTING, "alice")
    assert pkmap.kind("sentry.user", 5) is ImportKind.EXISTING
    pkmap.insert("sentry.user", 5, 51, ImportKind.INSERTED)
    assert (pkmap.get("sentry.user", 5), pkmap.kind("sentry.user", 5)) == (51, ImportKind.INSERTED)
    assert pkmap.value("sentry.user", 5) == "alice"


def test_the_pk_set_agrees_with_a_set_and_reports_repeats() -> None:
    rng = random.Random(11)
    reference: set[int] = set()
    pks = PkSet()
    for step in range(20_000):
        pk = step * 2 + rng.randint(0, 1) if rng.random() < 0.8 else rng.randint(-50, 50_000)
        assert pks.add(pk) is (pk not in reference)
        reference.add(pk)
        probe = rng.randint(-60, 41_000)
        assert (probe in pks) is (probe in reference)
    assert len(pks) == len(reference)
    assert "1" not in pks
