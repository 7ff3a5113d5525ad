"""The quick speed benchmarks, each run a few times, beside the ranges recorded in RESULTS.md.

    python -m benchmarks.speed.quick                  # what `make bench` runs: 3 runs of each
    python -m benchmarks.speed.quick --runs 5 --only collate attention
    python -m benchmarks.speed.quick --record         # after a change: rewrite the recorded ranges

One quick run is a smoke check, not a figure: on 2 cores its ratios move by 20-40% between runs
minutes apart. So each quick benchmark runs ``--runs`` times, each in a fresh process, one after
another, and each headline ratio is reported as the median of the runs with their range. The
recorded ranges (``quick_recorded.json``, the figures of RESULTS.md's "Quick runs" table) are the
lowest and highest of the runs that recorded them. A median is *within noise* when it lies inside
the recorded range widened by ``--tolerance`` (10%) on each side. The last line printed is one JSON
object; ``--strict`` makes a ratio outside its range exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Dict, List, Sequence

RECORDED = Path(__file__).with_name("quick_recorded.json")

# The headline ratios of each quick benchmark: key in its JSON line -> what it compares.
HEADLINES: Dict[str, Dict[str, str]] = {
    "collate": {
        "speedup": "reader / naive path",
        "fraction_of_decode": "reader / pyarrow decode",
    },
    "attention": {
        "speedup_vs_nested": "buckets / nested jagged",
        "speedup_vs_padded": "buckets / padded",
        "speedup_vs_one_bucket_per_length": "buckets / one bucket per length",
    },
    "model": {
        "infer_speedup_vs_padded": "inference / padded model",
        "infer_speedup_vs_mmt": "inference / MMT",
        "train_speedup_vs_padded": "training / padded model",
        "train_speedup_vs_mmt": "training / MMT",
    },
    "ray_train": {
        "speedup_2_vs_1": "2 Ray Train workers / 1",
        "wall_ray_train_1_over_in_process": "wall time: 1 Ray Train worker / 1 in process",
    },
}


def run_once(benchmark: str) -> dict:
    """Run ``python -m benchmarks.speed.<benchmark> --quick`` in a fresh process; its JSON line.

    Raises:
        RuntimeError: the benchmark failed or its last line is not a JSON object.
    """
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.speed.{benchmark}", "--quick"],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"benchmarks.speed.{benchmark} --quick exited {done.returncode}:\n{done.stderr[-2000:]}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"benchmarks.speed.{benchmark} --quick: last line is not JSON: {lines[-1]!r}") from exc


def summarize(values: Sequence[float]) -> dict:
    """Median, lowest and highest of one ratio over the runs."""
    return {
        "median": round(statistics.median(values), 3),
        "low": min(values),
        "high": max(values),
        "runs": list(values),
    }


def verdict(median: float, recorded: dict | None, tolerance: float) -> str:
    """``within`` / ``above`` / ``below`` the recorded range widened by ``tolerance``; ``unrecorded``."""
    if recorded is None:
        return "unrecorded"
    if median < recorded["low"] * (1 - tolerance):
        return "below"
    if median > recorded["high"] * (1 + tolerance):
        return "above"
    return "within"


def compare(measured: Dict[str, Dict[str, List[float]]], recorded: dict, tolerance: float) -> dict:
    """Each headline ratio's summary over the runs and its verdict against the recorded range."""
    report = {}
    for benchmark, ratios in measured.items():
        for key, values in ratios.items():
            name = f"{benchmark}.{key}"
            summary = summarize(values)
            reference = recorded.get(name)
            summary["recorded"] = None if reference is None else [reference["low"], reference["high"]]
            summary["verdict"] = verdict(summary["median"], reference, tolerance)
            report[name] = summary
    return report


def print_report(report: dict) -> None:
    width = max(len(name) for name in report)
    print(f"{'ratio':<{width}}  median  (range of runs)      recorded range   verdict")
    for name, row in report.items():
        spread = f"({row['low']:.2f}-{row['high']:.2f})"
        recorded = "-" if row["recorded"] is None else f"{row['recorded'][0]:.2f}-{row['recorded'][1]:.2f}"
        print(f"{name:<{width}}  {row['median']:6.2f}  {spread:<19}  {recorded:<15}  {row['verdict']}")


def record(report: dict, commit: str) -> None:
    """Write this run's ranges as the recorded ones (after a change that moves a ratio on purpose)."""
    ratios = {name: {"low": row["low"], "high": row["high"], "median": row["median"]} for name, row in report.items()}
    runs = max(len(row["runs"]) for row in report.values())
    payload = {"date": date.today().isoformat(), "commit": commit, "runs_per_benchmark": runs, "ratios": ratios}
    RECORDED.write_text(json.dumps(payload, indent=2) + "\n")


def current_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each quick benchmark (default 3)")
    parser.add_argument("--only", nargs="+", choices=sorted(HEADLINES), help="run only these benchmarks")
    parser.add_argument("--tolerance", type=float, default=0.10, help="widening of the recorded range on each side")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a median is outside its range")
    parser.add_argument("--record", action="store_true", help="write this run's ranges to quick_recorded.json")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    benchmarks = args.only or list(HEADLINES)
    measured: Dict[str, Dict[str, List[float]]] = {}
    for benchmark in benchmarks:
        measured[benchmark] = {key: [] for key in HEADLINES[benchmark]}
        for run in range(1, args.runs + 1):
            line = run_once(benchmark)
            shown = ", ".join(f"{key} {line[key]}" for key in HEADLINES[benchmark])
            print(f"{benchmark} run {run}/{args.runs}: {shown}", flush=True)
            for key in HEADLINES[benchmark]:
                measured[benchmark][key].append(float(line[key]))
    recorded = json.loads(RECORDED.read_text())["ratios"] if RECORDED.exists() else {}
    report = compare(measured, recorded, args.tolerance)
    print_report(report)
    if args.record:
        record(report, current_commit())
        print(f"recorded in {RECORDED.name}")
    outside = [name for name, row in report.items() if row["verdict"] in ("above", "below")]
    print(json.dumps({"runs": args.runs, "tolerance": args.tolerance, "outside": outside, "ratios": report}))
    return 1 if args.strict and outside else 0


if __name__ == "__main__":
    sys.exit(main())
