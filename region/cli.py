"""``siloport region ...``: serve a region silo, migrate its database, probe it."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from dataclasses import dataclass

from region.config import RegionSettings
from shared.cli import CliError, add_rpc_arguments, add_server_arguments, env_default, rpc_settings
from shared.config import data_dir, parse_address, sqlite_url
from shared.relocation.spec import ImportScope

# The database layer, gRPC and the launcher are imported by the commands that use them, not here: the
# import command's check pass starts before they are loaded (region/import_cli.py).


def _database_url(args: argparse.Namespace) -> str:
    return (
        args.db or env_default("SILOPORT_REGION_DB") or sqlite_url(data_dir() / f"region-{args.name}.sqlite3")
    )


def add_region_database_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        default=env_default("SILOPORT_REGION_NAME", "local"),
        help="this region's name (env SILOPORT_REGION_NAME; default %(default)s)",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL, postgresql://... or sqlite:///... (env SILOPORT_REGION_DB; "
        "default: SQLite file region-NAME.sqlite3 in $SILOPORT_DATA_DIR or ./.siloport)",
    )


@dataclass(frozen=True)
class ScopeFilters:
    scope: ImportScope
    filter_usernames: frozenset[str] | None
    filter_org_slugs: frozenset[str] | None


def scope_filters(args: argparse.Namespace, verb: str) -> ScopeFilters:
    """The scope and filters of ``import``/``export``: each filter goes with its scope, and (Sentry's
    rule) an empty value means no filter; otherwise split on commas as given."""
    scope = ImportScope(args.scope)
    if args.filter_usernames and scope is not ImportScope.USERS:
        raise CliError(f"--filter-usernames goes with '{verb} users'")
    if args.filter_org_slugs and scope is not ImportScope.ORGANIZATIONS:
        raise CliError(f"--filter-org-slugs goes with '{verb} organizations'")

    def split(value: str | None) -> frozenset[str] | None:
        return None if not value else frozenset(value.split(","))

    return ScopeFilters(scope, split(args.filter_usernames), split(args.filter_org_slugs))


def control_address(args: argparse.Namespace) -> str | None:
    """The control silo's address the flags or the environment give (None: none is given)."""
    return getattr(args, "control_address", None) or env_default("SILOPORT_CONTROL_ADDRESS")


def control_or_local(args: argparse.Namespace, stack: ExitStack) -> None:
    """Use the control silo the flags or environment name; with none, start the embedded default (a
    local control silo and region on SQLite) for the length of ``stack`` and point ``args`` at it."""
    if control_address(args):
        return
    from shared.launcher import LocalSilos  # noqa: PLC0415 - see the imports

    silos = LocalSilos.start(data_dir(), region_name=args.name)
    stack.callback(silos.stop)
    args.control_address = silos.control.address


def settings_from(args: argparse.Namespace, *, migrate: bool = True) -> RegionSettings:
    control = control_address(args)
    if control:
        parse_address(control, what="--control-address")
    return RegionSettings(
        name=args.name,
        db_url=_database_url(args),
        control_address=control,
        rpc=rpc_settings(
            args, server_threads=getattr(args, "threads", 16), shutdown_grace_s=getattr(args, "grace", 10.0)
        ),
        migrate=migrate,
        db_wait_s=getattr(args, "db_wait", 30.0),
        outbox_lease_s=getattr(args, "outbox_lease", 60.0),
    )


def _serve(args: argparse.Namespace) -> int:
    from region.bootstrap import bootstrap  # noqa: PLC0415 - see the imports
    from shared import service  # noqa: PLC0415

    parse_address(args.listen, what="--listen")
    app = bootstrap(settings_from(args, migrate=args.migrate))
    service.run(
        silo="region",
        listen=args.listen,
        registrars=[app.servicer.register],
        rpc=app.settings.rpc,
        prepare=app.prepare_database,
        on_stop=app.close,
        drain=app.organizations.drain_due,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from region.db.schema import MIGRATIONS  # noqa: PLC0415 - see the imports
    from shared.db.engine import describe, make_engine  # noqa: PLC0415

    engine = make_engine(_database_url(args))
    try:
        before = MIGRATIONS.current(engine)
        MIGRATIONS.upgrade(engine, args.revision)
        print(f"region database {describe(engine)}: {before or 'empty'} -> {MIGRATIONS.current(engine)}")
    finally:
        engine.dispose()
    return 0


def _ping(args: argparse.Namespace) -> int:
    from shared.launcher import ping_round_trip  # noqa: PLC0415 - see the imports

    parse_address(args.address, what="ADDRESS")
    print(ping_round_trip(args.address, rpc_settings(args), timeout_s=args.timeout))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    region = commands.add_parser(
        "region", help="run and manage a region silo", description="Run and manage a region silo."
    )
    sub = region.add_subparsers(dest="region_command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="serve the region's gRPC service",
        description="Serve the region's gRPC service (and the standard health service). "
        "Health turns SERVING once the database is reachable and migrated.",
    )
    add_region_database_arguments(serve)
    serve.add_argument(
        "--control-address", metavar="HOST:PORT", help="the control silo (env SILOPORT_CONTROL_ADDRESS)"
    )
    add_server_arguments(serve)
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="bring the region database's schema up to date")
    add_region_database_arguments(migrate)
    migrate.add_argument("--revision", default="head", help="target revision (default %(default)s)")
    migrate.set_defaults(func=_migrate)

    ping = sub.add_parser(
        "ping",
        help="round trip region -> control -> region and print the hops",
        description="Ask the region at ADDRESS to Ping control, which calls the region back; "
        "prints the silos crossed.",
    )
    ping.add_argument("address", metavar="ADDRESS", help="HOST:PORT of the region")
    ping.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds (default %(default)s)")
    add_rpc_arguments(ping)
    ping.set_defaults(func=_ping)
