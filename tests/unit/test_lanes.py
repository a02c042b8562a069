"""The import's lanes: control's models and the region's are written by a thread each, a batch whose
model refers to a model of the other lane waits until that model is complete, and a failure in one lane
stops the other. The engine runs here against writers that stand in for the two silos (the end-to-end
tests run it against real ones)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from region.importer.engine import ImportEngine, ImportSummary
from region.importer.lanes import (
    AFTER_SLUG_STEP,
    BEFORE_SLUG_STEP,
    CONTROL,
    REGION,
    LaneBoard,
    LaneStopped,
    lane_models,
    lane_of,
    spool_key,
)
from region.importer.options import BATCH_CHARS, ImportOptions
from region.importer.scan import Scan, scan_file
from shared.relocation.batch import Batch, BatchResult, Entry
from shared.relocation.findings import FindingsLog
from shared.relocation.pkmap import ImportKind
from shared.relocation.registry import MODELS, lookup
from shared.relocation.spec import ImportScope, Silo
from tests.exports import generate, write_export

IMPORT_ID = "00000000-0000-0000-0000-00000000000a"


def test_each_model_has_one_lane_and_unknown_ones_share_a_spool_file() -> None:
    assert lane_of("sentry.user") == CONTROL
    assert lane_of("sentry.organizationmember") == REGION
    assert lane_of("sentry.orgauthtoken") == "deferred"
    assert lane_of("sentry.nosuchmodel") == REGION  # skipped there, with a finding
    assert spool_key("sentry.nosuchmodel") == spool_key("acme.widget") == "unknown"
    counts = {"sentry.user": 2, "acme.widget": 1, "sentry.organization": 1, "sentry.nosuchmodel": 3}
    assert lane_models(counts, REGION) == ["unknown", "sentry.organization"]
    assert lane_models(counts, CONTROL) == ["sentry.user"]


def test_the_board_wakes_a_waiting_lane_when_a_model_completes_or_another_lane_fails() -> None:
    board = LaneBoard({"sentry.user": 3, "sentry.team": 1})
    assert board.complete(["sentry.organization"])  # not in the export: nothing to wait for
    assert not board.complete(["sentry.user"])
    woke: list[str] = []

    def waiter() -> None:
        board.wait_for(["sentry.user"])
        woke.append("complete")

    thread = threading.Thread(target=waiter)
    thread.start()
    board.passed("sentry.user", 2)
    time.sleep(0.05)
    assert woke == []  # one instance still to come
    board.passed("sentry.user", 1)
    thread.join(5)
    assert woke == ["complete"]

    stopped: list[BaseException] = []

    def stopped_waiter() -> None:
        try:
            board.wait_for(["sentry.team"])
        except LaneStopped as exc:
            stopped.append(exc)

    # A lane that read all its records and still left instances uncounted (an internal fault) finds
    # them short and fails: whoever waits on them is stopped, never let through to write against them.
    short = LaneBoard({"sentry.user": 2, "sentry.email": 1})
    short.passed("sentry.email", 1)
    outcome: list[str] = []

    def short_waiter() -> None:
        try:
            short.wait_for(["sentry.user"])
            outcome.append("went on")
        except LaneStopped:
            outcome.append("stopped")

    thread = threading.Thread(target=short_waiter)
    thread.start()
    assert short.short(["sentry.user", "sentry.email"]) == ["sentry.user"]
    time.sleep(0.05)
    assert outcome == []  # still waiting: asking changes nothing
    first, later = RuntimeError("control is gone"), RuntimeError("and so is the database")
    short.stop(LaneStopped("stopped"))
    short.stop(first)
    short.stop(later)
    thread.join(5)
    assert outcome == ["stopped"]
    assert short.cause is first  # the import raises the first real error, not a later one or LaneStopped

    thread = threading.Thread(target=stopped_waiter)
    thread.start()
    time.sleep(0.05)
    board.stop()
    thread.join(5)
    assert not thread.is_alive() and len(stopped) == 1
    with pytest.raises(LaneStopped):
        board.check()


@dataclass
class Log:
    """Every write of both stand-in silos: (silo, model, first ordinal, rows, started, ended)."""

    writes: list[tuple[Silo, str, int, int, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class StandInWriter:
    """Gives each row the next pk; slow when asked, failing at one batch when asked (and setting
    ``failed``), and holding the batches of ``held`` until ``release`` is set."""

    def __init__(
        self,
        silo: Silo,
        log: Log,
        *,
        delay_s: float = 0.0,
        fail: tuple[str, int] | None = None,
        held: str | None = None,
        release: threading.Event | None = None,
    ):
        self.silo = silo
        self.log = log
        self.delay_s = delay_s
        self.fail = fail
        self.failed = threading.Event()
        self.held, self.release = held, release
        self._next = 1000
        self._lock = threading.Lock()

    @property
    def overlaps(self) -> bool:
        return True

    def write(self, batch: Batch) -> BatchResult:
        started = time.monotonic()
        if self.fail == (batch.model, batch.first_ordinal):
            self.failed.set()
            raise RuntimeError(f"{self.silo.value} stand-in refuses {batch.model} #{batch.first_ordinal}")
        if batch.model == self.held and self.release is not None:
            self.release.wait(10)
        time.sleep(self.delay_s)
        with self._lock:
            first = self._next
            self._next += len(batch.rows)
        entries = tuple(
            Entry(row.old_pk, first + i, ImportKind.INSERTED, row.values.get("slug"))
            for i, row in enumerate(batch.rows)
        )
        with self.log.lock:
            self.log.writes.append(
                (self.silo, batch.model, batch.first_ordinal, len(batch.rows), started, time.monotonic())
            )
        return BatchResult(entries)

    def settle(self, timeout_s: float | None = None) -> None:
        pass


class StandInLedger:
    def __init__(self) -> None:
        self.finished = False
        self.failed = False

    def begin(self, options: ImportOptions, digest: str) -> tuple[bool, ImportOptions]:
        return False, options

    def finish(self, import_id: str, summary: Mapping[str, object]) -> None:
        self.finished = True

    def fail(self, import_id: str) -> None:
        self.failed = True


class QuietProgress:
    def start(self, totals: Mapping[str, int]) -> None: ...

    def begin(self, model: str) -> None: ...

    def advance(self, model: str, count: int) -> None: ...

    def finish(self) -> None: ...


class EchoSlugs:
    """Every organization keeps the slug it asked for; records when it was asked."""

    def __init__(self, delay_s: float = 0.1) -> None:
        self.delay_s = delay_s
        self.asked_at: float | None = None
        self.answered_at: float | None = None
        self.delivered_rest: list[int] | None = None

    def reserve(self, import_id: str, wanted: Mapping[int, str]) -> dict[int, str]:
        self.asked_at = time.monotonic()
        time.sleep(self.delay_s)  # as long as a real slug step's round trips
        self.answered_at = time.monotonic()
        return dict(wanted)

    def deliver_rest(self, organization_ids: Sequence[int]) -> None:
        self.delivered_rest = list(organization_ids)


@dataclass
class Run:
    engine: ImportEngine
    scan: Scan
    counts: dict[str, int]
    ledger: StandInLedger
    slugs: EchoSlugs
    summary: ImportSummary | None = None


def lanes_run(
    tmp_path: Path, control: StandInWriter, region: StandInWriter, *, orgs: int = 8, batch_size: int = 3
) -> Run:
    source = write_export(tmp_path / "export.json", generate(orgs=orgs, members=3, teams=2, projects=2))
    options = ImportOptions(scope=ImportScope.ORGANIZATIONS, import_id=IMPORT_ID, batch_size=batch_size)
    scan = scan_file(source, "export.json", options, spool_dir=tmp_path)
    assert scan.spool is not None  # the engine writes in lanes only from the kept records
    ledger, slugs = StandInLedger(), EchoSlugs()
    engine = ImportEngine(
        options,
        open_source=lambda: source.open(encoding="utf-8"),
        source_name="export.json",
        writers={Silo.CONTROL: control, Silo.REGION: region},
        ledger=ledger,
        progress=QuietProgress(),
        findings=FindingsLog(None),
        slugs=slugs,
    )
    return Run(engine, scan, dict(scan.counts), ledger, slugs)


def run_engine(run: Run) -> BaseException | None:
    """Run the import on a thread of its own, so a deadlock fails the test instead of hanging it."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            run.summary = run.engine.run(run.scan)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the import's lanes did not finish: deadlock"
    return outcome[0]


