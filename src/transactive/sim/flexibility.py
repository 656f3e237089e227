"""The runner's flexibility step (issue 12, ask-bid-commit in the simulator) and its
settlement.

At the first interval of each local day a flexibility variant (:mod:`transactive.designs.
flexibility`) runs :func:`flex_step` on the day as the day-ahead forecast sees it (the
runner's :func:`~transactive.sim.runner.forecast_day`: a forecast copy of the devices
stepped through the day under the inner design with forecast weather, loads and arrivals).
Per DSO area:

1. **forecast**: the devices' forecast power placed on their buses (the runner's bus
   injections), the area's forecast net load per bus and interval;
2. **ask**: :func:`~transactive.market.flexibility.find_asks` — the DSO's AC power flow of
   the forecast, its violations, one ask per violated element and interval;
3. **bid**: the aggregator's offers from its batteries in the area around their forecast
   schedule (:func:`~transactive.market.flex_offers.battery_offers`), in the strategic
   variant passed through :func:`~transactive.market.strategy.strategic_offers`;
4. **commit**: :func:`~transactive.market.flexibility.commit` — the least-cost set that
   removes the violations and creates none (AC-verified); with ``partial=True``, so that a
   day with a violation no offer can reach still buys the relief that helps elsewhere
   (status ``partial``: the least-cost set of least total shortfall, no new violation).

The committed fraction of each offer times its per-battery activation is the change of
device power the variant adds in real time. Records: the asks (FLEX_ASKS), offers
(FLEX_OFFERS), commitments (COMMITMENTS: one row per aggregator node meter and committed
interval, non-rebound rows only, the buyer the area's DSO) and the orders (the commit's
per-offer result, USEF's FlexOrder: offer, fraction, cost).

Delivery (:func:`flex_settlement`): each commitment's baseline is the scenario's
``[flexibility].baseline`` from the baseline registry on the committed meters' own readings
of the same design, over each run of consecutive committed intervals of a meter and local
day (the event window); where the registry gives no value (a meter-before-meter-after window
that starts in the first slots of the local day) the forecast baseline schedule stands in.
Then :func:`~transactive.settlement.flex.flex_lines` (availability, utilisation, penalty),
paid by the DSO.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from transactive.core.curves import FloatArray
from transactive.core.records import COMMITMENTS, FLEX_ASKS, FLEX_OFFERS, SETTLEMENT
from transactive.designs.base import Design, Stage
from transactive.designs.flexibility import Flexible
from transactive.grid.model import Injections
from transactive.market.flex_offers import Offers, Portfolio, battery_offers
from transactive.market.flexibility import commit, find_asks
from transactive.nodes.tree import Kind, Tree
from transactive.settlement import check_balance
from transactive.settlement.baselines import History, Window, get_baseline
from transactive.settlement.flex import flex_lines
from transactive.sim.world import World

if TYPE_CHECKING:
    from transactive.sim.runner import ForecastDay
    from transactive.sim.scenario import Flexibility

#: Columns of the orders table (the commit's result per offer, one row per offer and day).
ORDER_COLUMNS = (
    "design",
    "area",
    "day",
    "status",
    "offer_id",
    "participant_id",
    "fraction",
    "committed",
    "availability_cost",
    "utilisation_cost",
    "cost",
)


@dataclass(frozen=True)
class FlexDay:
    """One day's flexibility market of one design: asks, offers, commitments, orders (see the
    module docstring) and ``delta_kw`` the committed change of every device's power per
    interval (kW, + import, ``(T, devices)``)."""

    asks: pd.DataFrame
    offers: pd.DataFrame
    commitments: pd.DataFrame
    orders: pd.DataFrame
    delta_kw: FloatArray


def empty_orders() -> pd.DataFrame:
    """An orders table without rows."""
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in ORDER_COLUMNS})


def forecast_stage(design: Flexible) -> tuple[Design, Stage]:
    """The design and stage the flexibility forecast runs under: the inner design's
    day-ahead stage if it has one, else its own (tariff) stage."""
    inner = design.inner
    return inner, "day-ahead" if inner.two_settlement else inner.stages[-1]


def flex_step(
    world: World, design: Flexible, day: ForecastDay, t0: int, t1: int, t2: int
) -> FlexDay:
    """The flexibility market of the day ``t0 … t1 − 1`` from the forecast ``day`` (a
    :class:`~transactive.sim.runner.ForecastDay` of ``t0 … t2 − 1``, kept with its fleets),
    every area. The forecast runs ``t2 − t1`` intervals into the next day so that a
    rebound may follow an evening activation into the night: the DSO checks those intervals
    too (no new violation there), but asks and activations are the day's own."""
    sc, tree, dev = world.scenario, world.plan.tree, world.devices
    fx = sc.flexibility
    assert fx is not None, "a flexibility design needs the scenario's [flexibility] section"
    starts = sc.intervals.starts[t0:t2]
    day_end = sc.intervals.starts[t1] if t1 < sc.intervals.n else None
    dt = sc.intervals.hours
    delta = np.zeros((t2 - t0, dev.n))
    parts: dict[str, list[pd.DataFrame]] = {k: [] for k in ("asks", "offers", "com", "orders")}
    agg = f"agg:{sc.aggregator.name}"
    for a, (feeder, area) in enumerate(zip(world.feeders, world.area_names, strict=True)):
        in_area = np.flatnonzero(dev.area == a)
        p = _on_buses(day.device_kw[:, in_area], dev.bus[in_area], feeder.n_bus)
        q = _on_buses(day.device_q[:, in_area], dev.bus[in_area], feeder.n_bus)
        forecast = Injections(p, q, starts)
        d = int(np.flatnonzero((tree.kind == Kind.DSO) & (tree.area == a))[0])
        dso, market = str(tree.owner[d]), f"flex:{area}"
        asks = find_asks(
            feeder, forecast, sc.limits, area=area, buyer=dso, node_id=str(tree.id[d]),
            price_ceiling=fx.price_ceiling, design=design.name, market_id=market,
            margin_percent=fx.margin_percent, reverse_flow=fx.reverse_flow,
        )  # fmt: skip
        own = (
            asks.table
            if day_end is None
            else asks.table[(pd.DatetimeIndex(asks.table["interval_start"]) < day_end)]
        )
        if own.empty:
            continue
        parts["asks"].append(own)
        mine = in_area[(dev.owner[in_area] == agg) & (dev.kind[in_area] == "battery")]
        agg_nodes = np.unique(dev.node[mine])
        price = np.nanmean(day.node_price[:, agg_nodes], axis=1) if agg_nodes.size else np.zeros(0)
        offers = battery_offers(
            portfolio(world, day, mine), own, starts, dt, np.nan_to_num(price),
            participant=agg, area=area, design=design.name, market_id=market,
            availability_price=fx.availability_price, rebound_h=fx.rebound_h,
        )  # fmt: skip
        if design.strategic and len(offers.table) and fx.strategic is not None:
            offers = _strategic(offers, own, agg, fx.strategic.markup,
                                fx.strategic.withhold_percent, starts)  # fmt: skip
        if offers.table.empty:
            continue
        parts["offers"].append(offers.table)
        result = commit(
            feeder, forecast, sc.limits, asks.table, offers.table, buyer=dso,
            margin_percent=fx.margin_percent, reverse_flow=fx.reverse_flow, partial=True,
        )  # fmt: skip
        frac = _fractions(result.offers)
        parts["orders"].append(_orders(result.offers, result.status, design.name, area, starts))
        parts["com"].append(_commitments(offers.table, frac, dso))
        act = offers.activation
        f = act["offer_id"].map(frac).fillna(0.0).to_numpy(dtype=float)
        np.add.at(delta, (act["interval"].to_numpy(), act["device"].to_numpy()), f * act["kw"])
    return FlexDay(
        asks=FLEX_ASKS.concat(parts["asks"]),
        offers=FLEX_OFFERS.concat(parts["offers"]),
        commitments=COMMITMENTS.concat(parts["com"]),
        orders=pd.concat(parts["orders"], ignore_index=True) if parts["orders"] else empty_orders(),
        delta_kw=delta,
    )


