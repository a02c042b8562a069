"""The import's progress display: the lanes' threads advance it at the same time, and each model's line
comes out once, whole, when the model is done (or at the end, for one a failed import left unfinished)."""

from __future__ import annotations

import io
import re
import threading

from region.importer.console import ConsoleProgress

LINE = re.compile(r"^  (\S+) +([\d,]+)/([\d,]+) +(\d+%)  +[\d,]+/s +[\d.]+ s$")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def parsed(text: str) -> list[tuple[str, int, int]]:
    lines = []
    for raw in text.splitlines():
        match = LINE.match(raw)
        assert match, f"not a whole progress line: {raw!r}"
        lines.append((match[1], int(match[2].replace(",", "")), int(match[3].replace(",", ""))))
    return lines


def test_models_advanced_from_two_threads_each_get_one_whole_line_when_done() -> None:
    out = io.StringIO()
    progress = ConsoleProgress(out)
    totals = {"sentry.user": 3000, "sentry.organization": 2000, "sentry.team": 1000}
    progress.start(totals)

    def lane(models: list[str]) -> None:
        for model in models:
            progress.begin(model)
            for _ in range(totals[model] // 10):
                progress.advance(model, 10)

    threads = [
        threading.Thread(target=lane, args=(["sentry.user"],)),
        threading.Thread(target=lane, args=(["sentry.organization", "sentry.team"],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    progress.finish()
    lines = parsed(out.getvalue())
    assert sorted(lines) == sorted((model, total, total) for model, total in totals.items())
    # The region's two models come in the order they were written, whatever control's did meanwhile.
    region = [model for model, _done, _total in lines if model != "sentry.user"]
    assert region == ["sentry.organization", "sentry.team"]


def test_a_model_left_unfinished_gets_its_line_at_the_end_and_one_never_begun_none() -> None:
    out = io.StringIO()
    progress = ConsoleProgress(out)
    progress.start({"sentry.user": 10, "sentry.email": 10, "sentry.organization": 5})
    progress.begin("sentry.user")
    progress.advance("sentry.user", 10)
    progress.begin("sentry.email")
    progress.advance("sentry.email", 4)
    assert parsed(out.getvalue()) == [("sentry.user", 10, 10)]
    progress.finish()
    progress.finish()  # a second call prints nothing again
    assert parsed(out.getvalue()) == [("sentry.user", 10, 10), ("sentry.email", 4, 10)]


def test_on_a_terminal_the_running_model_redraws_in_place_and_its_done_line_blanks_a_longer_one() -> None:
    out = Terminal()
    progress = ConsoleProgress(out, interval_s=0.0)
    progress.start({"sentry.organizationmemberteam": 20, "sentry.team": 2})
    progress.advance("sentry.organizationmemberteam", 10)  # drawn in place, no newline
    assert out.getvalue().startswith("\r") and "\n" not in out.getvalue()
    progress.advance("sentry.team", 2)  # done: its line overwrites the longer one and ends
    last = out.getvalue().split("\r")[-1]
    assert last.endswith("\n") and "sentry.team" in last
    width = len(out.getvalue().split("\r")[1])
    assert len(last.rstrip("\n")) >= width  # padded: nothing of the longer line shows after it


def test_disabled_progress_prints_nothing() -> None:
    out = io.StringIO()
    progress = ConsoleProgress(out, enabled=False)
    progress.start({"sentry.user": 1})
    progress.advance("sentry.user", 1)
    progress.finish()
    assert out.getvalue() == ""
