"""The first pass over an export: check every record before anything is written.

It validates the JSON, each record's model, fields and values, and the dependency order of the models,
counts the instances of each model (for progress), hashes the file (to recognise it on a resumed run)
and works out which users, emails and organizations the filters keep.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import multiprocessing
import re
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TextIO

from region.importer.errors import NotAnExport
from region.importer.lanes import spool_key
from region.importer.options import ImportOptions
from region.importer.spool import SpoolPart, SpoolWriter
from shared.relocation.pkmap import PkSet
from shared.relocation.reader import ExportFormatError, Position, Record, RecordReader
from shared.relocation.registry import MODELS, REFERENCED, lookup
from shared.relocation.spec import ModelSpec
from shared.relocation.values import INT64, BadValue, checker_of

_MISSING = object()
CHUNK_BYTES = 1 << 20
_LOGGER = logging.getLogger(__name__)
#: Seconds the first process waits for the second half beyond twice its own half's time.
TAIL_GRACE_S = 30.0

#: Model -> the models whose foreign keys point at it (an export must list it before them).
DEPENDENTS: dict[str, frozenset[str]] = {
    target: frozenset(spec.name for spec in MODELS if target in spec.targets) - {target}
    for target in REFERENCED
}


class HashingReader:
    """A text stream that hashes what it reads."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> str:
        chunk = self._stream.read(size)
        self.digest.update(chunk.encode("utf-8", "surrogatepass"))
        return chunk


@dataclass(frozen=True)
class Scan:
    records: int
    #: Instances per model, in order of first appearance (unknown models included).
    counts: dict[str, int]
    digest: str
    #: What the filters keep (None: no filter on that model).
    keep_users: frozenset[int] | None
    keep_emails: frozenset[str] | None
    keep_orgs: frozenset[int] | None
    #: The checked records, kept for the import pass (None: it reads the export again).
    spool: tuple[SpoolPart, ...] | None = None


def invalid(source: str, record: Record, message: str) -> ExportFormatError:
    return ExportFormatError(
        source, record.line, record.column, f"{record.model} pk {record.pk}: {message}", record=record.index
    )


_Checks = tuple[tuple[str, Callable[[object], object], bool], ...]
#: Per model spec (by identity; the entry keeps the spec alive, so its id is not reused).
_CHECKS: dict[int, tuple[ModelSpec, _Checks]] = {}


def _checks(spec: ModelSpec) -> _Checks:
    """(name, checker, required) of each plain field of the model, made once per model."""
    entry = _CHECKS.get(id(spec))
    if entry is None or entry[0] is not spec:
        checks = tuple((f.name, checker_of(f), f.default is None and not f.nullable) for f in spec.fields)
        entry = _CHECKS[id(spec)] = (spec, checks)
    return entry[1]