def test_lanes_write_everything_once_and_wait_only_for_models_of_the_other_lane(tmp_path: Path) -> None:
    log = Log()
    control = StandInWriter(Silo.CONTROL, log, delay_s=0.01)
    region = StandInWriter(Silo.REGION, log)
    run = lanes_run(tmp_path, control, region)
    assert run_engine(run) is None
    assert run.ledger.finished

    written: dict[str, int] = {}
    for _silo, model, _first, rows, _started, _ended in log.writes:
        written[model] = written.get(model, 0) + rows
    assert written == run.counts  # every instance once, none twice
    assert run.summary is not None  # its table lists the models as the export does, not as lanes ended
    assert list(run.summary.models) == list(run.counts)

    ends: dict[str, float] = {}
    for _silo, model, _first, _rows, _started, ended in log.writes:
        ends[model] = max(ends.get(model, 0.0), ended)
    for silo, model, first, _rows, started, _ended in log.writes:
        spec = lookup(model)
        assert spec is not None and spec.silo is silo
        for target in spec.targets:
            if target in ends:  # every batch of the model it refers to was written before it started
                assert started >= ends[target], f"{model} #{first} started before {target} was complete"
    # Both directions cross: members refer to control's users, user options to the region's organizations.
    assert {"sentry.organizationmember", "sentry.useroption"} <= written.keys()

    # The region's organizations, teams and projects did not wait for control's users.
    region_starts = [started for silo, _m, _f, _r, started, _e in log.writes if silo is Silo.REGION]
    assert min(region_starts) < ends["sentry.user"]
    # The slug step ran once the organizations were written, before any batch of members or team
    # memberships (whose messages go to the organizations' outbox shards), while the lanes went on.
    asked, answered = run.slugs.asked_at, run.slugs.answered_at
    assert asked is not None and answered is not None
    for before in ("sentry.organization", "sentry.organizationoption", "sentry.team", "sentry.project"):
        assert asked >= ends[before], before  # a rename would wait for their batches' locks
    after = ("sentry.organizationmember", "sentry.organizationmemberteam")
    assert answered <= min(started for _s, model, _f, _r, started, _e in log.writes if model in after)
    assert any(
        started < answered and ended > asked
        for silo, _m, _f, _r, started, ended in log.writes
        if silo is Silo.CONTROL
    )
    assert run.slugs.delivered_rest is not None and len(run.slugs.delivered_rest) == 8  # every organization


