"""Results of a scenario run: tidy tables, written to parquet and CSV."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

TABLES = ("market", "grid", "bills", "violations", "kpis", "dlmp")


@dataclass(frozen=True)
class SimResults:
    """Results of one scenario run, all tables tidy (long) pandas DataFrames, times UTC."""

    scenario: str  # scenario name
    feeder: str  # feeder name, e.g. "simbench:1-LV-rural2--0-sw"
    paradigms: tuple[str, ...]  # e.g. ("baseline", "tou", "layered", "grand-central")
    # One row per (paradigm, time) market interval: paradigm, time, price ($/kWh seen by
    # homes), wholesale_price ($/kWh), area_kw (net import of the area at market level, kW).
    market: pd.DataFrame
    # One row per (paradigm, time) power-flow step: paradigm, time, substation_kw (import +,
    # kW), losses_kw, v_min_pu, v_max_pu, max_line_loading_pct, trafo_loading_pct.
    grid: pd.DataFrame
    # One row per (paradigm, home): paradigm, home, group (device ownership, e.g. "none",
    # "pv", "pv+battery+ev"), import_kwh, export_kwh, bill_usd.
    bills: pd.DataFrame
    # paradigm, time, element, kind ("undervoltage" | "overvoltage" | "line_overload" |
    # "trafo_overload" | "reverse_flow"), magnitude.
    violations: pd.DataFrame
    # index: KPI name with unit suffix (e.g. "peak_import_kw"); columns: paradigms.
    kpis: pd.DataFrame
    v_min_pu: float = 0.95  # voltage band used for the checks
    v_max_pu: float = 1.05
    # Network clearing only: one row per (paradigm, time, bus): dlmp and its components
    # energy, loss, congestion, voltage ($/kWh). Empty when no paradigm clears the network.
    dlmp: pd.DataFrame = field(default_factory=pd.DataFrame)


def write_tables(results: SimResults, directory: str | Path) -> Path:
    """Write every table as ``<name>.parquet`` and ``<name>.csv`` into ``directory``.

    Written to a temporary directory first and moved into place at the end, so a failure
    never leaves half-written results.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}-{os.getpid()}-{os.urandom(4).hex()}"
    tmp.mkdir()  # normal permissions (mkdtemp would make the results owner-only)
    try:
        for name in TABLES:
            df: pd.DataFrame = getattr(results, name)
            out = df.reset_index() if name == "kpis" else df
            out.to_parquet(tmp / f"{name}.parquet", index=False)
            out.to_csv(tmp / f"{name}.csv", index=False)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
