"""The vocabulary of the model registry: silos, scopes, fields, foreign keys, collision rules."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property


class Silo(enum.Enum):
    CONTROL = "control"
    REGION = "region"


class RelocationScope(enum.Enum):
    """Which kind of data a model is (Sentry's relocation scopes, Excluded left out)."""

    USER = "user"
    ORGANIZATION = "organization"
    CONFIG = "config"
    GLOBAL = "global"


class ImportScope(enum.Enum):
    """What an import takes in (``siloport import users|organizations|config|global``)."""

    USERS = "users"
    ORGANIZATIONS = "organizations"
    CONFIG = "config"
    GLOBAL = "global"

    @property
    def admits(self) -> frozenset[RelocationScope]:
        return _ADMITS[self]

    @property
    def keeps_privileges(self) -> bool:
        """Superuser, staff and managed flags survive only config and global imports."""
        return self in (ImportScope.CONFIG, ImportScope.GLOBAL)

    @property
    def keeps_credentials(self) -> bool:
        """Passwords, verified emails and claimed accounts survive only global imports."""
        return self is ImportScope.GLOBAL


_ADMITS = {
    ImportScope.USERS: frozenset({RelocationScope.USER}),
    ImportScope.ORGANIZATIONS: frozenset({RelocationScope.USER, RelocationScope.ORGANIZATION}),
    ImportScope.CONFIG: frozenset({RelocationScope.USER, RelocationScope.CONFIG}),
    ImportScope.GLOBAL: frozenset(RelocationScope),
}


class Kind(enum.Enum):
    """How a field's value is written in an export and kept in a database."""

    STR = "str"  # a string, with a maximum length
    TEXT = "text"  # a string of any length
    INT = "int"  # a 64-bit integer
    BOOL = "bool"
    DATETIME = "datetime"  # ISO 8601, e.g. 2023-06-22T22:54:28.773Z
    FLAGS = "flags"  # a bit field written as a decimal string, e.g. "10"
    JSON = "json"  # any JSON value, kept exactly (strings holding JSON stay strings)

    # Members are singletons, so hashing by identity agrees with equality; Enum's own __hash__ runs
    # Python code, and the import looks a parser up by kind for every field of every instance.
    __hash__ = object.__hash__


class OnClash(enum.Enum):
    """What happens when an imported row meets an existing row with the same unique key."""

    REUSE = "reuse"  # map to the existing row (kind Existing)
    CONFIG = "config"  # overwrite it with --overwrite-configs (Overwrite), else keep it (Existing)
    SUFFIX = "suffix"  # insert under the key with a random suffix (slugs, usernames)
    REGENERATE = "regenerate"  # insert with freshly generated secret values
    MERGE_OR_SUFFIX = "merge_or_suffix"  # users: merge with --merge-users, else suffix


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    nullable: bool = True
    max_length: int | None = None
    #: Value used when the export omits the field (exports from other versions omit some).
    default: object = None

    @property
    def column(self) -> str:
        return self.name


@dataclass(frozen=True)
class ForeignKey:
    """A field holding the export pk of a row of ``target`` (in either silo)."""

    name: str
    target: str
    nullable: bool = False

    @cached_property
    def column(self) -> str:
        return self.name if self.name.endswith("_id") else f"{self.name}_id"


@dataclass(frozen=True)
class Unique:
    """A unique key and what to do when an imported row clashes on it."""

    fields: tuple[str, ...]
    on_clash: OnClash = OnClash.REUSE
    #: Compare case-insensitively (usernames, slugs, emails).
    casefold: bool = False
    #: For SUFFIX: the longest the suffixed value may be.
    max_length: int = 128


@dataclass(frozen=True)
class ModelSpec:
    """One exportable model: where it lives, what it holds, how it is imported."""

    name: str
    silo: Silo
    scope: RelocationScope
    fields: tuple[Field, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    uniques: tuple[Unique, ...] = ()
    #: Written only after the organizations' slugs are final.
    deferred: bool = False
    #: Table name in the owning silo's database.
    table: str = field(default="")

    def __post_init__(self) -> None:
        if not self.table:
            object.__setattr__(self, "table", "sentry_" + self.name.split(".", 1)[1])

    # Derived from the fields and computed once (the write path asks for them per row).

    @cached_property
    def all_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields) | {fk.name for fk in self.foreign_keys}

    @cached_property
    def targets(self) -> frozenset[str]:
        """The models this model's foreign keys point at."""
        return frozenset(fk.target for fk in self.foreign_keys)

    @cached_property
    def _foreign_keys(self) -> dict[str, ForeignKey]:
        return {fk.name: fk for fk in self.foreign_keys}

    def foreign_key(self, name: str) -> ForeignKey | None:
        return self._foreign_keys.get(name)

    def column(self, name: str) -> str:
        fk = self._foreign_keys.get(name)
        return fk.column if fk else name

    @cached_property
    def folded(self) -> tuple[str, ...]:
        """String fields compared case-insensitively: each has a ``<name>_ci`` column holding its
        casefolded value, and unique keys use that column, so the database enforces them."""
        strings = {f.name for f in self.fields if f.kind in (Kind.STR, Kind.TEXT)}
        names = [n for u in self.uniques if u.casefold for n in u.fields if n in strings]
        return tuple(dict.fromkeys(names))

    def key_column(self, unique: Unique, name: str) -> str:
        """The column a unique key uses for field ``name``."""
        return f"{name}_ci" if unique.casefold and name in self.folded else self.column(name)
