"""The export engine over in-memory row sources: order, format, paging, scopes and filters."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pytest

from region.exporter.engine import Exporter
from region.exporter.errors import SourceRefused
from region.exporter.options import ExportOptions
from region.importer.scan import DEPENDENTS
from shared.relocation.compare import compare_exports, load_export
from shared.relocation.order import EXPORT_ORDER, POSITION
from shared.relocation.pages import FieldFilter, Instance, Page
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ImportScope, ModelSpec, Silo
from tests.exports import generate
from tests.importing import FIXTURES

Records = list[dict[str, Any]]


class MemoryRows:
    """A silo's models in memory, paged like the database reader (filters applied by the source)."""

    def __init__(self, records: Records, silo: Silo) -> None:
        self.instances: dict[str, list[Instance]] = {}
        for record in records:
            spec = REGISTRY.get(record["model"])
            if spec is not None and spec.silo is silo:
                self.instances.setdefault(spec.name, []).append(
                    Instance(record["pk"], dict(record["fields"]))
                )
        for instances in self.instances.values():
            instances.sort(key=lambda i: i.pk)
        self.calls: list[tuple[str, int, tuple[FieldFilter, ...]]] = []

    def page(self, spec: ModelSpec, *, after_pk: int, limit: int, filters: Sequence[FieldFilter]) -> Page:
        self.calls.append((spec.name, after_pk, tuple(filters)))
        found = [
            i
            for i in self.instances.get(spec.name, [])
            if i.pk > after_pk and all(f.admits(i.pk, i.fields) for f in filters)
        ]
        page = found[:limit]
        return Page(tuple(page), page[-1].pk if page else after_pk, done=len(found) <= limit)


class Progress:
    def __init__(self) -> None:
        self.models: dict[str, int] = {}

    def exported(self, model: str, count: int) -> None:
        self.models[model] = count


def run(
    records: Records, scope: ImportScope, **options: Any
) -> tuple[Records, Progress, dict[Silo, MemoryRows]]:
    sources = {silo: MemoryRows(records, silo) for silo in Silo}
    progress = Progress()
    out = io.StringIO()
    Exporter(ExportOptions(scope=scope, **options), sources=sources, progress=progress).run(out)
    exported: Records = json.loads(out.getvalue())
    return exported, progress, sources


def fixture(name: str = "fresh-install.json") -> Records:
    records: Records = json.loads((FIXTURES / name).read_text())
    return records


def models(records: Records) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for record in records:
        found.setdefault(record["model"], []).append(record["pk"])
    return found


def test_a_global_export_holds_everything_in_dependency_order_in_sentrys_format() -> None:
    original = fixture()
    exported, progress, _ = run(original, ImportScope.GLOBAL)
    positions = [POSITION[r["model"]] for r in exported]
    assert positions == sorted(positions)
    for model, pks in models(exported).items():
        assert pks == sorted(pks), model
    left = load_export(io.StringIO(json.dumps(original)), "original")
    right = load_export(io.StringIO(json.dumps(exported)), "exported")
    assert compare_exports(left, right).equal
    assert list(progress.models) == [spec.name for spec in EXPORT_ORDER]


def test_the_output_is_written_like_sentrys() -> None:
    sources = {silo: MemoryRows(fixture("single-option.json"), silo) for silo in Silo}
    out = io.StringIO()
    Exporter(ExportOptions(scope=ImportScope.GLOBAL), sources=sources, progress=Progress()).run(out)
    assert out.getvalue().startswith('[\n  {\n    "model": "sentry.option",\n    "pk": 1,\n    "fields": {\n')
    assert out.getvalue().endswith("\n    }\n  }\n]")
    empty = io.StringIO()
    Exporter(ExportOptions(scope=ImportScope.USERS), sources=sources, progress=Progress()).run(empty)
    assert empty.getvalue() == "[]"


def test_pages_of_one_give_the_same_export() -> None:
    records = list(generate(orgs=3, members=3))
    whole, _, _ = run(records, ImportScope.GLOBAL)
    paged, _, sources = run(records, ImportScope.GLOBAL, page_size=1)
    assert paged == whole
    users = [call for call in sources[Silo.CONTROL].calls if call[0] == "sentry.user"]
    assert [after for _, after, _ in users] == [-(2**63), 1, 2, 3, 4, 5, 6, 7, 8]


def test_the_users_scope_holds_user_models_only() -> None:
    exported, _, _ = run(fixture("user-with-maximum-privileges.json"), ImportScope.USERS)
    assert {r["model"] for r in exported} == {
        name for name, spec in REGISTRY.items() if spec.scope.value == "user"
    } & {r["model"] for r in fixture("user-with-maximum-privileges.json")}


