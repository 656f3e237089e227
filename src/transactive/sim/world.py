"""Everything a run shares across designs, built once from the scenario and the grids: the
areas and their feeders, the homes and devices placed on them, the node tree, weather and the
wholesale source with its forecast.

The tree (DESIGN.md §1)::

    tso
     └── dso:<area>                      one per DSO area (T-D substation), limit: substation
          ├── feeder:<area>/<section>    one per feeder section of the area's network
          │    ├── home:<area>/<i>        every home, limit: its service connection
          │    └── agg:<aggregator>/<area>/<bus>   the aggregator's devices at one bus
          └── (homes and portfolios on buses outside any section hang off the DSO)

Homes sit on the load points of their area's feeder (``homes_per_load`` each) and replace
the feeder's own loads. The device kinds the scenario gives the aggregator are held by it
(located at their homes' buses, metered separately); every other device sits behind its
home's meter.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from transactive.core.curves import FloatArray, IntArray, block_curves
from transactive.core.time import Intervals
from transactive.der.fleet import Fleet, make_population
from transactive.der.weather import Weather, weather_for
from transactive.errors import InvalidInputError
from transactive.grid import model as grid_model
from transactive.grid.feeders import load_feeder
from transactive.grid.model import Feeder
from transactive.nodes.tree import Kind, Plan, TreeBuilder, make_plan
from transactive.nodes.wholesale import (
    MeritOrder,
    PriceSeries,
    clear_wholesale,
    read_merit_order,
    read_price_series,
)
from transactive.sim.scenario import MAX_TOTAL_HOMES, tou_price

if TYPE_CHECKING:
    from transactive.sim.scenario import Scenario


@dataclass(frozen=True)
class Devices:
    """Every device of the run, in one order (area by area, kind by kind).

    fleets: the fleets in that order, ``slices[i]`` their positions; per device: id, kind,
    owner (participant), node (tree position), area, bus (position in the area's feeder) and
    home (global home index).
    """

    fleets: tuple[Fleet, ...]
    slices: tuple[slice, ...]
    id: np.ndarray
    kind: np.ndarray
    owner: np.ndarray
    node: IntArray
    area: IntArray
    bus: IntArray
    home: IntArray

    @property
    def n(self) -> int:
        """Number of devices."""
        return int(self.node.size)


@dataclass(frozen=True)
class World:
    """A scenario made concrete (see the module docstring)."""

    scenario: Scenario
    feeders: tuple[Feeder, ...]
    area_names: tuple[str, ...]
    home_id: np.ndarray  # participant id of every home (global home order)
    home_area: IntArray  # area of every home
    home_bus: IntArray  # bus of every home in its area's feeder
    home_group: np.ndarray  # device ownership label per home, e.g. "pv+ev"
    devices: Devices
    plan: Plan
    weather: Weather
    wholesale: PriceSeries | MeritOrder
    forecast: FloatArray  # wholesale price forecast per interval and a horizon beyond, $/kWh
    tou: FloatArray  # time-of-use tariff over the same span, $/kWh
    horizon: int  # market intervals the devices see ahead


def horizon_intervals(scenario: Scenario) -> int:
    """Market intervals in the devices' forecast horizon."""
    return max(1, round(scenario.forecast.horizon_h / scenario.intervals.hours))


def build_world(scenario: Scenario) -> World:
    """Load the feeders, place homes, draw the devices, build the tree, read the weather
    and the wholesale data."""
    sc = scenario
    feeders = tuple(load_feeder(a.feeder) for a in sc.areas)
    load_buses = []
    for area, feeder in zip(sc.areas, feeders, strict=True):
        loads = feeder.loads[feeder.loads["kind"] == "load"]
        if loads.empty:
            raise InvalidInputError(f"area {area.name!r}: feeder {area.feeder!r} has no loads")
        load_buses.append(loads["bus"].to_numpy(dtype=np.int64))
    n_homes = sum(b.size for b in load_buses) * sc.homes_per_load
    if n_homes > MAX_TOTAL_HOMES:
        raise InvalidInputError(
            f"homes_per_load: {sc.homes_per_load} homes on each of "
            f"{n_homes // sc.homes_per_load} load points is {n_homes} homes, more than "
            f"{MAX_TOTAL_HOMES}"
        )
    H = horizon_intervals(sc)
    iv = sc.intervals
    ahead = Intervals(iv.start, iv.duration, iv.n + H)
    tree = TreeBuilder()
    tree.add("tso", Kind.TSO, None, "tso")
    fleets: list[Fleet] = []
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("id", "kind", "owner", "node", "area", "bus", "home")
    }
    home_area, home_bus, groups, all_home_ids = [], [], [], []
    base = np.zeros(ahead.n)
    agg_kinds = set(sc.aggregator.devices)
    agg_owner = f"agg:{sc.aggregator.name}"
    home_offset = 0
    for a, (area, feeder, buses) in enumerate(zip(sc.areas, feeders, load_buses, strict=True)):
        dso = f"dso:{area.name}"
        tree.add(
            dso,
            Kind.DSO,
            "tso",
            dso,
            area=a,
            import_limit=_sub_limit(sc, feeder),
            export_limit=_sub_limit(sc, feeder),
        )
        sections = grid_model.feeder_sections(feeder)
        section_node = []
        for s, name in enumerate(sections.name):
            nid = f"feeder:{area.name}/{name}"
            rating = float(sections.rating_kva[s])
            tree.add(
                nid,
                Kind.FEEDER,
                dso,
                dso,
                area=a,
                bus=int(sections.head_bus[s]),
                import_limit=rating,
                export_limit=rating,
            )
            section_node.append(nid)

        parent_of = [dso if s < 0 else section_node[s] for s in sections.section_of_bus]

        hb = np.repeat(buses, sc.homes_per_load)
        home_ids = [f"home:{area.name}/{i}" for i in range(hb.size)]
        home_pos = np.array(
            [
                tree.add(
                    h,
                    Kind.HOME,
                    parent_of[int(b)],
                    h,
                    area=a,
                    bus=int(b),
                    import_limit=sc.homes.service_limit_kw,
                    export_limit=sc.homes.service_limit_kw,
                )
                for h, b in zip(home_ids, hb, strict=True)
            ],
            dtype=np.int64,
        )
        seed = sc.seed if a == 0 else int(np.random.SeedSequence([sc.seed, a]).generate_state(1)[0])
        pop = make_population(hb.size, sc.der.fractions, dict(sc.der.config), seed)
        agg_buses = sorted({int(hb[i]) for k in agg_kinds if k in pop.home for i in pop.home[k]})
        agg_pos = {
            b: tree.add(
                f"{agg_owner}/{area.name}/{feeder.bus_names[b]}",
                Kind.AGGREGATOR,
                parent_of[b],
                agg_owner,
                area=a,
                bus=b,
            )
            for b in agg_buses
        }
        for kind in sorted(pop.fleets):
            fleet, homes = pop.fleets[kind], pop.home[kind]
            held = kind in agg_kinds
            fleets.append(fleet)
            cols["id"].append(np.array([f"{kind}:{area.name}/{i}" for i in homes], dtype=object))
            cols["kind"].append(np.full(homes.size, kind, dtype=object))
            cols["owner"].append(
                np.full(homes.size, agg_owner, dtype=object)
                if held
                else np.array(home_ids, dtype=object)[homes]
            )
            cols["node"].append(
                np.array([agg_pos[int(hb[i])] for i in homes], dtype=np.int64)
                if held
                else home_pos[homes]
            )
            cols["area"].append(np.full(homes.size, a, dtype=np.int64))
            cols["bus"].append(hb[homes])
            cols["home"].append(homes + home_offset)
        all_home_ids.append(np.array(home_ids, dtype=object))
        home_area.append(np.full(hb.size, a, dtype=np.int64))
        home_bus.append(hb)
        groups.append(_ownership(pop.n_homes, pop.home))
        base += _base_load(feeder, ahead) * sc.homes_per_load
        home_offset += hb.size
    arrays = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    sizes = np.cumsum([0] + [f.n for f in fleets])
    devices = Devices(
        fleets=tuple(fleets),
        slices=tuple(slice(int(sizes[i]), int(sizes[i + 1])) for i in range(len(fleets))),
        id=arrays["id"],
        kind=arrays["kind"],
        owner=arrays["owner"],
        node=arrays["node"].astype(np.int64),
        area=arrays["area"].astype(np.int64),
        bus=arrays["bus"].astype(np.int64),
        home=arrays["home"].astype(np.int64),
    )
    wholesale, forecast = _wholesale(sc, ahead, base)
    return World(
        scenario=sc,
        feeders=feeders,
        area_names=tuple(a.name for a in sc.areas),
        home_id=np.concatenate(all_home_ids),
        home_area=np.concatenate(home_area),
        home_bus=np.concatenate(home_bus),
        home_group=np.concatenate(groups),
        devices=devices,
        plan=make_plan(tree.build(), devices.node),
        weather=weather_for(iv, site=sc.weather_site),
        wholesale=wholesale,
        forecast=forecast,
        tou=np.asarray(tou_price(sc.tariff, ahead.starts, sc.timezone), dtype=np.float64),
        horizon=H,
    )


