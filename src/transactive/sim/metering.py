"""The simulator's meters: signed readings, verified on ingest, read back for settlement.

Every meter of a run — each home, each aggregator portfolio at its bus, each substation —
has its own Ed25519 key (derived from the scenario seed and the meter id,
:func:`~transactive.settlement.meter_data.simulated_keys`; a real meter holds its own). Per
design, each meter signs one message per local day of its interval readings at 1 Wh
resolution (:func:`~transactive.settlement.meter_data.sign_meter_table`); the operator
ingests every message against the registry of meter keys and the market's interval grid
(signature, meter, participant, interval, duplicates, values: a rejection stops the run),
and settlement reads the METER table back from the verified store. So every settled kWh has
passed a signature check, and the records and the signed messages say the same thing.

A meter's physical capacity (``max_kw``, the plausibility check of VEE and of monitoring)
is its node's import limit: the service connection of a home (``homes.service_limit_kw``),
the rating of a substation; an aggregator portfolio has none (``inf``, not checked).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from transactive.core.records import METER
from transactive.errors import InvalidInputError
from transactive.nodes.tree import Tree
from transactive.settlement.meter_data import (
    MarketGrid,
    Message,
    MeterStore,
    Registry,
    ingest,
    meter_table,
    sign_meter_table,
    simulated_keys,
)


@dataclass(frozen=True)
class Metered:
    """The verified readings of a run.

    meter: METER records of every design as read back from the verified store (kWh at 1 Wh
    resolution); readings: every signed message as ``(design, local date, message)``;
    registry: the meters' public keys, participants, nodes and capacities."""

    meter: pd.DataFrame
    readings: list[tuple[str, str, Message]]
    registry: Registry


def read_meters(
    meter: pd.DataFrame, tree: Tree, grid: MarketGrid, seed: int, timezone: str
) -> Metered:
    """Sign, ingest (verified) and read back the METER records ``meter`` of every design."""
    if meter.empty:
        raise InvalidInputError("the run produced no meter readings")
    ids = sorted(pd.unique(meter["resource_id"].astype(str)))
    keys = simulated_keys(ids, seed)
    node_pos = pd.Index(tree.id.astype(str))
    nodes = meter.drop_duplicates("resource_id")
    limit = tree.import_limit[node_pos.get_indexer(nodes["node_id"].astype(str))]
    max_kw = dict(zip(nodes["resource_id"].astype(str), limit.tolist(), strict=True))
    registry = Registry.from_meter_table(meter, keys, max_kw)
    tables, readings = [], []
    for design, rows in meter.groupby("design", observed=True, sort=False):
        messages = sign_meter_table(rows, keys, timezone)
        store = MeterStore.for_registry(registry, grid)
        ingest(store, messages, registry, grid)
        market = dict(
            zip(rows["resource_id"].astype(str), rows["market_id"].astype(str), strict=False)
        )
        stages = pd.unique(rows["stage"].astype(str))
        if stages.size != 1:
            raise InvalidInputError(f"design {design}: meters read in stages {list(stages)}")
        tables.append(meter_table(store, registry, str(design), market, str(stages[0])))
        for m in messages:
            first = pd.Timestamp(m.payload["readings"][0]["interval_start"])
            readings.append((str(design), first.tz_convert(timezone).strftime("%Y-%m-%d"), m))
    return Metered(METER.concat(tables), readings, registry)
