"""What an operator sees: a progress line per model while importing, a summary table at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from shared.relocation.findings import FindingsLog

if TYPE_CHECKING:
    from region.importer.engine import ImportSummary


class ConsoleProgress:
    """Per model: done/total, percent, rate and seconds since its first batch was taken. A model's line
    is printed once the model is done (control's and the region's models are written at the same time,
    so lines may come out of export order); on a terminal, the line of the model advanced last redraws
    in place meanwhile (at most every ``interval_s``). Safe to call from several threads."""

    def __init__(self, out: TextIO, *, enabled: bool = True, interval_s: float = 0.2) -> None:
        self._out = out
        self._enabled = enabled
        self._tty = enabled and out.isatty()
        self._interval = interval_s
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._ended: dict[str, float] = {}
        self._closed: set[str] = set()
        self._drawn = 0.0
        self._width = 0  # of the line drawn in place, to blank it

    def start(self, totals: Mapping[str, int]) -> None:
        with self._lock:
            self._totals = dict(totals)

    def begin(self, model: str) -> None:
        if model not in self._started:
            with self._lock:
                self._started.setdefault(model, time.monotonic())

    def advance(self, model: str, count: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._started.setdefault(model, now)
            self._done[model] = done = self._done.get(model, 0) + count
            self._ended[model] = now
            if done >= self._totals.get(model, 0):
                self._close(model)
            elif self._tty and now - self._drawn >= self._interval:
                line = self._line(model)
                self._out.write("\r" + line.ljust(self._width))
                self._out.flush()
                self._width = len(line)
                self._drawn = now

    def finish(self) -> None:
        """Print the lines of the models begun and not done (an import that failed)."""
        with self._lock:
            for model in list(self._started):
                if model in self._done:
                    self._close(model)

    def _close(self, model: str) -> None:
        if model in self._closed or not self._enabled:
            return
        self._closed.add(model)
        line = self._line(model)
        self._out.write(("\r" + line.ljust(self._width) if self._tty else line) + "\n")
        self._out.flush()
        self._width = 0

    def _line(self, model: str) -> str:
        done, total = self._done.get(model, 0), self._totals.get(model, 0)
        # Up to the model's last batch (a closed line must not count what came after it).
        elapsed = max(self._ended.get(model, 0.0) - self._started.get(model, 0.0), 1e-6)
        percent = f"{100 * done // total:3d}%" if total else "   -"
        return (
            f"  {model:<32} {done:>10,}/{total:<10,} {percent}  {done / elapsed:>10,.0f}/s {elapsed:>8.2f} s"
        )


def print_summary(summary: ImportSummary, findings: FindingsLog, out: TextIO) -> None:
    width = max([len(m) for m in summary.models] + [5])
    out.write(
        f"\n{'model':<{width}}  {'inserted':>9}  {'existing':>9}  {'overwritten':>11}  {'skipped':>8}\n"
    )
    for model, stats in summary.models.items():
        out.write(
            f"{model:<{width}}  {stats.inserted:>9,}  {stats.existing:>9,}  {stats.overwritten:>11,}  "
            f"{stats.skipped:>8,}\n"
        )
    if summary.organizations:
        out.write("\norganization slugs (export -> here)\n")
        for old, new in summary.organizations:
            out.write(f"  {old} -> {new}\n")
    if findings.counts:
        listed = ", ".join(f"{kind} {count}" for kind, count in sorted(findings.counts.items()))
        where = f" (written to {findings.path})" if findings.path else ""
        out.write(f"\nfindings: {listed}{where}\n")
    resumed = (
        f", {summary.replayed_batches} batches replayed from an earlier run"
        if summary.replayed_batches
        else ""
    )
    out.write(f"\nimport {summary.import_id}: {summary.written_batches} batches written{resumed}\n")
