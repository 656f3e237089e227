"""A flat tariff with a peer-to-peer stage (``bau-p2p``): homes trade their surplus.

Devices run uncontrolled, as in business as usual. Every interval, per DSO area, each home
with a net export (PV surplus: in the uncontrolled mode nothing else exports) posts a sell
order of that energy at a price limit between the feed-in price and the flat tariff (a
seeded position per home), flagged green; each home with a net import posts a buy order at
the tariff (its alternative). A seeded share of homes trades only inside its feeder section
(``local_only``), another share buys only green energy (``green_only``). The orders are
matched per area by :func:`transactive.market.p2p.clear_p2p` with the scenario's flat
network charge. What a home does not trade stays with the retailer: imports at the tariff,
exports at the feed-in price (the node's award price of an exporting home is the feed-in
price). No DSO curtailment here: the homes' power is what it is (uncontrolled), the trades
only decide who is paid for it.

Settlement (:func:`transactive.settlement.settle` with the run's trades): the trades are
settled by :func:`transactive.settlement.p2p.p2p_lines`, and the retail energy line of each
home covers only its metered energy less what it traded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from transactive.core.curves import Curves, FloatArray
from transactive.designs.base import Clearing, Setting, Stage
from transactive.designs.tariff import FlatUncontrolled
from transactive.grid.model import feeder_sections
from transactive.market.p2p import NetworkCharge, clear_p2p, make_orders
from transactive.nodes.tree import Kind

#: Seed offset of the design's draws (preferences, sellers' price positions).
_SEED_OFFSET = 12_012


class P2PTariff(FlatUncontrolled):
    """Flat tariff, uncontrolled devices, and a P2P call market among the homes per area."""

    name = "bau-p2p"
    summary = "flat tariff, uncontrolled devices, peer-to-peer trading of home surplus"

    def __init__(self, setting: Setting) -> None:
        super().__init__(setting)
        tree = setting.plan.tree
        sc = setting.scenario
        self.homes = np.flatnonzero(tree.kind == Kind.HOME)
        h = self.homes
        rng = np.random.default_rng(sc.seed + _SEED_OFFSET)
        self.position = rng.uniform(0.0, 1.0, h.size)  # where in [feed-in, tariff] a home sells
        self.local_only = rng.uniform(0.0, 100.0, h.size) < sc.p2p.local_only_percent
        self.green_only = rng.uniform(0.0, 100.0, h.size) < sc.p2p.green_only_percent
        section = np.full(h.size, -1, dtype=np.int64)
        offset = 0
        for a, feeder in enumerate(setting.feeders):  # sections numbered across the areas
            sec = feeder_sections(feeder)
            mine = tree.area[h] == a
            bus = tree.bus[h[mine]]
            s = np.where(bus >= 0, sec.section_of_bus[np.maximum(bus, 0)], -1)
            section[mine] = np.where(s >= 0, s + offset, -1)
            offset += sec.n
        self.section = section
        dso = np.flatnonzero(tree.kind == Kind.DSO)
        self.dso_of_area = np.empty(len(setting.feeders), dtype=object)
        self.dso_of_area[tree.area[dso]] = tree.owner[dso].astype(str)
        self.charge = NetworkCharge("flat", float(sc.p2p.network_charge))

    def clear(
        self, t: int, stage: Stage, bids: Curves, uncontrolled: Callable[[], FloatArray]
    ) -> Clearing:
        base = super().clear(t, stage, bids, uncontrolled)
        sc, tree = self.setting.scenario, self.setting.plan.tree
        tariff, feed_in = self.tariff(t), float(sc.p2p.feed_in)
        h = self.homes
        kw = base.node_kw[h]
        dt = sc.intervals.hours
        buy = kw > 0
        active = np.abs(kw) * dt > 1e-9
        sell_at = feed_in + self.position * max(tariff - feed_in, 0.0)
        k = h[active]
        o = make_orders(
            tree.id[k].astype(str),
            tree.owner[k].astype(str),
            buy[active],
            np.abs(kw[active]) * dt,
            np.where(buy[active], tariff, sell_at[active]),
            bus=tree.id[k].astype(str),
            section=self.section[active],
            local_only=self.local_only[active],
            green_only=self.green_only[active] & buy[active],
            green=~buy[active],
            interval=tree.area[k],  # one call market per area
            duration_h=dt,
        )
        trades = clear_p2p(o, self.charge).trades
        start = sc.intervals.starts[t]
        area = trades["interval"].to_numpy(dtype=np.int64)
        trades = trades.assign(
            interval=t,
            interval_start=pd.DatetimeIndex([start] * len(trades)),
            design=self.name,
            area=area,
            duration_h=dt,
            buyer_node=trades["buyer_order"],
            seller_node=trades["seller_order"],
            dso=self.dso_of_area[area],
        )
        price = base.node_price.copy()
        exporting = np.zeros(tree.n, dtype=bool)
        exporting[h] = ~buy & active
        price[exporting] = feed_in  # the retailer buys a home's residual export at feed-in
        return replace(base, node_price=price, trades=trades)
