"""The ``siloport`` command. Each silo adds its own commands through the ``siloport.commands`` entry
point group, so this module never imports a silo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from shared.config import RpcSettings, TlsFiles, resolve_secrets
from shared.errors import SharedError

ENTRY_POINT_GROUP = "siloport.commands"
Command = Callable[[argparse.Namespace], int]


class CliError(SharedError):
    """A command cannot run as asked; the message says why and what to do."""


def env_default(name: str, fallback: str | None = None) -> str | None:
    return os.environ.get(name) or fallback


def add_rpc_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for signing and TLS, shared by every command that talks to a silo."""
    group = parser.add_argument_group("RPC security")
    group.add_argument(
        "--rpc-secrets",
        metavar="S1,S2",
        help="shared secrets, comma separated: the first signs, all verify "
        "(env SILOPORT_RPC_SECRETS; default: a random secret kept in the data directory)",
    )
    group.add_argument(
        "--tls-cert",
        type=Path,
        default=env_default("SILOPORT_TLS_CERT"),
        help="PEM certificate this process presents (env SILOPORT_TLS_CERT)",
    )
    group.add_argument(
        "--tls-key",
        type=Path,
        default=env_default("SILOPORT_TLS_KEY"),
        help="PEM private key of --tls-cert (env SILOPORT_TLS_KEY)",
    )
    group.add_argument(
        "--tls-ca",
        type=Path,
        default=env_default("SILOPORT_TLS_CA"),
        help="PEM CA: servers require client certificates signed by it (mTLS), clients "
        "verify servers with it; without it calls are plaintext (env SILOPORT_TLS_CA)",
    )


def rpc_settings(args: argparse.Namespace, **overrides: object) -> RpcSettings:
    tls = TlsFiles(
        cert=Path(args.tls_cert) if args.tls_cert else None,
        key=Path(args.tls_key) if args.tls_key else None,
        ca=Path(args.tls_ca) if args.tls_ca else None,
    )
    return RpcSettings(secrets=resolve_secrets(args.rpc_secrets), tls=tls, **overrides)  # type: ignore[arg-type]


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {value!r}")
    return seconds


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=env_default("SILOPORT_LISTEN", "127.0.0.1:0"),
        help="address to serve on; port 0 picks a free port (default %(default)s). "
        "The first line printed is '<silo> listening on HOST:PORT'",
    )
    parser.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="do not migrate the database on start; refuse to serve if it is not current",
    )
    parser.add_argument(
        "--db-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the database to become reachable (default %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=16, help="RPC worker threads (default %(default)s)")
    parser.add_argument(
        "--outbox-lease",
        type=_positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long an outbox drainer's claim on a shard lasts unless renewed: a crashed drainer's "
        "shard waits this long before another drainer takes it; keep it above the RPC deadline "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time in-flight calls get to finish on SIGTERM (default %(default)s)",
    )
    add_rpc_arguments(parser)
    parser.set_defaults(log_level=logging.INFO)  # servers log their life on stderr


def _command_named(argv: Sequence[str] | None) -> str | None:
    """The command ``argv`` names (the first word that is not an option: the top-level parser's only
    option, -v, takes no value), or None."""
    words = sys.argv[1:] if argv is None else argv
    return next((word for word in words if not word.startswith("-")), None)


def build_parser(
    extra: Sequence[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = (),
    *,
    argv: Sequence[str] | None = (),
) -> argparse.ArgumentParser:
    """The ``siloport`` parser. Given the command line in ``argv``, only the plug-in whose entry point
    has the name of the command it names is loaded (a silo's command modules may load its database
    layer and gRPC stubs: most of a second), all commands otherwise, so that help and errors list
    every command."""
    parser = argparse.ArgumentParser(
        prog="siloport",
        description="Relocate Sentry-format exports into a control silo and region silos. "
        "Run a silo with 'siloport control serve' / 'siloport region serve'; "
        "try it locally with 'siloport up --once'.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    plugins = entry_points(group=ENTRY_POINT_GROUP)
    named = _command_named(argv) if argv != () else None
    chosen = [plugin for plugin in plugins if plugin.name == named]
    for plugin in chosen or plugins:
        plugin.load()(commands)
    for register in extra:
        register(commands)
    if chosen:
        return parser  # a silo's command: the commands below (and the launcher's gRPC) are not needed
    from shared import keys_cli, launcher  # noqa: PLC0415 - avoids an import cycle: both use this module

    keys_cli.register(commands)
    launcher.register(commands)
    from shared import compare_cli  # noqa: PLC0415 - avoids an import cycle: compare_cli uses this module

    compare_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv=argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=max(logging.DEBUG, getattr(args, "log_level", logging.WARNING) - 10 * args.verbose),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    func: Command = args.func
    try:
        return func(args)
    except SharedError as exc:
        print(f"siloport: error: {exc}", file=sys.stderr)
        code: int = getattr(exc, "exit_code", 2)
        return code
    except KeyboardInterrupt:
        print("siloport: interrupted", file=sys.stderr)
        return 130


def run_module(silo: str) -> None:
    """``python -m control`` / ``python -m region``: the silo's own commands."""
    sys.exit(main([silo, *sys.argv[1:]]))
