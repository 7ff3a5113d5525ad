"""The quick speed runner: medians over runs, verdicts against the recorded ranges, RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.speed import quick

ROOT = Path(__file__).resolve().parents[2]


def test_a_median_inside_the_widened_range_is_within_and_outside_it_is_named():
    recorded = {"low": 2.0, "high": 3.0}
    assert quick.verdict(2.5, recorded, tolerance=0.1) == "within"
    assert quick.verdict(1.85, recorded, tolerance=0.1) == "within"  # 2.0 widened by 10% is 1.8
    assert quick.verdict(1.75, recorded, tolerance=0.1) == "below"
    assert quick.verdict(3.35, recorded, tolerance=0.1) == "above"
    assert quick.verdict(3.0, None, tolerance=0.1) == "unrecorded"


def test_compare_reports_the_median_and_range_of_the_runs():
    measured = {"collate": {"speedup": [40.0, 30.0, 50.0]}, "ray_train": {"speedup_2_vs_1": [1.1, 1.5]}}
    recorded = {"collate.speedup": {"low": 42.0, "high": 45.0, "median": 43.0}}
    report = quick.compare(measured, recorded, tolerance=0.1)
    assert report["collate.speedup"]["median"] == 40.0
    assert (report["collate.speedup"]["low"], report["collate.speedup"]["high"]) == (30.0, 50.0)
    assert report["collate.speedup"]["recorded"] == [42.0, 45.0]
    assert report["collate.speedup"]["verdict"] == "within"  # 40 >= 42 * 0.9
    assert report["ray_train.speedup_2_vs_1"]["median"] == 1.3
    assert report["ray_train.speedup_2_vs_1"]["verdict"] == "unrecorded"


def test_main_prints_a_table_and_one_json_line_and_strict_fails_outside(monkeypatch, capsys):
    lines = iter([{"speedup": 10.0, "fraction_of_decode": 0.9}] * 2)
    monkeypatch.setattr(quick, "run_once", lambda benchmark: next(lines))
    status = quick.main(["--only", "collate", "--runs", "2", "--strict"])
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["outside"] == ["collate.speedup"]  # 10x against a recorded range near 40x
    assert summary["ratios"]["collate.fraction_of_decode"]["median"] == 0.9
    assert status == 1
    assert any(line.startswith("collate.speedup") and line.endswith("below") for line in out)


def test_runs_below_one_are_refused(capsys):
    with pytest.raises(SystemExit):
        quick.main(["--runs", "0"])
    assert "--runs must be at least 1" in capsys.readouterr().err


def test_every_headline_is_recorded_and_results_md_quotes_each_recorded_range():
    recorded = json.loads(quick.RECORDED.read_text())
    names = {f"{bench}.{key}" for bench, keys in quick.HEADLINES.items() for key in keys}
    assert set(recorded["ratios"]) == names
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert recorded["commit"] in results
    for name, row in recorded["ratios"].items():
        assert f"{row['low']:.2f}-{row['high']:.2f}" in results, name