def _on_buses(kw: FloatArray, bus: np.ndarray, n_bus: int) -> FloatArray:
    """Device power ``(T, k)`` summed onto the buses ``(T, n_bus)``."""
    out = np.zeros((n_bus, kw.shape[0]))
    np.add.at(out, bus, kw.T)
    return out.T.copy()


def portfolio(world: World, day: ForecastDay, devices: np.ndarray) -> Portfolio:
    """The batteries at run positions ``devices`` as a :class:`Portfolio`: their parameters
    and their forecast baseline power and state of charge over the ``day``."""
    dev, tree = world.devices, world.plan.tree
    fleets, device_kw = day.fleets, day.device_kw
    cols: dict[str, list[np.ndarray]] = {k: [] for k in _PARAMS}
    socs: list[np.ndarray] = []
    order: list[np.ndarray] = []
    for i, sl in enumerate(dev.slices):
        pos = devices[(devices >= sl.start) & (devices < sl.stop)]
        if pos.size == 0:
            continue
        local = pos - sl.start
        params = fleets[0][i].params
        for k in _PARAMS:
            cols[k].append(np.asarray(getattr(params, k), dtype=float)[local])
        socs.append(np.stack([np.asarray(f[i].state.soc)[local] for f in fleets]))
        order.append(pos)
    pos = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    T = device_kw.shape[0]
    return Portfolio(
        device=pos.astype(np.int64),
        node=np.asarray(tree.id[dev.node[pos]], dtype=object),
        bus=np.asarray(
            [world.feeders[int(dev.area[j])].bus_names[int(dev.bus[j])] for j in pos], dtype=object
        ),
        **{k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()},
        power_kw=device_kw[:, pos],
        soc=np.concatenate(socs, axis=1) if socs else np.zeros((T + 1, 0)),
    )


