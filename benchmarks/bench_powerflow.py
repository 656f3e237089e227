"""Power-flow time-series benchmark: wall time, steps/s and peak memory.

Runs ``run_powerflow`` (power-grid-model batch) for 96 steps (a day) and 35,040 steps (a
year at 15 minutes) on the largest SimBench LV grid, a SimBench MV grid (their own yearly
profiles) and the 2,940-bus pandapower ``lv_schutterwald`` LV grid (SimBench household
profiles assigned to its loads), plus a pandapower loop on the same steps for reference.

Each case runs with ``keep="full"`` (every time × element array) and ``keep="summary"``
(lean: per-step summaries, per-element extremes and per-(element, kind) violation
summaries for ``Limits()`` with ``--v-band``, reduced chunk by chunk; ``viol`` = rows of
``violation_summary`` and the violating element-steps they count — on Schutterwald with
the default 0.95–1.05 pu band that is almost every bus at every step, ~10⁸ element-steps
in ~10⁴ rows).
``peak_rss`` is the process high-water mark during the power-flow call (VmHWM, reset before
each case via /proc/self/clear_refs; it includes the injections, 2 × 8 bytes × steps ×
buses); ``+rss`` is its growth over the RSS before the call; ``traced`` is the tracemalloc
peak of Python/numpy allocations made by the call. ``*``: the high-water mark could not
be reset, so it is the process peak so far.

``--single-steps N`` instead measures the simulator's pattern, many calls of one step
each (N = 96: a day at 15 minutes) on ``1-LV-semiurb4--0-sw`` and ``1-MV-semiurb--0-sw``
(or ``--feeders``): ``run_powerflow`` per call (converts the feeder every call) against
one :class:`~transactive.grid.PowerFlow` built once and ``.run`` per call; best of
``--repeat`` rounds, since a shared machine makes single rounds noisy.

    .venv/bin/python benchmarks/bench_powerflow.py [--threads N] [--pandapower-steps 20]
        [--feeders NAME ...] [--keep full summary] [--chunk-size 4096] [--skip-year]
        [--v-band 0.95 1.05] [--single-steps 96 [--repeat 5]]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

from transactive.grid import (
    Injections,
    Limits,
    PowerFlow,
    PowerFlowResult,
    PowerFlowSummary,
    load_feeder,
    profile_injections,
    run_powerflow,
)
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


def _rss_mib(field: str) -> float:
    """VmRSS / VmHWM of this process (MiB); ru_maxrss if /proc is unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def bench(name: str, steps: int, threads: int, keep: str, chunk_size: int, limits: Limits) -> None:
    feeder = load_feeder(name)
    inj = _injections(name, steps)
    reset = _reset_peak_rss()
    rss0 = _rss_mib("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    res: PowerFlowResult | PowerFlowSummary
    if keep == "full":
        res = run_powerflow(feeder, inj, threads=threads, chunk_size=chunk_size)
    else:
        res = run_powerflow(
            feeder, inj, threads=threads, chunk_size=chunk_size, keep="summary", limits=limits
        )
    wall = time.perf_counter() - t0
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = _rss_mib("VmHWM")
    n_viol = ""
    if isinstance(res, PowerFlowSummary):
        vs = res.violation_summary
        n_viol = f", viol={len(vs)} (element, kind) rows / {vs['n_steps'].sum()} element-steps"
    print(
        f"{name:32s} {keep:7s} buses={feeder.n_bus:5d} steps={steps:6d} wall={wall:8.2f} s "
        f"steps/s={steps / wall:7.0f} ms/step={1e3 * wall / steps:6.2f} "
        f"peak_rss={peak:6.0f} MiB{'' if reset else '*'} +rss={peak - rss0:6.0f} MiB "
        f"traced={traced / 2**20:6.0f} MiB (vmin={res.summary()['vm_min_pu'].min():.3f} pu, "
        f"loss={res.losses_kw.sum() / 4:.0f} kWh{n_viol})",
        flush=True,
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


SINGLE_STEP_FEEDERS = ["simbench:1-LV-semiurb4--0-sw", "simbench:1-MV-semiurb--0-sw"]


def bench_single_steps(name: str, calls: int, repeat: int, threads: int) -> None:
    """``calls`` power flows of one step each: run_powerflow per call vs one PowerFlow."""
    feeder = load_feeder(name)
    inj = profile_injections(feeder, 0, calls)
    steps = [Injections(inj.p_kw[t : t + 1], inj.q_kvar[t : t + 1]) for t in range(calls)]

    def per_call() -> None:
        for s in steps:
            run_powerflow(feeder, s, threads=threads)

    def reused() -> None:
        for s in steps:
            pf.run(s, threads=threads)

    t0 = time.perf_counter()
    pf = PowerFlow(feeder)
    build = time.perf_counter() - t0
    for label, fn in (("run_powerflow per call", per_call), ("PowerFlow built once", reused)):
        fn()  # warm-up
        best = min(_timed(fn) for _ in range(repeat))
        print(
            f"{name:32s} {calls} × 1 step, {label:22s}: {best:6.3f} s "
            f"({1e3 * best / calls:5.2f} ms/call, best of {repeat})",
            flush=True,
        )
    print(f"{name:32s} PowerFlow(feeder) build: {1e3 * build:.1f} ms", flush=True)


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--pandapower-steps", type=int, default=20)
    parser.add_argument("--skip-year", action="store_true")
    parser.add_argument("--feeders", nargs="+", default=[LV, MV, BIG])
    parser.add_argument(
        "--keep", nargs="+", choices=["full", "summary"], default=["full", "summary"]
    )
    parser.add_argument("--chunk-size", type=int, default=4096, help="steps per batch")
    parser.add_argument(
        "--v-band",
        nargs=2,
        type=float,
        default=[Limits.v_min_pu, Limits.v_max_pu],
        metavar=("V_MIN_PU", "V_MAX_PU"),
        help="voltage band of the summary-mode violations (default: Limits(); the "
        "Schutterwald slack is at 0.965 pu, so 0.95 flags almost every bus-step — "
        "summarised per element, so memory does not grow with them)",
    )
    parser.add_argument("--single-steps", type=int, default=0, help="calls of one step")
    parser.add_argument("--repeat", type=int, default=5, help="rounds for --single-steps")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.single_steps:
        feeders = args.feeders if args.feeders != [LV, MV, BIG] else SINGLE_STEP_FEEDERS
        for name in feeders:
            bench_single_steps(name, args.single_steps, args.repeat, args.threads)
        return
    for name in args.feeders:
        t0 = time.perf_counter()
        load_feeder(name)
        print(f"{name:32s} load_feeder (cached after first run): {time.perf_counter() - t0:.2f} s")
    for name in args.feeders:
        for steps in (96,) if args.skip_year else (96, YEAR):
            for keep in args.keep:
                limits = Limits(v_min_pu=args.v_band[0], v_max_pu=args.v_band[1])
                bench(name, steps, args.threads, keep, args.chunk_size, limits)
    if args.pandapower_steps:
        bench_pandapower(BIG, args.pandapower_steps)
    print(f"process peak RSS (since the last reset): {_rss_mib('VmHWM'):.0f} MiB")


if __name__ == "__main__":
    main()
