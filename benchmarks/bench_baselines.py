"""Baselines on 1,000 meters × 60 days at 15 minutes (5.76 million readings).

    .venv/bin/python benchmarks/bench_baselines.py [--repeat 3] [--meters 1000] [--days 60]

Cases: building the History from a METER table (Europe/Berlin clock); one event day's
counterfactual for every meter, per registered baseline; placebo scoring of each baseline
over every day of the history (a 17:00–19:00 window). Wall time is the best of
``--repeat`` runs; peak memory is what Python allocated (tracemalloc) during one extra run.
The placebo table itself is printed at the end.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd

from transactive.core.records import METER
from transactive.settlement.baseline_scores import score_baselines
from transactive.settlement.baselines import BASELINES, History

TZ = "Europe/Berlin"
WINDOW = (68, 76)  # 17:00–19:00 local


def synthetic(n_meters: int, n_days: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """METER records and an hourly temperature series: homes with a daily shape, a weekend
    shape, heating below 15.5 °C and noise."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-05", tz=TZ)
    end = start + pd.Timedelta(days=n_days)
    starts = pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="15min")[:-1]
    local = starts.tz_convert(TZ)
    hour = local.hour.to_numpy() + local.minute.to_numpy() / 60
    weekend = local.dayofweek.to_numpy() >= 5
    day = (local.normalize() - start).days.to_numpy()
    temp_day = 4 + 4 * rng.standard_normal(n_days)
    temp = temp_day[day] + 3 * np.sin(2 * np.pi * (hour - 9) / 24)
    shape = (
        0.4 + 0.3 * np.exp(-(((hour - 7.5) / 1.5) ** 2)) + 0.6 * np.exp(-(((hour - 19) / 2) ** 2))
    )
    shape = np.where(weekend, 0.8 * shape + 0.2, shape)
    scale = rng.lognormal(0, 0.4, n_meters)[:, None]
    heat = rng.uniform(0, 0.08, n_meters)[:, None]
    kw = (
        scale * shape
        + heat * np.maximum(15.5 - temp, 0)
        + rng.normal(0, 0.1, (n_meters, len(starts)))
    )
    ids = np.array([f"meter:h{i:04d}" for i in range(n_meters)], dtype=object)
    frame = METER.frame(
        {
            "design": "bench",
            "market_id": "dso",
            "stage": "real-time",
            "interval_start": np.tile(starts, n_meters),
            "duration_h": 0.25,
            "participant_id": np.repeat(ids, len(starts)),
            "resource_id": np.repeat(ids, len(starts)),
            "node_id": np.repeat(ids, len(starts)),
            "import_kwh": np.clip(kw, 0, None).reshape(-1) * 0.25,
            "export_kwh": np.clip(-kw, 0, None).reshape(-1) * 0.25,
            "quality": "measured",
        }
    )
    hourly = starts[::4]
    return frame, pd.Series(temp[::4], index=hourly)


def measure(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    frame, temperature = synthetic(args.meters, args.days)
    print(f"{args.meters} meters × {args.days} days at 15 min: {len(frame):,} readings")
    print(f"{'case':<52}{'wall s':>10}{'peak MiB':>10}")

    def build() -> History:
        return History.from_meter(frame, TZ, temperature)

    wall, peak = measure(build, args.repeat)
    print(f"{'History.from_meter':<52}{wall:>10.3f}{peak:>10.1f}")
    history = build()
    last = history.n_days - 1
    for name, b in BASELINES.items():
        wall, peak = measure(lambda b=b: b.counterfactual(history, None, last, WINDOW), args.repeat)
        print(f"{'counterfactual, one day: ' + name:<52}{wall:>10.3f}{peak:>10.1f}")
    for name, b in BASELINES.items():
        wall, peak = measure(lambda b=b: score_baselines(history, [b], WINDOW), args.repeat)
        print(f"{'placebo scoring, every day: ' + name:<52}{wall:>10.3f}{peak:>10.1f}")
    table = score_baselines(history, list(BASELINES), WINDOW)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
