"""Wall time of whole scenario runs (setup included; the feeder cache is warmed first).

    .venv/bin/python benchmarks/bench_simulation.py [SCENARIO.toml ...]

Default: the demo scenario (one seed of its week, six designs; ``make demo`` runs its seeds
over two worker processes), the summer-day and three-area examples and the 1,600-home scale
scenario (grand central). Peak memory is printed by ``benchmarks/run_all.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from transactive.grid.feeders import load_feeder
from transactive.sim.runner import run
from transactive.sim.scenario import load_scenario

EXAMPLES = Path(__file__).parents[1] / "examples"


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:] if not p.startswith("-")] or [
        EXAMPLES / "germany-week.toml",
        EXAMPLES / "summer-day.toml",
        EXAMPLES / "three-areas.toml",
        EXAMPLES / "scale-1600-homes.toml",
    ]
    print(f"{'scenario':<22}{'homes':>7}{'intervals':>10}{'designs':>10}{'wall s':>9}")
    for path in paths:
        sc = load_scenario(path)
        for area in sc.areas:  # warm the cache: measure the simulation, not the conversion
            load_feeder(area.feeder)
        t0 = time.perf_counter()
        res = run(sc)
        wall = time.perf_counter() - t0
        homes = int(res.bills["home"].nunique())
        print(f"{sc.name:<22}{homes:>7}{sc.intervals.n:>10}{len(sc.designs):>10}{wall:>9.1f}")


if __name__ == "__main__":
    main()
