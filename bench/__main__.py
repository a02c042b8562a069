"""``python -m bench``: import generated exports end to end and compare with PostgreSQL's own COPY.

For each size it generates (or reuses) an export, then for each mode creates two fresh PostgreSQL
databases, starts control and a region as real processes, runs ``siloport import organizations`` as a
third process and prints: wall time and instances per second, per model rates, peak memory and CPU
seconds of each process, RPCs served by each silo, and the time PostgreSQL's ``COPY`` takes to load the
same rows into empty copies of the same tables (indexes included), with the ratio import time / COPY
time.

Modes: ``siloport`` (the normal import), ``no-bookkeeping`` (the same without the batch records that
make an import resumable: their cost is the difference), ``per-row`` (one INSERT per instance and one
control RPC per 20 instances, as an ORM-based import does).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy import Table

from bench.generate import SIZED_SHAPE, per_organization, sized, write_export
from control.db.models import RELOCATION_TABLES as CONTROL_TABLES
from region.db.models import RELOCATION_TABLES as REGION_TABLES
from region.importer.options import DEFAULT_BATCH_SIZE
from shared.launcher import SiloProcess, free_port

MODES = {
    "siloport": [],
    "no-bookkeeping": ["--bench-no-bookkeeping"],
    "per-row": ["--bench-row-by-row", "--batch-size", "20"],
}
PROGRESS = re.compile(r"^\s+(\S+)\s+([\d,]+)/([\d,]+)\s+\d+%\s+[\d,]+/s\s+([\d.]+) s\s*$")
SERVED = re.compile(r"stopped; served (\d+) call\(s\): (\{.*\})")
MiB = 1024 * 1024


@dataclass(frozen=True)
class BenchOptions:
    sizes: tuple[int, ...]
    modes: tuple[str, ...]
    admin_url: str
    workdir: Path
    batch_size: int
    keep_databases: bool
    write_workers: int = 0
    json_path: Path | None = None
    #: Runs of each size and mode.
    repeat: int = 1


@dataclass
class Figures:
    size: int
    mode: str
    #: Which of the repeated runs of this size and mode (from 1).
    run: int = 1
    instances: int = 0
    wall_s: float = 0.0
    #: model -> (instances, seconds, seconds from the importer's start to its line), from the importer's
    #: progress lines
    per_model: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    #: process -> CPU seconds (user + system) it used
    cpu_s: dict[str, float] = field(default_factory=dict)
    rpcs: dict[str, dict[str, int]] = field(default_factory=dict)
    copy_s: float = 0.0
    copy_rows: int = 0

    @property
    def rate(self) -> float:
        return self.instances / self.wall_s if self.wall_s else 0.0

    @property
    def ratio(self) -> float:
        return self.wall_s / self.copy_s if self.copy_s else 0.0


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Spread:
    """The runs of one size and mode: medians and ranges (each run's ratio uses the COPY timed right
    after it, in the same minute of the machine)."""

    size: int
    mode: str
    runs: int
    instances: int
    wall_s: float
    wall_range: tuple[float, float]
    copy_s: float
    ratio: float
    ratio_range: tuple[float, float]
    importer_mib: float


def spreads(results: Iterable[Figures]) -> list[Spread]:
    """One :class:`Spread` per size and mode, in the order the runs came."""
    grouped: dict[tuple[int, str], list[Figures]] = {}
    for figures in results:
        grouped.setdefault((figures.size, figures.mode), []).append(figures)
    found = []
    for (size, mode), runs in grouped.items():
        walls = [f.wall_s for f in runs]
        ratios = [f.ratio for f in runs]
        found.append(
            Spread(
                size=size,
                mode=mode,
                runs=len(runs),
                instances=max(f.instances for f in runs),
                wall_s=statistics.median(walls),
                wall_range=(min(walls), max(walls)),
                copy_s=statistics.median(f.copy_s for f in runs),
                ratio=statistics.median(ratios),
                ratio_range=(min(ratios), max(ratios)),
                importer_mib=max(f.peak_rss_mib.get("importer", 0.0) for f in runs),
            )
        )
    return found


def export_for(size: int, workdir: Path) -> Path:
    path = workdir / f"export-{size}.json"
    if not path.exists():
        started = time.monotonic()
        partial = path.with_suffix(".partial")
        write_export(partial, sized(size))
        partial.rename(path)
        print(f"generated {path} in {time.monotonic() - started:.1f} s", flush=True)
    return path


def _sqlalchemy_url(admin_url: str, database: str) -> str:
    base = admin_url.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{database}"


def _libpq_url(admin_url: str, database: str) -> str:
    return f"{admin_url.rsplit('/', 1)[0]}/{database}"


def _tree(pid: int) -> list[int]:
    """A live process and its live descendants (control's write workers)."""
    found, index = [pid], 0
    while index < len(found):
        try:
            tasks = list(Path(f"/proc/{found[index]}/task").glob("*"))
        except OSError:
            tasks = []  # it ended meanwhile
        for task in tasks:
            try:
                found.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue  # the thread ended meanwhile
        index += 1
    return found


def _peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a live process, plus its descendants' peaks (summed, so an upper bound
    of what they held at once)."""
    total = 0
    for member in _tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue  # it ended meanwhile
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total / MiB


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of a live process and its live descendants, from the kernel's
    accounting (a descendant that ended before is counted only once its parent waited for it)."""
    ticks = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_s(admin_url: str) -> float | None:
    """CPU seconds of the PostgreSQL server's ended backends, from the kernel's accounting of the
    postmaster's waited-for children; None where the server is not on this machine. Read before and
    after an import, with the silos' connections closed in between, the difference is what their
    backends (and any autovacuum worker that ran meanwhile) used. Long-lived background processes (the
    WAL writer, the checkpointer) are not counted."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        row = admin.execute("SELECT pg_backend_pid()").fetchone()
        try:  # while the backend is there (it ends with the connection)
            pid = row[0] if row else 0
            backend = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            parent = backend[1]
            # The pid is the server's: on this machine only if both it and its parent are postgres
            # processes (a server in a container or behind a tunnel has pids of its own).
            if any(Path(f"/proc/{p}/comm").read_text().strip() != "postgres" for p in (pid, parent)):
                return None
            postmaster = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None  # a server elsewhere
    return (int(postmaster[13]) + int(postmaster[14])) / os.sysconf("SC_CLK_TCK")


def _wait_disconnected(admin_url: str, names: Iterable[str], timeout_s: float = 10.0) -> bool:
    """Wait until no connection to the databases ``names`` is left (their backends have ended); whether
    that happened within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(admin_url, autocommit=True) as admin:
        while True:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s)", (list(names),)
            ).fetchone()
            if not row or not row[0]:
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
    time.sleep(0.1)  # and the postmaster has waited for them
    return True


