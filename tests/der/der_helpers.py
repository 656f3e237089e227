"""Helpers of the DER tests (imported by the test modules)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from transactive.core.curves import Curves
from transactive.der import Context, EnergyReport, Fleet, Weather, make_context


def price_path(n: int, seed: int = 0) -> np.ndarray:
    """A daily-periodic price ($/kWh) with noise, inside [0.01, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    p = 0.08 + 0.05 * np.sin(2 * np.pi * (t - 40) / 96) + 0.02 * rng.standard_normal(n)
    return np.clip(p, 0.01, 0.5)


#: The price band of the test markets, $/kWh.
FLOOR, CAP = 0.0, 1.0


def ctx_at(w: Weather, i: int, prices: np.ndarray, **kw: object) -> Context:
    """The context of interval ``i``: forecast = the next day of ``prices``; price band
    :data:`FLOOR`…:data:`CAP` unless given; local clock = the weather site's (UTC−5 for the
    Greensboro fixtures)."""
    band = {"floor": FLOOR, "cap": CAP, "utc_offset_h": w.site.tz_offset_h, **kw}
    return make_context(
        w.intervals[i].start, w.intervals.hours, prices[i : i + 96], weather=w.sample(i), **band
    )  # type: ignore[arg-type]


Award = Callable[[Fleet, Context, Curves, int], np.ndarray]


def run(
    fleet: Fleet, w: Weather, prices: np.ndarray, award: Award | None = None, n: int | None = None
) -> tuple[Fleet, list[EnergyReport], list[np.ndarray], list[Curves]]:
    """Step ``fleet`` through the intervals of ``w``; by default each device reads its own
    curve at the interval's price. Returns the final fleet, reports, awards and curves."""
    reports, awards, curves_ = [], [], []
    for i in range(n or len(w)):
        ctx = ctx_at(w, i, prices)
        c = fleet.bid(ctx)
        a = fleet.respond(ctx, c, price=prices[i]) if award is None else award(fleet, ctx, c, i)
        fleet, r = fleet.step(a, ctx, cleared_price=prices[i])
        reports.append(r)
        awards.append(a)
        curves_.append(c)
    return fleet, reports, awards, curves_
