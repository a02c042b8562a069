"""``siloport export users|organizations|config|global DEST``: export this region and control."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from region.bootstrap import bootstrap
from region.cli import add_region_database_arguments, control_or_local, scope_filters, settings_from
from region.db.exports import RegionRows
from region.exporter.console import ConsoleExportProgress
from region.exporter.engine import Exporter, ExportSummary
from region.exporter.options import DEFAULT_PAGE_SIZE, ExportOptions
from region.exporter.ports import RowSource
from region.rpc.export_client import ControlRows
from shared.cli import CliError, add_rpc_arguments
from shared.relocation.archive import load_public_key, write_encrypted_archive
from shared.relocation.spec import ImportScope, Silo

SCOPE_HELP = {
    ImportScope.USERS: "users and what they own",
    ImportScope.ORGANIZATIONS: "organizations, their members, teams, projects, keys, and their users",
    ImportScope.CONFIG: "instance configuration and the globally privileged users",
    ImportScope.GLOBAL: "everything (for a full restore)",
}


def options_from(args: argparse.Namespace) -> ExportOptions:
    chosen = scope_filters(args, "export")
    if args.page_size < 1:
        raise CliError("--page-size must be at least 1")
    return ExportOptions(
        scope=chosen.scope,
        filter_usernames=chosen.filter_usernames,
        filter_org_slugs=chosen.filter_org_slugs,
        page_size=args.page_size,
    )


def _sources(args: argparse.Namespace, stack: ExitStack) -> dict[Silo, RowSource]:
    """Region models from the region database, control models from control over gRPC."""
    control_or_local(args, stack)
    # An export only reads: it refuses a database that is not migrated instead of migrating it.
    app = bootstrap(settings_from(args, migrate=False))
    stack.callback(app.close)
    app.prepare_database()
    assert app.settings.control_address is not None
    control = ControlRows(app.settings.control_address, settings=app.settings.rpc)
    stack.callback(control.close)
    return {Silo.REGION: RegionRows(app.engine), Silo.CONTROL: control}


@contextmanager
def _destination(dest: str) -> Iterator[tuple[Path, Path]]:
    """(work directory, path to write the finished export to). For a file, the work directory is
    beside it and the export appears at ``dest`` only when complete; for ``-`` the finished export is
    copied to standard output. Either way a failed export leaves nothing behind."""
    if dest == "-":
        with tempfile.TemporaryDirectory(prefix="siloport-export-") as work:
            target = Path(work) / "export"
            yield Path(work), target
            with target.open("rb") as finished:
                shutil.copyfileobj(finished, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        return
    path = Path(dest)
    if not path.parent.is_dir():
        raise CliError(f"{dest}: no such directory {str(path.parent)!r}")
    if path.is_dir():
        raise CliError(f"{dest}: is a directory; give the export's file name")
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as work:
        yield Path(work), path


def _run(args: argparse.Namespace) -> int:
    options = options_from(args)
    public_key = load_public_key(Path(args.encrypt_with)) if args.encrypt_with else None
    with ExitStack() as stack:
        sources = _sources(args, stack)
        exporter = Exporter(
            options, sources=sources, progress=ConsoleExportProgress(sys.stderr, enabled=not args.silent)
        )
        with _destination(args.dest) as (work, target):
            plain = work / "export.json"
            # Mode 0600: an export holds password hashes and secrets.
            plain.touch(mode=0o600, exist_ok=False)
            with plain.open("w", encoding="utf-8", newline="") as out:
                summary = exporter.run(out)
            if public_key is not None:
                write_encrypted_archive(plain, public_key, target)
            else:
                plain.replace(target)
        if not args.silent:
            _print_summary(summary, args)
    return 0


def _print_summary(summary: ExportSummary, args: argparse.Namespace) -> None:
    where = "standard output" if args.dest == "-" else args.dest
    models = sum(1 for count in summary.models.values() if count)
    encrypted = f", encrypted for {args.encrypt_with}" if args.encrypt_with else ""
    sys.stderr.write(
        f"exported {summary.instances:,} instances of {models} models ({args.scope} scope) "
        f"to {where}{encrypted}\n"
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "export",
        help="export this region and control as a Sentry export",
        description="Export the models of a scope from this region and the control silo as a Sentry-format "
        "export (a JSON list of {model, pk, fields}), in dependency order, streamed a page at a time. "
        "Region models are read from the region database, control models from control over gRPC. "
        "The export appears at DEST only once complete. With no control address it runs on the "
        "embedded default: a local control silo and region on SQLite.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scopes:\n"
        + "\n".join(f"  {s.value:<14} {text}" for s, text in SCOPE_HELP.items())
        + "\n\nexit codes: 0 done, 2 usage or configuration, 4 a silo refused a read, 5 control unreachable",
    )
    parser.add_argument("scope", choices=[s.value for s in ImportScope], help="what the export holds")
    parser.add_argument("dest", metavar="DEST", help="the export file to write, or - for standard output")
    parser.add_argument("--filter-usernames", metavar="A,B", help="users scope: export only these users")
    parser.add_argument(
        "--filter-org-slugs",
        metavar="A,B",
        help="organizations scope: export only these organizations, their members and their users",
    )
    parser.add_argument(
        "--encrypt-with",
        metavar="PUBLIC_KEY.pem",
        help="write an encrypted archive (Sentry's format) for this RSA public key",
    )
    parser.add_argument("--silent", action="store_true", help="print nothing but errors")
    parser.add_argument(
        "--page-size",
        type=int,
        default=DEFAULT_PAGE_SIZE,
        help="instances read per query or call (default %(default)s)",
    )
    add_region_database_arguments(parser)
    parser.add_argument(
        "--control-address",
        metavar="HOST:PORT",
        help="the control silo (env SILOPORT_CONTROL_ADDRESS; default: start one locally)",
    )
    add_rpc_arguments(parser)
    parser.set_defaults(func=_run)
