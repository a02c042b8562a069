"""The export engine: every model of the scope, in dependency order, read page by page from the silo
that holds it and written as it comes, so memory does not grow with the export.

Orchestration only; it reaches the databases and control through the row sources it is given. Which
instances are kept follows Sentry's export (``selection.py``); filters are sent along with the page
requests where they are small, and always applied here as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from region.exporter.errors import SourceRefused
from region.exporter.options import ExportOptions
from region.exporter.ports import ExportProgress, RowSource
from region.exporter.selection import Selection
from region.exporter.writer import ExportWriter
from shared.relocation.order import EXPORT_ORDER
from shared.relocation.pages import FIRST_PK, MAX_FILTER_VALUES, FieldFilter, Instance, position
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ImportScope, ModelSpec, Silo

USER, EMAIL, USEREMAIL = "sentry.user", "sentry.email", "sentry.useremail"
ORGANIZATION, MEMBER = "sentry.organization", "sentry.organizationmember"
PRIVILEGE_MODELS = ("sentry.userpermission", "sentry.userroleuser")

Rule = Callable[[Instance], bool]


@dataclass
class ExportSummary:
    #: Instances written per model of the scope, in the order written.
    models: dict[str, int] = field(default_factory=dict)

    @property
    def instances(self) -> int:
        return sum(self.models.values())


class Exporter:
    def __init__(
        self, options: ExportOptions, *, sources: Mapping[Silo, RowSource], progress: ExportProgress
    ) -> None:
        self.options = options
        self._sources = sources
        self._progress = progress

    def run(self, out: TextIO) -> ExportSummary:
        """Write the export to ``out``: a JSON list of ``{"model", "pk", "fields"}`` records."""
        scope = self.options.scope
        models = [spec for spec in EXPORT_ORDER if spec.scope in scope.admits]
        in_scope = frozenset(spec.name for spec in models)
        filters, rules = self._filters_and_rules(in_scope)
        emails_ruled = scope is not ImportScope.GLOBAL and EMAIL in in_scope
        ruled = (filters.keys() | rules.keys() | ({EMAIL} if emails_ruled else set())) & in_scope
        selection = Selection.plan(in_scope, ruled, needed={USER} if emails_ruled else ())
        writer = ExportWriter(out)
        summary = ExportSummary()
        for spec in models:
            rule = rules.get(spec.name)
            if spec.name == EMAIL and emails_ruled:
                rule = self._emails_rule(selection.kept_pks(USER))
            count = 0
            for instance in self._instances(spec, filters.get(spec.name, ())):
                if rule is not None and not rule(instance):
                    continue
                if not selection.references_kept(spec, instance.fields):
                    continue
                selection.keep(spec.name, instance.pk)
                writer.write(spec.name, instance.pk, instance.fields)
                count += 1
            summary.models[spec.name] = count
            self._progress.exported(spec.name, count)
        writer.close()
        return summary

    # ---- filters and rules ---------------------------------------------------------------------------

    def _filters_and_rules(
        self, in_scope: frozenset[str]
    ) -> tuple[dict[str, list[FieldFilter]], dict[str, Rule]]:
        options = self.options
        filters: dict[str, list[FieldFilter]] = {}
        rules: dict[str, Rule] = {}
        if options.filter_usernames is not None:
            filters[USER] = [FieldFilter("username", frozenset(options.filter_usernames))]
        if options.filter_org_slugs is not None:
            filters[ORGANIZATION] = [FieldFilter("slug", frozenset(options.filter_org_slugs))]
            filters[USER] = [FieldFilter("pk", self._member_users(filters[ORGANIZATION]))]
        if options.scope is ImportScope.CONFIG and USER in in_scope:
            # Sentry's config export holds the globally privileged users only.
            privileged = self._privileged_users()
            rules[USER] = lambda i: (
                bool(i.fields.get("is_staff") or i.fields.get("is_superuser")) or (i.pk in privileged)
            )
        return filters, rules

    def _member_users(self, organization_filters: Sequence[FieldFilter]) -> frozenset[int]:
        """The users who are members of the filtered organizations (pending invites have none)."""
        organizations = frozenset(i.pk for i in self._instances(REGISTRY[ORGANIZATION], organization_filters))
        members = self._instances(REGISTRY[MEMBER], [FieldFilter("organization", organizations)])
        return frozenset(i.fields["user_id"] for i in members if i.fields.get("user_id") is not None)

    def _privileged_users(self) -> frozenset[int]:
        """Users with an admin permission or role (staff and superusers are seen on the user itself)."""
        return frozenset(
            i.fields["user"] for model in PRIVILEGE_MODELS for i in self._instances(REGISTRY[model], ())
        )

    def _emails_rule(self, users: frozenset[int] | None) -> Rule:
        """Sentry exports an email only for the exported users whose ``UserEmail`` rows name it."""
        filters = [] if users is None else [FieldFilter("user", users)]
        emails = frozenset(
            str(i.fields.get("email") or "").casefold() for i in self._instances(REGISTRY[USEREMAIL], filters)
        )
        return lambda i: str(i.fields.get("email") or "").casefold() in emails

    # ---- reading -------------------------------------------------------------------------------------

    def _instances(self, spec: ModelSpec, filters: Sequence[FieldFilter]) -> Iterator[Instance]:
        """Every instance of ``spec`` that passes ``filters``, in pk order, a page at a time."""
        if any(not f.values for f in filters):
            return
        sent = [f for f in filters if len(f.values) <= MAX_FILTER_VALUES]
        source = self._sources[spec.silo]
        after = FIRST_PK
        while True:
            page = source.page(spec, after_pk=after, limit=self.options.page_size, filters=sent)
            for instance in page.instances:
                if all(f.admits(instance.pk, instance.fields) for f in filters):
                    yield instance
            if page.done:
                return
            if page.last_pk <= after:
                raise SourceRefused(
                    f"the {spec.silo.value} silo returned no {spec.name} {position(after)} "
                    "but said more follow"
                )
            after = page.last_pk
