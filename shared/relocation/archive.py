"""Exports as they arrive: plain JSON, gzip, or Sentry's encrypted archive, recognised by content.

The encrypted archive is a plain (uncompressed) tar of exactly three regular files:

- ``export.json``: the export, encrypted with Fernet under a fresh key (the *data key*);
- ``data.key``: the data key (its base64 text, as Fernet keys are written) encrypted with the RSA
  public key, OAEP with MGF1-SHA256 and SHA256, no label;
- ``key.pub``: that public key, PEM.

Reading never extracts: the tar headers are parsed by :mod:`tarfile` (extended headers bounded, sparse
members refused) and each expected member is read from its offset, after its name, type and size were
checked. Decryption streams (:mod:`shared.relocation.fernet_stream`): memory stays flat whatever the
export's size; the plaintext goes to a private file (mode 0600) in the caller's work directory and is
deleted unless the token's HMAC verified. The limits in :class:`ArchiveLimits` bound disk use and
refuse absurd members before anything is read. The key providers are in
:mod:`shared.relocation.archive_keys`, the errors in :mod:`shared.relocation.archive_errors`; both are
re-exported here.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Self

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.relocation import fernet_stream
from shared.relocation.archive_errors import (
    ArchiveError,
    ArchiveTruncated,
    ArchiveWriteFailed,
    DamagedArchive,
    DamagedGzip,
    DecryptorRequired,
    DuplicateMember,
    InputUnreadable,
    KeyConfigError,
    KmsFailed,
    KmsUnavailable,
    MemberTooLarge,
    MissingMember,
    NotARegularFile,
    PayloadInvalid,
    PayloadTooLarge,
    PlaintextChanged,
    UnexpectedMember,
    UnrecognisedInput,
    UnsafeMember,
    UnwrapFailed,
    WrongKey,
)
from shared.relocation.archive_keys import (
    OAEP,
    Decryptor,
    GcpKmsDecryptor,
    PrivateKeyDecryptor,
    PublicKeyHolder,
    load_public_key,
    rsa_public_key,
    spki_pem,
)
from shared.relocation.sniff import InputKind, Sniffed, sniff

__all__ = [
    "DEFAULT_LIMITS",
    "MEMBERS",
    "ArchiveError",
    "ArchiveLimits",
    "ArchiveTruncated",
    "ArchiveWriteFailed",
    "DamagedArchive",
    "DamagedGzip",
    "Decryptor",
    "DecryptorRequired",
    "DuplicateMember",
    "GcpKmsDecryptor",
    "InputUnreadable",
    "KeyConfigError",
    "KmsFailed",
    "KmsUnavailable",
    "MemberTooLarge",
    "MissingMember",
    "NotARegularFile",
    "PayloadInvalid",
    "PayloadTooLarge",
    "PlaintextChanged",
    "PrivateKeyDecryptor",
    "PublicKeyHolder",
    "UnexpectedMember",
    "UnrecognisedInput",
    "UnsafeMember",
    "UnwrapFailed",
    "WrongKey",
    "load_public_key",
    "plain_export",
    "write_encrypted_archive",
]

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
EXPORT_MEMBER = "export.json"
DATA_KEY_MEMBER = "data.key"
PUBLIC_KEY_MEMBER = "key.pub"
MEMBERS = (EXPORT_MEMBER, DATA_KEY_MEMBER, PUBLIC_KEY_MEMBER)
DECRYPT_HINT = "pass --decrypt-with PRIVATE_KEY.pem or --decrypt-with-gcp-kms CONFIG.json"
_CHUNK = 1 * MiB  # a multiple of 4, so that base64 chunks decode on their own
_BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class ArchiveLimits:
    """Size limits, checked from the tar headers before reading and enforced while reading."""

    #: ``data.key`` and ``key.pub`` (and tar extended headers).
    key_member_bytes: int = 64 * KiB
    #: ``export.json`` in the archive: the Fernet token, about 4/3 of the export's size.
    export_member_bytes: int = 11 * GiB
    #: The decrypted export, and the decompressed content of a gzip.
    payload_bytes: int = 8 * GiB

    def __post_init__(self) -> None:
        for name in ("key_member_bytes", "export_member_bytes", "payload_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ArchiveLimits.{name} must be positive")


DEFAULT_LIMITS = ArchiveLimits()


# --- the input as plain JSON (recognised by shared.relocation.sniff) ----------------------------------


def _private_file(workdir: Path, prefix: str) -> tuple[BinaryIO, Path]:
    fd, name = tempfile.mkstemp(dir=workdir, prefix=prefix, suffix=".json")  # mode 0600
    return os.fdopen(fd, "wb"), Path(name)


def _produce(workdir: Path, prefix: str, write: Callable[[BinaryIO], None]) -> Path:
    """A new private file in ``workdir`` filled by ``write``; removed if ``write`` raises."""
    stream, path = _private_file(workdir, prefix)
    try:
        with stream:
            write(stream)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def plain_export(
    path: Path,
    decryptor: Decryptor | None,
    workdir: Path,
    *,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> Path:
    """The plain JSON export held by ``path``, recognised by content: plain JSON (first non-whitespace
    byte ``[``, after an optional UTF-8 BOM) is ``path`` itself; a gzip is decompressed into ``workdir``
    and recognised again; a tar is an encrypted archive, decrypted with ``decryptor`` into a private
    file (mode 0600) in ``workdir``. ``name`` is how messages call the input (default: ``path``).
    Raises an :class:`ArchiveError` that names the file and member."""
    source = name if name is not None else str(path)
    sniffed = sniff(path, source)
    if sniffed.kind is InputKind.JSON:
        return path
    if sniffed.kind is InputKind.TAR:
        return _decrypt_archive(path, source, decryptor, workdir, limits)
    if sniffed.kind is not InputKind.GZIP:
        raise sniffed.error(source)
    inner = _gunzip(path, source, workdir, limits)
    inner_source = f"{source} (decompressed)"
    inner_sniffed = sniff(inner, inner_source)
    if inner_sniffed.kind is InputKind.JSON:
        return inner
    try:
        if inner_sniffed.kind is InputKind.TAR:
            return _decrypt_archive(inner, inner_source, decryptor, workdir, limits)
        if inner_sniffed.kind is InputKind.GZIP:
            inner_sniffed = Sniffed(None, "a gzip inside a gzip")
        raise inner_sniffed.error(inner_source)
    finally:
        inner.unlink(missing_ok=True)


def _gunzip(path: Path, source: str, workdir: Path, limits: ArchiveLimits) -> Path:
    def write(out: BinaryIO) -> None:
        total = 0
        with gzip.open(path, "rb") as compressed:
            while chunk := compressed.read(_CHUNK):
                total += len(chunk)
                if total > limits.payload_bytes:
                    raise PayloadTooLarge(
                        f"{source}: decompresses to more than {limits.payload_bytes:,} bytes (the limit)"
                    )
                out.write(chunk)

    try:
        return _produce(workdir, "decompressed-", write)
    except EOFError:
        raise DamagedGzip(f"{source}: the gzip stream is truncated") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DamagedGzip(f"{source}: damaged gzip ({exc})") from None
    except OSError as exc:
        raise InputUnreadable(f"{source}: cannot decompress ({exc.strerror or exc})") from None


# --- reading the archive -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    name: str
    offset: int
    size: int


_EXTENDED = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


def _bounded_tarinfo(source: str, limit: int) -> type[tarfile.TarInfo]:
    """A TarInfo that refuses, before :mod:`tarfile` reads them, extended headers over ``limit`` bytes
    and sparse members (whose maps tarfile would read in full)."""

    class BoundedTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            header = super().frombuf(buf, encoding, errors)
            if header.type == tarfile.GNUTYPE_SPARSE:
                raise NotARegularFile(
                    f"{source}: member {header.name!r} is a sparse file; an encrypted archive holds only "
                    "regular files"
                )
            if header.type in _EXTENDED and header.size > limit:
                raise MemberTooLarge(
                    f"{source}: the extended tar header {header.name!r} is {header.size:,} bytes, more than "
                    f"the limit of {limit:,}"
                )
            return header

    return BoundedTarInfo


def _describe_type(header: tarfile.TarInfo) -> str:
    if header.issym():
        return f"a symbolic link (to {header.linkname!r})"
    if header.islnk():
        return f"a hard link (to {header.linkname!r})"
    if header.isdir():
        return "a directory"
    if header.ischr() or header.isblk():
        return "a device"
    if header.isfifo():
        return "a FIFO"
    return f"of tar type {header.type!r}"


class _ArchiveReader:
    def __init__(self, raw: BinaryIO, source: str, limits: ArchiveLimits) -> None:
        self.raw, self.source, self.limits = raw, source, limits
        self.file_size = os.fstat(raw.fileno()).st_size

    def index(self) -> dict[str, _Member]:
        source = self.source
        found: dict[str, _Member] = {}
        if self.file_size < _BLOCK:
            raise ArchiveTruncated(f"{source}: the archive is truncated inside its first tar header")
        try:
            tar = tarfile.TarFile(
                fileobj=self.raw, mode="r", tarinfo=_bounded_tarinfo(source, self.limits.key_member_bytes)
            )
            while (header := tar.next()) is not None:
                member = self._check(header, found)
                found[member.name] = member
        except tarfile.ReadError as exc:
            raise DamagedArchive(f"{source}: not a readable tar ({exc})") from None
        complete = self._check_end(tar.offset)
        for name in MEMBERS:
            if name not in found:
                hint = "" if complete else " (the archive is truncated: it has no end-of-archive marker)"
                raise MissingMember(f"{source}: member {name!r} is missing{hint}")
        return found

    def _check(self, header: tarfile.TarInfo, found: dict[str, _Member]) -> _Member:
        source, name = self.source, header.name
        if header.size < 0:
            raise DamagedArchive(f"{source}: member {name!r} has a negative size; the archive is damaged")
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise UnsafeMember(
                f"{source}: member {name!r} has a path; an encrypted archive holds only the plain names "
                f"{', '.join(MEMBERS)}"
            )
        if not header.isfile():
            raise NotARegularFile(
                f"{source}: member {name!r} is {_describe_type(header)}; an encrypted archive holds only "
                "regular files"
            )
        if name not in MEMBERS:
            raise UnexpectedMember(
                f"{source}: unexpected member {name!r}; an encrypted archive holds only {', '.join(MEMBERS)}"
            )
        if name in found:
            raise DuplicateMember(f"{source}: member {name!r} appears more than once")
        limit = self.limits.export_member_bytes if name == EXPORT_MEMBER else self.limits.key_member_bytes
        if header.size > limit:
            raise MemberTooLarge(
                f"{source}: member {name!r} is {header.size:,} bytes, more than the limit of {limit:,}"
            )
        end = header.offset_data + header.size
        if end > self.file_size:
            raise ArchiveTruncated(
                f"{source}: the archive is truncated: member {name!r} needs {end:,} bytes, the file has "
                f"{self.file_size:,}"
            )
        return _Member(name, header.offset_data, header.size)

    def _check_end(self, offset: int) -> bool:
        """After the last member: zeros only (the end-of-archive marker and padding). Whether the marker
        is complete."""
        remaining = self.file_size - offset
        self.raw.seek(offset)
        block = self.raw.read(_BLOCK)
        if block.strip(b"\0"):
            if len(block) < _BLOCK:
                raise ArchiveTruncated(
                    f"{self.source}: the archive is truncated inside the tar header at offset {offset:,}"
                )
            raise DamagedArchive(f"{self.source}: the tar header at offset {offset:,} is damaged")
        return remaining >= 2 * _BLOCK

    def read(self, member: _Member) -> bytes:
        return b"".join(self.chunks(member))

    def chunks(self, member: _Member) -> Iterator[bytes]:
        self.raw.seek(member.offset)
        remaining = member.size
        while remaining > 0:
            chunk = self.raw.read(min(_CHUNK, remaining))
            if not chunk:
                raise ArchiveTruncated(
                    f"{self.source}: the archive is truncated inside member {member.name!r}"
                )
            remaining -= len(chunk)
            yield chunk


def _decrypt_archive(
    path: Path, source: str, decryptor: Decryptor | None, workdir: Path, limits: ArchiveLimits
) -> Path:
    if decryptor is None:
        raise DecryptorRequired(f"{source}: this is an encrypted archive; {DECRYPT_HINT}")
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InputUnreadable(f"{source}: cannot read ({exc.strerror or exc})") from None
    with raw:
        reader = _ArchiveReader(raw, source, limits)
        members = reader.index()
        public_pem = reader.read(members[PUBLIC_KEY_MEMBER])
        if isinstance(decryptor, PublicKeyHolder):
            _check_public_key(public_pem, decryptor, source)
        try:
            data_key = decryptor.unwrap_data_key(reader.read(members[DATA_KEY_MEMBER]))
        except UnwrapFailed as exc:
            raise WrongKey(f"{source}: this archive was encrypted for another key ({exc})") from None
        try:
            fernet_stream.split_key(data_key)
        except ValueError as exc:
            raise DamagedArchive(
                f"{source}: member {DATA_KEY_MEMBER!r} does not hold a Fernet key ({exc}); the archive is "
                "damaged"
            ) from None
        export = members[EXPORT_MEMBER]
        least, _ = fernet_stream.plaintext_bounds(export.size)
        if least > limits.payload_bytes:
            raise PayloadTooLarge(
                f"{source}: member {EXPORT_MEMBER!r} decrypts to at least {least:,} bytes, more than the "
                f"limit of {limits.payload_bytes:,}"
            )

        def write(out: BinaryIO) -> None:
            try:
                fernet_stream.decrypt_into(data_key, reader.chunks(export), out, limit=limits.payload_bytes)
            except fernet_stream.InvalidToken as exc:
                raise PayloadInvalid(
                    f"{source}: the data key does not decrypt the payload (the archive is damaged or was "
                    f"tampered with): member {EXPORT_MEMBER!r}: {exc}"
                ) from None
            except fernet_stream.PlaintextTooLarge:
                raise PayloadTooLarge(
                    f"{source}: member {EXPORT_MEMBER!r} decrypts to more than {limits.payload_bytes:,} "
                    "bytes (the limit)"
                ) from None

        try:
            plain = _produce(workdir, "decrypted-", write)
        except OSError as exc:
            raise InputUnreadable(f"{source}: cannot decrypt ({exc.strerror or exc})") from None
    sniffed = sniff(plain, source)
    if sniffed.kind is not InputKind.JSON:
        plain.unlink(missing_ok=True)
        raise UnrecognisedInput(
            f"{source}: the decrypted {EXPORT_MEMBER} is not a JSON list of records (found {sniffed.found})"
        )
    return plain


def _check_public_key(archive_pem: bytes, decryptor: PublicKeyHolder, source: str) -> None:
    try:
        theirs = serialization.load_pem_public_key(archive_pem)
    except (ValueError, UnsupportedAlgorithm):
        raise DamagedArchive(
            f"{source}: member {PUBLIC_KEY_MEMBER!r} is not a PEM public key; the archive is damaged"
        ) from None
    ours = serialization.load_pem_public_key(decryptor.public_key_pem())
    if not (
        isinstance(theirs, rsa.RSAPublicKey)
        and isinstance(ours, rsa.RSAPublicKey)
        and theirs.public_numbers() == ours.public_numbers()
    ):
        raise WrongKey(
            f"{source}: this archive was encrypted for another key (its {PUBLIC_KEY_MEMBER} is not the "
            f"public key of {decryptor})"
        )


# --- writing an archive --------------------------------------------------------------------------------


def _write_member(out: BinaryIO, name: str, size: int, chunks: Iterator[bytes], mtime: int) -> int:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    out.write(header)
    written = 0
    for chunk in chunks:
        out.write(chunk)
        written += len(chunk)
    if written != size:
        raise PlaintextChanged(f"member {name!r}: wrote {written:,} bytes instead of {size:,}")
    padding_bytes = -size % _BLOCK
    out.write(b"\0" * padding_bytes)
    return len(header) + size + padding_bytes


def write_encrypted_archive(plaintext: Path, public_key_pem: bytes, dest: Path) -> None:
    """Encrypt the export ``plaintext`` for ``public_key_pem`` into an archive Sentry reads, at ``dest``:
    a fresh Fernet data key, wrapped with RSA-OAEP-SHA256. Streams (memory stays flat); written to a
    temporary file (mode 0600) beside ``dest`` and renamed over it only when complete."""
    public = rsa_public_key(public_key_pem, "the public key")
    data_key = Fernet.generate_key()
    wrapped = public.encrypt(data_key, OAEP)
    key_pem = spki_pem(public)
    try:
        _write_archive(plaintext, data_key, wrapped, key_pem, dest)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise ArchiveWriteFailed(f"{dest}: cannot write the archive ({exc.strerror or exc}{where})") from None


def _write_archive(plaintext: Path, data_key: bytes, wrapped: bytes, key_pem: bytes, dest: Path) -> None:
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            with plaintext.open("rb") as source:
                length = os.fstat(source.fileno()).st_size
                mtime = int(time.time())
                try:
                    total = _write_member(
                        out,
                        EXPORT_MEMBER,
                        fernet_stream.token_length(length),
                        fernet_stream.encrypt_stream(data_key, source, length),
                        mtime,
                    )
                except fernet_stream.SourceChanged as exc:
                    raise PlaintextChanged(f"{plaintext}: changed while it was encrypted ({exc})") from None
            total += _write_member(out, DATA_KEY_MEMBER, len(wrapped), iter((wrapped,)), mtime)
            total += _write_member(out, PUBLIC_KEY_MEMBER, len(key_pem), iter((key_pem,)), mtime)
            total += 2 * _BLOCK
            out.write(b"\0" * (2 * _BLOCK + -total % tarfile.RECORDSIZE))
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(dest)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
