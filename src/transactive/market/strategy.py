"""The strategic aggregator: marks up and withholds flexibility where it is pivotal.

A participant is pivotal for an ask in an interval when the other participants' offers that
can serve it (:func:`~transactive.market.monitoring.ask_offers`) add up to less than the
ask's kW. In exactly those (ask, interval) pairs its offer rows are changed:

* **mark-up**: the row's cost per kWh ``c = price + availability_price / duration_h``
  (currency/kWh) is raised towards the ask's ``price_ceiling`` by ``markup`` of the gap,
  ``c' = c + markup · max(ceiling − c, 0)``; both prices are scaled by ``c' / c`` (all to the
  utilisation price when ``c ≤ 0``), so neither price nor ``c'`` exceeds the ceiling (a row
  serving several pivotal asks uses the lowest ceiling; a row already above it is left);
* **withholding**: the row's kW is cut by ``withhold_percent`` %; the offer's rebound rows
  are scaled by the same fraction of its activation kW (the payback follows the activation).

Rows where the participant is not pivotal, and every other participant's rows, are unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError
from transactive.market.monitoring import ask_offers, pivotal_rows


def strategic_offers(
    offers: pd.DataFrame,
    asks: pd.DataFrame,
    participant: str,
    *,
    markup: float,
    withhold_percent: float = 0.0,
) -> pd.DataFrame:
    """FLEX_OFFERS with ``participant``'s rows marked up (``markup``: 0 … 1 of the gap to
    the ask's ceiling) and withheld (``withhold_percent``: 0 … 100 % of the kW) where it is
    pivotal for an ask (module doc); a new table, same rows, order and dtypes."""
    if not (np.isfinite(markup) and 0.0 <= markup <= 1.0):
        raise InvalidInputError(f"strategy: markup {markup} is not within 0 … 1")
    if not (np.isfinite(withhold_percent) and 0.0 <= withhold_percent <= 100.0):
        raise InvalidInputError(
            f"strategy: withhold_percent {withhold_percent} is not within 0 … 100"
        )
    rel = ask_offers(offers, asks)
    ceiling = pivotal_ceiling(rel, participant, asks, len(offers))
    hit = np.isfinite(ceiling)
    out = offers.copy()
    if not hit.any():
        return out
    price = offers["price"].to_numpy(float).copy()
    avail = offers["availability_price"].to_numpy(float).copy()
    dt = offers["duration_h"].to_numpy(float)
    cost = price + avail / dt
    raise_ = hit & (cost < ceiling)
    target = cost + markup * (ceiling - cost)
    scale = np.divide(target, cost, out=np.ones_like(cost), where=cost > 0)
    pos = raise_ & (cost > 0)
    price[pos] *= scale[pos]
    avail[pos] *= scale[pos]
    free = raise_ & ~(cost > 0)
    price[free] = np.minimum(price[free] + (target - cost)[free], ceiling[free])
    out["price"] = price
    out["availability_price"] = avail
    out["kw"] = _withheld_kw(offers, hit, withhold_percent)
    return out


def pivotal_ceiling(
    rel: pd.DataFrame, participant: str, asks: pd.DataFrame, n_rows: int
) -> np.ndarray:
    """Per offer row (``n_rows`` of them): the lowest ceiling (currency/kWh) of the asks
    for which ``participant`` is pivotal and the row serves, NaN where there is none.
    ``rel``: :func:`~transactive.market.monitoring.ask_offers` of the offers and ``asks``."""
    mine = (rel["participant_id"] == participant).to_numpy(bool)
    pivotal = mine & pivotal_rows(rel, asks)
    out = np.full(n_rows, np.nan)
    if pivotal.any():
        low = rel[pivotal].groupby("row")["price_ceiling"].min()
        out[low.index.to_numpy()] = low.to_numpy(float)
    return out


def _withheld_kw(offers: pd.DataFrame, hit: np.ndarray, withhold_percent: float) -> np.ndarray:
    """kW after withholding: the pivotal rows cut by the percentage, the rebound rows of the
    offers they belong to scaled by the offer's remaining share of activation kW."""
    kw = offers["kw"].to_numpy(float)
    if withhold_percent == 0.0:
        return kw.copy()
    new = np.where(hit, kw * (1.0 - withhold_percent / 100.0), kw)
    rebound = offers["rebound"].to_numpy(bool)
    offer = offers["offer_id"].astype(str).to_numpy()
    act = pd.DataFrame(
        {"o": offer, "old": np.where(rebound, 0.0, kw), "new": np.where(rebound, 0.0, new)}
    )
    sums = act.groupby("o")[["old", "new"]].sum()
    ratio = (sums["new"] / sums["old"].where(sums["old"] > 0)).fillna(1.0)
    factor = pd.Series(offer).map(ratio).to_numpy(float)
    return np.where(rebound, kw * factor, new)
