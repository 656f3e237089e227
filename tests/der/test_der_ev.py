"""EV charging: feasible needs met by departure, delivered ≤ need, urgency bidding."""

from __future__ import annotations

import numpy as np
from der_helpers import ctx_at, price_path
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.core.curves import quantity_at
from transactive.der import EV, DeviceConfig, Weather, const, ev, make_fleet, normal


def _simulate(seed: int, w: Weather, prices: np.ndarray, cfg: DeviceConfig | None = None):  # type: ignore[no-untyped-def]
    fleet = make_fleet("ev", 60, cfg, seed=seed)
    sessions = []  # (need, chargeable, unmet)
    charged = np.zeros(fleet.n)
    reports = []
    for i in range(len(w)):
        ctx = ctx_at(w, i, prices, cap=1.0)
        s = ev.roll(fleet.params, fleet.state, ctx.t_h, ctx.utc_offset_h)
        feasible = ev.chargeable_kwh(fleet.params, s, ctx.dt_h)
        c = fleet.bid(ctx)
        a = fleet.respond(ctx, c, price=prices[i])
        fleet, r = fleet.step(a, ctx)
        charged += r.extra["charged_kwh"]
        assert np.all(r.extra["need_kwh"] >= 0)
        dep = r.extra["departed"] > 0
        for j in np.flatnonzero(dep):
            sessions.append((s.session_kwh[j], feasible[j], r.extra["unmet_kwh"][j]))
        reports.append(r)
    return fleet, np.array(sessions), reports


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), level=st.floats(0.0, 1.0))
def test_every_feasible_ev_is_charged_by_departure_at_any_price_up_to_cap(
    summer: Weather, seed: int, level: float
) -> None:
    # Prices anywhere in [floor, cap] — even always at the cap — never strand a feasible EV.
    prices = np.clip(price_path(len(summer) + 96, seed) + level, 0.0, 1.0)
    cfg = EV.config(daily_kwh=normal(25.0, 10.0, 2.0, 60.0), charger_kw=const(3.6))
    _, sessions, _ = _simulate(seed, summer, prices, cfg)
    assert sessions.shape[0] >= 60  # every EV departed at least once in two days
    need, feasible, unmet = sessions.T
    ok = need <= feasible + 1e-9
    assert ok.any() and (~ok).any()  # the config makes some sessions infeasible
    np.testing.assert_allclose(unmet[ok], 0.0, atol=1e-9)
    # Infeasible ones get everything the charger could deliver.
    np.testing.assert_allclose(unmet[~ok], (need - feasible)[~ok], atol=1e-6)


def test_delivered_energy_never_exceeds_need(summer: Weather) -> None:
    prices = price_path(len(summer) + 96, 3)
    fleet, sessions, reports = _simulate(1, summer, prices)
    need, _, unmet = sessions.T
    assert np.all(unmet <= need + 1e-12)
    charged = sum(r.extra["charged_kwh"] for r in reports)
    # Charged energy = completed sessions' delivered energy + progress of open sessions.
    st_ = fleet.state
    open_progress = np.where(np.isnan(st_.departure_h), 0.0, st_.session_kwh - st_.need_kwh)
    assert charged.sum() <= need.sum() + open_progress.sum() + 1e-6
    np.testing.assert_allclose(charged.sum(), (need - unmet).sum() + open_progress.sum(), rtol=1e-9)


def test_bid_price_rises_with_urgency(summer: Weather) -> None:
    fleet = make_fleet("ev", 1, seed=0)
    prices = price_path(len(summer) + 96)
    ctx = ctx_at(summer, 0, prices, cap=1.0)
    # Put one plugged-in EV in front of the same deadline with growing needs.
    needs = np.linspace(0.5, 60.0, 12)  # the last ones exceed what 4 h of charging gives
    p = fleet.params
    n = needs.size
    params = ev.EVParams(
        **{
            k: np.repeat(getattr(p, k), n)
            for k in (
                "charger_kw",
                "efficiency",
                "battery_kwh",
                "arrival_hour",
                "arrival_sd",
                "dwell_h",
                "dwell_sd",
                "daily_kwh",
                "energy_sigma",
            )
        },
        seed=p.seed,
    )
    state = ev.EVState(np.full(n, ctx.t_h - 1), np.full(n, ctx.t_h + 4.0), needs, needs)
    c = EV().bid(params, state, ctx)
    bid_price = c.price[c.offsets[:-1]]
    assert np.all(np.diff(bid_price) >= 0) and bid_price[-1] == ctx.cap
    assert bid_price[0] < ctx.price_mean
    # Must-run part only when the deadline binds.
    must = quantity_at(c, ctx.cap + 1)
    assert must[0] == 0 and must[-1] > 0


def test_plug_in_keeps_its_local_hour_across_the_dst_switch() -> None:
    """Sessions drawn on the Berlin clock arrive at 18:00 local both in winter time (17:00
    UTC) and in summer time (16:00 UTC)."""
    import pandas as pd

    p = EV().make_params(arrival_hour=[18.0] * 3, arrival_sd=0.0, dwell_h=12.0, dwell_sd=0.0)
    fresh = EV().initial_state(p, EV.Config(), np.random.default_rng(0))
    for noon, offset, utc_hour in (
        ("2018-03-24T11:00Z", 1.0, 17.0),
        ("2018-03-26T10:00Z", 2.0, 16.0),
    ):
        t_h = pd.Timestamp(noon).value / 3.6e12
        s = ev.roll(p, fresh, t_h, offset)
        np.testing.assert_allclose(np.mod(s.arrival_h, 24.0), utc_hour)
        np.testing.assert_allclose(np.mod(s.arrival_h + offset, 24.0), 18.0)
        np.testing.assert_allclose(s.departure_h - s.arrival_h, 12.0)
