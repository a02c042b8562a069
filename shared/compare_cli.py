"""``siloport compare LEFT RIGHT``: every difference between two exports, ignoring what a relocation
legitimately changes (``shared/relocation/compare.py``)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from shared.cli import CliError
from shared.errors import SharedError
from shared.relocation.archive import Decryptor, PrivateKeyDecryptor, plain_export
from shared.relocation.compare import (
    DEFAULT_DATE_TOLERANCE_S,
    BadFindings,
    CompareOptions,
    Comparison,
    Explanations,
    ExportContents,
    compare_exports,
    load_export,
    summary_lines,
)
from shared.relocation.spec import ImportScope

#: Differences printed on standard output; the findings file holds them all.
SHOWN = 20


class BadCompareInput(SharedError):
    """An input cannot be read as an export or a findings file."""

    exit_code = 3


def _load(name: str, decryptor: Decryptor | None, work: Path) -> ExportContents:
    path = Path(name)
    if not path.is_file():
        raise CliError(f"{name}: no such file")
    plain = plain_export(path, decryptor, work, name=name)
    try:
        with plain.open(encoding="utf-8-sig", newline="") as stream:  # as import: a BOM is accepted
            return load_export(stream, name)
    except UnicodeDecodeError as exc:
        raise BadCompareInput(f"{name}: not UTF-8 text ({exc.reason}); an export is a JSON list") from None


def _explanations(path: str | None) -> Explanations:
    if path is None:
        return Explanations()
    try:
        with Path(path).open(encoding="utf-8") as stream:
            return Explanations.read(stream, path)
    except FileNotFoundError:
        raise CliError(f"--import-findings {path}: no such file") from None
    except (BadFindings, UnicodeDecodeError) as exc:
        raise BadCompareInput(str(exc)) from None


def _write_findings(path: Path, comparison: Comparison) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for i, difference in enumerate(comparison.differences):
            out.write(",\n  " if i else "\n  ")
            out.write(json.dumps(difference.to_json(), sort_keys=True, ensure_ascii=False))
        out.write("\n]\n" if comparison.differences else "]\n")


def _run(args: argparse.Namespace) -> int:
    if args.date_tolerance < 0:
        raise CliError("--date-tolerance must not be negative")
    decryptor = PrivateKeyDecryptor(Path(args.decrypt_with)) if args.decrypt_with else None
    explanations = _explanations(args.import_findings)
    with tempfile.TemporaryDirectory(prefix="siloport-compare-") as work:
        left = _load(args.left, decryptor, Path(work))
        right = _load(args.right, decryptor, Path(work))
    scope = ImportScope(args.import_scope) if args.import_scope else None
    comparison = compare_exports(left, right, CompareOptions(args.date_tolerance, scope), explanations)
    if args.findings_file:
        _write_findings(Path(args.findings_file), comparison)
    out = sys.stdout
    if not args.silent:
        out.write("\n".join(summary_lines(comparison, args.left, args.right)) + "\n")
        if comparison.differences:
            out.write("\n")
            for difference in comparison.differences[:SHOWN]:
                out.write(f"{difference}\n")
            more = len(comparison.differences) - SHOWN
            if more > 0:
                hint = f"written to {args.findings_file}" if args.findings_file else "see --findings-file"
                out.write(f"... and {more:,} more ({hint})\n")
    explained = sum(t.explained for t in comparison.models.values())
    because = f"; {explained:,} changes explained by the import's findings" if explained else ""
    if comparison.equal:
        out.write(f"\nequal: {left.count():,} and {right.count():,} instances{because}\n")
        return 0
    models = sum(1 for t in comparison.models.values() if t.different)
    out.write(f"\ndifferent: {len(comparison.differences):,} differences in {models} models{because}\n")
    return 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "compare",
        help="report every difference between two exports",
        description="Compare two exports model by model: LEFT the original, RIGHT an export of where it was "
        "imported. Instances are matched by the findings of the import, by their unique keys and by "
        "position; primary keys, remapped foreign keys, regenerated secrets of the same shape and dates "
        "within the tolerance are not differences, nor are renames and left-out instances that the "
        "import's findings explain. Either side may be plain JSON, a gzip of it, or an encrypted archive.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 equal, 1 different, 2 usage or configuration, 3 bad input",
    )
    parser.add_argument("left", metavar="LEFT", help="the original export")
    parser.add_argument("right", metavar="RIGHT", help="the export to compare it with")
    parser.add_argument("--findings-file", metavar="PATH", help="write every difference to PATH as JSON")
    parser.add_argument(
        "--decrypt-with", metavar="PRIVATE_KEY.pem", help="decrypt encrypted archives with this RSA key"
    )
    parser.add_argument(
        "--import-findings",
        metavar="PATH",
        help="the findings file of the import that made RIGHT from LEFT: renames and left-out instances "
        "it records are not differences",
    )
    parser.add_argument(
        "--import-scope",
        choices=[s.value for s in ImportScope],
        help="the scope of that import: the fields it resets (admin flags outside config and global, "
        "passwords and email verification outside global) are not differences",
    )
    parser.add_argument(
        "--date-tolerance",
        type=float,
        default=DEFAULT_DATE_TOLERANCE_S,
        metavar="SECONDS",
        help="dates this close are equal (default %(default)s)",
    )
    parser.add_argument("--silent", action="store_true", help="print only the verdict")
    parser.set_defaults(func=_run)
