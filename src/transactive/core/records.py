"""Record schemas: every bid, award, dispatch, meter reading and settlement line has identity.

Every record carries the same identity columns (DESIGN.md §4):

========================  ==========================================================
``design``                the market design the record belongs to (a simulation runs several)
``market_id``             the market that produced or settles it, e.g. ``"tso"``, ``"dso:north"``
``stage``                 the stage of the design, e.g. ``"real-time"``, ``"tariff"``
``interval_start``        absolute start of the interval, UTC
``duration_h``            interval length, h
``participant_id``        who the record belongs to (home, aggregator, DSO, TSO)
``resource_id``           the device, meter or node the quantity is for
``node_id``               the node of the tree the resource sits at (or is)
========================  ==========================================================

Each schema below lists its own columns after these, with dtype, unit and meaning. The
simulator writes these tables, settlement (:mod:`transactive.settlement`) computes money
from them, and the KPIs read them. The same schemas document the service's tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class Column:
    """One column: name, pandas dtype, unit (``""`` for none) and meaning."""

    name: str
    dtype: str
    unit: str
    meaning: str


@dataclass(frozen=True, slots=True)
class Schema:
    """A record table: its name, meaning and columns (identity columns first)."""

    name: str
    meaning: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    def frame(self, data: Mapping[str, Any], *, copy: bool = True) -> pd.DataFrame:
        """A table of this schema from column arrays (scalars broadcast); every column is
        required, nothing else is allowed, and each is cast to its dtype. ``copy=False``:
        the table keeps the given arrays (no copy, no consolidation into 2-D blocks) — for
        callers that made them fresh and do not change them afterwards."""
        missing = [c for c in self.names if c not in data]
        extra = [k for k in data if k not in self.names]
        if missing or extra:
            raise InvalidInputError(
                f"{self.name} records: missing columns {missing}, unknown columns {extra}"
            )
        n = max((np.size(v) for v in data.values() if np.ndim(v) > 0), default=1)
        cols = {}
        for c in self.columns:
            v = data[c.name]
            if np.ndim(v) == 0:
                cols[c.name] = _cast(pd.Series(np.full(n, v, dtype=object)), c.dtype)
            else:
                cols[c.name] = _cast(pd.Series(v, copy=False), c.dtype)
        return pd.DataFrame(cols, copy=copy)

    def concat(self, frames: list[pd.DataFrame], *, consume: bool = False) -> pd.DataFrame:
        """Tables of this schema, one after the other, with the schema's dtypes (categories
        of different tables are united). ``consume=True``: each column is dropped from the
        given tables as soon as it has been joined, so at most one column is held twice
        (the tables are left without columns; for callers that own them)."""
        parts = [f for f in frames if len(f)]
        if not parts:
            return self.empty()
        if len(parts) == 1 and consume and list(parts[0].columns) == self.names:
            out = parts[0].copy(deep=False)  # the same columns, handed over
            out.index = pd.RangeIndex(len(out))
            for name in self.names:
                del parts[0][name]
        elif len(parts) == 1 or any(list(f.columns) != self.names for f in parts):
            out = pd.concat(parts, ignore_index=True)
        else:  # column by column: categories united by recoding, one frame built at the end
            cols: dict[str, Any] = {}
            for c in self.columns:
                arrays = [f[c.name] for f in parts]
                if all(isinstance(x.dtype, pd.CategoricalDtype) for x in arrays):
                    cols[c.name] = pd.api.types.union_categoricals([x.array for x in arrays])
                else:
                    cols[c.name] = pd.concat(arrays, ignore_index=True)
                del arrays
                if consume:
                    for f in parts:
                        del f[c.name]
            out = pd.DataFrame(cols, copy=False)  # fresh columns: no consolidation copy
        for c in self.columns:
            if c.dtype == "category" and not isinstance(out[c.name].dtype, pd.CategoricalDtype):
                out[c.name] = out[c.name].astype("category")
        return out

    def empty(self) -> pd.DataFrame:
        """An empty table with this schema's columns and dtypes."""
        return pd.DataFrame(
            {c.name: _cast(pd.Series([], dtype=object), c.dtype) for c in self.columns}
        )

    def check(self, df: pd.DataFrame) -> None:
        """Raise unless ``df`` has exactly this schema's columns, in order, with their dtypes."""
        if list(df.columns) != self.names:
            raise InvalidInputError(
                f"{self.name} records: columns {list(df.columns)} ≠ {self.names}"
            )
        for c in self.columns:
            if str(df[c.name].dtype) != _DTYPE_NAMES[c.dtype]:
                raise InvalidInputError(
                    f"{self.name} records: column {c.name!r} is {df[c.name].dtype}, not {c.dtype}"
                )


