"""Results of a scenario run: the record tables with identity plus tidy summary tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from transactive.core.records import COMMITMENTS, FLEX_ASKS, FLEX_OFFERS
from transactive.settlement.totals import MINOR

if TYPE_CHECKING:
    from transactive.settlement.meter_data import Message
    from transactive.sim.world import World

#: Tables written by :func:`write_tables`: the records (``transactive.core.records``) and the
#: summaries the report plots.
RECORDS = ("bids", "awards", "dispatch", "meter", "settlement")
SUMMARIES = (
    "participants",
    "market",
    "grid",
    "bills",
    "violations",
    "kpis",
    "dlmp",
    "trades",
    "value",
    "provenance",
    "weather",
    "capacity",
)
#: The flexibility market's tables (empty without a flexibility design): asks, offers and
#: commitments (schemas in :mod:`transactive.core.records`) and the orders (the commit's
#: result per offer, :data:`transactive.sim.flexibility.ORDER_COLUMNS`).
FLEX_TABLES = ("flex_asks", "flex_offers", "commitments", "flex_orders")
#: The structure settlement needs besides the records: the node tree (``nodes``, see
#: :mod:`transactive.nodes.tables`) and the meter registry (``meters``: public keys,
#: participants, nodes, capacities), as parquet and CSV.
STRUCTURE = ("nodes", "meters")
TABLES = RECORDS + SUMMARIES + STRUCTURE + FLEX_TABLES
#: The signed meter messages, one JSON document per line (:func:`write_tables`).
READINGS_FILE = "readings.jsonl"
#: What settling the records again needs to know about the run (:func:`run_info`).
RUN_FILE = "run.json"


@dataclass(frozen=True)
class SimResults:
    """Results of one scenario run, all tables tidy (long) pandas DataFrames, times UTC.

    Records (schemas in :mod:`transactive.core.records`, every row with design, market,
    stage, interval, participant, resource and node): ``bids``, ``awards``, ``dispatch``,
    ``meter``, ``settlement``.

    Summaries:

    * ``participants``: participant_id, role (the kind of the first node it owns: tso, dso,
      home, aggregator; ``payee`` for a levy or VAT payee outside the tree), area (or empty
      above the areas);
    * ``market``: per (design, area, time): price ($/kWh, energy-weighted mean of the
      prices the area's participants were awarded), wholesale_price, area_kw (the DSO
      node's award);
    * ``grid``: per (design, area, time) power-flow step: substation_kw (import +),
      losses_kw, v_min_pu, v_max_pu, max_line_loading_pct, trafo_loading_pct;
    * ``bills``: per (design, home): area, group (device ownership, e.g. "pv+ev"),
      import_kwh, export_kwh, bill (currency, settled lines of the home's participant);
    * ``violations``: design, area and the columns of :func:`transactive.grid.check_limits`;
    * ``kpis``: index = KPI name with unit suffix, columns = designs;
    * ``dlmp``: per (design, time, area, bus) under network clearing: dlmp and its
      components energy, loss, congestion, voltage ($/kWh).
    """

    scenario: str
    areas: tuple[str, ...]  # "<area>=<feeder>"
    designs: tuple[str, ...]
    bids: pd.DataFrame
    awards: pd.DataFrame
    dispatch: pd.DataFrame
    meter: pd.DataFrame
    settlement: pd.DataFrame
    participants: pd.DataFrame
    market: pd.DataFrame
    grid: pd.DataFrame
    bills: pd.DataFrame
    violations: pd.DataFrame
    kpis: pd.DataFrame
    dlmp: pd.DataFrame
    v_min_pu: float = 0.95  # voltage band of the checks
    v_max_pu: float = 1.05
    currency: str = "USD"
    #: Start of the evaluated period (UTC): records before it are the warm-up, excluded from
    #: every KPI and from the value table. ``None``: no warm-up.
    kpi_start: pd.Timestamp | None = None
    #: IANA time zone of the region's local clock (tariffs, plots).
    timezone: str = "UTC"
    seed: int = 0
    #: Data provenance: one row per input (what, source, licence, year).
    provenance: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(PROVENANCE_COLUMNS))
    #: Value per stakeholder (see :mod:`transactive.settlement`): design, stakeholder, group,
    #: members, energy_kwh, amount, change_vs_bau, all_in_price.
    value: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The scenario's parameters as flat ``dotted.key → value`` for the report.
    parameters: dict[str, object] = field(default_factory=dict)
    #: Every signed meter message as ``(design, local date, message)``
    #: (:mod:`transactive.sim.metering`).
    readings: list[tuple[str, str, Message]] = field(default_factory=list)
    #: The meter registry (:func:`~transactive.settlement.meter_data.registry_table`).
    meters: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Weather per market interval (``time`` UTC, ``temp_air_c``, ``ghi_w_m2``): what the
    #: devices saw, and the weather-regression baseline's input.
    weather: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The node tree (:func:`~transactive.nodes.tables.tree_table`).
    nodes: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: What settling the records again needs (currency, baseline design, time zone, market
    #: grid, evaluated start, the scenario's settlement section): see :data:`RUN_FILE`.
    run: dict[str, object] = field(default_factory=dict)
    #: The capacity auction before the run (:mod:`transactive.sim.capacity_stage`): offer
    #: rows and one decision row; empty without a ``[capacity]`` stage.
    capacity: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Peer-to-peer trades (designs with a p2p stage; :mod:`transactive.designs.p2p`): one row
    #: per matched pair and interval, kWh, price and network charge (currency/kWh).
    trades: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The flexibility market (:data:`FLEX_TABLES`): asks, offers, commitments, orders.
    flex_asks: pd.DataFrame = field(default_factory=FLEX_ASKS.empty)
    flex_offers: pd.DataFrame = field(default_factory=FLEX_OFFERS.empty)
    commitments: pd.DataFrame = field(default_factory=COMMITMENTS.empty)
    flex_orders: pd.DataFrame = field(default_factory=pd.DataFrame)

    def evaluated(self, df: pd.DataFrame, column: str = "interval_start") -> pd.DataFrame:
        """The rows of ``df`` inside the evaluated period (``column`` ≥ :attr:`kpi_start`)."""
        return evaluated(df, self.kpi_start, column)


def evaluated(
    df: pd.DataFrame, start: pd.Timestamp | None, column: str = "interval_start"
) -> pd.DataFrame:
    """The rows of ``df`` from ``start`` on (``column`` ≥ ``start``; all without a start):
    the evaluated period, after the warm-up."""
    if start is None or df.empty or column not in df.columns:
        return df
    t = pd.to_datetime(df[column], utc=True)
    return df[(t >= start).to_numpy()]


#: Columns of :attr:`SimResults.provenance`.
PROVENANCE_COLUMNS: dict[str, list[str]] = {"what": [], "source": [], "licence": [], "year": []}


@dataclass(frozen=True)
class Comparison:
    """Several runs of one scenario over random seeds (devices, forecast errors).

    results: the first seed's full results (plots, records); kpis: long table ``seed, design,
    kpi, value``; summary: :func:`transactive.sim.stats.summarise` of it; baseline: the design
    every other is compared with.
    """

    results: SimResults
    kpis: pd.DataFrame
    summary: pd.DataFrame
    baseline: str


def participants_table(world: World) -> pd.DataFrame:
    """Every participant with its role and area (see :class:`SimResults`)."""
    tree = world.plan.tree
    first = pd.Series(np.arange(tree.n)).groupby(tree.owner.astype(str)).min()
    names = np.asarray(world.area_names, dtype=object)
    pos = first.to_numpy()
    return pd.DataFrame(
        {
            "participant_id": first.index.to_numpy(dtype=object),
            "role": tree.kind[pos],
            "area": np.where(tree.area[pos] >= 0, names[np.maximum(tree.area[pos], 0)], ""),
        }
    ).sort_values("participant_id", ignore_index=True)


def with_payees(participants: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """``participants`` plus every counterparty of ``lines`` outside the tree — the payees
    of levies and VAT (e.g. ``state``) — with role ``payee``, so that the value table still
    partitions everyone who pays or receives."""
    known = set(participants["participant_id"].astype(str))
    extra = sorted(set(lines["counterparty_id"].astype(str)) - known) if len(lines) else []
    if not extra:
        return participants
    rows = pd.DataFrame({"participant_id": extra, "role": "payee", "area": ""})
    return pd.concat([participants, rows], ignore_index=True)


def bills_table(lines: pd.DataFrame, meter: pd.DataFrame, world: World) -> pd.DataFrame:
    """One row per (design, home): its metered import/export and its bill (the sum of its
    settlement lines)."""
    homes = world.home_id.astype(str)
    frames = []
    for design in dict.fromkeys(lines["design"].astype(str)) if len(lines) else []:
        ln = lines[lines["design"] == design]
        me = meter[meter["design"] == design]
        bill = _by_participant(ln, "amount") / MINOR  # integer sum of cents → currency
        imp = _by_participant(me, "import_kwh")
        exp = _by_participant(me, "export_kwh")
        frames.append(
            pd.DataFrame(
                {
                    "design": design,
                    "home": homes,
                    "area": np.asarray(world.area_names, dtype=object)[world.home_area],
                    "group": world.home_group,
                    "import_kwh": imp.reindex(homes, fill_value=0.0).to_numpy(),
                    "export_kwh": exp.reindex(homes, fill_value=0.0).to_numpy(),
                    "bill": bill.reindex(homes, fill_value=0.0).to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _by_participant(df: pd.DataFrame, column: str) -> pd.Series:
    """Sum of ``column`` per participant, indexed by participant id (str)."""
    out = df.groupby("participant_id", observed=True)[column].sum()
    out.index = out.index.astype(str)
    return out


def write_tables(results: SimResults, directory: Path) -> list[Path]:
    """Write every table as ``<name>.parquet`` into ``directory`` (made if missing; callers
    give a fresh one, :mod:`transactive.sim.outputs`), the summaries and the structure also
    as ``<name>.csv`` (the records, millions of rows, only as parquet), the signed meter
    messages as :data:`READINGS_FILE` and the run's settlement inputs as :data:`RUN_FILE`;
    returns the files written."""
    directory.mkdir(exist_ok=True)
    written = []
    for name in TABLES:
        df: pd.DataFrame = getattr(results, name)
        out = df.reset_index(names="kpi") if name == "kpis" else df
        for suffix in (".parquet",) if name in RECORDS else (".parquet", ".csv"):
            path = directory / f"{name}{suffix}"
            if suffix == ".parquet":
                out.to_parquet(path, index=False)
            else:
                out.to_csv(path, index=False)
            written.append(path)
    if results.readings:
        from transactive.settlement.meter_data import to_json

        path = directory / READINGS_FILE
        with path.open("w", encoding="utf-8") as f:
            for design, _, message in results.readings:
                f.write(f'{{"design":{json.dumps(design)},"message":{to_json(message)}}}\n')
        written.append(path)
    path = directory / RUN_FILE
    path.write_text(json.dumps(results.run, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    written.append(path)
    return written
