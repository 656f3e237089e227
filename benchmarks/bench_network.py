"""Network-constrained clearing benchmark: a day-ahead horizon on a 2,940-bus LV feeder.

Clears 96 quarter-hour intervals on ``pandapower:lv_schutterwald`` (2,940 buses, 14 MV/LV
transformers, 3,000 lines) with 1,500 flexible devices coupled across the intervals — 750
home batteries and 750 EVs (arrival, departure, energy need by departure) — on top of the
1,506 households as fixed load (SimBench LV household profiles, as in
``bench_powerflow.py``), at a time-varying wholesale price. Reports the wall time of
:func:`~transactive.market.network.clear_network`, the LP size, the shedding, the DLMP
spread and the AC check.

Two changes make the feeder usable:

* the grid as shipped has one closed loop (``line 8293``); that branch is opened so the
  feeder is radial, as LinDistFlow needs;
* its external grids are set at 0.965 pu, which with the +2.5 % tap leaves every LV bus
  at 0.941 pu *without any load* — below the 0.95 pu band — so the source voltage is set
  to 1.02 pu (what the MV/LV tap changer would do).

    .venv/bin/python benchmarks/bench_network.py [--losses iterative|none] [--threads N]
        [--loss-iterations N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time

import numpy as np

from transactive.grid import Feeder, Limits, load_feeder
from transactive.grid.lindistflow import verify
from transactive.market.auction import book_from_blocks
from transactive.market.network import StorageFleet, clear_network

BIG = "pandapower:lv_schutterwald"
PROFILES = "simbench:1-LV-rural3--0-sw"  # household load profiles (real data)
T = 96  # quarter-hours
DT = 0.25


def radial_schutterwald() -> Feeder:
    """Schutterwald with its loop branch opened and the source at 1.02 pu."""
    feeder = load_feeder(BIG)
    branches = feeder.branches.copy()
    branches.loc[feeder.topology.loop_branches, "to_closed"] = False
    sources = feeder.sources.copy()
    sources["vm_pu"] = 1.02
    return dataclasses.replace(feeder, branches=branches, sources=sources)


def household_load(feeder: Feeder, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A day of SimBench household profiles on every Schutterwald load (kW, kvar, T × bus)."""
    lv = load_feeder(PROFILES)
    assert lv.profiles is not None
    base = np.maximum(lv.loads["p_kw"].to_numpy(), 1e-9)
    start = 4 * 24 * 200  # a day in July
    prof_p = lv.profiles.load_p_kw[start : start + T] / base
    prof_q = lv.profiles.load_q_kvar[start : start + T] / base
    pick = rng.integers(0, prof_p.shape[1], len(feeder.loads))
    p_nom = feeder.loads["p_kw"].to_numpy()
    p = (prof_p[:, pick] * p_nom) @ feeder.load_incidence
    q = (prof_q[:, pick] * p_nom) @ feeder.load_incidence
    return np.asarray(p), np.asarray(q)


def fleet(feeder: Feeder, rng: np.random.Generator, n: int = 1500) -> StorageFleet:
    """750 home batteries and 750 EVs at random household buses."""
    bus = rng.choice(feeder.loads["bus"].to_numpy(), n)
    ev = np.arange(n) >= n // 2
    charge = np.where(ev, rng.choice([3.7, 7.4, 11.0], n), rng.uniform(3.0, 7.0, n))
    capacity = np.where(ev, rng.uniform(30.0, 60.0, n), rng.uniform(5.0, 15.0, n))
    soc0 = np.where(ev, rng.uniform(0.2, 0.5, n), rng.uniform(0.3, 0.7, n)) * capacity
    # EVs: home in the evening or at work during the day, with a need by departure
    arrive = np.where(rng.random(n) < 0.7, rng.integers(64, 80, n), rng.integers(28, 40, n))
    stay = rng.integers(16, 56, n)
    depart = np.minimum(arrive + stay, T - 1)
    t = np.arange(T)[:, None]
    home = (t >= arrive) & (t <= depart)
    available = np.where(ev, home, True)
    reachable = charge * DT * 0.95 * (depart - arrive)
    need = np.minimum(rng.uniform(5.0, 25.0, n), 0.8 * reachable)
    target = np.full((T, n), np.nan)
    evs = np.flatnonzero(ev)
    target[depart[evs], evs] = np.minimum(soc0[evs] + need[evs], capacity[evs])
    return StorageFleet(
        bus=bus,
        charge_kw=charge,
        discharge_kw=np.where(ev, 0.0, charge),
        capacity_kwh=capacity,
        soc_kwh=soc0,
        soc_min_kwh=np.where(ev, 0.0, 0.1 * capacity),
        available=available,
        soc_target_kwh=target,
        cost_per_kwh=np.where(ev, 0.0, rng.uniform(0.01, 0.03, n)),
    )


def wholesale_price() -> np.ndarray:
    """A summer day: cheap at night and midday, an evening peak ($/kWh)."""
    h = np.arange(T) * DT
    return 0.06 + 0.10 * np.exp(-((h - 19.0) ** 2) / 6.0) - 0.02 * np.exp(-((h - 13.0) ** 2) / 8.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", choices=["iterative", "none"], default=None)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--loss-iterations", type=int, default=5)
    args, _ = parser.parse_known_args()
    rng = np.random.default_rng(0)
    feeder = radial_schutterwald()
    p, q = household_load(feeder, rng)
    devices = fleet(feeder, rng)
    empty = book_from_blocks(
        np.zeros(0, dtype=str), np.zeros(0, dtype=str), [], [], np.zeros(0, dtype=int), T
    )
    price = wholesale_price()
    limits = Limits(max_reverse_flow_kw=None)
    print(
        f"{BIG}: {feeder.n_bus} buses, {feeder.n_branch} branches, "
        f"{len(feeder.sources)} MV/LV areas; {devices.n} devices; {T} intervals; "
        f"{os.cpu_count()} cores"
    )
    for losses in [args.losses] if args.losses else ["none", "iterative"]:
        t0 = time.perf_counter()
        res = clear_network(
            feeder,
            empty,
            np.zeros(0, dtype=int),
            price,
            limits=limits,
            storage=devices,
            fixed_load_kw=p,
            fixed_load_kvar=q,
            interval_hours=DT,
            losses=losses,  # type: ignore[arg-type]
            loss_iterations=args.loss_iterations,
            threads=args.threads,
        )
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()  # the AC check is the grid's, called separately
        check = verify(feeder, res.net_load_kw, res.net_load_kvar, res.voltage_pu, limits)
        wall_ac = time.perf_counter() - t1
        v = check.violations
        worst = {} if v is None or v.empty else v.groupby("kind")["magnitude"].max().to_dict()
        shed = int((res.status != "optimal").sum())
        spread = np.nanmax(res.dlmp, axis=1) - np.nanmin(res.dlmp, axis=1)
        print(
            f"losses={losses:9s} wall={wall:6.2f} s  passes={res.iterations} "
            f"converged={res.converged}  intervals shed/unmet={shed}  "
            f"DLMP spread max={np.nanmax(spread):.3f} $/kWh  "
            f"LinDistFlow-vs-AC max |dV|={check.max_voltage_error_pu:.1e} pu "
            f"(AC check {wall_ac:.2f} s)  AC violations (max beyond limit): {worst or 'none'}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
