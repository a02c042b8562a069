"""HMAC-SHA256 request signing between silos.

Every RPC (the standard health service excepted) carries the metadata entry
``x-siloport-signature: v1:<unix time>:<nonce hex>:<hmac hex>``; the MAC covers the full method name,
the timestamp, the nonce and the exact serialized request. The receiver accepts a signature made with
any of its secrets (rotation), refuses timestamps outside its replay window and refuses a nonce it has
already seen within that window, so a captured call cannot be replayed.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

SIGNATURE_KEY = "x-siloport-signature"
VERSION = "v1"
NONCE_BYTES = 16


def _mac(secret: bytes, method: str, timestamp: str, nonce: str, body: bytes) -> str:
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in (VERSION, method, timestamp, nonce):
        mac.update(part.encode())
        mac.update(b"\n")
    mac.update(body)
    return mac.hexdigest()


class _Refused(Exception):
    """Why a signature is refused (internal to the verifier)."""


@dataclass(frozen=True)
class Signer:
    """Signs outbound calls with the first secret."""

    secrets: Sequence[bytes] = field(repr=False)
    clock: Callable[[], float] = time.time

    def metadata(self, method: str, body: bytes) -> tuple[tuple[str, str], ...]:
        timestamp = str(int(self.clock()))
        nonce = secrets.token_hex(NONCE_BYTES)
        signature = _mac(self.secrets[0], method, timestamp, nonce, body)
        return ((SIGNATURE_KEY, f"{VERSION}:{timestamp}:{nonce}:{signature}"),)


class Verifier:
    """Checks inbound signatures; remembers nonces for the replay window."""

    def __init__(
        self, secrets: Sequence[bytes], *, window_s: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._secrets = tuple(secrets)
        self._window = window_s
        self._clock = clock
        self._seen: set[str] = set()
        self._expiries: list[tuple[float, str]] = []  # heap of (expiry, nonce)
        self._lock = threading.Lock()

    def check(self, method: str, metadata: Sequence[tuple[str, str | bytes]], body: bytes) -> str | None:
        """None when the call is authentic, else the reason it is refused (safe to show the caller)."""
        try:
            self._verify(method, metadata, body)
        except _Refused as refusal:
            return str(refusal)
        return None

    def _verify(self, method: str, metadata: Sequence[tuple[str, str | bytes]], body: bytes) -> None:
        values = [v for k, v in metadata if k == SIGNATURE_KEY]
        if len(values) != 1:
            raise _Refused(f"expected one {SIGNATURE_KEY} metadata entry, got {len(values)}")
        value = values[0]
        parts = (value.decode(errors="replace") if isinstance(value, bytes) else value).split(":")
        if (
            len(parts) != 4
            or parts[0] != VERSION
            or not parts[1].isdigit()
            or len(parts[2]) != 2 * NONCE_BYTES
        ):
            raise _Refused("malformed signature")
        _, timestamp, nonce, signature = parts
        if not any(
            hmac.compare_digest(_mac(secret, method, timestamp, nonce, body), signature)
            for secret in self._secrets
        ):
            raise _Refused("signature does not match (wrong secret, or the request was altered)")
        now = self._clock()
        if abs(now - int(timestamp)) > self._window:
            raise _Refused(
                f"stale request: timestamp is {int(now) - int(timestamp)} s from this server's clock"
            )
        with self._lock:
            self._forget_expired(now)
            if nonce in self._seen:
                raise _Refused("replayed request: this signature was already used")
            self._seen.add(nonce)
            heapq.heappush(self._expiries, (int(timestamp) + self._window, nonce))

    def _forget_expired(self, now: float) -> None:
        # A nonce whose timestamp has left the window is refused as stale anyway.
        while self._expiries and self._expiries[0][0] < now:
            self._seen.discard(heapq.heappop(self._expiries)[1])
