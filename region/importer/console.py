"""What an operator sees: a progress line per model while importing, a summary table at the end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TextIO

from region.importer.engine import ImportSummary
from shared.relocation.findings import FindingsLog


class ConsoleProgress:
    """Per model: done/total, percent and rate. On a terminal the line redraws in place (at most
    every ``interval_s``); elsewhere one line per model when it is done."""

    def __init__(self, out: TextIO, *, enabled: bool = True, interval_s: float = 0.2) -> None:
        self._out = out
        self._enabled = enabled
        self._tty = enabled and out.isatty()
        self._interval = interval_s
        self._totals: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._current: str | None = None
        self._drawn = 0.0
        self._last = time.monotonic()

    def start(self, totals: Mapping[str, int]) -> None:
        self._totals = dict(totals)
        self._last = time.monotonic()

    def advance(self, model: str, count: int) -> None:
        if model != self._current:
            self._close_line()
            self._current = model
            # Models are written one after another: this one started when the last one's batch ended.
            self._started.setdefault(model, self._last)
        self._done[model] = self._done.get(model, 0) + count
        now = time.monotonic()
        self._last = now
        if self._tty and now - self._drawn >= self._interval:
            self._draw(model, end="")
            self._drawn = now

    def finish(self) -> None:
        self._close_line()

    def _close_line(self) -> None:
        if self._current is not None and self._enabled:
            self._draw(self._current, end="\n")
        self._current = None

    def _draw(self, model: str, *, end: str) -> None:
        done, total = self._done.get(model, 0), self._totals.get(model, 0)
        # Up to the model's last batch (a closed line must not count what came after it).
        elapsed = max(self._last - self._started.get(model, self._last), 1e-6)
        percent = f"{100 * done // total:3d}%" if total else "   -"
        line = (
            f"  {model:<32} {done:>10,}/{total:<10,} {percent}  {done / elapsed:>10,.0f}/s {elapsed:>8.2f} s"
        )
        self._out.write(("\r" if self._tty else "") + line + end)
        self._out.flush()


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
