"""Benchmark: one market interval for 100,000 devices of each DER type.

Per type, one interval = bid generation (one curve per device) + the clearing response
(each device reads its curve at the clearing price and clips to its limits) + the physics
step; ``uncontrolled`` is the business-as-usual power of the same fleet (home net load
for batteries: a fixed random ±3 kW). The fleet is stepped through consecutive 15-minute
intervals of a summer day so the state evolves; the median over the measured intervals is
reported (after two warm-up intervals). Target: ≤ 50 ms per type per interval.

Run:  .venv/bin/python benchmarks/bench_der.py [--n 100000] [--intervals 12]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from transactive.core.curves import aggregate
from transactive.der import DEVICE_TYPES, make_context, make_fleet, weather_between


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="devices per type")
    ap.add_argument("--intervals", type=int, default=12, help="measured intervals")
    ap.add_argument("--start", default="2024-07-01T14:00Z", help="first interval (UTC)")
    args = ap.parse_args()

    warm = 2
    total = warm + args.intervals
    w = weather_between(args.start, "2024-07-02T14:00Z")
    prices = 0.08 + 0.04 * np.sin(np.arange(len(w)) * 2 * np.pi / 96)
    print(f"n = {args.n:,} devices per type, {args.intervals} intervals of 15 min (median)")
    print(
        f"{'type':<13} {'bid':>8} {'respond':>8} {'step':>8} {'total':>8} {'aggregate':>10} "
        f"{'uncontrolled':>13}"
    )
    net = np.random.default_rng(0).normal(0.0, 3.0, args.n)
    for kind in DEVICE_TYPES:
        t0 = time.perf_counter()
        fleet = make_fleet(kind, args.n, seed=42)
        build = time.perf_counter() - t0
        rows = []
        for i in range(total):
            ctx = make_context(
                w.intervals[i].start,
                0.25,
                prices[i : i + 96],
                weather=w.sample(i),
                floor=0.0,
                cap=1.0,
            )
            a = time.perf_counter()
            curves = fleet.bid(ctx)
            b = time.perf_counter()
            power = fleet.respond(ctx, curves, price=prices[i])
            c = time.perf_counter()
            fleet, _ = fleet.step(power, ctx, cleared_price=prices[i])
            d = time.perf_counter()
            aggregate(curves)
            e = time.perf_counter()
            fleet.uncontrolled(ctx, net)
            f = time.perf_counter()
            if i >= warm:
                rows.append((b - a, c - b, d - c, d - a, e - d, f - e))
        med = [statistics.median(col) * 1e3 for col in zip(*rows, strict=True)]
        print(
            f"{kind:<13} {med[0]:8.1f} {med[1]:8.1f} {med[2]:8.1f} {med[3]:8.1f} "
            f"{med[4]:10.1f} {med[5]:13.1f}   ms  (fleet built in {build:.2f} s)"
        )


if __name__ == "__main__":
    main()
