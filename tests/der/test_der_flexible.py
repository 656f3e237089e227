"""Flexible loads: shiftable jobs finish inside their window without interruption;
curtailable loads shed above their value of lost load."""

from __future__ import annotations

import numpy as np
from der_helpers import price_path, run

from transactive.core.curves import quantity_at
from transactive.der import Weather, make_context, make_fleet


def test_shiftable_jobs_complete_in_window_uninterrupted(summer: Weather) -> None:
    prices = np.clip(price_path(len(summer) + 96, 2) + 0.2, 0.0, 1.0)
    fleet = make_fleet("shiftable", 80, seed=6)
    p = fleet.params
    _, reports, _, _ = run(fleet, summer, prices)
    power = np.array([r.power_kw for r in reports])
    unmet = sum(r.extra["unmet_kwh"] for r in reports)
    np.testing.assert_allclose(unmet, 0.0, atol=1e-9)
    # The run (23:00 local → 23:00 local two days later) sees the window open at the start,
    # the next full window and part of a third: at least two whole jobs, at most three.
    energy = power.sum(axis=0) * 0.25
    assert np.all(energy >= 2 * p.job_kwh - 1e-9)
    assert np.all(energy <= 3 * p.job_kwh + 1e-9)
    n = power.shape[0]
    for j in range(p.n):  # each job runs as one uninterrupted block of full power
        on = np.flatnonzero(power[:, j] > 0)
        blocks = np.split(on, np.flatnonzero(np.diff(on) > 1) + 1)
        for blk in blocks:
            if blk[-1] == n - 1:
                continue  # cut off by the end of the run
            np.testing.assert_allclose(power[blk, j].sum() * 0.25, p.job_kwh[j], rtol=1e-9)
            assert np.all(power[blk[:-1], j] == p.power_kw[j])


def test_started_shiftable_job_cannot_be_stopped(summer: Weather) -> None:
    fleet = make_fleet("shiftable", 10, seed=1)
    prices = np.zeros(len(summer) + 96)
    started = False
    for i in range(len(summer)):
        ctx = make_context(
            summer.intervals[i].start, 0.25, prices[i : i + 96], floor=0.0, cap=1.0, utc_offset_h=-5
        )
        lo, hi = fleet.limits(ctx)
        if started:
            running = fleet.state.started & (fleet.state.remaining_kwh > 0)
            np.testing.assert_allclose(lo[running], hi[running])
            _, r = fleet.step(np.zeros(fleet.n), ctx)
            assert np.all(r.power_kw[running] > 0)
            assert np.all(r.deviation_kwh[running] > 0)
            return
        fleet, r = fleet.step(hi, ctx)
        started = bool((fleet.state.started & (fleet.state.remaining_kwh > 0)).any())
    raise AssertionError("no job ever started")


def test_curtailable_sheds_above_voll_and_values_lost_load() -> None:
    fleet = make_fleet("curtailable", 50, seed=3)
    p = fleet.params
    ctx = make_context(  # 12:00 local: active
        "2024-07-01T17:00Z", 0.25, [0.1], floor=0.0, cap=2.0, utc_offset_h=-5.0
    )
    c = fleet.bid(ctx)
    dem = quantity_at(c, 0.0)
    np.testing.assert_allclose(dem, p.demand_kw)
    price = 0.5
    served = fleet.respond(ctx, c, price=price)
    np.testing.assert_allclose(served, np.where(p.voll > price, p.demand_kw, 0.0))
    _, r = fleet.step(served, ctx)
    shed = p.voll <= price
    np.testing.assert_allclose(r.extra["curtailed_kwh"], np.where(shed, p.demand_kw * 0.25, 0))
    np.testing.assert_allclose(r.extra["lost_value"], r.extra["curtailed_kwh"] * p.voll)
    night = make_context(  # 02:00 local
        "2024-07-02T07:00Z", 0.25, [0.1], floor=0.0, cap=2.0, utc_offset_h=-5.0
    )
    np.testing.assert_allclose(quantity_at(fleet.bid(night), 0.0), 0.0)
