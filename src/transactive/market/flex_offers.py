"""The aggregator's flexibility offers from its portfolio's real flexibility (issue 12, "Bid").

An aggregator answers the DSO's asks (:data:`~transactive.core.records.FLEX_ASKS`) with
offers (:data:`~transactive.core.records.FLEX_OFFERS`) built from what its batteries can
really do around their forecast baseline schedule. Per aggregator node (its devices at one
bus), direction and *window* (a run of consecutive intervals in which some ask of that
direction covers the node's bus), with ``need[t]`` the largest such ask's kW and
``u[t] = need[t] / max need`` its shape, every battery ``d`` of the node offers
``a_d · u[t]`` kW, ``a_d`` the largest amplitude that

* stays within its power limits around its baseline power ``p0[t]`` (up = discharge more /
  charge less: ``a_d·u[t] ≤ p0[t] + discharge_kw``; down: ``≤ charge_kw − p0[t]``);
* stays within its energy: the cells give ``a_d Σu dt / η_d`` (up; down: take
  ``a_d Σu dt · η_c``), at most what the baseline state of charge leaves above ``soc_min``
  (below ``soc_max``) at its lowest (highest) over the window and the rebound;
* can be paid back: the **rebound** restores the cells' energy in the ``rebound_h`` hours
  after the window (cut at the node's next window of the same direction and at the end of
  the forecast), spread evenly, within the power limits there. Rebound rows have the
  opposite direction and ``rebound = True``; being rows of the same offer they are committed
  with the same fraction, so the payback is tied to the activation without ``all_or_none``
  (a battery's response is continuous; all-or-none is for devices that cannot run part-way).

The power limit on an interval where the baseline charges is the conservative one
(reducing a charge saves ``η_c`` in the cells, the energy bound counts ``1/η_d``).

Prices (truthful: the offer's marginal cost). Utilisation, per kWh delivered up: the rebound
energy bought at the forecast price of the rebound intervals, ``p_r / (η_d η_c)``, less the
energy sold in the window at its forecast price ``p_w``, plus the degradation of the
throughput, ``2 c_deg / η_d``; down: ``p_w − p_r η_c η_d + 2 c_deg η_c``; per node the
kW-weighted mean over its batteries, at least 0 (currency/kWh). Availability: the
aggregator's ask from the scenario (currency/kW per interval).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from transactive.core.records import FLEX_ASKS, FLEX_OFFERS
from transactive.errors import InvalidInputError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Columns of :attr:`Offers.activation`.
ACTIVATION_COLUMNS = ("offer_id", "interval", "device", "kw")


@dataclass(frozen=True)
class Portfolio:
    """An aggregator's batteries in one area, one entry per battery (kW, kWh, fractions).

    device: the battery's position in the run's device order (for the activation); node,
    bus: its aggregator node id and bus name; power_kw ``(T, n)``: forecast baseline power
    per interval (+ charging); soc ``(T + 1, n)``: forecast baseline state of charge at each
    interval start and at the end. The rest are the battery parameters
    (:class:`~transactive.der.battery.BatteryParams`).
    """

    device: IntArray
    node: NDArray[np.object_]
    bus: NDArray[np.object_]
    capacity_kwh: FloatArray
    charge_kw: FloatArray
    discharge_kw: FloatArray
    eta_charge: FloatArray
    eta_discharge: FloatArray
    soc_min: FloatArray
    soc_max: FloatArray
    degradation_cost: FloatArray
    power_kw: FloatArray
    soc: FloatArray

    @property
    def n(self) -> int:
        """Number of batteries."""
        return int(self.device.size)


@dataclass(frozen=True)
class Offers:
    """The offers (FLEX_OFFERS rows) and, per offer row, how the node's batteries deliver it:
    ``activation`` (:data:`ACTIVATION_COLUMNS`) gives each battery's change of power (kW,
    + import) at fraction 1, per interval position of the forecast."""

    table: pd.DataFrame
    activation: pd.DataFrame


def empty_activation() -> pd.DataFrame:
    """An activation table without rows."""
    return pd.DataFrame(
        {
            "offer_id": pd.Series([], dtype=object),
            "interval": pd.Series([], dtype=np.int64),
            "device": pd.Series([], dtype=np.int64),
            "kw": pd.Series([], dtype=float),
        }
    )


def battery_offers(
    portfolio: Portfolio,
    asks: pd.DataFrame,
    starts: pd.DatetimeIndex,
    dt_h: float,
    price: FloatArray,
    *,
    participant: str,
    area: str,
    design: str,
    market_id: str,
    availability_price: float,
    rebound_h: float,
) -> Offers:
    """The offers of ``portfolio`` to ``asks`` (FLEX_ASKS of the area) over the forecast
    intervals ``starts`` (``T`` of ``dt_h`` hours); ``price``: the forecast energy price the
    aggregator's nodes are settled at per interval (currency/kWh, ``T``). See the module
    docstring."""
    T = len(starts)
    pf = portfolio
    if pf.power_kw.shape != (T, pf.n) or pf.soc.shape != (T + 1, pf.n):
        raise InvalidInputError(
            f"flex offers: baseline power {pf.power_kw.shape} / soc {pf.soc.shape} do not "
            f"match {T} intervals × {pf.n} batteries"
        )
    if np.shape(price) != (T,) or not np.isfinite(price).all():
        raise InvalidInputError(f"flex offers: need {T} finite forecast prices")
    if not availability_price >= 0 or not rebound_h > 0:
        raise InvalidInputError("flex offers: availability_price must be ≥ 0, rebound_h > 0")
    if pf.n == 0 or asks.empty:
        return Offers(FLEX_OFFERS.empty(), empty_activation())
    FLEX_ASKS.check(asks)
    need, ask_of = _needs(asks, starts, np.unique(pf.bus))
    tables, acts = [], []
    n_rebound = max(1, round(rebound_h / dt_h))
    for node in pd.unique(pf.node):
        mine = np.flatnonzero(pf.node == node)
        bus = str(pf.bus[mine[0]])
        for direction in ("up", "down"):
            w_need = need.get((direction, bus))
            if w_need is None:
                continue
            windows = _runs(w_need > 0)
            for k, (s, e) in enumerate(windows):
                nxt = windows[k + 1][0] if k + 1 < len(windows) else T
                stop = min(e + n_rebound, nxt, T)
                made = _window_offer(
                    pf, mine, direction, w_need, s, e, stop, dt_h, np.asarray(price, float)
                )
                if made is None:
                    continue
                kw, reb, cost = made
                offer_id = f"{node}@{starts[s]:%Y-%m-%dT%H:%MZ}/{direction}"
                ask = ask_of[(direction, bus)][s:e]
                tables.append(
                    _rows(
                        offer_id, str(_most(ask)), node, bus, direction, kw, reb, s, e, stop,
                        starts, dt_h, cost, availability_price, participant, area, design,
                        market_id,
                    )
                )  # fmt: skip
                acts.append(_activation(offer_id, pf.device[mine], direction, kw, reb, s, e, stop))
    if not tables:
        return Offers(FLEX_OFFERS.empty(), empty_activation())
    return Offers(FLEX_OFFERS.concat(tables), pd.concat(acts, ignore_index=True))


def _needs(
    asks: pd.DataFrame, starts: pd.DatetimeIndex, buses: np.ndarray
) -> tuple[dict[tuple[str, str], FloatArray], dict[tuple[str, str], np.ndarray]]:
    """Per (direction, bus) of ``buses``: the largest ask kW per interval covering it and the
    ask it comes from."""
    t = starts.get_indexer(pd.DatetimeIndex(asks["interval_start"]))
    a = pd.DataFrame(
        {
            "t": t,
            "direction": asks["direction"].astype(str).to_numpy(),
            "bus": asks["buses"].astype(str).str.split(";").to_numpy(),
            "kw": asks["kw"].to_numpy(dtype=float),
            "ask_id": asks["ask_id"].astype(str).to_numpy(),
        }
    )
    a = a[(a["t"] >= 0) & (a["kw"] > 0)].explode("bus")
    a = a[a["bus"].isin(set(buses.astype(str)))]
    a = a.sort_values("kw", ascending=False, kind="stable").drop_duplicates(
        ["direction", "bus", "t"]
    )
    need: dict[tuple[str, str], FloatArray] = {}
    which: dict[tuple[str, str], np.ndarray] = {}
    for (direction, bus), g in a.groupby(["direction", "bus"], sort=True):
        v = np.zeros(len(starts))
        ids = np.full(len(starts), "", dtype=object)
        pos = g["t"].to_numpy(dtype=np.int64)
        v[pos] = g["kw"].to_numpy(dtype=float)
        ids[pos] = g["ask_id"].to_numpy(dtype=object)
        need[(str(direction), str(bus))] = v
        which[(str(direction), str(bus))] = ids
    return need, which


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in ``mask``."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def _most(ids: np.ndarray) -> str:
    """The most frequent non-empty id (the ask a window mostly answers)."""
    v = pd.Series(ids[ids != ""])
    return str(v.value_counts().index[0]) if len(v) else ""


def _window_offer(
    pf: Portfolio,
    mine: IntArray,
    direction: str,
    need: FloatArray,
    s: int,
    e: int,
    stop: int,
    dt: float,
    price: FloatArray,
) -> tuple[FloatArray, FloatArray, float] | None:
    """Per battery of ``mine``: its kW in the window ``[s, e)`` ``(e − s, k)`` and its
    rebound kW per interval of ``[e, stop)`` ``(k,)``, and the node's utilisation price;
    None when the node can offer nothing there."""
    n_r = stop - e
    if n_r <= 0:
        return None
    u = need[s:e] / need[s:e].max()
    p0w, p0r = pf.power_kw[s:e, mine], pf.power_kw[e:stop, mine]
    soc = pf.soc[s : stop + 1, mine]
    cap = pf.capacity_kwh[mine]
    ec, ed = pf.eta_charge[mine], pf.eta_discharge[mine]
    if direction == "up":
        head = np.clip(p0w + pf.discharge_kw[mine], 0.0, None)
        head_r = np.clip(pf.charge_kw[mine] - p0r, 0.0, None).min(axis=0)
        energy = np.clip(soc.min(axis=0) - pf.soc_min[mine], 0.0, None) * cap
        per_cell, back = 1.0 / ed, 1.0 / ec
    else:
        head = np.clip(pf.charge_kw[mine] - p0w, 0.0, None)
        head_r = np.clip(pf.discharge_kw[mine] + p0r, 0.0, None).min(axis=0)
        energy = np.clip(pf.soc_max[mine] - soc.max(axis=0), 0.0, None) * cap
        per_cell, back = ec, ed
    su = float(u.sum()) * dt
    with np.errstate(divide="ignore", invalid="ignore"):
        a_power = np.where(u[:, None] > 0, head / u[:, None], np.inf).min(axis=0)
    a_energy = energy / (su * per_cell)
    a_back = head_r * n_r * dt / (su * per_cell * back)
    a = np.clip(np.minimum(np.minimum(a_power, a_energy), a_back), 0.0, None)
    if not (a.sum() * u.max() > 1e-3):
        return None
    kw = a[None, :] * u[:, None]
    reb = a * su * per_cell * back / (n_r * dt)
    p_w = float(np.average(price[s:e], weights=u))
    p_r = float(price[e:stop].mean())
    c = pf.degradation_cost[mine]
    if direction == "up":
        unit = p_r / (ed * ec) - p_w + 2.0 * c / ed
    else:
        unit = p_w - p_r * ec * ed + 2.0 * c * ec
    cost = max(float(np.average(unit, weights=a)), 0.0)
    return kw, reb, cost


def _rows(
    offer_id: str,
    ask_id: str,
    node: str,
    bus: str,
    direction: str,
    kw: FloatArray,
    reb: FloatArray,
    s: int,
    e: int,
    stop: int,
    starts: pd.DatetimeIndex,
    dt: float,
    cost: float,
    availability: float,
    participant: str,
    area: str,
    design: str,
    market_id: str,
) -> pd.DataFrame:
    """The FLEX_OFFERS rows of one offer: the window, then its rebound."""
    n_w, n_r = e - s, stop - e
    opposite = "down" if direction == "up" else "up"
    return FLEX_OFFERS.frame(
        {
            "design": design,
            "market_id": market_id,
            "stage": "day-ahead",
            "interval_start": starts[s:stop],
            "duration_h": dt,
            "participant_id": participant,
            "resource_id": f"meter:{node}",
            "node_id": node,
            "offer_id": offer_id,
            "ask_id": ask_id,
            "bus": bus,
            "area": area,
            "direction": np.array([direction] * n_w + [opposite] * n_r, dtype=object),
            "kw": np.concatenate([kw.sum(axis=1), np.full(n_r, reb.sum())]),
            "rebound": np.concatenate([np.zeros(n_w, dtype=bool), np.ones(n_r, dtype=bool)]),
            "availability_price": availability,
            "price": cost,
            "all_or_none": False,
        }
    )


def _activation(
    offer_id: str,
    device: IntArray,
    direction: str,
    kw: FloatArray,
    reb: FloatArray,
    s: int,
    e: int,
    stop: int,
) -> pd.DataFrame:
    """Each battery's change of power (kW, + import) at fraction 1 over the window
    ``[s, e)`` and its rebound ``[e, stop)``."""
    sign = -1.0 if direction == "up" else 1.0
    n_w, k = kw.shape
    n_r = stop - e
    return pd.DataFrame(
        {
            "offer_id": offer_id,
            "interval": np.concatenate([np.repeat(np.arange(s, e), k),
                                        np.repeat(np.arange(e, stop), k)]),
            "device": np.concatenate([np.tile(device, n_w), np.tile(device, n_r)]),
            "kw": np.concatenate([sign * kw.reshape(-1), np.tile(-sign * reb, n_r)]),
        }
    )  # fmt: skip
