"""The benchmark's summary of repeated runs: medians and ranges per size and mode."""

from __future__ import annotations

import pytest

from bench.__main__ import Figures, comparisons, parse_args, spreads, summary


def _run(size: int, mode: str, run: int, wall_s: float, copy_s: float, mib: float = 100.0) -> Figures:
    return Figures(
        size, mode, run, instances=size - 8, wall_s=wall_s, copy_s=copy_s, peak_rss_mib={"importer": mib}
    )


def test_spreads_take_medians_and_ranges_per_size_and_mode_in_the_order_runs_came() -> None:
    results = [
        _run(1000, "siloport", 1, 4.0, 1.0, 110),
        _run(1000, "no-bookkeeping", 1, 3.0, 1.0),
        _run(1000, "siloport", 2, 3.0, 0.5, 120),
        _run(1000, "no-bookkeeping", 2, 2.0, 0.8),
        _run(1000, "siloport", 3, 6.0, 1.2, 115),
        _run(1000, "no-bookkeeping", 3, 2.5, 1.0),
    ]
    normal, bare = spreads(results)
    assert (normal.mode, normal.runs, normal.instances) == ("siloport", 3, 992)
    assert normal.wall_s == 4.0 and normal.wall_range == (3.0, 6.0)
    assert normal.copy_s == 1.0
    # The median of each run's own ratio (4.0, 6.0, 5.0), not the ratio of the medians (4.0 / 1.0).
    assert normal.ratio == pytest.approx(5.0) and normal.ratio_range == (4.0, 6.0)
    assert normal.importer_mib == 120
    assert bare.mode == "no-bookkeeping" and bare.wall_s == 2.5 and bare.ratio == 2.5
    assert comparisons([normal, bare]) == [
        "1,000: resumable bookkeeping costs +60.0% of the import without it (medians)"
    ]


def test_one_run_each_compares_the_runs_themselves() -> None:
    found = spreads([_run(500, "siloport", 1, 2.0, 0.5), _run(500, "per-row", 1, 20.0, 0.5)])
    assert [m.ratio for m in found] == [4.0, 40.0]
    assert comparisons(found) == ["500: per-row baseline takes 10.0x as long"]


def test_summary_adds_the_medians_only_for_repeated_runs(capsys: pytest.CaptureFixture[str]) -> None:
    summary([_run(500, "siloport", 1, 2.0, 0.5)])
    assert "medians" not in capsys.readouterr().out
    summary([_run(500, "siloport", 1, 2.0, 0.5), _run(500, "siloport", 2, 3.0, 0.5)])
    out = capsys.readouterr().out
    assert "== medians (ranges)" in out
    assert "2.5     2.0-3.0" in out and "5.0x    4.0-6.0x" in out


def test_repeat_must_be_at_least_one(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--repeat", "0", "--workdir", str(tmp_path)])
    assert "--repeat must be at least 1" in capsys.readouterr().err
    assert parse_args(["--repeat", "3", "--workdir", str(tmp_path)]).repeat == 3
