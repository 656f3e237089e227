"""Grand central (Minimal DSO): every device bids straight into the wholesale market.

Nothing in between aggregates or clips: the TSO sees every DER (DESIGN.md §3). A day ahead
the TSO schedules every device at the day-ahead price from the forecasts; in real time the
devices bid again with what actually happens and are dispatched at the real-time price. Only
then does the DSO see the schedule: it checks its branches and **intervenes** where the
schedule would overload them, curtailing controllable devices pro rata without seeing their
bids (:mod:`transactive.grid.intervention`). The intervention is the tier-bypass conflict of
the layered-architecture literature: a wholesale schedule the distribution grid cannot carry,
unwound in real time; the energy it reverses is settled as a real-time deviation. Every node
is settled at the wholesale price of the stage.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from transactive.core.curves import Curves, FloatArray, quantity_at, select
from transactive.designs.base import Clearing, Design, Setting, Stage
from transactive.grid.intervention import Curtailer, curtailer
from transactive.nodes.tree import Kind, TreeBuilder, make_plan, offer_up, pass_down, roll_up
from transactive.nodes.wholesale import clear_wholesale


class GrandCentral(Design):
    """Minimal DSO: devices → wholesale market directly, day-ahead and real-time; the DSO
    curtails in real time where the schedule overloads its network."""

    name = "grand-central"
    summary = "Minimal DSO: devices bid straight into the wholesale market, the DSO intervenes"
    stages = ("day-ahead", "real-time")

    def __init__(self, setting: Setting) -> None:
        super().__init__(setting)
        tree = setting.plan.tree
        flat = TreeBuilder()
        flat.add(str(tree.id[0]), Kind(tree.kind[0]), None, str(tree.owner[0]))
        self._flat = make_plan(flat.build(), np.zeros(setting.plan.n_devices, dtype=np.int64))
        sc = setting.scenario
        margin = sc.dso.intervention_margin_percent / 100.0
        self._curtailers: list[Curtailer] = [
            curtailer(f, sc.limits, margin) for f in setting.feeders
        ]
        self._in_area = [
            np.flatnonzero(setting.device_area == a) for a in range(len(setting.feeders))
        ]

    def forecast(self, t: int) -> FloatArray:
        return self.setting.forecast[t : t + self.setting.horizon]

    def clear(
        self, t: int, stage: Stage, bids: Curves, uncontrolled: Callable[[], FloatArray]
    ) -> Clearing:
        offered = offer_up(self._flat, bids)
        lam, q = clear_wholesale(
            select(offered.curves, [0]), self.wholesale_at(t, stage), self.floor, self.cap
        )
        down = pass_down(offered, q, lam, self.floor, self.cap)
        price = float(down.internal_price[0])
        device_kw = down.device_kw
        intervened = None
        if stage == "real-time":
            after = self.intervene(bids, device_kw)
            intervened, device_kw = after - device_kw, after
        return Clearing(
            stage=stage,
            device_kw=device_kw,
            device_price=np.full(bids.n, price),
            node_kw=roll_up(self.setting.plan, device_kw),
            node_price=self._full(price),
            status="cleared",
            wholesale_price=float(lam[0]),
            offer=offered,
            direct_bids=True,
            intervened_kw=intervened,
        )

    def intervene(self, bids: Curves, device_kw: FloatArray) -> FloatArray:
        """The DSO's curtailment of the market schedule, area by area (kW per device)."""
        lo, hi = quantity_at(bids, self.cap), quantity_at(bids, self.floor)
        out = device_kw.copy()
        bus = self.setting.device_bus
        for cut, idx in zip(self._curtailers, self._in_area, strict=True):
            out[idx] = cut.curtail(bus[idx], device_kw[idx], lo[idx], hi[idx])
        return out