def select_homes(world: World, homes: IntArray) -> World:
    """``world`` with only the devices of ``homes`` (global home indices): the homes' own
    devices and the aggregator's devices located at them; feeders, tree, weather and
    prices are unchanged. Each kept fleet holds its devices' parameters and state (every
    per-device array indexed; a scalar ``n`` field set to the new count; other scalars,
    such as an EV fleet's seed, kept), so a selected fleet draws its own random sessions."""
    dev = world.devices
    want = np.asarray(homes, dtype=np.int64)
    if want.size and (want.min() < 0 or want.max() >= world.home_id.size):
        raise InvalidInputError(
            f"select_homes: home indices must be in 0…{world.home_id.size - 1}, not {want}"
        )
    keep = np.isin(dev.home, want)
    fleets, picks = [], []
    for fleet, sl in zip(dev.fleets, dev.slices, strict=True):
        idx = np.flatnonzero(keep[sl])
        fleets.append(_take_fleet(fleet, idx))
        picks.append(idx + sl.start)
    pos = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    sizes = np.cumsum([0] + [f.n for f in fleets])
    devices = Devices(
        fleets=tuple(fleets),
        slices=tuple(slice(int(sizes[i]), int(sizes[i + 1])) for i in range(len(fleets))),
        id=dev.id[pos],
        kind=dev.kind[pos],
        owner=dev.owner[pos],
        node=dev.node[pos],
        area=dev.area[pos],
        bus=dev.bus[pos],
        home=dev.home[pos],
    )
    return replace(world, devices=devices, plan=make_plan(world.plan.tree, devices.node))


