"""Power-flow time-series benchmark: wall time, steps/s and peak memory.

Runs ``run_powerflow`` (power-grid-model batch) for 96 steps (a day) and 35,040 steps (a
year at 15 minutes) on the largest SimBench LV grid, a SimBench MV grid (their own yearly
profiles) and the 2,940-bus pandapower ``lv_schutterwald`` LV grid (SimBench household
profiles assigned to its loads), plus a pandapower loop on the same steps for reference.

    .venv/bin/python benchmarks/bench_powerflow.py [--threads N] [--pandapower-steps 20]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
import warnings

import numpy as np

from transactive.grid import Injections, load_feeder, profile_injections, run_powerflow
from transactive.grid.feeders import pandapower_net

YEAR = 35_040
LV = "simbench:1-LV-rural3--0-sw"  # largest SimBench LV grid (129 buses)
MV = "simbench:1-MV-semiurb--0-sw"
BIG = "pandapower:lv_schutterwald"  # 2,940 buses


def _schutterwald_injections(steps: int) -> Injections:
    """Schutterwald loads driven by the SimBench LV household profiles (real data)."""
    big = load_feeder(BIG)
    lv = load_feeder(LV)
    assert lv.profiles is not None
    prof = lv.profiles.load_p_kw[:steps] / np.maximum(lv.loads["p_kw"].to_numpy(), 1e-9)
    prof_q = lv.profiles.load_q_kvar[:steps] / np.maximum(lv.loads["p_kw"].to_numpy(), 1e-9)
    pick = np.random.default_rng(0).integers(0, prof.shape[1], len(big.loads))
    base = big.loads["p_kw"].to_numpy()
    p = (prof[:, pick] * base) @ big.load_incidence
    q = (prof_q[:, pick] * base) @ big.load_incidence
    return Injections(np.asarray(p), np.asarray(q), lv.profiles.time[:steps])


def _injections(name: str, steps: int) -> Injections:
    if name == BIG:
        return _schutterwald_injections(steps)
    return profile_injections(load_feeder(name), 0, steps)


def bench(name: str, steps: int, threads: int) -> None:
    feeder = load_feeder(name)
    inj = _injections(name, steps)
    tracemalloc.start()
    t0 = time.perf_counter()
    res = run_powerflow(feeder, inj, threads=threads)
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{name:32s} buses={feeder.n_bus:5d} steps={steps:6d} wall={wall:8.2f} s "
        f"steps/s={steps / wall:9.0f} ms/step={1e3 * wall / steps:6.2f} "
        f"peak_mem={peak / 2**20:7.0f} MiB  "
        f"(vmin={np.nanmin(res.vm_pu):.3f} pu, loss={res.losses_kw.sum() / 4:.0f} kWh)"
    )


def bench_pandapower(name: str, steps: int) -> None:
    import pandapower as pp

    net = pandapower_net(name)
    feeder = load_feeder(name)
    inj = _injections(name, steps)
    # per-load profile: each load gets its bus's net load split by base share
    share = feeder.loads["p_kw"].to_numpy() / np.maximum(
        (feeder.loads["p_kw"].to_numpy() @ feeder.load_incidence)[feeder.loads["bus"]], 1e-9
    )
    bus = feeder.loads["bus"].to_numpy()
    t0 = time.perf_counter()
    for t in range(steps):  # the reference loop this package replaces
        net.load["p_mw"] = inj.p_kw[t, bus] * share / 1e3
        net.load["q_mvar"] = inj.q_kvar[t, bus] * share / 1e3
        net.sgen["in_service"] = False
        pp.runpp(net)
    wall = time.perf_counter() - t0
    print(f"{name:32s} pandapower loop: {steps} steps, {1e3 * wall / steps:.1f} ms/step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--pandapower-steps", type=int, default=20)
    parser.add_argument("--skip-year", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in (LV, MV, BIG):
        t0 = time.perf_counter()
        load_feeder(name)
        print(f"{name:32s} load_feeder (cached after first run): {time.perf_counter() - t0:.2f} s")
    for name in (LV, MV, BIG):
        bench(name, 96, args.threads)
        if not args.skip_year:
            bench(name, YEAR, args.threads)
    if args.pandapower_steps:
        bench_pandapower(BIG, args.pandapower_steps)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
