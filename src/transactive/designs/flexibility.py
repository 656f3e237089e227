"""Flexibility variants of a design: ``<design>+flex`` and ``<design>+flex-strategic``.

A variant wraps another design (the *inner* one) and adds the DSO's flexibility market
(issue 12, ask-bid-commit; :mod:`transactive.market.flexibility`). Each local day ahead the
runner's flexibility step (:mod:`transactive.sim.flexibility`) forecasts the day under the
inner design, the DSO asks, the aggregator offers, the DSO commits, and hands the variant the
committed change of every device's power (:meth:`Flexible.schedule`). In every interval of
the real-time (or tariff) stage the variant clears as the inner design does and then adds the
committed change to the committed devices' setpoints, within their feasible range (the
bids' limits); the devices follow it (``fleet.respond(award=...)``). Day-ahead stages and
the forecast copies are cleared by the inner design alone: the commitment is measured
against that baseline.

Names resolve in the registry (:func:`transactive.designs.registry.design_class`), e.g.
``design_class("bau-flat+flex")``; ``+flex-strategic`` marks the variant whose aggregator
plays :func:`transactive.market.strategy.strategic_offers` where it is pivotal.

Simplification: under a merit order the wholesale price of an interval is the inner
design's (cleared before the activation); with a price series nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar

import numpy as np

from transactive.core.curves import Curves, FloatArray, quantity_at
from transactive.designs.base import Clearing, Design, Setting, Stage
from transactive.errors import InvalidInputError
from transactive.nodes.tree import roll_up


class Flexible(Design):
    """An inner design plus the DSO's day-ahead flexibility commitments (module docstring)."""

    inner_class: ClassVar[type[Design]]
    #: Whether the aggregator plays strategically where it is pivotal.
    strategic: ClassVar[bool] = False

    def __init__(self, setting: Setting) -> None:
        super().__init__(setting)
        self.inner = self.inner_class(setting)
        self._delta: dict[int, FloatArray] = {}

    def forecast(self, t: int) -> FloatArray:
        return self.inner.forecast(t)

    def schedule(self, t0: int, delta_kw: FloatArray) -> None:
        """Add a day's committed change of every device's power (kW, + import) for the
        intervals from ``t0`` on, shape ``(intervals, devices)`` (a day's rebound may run
        into the next day: the schedules add up)."""
        d = np.asarray(delta_kw, dtype=float)
        if d.ndim != 2 or d.shape[1] != self.setting.plan.n_devices or not np.isfinite(d).all():
            raise InvalidInputError(
                f"{self.name}: a schedule needs finite (intervals, {self.setting.plan.n_devices})"
                f" kW, not shape {d.shape}"
            )
        for k in np.flatnonzero(np.abs(d).sum(axis=1) > 0):
            t = t0 + int(k)
            self._delta[t] = self._delta[t] + d[k] if t in self._delta else d[k].copy()
        for t in [t for t in self._delta if t < t0]:
            del self._delta[t]  # past intervals

    def activation(self, t: int) -> FloatArray:
        """The committed change of every device's power at interval ``t`` (kW)."""
        got = self._delta.get(t)
        return got if got is not None else np.zeros(self.setting.plan.n_devices)

    def clear(
        self, t: int, stage: Stage, bids: Curves, uncontrolled: Callable[[], FloatArray]
    ) -> Clearing:
        clearing = self.inner.clear(t, stage, bids, uncontrolled)
        delta = self.activation(t)
        if stage == "day-ahead" or not delta.any():
            return clearing
        on = delta != 0
        kw = clearing.device_kw.copy()
        lo, hi = quantity_at(bids, self.cap), quantity_at(bids, self.floor)
        kw[on] = np.clip(kw[on] + delta[on], np.minimum(lo[on], hi[on]), np.maximum(lo[on], hi[on]))
        return replace(clearing, device_kw=kw, node_kw=roll_up(self.setting.plan, kw))


def variant(inner: type[Design], *, strategic: bool = False) -> type[Flexible]:
    """The flexibility variant of ``inner`` (named ``<inner>+flex`` or
    ``<inner>+flex-strategic``)."""
    suffix = "+flex-strategic" if strategic else "+flex"
    who = "a strategic aggregator" if strategic else "a truthful aggregator"
    attrs = {
        "name": f"{inner.name}{suffix}",
        "summary": f"{inner.summary}; plus day-ahead flexibility ask-bid-commit ({who})",
        "stages": inner.stages,
        "inner_class": inner,
        "strategic": strategic,
        "__doc__": f"{inner.__name__} with the DSO's flexibility market ({who}).",
        "__module__": __name__,
    }
    return type(f"{inner.__name__}Flex{'Strategic' if strategic else ''}", (Flexible,), attrs)
