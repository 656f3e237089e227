"""Sign and ingest meter data: the simulator's METER table → signed messages → verified store.

    .venv/bin/python benchmarks/bench_meter_data.py [--repeat 3]

Cases: 140 meters × 8 days hourly (the German demo week with warm-up) and 1,000 meters ×
1 day at 15 min. "sign" turns the METER records into one Ed25519-signed message per meter
and local day (Europe/Berlin); "wire" writes every message as JSON and parses it back;
"ingest" verifies every message (shape, registry, signature over the RFC 8785 bytes, grid,
duplicates) and stores the batch; "vee" estimates after 5 % of the readings were dropped.
Wall time is the best of ``--repeat`` runs; figures are readings per second.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from transactive.core.records import METER
from transactive.settlement.meter_data import (
    MarketGrid,
    MeterStore,
    Registry,
    from_json,
    ingest,
    sign_meter_table,
    simulated_keys,
    to_json,
)
from transactive.settlement.vee import estimate

TZ = "Europe/Berlin"


def meter_records(n_meters: int, days: int, interval_min: int, seed: int = 0) -> pd.DataFrame:
    """A METER table like the simulator's: every meter in every interval, kWh floats."""
    rng = np.random.default_rng(seed)
    n_iv = days * 24 * 60 // interval_min
    starts = pd.date_range("2016-03-01T23:00Z", periods=n_iv, freq=f"{interval_min}min")
    ids = np.array([f"meter:home:area/{i}" for i in range(n_meters)], dtype=object)
    net = rng.normal(0.1, 0.5, size=(n_iv, n_meters)) * interval_min / 60
    return METER.frame(
        {
            "design": "total-dso",
            "market_id": "feeder:area/1",
            "stage": "real-time",
            "interval_start": np.repeat(starts, n_meters),
            "duration_h": interval_min / 60,
            "participant_id": np.tile(np.char.replace(ids.astype(str), "meter:", ""), n_iv),
            "resource_id": np.tile(ids, n_iv),
            "node_id": np.tile(np.char.replace(ids.astype(str), "meter:", ""), n_iv),
            "import_kwh": np.clip(net, 0, None).ravel(),
            "export_kwh": np.clip(-net, 0, None).ravel(),
            "quality": "measured",
        }
    )


def best(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    t, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        t = min(t, time.perf_counter() - t0)
    return t, out


def bench_case(label: str, n_meters: int, days: int, interval_min: int, repeat: int) -> None:
    """Measure one case and print its row."""
    meter = meter_records(n_meters, days, interval_min)
    ids = meter["resource_id"].astype(str).unique()
    keys = simulated_keys(ids, seed=1)
    registry = Registry.from_meter_table(meter, keys, max_kw=30.0)
    grid = MarketGrid(meter["interval_start"].iloc[0], interval_min, len(meter) // n_meters)
    t_sign, msgs = best(lambda: sign_meter_table(meter, keys, TZ), repeat)
    assert isinstance(msgs, list)
    t_wire, wire = best(lambda: [from_json(to_json(m)) for m in msgs], repeat)
    assert isinstance(wire, list)

    def run_ingest() -> MeterStore:
        store = MeterStore.for_registry(registry, grid)
        ingest(store, wire, registry, grid)
        return store

    t_ingest, store = best(run_ingest, repeat)
    assert isinstance(store, MeterStore) and len(store) == len(meter)
    keep = np.random.default_rng(2).random(len(store)) >= 0.05

    def run_vee() -> object:
        gappy = MeterStore.for_registry(registry, grid)
        gappy.add(
            store.meter[keep],
            store.interval[keep],
            store.import_wh[keep],
            store.export_wh[keep],
            0,
            0,
            store.message[keep],
        )
        return estimate(gappy, registry, TZ)

    t_vee, _ = best(run_vee, repeat)
    n = len(meter)
    print(
        f"{label:<28}{n:>10}{len(msgs):>7}{n / t_sign:>12,.0f}{n / t_wire:>12,.0f}"
        f"{n / t_ingest:>12,.0f}{n / t_vee:>12,.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    steps = "".join(f"{s + ' /s':>12}" for s in ("sign", "wire", "ingest", "vee"))
    print(f"{'case (readings per second)':<28}{'readings':>10}{'msgs':>7}{steps}")
    bench_case("140 meters × 8 d, 1 h", 140, 8, 60, args.repeat)
    bench_case("1000 meters × 1 d, 15 min", 1000, 1, 15, args.repeat)


if __name__ == "__main__":
    main()