def check_record(source: str, spec: ModelSpec, record: Record) -> None:
    fields = record.fields
    if not fields.keys() <= spec.all_names:
        unknown = sorted(set(fields) - spec.all_names)
        raise invalid(source, record, f"unknown field(s) {', '.join(map(repr, unknown))}")
    for name, check, required in _checks(spec):
        value = fields.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise invalid(source, record, f"missing required field {name!r}")
            continue
        try:
            check(value)
        except BadValue as exc:
            raise invalid(source, record, f"field {name!r}: {exc}") from None
    for fk in spec.foreign_keys:
        value = fields.get(fk.name)
        if value is None:
            if fk.name in fields and not fk.nullable:
                raise invalid(source, record, f"field {fk.name!r} must not be null")
            if fk.name not in fields and not fk.nullable:
                raise invalid(source, record, f"missing required field {fk.name!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or not INT64[0] <= value <= INT64[1]:
            raise invalid(
                source, record, f"field {fk.name!r} must hold the pk of a {fk.target}, got {value!r}"
            )


def check_references(source: str, spec: ModelSpec, record: Record, pks: dict[str, PkSet]) -> None:
    """--strict: every reference must name an instance listed earlier in the export."""
    for fk in spec.foreign_keys:
        value = record.fields.get(fk.name)
        if value is not None and (fk.target not in pks or value not in pks[fk.target]):
            raise invalid(
                source,
                record,
                f"{fk.name} refers to {fk.target} pk {value}, which the export does not hold (--strict)",
            )


class _Collector:
    """What the filters need, gathered only when a filter is given."""

    def __init__(self, options: ImportOptions) -> None:
        self.active = options.filter_usernames is not None or options.filter_org_slugs is not None
        self.user_names: dict[int, tuple[str, str]] = {}
        self.user_emails: dict[int, set[str]] = defaultdict(set)
        self.org_slugs: dict[int, str] = {}
        self.members: list[tuple[int, int]] = []

    def add(self, record: Record) -> None:
        fields = record.fields
        if record.model == "sentry.user":
            self.user_names[record.pk] = (str(fields.get("username") or ""), str(fields.get("email") or ""))
        elif record.model == "sentry.useremail" and isinstance(fields.get("user"), int):
            self.user_emails[fields["user"]].add(str(fields.get("email") or "").casefold())
        elif record.model == "sentry.organization":
            self.org_slugs[record.pk] = str(fields.get("slug") or "")
        elif record.model == "sentry.organizationmember":
            org, user = fields.get("organization"), fields.get("user_id")
            if isinstance(org, int) and isinstance(user, int):
                self.members.append((org, user))

    def result(
        self, options: ImportOptions
    ) -> tuple[frozenset[int] | None, frozenset[str] | None, frozenset[int] | None]:
        keep_orgs = None
        if options.filter_usernames is not None:
            users = {pk for pk, (name, _) in self.user_names.items() if name in options.filter_usernames}
        elif options.filter_org_slugs is not None:
            keep_orgs = frozenset(
                pk for pk, slug in self.org_slugs.items() if slug in options.filter_org_slugs
            )
            users = {user for org, user in self.members if org in keep_orgs}
        else:
            return None, None, None
        emails = {self.user_names[pk][1].casefold() for pk in users if pk in self.user_names}
        for pk in users:
            emails |= self.user_emails.get(pk, set())
        return frozenset(users), frozenset(emails), keep_orgs


class _Checker:
    """The checks of the pass and what they gather, over the records of a file or of a part of it."""

    def __init__(self, source: str, options: ImportOptions) -> None:
        self.source, self.options = source, options
        self.total = 0
        self.counts: dict[str, int] = {}
        self.first_seen: dict[str, Record] = {}
        #: Model -> how many models had been seen when its order was last found good.
        self.order_checked: dict[str, int] = {}
        #: Every model's pks so far: duplicates are refused, and --strict checks references against them.
        self.pks: dict[str, PkSet] = defaultdict(PkSet)
        self.collector = _Collector(options)

    def run(self, records: Iterable[Record]) -> None:
        source, options = self.source, self.options
        counts, first_seen, order_checked, pks = self.counts, self.first_seen, self.order_checked, self.pks
        collector = self.collector
        for record in records:
            self.total += 1
            counts[record.model] = counts.get(record.model, 0) + 1
            spec = lookup(record.model)
            if spec is None:
                if options.strict:
                    raise invalid(source, record, "siloport does not know this model (--strict)")
                continue
            check_record(source, spec, record)
            if not INT64[0] <= record.pk <= INT64[1]:
                raise invalid(source, record, "pk does not fit in 64 bits")
            if not pks[spec.name].add(record.pk):
                raise invalid(
                    source, record, "this pk appears twice for the model; an export lists each instance once"
                )
            if options.strict:
                check_references(source, spec, record, pks)
            if order_checked.get(spec.name) != len(first_seen):  # only a model seen first since can break it
                for dependent in sorted(DEPENDENTS.get(spec.name, frozenset()) & first_seen.keys()):
                    earlier = first_seen[dependent]
                    raise invalid(
                        source,
                        record,
                        f"out of dependency order: {dependent} (first at line {earlier.line}) refers to "
                        f"{spec.name}, so every {spec.name} must come before it",
                    )
                first_seen.setdefault(spec.name, record)
                order_checked[spec.name] = len(first_seen)
            if collector.active:
                collector.add(record)

    def result(self, digest: str, spool: tuple[SpoolPart, ...] | None = None) -> Scan:
        keep_users, keep_emails, keep_orgs = self.collector.result(self.options)
        return Scan(self.total, self.counts, digest, keep_users, keep_emails, keep_orgs, spool)

    def tail(self, spooled: bool) -> _Tail:
        return _Tail(self.total, self.counts, dict(self.pks), frozenset(self.first_seen), spooled)

    def joins(self, tail: _Tail) -> bool:
        """Whether the second half's checks, with this first half's, are those of the whole file: no pk
        in both halves, no model of the second half that a model of the first half refers to. Then its
        counts are added to these."""
        for model, pks in tail.pks.items():
            if model in self.pks and not self.pks[model].isdisjoint(pks):
                return False
        if any(DEPENDENTS.get(model, frozenset()) & self.first_seen.keys() for model in tail.seen):
            return False
        self.total += tail.total
        for model, count in tail.counts.items():
            self.counts[model] = self.counts.get(model, 0) + count
        return True


@dataclass(frozen=True)
class _Tail:
    """What the check of an export's second half sends back."""

    total: int
    counts: dict[str, int]
    pks: dict[str, PkSet]
    seen: frozenset[str]
    #: Whether its records are all in its spool file.
    spooled: bool


def scan_export(stream: TextIO, source: str, options: ImportOptions, *, spool: Path | None = None) -> Scan:
    """Check an export read from ``stream``, from start to end (keeping its records in ``spool``)."""
    hashing = HashingReader(stream)
    checker = _Checker(source, options)
    records = RecordReader(hashing, source)  # type: ignore[arg-type]
    if spool is None:
        checker.run(records)
        return checker.result(hashing.digest.hexdigest())
    writer = SpoolWriter(spool, spool_key)
    try:
        checker.run(writer.passing(records))
    finally:
        kept = writer.close()
    return checker.result(hashing.digest.hexdigest(), (SpoolPart(spool),) if kept else None)


#: An export at least this large (in bytes) is checked by two processes, a part each.
SPLIT_FROM_BYTES = 16 << 20
#: The least part of an export the first process checks itself when it splits it.
MIN_OWN_SHARE = 0.1
#: How far past the split point the split looks for the start of a record.
_SPLIT_WINDOW = 1 << 20
#: The end of a record, a comma, and the brace of a record that starts with one of its keys.
_BOUNDARY = re.compile(rb'\}[ \t\r\n]*,[ \t\r\n]*(\{)[ \t\r\n]*"(?:model|pk|fields)"')


def scan_file(
    path: Path,
    source: str,
    options: ImportOptions,
    *,
    split_from: int = SPLIT_FROM_BYTES,
    spool_dir: Path | None = None,
    meanwhile: Callable[[], None] | None = None,
    meanwhile_bytes: int = 0,
) -> Scan:
    """Check the export in ``path``, keeping the checked records in files under ``spool_dir`` when
    given (``region.importer.spool``: the import pass then reads them instead of parsing the export
    again). A large one (without --strict or a filter, which need every record
    before the next) is checked by two processes: this one from the start, a forked one from a record
    near the split point (the middle, unless ``meanwhile_bytes`` moves it) to the end. This one must
    reach that record exactly at a record boundary, and the two parts together must hold no pk twice
    and keep the dependency order; otherwise, or if the other part has an error, this process goes on
    through the rest itself, so a result or an error is always the one a single pass gives. Where a
    second process cannot be started (or threads already run, which a fork would copy mid-flight), one
    pass checks it all.

    ``meanwhile`` is called once, in this process, before it checks anything: while the forked
    process checks its part, where there is one. ``meanwhile_bytes`` is about how much of the export
    one process checks in the time ``meanwhile`` takes; the forked process's part is larger by that
    much, so that the two end together."""
    with path.open("rb") as raw:
        bom = len(codecs.BOM_UTF8) if raw.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8 else 0
    size = path.stat().st_size - bom
    split = None
    if (
        size >= split_from
        and not options.strict
        and options.filter_usernames is None
        and options.filter_org_slugs is None
        and "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
    ):
        split = _split_point(path, bom, size, share=_own_share(size, meanwhile_bytes if meanwhile else 0))
    try:
        if split is not None:
            try:
                half = _start_half(
                    path,
                    bom,
                    split,
                    source,
                    options,
                    spool=None if spool_dir is None else spool_dir / "second.spool",
                )
            except OSError as exc:
                _LOGGER.info("checking %s in one pass: no second process (%s)", source, exc)
            else:
                return _scan_halves(
                    path,
                    bom,
                    split,
                    source=source,
                    options=options,
                    started=half,
                    spool_dir=spool_dir,
                    meanwhile=meanwhile,
                )
        if meanwhile is not None:
            meanwhile()
        with path.open(encoding="utf-8-sig", newline="") as stream:
            return scan_export(
                stream, source, options, spool=None if spool_dir is None else spool_dir / "checked.spool"
            )
    except UnicodeDecodeError as exc:
        raise NotAnExport.not_utf8(source, exc) from None


def _own_share(size: int, meanwhile_bytes: int) -> float:
    """The part of an export of ``size`` bytes that the first process checks: half, less half of what
    it could have checked while busy with something else, and a tenth at least."""
    return min(0.5, max(MIN_OWN_SHARE, (size - meanwhile_bytes) / (2 * size)))


@dataclass(frozen=True)
class _Split:
    """Where a record seems to start near the point where an export is split."""

    #: Its offset in bytes after the byte order mark, and in characters.
    offset: int
    chars: int
    #: Its line and column (index 0: the second process counts its records from there).
    start: Position
    #: The part of the export before it (about).
    share: float = 0.5


def _split_point(path: Path, bom: int, size: int, *, share: float = 0.5) -> _Split | None:
    """Where a record seems to start near ``share`` of the way through, or None."""
    at = int(size * share)
    with path.open("rb") as raw:
        raw.seek(bom + at)
        window = raw.read(_SPLIT_WINDOW)
    found = _BOUNDARY.search(window)
    if found is None:
        return None
    offset = at + found.start(1)
    where = _position_at(path, bom, offset)
    return None if where is None else _Split(offset, where[1], where[0], share)


def _position_at(path: Path, bom: int, offset: int) -> tuple[Position, int] | None:
    """Line and column of a byte offset of the text (as a position with index 0), and its offset in
    characters: the text up to there is decoded once more, without parsing. None if it is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    chars, lines, line_chars = 0, 0, 0
    with path.open("rb") as raw:
        raw.seek(bom)
        left = offset
        while left:
            chunk = raw.read(min(left, CHUNK_BYTES))
            if not chunk:
                return None
            left -= len(chunk)
            try:
                text = decoder.decode(chunk, final=not left)
            except UnicodeDecodeError:
                return None  # a single pass names it
            chars += len(text)
            newlines = text.count("\n")
            lines += newlines
            line_chars = len(text) - text.rfind("\n") - 1 if newlines else line_chars + len(text)
    return Position(0, lines + 1, line_chars + 1), chars


def _start_half(
    path: Path, bom: int, split: _Split, source: str, options: ImportOptions, *, spool: Path | None = None
) -> tuple[BaseProcess, Connection]:
    """Fork the process that checks the second half; the end of the pipe its result comes from."""
    context = multiprocessing.get_context("fork")  # no thread runs (checked), no connection is open yet
    receiving, sending = context.Pipe(duplex=False)
    try:
        half = context.Process(
            target=_check_tail,
            args=(
                _TailJob(path, bom + split.offset, split.start, source, options, spool),
                sending,
                receiving,
            ),
            daemon=True,
        )
        half.start()
    except BaseException:
        receiving.close()
        raise
    finally:
        sending.close()
    return half, receiving


def _scan_halves(
    path: Path,
    bom: int,
    split: _Split,
    *,
    source: str,
    options: ImportOptions,
    started: tuple[BaseProcess, Connection],
    spool_dir: Path | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> Scan:
    half, receiving = started
    writer = None
    try:
        if meanwhile is not None:
            meanwhile()  # before the thread below: it may fork
        began = time.monotonic()
        writer = None if spool_dir is None else SpoolWriter(spool_dir / "first.spool", spool_key)
        with ThreadPoolExecutor(1, thread_name_prefix="scan-hash") as hashing:
            digest = hashing.submit(_hash_file, path, bom)
            checker = _Checker(source, options)
            with path.open(encoding="utf-8-sig", newline="") as stream:
                reader = RecordReader(stream, source, stop_at=split.chars)
                checker.run(reader if writer is None else writer.passing(reader))
                first_half = checker.total
                # The other part takes about as long as its length says: wait that long, and more.
                patience = (time.monotonic() - began) / split.share + TAIL_GRACE_S
                tail = _received(receiving, patience) if reader.stopped else None
                if reader.stopped and (tail is None or not checker.joins(tail)):
                    tail = None
                    checker.run(reader if writer is None else writer.passing(reader))  # the rest, here
            spool: tuple[SpoolPart, ...] | None = None
            if writer is not None and writer.close() and spool_dir is not None:
                if tail is None:
                    spool = (SpoolPart(writer.path),)
                elif tail.spooled:
                    spool = (SpoolPart(writer.path), SpoolPart(spool_dir / "second.spool", first_half))
            return checker.result(digest.result(), spool)
    finally:
        if writer is not None:
            writer.close()
        receiving.close()
        if half.is_alive():
            half.terminate()
        half.join()


def _received(receiving: Connection, patience_s: float) -> _Tail | None:
    try:
        if not receiving.poll(patience_s):
            _LOGGER.warning(
                "the second half of the check did not finish in %.0f s; checking it here", patience_s
            )
            return None
        tail = receiving.recv()
    except (EOFError, OSError):  # the other process died
        return None
    return tail if isinstance(tail, _Tail) else None


@dataclass(frozen=True)
class _TailJob:
    """The second half: the file, the byte offset and position of its first record."""

    path: Path
    offset: int
    start: Position
    source: str
    options: ImportOptions
    #: Where to keep its records (their indexes counted from its first record).
    spool: Path | None = None


def _check_tail(job: _TailJob, sending: Connection, receiving: Connection | None = None) -> None:
    """The forked process: check the second half and send what it found (or None when it found an
    error: the first process finds it again, and names it with its record's index)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is the first process's to handle
    if receiving is not None:
        # Our copy of the first process's end: were that process killed, sending would otherwise
        # block for ever on a full pipe instead of failing, and this process would never end.
        receiving.close()
    try:
        checker = _Checker(job.source, job.options)
        writer = None if job.spool is None else SpoolWriter(job.spool, spool_key)
        with job.path.open("rb") as raw:
            raw.seek(job.offset)
            with io.TextIOWrapper(raw, encoding="utf-8", newline="") as stream:
                reader = RecordReader(stream, job.source, start=job.start)
                checker.run(reader if writer is None else writer.passing(reader))
        sending.send(checker.tail(writer is not None and writer.close()))
    except Exception:  # noqa: BLE001 - any error is found again, and reported, by the first process
        sending.send(None)
    finally:
        sending.close()


def _hash_file(path: Path, bom: int) -> str:
    """The digest a single pass computes (SHA-256 of the text after a byte order mark), from the bytes."""
    with path.open("rb") as raw:
        raw.seek(bom)
        return hashlib.file_digest(raw, "sha256").hexdigest()