def _served(log: Path) -> dict[str, int]:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        found = SERVED.search(line)
        if found:
            calls: dict[str, int] = json.loads(found.group(2))
            return calls
    return {}


def run_import(export: Path, size: int, mode: str, options: BenchOptions, run: int = 1) -> Figures:
    tag = uuid.uuid4().hex[:10]
    names = {"control": f"bench_control_{tag}", "region": f"bench_region_{tag}"}
    logs = options.workdir / (f"logs-{size}-{mode}" + (f"-run{run}" if options.repeat > 1 else ""))
    logs.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(16)
    figures = Figures(size, mode, run)
    with psycopg.connect(options.admin_url, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        urls = {silo: _sqlalchemy_url(options.admin_url, name) for silo, name in names.items()}
        postgres_before = _postgres_cpu_s(options.admin_url)
        region_port = free_port()
        common = ["--rpc-secrets", secret, "--grace", "10"]
        control = SiloProcess.start(
            "control",
            [
                "--listen",
                "127.0.0.1:0",
                "--db",
                urls["control"],
                "--region-addresses",
                f"bench=127.0.0.1:{region_port}",
                "--write-workers",
                str(options.write_workers),
                *common,
            ],
            log_path=logs / "control.log",
        )
        region = SiloProcess.start(
            "region",
            [
                "--listen",
                f"127.0.0.1:{region_port}",
                "--db",
                urls["region"],
                "--name",
                "bench",
                "--control-address",
                control.address,
                *common,
            ],
            log_path=logs / "region.log",
        )
        try:
            control.wait_healthy()
            region.wait_healthy()
            figures.wall_s, figures.peak_rss_mib["importer"], figures.cpu_s["importer"], stderr = _import(
                export,
                region_url=urls["region"],
                control_address=control.address,
                secret=secret,
                mode=mode,
                options=options,
                logs=logs,
            )
            figures.peak_rss_mib["control"] = _peak_rss_mib(control.process.pid)
            figures.peak_rss_mib["region"] = _peak_rss_mib(region.process.pid)
            figures.cpu_s["control"] = _cpu_s(control.process.pid)
            figures.cpu_s["region"] = _cpu_s(region.process.pid)
        finally:
            region.stop()
            control.stop()
        if postgres_before is not None:
            if _wait_disconnected(options.admin_url, names.values()):
                postgres_after = _postgres_cpu_s(options.admin_url)
                if postgres_after is not None:
                    figures.cpu_s["postgresql"] = postgres_after - postgres_before
            else:
                print(
                    "   (connections to the import's databases outlived the silos: PostgreSQL's CPU left out)"
                )
        figures.rpcs = {"control": _served(logs / "control.log"), "region": _served(logs / "region.log")}
        for at, line in stderr:
            found = PROGRESS.match(line)
            if found:
                done, seconds = int(found.group(2).replace(",", "")), float(found.group(4))
                figures.per_model[found.group(1)] = (done, seconds, at)
        figures.instances = sum(done for done, _seconds, _at in figures.per_model.values())
        for silo, tables in (("control", CONTROL_TABLES), ("region", REGION_TABLES)):
            seconds, rows = copy_reference(_libpq_url(options.admin_url, names[silo]), tables.values())
            figures.copy_s += seconds
            figures.copy_rows += rows
    finally:
        if not options.keep_databases:
            with psycopg.connect(options.admin_url, autocommit=True) as admin:
                for name in names.values():
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return figures


def _import(
    export: Path,
    *,
    region_url: str,
    control_address: str,
    secret: str,
    mode: str,
    options: BenchOptions,
    logs: Path,
) -> tuple[float, float, float, list[tuple[float, str]]]:
    """Run the importer; its wall time, its peak RSS and CPU seconds (from the kernel's accounting) and
    its stderr's lines, each with the seconds since the start at which it came."""
    args = [
        str(Path(sys.executable).with_name("siloport")),
        "import", "organizations", str(export), "--no-prompt",
        "--control-address", control_address, "--name", "bench", "--db", region_url,
        "--batch-size", str(options.batch_size),
        *MODES[mode],
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILOPORT_")}
    env["SILOPORT_RPC_SECRETS"] = secret
    out_path, err_path = logs / "import.out", logs / "import.err"
    lines: list[tuple[float, str]] = []
    with out_path.open("w") as out, err_path.open("w") as err:
        started = time.monotonic()
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            encoding="utf-8",
            errors="replace",  # a stray byte must not stop the copying (the importer would block)
        )

        def copy_stderr() -> None:  # noting when each line came, for the models' "done at" column
            assert process.stderr is not None
            for line in process.stderr:
                lines.append((time.monotonic() - started, line))
                err.write(line)

        copier = threading.Thread(target=copy_stderr, name="bench-stderr")
        copier.start()
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        copier.join()
    if process.returncode != 0:
        tail = "".join(line for _at, line in lines)[-2000:]
        raise BenchError(f"the import failed with exit code {process.returncode}:\n{tail}")
    return wall, usage.ru_maxrss * 1024 / MiB, usage.ru_utime + usage.ru_stime, lines


def copy_reference(libpq_url: str, tables: Iterable[Table]) -> tuple[float, int]:
    """COPY every non-empty table's rows out, then time COPY of them into an empty copy of the table
    (same columns, indexes and constraints). Returns (seconds, rows)."""
    total, rows = 0.0, 0
    with psycopg.connect(libpq_url, autocommit=True) as connection:
        for table in tables:
            name = table.name
            count = connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()
            if not count or not count[0]:
                continue
            data = bytearray()
            with connection.cursor().copy(f'COPY "{name}" TO STDOUT') as copy:
                for chunk in copy:
                    data += chunk
            target = f"bench_copy_{name}"[:63]
            connection.execute(f'DROP TABLE IF EXISTS "{target}"')
            connection.execute(f'CREATE TABLE "{target}" (LIKE "{name}" INCLUDING ALL)')
            # LIKE copies no foreign keys: add the table's own, pointing at the loaded tables, so that
            # COPY checks them as the import's inserts do.
            for (definition,) in connection.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
                "AND contype = 'f'",
                (name,),
            ).fetchall():
                connection.execute(f'ALTER TABLE "{target}" ADD {definition}')
            started = time.monotonic()
            with connection.transaction(), connection.cursor().copy(f'COPY "{target}" FROM STDIN') as copy:
                copy.write(bytes(data))
            total += time.monotonic() - started
            rows += int(count[0])
            connection.execute(f'DROP TABLE "{target}"')
    return total, rows