def test_a_username_filter_keeps_the_user_and_what_hangs_off_it() -> None:
    records = list(generate(orgs=2, members=2))
    exported, _, sources = run(
        records, ImportScope.USERS, filter_usernames=frozenset({"gen-user3@example.com"})
    )
    assert models(exported) == {
        "sentry.user": [3],
        "sentry.useroption": [3],
        "sentry.email": [3],
        "sentry.useremail": [3],
    }
    sent = [filters for model, _, filters in sources[Silo.CONTROL].calls if model == "sentry.user"]
    assert sent == [(FieldFilter("username", frozenset({"gen-user3@example.com"})),)]


def test_references_to_what_the_export_does_not_hold_drop_the_instance() -> None:
    records = fixture("user-with-maximum-privileges.json")
    option = next(r for r in records if r["model"] == "sentry.useroption")
    option["fields"]["organization_id"] = 1  # organizations are outside the users scope
    exported, _, _ = run(records, ImportScope.USERS)
    assert "sentry.useroption" not in models(exported)


def test_an_organization_filter_keeps_the_organizations_their_members_and_their_users() -> None:
    records = list(generate(orgs=3, members=2, teams=1, projects=1))
    exported, _, _ = run(records, ImportScope.ORGANIZATIONS, filter_org_slugs=frozenset({"gen-org-2"}))
    found = models(exported)
    assert found["sentry.organization"] == [2]
    assert found["sentry.user"] == [3, 4]
    assert found["sentry.organizationmember"] == [3, 4]
    assert (
        found["sentry.team"] == [2] and found["sentry.project"] == [2] and found["sentry.projectkey"] == [2]
    )
    assert found["sentry.orgauthtoken"] == [2]
    assert found["sentry.email"] == [3, 4] and found["sentry.useremail"] == [3, 4]


def test_an_inviter_outside_the_export_does_not_drop_the_member() -> None:
    records = list(generate(orgs=2, members=2, teams=1, projects=1))
    member = next(r for r in records if r["model"] == "sentry.organizationmember" and r["pk"] == 4)
    member["fields"]["inviter_id"] = 1  # a user of the other organization
    exported, _, _ = run(records, ImportScope.ORGANIZATIONS, filter_org_slugs=frozenset({"gen-org-2"}))
    kept = next(r for r in exported if r["model"] == "sentry.organizationmember" and r["pk"] == 4)
    assert kept["fields"]["inviter_id"] == 1


def test_a_filter_that_matches_nothing_exports_nothing() -> None:
    records = list(generate(orgs=2, members=2))
    exported, _, _ = run(records, ImportScope.ORGANIZATIONS, filter_org_slugs=frozenset({"nope"}))
    assert exported == []


def test_the_config_scope_holds_the_globally_privileged_users_only() -> None:
    records = list(generate(orgs=3, members=5))  # users 7 and 14 are staff, 11 superuser
    records.append(
        {"model": "sentry.userpermission", "pk": 1, "fields": {"user": 2, "permission": "x.admin"}}
    )
    exported, _, _ = run(records, ImportScope.CONFIG)
    found = models(exported)
    assert found["sentry.user"] == [2, 7, 11, 14]
    assert found["sentry.email"] == [2, 7, 11, 14]
    assert "sentry.organization" not in found


def test_a_source_that_makes_no_progress_is_refused() -> None:
    class Stuck(MemoryRows):
        def page(self, spec: ModelSpec, *, after_pk: int, limit: int, filters: Sequence[FieldFilter]) -> Page:
            return Page((), after_pk, done=False)

    sources = {Silo.REGION: Stuck([], Silo.REGION), Silo.CONTROL: Stuck([], Silo.CONTROL)}
    with pytest.raises(SourceRefused, match=r"returned no sentry\.controloption from the first instance"):
        Exporter(ExportOptions(scope=ImportScope.GLOBAL), sources=sources, progress=Progress()).run(
            io.StringIO()
        )


def test_the_export_order_puts_every_model_after_what_it_points_at() -> None:
    assert sorted(spec.name for spec in EXPORT_ORDER) == sorted(REGISTRY)
    placed: set[str] = set()
    for spec in EXPORT_ORDER:
        # The import's check refuses a model listed after one of its dependents.
        assert not DEPENDENTS.get(spec.name, frozenset()) & placed, spec.name
        assert {fk.target for fk in spec.foreign_keys if fk.target in REGISTRY} - {spec.name} <= placed
        placed.add(spec.name)
    assert POSITION["sentry.user"] < POSITION["sentry.email"] < POSITION["sentry.useremail"]
