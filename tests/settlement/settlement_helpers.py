"""Hand-built records for a small tree: a TSO, one DSO with one feeder, two homes and an
aggregator portfolio; design ``bau`` (a tariff) and ``mkt`` (day-ahead + real-time)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from transactive.core.records import AWARDS, METER
from transactive.nodes.tree import Kind, Tree, TreeBuilder

T0 = pd.Timestamp("2026-07-01T12:00Z")
DT = 0.25  # h
NODES = ("dso:a", "home:a/0", "home:a/1", "agg:x/a/b1")
MARKET = ("tso", "feeder:a/1", "feeder:a/1", "feeder:a/1")


def small_tree() -> Tree:
    b = TreeBuilder()
    b.add("tso", Kind.TSO, None, "tso")
    b.add("dso:a", Kind.DSO, "tso", "dso:a", area=0)
    b.add("feeder:a/1", Kind.FEEDER, "dso:a", "dso:a", area=0)
    b.add("home:a/0", Kind.HOME, "feeder:a/1", "home:a/0", area=0)
    b.add("home:a/1", Kind.HOME, "feeder:a/1", "home:a/1", area=0)
    b.add("agg:x/a/b1", Kind.AGGREGATOR, "feeder:a/1", "agg:x", area=0)
    return b.build()


OWNER = {"dso:a": "dso:a", "home:a/0": "home:a/0", "home:a/1": "home:a/1", "agg:x/a/b1": "agg:x"}


def meter_frame(
    design: str, stage: str, net_kwh: Sequence[float], start: pd.Timestamp = T0
) -> pd.DataFrame:
    """One reading per node of :data:`NODES` (net kWh, + import) in one interval."""
    net = np.asarray(net_kwh, dtype=float)
    nodes = np.array(NODES, dtype=object)
    return METER.frame(
        {
            "design": design,
            "market_id": np.array(MARKET, dtype=object),
            "stage": stage,
            "interval_start": start,
            "duration_h": DT,
            "participant_id": np.array([OWNER[n] for n in NODES], dtype=object),
            "resource_id": np.char.add("meter:", nodes.astype(str)),
            "node_id": nodes,
            "import_kwh": np.clip(net, 0, None),
            "export_kwh": np.clip(-net, 0, None),
            "quality": "measured",
        }
    )


def award_frame(
    design: str,
    stage: str,
    quantity_kw: Sequence[float],
    price: Sequence[float],
    start: pd.Timestamp = T0,
) -> pd.DataFrame:
    """One award per node of :data:`NODES` in one interval."""
    nodes = np.array(NODES, dtype=object)
    return AWARDS.frame(
        {
            "design": design,
            "market_id": np.array(MARKET, dtype=object),
            "stage": stage,
            "interval_start": start,
            "duration_h": DT,
            "participant_id": np.array([OWNER[n] for n in NODES], dtype=object),
            "resource_id": nodes,
            "node_id": nodes,
            "quantity_kw": np.asarray(quantity_kw, dtype=float),
            "price": np.asarray(price, dtype=float),
            "status": "cleared",
        }
    )


def two_designs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """``bau``: tariff 0.30 €/kWh, wholesale 0.10; ``mkt``: day-ahead 0.12 / real-time
    0.20 €/kWh at the homes and the aggregator, 0.10 / 0.15 at the DSO node."""
    meter = pd.concat(
        [
            meter_frame("bau", "tariff", [1.5, 2.0, -1.0, 0.4]),
            meter_frame("mkt", "real-time", [1.5, 2.0, -1.0, 0.4]),
        ],
        ignore_index=True,
    )
    awards = pd.concat(
        [
            award_frame("bau", "tariff", [6.0, 8.0, -4.0, 1.6], [0.10, 0.30, 0.30, 0.30]),
            award_frame("mkt", "day-ahead", [4.4, 6.0, -4.0, 2.0], [0.10, 0.12, 0.12, 0.12]),
            award_frame("mkt", "real-time", [6.0, 8.0, -4.0, 1.6], [0.15, 0.20, 0.20, 0.20]),
        ],
        ignore_index=True,
    )
    return meter, awards
