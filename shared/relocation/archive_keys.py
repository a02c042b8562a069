"""Key providers for encrypted archives: what unwraps an archive's data key (an RSA private key file,
or Cloud KMS), and the checks on key files."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.relocation.archive_errors import KeyConfigError, KmsFailed, KmsUnavailable, UnwrapFailed

#: How the data key is wrapped with RSA: OAEP with MGF1-SHA256 and SHA256, no label.
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
GCP_INSTALL_HINT = "pip install 'siloport[gcp]'"
#: Key files larger than this are not key files.
MAX_KEY_FILE_BYTES = 1 << 20


class Decryptor(Protocol):
    """Unwraps an archive's data key. Implementations raise :class:`UnwrapFailed` when their key did not
    wrap it, and :class:`KeyConfigError` when the key itself is unusable."""

    def unwrap_data_key(self, wrapped: bytes) -> bytes: ...


@runtime_checkable
class PublicKeyHolder(Protocol):
    """A decryptor that knows its public key: an archive for another key is refused before unwrapping."""

    def public_key_pem(self) -> bytes: ...


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyConfigError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyConfigError(f"{path}: more than {MAX_KEY_FILE_BYTES:,} bytes; not a {what}")
    return data


def spki_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def rsa_public_key(data: bytes, where: str) -> rsa.RSAPublicKey:
    if b"PRIVATE KEY-----" in data:
        raise KeyConfigError(f"{where}: holds a private key; give the public key (PEM)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyConfigError(f"{where}: not a PEM RSA public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyConfigError(f"{where}: a {type(key).__name__.removeprefix('_')} key, not RSA")
    return key


def load_public_key(path: Path) -> bytes:
    """The RSA public key in a PEM file, as SubjectPublicKeyInfo PEM; :class:`KeyConfigError` if the
    file is not one."""
    return spki_pem(rsa_public_key(_read_key_file(path, "public key"), str(path)))


class PrivateKeyDecryptor:
    """Unwraps with an RSA private key from an unencrypted PEM file (PKCS8 or PKCS1)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = _read_key_file(path, "private key")
        if b"PRIVATE KEY-----" not in data and b"PUBLIC KEY-----" in data:
            raise KeyConfigError(f"{path}: holds a public key; decrypting takes the private key (PEM)")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise KeyConfigError(
                f"{path}: the private key is protected by a passphrase; siloport reads unencrypted PEM "
                "keys (write one with 'siloport keys generate')"
            ) from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyConfigError(f"{path}: not a PEM RSA private key ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyConfigError(f"{path}: not a PEM RSA private key (a {type(key).__name__} key)")
        self._key = key

    def __str__(self) -> str:
        return str(self.path)

    def public_key_pem(self) -> bytes:
        return spki_pem(self._key.public_key())

    def unwrap_data_key(self, wrapped: bytes) -> bytes:
        try:
            return self._key.decrypt(wrapped, OAEP)
        except ValueError:
            raise UnwrapFailed(f"data.key does not decrypt with {self.path}") from None


@dataclass(frozen=True)
class KmsKeyVersion:
    """The Cloud KMS crypto key version named by Sentry's KMS config file."""

    project_id: str
    location: str
    key_ring: str
    key: str
    version: str

    @property
    def name(self) -> str:
        return (
            f"projects/{self.project_id}/locations/{self.location}/keyRings/{self.key_ring}"
            f"/cryptoKeys/{self.key}/cryptoKeyVersions/{self.version}"
        )

    @classmethod
    def from_file(cls, path: Path) -> Self:
        data = _read_key_file(path, "KMS config")
        try:
            config = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeyConfigError(f"{path}: not a JSON KMS config ({exc})") from None
        if not isinstance(config, dict):
            raise KeyConfigError(f"{path}: a KMS config is a JSON object")
        values: dict[str, str] = {}
        for field in ("project_id", "location", "key_ring", "key", "version"):
            value = config.get(field)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not value or "/" in value:
                raise KeyConfigError(f"{path}: KMS config needs {field!r} (a non-empty name)")
            values[field] = value
        return cls(**values)


class GcpKmsDecryptor:
    """Unwraps with Cloud KMS: an asymmetric-decrypt call to the key version in Sentry's KMS config file
    (``project_id``, ``location``, ``key_ring``, ``key``, ``version``). Needs the optional
    ``google-cloud-kms`` (``pip install 'siloport[gcp]'``) and Google application credentials."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.key_version = KmsKeyVersion.from_file(config_path)
        try:
            self._kms: Any = importlib.import_module("google.cloud.kms")
        except ImportError:
            raise KmsUnavailable(
                f"decrypting with Cloud KMS needs the Google Cloud KMS client: {GCP_INSTALL_HINT}"
            ) from None
        self._client: Any = None

    def __str__(self) -> str:
        return self.key_version.name

    def unwrap_data_key(self, wrapped: bytes) -> bytes:
        api: Any = importlib.import_module("google.api_core.exceptions")
        auth: Any = importlib.import_module("google.auth.exceptions")
        name = self.key_version.name
        try:
            if self._client is None:
                self._client = self._kms.KeyManagementServiceClient()
            response = self._client.asymmetric_decrypt(request={"name": name, "ciphertext": wrapped})
        except api.InvalidArgument as exc:
            raise UnwrapFailed(f"data.key does not decrypt with KMS key {name} ({exc})") from None
        except (api.GoogleAPICallError, auth.GoogleAuthError) as exc:
            raise KmsFailed(f"Cloud KMS ({name}, from {self.config_path}): {exc}") from None
        return bytes(response.plaintext)
