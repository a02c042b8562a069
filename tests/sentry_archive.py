"""An independent implementation of Sentry's encrypted archive for tests, written from the format's
description with ``cryptography`` and ``tarfile`` directly (never siloport's code): a tar of
``export.json`` (the export as one Fernet token), ``data.key`` (the Fernet key, RSA-OAEP-SHA256) and
``key.pub`` (the PEM public key)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def new_private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def tar_of(members: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def archive_members(plaintext: bytes, public_key_pem: bytes) -> list[tuple[str, bytes]]:
    public = serialization.load_pem_public_key(public_key_pem)
    assert isinstance(public, rsa.RSAPublicKey)
    data_key = Fernet.generate_key()
    return [
        ("export.json", Fernet(data_key).encrypt(plaintext)),
        ("data.key", public.encrypt(data_key, OAEP)),
        ("key.pub", public_key_pem),
    ]


def encrypt(plaintext: bytes, public_key_pem: bytes) -> bytes:
    """An encrypted archive of ``plaintext`` for the public key, as Sentry writes it."""
    return tar_of(archive_members(plaintext, public_key_pem))


def encrypt_file(source: Path, public_key_pem: bytes, dest: Path) -> Path:
    dest.write_bytes(encrypt(source.read_bytes(), public_key_pem))
    return dest


def decrypt(archive: bytes, private_key_pem: bytes) -> bytes:
    """The export in an encrypted archive, as Sentry reads it."""
    private = serialization.load_pem_private_key(private_key_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        members = {}
        for info in tar.getmembers():
            extracted = tar.extractfile(info)
            assert extracted is not None
            members[info.name] = extracted.read()
    assert sorted(members) == ["data.key", "export.json", "key.pub"]
    data_key = private.decrypt(members["data.key"], OAEP)
    return Fernet(data_key).decrypt(members["export.json"])
