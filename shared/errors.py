"""The root of every error siloport's shared code raises."""

from __future__ import annotations


class SharedError(Exception):
    """Root of the errors raised by ``shared``. Each silo's own root derives from it, so that the CLI
    turns any of them into a message and a non-zero exit in one place.

    They cross process boundaries (control's write workers) as themselves: pickling keeps the message
    and the attributes, whatever arguments the subclass's constructor takes."""

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[SharedError], args: tuple[object, ...], state: dict[str, object]) -> SharedError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(SharedError):
    """A setting is missing or malformed; the message names the flag or variable."""


class DatabaseUnavailable(SharedError):
    """The database cannot be reached or is not migrated."""


class SchemaMismatch(SharedError):
    """The database belongs to another silo or region, or its schema is not the one this code expects."""