def _take_fleet(fleet: Fleet[Any, Any], idx: IntArray) -> Fleet[Any, Any]:
    """The devices ``idx`` of ``fleet`` (see :func:`select_homes`)."""
    n = fleet.n

    def take(obj: Any) -> Any:
        update: dict[str, Any] = {}
        for f in fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == n:
                update[f.name] = v[idx]
            elif f.name == "n" and isinstance(v, int | np.integer):
                update[f.name] = int(idx.size)
        return replace(obj, **update)

    out = replace(fleet, params=take(fleet.params), state=take(fleet.state))
    if out.n != idx.size:
        raise InvalidInputError(f"select_homes: cannot select devices of the {fleet.kind} fleet")
    return out


def _sub_limit(sc: Scenario, feeder: Feeder) -> float:
    """The DSO's limit on the area's net import/export, kW: the scenario's, else the
    substation transformers' rating (kVA, taken as kW at unity power factor), else none."""
    if sc.dso.substation_limit_kw is not None:
        return sc.dso.substation_limit_kw
    rating = feeder.substation_rating_kva
    return float(rating) if np.isfinite(rating) else np.inf


def _wholesale(
    sc: Scenario, ahead: Intervals, base_kw: FloatArray
) -> tuple[PriceSeries | MeritOrder, FloatArray]:
    """The wholesale source over the run and the price forecast over the run and a horizon
    beyond (the forecast holds the last known price)."""
    n = sc.intervals.n
    if sc.wholesale.source == "prices":
        assert sc.wholesale.prices is not None
        from transactive.sim.regions import SHIPPED_PRICES, shipped_prices

        # A shipped year of prices stands for any year (same week and weekday).
        shipped = {shipped_prices(k) for k in SHIPPED_PRICES}
        series = read_price_series(
            sc.wholesale.prices, ahead, same_week=sc.wholesale.prices in shipped
        )
        return PriceSeries(series.price[:n]), series.price
    other = base_kw * sc.wholesale.system_scale
    ahead_source = read_merit_order(other, scale_kw=float((other + base_kw).max()))
    source = MeritOrder(ahead_source.names, ahead_source.capacity_kw, ahead_source.cost, other[:n])
    # Forecast: the wholesale price with the areas at their base load (price-taking).
    forecast, _ = clear_wholesale(
        block_curves(np.full(ahead.n, sc.market.cap), base_kw),
        ahead_source,
        sc.market.floor,
        sc.market.cap,
    )
    return source, forecast


#: Device kinds that define a home's ownership group, and their label in the group name.
GROUP_LABELS = {"pv": "pv", "battery": "battery", "ev": "ev", "hvac": "hp"}


def _ownership(n_homes: int, home: dict[str, IntArray]) -> np.ndarray:
    """A label per home naming the DER it has, e.g. ``"pv+battery+ev+hp"`` or ``"none"``
    (``hp``: a heat pump, the ``hvac`` device)."""
    names = [(k, label) for k, label in GROUP_LABELS.items() if k in home]
    owned = np.zeros((n_homes, len(names)), dtype=bool)
    for j, (k, _) in enumerate(names):
        owned[home[k], j] = True
    labels = [
        "+".join(label for (_, label), o in zip(names, row, strict=True) if o) or "none"
        for row in owned
    ]
    return np.array(labels, dtype=object)


def _base_load(feeder: Feeder, iv: Intervals) -> FloatArray:
    """The area's base (household) load per interval, kW: the feeder's own load profiles at
    the same time of year, or its nameplate loads when it has no profiles."""
    loads = feeder.loads[feeder.loads["kind"] == "load"]
    prof = feeder.profiles
    if prof is None:
        return np.full(iv.n, float(loads["p_kw"].sum()))
    total = prof.load_p_kw[:, feeder.loads.index.get_indexer(loads.index)].sum(axis=1)
    profile_year = prof.time[len(prof.time) // 2].year
    same_time = iv.starts + pd.DateOffset(years=profile_year - iv.starts[0].year)
    k = np.clip(prof.time.searchsorted(same_time), 0, len(prof.time) - 1)
    return np.asarray(total[k], dtype=float)
