"""The time-stepped simulation: for every market design of the scenario and every market
interval, devices bid → the design clears (over the node tree) → devices run → meters read →
AC power flow per area → limits checked. Records of every step are kept with identity
(:mod:`transactive.core.records`); money comes from them, in :mod:`transactive.settlement`.

The runner knows no design and no device kind by name: designs come from the registry
(:mod:`transactive.designs`), devices from the world's fleets (:mod:`transactive.sim.world`).

Simplifications (documented, not hidden): homes sit on the load points of their area's
feeder and replace the feeder's own loads and generators; smart inverters see the voltage of
the previous power-flow step; meters are ideal (every reading ``measured``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from transactive.core.curves import Curves, FloatArray, concat
from transactive.core.records import (
    AWARDS,
    BIDS,
    COMMITMENTS,
    DISPATCH,
    FLEX_ASKS,
    FLEX_OFFERS,
    METER,
    Schema,
)
from transactive.der.base import Context, EnergyReport, make_context
from transactive.der.fleet import Fleet
from transactive.der.weather import Weather
from transactive.designs.base import Clearing, Design, Setting, Stage
from transactive.designs.flexibility import Flexible
from transactive.designs.registry import design_class
from transactive.errors import InvalidInputError
from transactive.grid.limits import check_limits
from transactive.grid.model import Feeder, Injections
from transactive.grid.powerflow import PowerFlow
from transactive.grid.results import PowerFlowResult
from transactive.nodes.tables import tree_table
from transactive.nodes.tree import Kind
from transactive.nodes.wholesale import PriceSeries
from transactive.settlement import Levy, day_ahead_price, settle, value_table
from transactive.settlement.meter_data import MarketGrid, registry_table
from transactive.sim.capacity_stage import capacity_table
from transactive.sim.flexibility import (
    FlexDay,
    empty_orders,
    flex_step,
    forecast_stage,
    settle_flex,
)
from transactive.sim.forecast import day_ahead_weather, forecast_fleet, real_time_prices
from transactive.sim.kpis import compute_kpis
from transactive.sim.metering import read_meters
from transactive.sim.regions import provenance
from transactive.sim.results import (
    SimResults,
    bills_table,
    evaluated,
    participants_table,
    with_payees,
)
from transactive.sim.scenario import Scenario
from transactive.sim.world import World, build_world

Progress = Callable[[str, int, int], None]

#: Per-device quantities summed from the devices' reports into the dispatch records (kWh or
#: degree-hours; 0 for device types that do not report them).
SHORTFALLS = ("curtailed_kwh", "unmet_kwh", "discomfort_kh", "comfort_dev_kh", "stored_kwh")


def run(
    scenario: Scenario,
    designs: tuple[str, ...] | None = None,
    progress: Progress | None = None,
) -> SimResults:
    """Run every design of ``scenario`` (or the given subset) on the same world."""
    chosen = designs or scenario.designs
    wanted = scenario.flexibility.variants() if scenario.flexibility is not None else ()
    for name in chosen:
        if "+flex" in name and name not in wanted:
            raise InvalidInputError(
                f"design {name!r} needs its inner design in the scenario's [flexibility] designs"
                + ("" if name.endswith("+flex") else " and a [flexibility.strategic] table")
            )
    world = build_world(scenario)
    setting = make_setting(world)
    built = [design_class(name)(setting) for name in chosen]
    runs = [run_design(world, d, progress) for d in built]
    tables = {k: _concat([getattr(r, k) for r in runs]) for k in DesignRun.SUMMARIES}
    for schema in (BIDS, AWARDS, DISPATCH, METER):
        tables[schema.name] = schema.concat([getattr(r, schema.name) for r in runs])
    kpi_start = pd.Timestamp(scenario.start)
    tree = world.plan.tree
    grid = MarketGrid(
        pd.Timestamp(scenario.run_start), scenario.market_interval_min, scenario.intervals.n
    )
    metered = read_meters(tables["meter"], tree, grid, scenario.seed, scenario.timezone)
    meter = evaluated(metered.meter, kpi_start)
    awards = evaluated(tables["awards"], kpi_start)
    sc = scenario.settlement
    settlement = settle(
        meter,
        awards,
        tree,
        currency=scenario.market.currency,
        baseline=scenario.baseline,
        rate=sc.network_rate,
        levies=[Levy(lv.name, lv.per_kwh, lv.payee, lv.on) for lv in sc.levies],
        vat_percent=sc.vat_percent,
        vat_payee=sc.vat_payee,
        period=sc.period,
        trades=evaluated(tables["trades"], kpi_start) if len(tables["trades"]) else None,
    )
    flex = [f for r in runs for f in r.flex]
    commitments = COMMITMENTS.concat([f.commitments for f in flex])
    if len(commitments) and scenario.flexibility is not None:
        settlement = settle_flex(
            settlement, commitments, meter, tree, flexibility=scenario.flexibility,
            timezone=scenario.timezone, currency=scenario.market.currency,
            evaluated_start=kpi_start, payees=_payees(scenario), period=sc.period,
        )  # fmt: skip
    participants = with_payees(participants_table(world), settlement)
    value = value_table(
        settlement,
        participants,
        dict(zip(world.home_id.astype(str), world.home_group, strict=True)),
        tables["dispatch"],
        baseline=scenario.baseline if scenario.baseline in chosen else None,
        storage_price=day_ahead_price(awards, str(tree.id[0])),
    )
    res = SimResults(
        scenario=scenario.name,
        areas=tuple(f"{a.name}={a.feeder}" for a in scenario.areas),
        designs=tuple(chosen),
        settlement=settlement,
        participants=participants,
        value=value,
        bills=bills_table(settlement, meter, world),
        kpis=pd.DataFrame(),
        v_min_pu=scenario.limits.v_min_pu,
        v_max_pu=scenario.limits.v_max_pu,
        currency=scenario.market.currency,
        bids=tables["bids"],
        awards=tables["awards"],
        dispatch=tables["dispatch"],
        meter=metered.meter,
        readings=metered.readings,
        meters=registry_table(metered.registry),
        nodes=tree_table(tree),
        weather=pd.DataFrame(
            {
                "time": world.weather.intervals.starts,
                "temp_air_c": world.weather.temp_air,
                "ghi_w_m2": world.weather.ghi,
            }
        ),
        market=tables["market"],
        grid=tables["grid"],
        violations=tables["violations"],
        dlmp=tables["dlmp"],
        trades=tables["trades"],
        flex_asks=FLEX_ASKS.concat([f.asks for f in flex]),
        flex_offers=FLEX_OFFERS.concat([f.offers for f in flex]),
        commitments=commitments,
        flex_orders=_orders([f.orders for f in flex]),
        kpi_start=kpi_start,
        timezone=scenario.timezone,
        seed=scenario.seed,
        provenance=provenance(scenario),
        parameters=scenario_parameters(scenario),
        run=run_info(scenario),
        capacity=capacity_table(world, tables["grid"]),
    )
    return replace(res, kpis=compute_kpis(res, scenario.intervals.hours * scenario.powerflow_every))


def _orders(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The flexibility orders of every day (empty days left out)."""
    filled = [p for p in parts if len(p)]
    return pd.concat(filled, ignore_index=True) if filled else empty_orders()


