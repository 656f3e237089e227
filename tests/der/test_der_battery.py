"""Battery: SoC bounds, energy balance, profitable thresholds, horizon bids."""

from __future__ import annotations

import numpy as np
import pytest
from der_helpers import price_path, run
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.core.curves import quantity_at
from transactive.der import Battery, Weather, battery, make_context, make_fleet
from transactive.errors import BalanceError


def _ctx(forecast: object = (0.05, 0.1, 0.2, 0.15), dt: float = 0.25):  # type: ignore[no-untyped-def]
    return make_context("2024-03-01T00:00Z", dt, forecast, floor=0.0, cap=1.0)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    awards=st.lists(st.floats(-20, 20, allow_nan=False), min_size=5, max_size=40),
    dt=st.sampled_from([0.25, 0.5, 1.0]),
)
def test_soc_stays_in_bounds_and_energy_balances_under_any_award(
    seed: int, awards: list[float], dt: float
) -> None:
    fleet = make_fleet("battery", 20, seed=seed)
    p = fleet.params
    soc0 = fleet.state.soc.copy()
    e_c = np.zeros(20)
    e_d = np.zeros(20)
    ctx = _ctx(dt=dt)
    for a in awards:
        fleet, r = fleet.step(np.full(20, a), ctx)
        soc = fleet.state.soc
        assert np.all(soc >= p.soc_min - 1e-12) and np.all(soc <= p.soc_max + 1e-12)
        assert np.all(r.power_kw <= p.charge_kw + 1e-12)
        assert np.all(r.power_kw >= -p.discharge_kw - 1e-12)
        e_c += r.extra["charge_kwh"]
        e_d += r.extra["discharge_kwh"]
    # Over the whole run: ΔSoC·capacity = η_c·E_charge − E_discharge/η_d.
    np.testing.assert_allclose(
        (fleet.state.soc - soc0) * p.capacity_kwh,
        p.eta_charge * e_c - e_d / p.eta_discharge,
        atol=1e-9,
    )


def test_full_battery_cannot_charge_empty_cannot_discharge() -> None:
    p = Battery().make_params(capacity_kwh=[10.0, 10.0], power_kw=5.0, soc_min=0.1, soc_max=0.9)
    s = battery.BatteryState(np.array([0.9, 0.1]))
    lo, hi = battery.limits(p, s, _ctx())
    np.testing.assert_allclose(hi, [0.0, 5.0])
    np.testing.assert_allclose(lo, [-5.0, 0.0])
    # Near the bound the limit is the energy left, not the power rating.
    s = battery.BatteryState(np.array([0.85, 0.12]))
    lo, hi = battery.limits(p, s, _ctx(dt=1.0))
    np.testing.assert_allclose(hi[0], 0.05 * 10 / 0.95)
    np.testing.assert_allclose(lo[1], -0.02 * 10 * 0.95)
    c = Battery().bid(p, s, _ctx(dt=1.0))
    np.testing.assert_allclose(quantity_at(c, -1.0), hi)
    np.testing.assert_allclose(quantity_at(c, 5.0), lo)


def test_thresholds_cover_losses_and_degradation() -> None:
    p = Battery().make_params(
        capacity_kwh=np.full(4, 10.0),
        power_kw=5.0,
        eta_charge=[0.95, 0.9, 0.8, 0.95],
        eta_discharge=[0.95, 0.9, 0.8, 0.95],
        degradation_cost=[0.0, 0.02, 0.05, 0.1],
    )
    f = price_path(96, seed=1)
    p_c, p_d = battery.thresholds(p, f)
    assert np.all(p_c <= p_d)
    assert np.all(p_d * p.eta_discharge - p_c / p.eta_charge >= 2 * p.degradation_cost - 1e-12)
    assert np.all(p_c <= np.quantile(f, 0.3) + 1e-12)
    assert np.all(p_d >= np.quantile(f, 0.7) - 1e-12)


def test_buys_cheap_sells_dear_over_a_day(summer: Weather) -> None:
    fleet = make_fleet("battery", 100, seed=9)
    prices = price_path(len(summer) + 96, seed=4)
    _, reports, _, _ = run(fleet, summer, prices)
    power = np.array([r.power_kw for r in reports])
    cost = (power * 0.25 * prices[: len(reports), None]).sum(axis=0)
    deg = np.array([r.extra["degradation_cost"] for r in reports]).sum(axis=0)
    assert np.abs(power).sum() > 0
    # Arbitrage earns money on a price path with a daily cycle, net of degradation.
    assert np.median(-cost - deg) > 0


def test_balance_error_is_raised_when_physics_is_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Battery().make_params(capacity_kwh=[10.0], power_kw=5.0)
    s = battery.BatteryState(np.array([0.5]))
    monkeypatch.setattr(Battery, "next_soc", staticmethod(lambda params, soc, pw, dt: soc + 0.01))
    with pytest.raises(BalanceError):
        Battery().step(p, s, np.array([0.0]), _ctx())


def test_horizon_bids_respect_projected_soc() -> None:
    fleet = make_fleet("battery", 30, seed=2)
    f = np.r_[np.full(8, 0.02), np.full(8, 0.3)]
    ctx = make_context("2024-03-01T00:00Z", 1.0, f, floor=0.0, cap=1.0)
    curves = fleet.bid_horizon(ctx)
    assert len(curves) == f.size
    soc = fleet.state.soc.copy()
    p = fleet.params
    for c, price in zip(curves, f, strict=True):
        q = quantity_at(c, price)
        soc = soc + np.where(q >= 0, p.eta_charge * q, q / p.eta_discharge) / p.capacity_kwh
        assert np.all(soc <= p.soc_max + 1e-9) and np.all(soc >= p.soc_min - 1e-9)
    assert np.all(soc <= fleet.state.soc + 1e-9)  # it ends the expensive hours emptier
