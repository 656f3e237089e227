"""The simulator's capacity stage: a capacity / non-wires-alternative auction "months ahead"
of the run (:mod:`transactive.market.capacity`), set by the scenario's ``[capacity]`` section.

* **Need**: the section's ``need_kw``, or the peak substation import of the business-as-usual
  design (``need_design``, default the scenario's baseline) in the run's intervals on the
  season's weekdays and hours (the run is the forecast of the season: its own dates stand in
  for the season's), above the rating
  (the DSO's substation limit unless ``rating_kw`` is set). The DSO's planning forecast is
  that run: the stage is evaluated after the designs ran, but nothing in the run depends on
  it (the contracts are not activated in the run: a stated simplification).
* **Offers**: the aggregator's batteries in the area, one offer per bus (resource = its
  portfolio node ``agg:<name>/<area>/<bus>``): power = Σ ``power_kw``, energy per event =
  Σ ``capacity_kwh × (soc_max − soc_min) × eta_discharge`` (AC energy from full to empty);
  offered kW = what that energy holds over an event (``offer_kw = "firm"``) or the power
  (``"nameplate"``, which the performance test then disqualifies where energy is short);
  the section's price, reliability and divisibility.
* **Output**: :func:`capacity_table`, one row per offer (``record = "offer"``) and one
  decision row (``record = "decision"``), and :func:`capacity_kpis`: the same value on every
  design (it is a pre-stage): ``capacity_procured_kw`` (awarded kW when it defers, else 0)
  and ``deferral_value_<cur>`` (the NPV as an equal amount per year of the deferral, 0 when
  it builds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from transactive.der.battery import BatteryParams
from transactive.errors import InvalidInputError
from transactive.market.capacity import (
    WEEKDAYS,
    Auction,
    Need,
    Offers,
    Season,
    Upgrade,
    make_offers,
    need_from_peak,
    run_auction,
)
from transactive.nodes.tree import Kind

if TYPE_CHECKING:
    from transactive.sim.world import World

#: Columns of the decision row (NaN on offer rows).
DECISION_COLUMNS = (
    "action", "reason", "need_kw", "procured_kw", "procured_firm_kw", "npv", "annual_value",
    "annualised_upgrade_cost", "upgrade_cost_per_kw_year", "capacity_cost_per_year",
    "cost_per_kw_year", "under_delivery_risk", "expected_shortfall_kw", "risk_threshold",
    "deferral_years", "peak_kw", "rating_kw",
)  # fmt: skip
OFFER_COLUMNS = (
    "offer_id", "provider", "resource", "node", "firm_kw", "energy_kwh", "price",
    "reliability", "deliverable_kw", "qualified", "reason", "share", "awarded_kw",
    "firm_awarded_kw", "payment",
)  # fmt: skip
COLUMNS = ("record", "area", "element", *dict.fromkeys(OFFER_COLUMNS + DECISION_COLUMNS))


def empty_table() -> pd.DataFrame:
    """The capacity table of a run without a capacity stage."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})


def capacity_table(world: World, grid: pd.DataFrame) -> pd.DataFrame:
    """Run the scenario's capacity auction (module docstring); ``grid``: the run's grid
    summary (``design, area, time, substation_kw``). Empty when the section is off."""
    sc = world.scenario
    c = sc.capacity
    if c.element is None:
        return empty_table()
    assert c.capex is not None and c.price_per_kw is not None  # the scenario checks it
    a = world.area_names.index(c.area) if c.area is not None else 0
    area = world.area_names[a]
    season = _season(world)
    tree = world.plan.tree
    dso = int(np.flatnonzero((tree.kind == Kind.DSO) & (tree.area == a))[0])
    rating = c.rating_kw if c.rating_kw is not None else float(tree.import_limit[dso])
    if not np.isfinite(rating):
        raise InvalidInputError(f"capacity.rating_kw: area {area!r} has no substation rating")
    peak = float("nan")
    if c.need_kw is not None:
        need_kw = c.need_kw
    else:
        peak = _window_peak(world, grid, area, season)
        need_kw = need_from_peak(peak, rating)
    need = Need(f"substation of {area}", season, need_kw, c.event_duration_h, c.events)
    offers = aggregator_offers(world, a, need.duration_h)
    up = Upgrade(c.capex, c.life_years, c.discount_rate, c.upgrade_kw or rating)
    auction = run_auction(
        offers,
        need,
        up,
        c.deferral_years,
        pricing=c.pricing,
        risk_threshold=c.risk_threshold,
        method=c.method,
        risk_unit=c.risk_unit,
    )
    return _table(auction, area, need, peak, rating)


