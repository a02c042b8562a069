"""Pages of instances read from a silo for an export: keyset pagination by pk, with field filters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import SharedError
from shared.relocation.spec import Kind, ModelSpec

#: The most instances one page holds (a caller asking for more gets this many).
MAX_PAGE_SIZE = 5000
#: A page stops growing once its instances' fields take this much JSON text (the last instance may
#: go past it), so a page of large JSON fields stays far below the RPC message limit.
PAGE_BUDGET_CHARS = 4 << 20
#: A filter with more values than this is not sent to a silo; the caller filters what comes back.
MAX_FILTER_VALUES = 1000

#: Keyset pagination starts below every pk.
FIRST_PK = -(2**63)

Scalar = int | str | bool


def position(after_pk: int) -> str:
    """Where a page starts, for messages."""
    return "from the first instance" if after_pk == FIRST_PK else f"after pk {after_pk}"


class BadFilter(SharedError):
    """A filter names a field the model does not have, or holds values of the wrong type."""

    reason = "bad_filter"

    def __init__(self, model: str, message: str) -> None:
        self.model = model
        super().__init__(f"{model}: {message}")


@dataclass(frozen=True)
class FieldFilter:
    """Keep an instance only when its ``field`` (a field, a foreign key or ``pk``) holds one of
    ``values``. String values compare exactly, as Sentry's export filters do."""

    field: str
    values: frozenset[Scalar]

    def admits(self, pk: int, fields: dict[str, Any]) -> bool:
        value = pk if self.field == "pk" else fields.get(self.field)
        return value in self.values

    def check(self, spec: ModelSpec) -> None:
        """Raise :class:`BadFilter` unless the filter fits the model."""
        if self.field == "pk" or spec.foreign_key(self.field) is not None:
            wanted: tuple[type, ...] = (int,)
        else:
            field = next((f for f in spec.fields if f.name == self.field), None)
            if field is None:
                raise BadFilter(spec.name, f"no field {self.field!r} to filter on")
            wanted = {
                Kind.STR: (str,),
                Kind.TEXT: (str,),
                Kind.INT: (int,),
                Kind.BOOL: (bool,),
            }.get(field.kind, ())
            if not wanted:
                raise BadFilter(spec.name, f"field {self.field!r} ({field.kind.value}) cannot be filtered on")
        if any(
            not isinstance(v, wanted) or (isinstance(v, bool) and bool not in wanted) for v in self.values
        ):
            raise BadFilter(spec.name, f"filter on {self.field!r} holds values of the wrong type")


@dataclass(frozen=True)
class Instance:
    """One row in export form: its pk and its fields as Sentry writes them."""

    pk: int
    fields: dict[str, Any]


@dataclass(frozen=True)
class Page:
    instances: tuple[Instance, ...]
    #: The pk to continue after (the last instance's; the request's ``after_pk`` when empty).
    last_pk: int
    #: No instance of the model is left after ``last_pk``.
    done: bool
