"""``siloport keys generate``: an RSA key pair for encrypted archives, without openssl recipes."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.cli import CliError
from shared.relocation.archive_keys import spki_pem

DEFAULT_BITS = 4096
MIN_BITS = 2048
MAX_BITS = 16384


def fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """SHA256 of the key's DER SubjectPublicKeyInfo, in hex: compare it to identify a key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def _write_new(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    """Write ``data`` to a new file with ``mode``; with ``force`` replace an existing one atomically (a
    temporary file beside it, renamed), so the old file's looser mode never carries over."""
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if force else path
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise CliError(f"{path}: already exists; pass --force to replace it") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot create ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if force:
            target.replace(path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _generate(args: argparse.Namespace) -> int:
    private_path, public_path = Path(args.private), Path(args.public)
    if args.bits < MIN_BITS or args.bits > MAX_BITS:
        raise CliError(f"--bits must be between {MIN_BITS} and {MAX_BITS} (got {args.bits})")
    if private_path.resolve() == public_path.resolve():
        raise CliError("--private and --public must be different files")
    for path in (private_path, public_path):
        if not args.force and (path.exists() or path.is_symlink()):
            raise CliError(f"{path}: already exists; pass --force to replace it")
        if not path.parent.is_dir():
            raise CliError(f"{path}: no such directory {str(path.parent)!r}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=args.bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = spki_pem(key.public_key())
    _write_new(private_path, private_pem, 0o600, force=args.force)
    try:
        _write_new(public_path, public_pem, 0o644, force=args.force)
    except BaseException:
        with contextlib.suppress(OSError):
            private_path.unlink()
        raise
    out = sys.stdout
    print(f"private key: {private_path} (RSA {args.bits} bits, mode 0600; keep it secret)", file=out)
    print(f"public key:  {public_path} ({fingerprint(key.public_key())})", file=out)
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser(
        "keys",
        help="make the RSA key pair that encrypted export archives use",
        description="Key pairs for encrypted export archives: an archive is encrypted for a public key "
        "and decrypted with its private key (siloport import --decrypt-with PRIVATE_KEY.pem).",
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate = actions.add_parser(
        "generate",
        help="write a new RSA private key and its public key as PEM files",
        description="Generate an RSA key pair: the private key as unencrypted PKCS8 PEM, created with "
        "file mode 0600, and the public key as SubjectPublicKeyInfo PEM. Give the public key to whoever "
        "exports (and encrypts) the data; keep the private key to import it. Existing files are not "
        "replaced unless --force is given.",
    )
    generate.add_argument("--private", required=True, metavar="PATH", help="where to write the private key")
    generate.add_argument("--public", required=True, metavar="PATH", help="where to write the public key")
    generate.add_argument(
        "--bits",
        type=int,
        default=DEFAULT_BITS,
        help=f"RSA key size, {MIN_BITS} to {MAX_BITS} (default %(default)s)",
    )
    generate.add_argument("--force", action="store_true", help="replace existing files")
    generate.set_defaults(func=_generate)
