"""Comparing two exports model by model, ignoring what legitimately changes in a relocation.

LEFT is the original export, RIGHT an export of where it was imported. Instances are matched per model:
first the pairs the import's findings name (old pk -> new pk), then by the model's unique keys from the
registry (foreign keys in a key compared by what they point to, case-insensitive keys casefolded), then
by position within the model for what is left of models without unique keys or whose keys a
relocation may change (suffixed slugs and usernames, regenerated secrets). Matched instances are
compared field by field:

- primary keys are not compared; a foreign key is equal when it points at the matched instance;
- dates are equal within a tolerance;
- secrets and tokens are equal when they have the same shape (length and alphabet);
- a changed slug or username is equal only where the import's findings explain the rename;
- fields the import's scope resets (given as ``import_scope``: admin flags, credentials) are equal;
- a field an export omits counts as the registry's default (exports of other versions omit some).

Pure functions over parsed exports: no database, no RPC.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from shared.relocation.findings import Finding
from shared.relocation.hooks import REGENERATORS
from shared.relocation.order import POSITION
from shared.relocation.reader import ExportFormatError, Record, read_records
from shared.relocation.registry import REGISTRY
from shared.relocation.spec import ForeignKey, ImportScope, Kind, ModelSpec, OnClash, Unique
from shared.relocation.values import BadValue, parse_datetime

DEFAULT_DATE_TOLERANCE_S = 1.0

#: Secrets and tokens a relocation may regenerate (or that Sentry's own comparison treats as such):
#: compared by shape, never by value.
SECRET_FIELDS = frozenset(REGENERATORS) | {
    ("sentry.apiapplication", "client_secret"),
    ("sentry.orgauthtoken", "token_last_characters"),
    ("sentry.useremail", "validation_hash"),
}
#: Fields whose values a difference never shows.
SENSITIVE_FIELDS = SECRET_FIELDS | {
    ("sentry.user", "password"),
    ("sentry.user", "session_nonce"),
    ("sentry.authenticator", "config"),
}
#: Alphabets a secret is written in; two secrets have the same shape when they are equally long and
#: one alphabet holds every character of both.
_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ALPHABETS: tuple[tuple[str, frozenset[str]], ...] = (
    ("hexadecimal", frozenset("0123456789abcdef")),
    ("upper-case hexadecimal", frozenset("0123456789ABCDEF")),
    ("alphanumeric", frozenset(_ALNUM)),
    ("url-safe base64", frozenset(_ALNUM + "-_")),
    ("base64", frozenset(_ALNUM + "+/=")),
)

#: Unique keys a relocation may change: their leftovers are matched by position.
_CHANGING = frozenset({OnClash.SUFFIX, OnClash.MERGE_OR_SUFFIX, OnClash.REGENERATE})
#: Import findings that explain a left instance missing on the right.
LEFT_OUT_KINDS = frozenset({"filtered_out", "dropped_orphan", "dropped_merged"})
#: Import findings that map a left instance to an existing right instance, which kept its own values.
EXISTING_KINDS = frozenset({"reused", "kept_existing", "merged"})
RENAME_KINDS = frozenset({"renamed"})


# ---- exports -----------------------------------------------------------------------------------------


@dataclass
class ExportContents:
    """The records of one export, grouped by model in file order."""

    source: str
    models: dict[str, list[Record]] = field(default_factory=dict)

    def count(self) -> int:
        return sum(len(records) for records in self.models.values())


def load_export(stream: TextIO, source: str) -> ExportContents:
    """Read an export; raise :class:`ExportFormatError` (naming file, line, model and pk) when it is no
    well-formed list of records or lists an instance twice."""
    contents = ExportContents(source)
    seen: dict[str, set[int]] = defaultdict(set)
    for record in read_records(stream, source):
        if record.pk in seen[record.model]:
            raise ExportFormatError(
                source,
                record.line,
                record.column,
                f"{record.model} pk {record.pk} appears twice; an export lists each instance once",
                record=record.index,
            )
        seen[record.model].add(record.pk)
        contents.models.setdefault(record.model, []).append(record)
    return contents


# ---- what the import's findings explain ---------------------------------------------------------------


class Explanations:
    """The findings of the import that turned LEFT into RIGHT, indexed by (model, left pk)."""

    def __init__(self, findings: Iterable[Finding] = ()) -> None:
        self._by_instance: dict[tuple[str, int], list[Finding]] = defaultdict(list)
        self._skipped_models: dict[str, str] = {}
        self._pairs: dict[str, list[Finding]] = defaultdict(list)
        for finding in findings:
            model = finding.model.lower()
            if finding.kind == "skipped_model":
                self._skipped_models[model] = finding.reason
            if finding.old_pk is None:
                continue
            self._by_instance[(model, finding.old_pk)].append(finding)
            if finding.new_pk is not None and finding.kind != "error":
                self._pairs[model].append(finding)

    @classmethod
    def read(cls, stream: TextIO, source: str) -> Explanations:
        """Parse a findings file (a JSON list of findings); :class:`BadFindings` when it is not one."""
        try:
            data = json.load(stream)
            if not isinstance(data, list):
                raise TypeError("not a list")
            return cls(Finding.from_json(item) for item in data)
        except (ValueError, TypeError, KeyError) as exc:
            raise BadFindings(f"{source}: not a findings file (a JSON list of findings): {exc}") from None

    def pairs(self, model: str) -> list[Finding]:
        return self._pairs.get(model, [])

    def left_out(self, model: str, pk: int) -> str | None:
        """Why the import left this instance out, when it says so."""
        if model in self._skipped_models:
            return self._skipped_models[model]
        found = next((f for f in self._by_instance.get((model, pk), ()) if f.kind in LEFT_OUT_KINDS), None)
        return found.reason if found else None

    def renamed(self, model: str, left_pk: int, right_pk: int, left: object, right: object) -> bool:
        """Whether a finding of the import explains ``left`` becoming ``right`` on this instance."""
        for finding in self._by_instance.get((model, left_pk), ()):
            if finding.new_pk is not None and finding.new_pk != right_pk:
                continue
            if finding.kind in RENAME_KINDS or (
                repr(left) in finding.reason and repr(right) in finding.reason
            ):
                return True
        return False

    def nulled(self, model: str, left_pk: int, name: str) -> bool:
        """Whether the import set this reference to null (it pointed at something not imported)."""
        return any(
            f.kind == "nulled_reference" and f.reason.split(" ", 1)[0] in (name, "")
            for f in self._by_instance.get((model, left_pk), ())
        )


class BadFindings(ValueError):
    """The import findings file cannot be read."""


# ---- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    #: "only_left", "only_right", "field" or "reference".
    kind: str
    model: str
    #: 1-based position of the instance among its model's instances (on the left; on the right for
    #: an instance only there).
    ordinal: int
    left_pk: int | None
    right_pk: int | None
    #: The field that differs (None for a missing instance).
    field: str | None
    reason: str

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "model": self.model,
            "ordinal": self.ordinal,
            "left_pk": self.left_pk,
            "right_pk": self.right_pk,
            "field": self.field,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        pks = " -> ".join(
            f"{side} pk {pk}"
            for side, pk in (("left", self.left_pk), ("right", self.right_pk))
            if pk is not None
        )
        return f"{self.kind}: {self.model} #{self.ordinal} ({pks}): {self.reason}"


@dataclass
class ModelTally:
    left: int = 0
    right: int = 0
    matched: int = 0
    #: Instances with at least one difference, or on one side only.
    different: int = 0
    #: Instances whose change or absence the import's findings explain.
    explained: int = 0


@dataclass
class Comparison:
    models: dict[str, ModelTally] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class CompareOptions:
    date_tolerance_s: float = DEFAULT_DATE_TOLERANCE_S
    #: The scope of the import that made RIGHT from LEFT: the fields it resets are not differences.
    import_scope: ImportScope | None = None


def reset_fields(scope: ImportScope) -> frozenset[tuple[str, str]]:
    """(model, field) an import in ``scope`` resets (``hooks.prepare_user`` / ``prepare_useremail``):
    admin flags outside config and global, credentials and email verification outside global."""
    fields: set[tuple[str, str]] = set()
    if not scope.keeps_privileges:
        fields |= {("sentry.user", name) for name in ("is_staff", "is_superuser", "is_managed")}
    if not scope.keeps_credentials:
        fields |= {
            ("sentry.user", name)
            for name in ("password", "is_unclaimed", "is_password_expired", "last_password_change")
        }
        fields |= {
            ("sentry.useremail", name) for name in ("is_verified", "validation_hash", "date_hash_added")
        }
    return frozenset(fields)


# ---- comparing ----------------------------------------------------------------------------------------


def compare_exports(
    left: ExportContents,
    right: ExportContents,
    options: CompareOptions = CompareOptions(),
    explanations: Explanations | None = None,
) -> Comparison:
    """Every difference between ``left`` and ``right``, model by model in dependency order."""
    return _Comparer(left, right, options, explanations or Explanations()).run()


def _model_order(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda name: (POSITION.get(name, len(POSITION)), name))


def _default(spec: ModelSpec | None, name: str) -> object:
    if spec is None:
        return None
    found = next((f for f in spec.fields if f.name == name), None)
    return found.default if found is not None else None


def _value(spec: ModelSpec | None, record: Record, name: str) -> object:
    return record.fields[name] if name in record.fields else _default(spec, name)


def _same(left: object, right: object) -> bool:
    """JSON equality that does not take ``true`` for ``1``."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    return left == right


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


