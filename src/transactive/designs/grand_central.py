"""Grand central (Minimal DSO): every device bids straight into the wholesale market.

Nothing in between aggregates or clips: the TSO sees every DER (DESIGN.md §3). Every node is
settled at the wholesale price; the DSO only observes the power flow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from transactive.core.curves import Curves, FloatArray, select
from transactive.designs.base import Clearing, Design, Setting
from transactive.nodes.tree import Kind, TreeBuilder, make_plan, offer_up, pass_down, roll_up
from transactive.nodes.wholesale import clear_wholesale


class GrandCentral(Design):
    """Minimal DSO: devices → wholesale market directly, back at the wholesale price."""

    name = "grand-central"
    summary = "devices bid straight into the wholesale market (Minimal DSO)"

    def __init__(self, setting: Setting) -> None:
        super().__init__(setting)
        tree = setting.plan.tree
        flat = TreeBuilder()
        flat.add(str(tree.id[0]), Kind(tree.kind[0]), None, str(tree.owner[0]))
        self._flat = make_plan(flat.build(), np.zeros(setting.plan.n_devices, dtype=np.int64))

    def forecast(self, t: int) -> FloatArray:
        return self.setting.forecast[t : t + self.setting.horizon]

    def clear(self, t: int, bids: Curves, uncontrolled: Callable[[], FloatArray]) -> Clearing:
        offered = offer_up(self._flat, bids)
        lam, q = clear_wholesale(
            select(offered.curves, [0]), self.wholesale_at(t), self.floor, self.cap
        )
        down = pass_down(offered, q, lam, self.floor, self.cap)
        price = float(down.internal_price[0])
        return Clearing(
            stage="real-time",
            device_kw=down.device_kw,
            device_price=np.full(bids.n, price),
            node_kw=roll_up(self.setting.plan, down.device_kw),
            node_price=self._full(price),
            status="cleared",
            wholesale_price=float(lam[0]),
            offer=offered,
            direct_bids=True,
        )
