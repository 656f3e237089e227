"""Build and clear random books with the uniform-price double auction.

    .venv/bin/python benchmarks/bench_auction.py [--repeat 3]

Cases: one interval with 1,000 / 100,000 / 1,000,000 bids, and 96 intervals × 10,000 bids.
"Build" creates the book from arrays (ids, sides, prices, quantities) with full validation;
"clear" finds prices, awards and surpluses. Wall time is the best of ``--repeat`` runs;
peak memory is what Python allocated (tracemalloc) during one extra run.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from transactive.market.auction import book_from_blocks, clear

FLOOR, CAP = -0.5, 5.0


def case(n_bids: int, n_intervals: int, seed: int = 0) -> Callable[[], object]:
    rng = np.random.default_rng(seed)
    n = n_bids * n_intervals
    ids = np.tile(np.arange(n_bids), n_intervals)
    side = np.where(rng.random(n) < 0.5, "buy", "sell")
    price = np.round(rng.uniform(0.0, 0.5, n), 4)  # ties on a 0.1 ¢ grid, as in real books
    qty = rng.uniform(0.5, 10.0, n)
    interval = np.repeat(np.arange(n_intervals), n_bids)

    def run() -> object:
        book = book_from_blocks(ids, side, price, qty, interval, n_intervals)
        return clear(book, FLOOR, CAP)

    return run


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
    args = parser.parse_args()
    print(f"{'case':<28}{'bids':>12}{'wall s':>10}{'peak MiB':>10}")
    for label, n_bids, n_iv in [
        ("1 interval", 1_000, 1),
        ("1 interval", 100_000, 1),
        ("1 interval", 1_000_000, 1),
        ("96 intervals x 10,000", 10_000, 96),
    ]:
        wall, peak = measure(case(n_bids, n_iv), args.repeat)
        print(f"{label:<28}{n_bids * n_iv:>12,}{wall:>10.3f}{peak:>10.1f}")


if __name__ == "__main__":
    main()
