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
    e = sum(household.load_kw(p, start + h, 1.0, 0.0) for h in hours)
    np.testing.assert_allclose(e, [2000.0, 4000.0, 6000.0], rtol=1e-9)


def test_reads_the_simbench_profile_on_local_time() -> None:
    prof = household.profiles()
    p = Household().make_params(annual_kwh=[3000.0], profile=[0])
    # 2025-03-10 17:15 local (UTC−5) = 22:15 UTC: slot (31+28+9)·96 + 17·4 + 1.
    t = pd.Timestamp("2025-03-10T22:15Z").value / 3.6e12
    q = household.load_kw(p, t, 0.25, -5.0)
    slot = (31 + 28 + 9) * 96 + 17 * 4 + 1
    np.testing.assert_allclose(q, prof[slot, 0] * p.scale_kw, rtol=1e-12)
    # An hour-long interval is the mean of its four slots.
    q1 = household.load_kw(p, t, 1.0, -5.0)
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


def _raw_profile() -> pd.DataFrame:
    import glob
    import os
    from importlib.util import find_spec

    spec = find_spec("simbench")
    assert spec is not None and spec.submodule_search_locations
    root = next(iter(spec.submodule_search_locations))
    path = sorted(glob.glob(os.path.join(root, "networks", "*", "LoadProfile.csv")))[0]
    return pd.read_csv(path, sep=";", usecols=["time", "H0-A_pload"])


def test_simbench_profiles_are_on_the_german_clock_with_daylight_saving() -> None:
    raw = _raw_profile()
    t = raw["time"]
    # The source has no 02:xx on the spring switch day and two on the autumn one.
    assert not t.str.startswith("27.03.2016 02:").any()
    assert t.str.startswith("30.10.2016 02:").sum() == 8
    assert len(raw) == 366 * 96
    prof = household.profiles()[:, 0]
    day = {"27.03": 31 + 29 + 26 - 1, "30.10": 31 + 29 + 31 + 30 + 31 + 30 + 31 + 31 + 30 + 29 - 1}
    # On the regular local clock (29 Feb removed) the autumn 02:xx slots are the mean of the
    # two readings, the spring ones lie on the line from 01:45 to 03:00.
    i = day["30.10"] * 96 + 8
    twice = raw.loc[t.str.startswith("30.10.2016 02:"), "H0-A_pload"].to_numpy()
    np.testing.assert_allclose(prof[i : i + 4], (twice[:4] + twice[4:]) / 2, rtol=1e-12)
    j = day["27.03"] * 96 + 8
    a, b = prof[j - 1], prof[j + 4]
    np.testing.assert_allclose(prof[j : j + 4], a + (b - a) * np.arange(1, 5) / 5, rtol=1e-12)
    # Away from the switch days the source values are read unchanged.
    k = int(np.flatnonzero(t == "01.07.2016 07:00")[0])
    np.testing.assert_allclose(prof[(k // 96 - 1) * 96 + 28], raw["H0-A_pload"].iloc[k])


def test_the_same_local_hour_reads_the_same_profile_slot_across_the_dst_switch() -> None:
    """07:00 in Berlin is 06:00 UTC before the spring switch and 05:00 UTC after it; both
    read the 07:00 slot of their day."""
    prof = household.profiles()
    p = Household().make_params(annual_kwh=[3000.0], profile=[0])
    for utc, offset, doy in (("2018-03-24T06:00Z", 1.0, 82), ("2018-03-26T05:00Z", 2.0, 84)):
        t = pd.Timestamp(utc).value / 3.6e12
        q = household.load_kw(p, t, 0.25, offset)
        np.testing.assert_allclose(q, prof[doy * 96 + 28, 0] * p.scale_kw, rtol=1e-12)
        ctx = make_context(utc, 0.25, [0.1], floor=0.0, cap=1.0, utc_offset_h=offset)
        np.testing.assert_allclose(
            Household().uncontrolled(
                p,
                Household().initial_state(p, Household.Config(), np.random.default_rng(0)),
                ctx,
                None,
            ),
            q,
        )
