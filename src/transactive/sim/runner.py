"""The time-stepped simulation: devices bid → nodes aggregate → market clears → results flow
down → devices respond → AC power flow → violations recorded, for every paradigm.

Paradigms (same feeder, same devices, same weather):

* ``baseline`` — a flat retail tariff; devices see a constant price, so nothing shifts.
* ``tou`` — a time-of-use tariff; devices read the tariff and shift out of the peak.
* ``layered`` (Total DSO) — homes aggregate their devices (clipped by the service limit),
  an aggregator (VPP) bids the composite curve of all batteries, the DSO sums homes and
  aggregator, clips by the substation rating and bids one net curve at the substation; the
  wholesale result flows back down at each node's internal price (so a congested
  substation raises the area price above the wholesale price).
* ``layered-network`` — layered, but the DSO clears its area on the feeder model
  (:func:`~transactive.market.network.clear_network`: LinDistFlow with voltage and thermal
  limits, HiGHS) at the wholesale price, and every home and the aggregator's per-bus
  portfolios are settled at their bus's DLMP.
* ``grand-central`` (Minimal DSO) — every device and the aggregator bid straight into the
  wholesale market; nothing in between clips; the DSO only observes the power flow.

Homes pay the price they see (tariff, area price or wholesale price) for their net energy,
plus, in the market paradigms, the DSO's network charge on imports. Energy balance at every
node and money balance of every market are checked each interval (``BalanceError``).

Simplifications (documented, not hidden): homes sit on the load points of the feeder
(``homes_per_load`` each) and replace the feeder's own loads and generators; household
reactive power is drawn at a 0.95 lagging power factor; smart inverters see the voltage of
the previous power-flow step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from transactive.core.curves import Curves, block_curves, concat
from transactive.core.time import Intervals
from transactive.der import base as der_base
from transactive.der.fleet import Population, make_population
from transactive.der.weather import weather_for
from transactive.errors import InvalidInputError
from transactive.grid.feeders import load_feeder
from transactive.grid.limits import Limits, check_limits
from transactive.grid.model import Feeder, Injections
from transactive.grid.powerflow import run_powerflow
from transactive.nodes import paradigms
from transactive.nodes.wholesale import (
    MeritOrder,
    PriceSeries,
    clear_wholesale,
    read_merit_order,
    read_price_series,
)
from transactive.sim.kpis import compute_kpis
from transactive.sim.results import SimResults
from transactive.sim.scenario import Scenario, tou_price

HOUSEHOLD_TAN_PHI = float(np.tan(np.arccos(0.95)))  # household Q/P at 0.95 lagging
AGGREGATED = ("battery",)  # device types bid by the aggregator (VPP), not by the homes
HORIZON_H = 24.0  # devices see a day of price forecast


@dataclass(frozen=True)
class Setup:
    """Everything a run shares across paradigms."""

    scenario: Scenario
    feeder: Feeder
    home_bus: np.ndarray  # bus position of each home
    population: Population
    weather: Any
    source: PriceSeries | MeritOrder
    forecast: np.ndarray  # wholesale price forecast per interval and a day beyond, $/kWh
    groups: np.ndarray  # device ownership label per home


def prepare(scenario: Scenario) -> Setup:
    """Load the feeder, place homes, draw the devices, read weather and wholesale data."""
    feeder = load_feeder(scenario.feeder)
    loads = feeder.loads[feeder.loads["kind"] == "load"]
    if loads.empty:
        raise InvalidInputError(f"feeder {scenario.feeder!r} has no loads to place homes on")
    home_bus = np.repeat(loads["bus"].to_numpy(dtype=np.int64), scenario.homes_per_load)
    n_homes = int(home_bus.size)
    population = make_population(
        n_homes, scenario.penetration, dict(scenario.device_config), scenario.seed
    )
    iv = scenario.intervals
    weather = weather_for(iv)
    # The forecast reaches a day past the period (devices plan a day ahead).
    ahead = Intervals(iv.start, iv.duration, iv.n + horizon(scenario))
    area_base = _area_base_load(feeder, loads, ahead) * scenario.homes_per_load
    source: PriceSeries | MeritOrder
    if scenario.wholesale.source == "prices":
        assert scenario.wholesale.prices is not None
        series = read_price_series(scenario.wholesale.prices, ahead)  # holds the last price
        source, forecast = PriceSeries(series.price[: iv.n]), series.price
    else:
        other = area_base * scenario.wholesale.system_scale
        ahead_source = read_merit_order(other, scale_kw=float((other + area_base).max()))
        source = replace(ahead_source, other_load_kw=other[: iv.n])
        # Forecast: the wholesale price with the area at its base load (price-taking).
        forecast, _ = clear_wholesale(
            block_curves(np.full(ahead.n, scenario.cap), area_base),
            ahead_source,
            scenario.floor,
            scenario.cap,
        )
    return Setup(
        scenario, feeder, home_bus, population, weather, source, forecast, _ownership(population)
    )


def run(
    scenario: Scenario,
    paradigms: tuple[str, ...] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SimResults:
    """Run every paradigm of ``scenario`` (or the given subset) on the same setup."""
    chosen = paradigms or scenario.paradigms
    setup = prepare(scenario)
    market, grid, bills, violations, dlmp, extras = [], [], [], [], [], {}
    for name in chosen:
        out = run_paradigm(setup, name, progress)
        market.append(out.market)
        grid.append(out.grid)
        bills.append(out.bills)
        violations.append(out.violations)
        dlmp.append(out.dlmp)
        extras[name] = out.totals
    res = SimResults(
        scenario=scenario.name,
        feeder=scenario.feeder,
        paradigms=tuple(chosen),
        market=pd.concat(market, ignore_index=True),
        grid=pd.concat(grid, ignore_index=True),
        bills=pd.concat(bills, ignore_index=True),
        violations=pd.concat(
            [v for v in violations if len(v)] or violations[:1], ignore_index=True
        ),
        kpis=pd.DataFrame(),
        dlmp=pd.concat([d for d in dlmp if len(d)] or dlmp[:1], ignore_index=True),
    )
    return replace(
        res, kpis=compute_kpis(res, extras, scenario.intervals.hours * scenario.powerflow_every)
    )


@dataclass(frozen=True)
class ParadigmRun:
    market: pd.DataFrame
    grid: pd.DataFrame
    bills: pd.DataFrame
    violations: pd.DataFrame
    dlmp: pd.DataFrame
    totals: dict[str, float]


def run_paradigm(
    setup: Setup, paradigm: str, progress: Callable[[str, int, int], None] | None = None
) -> ParadigmRun:
    """Step one paradigm through every market interval (see the module docstring)."""
    sc, feeder, pop = setup.scenario, setup.feeder, setup.population
    iv, dt = sc.intervals, sc.intervals.hours
    fleets = dict(pop.fleets)
    n_homes, n_bus = pop.n_homes, feeder.n_bus
    kinds = sorted(fleets)
    home_of = {k: pop.home[k] for k in kinds}
    bus_of = {k: setup.home_bus[pop.home[k]] for k in kinds}
    sizes = [fleets[k].n for k in kinds]
    device_home = np.concatenate([home_of[k] for k in kinds]).astype(np.int64)
    vpp = np.concatenate([np.full(n, k in AGGREGATED) for k, n in zip(kinds, sizes, strict=True)])
    H = horizon(sc)
    tou = tou_price(sc.tariff, Intervals(iv.start, iv.duration, iv.n + H).starts)
    starts = iv.starts
    limits = Limits()
    v_bus = np.ones(n_bus)
    home_kwh = np.zeros((iv.n, n_homes))  # metered energy per home (batteries excluded)
    home_usd = np.zeros(n_homes)  # energy cost per home at the prices it is settled at
    agg_usd = 0.0  # what the aggregator pays (− earns) for its batteries' energy
    realised_kw = np.zeros(iv.n)  # the area's net load as the devices ran, kW
    charge = 0.0 if paradigm in ("baseline", "tou") else sc.network_charge
    price_seen = np.zeros(iv.n)
    dlmp_rows: list[pd.DataFrame] = []
    wholesale = np.zeros(iv.n)
    area_kw = np.zeros(iv.n)
    p_acc, q_acc = np.zeros(n_bus), np.zeros(n_bus)
    pf_time: list[pd.Timestamp] = []
    totals = {"pv_curtailed_kwh": 0.0, "ev_unmet_kwh": 0.0, "comfort_violation_kh": 0.0}
    grid_rows, viol = [], []

    for t in range(iv.n):
        if paradigm == "baseline":
            fc = np.full(H, sc.tariff.flat)
        elif paradigm == "tou":
            fc = tou[t : t + H]
        else:
            fc = setup.forecast[t : t + H]
        w = setup.weather.sample(t)
        ctxs = {
            k: der_base.make_context(
                starts[t],
                dt,
                fc,
                floor=sc.floor,
                cap=sc.cap,
                weather=w,
                voltage_pu=v_bus[bus_of[k]],
            )
            for k in kinds
        }
        curves = {k: fleets[k].bid(ctxs[k]) for k in kinds}
        out = _clear(setup, paradigm, t, concat([curves[k] for k in kinds]), device_home, vpp, tou)
        awards = _split(out.awards, kinds, sizes)
        device_price = _split(out.device_price, kinds, sizes)
        price_seen[t], wholesale[t], area_kw[t] = out.price, out.wholesale, out.area_kw
        if out.dlmp is not None:
            dlmp_rows.append(out.dlmp.assign(time=starts[t]))

        p_bus, q_bus = np.zeros(n_bus), np.zeros(n_bus)
        for k in kinds:
            power = fleets[k].respond(ctxs[k], curves[k], award=awards[k])
            fleets[k], rep = fleets[k].step(power, ctxs[k], cleared_price=device_price[k])
            kw = rep.power_kw
            np.add.at(p_bus, bus_of[k], kw)
            q = rep.extra.get("q_kvar", kw * HOUSEHOLD_TAN_PHI if k == "household" else None)
            if q is not None:
                np.add.at(q_bus, bus_of[k], np.asarray(q))
            cost = rep.energy_kwh * device_price[k]
            if k in AGGREGATED:  # the aggregator pays like a home, network charge included
                agg_usd += float(cost.sum() + charge * np.clip(rep.energy_kwh, 0.0, None).sum())
            else:
                np.add.at(home_kwh[t], home_of[k], rep.energy_kwh)
                np.add.at(home_usd, home_of[k], cost)
            totals["pv_curtailed_kwh"] += (
                float(rep.extra.get("curtailed_kwh", np.zeros(1)).sum()) if k == "pv" else 0.0
            )
            totals["ev_unmet_kwh"] += (
                float(rep.extra.get("unmet_kwh", np.zeros(1)).sum()) if k == "ev" else 0.0
            )
            totals["comfort_violation_kh"] += float(
                rep.extra.get("discomfort_kh", np.zeros(1)).sum()
            )
        p_acc += p_bus
        q_acc += q_bus
        realised_kw[t] = p_bus.sum()
        if (t + 1) % sc.powerflow_every == 0:
            k_pf = sc.powerflow_every
            inj = Injections(
                (p_acc / k_pf)[None, :],
                (q_acc / k_pf)[None, :],
                pd.DatetimeIndex([starts[t + 1 - k_pf]]),
            )
            pf = run_powerflow(feeder, inj)
            v_bus = np.nan_to_num(pf.vm_pu[0], nan=1.0)
            pf_time.append(starts[t + 1 - k_pf])
            s = pf.summary().iloc[0]
            grid_rows.append(_grid_row(feeder, pf, s))
            viol.append(check_limits(feeder, pf, limits))
            p_acc, q_acc = np.zeros(n_bus), np.zeros(n_bus)
        if progress is not None:
            progress(paradigm, t + 1, iv.n)

    bills = _bills(setup, paradigm, home_kwh, home_usd, charge)
    market = pd.DataFrame(
        {
            "paradigm": paradigm,
            "time": starts,
            "price": price_seen,
            "wholesale_price": wholesale,
            "area_kw": area_kw,
        }
    )
    grid = pd.DataFrame(grid_rows)
    grid.insert(0, "time", pf_time)
    grid.insert(0, "paradigm", paradigm)
    viol = [x for x in viol if len(x)]
    v = (
        pd.concat(viol, ignore_index=True)
        if viol
        else pd.DataFrame(columns=["time", "element", "kind", "magnitude"])
    )
    v.insert(0, "paradigm", paradigm)
    # Money: homes + aggregator pay the DSO/retailer; it buys the substation import (with
    # losses) at the wholesale price.
    # Energy is bought per market interval at that interval's wholesale price; what the
    # power flow adds on top (losses) is bought at the power-flow step's mean price.
    pf_dt = dt * sc.powerflow_every
    by_step = (-1, sc.powerflow_every)
    extra_kw = grid["substation_kw"].to_numpy() - realised_kw.reshape(by_step).mean(axis=1)
    purchases = float(
        (wholesale * realised_kw).sum() * dt
        + (wholesale.reshape(by_step).mean(axis=1) * extra_kw).sum() * pf_dt
    )
    totals.update(
        wholesale_purchases_usd=purchases,
        aggregator_revenue_usd=0.0 - agg_usd + 0.0,
        dso_revenue_usd=float(bills["bill_usd"].sum()) + agg_usd - purchases,
        participant_cost_usd=float(bills["bill_usd"].sum()) + agg_usd,
    )
    dlmp = pd.concat(dlmp_rows, ignore_index=True) if dlmp_rows else _empty_dlmp()
    dlmp.insert(0, "paradigm", paradigm)
    return ParadigmRun(market, grid, bills, v, dlmp, totals)


def _clear(
    setup: Setup,
    paradigm: str,
    t: int,
    curves: Curves,
    device_home: np.ndarray,
    aggregated: np.ndarray,
    tou: np.ndarray,
) -> paradigms.AreaClearing:
    """One interval's market for the area (``paradigms`` holds the rules).

    Nodes: one per home (service limit) plus the battery aggregator — one node, or under
    network clearing one per bus where it has batteries, so every curve has a bus.
    """
    sc = setup.scenario
    source = _one(setup.source, t)
    if paradigm in ("baseline", "tou"):
        price = sc.tariff.flat if paradigm == "baseline" else float(tou[t])
        return paradigms.tariff(curves, price, source, sc.floor, sc.cap)
    if paradigm == "grand-central":
        return paradigms.grand_central(curves, source, sc.floor, sc.cap)
    n_homes = setup.population.n_homes
    device_bus = setup.home_bus[device_home]
    network = paradigm == "layered-network" or sc.dso_clearing == "network"
    if network:
        agg_bus = np.unique(device_bus[aggregated])
        agg_node = n_homes + np.searchsorted(agg_bus, device_bus[aggregated])
    else:
        agg_bus = np.zeros(1, dtype=np.int64)
        agg_node = np.full(int(aggregated.sum()), n_homes)
    node = device_home.copy()
    node[aggregated] = agg_node
    limit = np.r_[np.full(n_homes, sc.service_limit_kw), np.full(agg_bus.size, np.inf)]
    sub = substation_limit_kw(setup)
    if not network:
        return paradigms.layered(curves, node, limit, sub, source, sc.floor, sc.cap)
    return paradigms.layered_network(
        curves,
        node,
        limit,
        np.r_[setup.home_bus, agg_bus],
        setup.feeder,
        sub,
        source,
        sc.floor,
        sc.cap,
        sc.intervals.hours,
    )


def horizon(scenario: Scenario) -> int:
    """Market intervals in the devices' forecast horizon (a day)."""
    return max(1, round(HORIZON_H / scenario.intervals.hours))


