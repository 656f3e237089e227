"""Settle a year of 15-minute meter readings of 1,000 homes under a two-settlement design.

    .venv/bin/python benchmarks/bench_settlement.py [--homes 1000] [--intervals 35040]
        [--dsos 4] [--rate fixed] [--levy] [--vat 19]

A tree of a TSO, ``--dsos`` DSOs with one feeder each and the homes spread over them
(:class:`~transactive.nodes.tree.TreeBuilder`); one meter reading per home and DSO
substation per interval, day-ahead and real-time awards for every metered node (design
``mkt``, also the baseline, so every DSO's network charge is computed and is 0). The
settlement (energy lines, network charge, the optional levy and VAT, the exact balance
check) is timed; nothing is written. Prints the wall time of settling, the lines made and
the peak resident memory of the process (inputs included; also what the inputs held when
settling began); the CPU time too, as the wall
time is only meaningful on an otherwise idle machine. Target: ≤ 30 s for 1,000 homes
× 35,040 intervals.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from transactive.core.records import AWARDS, METER
from transactive.nodes.tree import Kind, Tree, TreeBuilder
from transactive.settlement import Levy, settle

T0 = pd.Timestamp("2026-01-01T00:00Z")


def tree_of(homes: int, dsos: int) -> Tree:
    b = TreeBuilder()
    b.add("tso", Kind.TSO, None, "tso")
    for a in range(dsos):
        b.add(f"dso:{a}", Kind.DSO, "tso", f"dso:{a}", area=a)
        b.add(f"feeder:{a}/1", Kind.FEEDER, f"dso:{a}", f"dso:{a}", area=a)
    for h in range(homes):
        a = h % dsos
        b.add(f"home:{a}/{h}", Kind.HOME, f"feeder:{a}/1", f"home:{a}/{h}", area=a)
    return b.build()


def records(tree: Tree, intervals: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Meter readings and day-ahead + real-time awards of every home and DSO node."""
    rng = np.random.default_rng(seed)
    metered = np.flatnonzero((tree.kind == Kind.HOME) | (tree.kind == Kind.DSO))
    n_nodes = metered.size
    n = n_nodes * intervals
    node = np.tile(np.arange(n_nodes, dtype=np.int32), intervals)
    t = np.repeat(np.arange(intervals, dtype=np.int64), n_nodes)
    ns = T0.value + t * 900_000_000_000
    starts = pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")
    ids = tree.id[metered].astype(str)

    def cat(per_node: np.ndarray) -> pd.Categorical:
        """A categorical column from one label per metered node (codes tiled, no strings)."""
        code, labels = pd.factorize(per_node)
        return pd.Categorical.from_codes(code[node], categories=pd.Index(labels))

    def one(label: str) -> pd.Categorical:
        return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=pd.Index([label]))

    parent_owner = tree.owner[tree.parent[metered]].astype(str)
    ident = {
        "design": one("mkt"),
        "market_id": cat(np.char.add("market:", parent_owner)),
        "interval_start": starts,
        "duration_h": 0.25,
        "participant_id": cat(tree.owner[metered].astype(str)),
        "node_id": cat(ids),
    }
    net = rng.normal(0.2, 0.4, n)  # kWh per interval
    meter = METER.frame(
        {
            **ident,
            "stage": one("real-time"),
            "resource_id": cat(np.char.add("meter:", ids)),
            "import_kwh": np.clip(net, 0, None),
            "export_kwh": np.clip(-net, 0, None),
            "quality": pd.Categorical.from_codes(
                (rng.random(n) < 0.01).astype(np.int8), categories=["measured", "estimated"]
            ),
        }
    )
    awards = []
    for stage, kw, price in (
        ("day-ahead", net / 0.25 + rng.normal(0, 0.3, n), rng.uniform(0.05, 0.4, n)),
        ("real-time", net / 0.25, rng.uniform(0.0, 0.6, n)),
    ):
        awards.append(
            AWARDS.frame(
                {
                    **ident,
                    "stage": one(stage),
                    "resource_id": cat(ids),
                    "quantity_kw": kw,
                    "price": price,
                    "status": one("cleared"),
                }
            )
        )
    return meter, AWARDS.concat(awards)


def rss_now() -> float:
    """The resident memory of the process now (MiB; Linux ``/proc``, else the peak so far)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 2**10
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=1000)
    parser.add_argument("--intervals", type=int, default=35_040)
    parser.add_argument("--dsos", type=int, default=4)
    parser.add_argument("--rate", default="fixed", choices=["fixed", "volumetric", "demand"])
    parser.add_argument("--levy", action="store_true", help="one levy on every import")
    parser.add_argument("--vat", type=float, default=0.0, help="VAT percent")
    args = parser.parse_args()
    tree = tree_of(args.homes, args.dsos)
    t0 = time.perf_counter()
    meter, awards = records(tree, args.intervals)
    built = time.perf_counter() - t0
    levies = [Levy("bench", 0.05)] if args.levy else []
    held = rss_now()
    t0, c0 = time.perf_counter(), time.process_time()
    lines = settle(
        meter, awards, tree, "EUR", "mkt", rate=args.rate, levies=levies, vat_percent=args.vat
    )
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB → MiB
    print(
        f"homes {args.homes}  intervals {args.intervals}  meter rows {len(meter):_}  "
        f"award rows {len(awards):_}  (built in {built:.1f} s)"
    )
    print(
        f"settled {len(lines):_} lines in {took:.1f} s wall, {cpu:.1f} s CPU (target ≤ 30 s)  "
        f"peak RSS {peak:.0f} MiB (inputs held {held:.0f} MiB when settling began)"
    )


if __name__ == "__main__":
    main()
