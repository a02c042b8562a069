"""The import engine: check the export, then write it batch by batch in the silo that owns each model.

Orchestration only; it reaches databases and control through the ports it is given. Every batch is
written with its chunk record in one transaction of the owning silo, so an import stopped at any point
and run again with the same import id replays the recorded batches (same results, nothing written
twice) and goes on from the first batch that was not recorded.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from region.importer.errors import (
    BatchFailed,
    ControlUnreachable,
    ImportFailed,
    ReplayMismatch,
    WriteFailed,
)
from region.importer.lanes import (
    AFTER_SLUG_STEP,
    BEFORE_SLUG_STEP,
    DEFERRED,
    FIRST_PASS,
    ORGANIZATION,
    REGION,
    SLUG_STEP,
    LaneBoard,
    LaneStopped,
    lane_models,
    lane_of,
)
from region.importer.options import ImportOptions
from region.importer.pipeline import PreparedBatch, may_overlap
from region.importer.ports import Ledger, Progress, SlugReserver, Writer
from region.importer.prepare import Preparer
from region.importer.scan import Scan
from region.importer.spool import SpoolPart, read_spool
from shared.errors import SharedError
from shared.relocation.batch import Batch, BatchOptions, BatchResult, Row, WriteRefused
from shared.relocation.findings import Finding, FindingsLog
from shared.relocation.pkmap import ImportKind, PrimaryKeyMap
from shared.relocation.reader import Record, read_records
from shared.relocation.registry import REFERENCED, lookup
from shared.relocation.spec import ModelSpec, Silo

_LOGGER = logging.getLogger(__name__)
#: Longest an import that failed waits for its committed batches' messages (the drainers take the rest).
FAILURE_SETTLE_S = 10.0


@dataclass
class ModelStats:
    inserted: int = 0
    existing: int = 0
    overwritten: int = 0
    skipped: int = 0

    def add(self, kind: ImportKind) -> None:
        if kind is ImportKind.INSERTED:
            self.inserted += 1
        elif kind is ImportKind.EXISTING:
            self.existing += 1
        else:
            self.overwritten += 1


@dataclass
class ImportSummary:
    import_id: str
    resumed: bool
    records: int
    models: dict[str, ModelStats] = field(default_factory=dict)
    #: (export slug, slug in this installation) of every imported organization.
    organizations: list[tuple[str, str]] = field(default_factory=list)
    #: Batches an earlier run had written already.
    replayed_batches: int = 0
    written_batches: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "import_id": self.import_id,
            "records": self.records,
            "models": {name: vars(stats) for name, stats in self.models.items()},
            "organizations": [list(pair) for pair in self.organizations],
        }


def _spooled(record: Record) -> list[object]:
    return [record.index, record.line, record.column, record.model, record.pk, record.fields, record.size]


def _unspool(spool: TextIO) -> Iterator[Record]:
    """The records the first pass kept, in file order, with their positions in the export."""
    for line in spool:
        index, line_number, column, model, pk, fields, size = json.loads(line)
        yield Record(index, line_number, column, model, pk, fields, size)


@dataclass
class _Batch:
    spec: ModelSpec
    records: list[tuple[Record, int]]


#: Most batches being written at once (in each lane).
MAX_IN_FLIGHT = 2


def _parts(
    run: Iterator[tuple[Record, int]], count: int, chars: int | None
) -> Iterator[list[tuple[Record, int]]]:
    """``run`` in consecutive batches of at most ``count`` records whose JSON text comes to at most
    ``chars`` characters (a record larger than that is a batch of its own; None: no such bound). The
    sizes are the reader's, the same whether records come from the export or from the check pass's
    files, so a resumed import finds the same batches on either path."""
    while taken := list(itertools.islice(run, count)):
        if chars is None or sum(record.size for record, _ordinal in taken) <= chars:
            yield taken  # the usual case: no record is looked at twice
            continue
        start, total = 0, 0
        for position, (record, _ordinal) in enumerate(taken):
            if total + record.size > chars and position > start:
                yield taken[start:position]
                start, total = position, 0
            total += record.size
        yield taken[start:]


@functools.cache
def _elsewhere(spec: ModelSpec, lane: str | None) -> tuple[str, ...]:
    """The models of the other first-pass lane that ``spec``'s model refers to, and the slug step for the
    region's models that wait for it (``region.importer.lanes``)."""
    others = tuple(sorted(t for t in spec.targets if (other := lane_of(t)) != lane and other in FIRST_PASS))
    return (*others, SLUG_STEP) if lane == REGION and spec.name in AFTER_SLUG_STEP else others


