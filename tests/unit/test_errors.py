"""Domain errors cross process boundaries (control's write workers) as themselves."""

from __future__ import annotations

import pickle

import pytest

from control.slugs import SlugTaken
from shared.db.relocation_writer import WrongSilo
from shared.errors import SharedError
from shared.relocation.batch import WriteRefused
from shared.rpc.relocation import MalformedBatch


class Plain(Exception):
    def __init__(self, model: str, ordinal: int) -> None:
        super().__init__(f"{model} #{ordinal}")


@pytest.mark.parametrize(
    "error",
    [
        WriteRefused("sentry.user", 7, 107, "field 'username': too long"),
        SlugTaken(3, "acme", "another organization here has it"),
        WrongSilo("sentry.team"),
        MalformedBatch("sentry.user instance 1: not [ordinal, old_pk, fields, keep_pk, hints]"),
        SharedError("plain"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_pickled_error_is_the_same_error(error: SharedError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.args == error.args
    assert vars(copy) == vars(error)
    assert getattr(copy, "reason", None) == getattr(error, "reason", None)


def test_without_the_reduce_a_constructor_with_arguments_would_not_unpickle() -> None:
    """The reason SharedError defines __reduce__: Exception's own pickling calls the constructor with
    the message alone."""
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(Plain("sentry.user", 1)))
    refused = pickle.loads(pickle.dumps(WriteRefused("sentry.user", 1, 5, "bad")))
    assert (refused.model, refused.ordinal, refused.pk) == ("sentry.user", 1, 5)
