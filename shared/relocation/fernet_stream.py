"""Fernet tokens in bounded memory.

A Fernet token (https://github.com/fernet/spec) is the URL-safe base64 of
``0x80 | timestamp (8 bytes) | IV (16) | AES-128-CBC ciphertext (PKCS7) | HMAC-SHA256 (32)``, the HMAC
taken with the first half of the 32-byte key over everything before it, AES with the second half.
``cryptography.fernet.Fernet`` needs the whole token and the whole plaintext in memory; an export can be
gigabytes, so this module produces and checks the same tokens chunk by chunk from the same primitives.
The tokens are interchangeable with ``Fernet``'s (the tests check both directions).

Decryption writes plaintext to the sink before the HMAC at the end of the token has been checked: the
caller must treat the sink as garbage (and delete it) unless :func:`decrypt_into` returns.
"""

from __future__ import annotations

import binascii
import os
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

VERSION = b"\x80"
_HEADER = 1 + 8 + 16  # version, timestamp, IV
_MAC = 32
_BLOCK = 16
#: Bytes of plaintext read per step; a multiple of 3 so that base64 chunks concatenate cleanly.
CHUNK = 3 << 18
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


class InvalidToken(Exception):
    """The token is malformed, or its HMAC does not match under this key."""


class PlaintextTooLarge(Exception):
    """Decryption produced more than the caller's limit."""


class SourceChanged(Exception):
    """The plaintext file changed size while it was being encrypted."""


def split_key(key: bytes) -> tuple[bytes, bytes]:
    """The (signing, encryption) halves of a base64url Fernet key; ``ValueError`` if it is not one."""
    try:
        raw = binascii.a2b_base64(key.strip().translate(_FROM_URLSAFE), strict_mode=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64 ({exc})") from None
    if len(raw) != 32:
        raise ValueError(f"{len(raw)} bytes instead of 32")
    return raw[:16], raw[16:]


def token_length(plaintext_length: int) -> int:
    """The length in characters of the token for a plaintext of this many bytes."""
    raw = _HEADER + (plaintext_length // _BLOCK + 1) * _BLOCK + _MAC
    return 4 * -(-raw // 3)


def plaintext_bounds(token_chars: int) -> tuple[int, int]:
    """The least and most plaintext bytes a well-formed token of this many characters can hold."""
    decoded = token_chars // 4 * 3  # up to 2 bytes fewer with base64 padding
    ciphertext = decoded - _HEADER - _MAC
    return max(0, ciphertext - 2 - _BLOCK), max(0, ciphertext - 1)


class _Base64Encoder:
    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        cut = len(data) - len(data) % 3
        self._pending = data[cut:]
        return binascii.b2a_base64(data[:cut], newline=False).translate(_TO_URLSAFE)

    def finish(self) -> bytes:
        tail, self._pending = self._pending, b""
        return binascii.b2a_base64(tail, newline=False).translate(_TO_URLSAFE)


def encrypt_stream(key: bytes, source: BinaryIO, length: int) -> Iterator[bytes]:
    """The token for the next ``length`` bytes of ``source``, in chunks (exactly
    ``token_length(length)`` characters in all). Raises :class:`SourceChanged` if the source does not
    hold exactly ``length`` more bytes."""
    signing, encryption = split_key(key)
    iv = os.urandom(_BLOCK)
    header = VERSION + int(time.time()).to_bytes(8, "big") + iv
    mac = hmac.HMAC(signing, hashes.SHA256())
    mac.update(header)
    encryptor = Cipher(algorithms.AES(encryption), modes.CBC(iv)).encryptor()
    padder = padding.PKCS7(_BLOCK * 8).padder()
    encoder = _Base64Encoder()
    yield encoder.feed(header)
    remaining = length
    while remaining:
        data = source.read(min(CHUNK, remaining))
        if not data:
            raise SourceChanged(f"the file ended {remaining} bytes early")
        remaining -= len(data)
        ciphertext = encryptor.update(padder.update(data))
        mac.update(ciphertext)
        yield encoder.feed(ciphertext)
    if source.read(1):
        raise SourceChanged("the file grew")
    ciphertext = encryptor.update(padder.finalize()) + encryptor.finalize()
    mac.update(ciphertext)
    yield encoder.feed(ciphertext)
    yield encoder.feed(mac.finalize())
    yield encoder.finish()


class _Decrypter:
    """Consumes the decoded token; holds back the last 32 bytes (the HMAC candidate)."""

    def __init__(self, key: bytes, sink: BinaryIO, limit: int) -> None:
        signing, self._encryption = split_key(key)
        self._mac = hmac.HMAC(signing, hashes.SHA256())
        self._sink, self._limit = sink, limit
        self._header = b""
        self._held = b""
        self._decryptor: CipherContext | None = None
        self._unpadder = padding.PKCS7(_BLOCK * 8).unpadder()
        self.written = 0

    def feed(self, data: bytes) -> None:
        data = self._held + data
        body, self._held = data[:-_MAC], data[-_MAC:]
        if not body:
            return
        self._mac.update(body)
        if self._decryptor is None:
            self._header += body
            if len(self._header) < _HEADER:
                return
            if self._header[:1] != VERSION:
                raise InvalidToken("not a Fernet token (unknown version byte)")
            iv, body = self._header[9:_HEADER], self._header[_HEADER:]
            self._decryptor = Cipher(algorithms.AES(self._encryption), modes.CBC(iv)).decryptor()
        self._write(self._unpadder.update(self._decryptor.update(body)))

    def _write(self, plaintext: bytes) -> None:
        self.written += len(plaintext)
        if self.written > self._limit:
            raise PlaintextTooLarge(f"more than {self._limit} bytes")
        self._sink.write(plaintext)

    def finish(self) -> None:
        if self._decryptor is None or len(self._held) < _MAC:
            raise InvalidToken("the token is too short")
        try:
            self._mac.verify(self._held)
        except InvalidSignature:
            raise InvalidToken("the HMAC does not match") from None
        try:
            last = self._decryptor.finalize()
            self._write(self._unpadder.update(last) + self._unpadder.finalize())
        except ValueError:
            raise InvalidToken("the ciphertext is not padded correctly") from None


def decrypt_into(key: bytes, token_chunks: Iterable[bytes], sink: BinaryIO, *, limit: int) -> int:
    """Decrypt a token given in chunks (each a multiple of 4 characters, except possibly the last) into
    ``sink``; the number of plaintext bytes. Raises :class:`InvalidToken` for a malformed token or one
    made with another key, :class:`PlaintextTooLarge` past ``limit`` bytes, ``ValueError`` for a key
    that is not a Fernet key. Nothing written to ``sink`` may be used unless this returns."""
    decrypter = _Decrypter(key, sink, limit)
    pending = b""
    padded = False
    for chunk in token_chunks:
        data = pending + chunk
        cut = len(data) - len(data) % 4
        pending = data[cut:]
        if cut:
            if padded:
                raise InvalidToken("characters after the base64 padding")
            padded = data[cut - 1 : cut] == b"="
            decrypter.feed(_decode(data[:cut]))
    if pending:
        raise InvalidToken("the token's length is not a multiple of 4 characters")
    decrypter.finish()
    return decrypter.written


def _decode(chars: bytes) -> bytes:
    if b"+" in chars or b"/" in chars:
        raise InvalidToken("not URL-safe base64")
    try:
        return binascii.a2b_base64(chars.translate(_FROM_URLSAFE), strict_mode=True)
    except binascii.Error as exc:
        raise InvalidToken(f"not base64 ({exc})") from None