_PARAMS = (
    "capacity_kwh",
    "charge_kw",
    "discharge_kw",
    "eta_charge",
    "eta_discharge",
    "soc_min",
    "soc_max",
    "degradation_cost",
)


def _strategic(
    offers: Offers,
    asks: pd.DataFrame,
    participant: str,
    markup: float,
    withhold: float,
    starts: pd.DatetimeIndex,
) -> Offers:
    """The strategic aggregator's offers; the batteries' activation is scaled row by row
    with whatever kW it withholds."""
    from transactive.market.strategy import strategic_offers

    table = offers.table.reset_index(drop=True)
    played = strategic_offers(table, asks, participant, markup=markup, withhold_percent=withhold)
    played = FLEX_OFFERS.concat([played.reset_index(drop=True)])
    key = ["offer_id", "interval"]
    old = pd.Series(table["kw"].to_numpy(dtype=float),
                    index=_keys(table, starts), name="kw")  # fmt: skip
    new = pd.Series(played["kw"].to_numpy(dtype=float), index=_keys(played, starts))
    ratio = (new / old.reindex(new.index)).where(old.reindex(new.index) > 0, 0.0)
    act = offers.activation
    idx = pd.MultiIndex.from_arrays([act["offer_id"].astype(str), act["interval"]], names=key)
    scale = ratio.reindex(idx).fillna(0.0).to_numpy(dtype=float)
    return Offers(played, act.assign(kw=act["kw"].to_numpy(dtype=float) * scale))


def _keys(offers: pd.DataFrame, starts: pd.DatetimeIndex) -> pd.MultiIndex:
    """(offer id, interval position in ``starts``) of every offer row."""
    t = starts.get_indexer(pd.DatetimeIndex(offers["interval_start"]))
    return pd.MultiIndex.from_arrays(
        [offers["offer_id"].astype(str).to_numpy(), t], names=["offer_id", "interval"]
    )


def _fractions(offers: pd.DataFrame) -> pd.Series:
    """Committed fraction per offer id (0 for an offer not committed)."""
    if offers.empty:
        return pd.Series([], dtype=float)
    f = offers["fraction"].to_numpy(dtype=float) * offers["committed"].to_numpy(dtype=bool)
    return pd.Series(f, index=offers["offer_id"].astype(str).to_numpy())


def _orders(
    offers: pd.DataFrame, status: str, design: str, area: str, starts: pd.DatetimeIndex
) -> pd.DataFrame:
    """The commit's per-offer result with the design, area, day and status."""
    out = pd.DataFrame({c: offers[c] for c in ORDER_COLUMNS[4:] if c in offers.columns})
    out.insert(0, "status", status)
    out.insert(0, "day", starts[0])
    out.insert(0, "area", area)
    out.insert(0, "design", design)
    return out.reindex(columns=list(ORDER_COLUMNS))


def _commitments(offers: pd.DataFrame, frac: pd.Series, buyer: str) -> pd.DataFrame:
    """COMMITMENTS of the committed offers: their non-rebound rows × the fraction."""
    f = offers["offer_id"].astype(str).map(frac).fillna(0.0).to_numpy(dtype=float)
    rows = ~offers["rebound"].to_numpy(dtype=bool) & (f > 0)
    o = offers[rows]
    return COMMITMENTS.frame(
        {
            **{c: o[c].to_numpy() for c in COMMITMENTS.names[:8]},
            "direction": o["direction"].to_numpy(),
            "committed_kw": o["kw"].to_numpy(dtype=float) * f[rows],
            "price": o["price"].to_numpy(dtype=float),
            "availability_price": o["availability_price"].to_numpy(dtype=float),
            "buyer": buyer,
        }
    )