def substation_limit_kw(setup: Setup) -> float:
    """The DSO's limit on the area's net import/export, kW: the scenario's, else the
    substation transformers' rating (kVA, taken as kW at unity power factor), else none."""
    if setup.scenario.substation_limit_kw is not None:
        return setup.scenario.substation_limit_kw
    rating = setup.feeder.substation_rating_kva
    return float(rating) if np.isfinite(rating) else np.inf


def _one(source: PriceSeries | MeritOrder, t: int) -> PriceSeries | MeritOrder:
    if isinstance(source, PriceSeries):
        return PriceSeries(source.price[t : t + 1])
    return replace(source, other_load_kw=source.other_load_kw[t : t + 1])


def _split(values: np.ndarray, kinds: list[str], sizes: list[int]) -> dict[str, np.ndarray]:
    edges = np.cumsum([0, *sizes])
    return {k: values[edges[i] : edges[i + 1]] for i, k in enumerate(kinds)}


def _empty_dlmp() -> pd.DataFrame:
    cols = ("time", "bus", "dlmp", "energy", "loss", "congestion", "voltage")
    return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})


def _grid_row(feeder: Feeder, pf: Any, s: pd.Series) -> dict[str, float]:
    trafo = feeder.substation_transformers
    loading = pf.loading_percent[0]
    kinds = feeder.branches["kind"].to_numpy()
    lines = loading[kinds == "line"]
    return {
        "substation_kw": float(s["substation_p_kw"]),
        "losses_kw": float(s["losses_kw"]),
        "v_min_pu": float(s["vm_min_pu"]),
        "v_max_pu": float(s["vm_max_pu"]),
        "max_line_loading_pct": float(np.nanmax(lines)) if lines.size else np.nan,
        "trafo_loading_pct": float(np.nanmax(loading[trafo])) if len(trafo) else np.nan,
    }