def _season(world: World, run_dates: bool = False) -> Season:
    """The section's season; unset dates (or all, with ``run_dates``) are the evaluated
    period's local days."""
    sc = world.scenario
    c = sc.capacity
    local = pd.DatetimeIndex([sc.start, sc.end - pd.Timedelta(microseconds=1)]).tz_convert(
        sc.timezone
    )
    first, last = local[0].date(), local[1].date()
    return Season(
        first if run_dates else c.first or first,
        last if run_dates else c.last or last,
        tuple(sorted({WEEKDAYS.index(d) for d in c.weekdays})),
        (float(c.hours[0]), float(c.hours[1])),
        sc.timezone,
    )


def _window_peak(world: World, grid: pd.DataFrame, area: str, season: Season) -> float:
    """Peak substation import (kW) of the need design in the evaluated power-flow steps on
    the season's weekdays and hours: the run is the DSO's forecast of the season, so its
    own dates stand in for the season's."""
    sc = world.scenario
    c = sc.capacity
    design = c.need_design or sc.baseline
    rows = grid[(grid["design"] == design) & (grid["area"] == area)]
    times = pd.DatetimeIndex(pd.to_datetime(rows["time"], utc=True))
    step_h = sc.intervals.hours * sc.powerflow_every
    run_days = _season(world, run_dates=True)
    inside = run_days.contains(times, step_h) & (times >= pd.Timestamp(sc.start))
    if not inside.any():
        raise InvalidInputError(
            "capacity: no power-flow step of the run lies in the season's windows (check "
            "capacity.weekdays and hours against the scenario's period)"
        )
    return float(rows["substation_kw"].to_numpy(dtype=float)[inside].max())


def aggregator_offers(world: World, area: int, duration_h: float) -> Offers:
    """One offer per bus of the aggregator's batteries in ``area`` (module docstring)."""
    sc = world.scenario
    c = sc.capacity
    dev = world.devices
    owner = f"agg:{sc.aggregator.name}"
    power_parts, energy_parts, bus_parts = [], [], []
    for fleet, sl in zip(dev.fleets, dev.slices, strict=True):
        if fleet.kind != "battery":
            continue
        p = fleet.params
        assert isinstance(p, BatteryParams)
        mine = (dev.owner[sl] == owner) & (dev.area[sl] == area)
        power_parts.append(p.discharge_kw[mine])
        energy_parts.append((p.capacity_kwh * (p.soc_max - p.soc_min) * p.eta_discharge)[mine])
        bus_parts.append(dev.bus[sl][mine])
    if not bus_parts or not np.concatenate(bus_parts).size:
        return make_offers([], [], [])
    bus = np.concatenate(bus_parts)
    buses, inv = np.unique(bus, return_inverse=True)
    power = np.bincount(inv, weights=np.concatenate(power_parts)).astype(np.float64)
    energy = np.bincount(inv, weights=np.concatenate(energy_parts)).astype(np.float64)
    firm = np.minimum(power, energy / duration_h) if c.offer_kw == "firm" else power
    keep = firm > 0
    names = np.asarray(world.feeders[area].bus_names, dtype=object)[buses[keep]]
    area_name = world.area_names[area]
    return make_offers(
        [f"{owner}/{area_name}/{b}" for b in names],
        firm[keep],
        np.full(int(keep.sum()), c.price_per_kw),
        provider=np.full(int(keep.sum()), owner),
        resource=[f"{owner}/{area_name}/{b}" for b in names],
        node=names.astype(str),
        energy_kwh=energy[keep],
        reliability=c.reliability,
        divisible=c.divisible,
    )


def _table(auction: Auction, area: str, need: Need, peak: float, rating: float) -> pd.DataFrame:
    d = auction.decision
    offers = auction.table().assign(record="offer", area=area, element=need.element)
    decision = {
        "record": "decision",
        "area": area,
        "element": need.element,
        **{k: getattr(d, k) for k in DECISION_COLUMNS if hasattr(d, k)},
        "annual_value": d.annual_value,
        "cost_per_kw_year": d.cost_per_kw_year,
        "peak_kw": peak,
        "rating_kw": rating,
        "payment": d.capacity_cost_per_year,
    }
    out = pd.concat([offers, pd.DataFrame([decision])], ignore_index=True)
    return out.reindex(columns=list(COLUMNS))


def capacity_kpis(table: pd.DataFrame, currency: str) -> dict[str, float]:
    """``capacity_procured_kw`` and ``deferral_value_<cur>`` from a capacity table (0 for a
    run without the stage or a decision to build)."""
    cur = currency.lower()
    rows = table[table["record"] == "decision"] if len(table) else table
    if not len(rows):
        return {"capacity_procured_kw": 0.0, f"deferral_value_{cur}": 0.0}
    d = rows.iloc[0]
    defer = d["action"] == "defer"
    return {
        "capacity_procured_kw": float(d["procured_kw"]) if defer else 0.0,
        f"deferral_value_{cur}": float(d["annual_value"]) if defer else 0.0,
    }
