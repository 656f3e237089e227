"""The day-ahead error model: errors of the stated size, the same error for an instant
whatever the run's start, forecast devices perturbed by parameter name."""

from __future__ import annotations

import numpy as np
import pandas as pd

from transactive.der.fleet import make_fleet
from transactive.sim.forecast import daily_errors, forecast_fleet
from transactive.sim.scenario import Forecast


def test_daily_errors_have_the_stated_spread_and_do_not_depend_on_the_run_start() -> None:
    starts = pd.date_range("2016-01-01", periods=96 * 200, freq="15min", tz="UTC")
    e = daily_errors(starts, 1.5, 0.9, seed=1, stream=1)
    assert abs(e.std() - 1.5) < 0.15 and abs(e.mean()) < 0.15
    later = daily_errors(starts[500:], 1.5, 0.9, seed=1, stream=1)
    np.testing.assert_array_equal(later, e[500:])
    # Persistent within the hour, not across days.
    lag4 = np.corrcoef(e[:-4], e[4:])[0, 1]
    assert 0.8 < lag4 < 0.97
    assert not np.array_equal(e, daily_errors(starts, 1.5, 0.9, seed=2, stream=1))


def test_forecast_fleets_perturb_loads_and_arrivals_only() -> None:
    fc = Forecast()
    ev = make_fleet("ev", 500, seed=1)
    seen = forecast_fleet(ev, fc, seed=1, day=17000, salt=0)
    d = seen.params.arrival_hour - ev.params.arrival_hour
    assert abs(d.std() - fc.ev_arrival_error_h) < 0.15
    np.testing.assert_array_equal(seen.params.charger_kw, ev.params.charger_kw)
    house = make_fleet("household", 2000, seed=1)
    ratio = forecast_fleet(house, fc, seed=1, day=17000, salt=1).params.scale_kw / (
        house.params.scale_kw
    )
    assert abs(ratio.mean() - 1.0) < 0.02 and abs(ratio.std() - fc.load_error) < 0.02
    battery = make_fleet("battery", 10, seed=1)
    assert forecast_fleet(battery, fc, seed=1, day=17000, salt=2) is battery