def _payees(scenario: Scenario) -> set[str]:
    """Payees of the run's levies and VAT outside the tree."""
    sc = scenario.settlement
    return {lv.payee for lv in sc.levies} | ({sc.vat_payee} if sc.vat_percent else set())


def run_info(scenario: Scenario) -> dict[str, object]:
    """What settling the run's records again needs (written as ``run.json``)."""
    return {
        "scenario": scenario.name,
        "currency": scenario.market.currency,
        "baseline_design": scenario.baseline,
        "timezone": scenario.timezone,
        "seed": scenario.seed,
        "areas": [a.name for a in scenario.areas],
        "evaluated_start": pd.Timestamp(scenario.start).isoformat(),
        "market": {
            "start": pd.Timestamp(scenario.run_start).isoformat(),
            "interval_min": scenario.market_interval_min,
            "n_intervals": scenario.intervals.n,
        },
        "settlement": scenario.settlement.model_dump(mode="json"),
        "flexibility": scenario.flexibility.model_dump(mode="json")
        if scenario.flexibility is not None
        else None,
    }


def make_setting(world: World) -> Setting:
    """What every design of the run shares: the world plus the wholesale source of each
    stage (a price series gets its real-time prices from :mod:`transactive.sim.forecast`)."""
    sc = world.scenario
    day_ahead = world.wholesale
    real_time = (
        PriceSeries(real_time_prices(day_ahead.price, sc.intervals.starts, sc.forecast, sc.seed))
        if isinstance(day_ahead, PriceSeries)
        else day_ahead
    )
    return Setting(
        plan=world.plan,
        feeders=world.feeders,
        day_ahead=day_ahead,
        real_time=real_time,
        forecast=world.forecast,
        tou=world.tou,
        horizon=world.horizon,
        device_area=world.devices.area,
        device_bus=world.devices.bus,
        scenario=sc,
    )