class ImportEngine:
    def __init__(
        self,
        options: ImportOptions,
        *,
        open_source: Callable[[], AbstractContextManager[TextIO]],
        source_name: str,
        writers: dict[Silo, Writer],
        ledger: Ledger,
        progress: Progress,
        findings: FindingsLog,
        slugs: SlugReserver | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.options = options
        self._slugs = slugs
        self._open = open_source
        self._source = source_name
        self._writers = writers
        self._ledger = ledger
        self._progress = progress
        self._findings = findings
        self._clock = clock
        self._pkmap = PrimaryKeyMap()
        #: The import's first run (nothing of it can be recorded yet).
        self._fresh = False
        self._reported: set[str] = set()
        self._org_slugs: dict[int, str] = {}
        #: Export pk -> ordinal of each organization (for findings about its final slug).
        self._org_ordinals: dict[int, int] = {}
        #: Set while the first pass is written in lanes (``_write_in_lanes``).
        self._board: LaneBoard | None = None
        self._tally = threading.Lock()

    def run(self, scan: Scan) -> ImportSummary:
        # A resumed import runs with the batching it began with (``ImportOptions.resuming``).
        resumed, self.options = self._ledger.begin(self.options, scan.digest)
        self._fresh = not resumed
        summary = ImportSummary(self.options.import_id, resumed, scan.records)
        self._progress.start(
            {
                m: n
                for m, n in scan.counts.items()
                if (s := lookup(m)) and s.scope in self.options.scope.admits
            }
        )
        preparer = Preparer(self.options, scan, self._pkmap, self._clock())
        try:
            if scan.spool is not None and not self.options.row_by_row:
                self._write_in_lanes(scan, preparer, summary)
            else:
                self._write_in_file_order(scan, preparer, summary)
        except BaseException:
            try:
                self._settle(FAILURE_SETTLE_S)  # what was committed is still delivered, if it is quick
            except BaseException:  # the original error matters more, and the ledger must hear of it
                _LOGGER.exception("could not deliver the outbox of import %s", self.options.import_id)
            try:
                self._ledger.fail(self.options.import_id)
            except Exception:  # the original error matters more than the ledger's
                _LOGGER.exception("could not mark import %s as failed", self.options.import_id)
            raise
        finally:
            self._progress.finish()
        # in the order the export lists the models, whichever lane got to one first
        listed = {model: position for position, model in enumerate(scan.counts)}
        summary.models = dict(
            sorted(summary.models.items(), key=lambda item: listed.get(item[0], len(listed)))
        )
        summary.organizations = [
            (self._org_slugs.get(old, ""), slug)
            for old, slug in sorted(self._pkmap.values(ORGANIZATION).items())
        ]
        self._ledger.finish(self.options.import_id, summary.to_json())
        return summary

    def _write_in_file_order(self, scan: Scan, preparer: Preparer, summary: ImportSummary) -> None:
        """One batch after another, as the export lists them (the per-row baseline, and an import whose
        check pass could not keep its records)."""
        # The deferred models' records (a small part of an export) are kept in a private temporary
        # file by the first pass, so the second pass does not read and parse the whole export again.
        with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
            with self._records(scan) as records:
                self._write_all(
                    self._batches(records, deferred=False, summary=summary, spool=spool), preparer, summary
                )
            self._settle()  # control has every member before it renames organizations
            self._final_slugs()
            spool.seek(0)
            self._write_all(self._batches(_unspool(spool), deferred=True, summary=summary), preparer, summary)
            self._settle()

    def _write_in_lanes(self, scan: Scan, preparer: Preparer, summary: ImportSummary) -> None:
        """Control's models and the region's at the same time, a thread each (``region.importer.lanes``),
        and the slug step on a third once the organizations and the models that refer to them are
        written, while the lanes go on. The deferred models come last. After a lane (or the slug step)
        fails, the others stop before their next batch."""
        spool = scan.spool
        assert spool is not None
        board = self._board = LaneBoard({**scan.counts, SLUG_STEP: 1})

        def write_lane(lane: str) -> None:
            try:
                records = self._lane_records(spool, lane, lane_models(scan.counts, lane), board)
                self._write_all(
                    self._batches(records, deferred=False, summary=summary, runs=True),
                    preparer,
                    summary,
                    lane,
                )
                short = board.short([m for m in scan.counts if lane_of(m) == lane])
                if short:
                    raise ImportFailed(
                        f"internal error: the import read fewer instances of {', '.join(short)} than the "
                        "check pass counted, so it stopped; please report this (a rerun would stop here "
                        "again)"
                    )
            except BaseException as exc:  # noqa: BLE001 - the board keeps the first, which the engine raises
                board.stop(exc)

        def slug_step() -> None:
            try:
                # Before any member's message is queued in the organizations' shards (they wait for it);
                # not once a lane has failed (wait_for raises).
                board.wait_for(BEFORE_SLUG_STEP)
                self._final_slugs()
                board.passed(SLUG_STEP, 1)
            except BaseException as exc:  # noqa: BLE001 - as in write_lane
                board.stop(exc)

        threads = [
            threading.Thread(target=write_lane, args=(lane,), name=f"import-{lane}") for lane in FIRST_PASS
        ]
        threads.append(threading.Thread(target=slug_step, name="import-slugs"))
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        except BaseException:  # an interrupt: the lanes stop after the batches they are writing
            board.stop()
            # A second interrupt does not leave them writing unwatched; a third is obeyed at once (a
            # lane may be waiting on control for up to its deadline).
            patience = 1
            for thread in threads:
                while thread.is_alive():
                    try:
                        thread.join()
                    except KeyboardInterrupt:
                        if not patience:
                            raise
                        patience -= 1
            raise
        if board.cause is not None:  # a lane failed (the other one stopped: LaneStopped is no cause)
            raise board.cause
        self._settle()
        if self._slugs is not None:
            # The slug step's drains came before the members' messages: whatever their deliveries left
            # (a shard the region's background drainer held, a delivery that failed) goes now, so the
            # import ends with control up to date.
            self._slugs.deliver_rest([new for _old, new in self._pkmap.entries(ORGANIZATION)])
        deferred = itertools.chain.from_iterable(
            read_spool(spool, key) for key in lane_models(scan.counts, DEFERRED)
        )
        self._write_all(self._batches(deferred, deferred=True, summary=summary), preparer, summary)
        self._settle()

    def _lane_records(
        self, spool: tuple[SpoolPart, ...], lane: str, keys: list[str], board: LaneBoard
    ) -> Iterator[Record]:
        """The lane's records, a model at a time: the first one ready (``region.importer.lanes``), or
        else the first one listed, whose batches then wait for it to be."""
        pending = list(keys)

        def ready(key: str) -> bool:
            spec = lookup(key)
            if spec is None:
                return True
            if any(target in pending for target in spec.targets):
                return False
            return board.complete(_elsewhere(spec, lane))

        while pending:
            key = next((k for k in pending if ready(k)), pending[0])
            pending.remove(key)
            yield from read_spool(spool, key)

    @contextmanager
    def _records(self, scan: Scan) -> Iterator[Iterator[Record]]:
        """The export's records for the first pass: those the check pass kept, or the export read again."""
        if scan.spool is not None:
            yield read_spool(scan.spool)
            return
        with self._open() as stream:
            yield read_records(stream, self._source)

    def _final_slugs(self) -> None:
        """Reserve the imported organizations' slugs globally (through control) before the deferred
        organization auth tokens, which are minted for the final slugs."""
        imported = self._pkmap.entries(ORGANIZATION)
        if not imported or self._slugs is None:
            return
        final = self._slugs.reserve(
            self.options.import_id, {new: self._pkmap.value(ORGANIZATION, old) or "" for old, new in imported}
        )
        for old, new in imported:
            asked = self._pkmap.value(ORGANIZATION, old) or ""
            slug = final.get(new)
            if slug is not None and slug != asked:
                self._findings.add(
                    Finding(
                        "renamed",
                        ORGANIZATION,
                        self._org_ordinals.get(old, 0),
                        old,
                        new,
                        f"slug {asked!r} is held by an organization in another region; imported as {slug!r}",
                    )
                )
            if slug:  # only the value changes: control's lane may be reading the organizations' pks
                self._pkmap.set_value(ORGANIZATION, old, slug)

    # ---- batching -----------------------------------------------------------------------------------

    def _batches(
        self,
        stream: Iterator[Record],
        *,
        deferred: bool,
        summary: ImportSummary,
        spool: TextIO | None = None,
        runs: bool = False,
    ) -> Iterator[_Batch]:
        """The stream's batches: a model's consecutive records, at most ``batch_size`` a batch. With
        ``runs`` (a lane, which reads a model's records from its own file) a batch also ends where the
        export listed another model's records in between, so that the batches, and the ordinals a
        resumed import finds recorded, are those of a pass in file order."""
        ordinals: dict[str, int] = {}

        def numbered() -> Iterator[tuple[Record, int]]:
            for record in stream:
                ordinals[record.model] = ordinals.get(record.model, 0) + 1
                yield record, ordinals[record.model]

        last = [-2, 0]  # the previous record's index, the number of its run

        def run_of(pair: tuple[Record, int]) -> tuple[str, int]:
            record = pair[0]
            if runs and record.index != last[0] + 1:
                last[1] += 1
            last[0] = record.index
            return record.model, last[1]

        for (model, _run), run in itertools.groupby(numbered(), key=run_of):
            spec = lookup(model)
            for chunk in _parts(run, self.options.batch_size, self.options.batch_chars):
                # (a skipped model's records are never spooled for the deferred pass, and in lanes the
                # deferred pass is the first to see the deferred models: each is reported once)
                if spec is None:
                    self._skip_model(model, len(chunk), "siloport does not know this model", summary)
                    continue
                if spec.scope not in self.options.scope.admits:
                    self._skip_model(
                        model,
                        len(chunk),
                        f"{spec.scope.value} data is outside the {self.options.scope.value} scope",
                        summary,
                    )
                    continue
                if spec.deferred == deferred:
                    yield _Batch(spec, chunk)
                elif spool is not None:
                    for record, _ordinal in chunk:
                        spool.write(json.dumps(_spooled(record), separators=(",", ":")) + "\n")

    def _skip_model(self, model: str, count: int, reason: str, summary: ImportSummary) -> None:
        summary.models.setdefault(model, ModelStats()).skipped += count
        if self._board is not None:
            self._board.passed(model, count)
        if model not in self._reported:
            self._reported.add(model)
            self._findings.add(Finding("skipped_model", model, 0, None, None, reason))

    # ---- writing ------------------------------------------------------------------------------------

    def _settle(self, timeout_s: float | None = None) -> None:
        for writer in self._writers.values():
            writer.settle(timeout_s)

    def _write_all(
        self, batches: Iterator[_Batch], preparer: Preparer, summary: ImportSummary, lane: str | None = None
    ) -> None:
        """Write the batches in order while the next ones are read and prepared.

        A batch is in flight while the next is prepared, unless the next needs primary keys it brings.
        A batch may also be sent while the previous one is still being written (the database works on
        both at once: control's, or the region's on PostgreSQL; or the two go to different silos), when
        its model does not refer to the other's and the two share no unique key value, so their
        outcomes cannot depend on which commits first (``may_overlap``). Results are taken in order;
        after a failure at most the one batch sent after it is written too, and a rerun replays it.

        In a ``lane``, a batch whose model refers to a model of the other lane waits until that model
        is complete, having first taken the results of its own batches in flight (the other lane may
        be waiting for them)."""
        if self.options.row_by_row:  # the per-row baseline works one step at a time, as Sentry does
            for batch in batches:
                self._progress.begin(batch.spec.name)
                self._apply(self._prepare(batch, preparer), None, summary)
            return
        board = self._board if lane is not None else None
        flights: deque[tuple[PreparedBatch, Future[BatchResult] | None]] = deque()
        stopped: LaneStopped | None = None
        with ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="import-write") as pool:
            try:
                self._write_pipelined(batches, preparer, summary, lane=lane, pool=pool, flights=flights)
            except LaneStopped as exc:
                stopped = exc
            except BaseException as exc:
                if board is not None:
                    board.stop(exc)  # the other lane stops now, not once this lane's writes in flight end
                raise
        if stopped is not None:
            # The other lane failed. The batches this lane sent are written: their findings and counts
            # belong in the report.
            while flights:
                self._apply(*flights.popleft(), summary)
            raise stopped

    def _write_pipelined(
        self,
        batches: Iterator[_Batch],
        preparer: Preparer,
        summary: ImportSummary,
        *,
        lane: str | None,
        pool: ThreadPoolExecutor,
        flights: deque[tuple[PreparedBatch, Future[BatchResult] | None]],
    ) -> None:
        board = self._board if lane is not None else None
        for batch in batches:
            if board is not None:
                board.check()
                elsewhere = _elsewhere(batch.spec, lane)
                if elsewhere and not board.complete(elsewhere):
                    while flights:
                        self._apply(*flights.popleft(), summary)
                    board.wait_for(elsewhere)
            self._progress.begin(batch.spec.name)
            # preparing the next batch looks up the primary keys of the models it points at
            while flights and any(f.spec.name in batch.spec.targets for f, _sent in flights):
                self._apply(*flights.popleft(), summary)
            prepared = self._prepare(batch, preparer)
            concurrent = self._writers[prepared.spec.silo].overlaps
            while flights and not (
                len(flights) < MAX_IN_FLIGHT
                and all(may_overlap(f, prepared, concurrent=concurrent) for f, _sent in flights)
            ):
                self._apply(*flights.popleft(), summary)
            sent = (
                pool.submit(self._writers[prepared.spec.silo].write, prepared.batch)
                if prepared.batch is not None
                else None
            )
            flights.append((prepared, sent))
        while flights:
            self._apply(*flights.popleft(), summary)

    def _prepare(self, batch: _Batch, preparer: Preparer) -> PreparedBatch:
        spec = batch.spec
        prepared = PreparedBatch(spec, len(batch.records))
        rows: list[Row] = []
        for record, ordinal in batch.records:
            prepared.where[record.pk] = record
            if spec.name == ORGANIZATION:
                self._org_slugs[record.pk] = str(record.fields.get("slug") or "")
                self._org_ordinals[record.pk] = ordinal
            row, findings = preparer.prepare(spec, record, ordinal)
            prepared.findings.extend(findings)
            if row is None:
                prepared.skipped += 1
            else:
                rows.append(row)
        if rows:
            prepared.batch = Batch(spec.name, batch.records[0][1], tuple(rows), self._batch_options())
        return prepared

    def _apply(
        self, prepared: PreparedBatch, sent: Future[BatchResult] | None, summary: ImportSummary
    ) -> None:
        """Take a batch's result (waiting for it) into the primary-key map, the findings and the summary."""
        spec = prepared.spec
        stats = summary.models.setdefault(spec.name, ModelStats())
        for finding in prepared.findings:
            self._findings.add(finding)
        stats.skipped += prepared.skipped
        if prepared.batch is not None:
            result = self._result(prepared, prepared.batch, sent)
            if result.replayed:
                self._check_replay(prepared, prepared.batch, result)
            elif len(result.entries) != len(prepared.batch.rows):
                # Every instance of a written batch has its entry; an answer without them (a silo of
                # another version, say) would leave every reference to them dangling.
                raise WriteFailed(
                    f"{self._source}: the {spec.silo.value} silo answered the batch of {spec.name} from "
                    f"#{prepared.batch.first_ordinal} with {len(result.entries)} entries for "
                    f"{len(prepared.batch.rows)} instances; are both silos the same version of siloport?"
                )
            keep_values = spec.name == ORGANIZATION  # slugs are used later; usernames are not kept
            # Only a model some foreign key points at is looked up later: the others (options, keys,
            # memberships of teams...) stay out of the map, which is most of what grows with the export.
            keep_pks = spec.name in REFERENCED
            for entry in result.entries:
                if keep_pks:
                    value = entry.value if keep_values else None
                    self._pkmap.insert(spec.name, entry.old_pk, entry.new_pk, entry.kind, value)
                stats.add(entry.kind)
            for finding in result.findings:
                self._findings.add(finding)
            with self._tally:  # the lanes' threads count into one summary
                if result.replayed:
                    summary.replayed_batches += 1
                else:
                    summary.written_batches += 1
        self._progress.advance(spec.name, prepared.records)
        if self._board is not None:
            self._board.passed(spec.name, prepared.records)

    def _batch_options(self) -> BatchOptions:
        return BatchOptions(
            import_id=self.options.import_id,
            scope=self.options.scope,
            merge_users=self.options.merge_users,
            overwrite_configs=self.options.overwrite_configs,
            row_by_row=self.options.row_by_row,
            no_bookkeeping=self.options.no_bookkeeping,
            fresh=self._fresh,
        )

    def _result(self, prepared: PreparedBatch, batch: Batch, sent: Future[BatchResult] | None) -> BatchResult:
        """The owning silo's answer for the batch (written now unless ``sent`` already)."""
        try:
            return sent.result() if sent is not None else self._writers[prepared.spec.silo].write(batch)
        except SharedError as exc:
            raise self._failure(prepared.spec, batch, prepared.where, exc) from exc

    def _check_replay(self, prepared: PreparedBatch, batch: Batch, result: BatchResult) -> None:
        """A replayed batch must hold the instances this export puts in it: an export fixed by adding or
        removing records of a model whose later batches were written shifts them."""
        recorded = sorted(entry.old_pk for entry in result.entries)
        if recorded == sorted(row.old_pk for row in batch.rows):
            return
        record = prepared.where[batch.rows[0].old_pk]
        raise ReplayMismatch(
            f"{self._source}:{record.line}:{record.column} (record {record.index}): the batch of "
            f"{batch.model} from #{batch.first_ordinal} was written by an earlier run of import "
            f"{self.options.import_id} with other instances (pks {recorded[:5]}...); records of "
            f"{batch.model} were added or removed since. Fix an export only within the instances "
            "that failed, or import it under a new --import-uuid"
        )

    def _failure(
        self, spec: ModelSpec, batch: Batch, where: dict[int, Record], exc: SharedError
    ) -> SharedError:
        resume = f"run again with --import-uuid {self.options.import_id} to resume"
        # Errors from control carry a gRPC status `code`, a `reason` and a `detail` (shared.rpc.errors).
        code = getattr(getattr(exc, "code", None), "name", "")
        if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            message = f"control did not answer while writing {spec.name} from #{batch.first_ordinal}: {exc}"
            self._findings.add(Finding("error", spec.name, batch.first_ordinal, None, None, message))
            return ControlUnreachable(f"{message}; {resume}")
        refused = isinstance(exc, WriteRefused) or getattr(exc, "reason", "") == "write_refused"
        detail = getattr(exc, "detail", None)
        pk_text = str(getattr(exc, "pk", "") or getattr(detail, "pk", ""))
        pk = int(pk_text) if refused and pk_text.lstrip("-").isdigit() else batch.rows[0].old_pk
        record = where.get(pk) or where[batch.rows[0].old_pk]
        ordinal = next((r.ordinal for r in batch.rows if r.old_pk == pk), batch.first_ordinal)
        message = str(getattr(exc, "message", "") or exc)
        self._findings.add(Finding("error", spec.name, ordinal, pk if refused else None, None, message))
        position = f"{self._source}:{record.line}:{record.column} (record {record.index})"
        if refused:
            return BatchFailed(
                position,
                spec.name,
                pk,
                f"{message}. What the import wrote before it stopped stays written and recorded (a "
                f"rerun replays it); fix it and {resume}",
            )
        return WriteFailed(
            f"{position}: writing {spec.name} from #{batch.first_ordinal} failed: {message}; "
            "what the import wrote before it stopped stays written and recorded (a rerun replays it); "
            f"{resume}"
        )
