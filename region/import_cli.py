"""``siloport import users|organizations|config|global SRC``: import an export into this region."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from region.cli import (
    add_region_database_arguments,
    control_address,
    control_or_local,
    scope_filters,
    settings_from,
)
from region.importer.console import ConsoleProgress, print_summary
from region.importer.errors import NotAnExport
from region.importer.options import BATCH_CHARS, DEFAULT_BATCH_SIZE, ImportOptions
from region.importer.scan import Scan, scan_file
from shared.cli import CliError, add_rpc_arguments
from shared.config import data_dir
from shared.errors import SharedError
from shared.gc_tuning import tune_for_bulk_work
from shared.relocation.findings import Finding, FindingsLog
from shared.relocation.sniff import InputKind, sniff
from shared.relocation.spec import ImportScope

if TYPE_CHECKING:
    from region.delivery_process import DeliveryProcess
    from region.importer.engine import ImportSummary
    from shared.relocation.archive import Decryptor

#: About how many bytes of an export one process checks while the other loads the database layer and
#: gRPC and starts the delivery process (``_WarmUp``): the check pass's forked process takes that much
#: more of the export (about 0.4 s of warming up against 20-28 MB/s of checking, measured on the
#: development machine).
WARM_UP_BYTES = 8 << 20

SCOPE_HELP = {
    ImportScope.USERS: "users and what they own; privileges stripped, accounts left to be claimed",
    ImportScope.ORGANIZATIONS: "organizations, their members, teams, projects, keys, and their users",
    ImportScope.CONFIG: "instance configuration and all users, administrators keep their privileges; "
    "no 2FA authenticators",
    ImportScope.GLOBAL: "everything, with privileges, passwords and 2FA kept (a full restore)",
}


def options_from(args: argparse.Namespace) -> ImportOptions:
    chosen = scope_filters(args, "import")
    scope = chosen.scope
    if args.overwrite_configs and scope not in (ImportScope.CONFIG, ImportScope.GLOBAL):
        raise CliError("--overwrite-configs goes with 'import config' or 'import global'")
    if args.merge_users and scope is ImportScope.GLOBAL:
        raise CliError("--merge-users does not apply to 'import global' (a restore keeps users as they are)")
    if args.batch_size is not None and args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    try:
        import_id = str(uuid.UUID(args.import_uuid)) if args.import_uuid else str(uuid.uuid4())
    except ValueError:
        raise CliError(f"--import-uuid: not a UUID: {args.import_uuid!r}") from None
    return ImportOptions(
        scope=scope,
        import_id=import_id,
        merge_users=args.merge_users,
        overwrite_configs=args.overwrite_configs,
        filter_usernames=chosen.filter_usernames,
        filter_org_slugs=chosen.filter_org_slugs,
        strict=args.strict,
        batch_size=DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size,
        batch_size_chosen=args.batch_size is not None,
        accept_changed_source=args.accept_changed_source,
        row_by_row=args.bench_row_by_row,
        no_bookkeeping=args.bench_no_bookkeeping,
    )


@contextmanager
def _local_copy_of_stdin() -> Iterator[Path]:
    """Standard input, kept in a temporary file: the import reads its source twice."""
    with tempfile.NamedTemporaryFile(prefix="siloport-stdin-", suffix=".json") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
        spool.flush()
        yield Path(spool.name)


def _opener(path: Path, name: str) -> Callable[[], AbstractContextManager[TextIO]]:
    @contextmanager
    def open_source() -> Iterator[TextIO]:
        try:
            with path.open(encoding="utf-8-sig", newline="") as stream:  # a BOM is skipped
                yield stream
        except UnicodeDecodeError as exc:
            raise NotAnExport.not_utf8(name, exc) from None

    return open_source


def _decryptor(args: argparse.Namespace) -> Decryptor | None:
    from shared.relocation.archive import GcpKmsDecryptor, PrivateKeyDecryptor  # noqa: PLC0415

    if args.decrypt_with:
        return PrivateKeyDecryptor(Path(args.decrypt_with))
    if args.decrypt_with_gcp_kms:
        return GcpKmsDecryptor(Path(args.decrypt_with_gcp_kms))
    return None


def _plain_export(args: argparse.Namespace, path: Path, workdir: Path, source_name: str) -> Path:
    """The plain JSON export ``path`` holds (``shared.relocation.archive.plain_export``). A plain JSON
    file with no decryption asked for is taken as it is, without loading the archive code and the
    cryptography library (a few hundredths of a second before the check pass can start)."""
    if (
        not (args.decrypt_with or args.decrypt_with_gcp_kms)
        and sniff(path, source_name).kind is InputKind.JSON
    ):
        return path
    from shared.relocation.archive import plain_export  # noqa: PLC0415

    return plain_export(path, _decryptor(args), workdir, name=source_name)


def _confirm(args: argparse.Namespace, scan: Scan, options: ImportOptions, target: str) -> bool:
    if args.no_prompt or args.src == "-" or not sys.stdin.isatty():
        return True
    answer = input(
        f"Import {scan.records:,} instances of {len(scan.counts)} models from {args.src} "
        f"({options.scope.value} scope) into {target}? [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")


def _run(args: argparse.Namespace) -> int:
    options = options_from(args)
    out = sys.stdout
    silent = args.silent
    with ExitStack() as stack:
        findings = stack.enter_context(FindingsLog(Path(args.findings_file) if args.findings_file else None))
        try:
            summary = _import(args, options, findings, stack)
        except SharedError as exc:
            if findings.errors:  # the engine has recorded this failure already
                raise
            findings.add(
                Finding(
                    "error", str(getattr(exc, "model", "") or ""), 0, getattr(exc, "pk", None), None, str(exc)
                )
            )
            raise
        if summary is None:
            print("import cancelled; nothing was written", file=out)
            return 1
        if not silent:
            print_summary(summary, findings, out)
    return 0


def _import(
    args: argparse.Namespace, options: ImportOptions, findings: FindingsLog, stack: ExitStack
) -> ImportSummary | None:
    out = sys.stdout
    tune_for_bulk_work()  # the collector's defaults cost about a fifth of a large import's time
    if args.src == "-":
        path = stack.enter_context(_local_copy_of_stdin())
        source_name = "<stdin>"
    else:
        path = Path(args.src)
        if not path.is_file():
            raise CliError(f"{args.src}: no such file")
        source_name = args.src
    warm_up = _WarmUp(args, stack)
    if args.decrypt_with_gcp_kms:
        warm_up()  # before decrypting: a KMS decryptor opens a gRPC channel, which a fork must not copy
    # Recognised by content: plain JSON as is; gzip and encrypted archives into a private temporary
    # directory, removed at exit. Decryption comes before anything is written.
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="siloport-import-")))
    path = _plain_export(args, path, workdir, source_name)
    open_source = _opener(path, source_name)
    if not args.silent:
        print(f"import id: {options.import_id}", file=out, flush=True)
    # The checked records are kept beside, so that the import pass does not parse the export again.
    scan = scan_file(
        path,
        source_name,
        options,
        spool_dir=workdir,
        meanwhile=None if warm_up.done else warm_up,
        meanwhile_bytes=WARM_UP_BYTES,
    )
    given = control_address(args)
    target = (
        f"region {args.name!r} (control at {given})"
        if given
        else (f"the embedded default under {data_dir()} (region {args.name!r})")
    )
    if not _confirm(args, scan, options, target):
        return None
    control_or_local(args, stack)
    from region.bootstrap import bootstrap  # noqa: PLC0415 - loaded by warm_up already

    app = bootstrap(settings_from(args))
    stack.callback(app.close)
    app.prepare_database()
    tune_for_bulk_work()  # again: the engine, its pool and the mappers are start-up objects too
    progress = ConsoleProgress(sys.stderr, enabled=not args.silent)
    engine = app.import_engine(
        options,
        open_source=open_source,
        source_name=source_name,
        progress=progress,
        findings=findings,
        delivery_process=warm_up.delivery_process,
    )
    return engine.run(scan)


class _WarmUp:
    """What the import needs before its first batch and the check pass does not: the database layer,
    gRPC and the rest of the silo's modules (most of a second of loading), and, on PostgreSQL, the
    process that will deliver the import's outbox. Called once (``scan_file`` calls it while its forked
    process checks its part of the export); later calls do nothing."""

    def __init__(self, args: argparse.Namespace, stack: ExitStack) -> None:
        self._args = args
        self._stack = stack
        self.done = False
        self.delivery_process: DeliveryProcess | None = None

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        import region.bootstrap  # noqa: F401, PLC0415 - loaded here, in the check pass's shadow
        from region.delivery_process import DeliveryProcess  # noqa: PLC0415
        from shared.db.engine import backend_of  # noqa: PLC0415

        args = self._args
        if not control_address(args):
            return  # the embedded default (SQLite) delivers in the importer
        settings = settings_from(args)
        if backend_of(settings.db_url) != "postgresql":
            return
        # Forked while this process has one thread and no connection or channel
        # (``DeliveryProcess.start``), it has every module loaded and its own connections ready by the
        # time the first batch commits.
        self.delivery_process = DeliveryProcess(settings)
        self._stack.callback(self.delivery_process.close)
        self.delivery_process.start()


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "import",
        help="import a Sentry export into this region (and control)",
        description="Import a Sentry-format export (a JSON list of {model, pk, fields}) into this region and "
        "the control silo. Primary keys are remapped, collisions resolved per model, and every decision "
        "is a finding. The import is checked in full before anything is written, and it is resumable: "
        "run it again with the same --import-uuid after any failure or interruption. With no control "
        "address it runs on the embedded default: a local control silo and region on SQLite.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scopes:\n"
        + "\n".join(f"  {s.value:<14} {text}" for s, text in SCOPE_HELP.items())
        + "\n\nexit codes: 0 done, 1 cancelled, 2 usage or configuration, 3 bad input, "
        "4 a row the database refused, 5 control unreachable",
    )
    parser.add_argument("scope", choices=[s.value for s in ImportScope], help="what the import takes in")
    parser.add_argument(
        "src",
        metavar="SRC",
        help="the export file, or - for standard input: plain JSON, a gzip of it, or an encrypted "
        "archive (recognised by content)",
    )
    decrypt = parser.add_mutually_exclusive_group()
    decrypt.add_argument(
        "--decrypt-with",
        metavar="PRIVATE_KEY.pem",
        help="decrypt an encrypted archive with this RSA private key (see 'siloport keys generate')",
    )
    decrypt.add_argument(
        "--decrypt-with-gcp-kms",
        metavar="CONFIG.json",
        help="decrypt an encrypted archive with the Cloud KMS key in this Sentry KMS config file "
        "(needs pip install 'siloport[gcp]')",
    )
    parser.add_argument("--filter-usernames", metavar="A,B", help="users scope: import only these users")
    parser.add_argument(
        "--filter-org-slugs",
        metavar="A,B",
        help="organizations scope: import only these organizations and their members",
    )
    parser.add_argument(
        "--merge-users",
        action="store_true",
        help="reuse an existing user with the same username instead of renaming the import",
    )
    parser.add_argument(
        "--overwrite-configs",
        action="store_true",
        help="config/global: imported options and roles replace existing ones",
    )
    parser.add_argument("--findings-file", metavar="PATH", help="write every finding to PATH as JSON")
    parser.add_argument("--no-prompt", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--silent", action="store_true", help="print nothing but errors")
    parser.add_argument(
        "--import-uuid",
        metavar="UUID",
        help="the import's id: give an earlier one to resume it (default: a new one, printed)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="unknown models and references the export does not resolve are errors",
    )
    parser.add_argument(
        "--accept-changed-source",
        action="store_true",
        help="resume an import although its export changed since the first run (for corrections to "
        "records not yet written)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help=f"instances per batch and transaction (default {DEFAULT_BATCH_SIZE}; a batch of large records "
        f"ends before their JSON passes {BATCH_CHARS >> 20} MiB); a resumed import takes the batching it "
        "began with, and refuses another batch size",
    )
    # Benchmark modes (bench/run.py compares against them); hidden: never for real imports.
    parser.add_argument("--bench-row-by-row", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bench-no-bookkeeping", action="store_true", help=argparse.SUPPRESS)
    add_region_database_arguments(parser)
    parser.add_argument(
        "--control-address",
        metavar="HOST:PORT",
        help="the control silo (env SILOPORT_CONTROL_ADDRESS; default: start one locally)",
    )
    add_rpc_arguments(parser)
    parser.set_defaults(func=_run)