_DTYPE_NAMES = {
    "category": "category",
    "float64": "float64",
    "int64": "int64",
    "bool": "bool",
    "datetime64[ns, UTC]": "datetime64[ns, UTC]",
}


def _cast(s: pd.Series, dtype: str) -> pd.Series:
    if str(s.dtype) == _DTYPE_NAMES[dtype]:
        return s  # already right (a categorical keeps its categories, nothing is copied)
    if dtype == "datetime64[ns, UTC]":
        return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")
    return s.astype(pd.api.types.pandas_dtype(dtype))


IDENTITY: tuple[Column, ...] = (
    Column("design", "category", "", "market design the record belongs to"),
    Column("market_id", "category", "", "market that produced or settles the record"),
    Column("stage", "category", "", "stage of the design (e.g. real-time, tariff)"),
    Column("interval_start", "datetime64[ns, UTC]", "UTC", "start of the interval"),
    Column("duration_h", "float64", "h", "length of the interval"),
    Column("participant_id", "category", "", "participant the record belongs to"),
    Column("resource_id", "category", "", "device, meter or node the quantity is for"),
    Column("node_id", "category", "", "node of the tree the resource sits at"),
)


def _schema(name: str, meaning: str, *columns: Column) -> Schema:
    return Schema(name, meaning, IDENTITY + columns)


BIDS = _schema(
    "bids",
    "Bid curves offered up the tree: one row per breakpoint of a node's (or, where devices "
    "bid directly, a device's) curve; kW is + buy, − sell, non-increasing in price.",
    Column("point", "int64", "", "breakpoint index within the curve (0, 1, …)"),
    Column("price", "float64", "currency/kWh", "breakpoint price"),
    Column("quantity_kw", "float64", "kW", "net quantity at that price (+ buy, − sell)"),
)

AWARDS = _schema(
    "awards",
    "Clearing results passed down: one row per node and interval, the quantity the node "
    "committed to and the price it was awarded at.",
    Column("quantity_kw", "float64", "kW", "awarded net power (+ import, − export)"),
    Column("price", "float64", "currency/kWh", "price the award is settled at"),
    Column("status", "category", "", "clearing status of the market that awarded it"),
)

DISPATCH = _schema(
    "dispatch",
    "What each device was told and did: one row per device and interval.",
    Column("device_kind", "category", "", "device type (pv, battery, ev, …)"),
    Column("setpoint_kw", "float64", "kW", "awarded / instructed power (+ consume)"),
    Column("power_kw", "float64", "kW", "average power the device actually ran at"),
    Column("price", "float64", "currency/kWh", "price the device saw"),
    Column(
        "curtailed_kwh",
        "float64",
        "kWh",
        "energy curtailed (PV: inverter functions, export and feed-in limits, market; "
        "curtailable loads: shed)",
    ),
    Column(
        "unmet_kwh",
        "float64",
        "kWh",
        "energy still needed at the end of a session (EVs at departure, shiftable loads)",
    ),
    Column("discomfort_kh", "float64", "K·h", "degree-hours outside the comfort band"),
    Column(
        "comfort_dev_kh",
        "float64",
        "K·h",
        "|temperature − preferred setpoint| integrated over the interval (HVAC, water heaters)",
    ),
    Column(
        "stored_kwh",
        "float64",
        "kWh",
        "energy stored at the end of the interval (batteries: in the cells; EVs: charged "
        "into the current session; HVAC: the house's heat against its preferred set point, "
        "as electricity)",
    ),
)

METER = _schema(
    "meter",
    "Interval meter readings: the energy each meter measured (homes: everything behind the "
    "meter; aggregator portfolios: their devices at one bus; substations: the AC power flow's "
    "import, losses included).",
    Column("import_kwh", "float64", "kWh", "energy imported over the interval (≥ 0)"),
    Column("export_kwh", "float64", "kWh", "energy exported over the interval (≥ 0)"),
    Column("quality", "category", "", "measured | estimated"),
)

