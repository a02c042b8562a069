"""Random tokens for the secrets an import regenerates, from a pool of operating-system randomness.

``secrets.token_*`` asks the kernel for every token, and each request lets go of the interpreter lock:
while one lane of an import prepares thousands of users (each gets an unusable password) and user
emails (a validation hash), every token would wait for the other lane's thread to hand the lock back.
The pool asks for 64 KiB at a time instead. Its bytes come from ``os.urandom`` as ``secrets``'s do, each
is handed out once, and a forked child starts with an empty pool, so parent and child never share one.
"""

from __future__ import annotations

import base64
import os
import threading
import uuid

#: Bytes asked of the kernel at a time.
POOL_BYTES = 64 << 10


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._at + n > len(self._bytes):
                self._bytes, self._at = os.urandom(max(POOL_BYTES, n)), 0
            taken = self._bytes[self._at : self._at + n]
            self._at += n
            return taken

    def forget(self) -> None:
        """In a forked child: none of the parent's bytes (and a lock no other thread may hold)."""
        self._lock = threading.Lock()
        self._bytes, self._at = b"", 0


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)


def token_bytes(n: int) -> bytes:
    return _POOL.take(n)


def token_hex(n: int) -> str:
    """``n`` random bytes as hexadecimal, as ``secrets.token_hex`` gives them."""
    return _POOL.take(n).hex()


def token_urlsafe(n: int) -> str:
    """``n`` random bytes in URL-safe base64 without padding, as ``secrets.token_urlsafe`` gives them."""
    return base64.urlsafe_b64encode(_POOL.take(n)).rstrip(b"=").decode("ascii")


def uuid4_hex() -> str:
    """A random (version 4) UUID as 32 hexadecimal digits, as ``uuid.uuid4().hex`` gives it."""
    return uuid.UUID(bytes=_POOL.take(16), version=4).hex