def _bills(
    setup: Setup, paradigm: str, home_kwh: np.ndarray, home_usd: np.ndarray, charge: float
) -> pd.DataFrame:
    """Bill per home: its energy at the prices it was settled at, plus the network charge
    ($/kWh) on every interval's import."""
    imports = np.clip(home_kwh, 0.0, None)
    bill = home_usd + charge * imports.sum(axis=0)
    return pd.DataFrame(
        {
            "paradigm": paradigm,
            "home": np.arange(home_kwh.shape[1]),
            "group": setup.groups,
            "import_kwh": imports.sum(axis=0),
            "export_kwh": -np.clip(home_kwh, None, 0.0).sum(axis=0),
            "bill_usd": bill,
        }
    )


def _ownership(pop: Population) -> np.ndarray:
    owned = np.zeros((pop.n_homes, 0), dtype=bool)
    names = []
    for k in ("pv", "battery", "ev"):
        if k in pop.home:
            col = np.zeros(pop.n_homes, dtype=bool)
            col[pop.home[k]] = True
            owned = np.column_stack([owned, col])
            names.append(k)
    labels = ["+".join(n for n, o in zip(names, row, strict=True) if o) or "none" for row in owned]
    return np.array(labels, dtype=object)


def _area_base_load(feeder: Feeder, loads: pd.DataFrame, iv: Any) -> np.ndarray:
    """The area's base (household) load per interval, kW: the feeder's own load profiles at
    the same time of year, or its nameplate loads when it has no profiles."""
    prof = feeder.profiles
    if prof is None:
        return np.full(iv.n, float(loads["p_kw"].sum()))
    total = prof.load_p_kw[:, feeder.loads.index.get_indexer(loads.index)].sum(axis=1)
    profile_year = prof.time[len(prof.time) // 2].year
    same_time = iv.starts + pd.DateOffset(years=profile_year - iv.starts[0].year)
    k = np.clip(prof.time.searchsorted(same_time), 0, len(prof.time) - 1)
    return np.asarray(total[k], dtype=float)
