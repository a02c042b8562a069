"""``siloport control ...``: serve the control silo, migrate its database."""

from __future__ import annotations

import argparse

from control.bootstrap import bootstrap
from control.config import ControlSettings
from control.db.schema import MIGRATIONS
from shared import service
from shared.cli import add_server_arguments, env_default, rpc_settings
from shared.config import data_dir, parse_address, parse_region_addresses, sqlite_url
from shared.db.engine import describe, make_engine


def _database_url(args: argparse.Namespace) -> str:
    return args.db or env_default("SILOPORT_CONTROL_DB") or sqlite_url(data_dir() / "control.sqlite3")


def _add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL, postgresql://... or sqlite:///... (env SILOPORT_CONTROL_DB; "
        "default: SQLite file control.sqlite3 in $SILOPORT_DATA_DIR or ./.siloport)",
    )


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= count <= 64:
        raise argparse.ArgumentTypeError(f"must be between 0 and 64, got {count}")
    return count


def _serve(args: argparse.Namespace) -> int:
    parse_address(args.listen, what="--listen")
    settings = ControlSettings(
        db_url=_database_url(args),
        rpc=rpc_settings(args, server_threads=args.threads, shutdown_grace_s=args.grace),
        region_addresses=parse_region_addresses(
            args.region_addresses or env_default("SILOPORT_REGION_ADDRESSES")
        ),
        migrate=args.migrate,
        db_wait_s=args.db_wait,
        outbox_lease_s=args.outbox_lease,
        write_workers=args.write_workers,
    )
    app = bootstrap(settings)
    service.run(
        silo="control",
        listen=args.listen,
        registrars=[app.servicer.register],
        rpc=settings.rpc,
        prepare=app.prepare_database,
        on_stop=app.close,
        drain=app.slugs.drain_due,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    engine = make_engine(_database_url(args))
    try:
        before = MIGRATIONS.current(engine)
        MIGRATIONS.upgrade(engine, args.revision)
        print(f"control database {describe(engine)}: {before or 'empty'} -> {MIGRATIONS.current(engine)}")
    finally:
        engine.dispose()
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    control = commands.add_parser(
        "control", help="run and manage the control silo", description="Run and manage the control silo."
    )
    sub = control.add_subparsers(dest="control_command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="serve control's gRPC service",
        description="Serve control's gRPC service (and the standard health service). "
        "Health turns SERVING once the database is reachable and migrated.",
    )
    _add_database_argument(serve)
    serve.add_argument(
        "--region-addresses",
        metavar="NAME=HOST:PORT,...",
        help="where to call each region back (env SILOPORT_REGION_ADDRESSES)",
    )
    serve.add_argument(
        "--write-workers",
        type=_workers,
        default=env_default("SILOPORT_CONTROL_WRITE_WORKERS") or "0",  # parsed by _workers too
        metavar="N",
        help="write import batches in N worker processes, so that batches in flight together are "
        "written on several cores (PostgreSQL only; env SILOPORT_CONTROL_WRITE_WORKERS; "
        "default %(default)s: in the server's own process)",
    )
    add_server_arguments(serve)
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="bring the control database's schema up to date")
    _add_database_argument(migrate)
    migrate.add_argument("--revision", default="head", help="target revision (default %(default)s)")
    migrate.set_defaults(func=_migrate)