def report(figures: Figures, repeat: int = 1) -> None:
    orgs = max(1, round(figures.size / per_organization(**SIZED_SHAPE)))
    of = f" · run {figures.run} of {repeat}" if repeat > 1 else ""
    print(f"\n== {figures.instances:,} instances ({orgs:,} organizations) · mode {figures.mode}{of}")
    print(f"   wall {figures.wall_s:.1f} s · {figures.rate:,.0f} instances/s")
    print(
        f"   COPY of the same {figures.copy_rows:,} rows: {figures.copy_s:.2f} s · "
        f"import / COPY = {figures.ratio:.1f}x"
    )
    print("   peak RSS: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in figures.peak_rss_mib.items()))
    print(
        "   CPU seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in figures.cpu_s.items())
        + f" (the machine has {os.cpu_count()} cores: {os.cpu_count() or 1} x wall = "
        f"{(os.cpu_count() or 1) * figures.wall_s:.0f} s"
        + (
            "; postgresql: the backends of the import's connections"
            if "postgresql" in figures.cpu_s
            else "; PostgreSQL's own work is not counted: the server is not on this machine"
        )
        + ")"
    )
    for silo, calls in figures.rpcs.items():
        listed = ", ".join(f"{m} {n:,}" for m, n in sorted(calls.items(), key=lambda kv: -kv[1]))
        print(f"   RPCs served by {silo}: {sum(calls.values()):,} ({listed})")
    print(f"   {'model':<32} {'instances':>10} {'seconds':>8} {'per s':>9} {'done at':>8}")
    for model, (done, seconds, at) in sorted(figures.per_model.items(), key=lambda item: item[1][2]):
        rate = done / seconds if seconds else 0.0
        print(f"   {model:<32} {done:>10,} {seconds:>8.2f} {rate:>9,.0f} {at:>7.2f}s")
    print(
        "   (a model's seconds run from its first batch taken to its last batch written; control's "
        "and the region's models are written at the same time, so the seconds overlap and do not "
        "add up to the wall time; done at: seconds from the importer's start to the model's progress "
        "line, in the order the models were done)",
        flush=True,
    )


def summary(results: list[Figures]) -> None:
    repeated = any(f.run > 1 for f in results)
    print("\n== summary")
    run_column = f" {'run':>3}" if repeated else ""
    print(f"   {'instances':>10} {'mode':<15}{run_column} {'wall s':>8} {'inst/s':>8} {'COPY s':>7} "
          f"{'ratio':>6} {'importer MiB':>12} {'RPCs':>7}")  # fmt: skip
    for f in results:
        rpcs = sum(sum(c.values()) for c in f.rpcs.values())
        run = f" {f.run:>3}" if repeated else ""
        print(
            f"   {f.instances:>10,} {f.mode:<15}{run} {f.wall_s:>8.1f} {f.rate:>8,.0f} {f.copy_s:>7.2f} "
            f"{f.ratio:>5.1f}x {f.peak_rss_mib.get('importer', 0):>12.0f} {rpcs:>7,}"
        )
    found = spreads(results)
    if repeated:
        print("\n== medians (ranges) over the runs; each run's ratio uses the COPY timed right after it")
        print(f"   {'instances':>10} {'mode':<15} {'runs':>4} {'wall s':>8} {'range':>11} {'COPY s':>7} "
              f"{'ratio':>6} {'range':>11} {'max MiB':>12}")  # fmt: skip
        for m in found:
            walls = f"{m.wall_range[0]:.1f}-{m.wall_range[1]:.1f}"
            ratios = f"{m.ratio_range[0]:.1f}-{m.ratio_range[1]:.1f}x"
            print(
                f"   {m.instances:>10,} {m.mode:<15} {m.runs:>4} {m.wall_s:>8.1f} {walls:>11} "
                f"{m.copy_s:>7.2f} {m.ratio:>5.1f}x {ratios:>11} {m.importer_mib:>12.0f}"
            )
    for line in comparisons(found):
        print(f"   {line}")


def comparisons(found: Sequence[Spread]) -> list[str]:
    """The bookkeeping's cost and the per-row baseline's slowness, from each mode's median wall time."""
    by = {(m.size, m.mode): m for m in found}
    lines = []
    median = " (medians)" if any(m.runs > 1 for m in found) else ""
    for size in sorted({m.size for m in found}):
        normal, bare, per_row = (by.get((size, mode)) for mode in ("siloport", "no-bookkeeping", "per-row"))
        if normal and bare and bare.wall_s:
            cost = 100 * (normal.wall_s - bare.wall_s) / bare.wall_s
            lines.append(
                f"{size:,}: resumable bookkeeping costs {cost:+.1f}% of the import without it{median}"
            )
        if normal and per_row and normal.wall_s:
            lines.append(
                f"{size:,}: per-row baseline takes {per_row.wall_s / normal.wall_s:.1f}x as long{median}"
            )
    return lines


def parse_args(argv: Sequence[str] | None) -> BenchOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="needs PostgreSQL (the admin URL's role must be able to create databases)",
    )
    parser.add_argument(
        "--instances",
        default="100000",
        help="export sizes, comma separated (default %(default)s; e.g. 100000,300000,1000000)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma separated, from {', '.join(MODES)} (default: all)",
    )
    parser.add_argument(
        "--pg",
        default=os.environ.get("SILOPORT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin URL of the PostgreSQL server (env SILOPORT_BENCH_PG; default %(default)s)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(".bench"), help="exports and logs (default .bench)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="the import's batch size (default %(default)s)",
    )
    parser.add_argument(
        "--write-workers",
        type=int,
        default=0,
        metavar="N",
        help="control's write worker processes (control serve --write-workers; default %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="runs of each size and mode, the modes taking turns in each round (the machine's speed "
        "changes from minute to minute); the summary adds each one's median and range (default "
        "%(default)s)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--keep-databases", action="store_true", help="do not drop the databases")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(unknown)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    options = BenchOptions(
        sizes=tuple(int(s.replace("_", "")) for s in args.instances.split(",") if s),
        modes=modes,
        admin_url=args.pg,
        workdir=args.workdir.resolve(),
        batch_size=args.batch_size,
        keep_databases=args.keep_databases,
        json_path=args.json,
        write_workers=args.write_workers,
        repeat=args.repeat,
    )
    options.workdir.mkdir(parents=True, exist_ok=True)
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    for name in [n for n in os.environ if n.startswith("SILOPORT_") and n != "SILOPORT_BENCH_PG"]:
        del os.environ[name]  # the silos and the importer get only what the benchmark gives them
    results: list[Figures] = []
    try:
        for size in options.sizes:
            export = export_for(size, options.workdir)
            for run in range(1, options.repeat + 1):
                for mode in options.modes:
                    figures = run_import(export, size, mode, options, run)
                    report(figures, options.repeat)
                    results.append(figures)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    summary(results)
    if options.json_path is not None:
        options.json_path.write_text(json.dumps([asdict(f) for f in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
