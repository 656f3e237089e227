"""Fixed household load from SimBench profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd

from transactive.core.curves import quantity_at
from transactive.der import Household, household, make_context, make_fleet


def test_annual_energy_matches_the_scale() -> None:
    p = Household().make_params(annual_kwh=[2000.0, 4000.0, 6000.0], profile=[0, 1, 5])
    start = pd.Timestamp("2023-01-01T00:00Z").value / 3.6e12
    hours = np.arange(0, 8760, 1.0)
    e = sum(household.load_kw(p, start + h, 1.0) for h in hours)
    np.testing.assert_allclose(e, [2000.0, 4000.0, 6000.0], rtol=1e-9)


def test_reads_the_simbench_profile_on_local_time() -> None:
    prof = household.profiles()
    p = Household().make_params(annual_kwh=[3000.0], profile=[0], tz_offset_h=-5.0)
    # 2025-03-10 17:15 local (UTC−5) = 22:15 UTC: slot (31+28+9)·96 + 17·4 + 1.
    t = pd.Timestamp("2025-03-10T22:15Z").value / 3.6e12
    q = household.load_kw(p, t, 0.25)
    slot = (31 + 28 + 9) * 96 + 17 * 4 + 1
    np.testing.assert_allclose(q, prof[slot, 0] * p.scale_kw, rtol=1e-12)
    # An hour-long interval is the mean of its four slots.
    q1 = household.load_kw(p, t, 1.0)
    np.testing.assert_allclose(q1, prof[slot : slot + 4, 0].mean() * p.scale_kw, rtol=1e-12)


def test_price_taking_bid_is_the_load_up_to_the_cap() -> None:
    f = make_fleet("household", 20, seed=1)
    ctx = make_context("2024-07-01T23:00Z", 0.25, [0.1], floor=0.0, cap=2.0)
    c = f.bid(ctx)
    q_low, q_cap = quantity_at(c, -5.0), quantity_at(c, 2.0, "left")
    np.testing.assert_array_equal(q_low, q_cap)  # the same load at every price up to the cap
    assert np.all(q_low > 0)
    np.testing.assert_array_equal(quantity_at(c, 2.0, "right"), 0.0)  # price-taker at the cap
    assert len(f.bid_horizon(ctx)) == 1