def test_a_failure_in_control_s_lane_stops_the_region_s_and_is_the_error_raised(tmp_path: Path) -> None:
    log = Log()
    control = StandInWriter(Silo.CONTROL, log, fail=("sentry.user", 7))
    # The region's teams are held until control has failed, so the slug step, which waits for them,
    # can only find the import failed.
    region = StandInWriter(Silo.REGION, log, delay_s=0.01, held="sentry.team", release=control.failed)
    run = lanes_run(tmp_path, control, region)
    error = run_engine(run)
    assert error is not None and not isinstance(error, LaneStopped)
    assert "control stand-in refuses sentry.user #7" in str(error)
    assert run.ledger.failed and not run.ledger.finished
    models = {model for _s, model, _f, _r, _st, _e in log.writes}
    # Members wait for every user, which never came: the region's lane stopped before writing them.
    assert "sentry.organizationmember" not in models
    assert run.slugs.asked_at is None


def test_a_failure_in_the_region_s_lane_stops_control_s_before_its_next_batch(tmp_path: Path) -> None:
    log = Log()
    control = StandInWriter(Silo.CONTROL, log, delay_s=0.02)
    region = StandInWriter(Silo.REGION, log, fail=("sentry.organization", 1))
    run = lanes_run(tmp_path, control, region, orgs=20)
    error = run_engine(run)
    assert error is not None and "region stand-in refuses sentry.organization #1" in str(error)
    control_batches = [w for w in log.writes if w[0] is Silo.CONTROL]
    user_batches = -(-run.counts["sentry.user"] // 3)
    assert len(control_batches) < user_batches  # stopped long before its users were all written


@pytest.mark.parametrize("chars", [BATCH_CHARS, 1000, 400, 150])
def test_a_model_listed_in_several_runs_is_batched_as_a_pass_in_file_order_would(
    tmp_path: Path, chars: int
) -> None:
    """A resumed import finds a batch's record by the model and first ordinal, so the lanes (reading a
    model's records from one file) must end a batch where the export listed other records in between,
    as the pass in file order (and a run that had no spool) does; and where a batch's text would pass
    its bound (``batch_chars``, small here so that batches of three split), on both paths alike."""
    records = list(generate(orgs=8, members=3, teams=2, projects=2))

    def interleaved(first: str, second: str, cut_first: int, cut_second: int) -> None:
        at = next(i for i, r in enumerate(records) if r["model"] == first)
        ones = [r for r in records if r["model"] == first]
        others = [r for r in records if r["model"] == second]
        rest = [r for r in records if r["model"] not in (first, second)]
        mixed = ones[:cut_first] + others[:cut_second] + ones[cut_first:] + others[cut_second:]
        records[:] = rest[:at] + mixed + rest[at:]

    interleaved("sentry.projectkey", "sentry.projectteam", 5, 7)  # two models of the region's lane
    interleaved("sentry.useroption", "sentry.projectoption", 10, 4)  # control's with the region's
    source = write_export(tmp_path / "export.json", records)
    options = ImportOptions(
        scope=ImportScope.ORGANIZATIONS, import_id=IMPORT_ID, batch_size=3, batch_chars=chars
    )

    def batches(spool_dir: Path | None, options: ImportOptions = options) -> list[tuple[str, int, int]]:
        log = Log()
        scan = scan_file(source, "export.json", options, spool_dir=spool_dir)
        assert (scan.spool is not None) == (spool_dir is not None)
        engine = ImportEngine(
            options,
            open_source=lambda: source.open(encoding="utf-8"),
            source_name="export.json",
            writers={
                Silo.CONTROL: StandInWriter(Silo.CONTROL, log),
                Silo.REGION: StandInWriter(Silo.REGION, log),
            },
            ledger=StandInLedger(),
            progress=QuietProgress(),
            findings=FindingsLog(None),
            slugs=EchoSlugs(),
        )
        run = Run(engine, scan, dict(scan.counts), StandInLedger(), EchoSlugs())
        assert run_engine(run) is None
        return sorted((model, first, rows) for _s, model, first, rows, _st, _e in log.writes)

    (tmp_path / "spool").mkdir()
    in_lanes = batches(tmp_path / "spool")
    assert in_lanes == batches(None)
    if chars < BATCH_CHARS:  # the same instances, in more batches than the batch size alone makes
        unbounded = batches(None, dataclasses.replace(options, batch_chars=BATCH_CHARS))
        assert sum(rows for *_, rows in in_lanes) == sum(rows for *_, rows in unbounded)
        assert len(in_lanes) > len(unbounded)
        if chars < 400:  # every record of the generator's is longer than half of that: a batch each
            assert {rows for *_, rows in in_lanes} == {1}
        return
    # The runs split the batches: #1-#3 and #4-#5 of the project keys, then #6 on after the project
    # teams in between; #10 of the user options alone before the project options in between.
    assert ("sentry.projectkey", 4, 2) in in_lanes and ("sentry.projectkey", 6, 3) in in_lanes
    assert ("sentry.useroption", 10, 1) in in_lanes and ("sentry.useroption", 11, 3) in in_lanes
    assert ("sentry.projectoption", 4, 1) in in_lanes and ("sentry.projectoption", 5, 3) in in_lanes


class FailingSlugs(EchoSlugs):
    def reserve(self, import_id: str, wanted: Mapping[int, str]) -> dict[int, str]:
        super().reserve(import_id, wanted)
        raise RuntimeError("control refused the slugs")


def test_a_failing_slug_step_stops_both_lanes_and_is_the_error_raised(tmp_path: Path) -> None:
    log = Log()
    control = StandInWriter(Silo.CONTROL, log, delay_s=0.01)
    region = StandInWriter(Silo.REGION, log)
    run = lanes_run(tmp_path, control, region)
    run.slugs = run.engine._slugs = FailingSlugs()
    error = run_engine(run)
    assert error is not None and "control refused the slugs" in str(error)
    assert run.ledger.failed and not run.ledger.finished
    models = {model for _s, model, _f, _r, _st, _e in log.writes}
    assert not models & {"sentry.organizationmember", "sentry.organizationmemberteam", "sentry.orgauthtoken"}


class Forgetful(StandInWriter):
    """Answers without the primary-key map, as a silo speaking another version of the wire might."""

    def write(self, batch: Batch) -> BatchResult:
        super().write(batch)
        return BatchResult(())


def test_an_answer_without_an_entry_for_every_instance_fails_the_import(tmp_path: Path) -> None:
    log = Log()
    run = lanes_run(tmp_path, Forgetful(Silo.CONTROL, log), StandInWriter(Silo.REGION, log))
    error = run_engine(run)
    assert error is not None
    assert "the control silo answered the batch of sentry.user from #1 with 0 entries for 3 instances" in str(
        error
    )
    assert run.ledger.failed


def test_the_models_that_wait_for_the_slug_step_are_those_with_messages_in_the_organizations_shards() -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from region.organizations import produce_outbox  # noqa: PLC0415

    queuing = set()
    for spec in MODELS:
        calls: list[object] = []
        work = SimpleNamespace(
            connection=SimpleNamespace(dialect=SimpleNamespace(name="sqlite")), enqueue_many=calls.append
        )
        produce_outbox(work, spec.name, [])  # type: ignore[arg-type]
        if calls:
            queuing.add(spec.name)
    assert queuing == AFTER_SLUG_STEP
    assert not AFTER_SLUG_STEP & set(BEFORE_SLUG_STEP)
