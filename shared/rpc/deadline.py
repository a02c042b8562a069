"""The deadline of the inbound call a thread is serving, so nested outbound calls inherit it."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("siloport_deadline", default=None)


@contextmanager
def inbound_deadline(time_remaining: float | None) -> Iterator[None]:
    """Within this block, outbound calls end no later than the inbound call's deadline."""
    token = _deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining(default: float) -> float:
    """Seconds an outbound call may take: ``default``, cut to what the inbound call has left."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return min(default, deadline - time.monotonic())
