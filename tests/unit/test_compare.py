"""Comparing exports: what counts as a difference and what a relocation may legitimately change."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

from shared.relocation.compare import (
    CompareOptions,
    Comparison,
    Explanations,
    ExportContents,
    compare_exports,
    load_export,
    same_shape,
)
from shared.relocation.findings import Finding
from shared.relocation.reader import ExportFormatError
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ImportScope
from tests.importing import FIXTURES

Records = list[dict[str, Any]]


def contents(records: Records, name: str = "export.json") -> ExportContents:
    return load_export(io.StringIO(json.dumps(records)), name)


def compare(
    left: Records,
    right: Records,
    findings: list[Finding] | None = None,
    tolerance: float = 1.0,
) -> Comparison:
    return compare_exports(
        contents(left, "left.json"),
        contents(right, "right.json"),
        CompareOptions(date_tolerance_s=tolerance),
        Explanations(findings or []),
    )


def fixture(name: str = "fresh-install.json") -> Records:
    records: Records = json.loads((FIXTURES / name).read_text())
    return records


def user(pk: int, username: str, **fields: Any) -> dict[str, Any]:
    values = {
        "password": "pbkdf2_sha256$150000$salt$hash=",
        "username": username,
        "name": "Someone",
        "email": "someone@example.com",
        "date_joined": "2023-06-22T22:59:55.488Z",
        "is_staff": False,
        **fields,
    }
    return {"model": "sentry.user", "pk": pk, "fields": values}


def useremail(pk: int, user_pk: int, email: str) -> dict[str, Any]:
    fields = {
        "user": user_pk,
        "email": email,
        "validation_hash": "mCnWesSVvYQcq7qXQ36AZHwosAd6cghE",
        "date_hash_added": "2023-06-22T22:59:55.521Z",
        "is_verified": True,
    }
    return {"model": "sentry.useremail", "pk": pk, "fields": fields}


def remapped(records: Records, offset: int) -> Records:
    """The same data with every pk and every reference moved by ``offset``, each model's instances in
    reverse order: what an import into a database that holds other data gives back."""
    out: Records = []
    for record in records:
        moved = copy.deepcopy(record)
        moved["pk"] += offset
        spec = REGISTRY.get(record["model"])
        for fk in spec.foreign_keys if spec else ():
            if moved["fields"].get(fk.name) is not None and fk.target in {r["model"] for r in records}:
                moved["fields"][fk.name] += offset
        out.append(moved)
    by_model: dict[str, Records] = {}
    for record in out:
        by_model.setdefault(record["model"], []).append(record)
    return [record for group in by_model.values() for record in reversed(group)]


def test_an_export_equals_itself() -> None:
    result = compare(fixture(), fixture())
    assert result.equal, result.differences
    assert result.models["sentry.user"].matched == 2


def test_a_changed_field_is_reported_with_model_pk_and_field() -> None:
    right = fixture()
    changed = next(r for r in right if r["model"] == "sentry.organization")
    changed["fields"]["name"] = "Renamed Org"
    result = compare(fixture(), right)
    assert not result.equal
    [difference] = result.differences
    assert (difference.kind, difference.model, difference.field) == ("field", "sentry.organization", "name")
    assert (difference.left_pk, difference.right_pk, difference.ordinal) == (1, 1, 1)
    assert '"Testing" on the left, "Renamed Org" on the right' in difference.reason
    assert result.models["sentry.organization"].different == 1


def test_a_missing_instance_is_reported_on_its_side() -> None:
    left = fixture()
    right = [r for r in left if not (r["model"] == "sentry.option" and r["pk"] == 3)]
    result = compare(left, right)
    [difference] = result.differences
    assert (difference.kind, difference.model, difference.left_pk, difference.right_pk) == (
        "only_left",
        "sentry.option",
        3,
        None,
    )
    reverse = compare(right, left)
    assert [(d.kind, d.right_pk) for d in reverse.differences] == [("only_right", 3)]


def test_remapped_primary_and_foreign_keys_are_equal() -> None:
    left = fixture()
    result = compare(left, remapped(left, 1000))
    assert result.equal, [str(d) for d in result.differences]
    assert sum(t.matched for t in result.models.values()) == len(left)


def project(pk: int, slug: str) -> dict[str, Any]:
    fields = {"organization": 1, "slug": slug, "name": slug, "date_added": "2023-06-22T22:54:28.913Z"}
    return {"model": "sentry.project", "pk": pk, "fields": fields}


def test_a_reference_to_another_instance_is_a_difference() -> None:
    organization = next(r for r in fixture() if r["model"] == "sentry.organization")
    rule = {"model": "sentry.rule", "pk": 1, "fields": {"project": 1, "label": "l", "data": "{}"}}
    left = [organization, project(1, "one"), project(2, "two"), rule]
    right = remapped(left, 10)
    right[-1]["fields"]["project"] = 12  # the other project
    [difference] = compare(left, right).differences
    assert (difference.kind, difference.model, difference.field) == ("reference", "sentry.rule", "project")
    assert (difference.left_pk, difference.right_pk) == (1, 11)
    assert "points at sentry.project pk 1 on the left (pk 11 on the right), at pk 12 on the right" in (
        difference.reason
    )


def test_instances_whose_unique_keys_differ_are_on_one_side_only() -> None:
    left = [
        user(1, "alice"),
        user(2, "bob"),
        useremail(1, 1, "a@example.com"),
        useremail(2, 2, "b@example.com"),
    ]
    right = copy.deepcopy(left)
    right[2]["fields"]["user"], right[3]["fields"]["user"] = 2, 1
    result = compare(left, right)
    assert sorted((d.kind, d.left_pk, d.right_pk) for d in result.differences) == [
        ("only_left", 1, None),
        ("only_left", 2, None),
        ("only_right", None, 1),
        ("only_right", None, 2),
    ]


def test_a_regenerated_token_of_the_same_shape_is_equal() -> None:
    right = fixture()
    key = next(r for r in right if r["model"] == "sentry.projectkey")
    key["fields"]["public_key"] = "0123456789abcdef0123456789abcdef"
    key["fields"]["secret_key"] = "fedcba9876543210fedcba9876543210"
    assert compare(fixture(), right).equal


@pytest.mark.parametrize(
    "value", ["0123456789abcdef", "0123456789abcdef0123456789abcdef0", "0123456789abcdef0123456789abcde!"]
)
def test_a_token_of_another_shape_is_a_difference_that_never_shows_values(value: str) -> None:
    right = fixture()
    key = next(r for r in right if r["model"] == "sentry.projectkey")
    key["fields"]["secret_key"] = value
    [difference] = compare(fixture(), right).differences
    assert (difference.model, difference.field) == ("sentry.projectkey", "secret_key")
    assert "another shape" in difference.reason
    assert value not in difference.reason and "d4d14d244f8e48788673116ca7646c93" not in difference.reason


def test_shapes() -> None:
    assert same_shape("abc123", "ffff00")
    assert same_shape("aBc-_9", "xyz123")  # both url-safe base64
    assert not same_shape("abc", "abcd")
    assert not same_shape("ab+c", "ab-c")  # base64 and url-safe base64 do not mix
    assert not same_shape("!abc", "aabc")


def test_other_secrets_never_show_their_values() -> None:
    right = fixture()
    changed = next(r for r in right if r["model"] == "sentry.user")
    old = changed["fields"]["password"]
    changed["fields"]["password"] = "pbkdf2_sha256$150000$other$hash="
    [difference] = compare(fixture(), right).differences
    assert difference.field == "password"
    assert old not in difference.reason and "other" not in difference.reason


def test_dates_within_the_tolerance_are_equal() -> None:
    left = [user(1, "alice")]
    right = [user(1, "alice", date_joined="2023-06-22T22:59:56.100Z")]  # 0.612 s later
    assert compare(left, right).equal
    right = [user(1, "alice", date_joined="2023-06-22T23:00:05.488Z")]  # 10 s later
    [difference] = compare(left, right).differences
    assert difference.field == "date_joined" and "10 s apart (tolerance 1 s)" in difference.reason
    assert compare(left, right, tolerance=10).equal


def test_dates_in_other_notations_of_the_same_instant_are_equal() -> None:
    left = fixture("datetime-with-unzeroed-millis.json")
    right = copy.deepcopy(left)
    right[0]["fields"]["last_updated"] = "2023-06-22T00:00:00.000Z"
    assert compare(left, right, tolerance=0).equal


def test_a_rename_the_findings_explain_is_equal_and_an_unexplained_one_is_reported() -> None:
    left = [user(1, "alice"), useremail(1, 1, "alice@example.com")]
    right = [user(7, "alice-x2"), useremail(9, 7, "alice@example.com")]
    unexplained = compare(left, right)
    [difference] = unexplained.differences
    assert (difference.model, difference.left_pk, difference.right_pk, difference.field) == (
        "sentry.user",
        1,
        7,
        "username",
    )
    assert "rename the import's findings do not explain" in difference.reason
    renamed = Finding("renamed", "sentry.user", 1, 1, 7, "username 'alice' is taken; imported as 'alice-x2'")
    explained = compare(left, right, [renamed])
    assert explained.equal
    assert explained.models["sentry.user"].explained == 1
    # A finding about another instance explains nothing.
    other = Finding("renamed", "sentry.user", 1, 1, 8, "username 'alice' is taken; imported as 'alice-x2'")
    assert not compare(left, right, [other]).equal


def test_findings_pair_instances_whose_keys_are_ambiguous() -> None:
    """Two users with one username (Sentry's duplicate fixture): only the findings tell them apart."""
    left = [user(1, "same", name="First"), user(2, "same", name="Second")]
    right = [user(10, "same-ab", name="Second"), user(11, "same", name="First")]
    renamed = Finding("renamed", "sentry.user", 2, 2, 10, "username 'same' is taken; imported as 'same-ab'")
    assert compare(left, right, [renamed]).equal
    assert not compare(left, right).equal


def test_instances_the_import_left_out_are_explained_by_its_findings() -> None:
    left = fixture()
    right = [r for r in left if r["model"] not in ("sentry.relay", "sentry.rule")]
    findings = [
        Finding("skipped_model", "sentry.relay", 0, None, None, "config data is outside the users scope"),
        Finding("dropped_orphan", "sentry.rule", 1, 1, None, "project refers to sentry.project pk 1, ..."),
    ]
    result = compare(left, right, findings)
    assert result.equal, result.differences
    assert result.models["sentry.relay"].explained == 1 and result.models["sentry.rule"].explained == 1
    assert len(compare(left, right).differences) == 2


def test_a_reference_the_import_nulled_is_explained_by_its_findings() -> None:
    left = fixture("org-and-project.json")
    right = copy.deepcopy(left)
    team = next(r for r in right if r["model"] == "sentry.team")
    team["fields"]["actor"] = None
    [difference] = compare(left, right).differences
    assert (difference.kind, difference.field) == ("reference", "actor")
    nulled = Finding(
        "nulled_reference", "sentry.team", 1, team["pk"], None, "actor referred to sentry.actor pk 1, ..."
    )
    assert compare(left, right, [nulled]).equal


def test_a_field_an_export_omits_counts_as_its_default() -> None:
    left = [user(1, "alice")]
    right = [user(1, "alice", is_superuser=False, flags="0", avatar_url=None)]
    assert compare(left, right).equal
    assert not compare(left, [user(1, "alice", is_superuser=True)]).equal


def test_true_is_not_one() -> None:
    left = [{"model": "sentry.option", "pk": 1, "fields": {"key": "k", "value": True}}]
    right = [{"model": "sentry.option", "pk": 1, "fields": {"key": "k", "value": 1}}]
    assert not compare(left, right).equal


def test_unknown_models_are_compared_by_position_and_value() -> None:
    left = [{"model": "sentry.monitor", "pk": 1, "fields": {"name": "a"}}]
    assert compare(left, copy.deepcopy(left)).equal
    right = [{"model": "sentry.monitor", "pk": 5, "fields": {"name": "b"}}]
    [difference] = compare(left, right).differences
    assert (difference.model, difference.field) == ("sentry.monitor", "name")


def test_an_instance_listed_twice_is_bad_input() -> None:
    records = [user(1, "alice"), user(1, "bob")]
    with pytest.raises(
        ExportFormatError, match=r"twice\.json:1:\d+ \(record 1\): sentry.user pk 1 appears twice"
    ):
        contents(records, "twice.json")


def test_findings_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "findings.json"
    finding = Finding("renamed", "sentry.user", 1, 1, 7, "username 'alice' is taken; imported as 'alice-x2'")
    path.write_text(json.dumps([finding.to_json()]))
    with path.open() as stream:
        explanations = Explanations.read(stream, str(path))
    assert explanations.renamed("sentry.user", 1, 7, "alice", "alice-x2")


def test_what_the_imports_scope_resets_is_explained() -> None:
    left = [user(1, "alice", is_superuser=True, is_unclaimed=False), useremail(1, 1, "a@example.com")]
    right = [
        user(1, "alice", is_superuser=False, is_unclaimed=True, password="!unusable"),
        useremail(1, 1, "a@example.com"),
    ]
    right[1]["fields"].update(is_verified=False, date_hash_added="2024-01-01T00:00:00.000Z")
    assert {d.field for d in compare(left, right).differences} == {
        "is_superuser",
        "is_unclaimed",
        "password",
        "is_verified",
        "date_hash_added",
    }
    options = CompareOptions(import_scope=ImportScope.ORGANIZATIONS)
    organizations = compare_exports(contents(left), contents(right), options)
    assert organizations.equal
    assert organizations.models["sentry.user"].explained == 1
    config = compare_exports(contents(left), contents(right), CompareOptions(import_scope=ImportScope.CONFIG))
    assert {d.field for d in config.differences} == {"is_superuser"}  # config keeps admin flags