def delivery_baselines(
    commitments: pd.DataFrame, meter: pd.DataFrame, timezone: str, baseline: str
) -> FloatArray:
    """The baseline net kWh of every commitment (module docstring): the registry's
    ``baseline`` on the committed meters' readings of the commitment's design, per event
    window (a run of consecutive committed intervals of one meter and local day); where the
    registry gives none, the meter's net reading of the interval just before the window
    (0 before the first reading)."""
    out = np.full(len(commitments), np.nan)
    if commitments.empty:
        return out
    model = get_baseline(baseline)
    c = commitments.reset_index(drop=True)
    for design in pd.unique(c["design"].astype(str)):
        rows = np.flatnonzero((c["design"].astype(str) == design).to_numpy())
        ids = set(c["resource_id"].astype(str).iloc[rows])
        m = meter[
            (meter["design"].astype(str) == design).to_numpy()
            & meter["resource_id"].astype(str).isin(ids).to_numpy()
        ]
        if m.empty:
            continue
        m = m.assign(resource_id=m["resource_id"].astype(str).astype("category"))
        history = History.from_meter(m, timezone)
        day, slot = _local_day_slot(c["interval_start"].iloc[rows], history, timezone)
        meter_pos = pd.Index(history.meter_ids.astype(str)).get_indexer(
            c["resource_id"].astype(str).iloc[rows]
        )
        order = np.lexsort((slot, day, meter_pos))
        r, d, sl, mp = rows[order], day[order], slot[order], meter_pos[order]
        new_run = np.ones(r.size, dtype=bool)
        new_run[1:] = (mp[1:] != mp[:-1]) | (d[1:] != d[:-1]) | (sl[1:] != sl[:-1] + 1)
        run = np.cumsum(new_run) - 1
        first = np.flatnonzero(new_run)
        last = np.append(first[1:], r.size) - 1
        cache: dict[tuple[int, int, int], np.ndarray] = {}
        for k in range(first.size):
            key = (int(d[first[k]]), int(sl[first[k]]), int(sl[last[k]]) + 1)
            if key not in cache:
                cache[key] = model.counterfactual(history, None, key[0], Window(key[1], key[2]))
            kw = cache[key][mp[first[k]], sl[first[k] : last[k] + 1]]
            here = r[first[k] : last[k] + 1]
            dur = c["duration_h"].to_numpy(dtype=float)[here]
            ok = np.isfinite(kw)
            out[here[ok]] = kw[ok] * dur[ok]
            if not ok.all():
                out[here[~ok]] = _reading_before(m, c.iloc[here[0]])
        del run
    return out


def _reading_before(meter: pd.DataFrame, commitment: pd.Series) -> float:
    """Net kWh the commitment's meter read in the interval before the commitment's event
    window starts (0 if it has none)."""
    mine = meter[(meter["resource_id"].astype(str) == str(commitment["resource_id"])).to_numpy()]
    t = pd.DatetimeIndex(mine["interval_start"])
    before = mine[(t < commitment["interval_start"]).to_numpy()]
    if before.empty:
        return 0.0
    last = before.iloc[int(np.argmax(pd.DatetimeIndex(before["interval_start"]).asi8))]
    return float(last["import_kwh"] - last["export_kwh"])


def _local_day_slot(
    starts: pd.Series, history: History, timezone: str
) -> tuple[np.ndarray, np.ndarray]:
    """Day index in ``history`` and slot of the local day of every interval start."""
    wall = pd.DatetimeIndex(starts).tz_convert(timezone).tz_localize(None)
    midnight = wall.normalize()
    day = pd.Index(history.dates).get_indexer(midnight.to_numpy().astype("datetime64[D]"))
    slot = np.floor(((wall - midnight) / pd.Timedelta(hours=history.slot_h)).to_numpy())
    return day.astype(np.int64), slot.astype(np.int64)


def settle_flex(
    lines: pd.DataFrame,
    commitments: pd.DataFrame,
    meter: pd.DataFrame,
    tree: Tree,
    *,
    flexibility: Flexibility,
    timezone: str,
    currency: str,
    evaluated_start: pd.Timestamp,
    payees: Collection[str] = (),
    period: str = "whole",
) -> pd.DataFrame:
    """The settlement ``lines`` plus the flexibility lines
    (:func:`~transactive.settlement.flex.flex_lines`) of the ``commitments`` from
    ``evaluated_start`` on, against the ``meter`` readings and their delivery baselines
    (:func:`delivery_baselines`); money must still balance (the zero-sum check: the DSO
    pays flexibility out of its own margin). Used by the runner and by settling a run's
    records again."""
    c = COMMITMENTS.frame({k: commitments[k] for k in COMMITMENTS.names})
    c = c[np.asarray(pd.DatetimeIndex(c["interval_start"]) >= evaluated_start)]
    c = c.reset_index(drop=True)
    if c.empty:
        return lines
    fx = flexibility
    base = delivery_baselines(c, meter, timezone, fx.baseline)
    flex = flex_lines(c, meter, base, fx.tolerance_percent, fx.penalty_factor, currency=currency)
    out = SETTLEMENT.concat([lines, flex])
    check_balance(out, tree, None, payees=payees, period=period)
    return out
