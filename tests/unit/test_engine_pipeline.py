"""Which batches the import engine lets overlap: two batches may be written at the same time only when
their silo's writer takes two at once (or they go to different silos), the later one's model does not
refer to the earlier one's, and no unique key value is in both, so the outcome cannot depend on which
commits first."""

from __future__ import annotations

from typing import Any

from region.importer.engine import _parts
from region.importer.pipeline import PreparedBatch, may_overlap
from shared.relocation.batch import Batch, BatchOptions, Row
from shared.relocation.reader import Record
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ImportScope

OPTIONS = BatchOptions(import_id="00000000-0000-0000-0000-000000000001", scope=ImportScope.ORGANIZATIONS)


def prepared(model: str, *rows: dict[str, Any], first: int = 1) -> PreparedBatch:
    spec = REGISTRY[model]
    batch = Batch(
        model,
        first,
        tuple(Row(first + i, 100 + first + i, values) for i, values in enumerate(rows)),
        OPTIONS,
    )
    return PreparedBatch(spec, len(rows), batch)


def test_consecutive_user_batches_with_distinct_usernames_overlap() -> None:
    first = prepared("sentry.user", {"username": "alice"}, {"username": "bob"})
    second = prepared("sentry.user", {"username": "carol"}, first=3)
    assert may_overlap(first, second)


def test_a_username_in_both_batches_even_in_another_case_keeps_them_in_order() -> None:
    first = prepared("sentry.user", {"username": "Alice"}, {"username": "bob"})
    second = prepared("sentry.user", {"username": "alice"}, first=3)
    assert not may_overlap(first, second)


def test_a_key_of_several_fields_clashes_only_when_all_match_and_nulls_never_do() -> None:
    first = prepared("sentry.useroption", {"user": 1, "key": "theme", "project_id": None})
    other_user = prepared("sentry.useroption", {"user": 2, "key": "theme", "project_id": None}, first=2)
    assert may_overlap(first, other_user)
    both = prepared("sentry.useremail", {"user": 1, "email": "a@example.com"})
    same = prepared("sentry.useremail", {"user": 1, "email": "a@example.com"}, first=2)
    assert not may_overlap(both, same)


def test_any_one_of_a_models_unique_keys_in_both_batches_keeps_them_in_order() -> None:
    """Members are unique on (organization, user) and on (organization, email): a clash on either is
    enough, and the same values under two different keys are not a clash."""
    member = prepared("sentry.organizationmember", {"organization": 1, "user_id": 1, "email": "a@b.c"})
    same_email = prepared(
        "sentry.organizationmember", {"organization": 1, "user_id": 2, "email": "a@b.c"}, first=2
    )
    assert not may_overlap(member, same_email)
    other_org = prepared(
        "sentry.organizationmember", {"organization": 2, "user_id": 1, "email": "a@b.c"}, first=2
    )
    assert may_overlap(member, other_org)
    email_is_token = prepared(
        "sentry.organizationmember", {"organization": 1, "user_id": 3, "token": "a@b.c"}, first=2
    )
    assert may_overlap(member, email_is_token)


def test_region_batches_overlap_only_where_the_writer_takes_two_at_once() -> None:
    members = prepared("sentry.organizationmember", {"organization": 1, "user_id": 1, "email": None})
    more = prepared("sentry.organizationmember", {"organization": 1, "user_id": 2, "email": None}, first=2)
    assert may_overlap(members, more, concurrent=True)  # PostgreSQL
    assert not may_overlap(members, more, concurrent=False)  # SQLite: one writer at a time
    same = prepared("sentry.organizationmember", {"organization": 1, "user_id": 1, "email": None}, first=2)
    assert not may_overlap(members, same, concurrent=True)


def test_batches_of_different_models_overlap_unless_one_refers_to_the_other() -> None:
    users = prepared("sentry.user", {"username": "alice"})
    emails = prepared("sentry.email", {"email": "b@example.com"})
    user_emails = prepared("sentry.useremail", {"user": 1, "email": "b@example.com"})
    assert may_overlap(users, emails)  # two tables of control, neither refers to the other
    assert may_overlap(emails, user_emails)
    assert not may_overlap(users, user_emails)  # its user pks come from the users' batch
    assert not may_overlap(users, emails, concurrent=False)  # one writer at a time (SQLite)


def test_batches_of_two_silos_overlap_even_with_one_writer_each() -> None:
    organizations = prepared("sentry.organization", {"slug": "acme", "name": "Acme"})
    users = prepared("sentry.user", {"username": "alice"})
    members = prepared("sentry.organizationmember", {"organization": 1, "user_id": 1, "role": "member"})
    assert may_overlap(organizations, users, concurrent=False)
    assert may_overlap(users, organizations, concurrent=False)
    assert not may_overlap(organizations, members)
    assert not may_overlap(users, members)  # members refer to users (in the other silo)


def test_batches_keeping_their_pks_never_overlap() -> None:
    """Kept pks and ids from the sequence could meet in two batches written at once."""
    spec = REGISTRY["sentry.user"]
    rows = (Row(1, 7, {"username": "alice"}, keep_pk=True),)
    kept = PreparedBatch(spec, 1, Batch("sentry.user", 1, rows, OPTIONS))
    other = prepared("sentry.user", {"username": "bob"}, first=2)
    assert not may_overlap(kept, other)
    assert not may_overlap(other, kept)


def test_a_batch_ends_before_the_record_whose_text_would_pass_the_limit() -> None:
    def taken(*sizes: int) -> list[tuple[Record, int]]:
        return [(Record(i, 1, 1, "sentry.user", i, {}, size), i + 1) for i, size in enumerate(sizes)]

    def parts(records: list[tuple[Record, int]], chars: int | None) -> list[list[int]]:
        # a batch size that takes them all: the text alone ends a batch
        return [
            [record.pk for record, _ordinal in part] for part in _parts(iter(records), len(records), chars)
        ]

    assert parts(taken(3, 3, 4), 10) == [[0, 1, 2]]  # exactly the limit
    assert parts(taken(3, 3, 4, 9, 1, 1), 10) == [[0, 1, 2], [3, 4], [5]]
    assert parts(taken(6, 6), 10) == [[0], [1]]  # ends before the record that would pass the limit
    assert parts(taken(1, 12, 1), 10) == [[0], [1], [2]]  # a larger record is a batch of its own
    assert parts(taken(0, 0), 10) == [[0, 1]]  # records of unknown size: the batch size alone decides
    assert parts(taken(6, 6), None) == [[0, 1]]  # no bound (an import begun before there was one)