def shape(value: str) -> str:
    """A secret's shape, for messages: its length and the narrowest alphabet holding it."""
    chars = set(value)
    name = next((name for name, alphabet in ALPHABETS if chars <= alphabet), "other characters")
    return f"{len(value)} characters, {name}"


def same_shape(left: object, right: object) -> bool:
    if not isinstance(left, str) or not isinstance(right, str):
        return _same(left, right)
    if len(left) != len(right):
        return False
    chars = set(left) | set(right)
    return any(chars <= alphabet for _, alphabet in ALPHABETS)


def _renaming_fields(spec: ModelSpec) -> frozenset[str]:
    return frozenset(
        u.fields[-1] for u in spec.uniques if u.on_clash in (OnClash.SUFFIX, OnClash.MERGE_OR_SUFFIX)
    )


@dataclass
class _Pair:
    left: Record
    right: Record
    left_ordinal: int
    #: Mapped to an instance that existed before the import and kept its own values.
    existing: bool = False


@dataclass
class _Matching:
    pairs: list[_Pair]
    #: Instances without a counterpart, by pk.
    left_only: dict[int, Record]
    right_only: dict[int, Record]


#: A field's outcome: the difference's kind and reason (None when equal), and whether the import's
#: findings explain a change.
_Outcome = tuple[tuple[str, str] | None, bool]
_EQUAL: _Outcome = (None, False)
_EXPLAINED: _Outcome = (None, True)