SETTLEMENT = _schema(
    "settlement",
    "Settlement lines: what each participant pays (+) or receives (−) its counterparty, per "
    "meter, interval and charge; every line has a counterparty, so money balances by design. "
    "Amounts are integers in minor units (cents), each line's rounded once (half to even); "
    "quantity and price are the audit trail.",
    Column(
        "charge",
        "category",
        "",
        "one of: energy (tariff: net kWh × the node's price); day_ahead (day-ahead position "
        "× day-ahead price); real_time (metered − position, × real-time price); network (to "
        "the DSO, one line per home connection for the period, by the rate design: fixed "
        "and demand: quantity 0, price NaN; volumetric: imported kWh × the rate; none when "
        "the run lacks the baseline design the requirement comes from); levy:<name> "
        "(imported kWh × the levy, to its payee); vat (per participant and period on its "
        "taxable lines: quantity 0, price = the rate as a fraction); flex_availability, "
        "flex_utilisation, flex_penalty (flexibility commitments, :mod:`transactive."
        "settlement.flex`); p2p_energy (peer-to-peer trade, buyer to seller), p2p_network "
        "(its network charge, buyer to the DSO; :mod:`transactive.settlement.p2p`)",
    ),
    Column("quantity_kwh", "float64", "kWh", "energy the line is for (+ import, − export)"),
    Column("price", "float64", "currency/kWh", "unit price"),
    Column(
        "amount",
        "int64",
        "minor units of currency",
        "round-half-even(quantity × price × 100) for priced lines, paid by the participant",
    ),
    Column("currency", "category", "", "ISO 4217 code"),
    Column("counterparty_id", "category", "", "participant that receives the amount"),
    Column(
        "quality",
        "category",
        "",
        "measured | estimated: the worst quality of the meter readings the line is computed "
        "from (measured for lines computed from none)",
    ),
)

COMMITMENTS = _schema(
    "commitments",
    "Flexibility commitments: one row per provider resource and interval, the change of net "
    "import it committed to deliver against its baseline and what the buyer pays for it.",
    Column("direction", "category", "", "up (reduce net import) | down (increase net import)"),
    Column("committed_kw", "float64", "kW", "committed change of power (≥ 0)"),
    Column("price", "float64", "currency/kWh", "utilisation price of delivered energy"),
    Column(
        "availability_price",
        "float64",
        "currency/kW",
        "availability payment per committed kW and interval, paid whatever is delivered",
    ),
    Column("buyer", "category", "", "participant that bought the flexibility (the DSO)"),
)

FLEX_ASKS = _schema(
    "flex_asks",
    "Flexibility asks: one row per ask and interval. The DSO (participant) found a forecast "
    "violation at a grid element (resource_id: ``branch:<name>``, ``bus:<name>`` or "
    "``source:<name>``) and asks for a change of net import at the buses that relieve it.",
    Column("ask_id", "category", "", "identifier of the ask (rows of one ask share it)"),
    Column("area", "category", "", "DSO area the ask is for"),
    Column("buses", "category", "", "location: buses where flexibility relieves it, ';'-joined"),
    Column("direction", "category", "", "up (reduce net import) | down (increase net import)"),
    Column("kw", "float64", "kW", "change of net power needed (≥ 0)"),
    Column("price_ceiling", "float64", "currency/kWh", "the most the DSO pays per kWh"),
    Column("reason", "category", "", "the violation, e.g. 'overload 112.4 %'"),
)

FLEX_OFFERS = _schema(
    "flex_offers",
    "Flexibility offers: one row per offer and interval. A provider (participant, usually an "
    "aggregator) offers to change a resource's net import against its baseline schedule; rows "
    "of one offer share ``offer_id`` and are committed together (all of them, or, unless "
    "``all_or_none``, a common fraction). Rebound rows are the payback the device needs after "
    "the activation: part of the schedule, not paid.",
    Column("offer_id", "category", "", "identifier of the offer"),
    Column("ask_id", "category", "", "the ask it answers ('' for an unsolicited offer)"),
    Column("bus", "category", "", "bus of the resource in its area's feeder"),
    Column("area", "category", "", "DSO area of the bus"),
    Column("direction", "category", "", "up (reduce net import) | down (increase net import)"),
    Column("kw", "float64", "kW", "change of net power offered in this interval (≥ 0)"),
    Column("rebound", "bool", "", "True: payback after the activation (not paid)"),
    Column(
        "availability_price",
        "float64",
        "currency/kW",
        "availability payment per committed kW and interval",
    ),
    Column("price", "float64", "currency/kWh", "utilisation price of delivered energy"),
    Column("all_or_none", "bool", "", "True: the offer is committed whole or not at all"),
)

#: The tables every simulation run writes.
SCHEMAS: tuple[Schema, ...] = (BIDS, AWARDS, DISPATCH, METER, SETTLEMENT)
#: Every documented table: the run's and the inputs of flexibility settlement.
DOCUMENTED: tuple[Schema, ...] = (*SCHEMAS, COMMITMENTS, FLEX_ASKS, FLEX_OFFERS)


def schema_docs() -> str:
    """Markdown reference of every record table (columns, dtypes, units, meaning)."""
    out = ["# Record schemas", "", (__doc__ or "").split("\n\n", 1)[0], ""]
    for s in DOCUMENTED:
        out += [f"## `{s.name}`", "", s.meaning, "", "| column | dtype | unit | meaning |"]
        out.append("|---|---|---|---|")
        out += [f"| `{c.name}` | {c.dtype} | {c.unit} | {c.meaning} |" for c in s.columns]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":  # .venv/bin/python -m transactive.core.records > docs/records.md
    print(schema_docs(), end="")