def scenario_parameters(scenario: Scenario) -> dict[str, object]:
    """The scenario as flat ``dotted.key → value`` (for the report)."""
    out: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        else:
            out[prefix] = list(value) if isinstance(value, tuple) else value

    walk("", scenario.model_dump(mode="json"))
    return out


@dataclass(frozen=True)
class DesignRun:
    """One design's tables (see :class:`~transactive.sim.results.SimResults`)."""

    SUMMARIES = ("market", "grid", "violations", "dlmp", "trades")

    design: str
    bids: pd.DataFrame
    awards: pd.DataFrame
    dispatch: pd.DataFrame
    meter: pd.DataFrame
    market: pd.DataFrame
    grid: pd.DataFrame
    violations: pd.DataFrame
    dlmp: pd.DataFrame
    trades: pd.DataFrame = field(default_factory=pd.DataFrame)
    flex: tuple[FlexDay, ...] = ()


@dataclass(frozen=True)
class Coded:
    """A column of labels as integer codes into ``labels`` (e.g. node positions into the tree's
    ids): records of millions of rows are built without a Python string per row."""

    codes: np.ndarray
    labels: np.ndarray


class _Columns:
    """Column arrays of one record table, appended per interval, built into a frame once.
    Labels (strings, :class:`Coded`) are kept as codes of one category list per column."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}
        self.labels: dict[str, dict[str, int]] = {}
        self._maps: dict[tuple[str, int], np.ndarray] = {}

    def _codes(self, column: str, labels: np.ndarray) -> np.ndarray:
        key = (column, id(labels))
        if key not in self._maps:
            index = self.labels.setdefault(column, {})
            self._maps[key] = np.array(
                [index.setdefault(str(x), len(index)) for x in labels], dtype=np.int32
            )
        return self._maps[key]

    def add(self, **cols: np.ndarray | float | str | np.datetime64 | Coded) -> None:
        sizes = [np.size(v.codes if isinstance(v, Coded) else v) for v in cols.values()]
        n = max(sizes, default=1)
        for k, v in cols.items():
            if isinstance(v, Coded):
                arr = self._codes(k, v.labels)[v.codes]
            elif isinstance(v, str):
                index = self.labels.setdefault(k, {})
                arr = np.full(n, index.setdefault(v, len(index)), dtype=np.int32)
            else:
                arr = np.asarray(v)
                arr = np.broadcast_to(arr, (n,)) if arr.ndim == 0 else arr
            self.parts.setdefault(k, []).append(arr)

    def frame(self, schema: Schema) -> pd.DataFrame:
        if not self.parts:
            return schema.empty()
        data: dict[str, object] = {}
        for k, v in self.parts.items():
            codes = np.concatenate(v)
            if k in self.labels:
                data[k] = pd.Categorical.from_codes(
                    codes, categories=pd.Index(list(self.labels[k]))
                )
            else:
                data[k] = codes
        return schema.frame(data)


def run_design(world: World, design: Design, progress: Progress | None = None) -> DesignRun:
    """Step one design through every market interval (see the module docstring).

    A two-settlement design first schedules each day ahead (:func:`_day_ahead`, at the first
    interval of each local day), then runs the real-time stage interval by interval; only the
    real-time stage moves the devices and the grid.
    """
    sc, tree, dev = world.scenario, world.plan.tree, world.devices
    iv, dt = sc.intervals, sc.intervals.hours
    starts = iv.starts
    utc_offset_h = sc.utc_offsets_h  # the region clock at every interval start (DST)
    name = design.name
    n_area = len(world.feeders)
    bus_offset = np.cumsum([0] + [f.n_bus for f in world.feeders])
    gbus = bus_offset[dev.area] + dev.bus  # global bus index of every device
    flows = [PowerFlow(f) for f in world.feeders]
    v_bus = [np.ones(f.n_bus) for f in world.feeders]
    meters = np.unique(dev.node)  # every node with devices has a meter
    meter_pos = np.searchsorted(meters, dev.node)
    node_market = np.where(tree.parent >= 0, tree.id[np.maximum(tree.parent, 0)], "wholesale")
    all_nodes = np.arange(tree.n)
    all_dev = np.arange(dev.n)
    meter_id = np.array([f"meter:{x}" for x in tree.id], dtype=object)
    dso = np.flatnonzero(tree.kind == Kind.DSO)
    area_of_dso = tree.area[dso]
    fleets = list(dev.fleets)
    rec = {k: _Columns() for k in ("bids", "awards", "dispatch", "meter")}

    def node_rows(
        cols: _Columns, ident: dict[str, Any], kw: FloatArray, price: FloatArray, status: str
    ) -> None:
        """One award row per node of the tree (either stage)."""
        cols.add(
            **ident,
            market_id=Coded(all_nodes, node_market),
            participant_id=Coded(all_nodes, tree.owner),
            resource_id=Coded(all_nodes, tree.id),
            node_id=Coded(all_nodes, tree.id),
            quantity_kw=kw,
            price=price,
            status=status,
        )

    realised = np.zeros((iv.n, n_area))  # net device power per area and interval, kW
    market_rows: list[dict[str, object]] = []
    grid_rows: list[dict[str, object]] = []
    violations: list[pd.DataFrame] = []
    dlmp: list[pd.DataFrame] = []
    trades: list[pd.DataFrame] = []
    p_acc = np.zeros(bus_offset[-1])
    q_acc = np.zeros(bus_offset[-1])
    k_pf = sc.powerflow_every
    stage: Stage = design.stages[-1]
    flexible = isinstance(design, Flexible)
    day_starts = (
        _day_starts(sc) if design.two_settlement or flexible else np.zeros(0, dtype=np.int64)
    )
    flex_days: list[FlexDay] = []
    flex_open = pd.Timestamp(sc.start)
    flex_tail = round(sc.flexibility.rebound_h / dt) if flexible and sc.flexibility else 0
    da_weather = day_ahead_weather(world.weather, sc.forecast, sc.seed)
    for t in range(iv.n):
        v_all = np.concatenate(v_bus)
        if t in day_starts:
            t1 = int(day_starts[day_starts > t][0]) if (day_starts > t).any() else iv.n
            # The flexibility market opens with the evaluated period: an activation in the
            # warm-up would be unpaid (warm-up money is excluded) while its rebound, bought in
            # the evaluated period, would be charged to the aggregator.
            if flexible and starts[t] >= flex_open:
                assert isinstance(design, Flexible)
                inner, inner_stage = forecast_stage(design)
                t2 = min(t1 + flex_tail, iv.n)  # the forecast runs on for the rebound
                ahead = forecast_day(
                    world, inner, inner_stage, fleets, t, t2, da_weather, v_all[gbus],
                    utc_offset_h, keep_fleets=True,
                )  # fmt: skip
                flex_days.append(flex_step(world, design, ahead, t, t1, t2))
                design.schedule(t, flex_days[-1].delta_kw)
            if design.two_settlement:
                da_kw, da_price = _day_ahead(
                    world, design, fleets, t, t1, da_weather, v_all[gbus], utc_offset_h
                )
                for j in range(t, t1):
                    da = {"design": name, "stage": "day-ahead", "interval_start": starts.values[j],
                          "duration_h": dt}  # fmt: skip
                    node_rows(rec["awards"], da, da_kw[j - t], da_price[j - t], "cleared")
        ctxs = interval_contexts(
            world, t, design.forecast(t), world.weather, v_all[gbus], float(utc_offset_h[t])
        )
        bids = [f.bid(c) for f, c in zip(fleets, ctxs, strict=True)]
        clearing = design.clear(t, stage, concat(bids), partial(_uncontrolled, world, fleets, ctxs))
        fleets, reports = _step(fleets, ctxs, bids, clearing, dev.slices)
        power = np.concatenate([r.power_kw for r in reports]) if reports else np.zeros(0)
        q = np.zeros(dev.n)
        short = {k: np.zeros(dev.n) for k in SHORTFALLS}
        for sl, rep in zip(dev.slices, reports, strict=True):
            if "q_kvar" in rep.extra:
                q[sl] = rep.extra["q_kvar"]
            for k in SHORTFALLS:
                if k in rep.extra:
                    short[k][sl] = rep.extra[k]
        energy = power * dt
        ident = {
            "design": name,
            "stage": clearing.stage,
            "interval_start": starts.values[t],
            "duration_h": dt,
        }
        rec["dispatch"].add(
            **ident,
            market_id=Coded(dev.node, tree.id),
            participant_id=Coded(all_dev, dev.owner),
            resource_id=Coded(all_dev, dev.id),
            node_id=Coded(dev.node, tree.id),
            device_kind=Coded(all_dev, dev.kind),
            setpoint_kw=clearing.device_kw,
            power_kw=power,
            price=clearing.device_price,
            **short,
        )
        node_rows(rec["awards"], ident, clearing.node_kw, clearing.node_price, clearing.status)
        if sc.records.bids:
            _record_bids(rec["bids"], ident, clearing, world, node_market)
        metered = np.bincount(meter_pos, weights=energy, minlength=meters.size)
        rec["meter"].add(
            **ident,
            market_id=Coded(meters, node_market),
            participant_id=Coded(meters, tree.owner),
            resource_id=Coded(meters, meter_id),
            node_id=Coded(meters, tree.id),
            import_kwh=np.clip(metered, 0.0, None),
            export_kwh=np.clip(-metered, 0.0, None),
            quality="measured",
        )
        realised[t] = np.bincount(dev.area, weights=power, minlength=n_area)
        area_kw = clearing.node_kw[dso]
        moved = (
            np.bincount(dev.area, weights=np.abs(clearing.intervened_kw), minlength=n_area)
            if clearing.intervened_kw is not None
            else np.zeros(n_area)
        )
        for a in range(n_area):
            mine = tree.area == a
            homes = mine & np.isfinite(clearing.node_price) & (tree.owner != tree.owner[dso[a]])
            w = np.abs(clearing.node_kw[homes]) + 1e-12
            market_rows.append(
                {
                    "design": name,
                    "area": world.area_names[a],
                    "time": starts[t],
                    "price": float(np.average(clearing.node_price[homes], weights=w))
                    if homes.any()
                    else float(clearing.node_price[dso[a]]),
                    "wholesale_price": clearing.wholesale_price,
                    "area_kw": float(area_kw[area_of_dso == a][0]),
                    "intervention_kwh": float(moved[a] * dt),
                }
            )
        if clearing.dlmp is not None:
            dlmp.append(clearing.dlmp.assign(design=name, time=starts[t]))
        if clearing.trades is not None and len(clearing.trades):
            trades.append(clearing.trades)
        p_acc += np.bincount(gbus, weights=power, minlength=p_acc.size)
        q_acc += np.bincount(gbus, weights=q, minlength=q_acc.size)
        if (t + 1) % k_pf == 0:
            t0 = starts[t + 1 - k_pf]
            for a, feeder in enumerate(world.feeders):
                sl = slice(int(bus_offset[a]), int(bus_offset[a + 1]))
                inj = Injections(
                    (p_acc[sl] / k_pf)[None, :], (q_acc[sl] / k_pf)[None, :], pd.DatetimeIndex([t0])
                )
                pf = flows[a].run(inj)
                v_bus[a] = np.nan_to_num(pf.vm_pu[0], nan=1.0)
                grid_rows.append(
                    {
                        "design": name,
                        "area": world.area_names[a],
                        "time": t0,
                        **_grid_row(feeder, pf),
                    }
                )
                found = check_limits(feeder, pf, sc.limits)
                if len(found):
                    violations.append(found.assign(design=name, area=world.area_names[a]))
            p_acc[:] = 0.0
            q_acc[:] = 0.0
        if progress is not None:
            progress(name, t + 1, iv.n)
    grid = pd.DataFrame(grid_rows)
    meter = METER.concat(
        [
            rec["meter"].frame(METER),
            _substation_meters(world, name, stage, grid, realised, node_market),
        ]
    )
    return DesignRun(
        design=name,
        bids=rec["bids"].frame(BIDS),
        awards=rec["awards"].frame(AWARDS),
        dispatch=rec["dispatch"].frame(DISPATCH),
        meter=meter,
        market=pd.DataFrame(market_rows),
        grid=grid,
        violations=_front(pd.concat(violations, ignore_index=True), ["design", "area"])
        if violations
        else _empty_violations(),
        dlmp=_front(pd.concat(dlmp, ignore_index=True), ["design", "time", "area"])
        if dlmp
        else _empty_dlmp(),
        trades=pd.concat(trades, ignore_index=True) if trades else pd.DataFrame(),
        flex=tuple(flex_days),
    )


def interval_contexts(
    world: World,
    t: int,
    forecast: FloatArray,
    weather: Weather,
    voltage: FloatArray,
    utc_offset_h: float,
) -> list[Context]:
    """The market context of every fleet of ``world.devices`` at interval ``t`` (public: the
    live demo's clients bid with it); ``forecast``: the price forecast from ``t`` on
    (currency/kWh); ``voltage``: per device (pu); ``utc_offset_h``: the region clock's offset
    from UTC at the interval (h)."""
    sc = world.scenario
    sample = weather.sample(t)
    return [
        make_context(
            sc.intervals.starts[t],
            sc.intervals.hours,
            forecast,
            floor=sc.market.floor,
            cap=sc.market.cap,
            weather=sample,
            voltage_pu=voltage[sl],
            utc_offset_h=utc_offset_h,
        )
        for sl in world.devices.slices
    ]


def _step(
    fleets: list[Fleet],
    ctxs: list[Context],
    bids: list[Curves],
    clearing: Clearing,
    slices: tuple[slice, ...],
) -> tuple[list[Fleet], list[EnergyReport]]:
    """Every fleet runs at its award over the interval: the new fleets and their reports."""
    out, reports = [], []
    for fleet, ctx, bid, sl in zip(fleets, ctxs, bids, slices, strict=True):
        run_kw = fleet.respond(ctx, bid, award=clearing.device_kw[sl])
        new, rep = fleet.step(run_kw, ctx, cleared_price=clearing.device_price[sl])
        out.append(new)
        reports.append(rep)
    return out, reports


@dataclass(frozen=True)
class ForecastDay:
    """A day as the day-ahead forecast sees it (:func:`forecast_day`): per interval, every
    node's position (kW) and price (currency/kWh), shape ``(T, nodes)``, every device's
    power (kW, + consume) and reactive power (kvar), ``(T, devices)``, and — when kept — the
    forecast fleets at every interval start and at the end (``T + 1`` lists)."""

    node_kw: FloatArray
    node_price: FloatArray
    device_kw: FloatArray
    device_q: FloatArray
    fleets: tuple[tuple[Fleet, ...], ...] = ()


def forecast_day(
    world: World,
    design: Design,
    stage: Stage,
    fleets: list[Fleet],
    t0: int,
    t1: int,
    weather: Weather,
    voltage: FloatArray,
    utc_offset_h: FloatArray,
    *,
    keep_fleets: bool = False,
) -> ForecastDay:
    """Intervals ``t0 … t1 − 1`` as the day-ahead forecast sees them: a copy of the devices,
    as the forecast sees them (:func:`~transactive.sim.forecast.forecast_fleet`), is stepped
    through the day with the forecast ``weather`` and cleared by ``design``'s ``stage``. The
    devices themselves do not move."""
    sc = world.scenario
    n, n_dev = world.plan.tree.n, world.devices.n
    kw, price = np.full((t1 - t0, n), np.nan), np.full((t1 - t0, n), np.nan)
    dkw, dq = np.zeros((t1 - t0, n_dev)), np.zeros((t1 - t0, n_dev))
    day = int(sc.intervals.starts[t0].value // (86400 * 10**9))
    ahead = [forecast_fleet(f, sc.forecast, sc.seed, day, i) for i, f in enumerate(fleets)]
    kept = [tuple(ahead)] if keep_fleets else []
    for t in range(t0, t1):
        ctxs = interval_contexts(
            world, t, design.forecast(t), weather, voltage, float(utc_offset_h[t])
        )
        bids = [f.bid(c) for f, c in zip(ahead, ctxs, strict=True)]
        clearing = design.clear(t, stage, concat(bids), partial(_uncontrolled, world, ahead, ctxs))
        ahead, reports = _step(ahead, ctxs, bids, clearing, world.devices.slices)
        kw[t - t0], price[t - t0] = clearing.node_kw, clearing.node_price
        for sl, rep in zip(world.devices.slices, reports, strict=True):
            dkw[t - t0, sl] = rep.power_kw
            if "q_kvar" in rep.extra:
                dq[t - t0, sl] = rep.extra["q_kvar"]
        if keep_fleets:
            kept.append(tuple(ahead))
    return ForecastDay(kw, price, dkw, dq, tuple(kept))


def _day_ahead(
    world: World,
    design: Design,
    fleets: list[Fleet],
    t0: int,
    t1: int,
    weather: Weather,
    voltage: FloatArray,
    utc_offset_h: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """The day-ahead stage of intervals ``t0 … t1 − 1`` (:func:`forecast_day` under the
    design's day-ahead stage): every node's position (kW) and day-ahead price per interval,
    shape ``(t1 − t0, nodes)``."""
    day = forecast_day(world, design, "day-ahead", fleets, t0, t1, weather, voltage, utc_offset_h)
    return day.node_kw, day.node_price


def _day_starts(sc: Scenario) -> np.ndarray:
    """Intervals at which a local day begins (the day-ahead market schedules whole days),
    and the first interval of the run."""
    tz = sc.timezone
    local = sc.intervals.starts.tz_convert(tz)
    first = local.normalize() == local
    first[0] = True
    return np.flatnonzero(first)


def _uncontrolled(world: World, fleets: list[Fleet], ctxs: list[Context]) -> FloatArray:
    """Every device's business-as-usual power (kW). Devices that follow the net load behind
    their meter (home batteries self-consuming) see the rest of their node: a first pass
    without it, then every device again with its node's other devices' power. (An
    aggregator's portfolio has no load behind its meter, so its batteries stay idle.)"""
    dev = world.devices
    first = np.zeros(dev.n)
    for f, c, sl in zip(fleets, ctxs, dev.slices, strict=True):
        first[sl] = f.uncontrolled(c, np.zeros(f.n))
    node = np.bincount(dev.node, weights=first, minlength=world.plan.tree.n)
    out = np.zeros(dev.n)
    for f, c, sl in zip(fleets, ctxs, dev.slices, strict=True):
        out[sl] = f.uncontrolled(c, node[dev.node[sl]] - first[sl])
    return out


def _record_bids(
    cols: _Columns, ident: dict[str, object], clearing: Clearing, world: World, market: np.ndarray
) -> None:
    """The curves offered up: device curves where devices bid the top market directly,
    else every node's curve (the root's to the wholesale market)."""
    offer = clearing.offer
    if offer is None:
        return
    tree = world.plan.tree
    dev = world.devices
    if clearing.direct_bids:
        curves: Curves = offer.device_curves
        k = curves.curve_index()
        who, res = Coded(k, dev.owner), Coded(k, dev.id)
        node = Coded(dev.node[k], tree.id)  # where the device sits; it bids the root's market
        mkt = Coded(np.zeros(k.size, dtype=np.int64), tree.id)
    else:
        curves = offer.curves
        k = curves.curve_index()
        who, res, node, mkt = (
            Coded(k, tree.owner),
            Coded(k, tree.id),
            Coded(k, tree.id),
            Coded(k, market),
        )
    cols.add(
        **ident,  # type: ignore[arg-type]
        market_id=mkt,
        participant_id=who,
        resource_id=res,
        node_id=node,
        point=np.arange(k.size) - curves.offsets[k],
        price=curves.price,
        quantity_kw=curves.quantity,
    )


def _substation_meters(
    world: World,
    design: str,
    stage: str,
    grid: pd.DataFrame,
    realised: FloatArray,
    market: np.ndarray,
) -> pd.DataFrame:
    """The substation meter of every area per market interval (kWh): the devices' net
    energy plus what the AC power flow adds on top (losses), spread evenly over the market
    intervals of each power-flow step; ``stage``: the stage the meters are read in."""
    sc, tree = world.scenario, world.plan.tree
    iv, dt, k = sc.intervals, sc.intervals.hours, sc.powerflow_every
    dso = np.flatnonzero(tree.kind == Kind.DSO)
    parts = []
    for a, name in enumerate(world.area_names):
        sub = grid.loc[grid["area"] == name, "substation_kw"].to_numpy(dtype=float)
        r = realised[:, a]
        extra = sub - r.reshape(-1, k).mean(axis=1)
        kwh = (r + np.repeat(extra, k)) * dt
        d = dso[tree.area[dso] == a][0]
        parts.append(
            METER.frame(
                {
                    "design": design,
                    "market_id": market[d],
                    "stage": stage,
                    "interval_start": iv.starts.values,
                    "duration_h": dt,
                    "participant_id": tree.owner[d],
                    "resource_id": f"meter:{tree.id[d]}",
                    "node_id": tree.id[d],
                    "import_kwh": np.clip(kwh, 0.0, None),
                    "export_kwh": np.clip(-kwh, 0.0, None),
                    "quality": "measured",
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _grid_row(feeder: Feeder, pf: PowerFlowResult) -> dict[str, float]:
    """The grid summary of one power-flow step, from the result's arrays."""
    st = pf.step_stats()
    loading = pf.loading_percent[0]
    trafo = feeder.substation_transformers
    lines = loading[feeder.branches["kind"].to_numpy() == "line"]
    return {
        "substation_kw": float(pf.substation_p_kw[0]),
        "losses_kw": float(pf.losses_kw[0]),
        "v_min_pu": float(st.vm_min_pu[0]),
        "v_max_pu": float(st.vm_max_pu[0]),
        "max_line_loading_pct": float(np.nanmax(lines)) if lines.size else np.nan,
        "trafo_loading_pct": float(np.nanmax(loading[trafo])) if len(trafo) else np.nan,
    }


def _front(df: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    return df[first + [c for c in df.columns if c not in first]]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    non_empty = [f for f in frames if len(f)]
    return pd.concat(non_empty, ignore_index=True) if non_empty else frames[0]


def _empty_violations() -> pd.DataFrame:
    from transactive.grid.limits import VIOLATION_COLUMNS

    return pd.DataFrame(
        {c: pd.Series(dtype=object) for c in ["design", "area", *VIOLATION_COLUMNS]}
    )


def _empty_dlmp() -> pd.DataFrame:
    cols = ("design", "time", "area", "bus", "dlmp", "energy", "loss", "congestion", "voltage")
    return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