class _Comparer:
    def __init__(
        self, left: ExportContents, right: ExportContents, options: CompareOptions, explanations: Explanations
    ) -> None:
        self.left, self.right, self.options, self.explanations = left, right, options, explanations
        self.result = Comparison()
        #: model -> left pk -> right pk of matched instances.
        self.pkmap: dict[str, dict[int, int]] = defaultdict(dict)
        self.reset = reset_fields(options.import_scope) if options.import_scope else frozenset()

    def run(self) -> Comparison:
        for model in _model_order(self.left.models.keys() | self.right.models.keys()):
            self._model(model, self.left.models.get(model, []), self.right.models.get(model, []))
        return self.result

    def _holds(self, model: str) -> bool:
        """Whether either export holds instances of ``model`` (references to it can be followed)."""
        return model in self.left.models or model in self.right.models

    def _model(self, model: str, lefts: list[Record], rights: list[Record]) -> None:
        spec = REGISTRY.get(model)
        tally = self.result.models.setdefault(model, ModelTally(len(lefts), len(rights)))
        matching = self._match(model, spec, lefts, rights)
        tally.matched = len(matching.pairs)
        left_ordinals = {record.pk: i for i, record in enumerate(lefts, 1)}
        right_ordinals = {record.pk: i for i, record in enumerate(rights, 1)}
        differences = self.result.differences
        for pk in matching.left_only:
            if self.explanations.left_out(model, pk) is not None:
                tally.explained += 1
                continue
            tally.different += 1
            differences.append(
                Difference("only_left", model, left_ordinals[pk], pk, None, None, "only on the left")
            )
        for pk in matching.right_only:
            tally.different += 1
            differences.append(
                Difference("only_right", model, right_ordinals[pk], None, pk, None, "only on the right")
            )
        for pair in matching.pairs:
            if pair.existing:
                tally.explained += 1
                continue
            found, explained = self._compare_pair(model, spec, pair)
            tally.different += bool(found)
            tally.explained += explained and not found
            differences.extend(found)

    # ---- matching --------------------------------------------------------------------------------

    def _match(
        self, model: str, spec: ModelSpec | None, lefts: list[Record], rights: list[Record]
    ) -> _Matching:
        ordinals = {record.pk: i for i, record in enumerate(lefts, 1)}
        left_free = {record.pk: record for record in lefts}
        right_free = {record.pk: record for record in rights}
        right_by_pk = dict(right_free)
        pairs: list[_Pair] = []

        def pair(left: Record, right: Record, *, existing: bool = False) -> None:
            del left_free[left.pk]
            right_free.pop(right.pk, None)
            pairs.append(_Pair(left, right, ordinals[left.pk], existing))
            self.pkmap[model][left.pk] = right.pk

        # 1. What the import says became of an instance.
        for finding in self.explanations.pairs(model):
            assert finding.old_pk is not None and finding.new_pk is not None
            left_record, right_record = left_free.get(finding.old_pk), right_by_pk.get(finding.new_pk)
            existing = finding.kind in EXISTING_KINDS
            if (
                left_record is not None
                and right_record is not None
                and (right_record.pk in right_free or existing)
            ):
                pair(left_record, right_record, existing=existing)
        # 2. Unique keys.
        for unique in spec.uniques if spec is not None else ():
            for left_record, right_record in self._by_key(spec, unique, left_free, right_free):  # type: ignore[arg-type]
                pair(left_record, right_record)
        # 3. Position, where no key is left to tell instances apart.
        if spec is None or not spec.uniques or any(u.on_clash in _CHANGING for u in spec.uniques):
            for left_record, right_record in zip(
                list(left_free.values()), list(right_free.values()), strict=False
            ):
                pair(left_record, right_record)
        return _Matching(pairs, left_free, right_free)

    def _key(self, spec: ModelSpec, unique: Unique, record: Record, *, left: bool) -> tuple[Any, ...] | None:
        parts: list[Any] = []
        for name in unique.fields:
            value = _value(spec, record, name)
            fk = spec.foreign_key(name)
            if fk is not None and value is not None and left and self._holds(fk.target):
                value = self.pkmap[fk.target].get(value) if isinstance(value, int) else None
                if value is None:
                    return None  # points at an instance without a counterpart: no usable key
            if unique.casefold and isinstance(value, str):
                value = value.casefold()
            parts.append(json.dumps(value, sort_keys=True))
        return tuple(parts)

    def _by_key(
        self, spec: ModelSpec, unique: Unique, lefts: Mapping[int, Record], rights: Mapping[int, Record]
    ) -> list[tuple[Record, Record]]:
        """Pairs whose key is unique on both sides (among the instances not matched yet)."""
        by_key: dict[tuple[Any, ...], tuple[list[Record], list[Record]]] = {}
        for side, records in ((0, lefts), (1, rights)):
            for record in records.values():
                key = self._key(spec, unique, record, left=side == 0)
                if key is not None:
                    by_key.setdefault(key, ([], []))[side].append(record)
        return [(ls[0], rs[0]) for ls, rs in by_key.values() if len(ls) == 1 and len(rs) == 1]

    # ---- fields ----------------------------------------------------------------------------------

    def _compare_pair(self, model: str, spec: ModelSpec | None, pair: _Pair) -> tuple[list[Difference], bool]:
        """The differences of one matched pair, and whether the findings explained some change."""
        names = list(pair.left.fields) + [n for n in pair.right.fields if n not in pair.left.fields]
        if spec is not None:
            names += [f.name for f in spec.fields if f.name not in names]
        explained = False
        differences: list[Difference] = []
        for name in names:
            found, why = self._field(model, spec, name, pair)
            explained = explained or why
            if found is not None:
                kind, reason = found
                differences.append(
                    Difference(kind, model, pair.left_ordinal, pair.left.pk, pair.right.pk, name, reason)
                )
        return differences, explained

    def _field(self, model: str, spec: ModelSpec | None, name: str, pair: _Pair) -> _Outcome:
        left, right = _value(spec, pair.left, name), _value(spec, pair.right, name)
        fk = spec.foreign_key(name) if spec is not None else None
        if fk is not None:
            return self._reference(model, fk, pair.left.pk, left, right)
        if _same(left, right):
            return _EQUAL
        if (model, name) in self.reset:
            return _EXPLAINED
        if spec is not None and name in _renaming_fields(spec):
            if self.explanations.renamed(model, pair.left.pk, pair.right.pk, left, right):
                return _EXPLAINED
            reason = (
                f"field {name!r}: {_shown(left)} on the left, {_shown(right)} on the right, "
                "a rename the import's findings do not explain"
            )
            return ("field", reason), False
        kind = next((f.kind for f in spec.fields if f.name == name), None) if spec is not None else None
        reason = self._value_difference(model, name, kind, left, right)
        return (("field", reason) if reason else None), False

    def _value_difference(self, model: str, name: str, kind: Kind | None, left: object, right: object) -> str:
        """What differs between two unequal values of a field ('' when the difference does not count)."""
        if (model, name) in SECRET_FIELDS:
            return "" if same_shape(left, right) else f"field {name!r}: {_secret_shapes(left, right)}"
        if kind is Kind.DATETIME:
            return self._dates(name, left, right)
        if kind is Kind.FLAGS and _flags(left) == _flags(right):
            return ""
        if (model, name) in SENSITIVE_FIELDS:
            return f"field {name!r}: the values differ (not shown: a secret)"
        return f"field {name!r}: {_shown(left)} on the left, {_shown(right)} on the right"

    def _reference(self, model: str, fk: ForeignKey, left_pk: int, left: object, right: object) -> _Outcome:
        if left is None or right is None:
            if left is None and right is None:
                return _EQUAL
            if right is None and self.explanations.nulled(model, left_pk, fk.name):
                return _EXPLAINED
            shown_left = "null" if left is None else f"{fk.target} pk {left}"
            shown_right = "null" if right is None else f"{fk.target} pk {right}"
            return ("reference", f"{fk.name}: {shown_left} on the left, {shown_right} on the right"), False
        mapped = self.pkmap[fk.target].get(left) if isinstance(left, int) else None
        if not self._holds(fk.target) or mapped == right:
            return _EQUAL  # equal, or neither export holds the target: nothing to follow it to
        counterpart = (
            "which has no counterpart on the right" if mapped is None else f"pk {mapped} on the right"
        )
        return (
            "reference",
            f"{fk.name}: points at {fk.target} pk {left} on the left ({counterpart}), "
            f"at pk {right} on the right",
        ), False

    def _dates(self, name: str, left: object, right: object) -> str:
        shown = f"field {name!r}: {_shown(left)} on the left, {_shown(right)} on the right"
        if not isinstance(left, str) or not isinstance(right, str):
            return shown
        try:
            apart = abs((parse_datetime(left) - parse_datetime(right)).total_seconds())
        except BadValue:
            return shown
        tolerance = self.options.date_tolerance_s
        if apart <= tolerance or math.isclose(apart, tolerance):
            return ""
        return f"{shown}, {apart:g} s apart (tolerance {tolerance:g} s)"


def _secret_shapes(left: object, right: object) -> str:
    def described(value: object) -> str:
        return shape(value) if isinstance(value, str) else json.dumps(value)

    return f"a secret of another shape ({described(left)} on the left, {described(right)} on the right)"


def _flags(value: object) -> object:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def summary_lines(comparison: Comparison, left: str, right: str) -> Sequence[str]:
    """The per-model table a person reads."""
    width = max([len(m) for m in comparison.models] + [5])
    lines = [
        f"{'model':<{width}}  {'left':>7}  {'right':>7}  {'matched':>7}  {'different':>9}  {'explained':>9}"
    ]
    for model, tally in comparison.models.items():
        lines.append(
            f"{model:<{width}}  {tally.left:>7,}  {tally.right:>7,}  {tally.matched:>7,}  "
            f"{tally.different:>9,}  {tally.explained:>9,}"
        )
    return lines
