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


def test_dense_pks_are_kept_as_a_few_runs_and_read_back_exactly() -> None:
    pkmap = PrimaryKeyMap()
    reference: dict[int, int] = {}
    # Two batches of consecutive export pks whose new pks are consecutive within each batch.
    for old, new in [
        *zip(range(1, 1001), range(501, 1501), strict=True),
        *zip(range(1001, 2001), range(9001, 10001), strict=True),
    ]:
        pkmap.insert("sentry.user", old, new, ImportKind.INSERTED)
        reference[old] = new
    column = pkmap._pks["sentry.user"]
    assert column.runs == 2
    # Mapping a pk inside a run again to another pk, and to the same pk, keeps every answer exact.
    pkmap.insert("sentry.user", 500, 7, ImportKind.INSERTED)
    pkmap.insert("sentry.user", 501, 1001, ImportKind.INSERTED)
    reference[500] = 7
    assert column.runs == 2
    assert [pkmap.get("sentry.user", pk) for pk in (0, 1, 499, 500, 501, 1000, 1001, 2000, 2001)] == [
        None,
        501,
        999,
        7,
        1001,
        1500,
        9001,
        10000,
        None,
    ]
    assert pkmap.count("sentry.user") == len(reference) == 2000
    assert sorted(pkmap.entries("sentry.user")) == sorted(reference.items())


def test_dense_pk_sets_are_a_few_runs() -> None:
    pks = PkSet()
    assert all(pks.add(pk) for pk in range(1, 100_001))
    assert all(pks.add(pk) for pk in range(200_000, 200_010))
    assert pks.runs == 2 and len(pks) == 100_010
    assert not pks.add(50_000) and not pks.add(200_009)
    assert 1 in pks and 100_000 in pks and 100_001 not in pks and 199_999 not in pks
    assert pks.add(150_000) and 150_000 in pks and len(pks) == 100_011 and pks.runs == 2


def test_two_pk_sets_are_disjoint_exactly_when_python_sets_are() -> None:
    rng = random.Random(11)
    for _ in range(400):
        left, right = PkSet(), PkSet()
        plain_left: set[int] = set()
        plain_right: set[int] = set()
        for pks, plain, base in ((left, plain_left, 0), (right, plain_right, rng.choice([0, 30, 60]))):
            pk = base
            for _step in range(rng.randint(0, 25)):
                pk += rng.choice([1, 1, 1, 2, 5])
                if rng.random() < 0.1:  # out of order: kept beside the runs
                    pk_out = rng.randint(0, 90)
                    pks.add(pk_out)
                    plain.add(pk_out)
                pks.add(pk)
                plain.add(pk)
        assert left.isdisjoint(right) == plain_left.isdisjoint(plain_right), (plain_left, plain_right)
        assert right.isdisjoint(left) == plain_left.isdisjoint(plain_right)


def test_a_new_value_leaves_the_pk_and_kind_as_they_were() -> None:
    """The slug step records an organization's final slug while control's lane may read its pk."""
    pkmap = PrimaryKeyMap()
    pkmap.insert("sentry.organization", 5, 50, ImportKind.EXISTING, "acme")
    pkmap.set_value("sentry.organization", 5, "acme-2")
    assert pkmap.value("sentry.organization", 5) == "acme-2"
    assert pkmap.get("sentry.organization", 5) == 50
    assert pkmap.kind("sentry.organization", 5) is ImportKind.EXISTING
    assert pkmap.entries("sentry.organization") == [(5, 50)]
