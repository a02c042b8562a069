"""The first pass over an export: check every record before anything is written.

It validates the JSON, each record's model, fields and values, and the dependency order of the models,
counts the instances of each model (for progress), hashes the file (to recognise it on a resumed run)
and works out which users, emails and organizations the filters keep.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import TextIO

from region.importer.options import ImportOptions
from shared.relocation.pkmap import PkSet
from shared.relocation.reader import ExportFormatError, Record, read_records
from shared.relocation.registry import MODELS, REFERENCED, lookup
from shared.relocation.spec import ModelSpec
from shared.relocation.values import BadValue, check_value

_INT64 = (-(2**63), 2**63 - 1)
_MISSING = object()

#: Model -> the models whose foreign keys point at it (an export must list it before them).
DEPENDENTS: dict[str, frozenset[str]] = {
    target: frozenset(spec.name for spec in MODELS if target in spec.targets) - {target}
    for target in REFERENCED
}


class HashingReader:
    """A text stream that hashes what it reads."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> str:
        chunk = self._stream.read(size)
        self.digest.update(chunk.encode("utf-8", "surrogatepass"))
        return chunk


@dataclass(frozen=True)
class Scan:
    records: int
    #: Instances per model, in order of first appearance (unknown models included).
    counts: dict[str, int]
    digest: str
    #: What the filters keep (None: no filter on that model).
    keep_users: frozenset[int] | None
    keep_emails: frozenset[str] | None
    keep_orgs: frozenset[int] | None


def invalid(source: str, record: Record, message: str) -> ExportFormatError:
    return ExportFormatError(
        source, record.line, record.column, f"{record.model} pk {record.pk}: {message}", record=record.index
    )


def check_record(source: str, spec: ModelSpec, record: Record) -> None:
    fields = record.fields
    if not fields.keys() <= spec.all_names:
        unknown = sorted(set(fields) - spec.all_names)
        raise invalid(source, record, f"unknown field(s) {', '.join(map(repr, unknown))}")
    for field in spec.fields:
        value = fields.get(field.name, _MISSING)
        if value is _MISSING:
            if field.default is None and not field.nullable:
                raise invalid(source, record, f"missing required field {field.name!r}")
            continue
        try:
            check_value(field, value)
        except BadValue as exc:
            raise invalid(source, record, f"field {field.name!r}: {exc}") from None
    for fk in spec.foreign_keys:
        value = fields.get(fk.name)
        if value is None:
            if fk.name in fields and not fk.nullable:
                raise invalid(source, record, f"field {fk.name!r} must not be null")
            if fk.name not in fields and not fk.nullable:
                raise invalid(source, record, f"missing required field {fk.name!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or not _INT64[0] <= value <= _INT64[1]:
            raise invalid(
                source, record, f"field {fk.name!r} must hold the pk of a {fk.target}, got {value!r}"
            )


def check_references(source: str, spec: ModelSpec, record: Record, pks: dict[str, PkSet]) -> None:
    """--strict: every reference must name an instance listed earlier in the export."""
    for fk in spec.foreign_keys:
        value = record.fields.get(fk.name)
        if value is not None and (fk.target not in pks or value not in pks[fk.target]):
            raise invalid(
                source,
                record,
                f"{fk.name} refers to {fk.target} pk {value}, which the export does not hold (--strict)",
            )


class _Collector:
    """What the filters need, gathered only when a filter is given."""

    def __init__(self, options: ImportOptions) -> None:
        self.active = options.filter_usernames is not None or options.filter_org_slugs is not None
        self.user_names: dict[int, tuple[str, str]] = {}
        self.user_emails: dict[int, set[str]] = defaultdict(set)
        self.org_slugs: dict[int, str] = {}
        self.members: list[tuple[int, int]] = []

    def add(self, record: Record) -> None:
        fields = record.fields
        if record.model == "sentry.user":
            self.user_names[record.pk] = (str(fields.get("username") or ""), str(fields.get("email") or ""))
        elif record.model == "sentry.useremail" and isinstance(fields.get("user"), int):
            self.user_emails[fields["user"]].add(str(fields.get("email") or "").casefold())
        elif record.model == "sentry.organization":
            self.org_slugs[record.pk] = str(fields.get("slug") or "")
        elif record.model == "sentry.organizationmember":
            org, user = fields.get("organization"), fields.get("user_id")
            if isinstance(org, int) and isinstance(user, int):
                self.members.append((org, user))

    def result(
        self, options: ImportOptions
    ) -> tuple[frozenset[int] | None, frozenset[str] | None, frozenset[int] | None]:
        keep_orgs = None
        if options.filter_usernames is not None:
            users = {pk for pk, (name, _) in self.user_names.items() if name in options.filter_usernames}
        elif options.filter_org_slugs is not None:
            keep_orgs = frozenset(
                pk for pk, slug in self.org_slugs.items() if slug in options.filter_org_slugs
            )
            users = {user for org, user in self.members if org in keep_orgs}
        else:
            return None, None, None
        emails = {self.user_names[pk][1].casefold() for pk in users if pk in self.user_names}
        for pk in users:
            emails |= self.user_emails.get(pk, set())
        return frozenset(users), frozenset(emails), keep_orgs


def scan_export(stream: TextIO, source: str, options: ImportOptions) -> Scan:
    reader = HashingReader(stream)
    counts: dict[str, int] = {}
    first_seen: dict[str, Record] = {}
    #: Model -> how many models had been seen when its order was last found good.
    order_checked: dict[str, int] = {}
    #: Every model's pks so far: duplicates are refused, and --strict checks references against them.
    pks: dict[str, PkSet] = defaultdict(PkSet)
    collector = _Collector(options)
    total = 0
    for record in read_records(reader, source):  # type: ignore[arg-type]
        total += 1
        counts[record.model] = counts.get(record.model, 0) + 1
        spec = lookup(record.model)
        if spec is None:
            if options.strict:
                raise invalid(source, record, "siloport does not know this model (--strict)")
            continue
        check_record(source, spec, record)
        if not _INT64[0] <= record.pk <= _INT64[1]:
            raise invalid(source, record, "pk does not fit in 64 bits")
        if not pks[spec.name].add(record.pk):
            raise invalid(
                source, record, "this pk appears twice for the model; an export lists each instance once"
            )
        if options.strict:
            check_references(source, spec, record, pks)
        if order_checked.get(spec.name) != len(first_seen):  # only a model seen first since can break it
            for dependent in sorted(DEPENDENTS.get(spec.name, frozenset()) & first_seen.keys()):
                earlier = first_seen[dependent]
                raise invalid(
                    source,
                    record,
                    f"out of dependency order: {dependent} (first at line {earlier.line}) refers to "
                    f"{spec.name}, so every {spec.name} must come before it",
                )
            first_seen.setdefault(spec.name, record)
            order_checked[spec.name] = len(first_seen)
        if collector.active:
            collector.add(record)
    keep_users, keep_emails, keep_orgs = collector.result(options)
    return Scan(total, counts, reader.digest.hexdigest(), keep_users, keep_emails, keep_orgs)
