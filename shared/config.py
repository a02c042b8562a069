"""Settings both silos share, and the parsing of their flags and environment variables.

Settings are built once, in each silo's CLI, from flags first and environment variables second.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigError

DATA_DIR_ENV = "SILOPORT_DATA_DIR"
SECRETS_ENV = "SILOPORT_RPC_SECRETS"
SECRET_FILE_NAME = "rpc-secret"  # noqa: S105 - a file name, not a secret
MIN_SECRET_LENGTH = 16


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the embedded default keeps its files: ``$SILOPORT_DATA_DIR`` or ``./.siloport``."""
    return Path(environ.get(DATA_DIR_ENV) or Path.cwd() / ".siloport")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def parse_address(value: str, *, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) to a pair; a clear error naming ``what`` otherwise."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{what}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port_text)


def parse_region_addresses(value: str | None) -> dict[str, str]:
    """``name=host:port,name=host:port`` (the format of ``SILOPORT_REGION_ADDRESSES``)."""
    result: dict[str, str] = {}
    for raw in (value or "").split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, address = item.partition("=")
        name, address = name.strip(), address.strip()
        if not sep or not name or not address:
            raise ConfigError(f"SILOPORT_REGION_ADDRESSES: expected name=host:port, got {item!r}")
        parse_address(address, what=f"address of region {name!r}")
        if name in result:
            raise ConfigError(f"SILOPORT_REGION_ADDRESSES: region {name!r} is listed twice")
        result[name] = address
    return result


def parse_secrets(value: str) -> tuple[bytes, ...]:
    """A comma list of shared secrets: the first signs, every one verifies (rotation)."""
    items = tuple(s.strip() for s in value.split(",") if s.strip())
    if not items:
        raise ConfigError(f"{SECRETS_ENV}: no secret given")
    short = [i for i, s in enumerate(items) if len(s) < MIN_SECRET_LENGTH]
    if short:
        raise ConfigError(
            f"{SECRETS_ENV}: secret number {short[0] + 1} is shorter than {MIN_SECRET_LENGTH} characters"
        )
    return tuple(s.encode() for s in items)


def load_or_create_local_secret(directory: Path) -> tuple[bytes, ...]:
    """The embedded default's secret: one random secret in ``<data dir>/rpc-secret`` (mode 0600),
    created on first use so that both local silos share it with nothing configured."""
    path = directory / SECRET_FILE_NAME
    directory.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return parse_secrets(path.read_text())


def resolve_secrets(flag: str | None, environ: Mapping[str, str] = os.environ) -> tuple[bytes, ...]:
    """Secrets from the flag, else ``SILOPORT_RPC_SECRETS``, else the embedded default's file."""
    value = flag or environ.get(SECRETS_ENV)
    if value:
        return parse_secrets(value)
    return load_or_create_local_secret(data_dir(environ))


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for TLS. A server with ``ca`` requires client certificates signed by it (mTLS);
    a client with ``ca`` verifies the server against it and presents ``cert``/``key`` if given."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("TLS: --tls-cert and --tls-key go together")
        for path in (self.cert, self.key, self.ca):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS: file not found: {path}")

    @property
    def server_enabled(self) -> bool:
        return self.cert is not None

    @property
    def client_enabled(self) -> bool:
        return self.ca is not None


@dataclass(frozen=True)
class RpcSettings:
    """How a silo signs, verifies and times its RPCs."""

    #: Shared secrets; the first signs, all verify.
    secrets: tuple[bytes, ...] = field(repr=False)
    #: How far a request's timestamp may be from the receiver's clock, in seconds.
    replay_window_s: float = 300.0
    #: Deadline of an outbound call when the caller gives none and no inbound deadline applies.
    default_timeout_s: float = 30.0
    #: Attempts of an idempotent call that fails with UNAVAILABLE.
    max_attempts: int = 5
    #: First backoff between attempts; it doubles up to ``max_backoff_s``.
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    #: Worker threads of the gRPC server (callbacks are served while other threads wait on a peer).
    server_threads: int = 16
    #: Seconds in-flight calls get to finish on SIGTERM.
    shutdown_grace_s: float = 10.0
    tls: TlsFiles = field(default_factory=TlsFiles)
