"""Market-power KPIs of one design from a run's tables (BIDS, FLEX_OFFERS, FLEX_ASKS), with the
measures of :mod:`transactive.market.monitoring`:

* ``energy_hhi_max``: highest HHI of the energy sellers over the area markets and intervals
  (NaN when nobody sells energy);
* ``energy_pivotal_share``: share of the intervals with bids in which some area market has
  a pivotal seller (0 when there is none). The area's import from its parent
  market is not counted as supply: this is the local market's own screen, an upper bound on
  the market power where the substation can import;
* ``energy_rsi_min``: lowest residual supply index of the energy markets (NaN without
  sellers or demand);
* ``flex_hhi_max``, ``flex_pivotal_share`` (intervals with an ask), ``flex_rsi_min``: the same
  for flexibility, one market per ask and interval, the share over the intervals with an
  ask (NaN / 0 / NaN without asks or offers);
* ``flagged_offers``: distinct flexibility offers flagged by
  :func:`~transactive.market.monitoring.offer_flags` or
  :func:`~transactive.market.monitoring.pivotal_offer_flags` (0 without offers).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from transactive.core.records import FLEX_ASKS, FLEX_OFFERS
from transactive.market.monitoring import (
    concentration,
    energy_demand,
    energy_supply,
    flex_supply,
    offer_flags,
    pivotal_offer_flags,
)

#: KPI name → one-line meaning, in report order.
MARKET_POWER_KPIS: dict[str, str] = {
    "energy_hhi_max": "highest HHI of energy sellers in an area market (0 … 10 000)",
    "energy_pivotal_share": "share of intervals with a pivotal energy seller in some area "
    "market (imports not counted as supply)",
    "energy_rsi_min": "lowest residual supply index of an area's energy sellers",
    "flex_hhi_max": "highest HHI of the flexibility offers serving one ask (0 … 10 000)",
    "flex_pivotal_share": "share of intervals with asks in which some ask has a pivotal "
    "flexibility provider",
    "flex_rsi_min": "lowest residual supply index of the offers serving an ask",
    "flagged_offers": "flexibility offers flagged (beyond capability, withheld, priced far "
    "above their history or peers, or near the ceiling by a pivotal provider)",
}

#: Which way is better for each KPI of :data:`MARKET_POWER_KPIS` (the entries
#: :data:`transactive.sim.kpis.KPI_BETTER` takes when the KPIs join the run's table).
MARKET_POWER_BETTER: dict[str, Literal["lower", "higher"]] = {
    "energy_hhi_max": "lower",
    "energy_pivotal_share": "lower",
    "energy_rsi_min": "higher",
    "flex_hhi_max": "lower",
    "flex_pivotal_share": "lower",
    "flex_rsi_min": "higher",
    "flagged_offers": "lower",
}


def market_power_kpis(
    bids: pd.DataFrame,
    flex_offers: pd.DataFrame,
    flex_asks: pd.DataFrame,
    design: str,
    *,
    capability_kw: pd.Series | None = None,
    history: pd.DataFrame | None = None,
) -> dict[str, float]:
    """The market-power KPIs (module doc) of ``design``'s rows of the tables.
    ``capability_kw`` (per flexibility resource, kW) and ``history`` (earlier FLEX_OFFERS)
    feed :func:`~transactive.market.monitoring.offer_flags`; without ``history`` the
    offers are screened against the run's own offers."""
    b = _of(bids, design)
    energy = concentration(energy_supply(b), energy_demand(b))
    offers = _of(flex_offers, design) if len(flex_offers) else FLEX_OFFERS.empty()
    asks = _of(flex_asks, design) if len(flex_asks) else FLEX_ASKS.empty()
    flex = concentration(*flex_supply(offers, asks))
    flagged = _flagged(offers, asks, capability_kw, history)
    return {
        "energy_hhi_max": _max(energy["hhi"]),
        "energy_pivotal_share": _pivotal_share(energy),
        "energy_rsi_min": _min(energy["rsi_min"]),
        "flex_hhi_max": _max(flex["hhi"]),
        "flex_pivotal_share": _pivotal_share(flex),
        "flex_rsi_min": _min(flex["rsi_min"]),
        "flagged_offers": float(flagged),
    }


def _flagged(
    offers: pd.DataFrame,
    asks: pd.DataFrame,
    capability_kw: pd.Series | None,
    history: pd.DataFrame | None,
) -> int:
    """Number of distinct offers flagged by either screen."""
    if offers.empty:
        return 0
    screens = (offer_flags(offers, capability_kw, history), pivotal_offer_flags(offers, asks))
    return len(set().union(*(f["offer_id"] for f in screens)))


def _of(df: pd.DataFrame, design: str) -> pd.DataFrame:
    """The rows of one design, index reset."""
    return df[(df["design"] == design).to_numpy(bool)].reset_index(drop=True)


def _pivotal_share(c: pd.DataFrame) -> float:
    """Share of the intervals (those with a market row) in which some market has a pivotal
    seller."""
    if c.empty:
        return 0.0
    per = c.groupby("interval_start")["pivotal"].any()
    return float(per.mean())


def _max(x: pd.Series) -> float:
    v = x.to_numpy(float)
    return float(np.nanmax(v)) if np.isfinite(v).any() else float("nan")


def _min(x: pd.Series) -> float:
    v = x.to_numpy(float)
    v = v[np.isfinite(v)]  # +inf: a market without demand
    return float(v.min()) if v.size else float("nan")
