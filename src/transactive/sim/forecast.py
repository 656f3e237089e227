"""The day-ahead forecast error model and the real-time price.

A two-settlement design schedules each day ahead from forecasts and settles in real time
what actually happens. The forecasts differ from the actual run by errors drawn from the
scenario's seed (``[forecast]`` keys, docs/scenario.md), so every seed draws both the devices
and the errors:

* **weather**: air temperature + an AR(1) error (standard deviation ``temperature_error_k``),
  irradiance × (1 + an AR(1) relative error, ``irradiance_error``, clipped at −100 %); the
  errors' hour-to-hour correlation is ``error_persistence``. Day-ahead temperature forecasts
  err by about 1–2 K and day-ahead PV forecasts of a single site by 20–40 % of the
  irradiance, which the defaults follow;
* **fixed load**: each home's load profile × a log-normal factor per home and day
  (``load_error``), applied to every device parameter named ``scale_kw``;
* **EV arrivals**: each vehicle's arrival hour + a normal error per vehicle and day
  (``ev_arrival_error_h``), applied to every device parameter named ``arrival_hour``;
* **real-time price** (price series only): day-ahead price + an AR(1) error
  (``real_time_price_error``, same persistence) — the spread between the real-time
  (intraday/imbalance) and the day-ahead price. Under a merit order the real-time price comes
  from clearing the actual load instead.

The perturbed parameters are found by name, not by device kind, so a new device type with a
load profile or an arrival time gets a forecast error by naming its parameter the same.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pandas as pd

from transactive.core.curves import FloatArray
from transactive.der.fleet import Fleet
from transactive.der.weather import Weather
from transactive.sim.scenario import Forecast

#: Parameter name → how the day-ahead forecast perturbs it.
_RELATIVE = ("scale_kw",)
_HOURS = ("arrival_hour",)


def ar1(
    rng: np.random.Generator, n: int, sigma: float, persistence_h: float, dt_h: float
) -> FloatArray:
    """A stationary AR(1) path of ``n`` steps of ``dt_h`` hours: standard deviation ``sigma``,
    correlation ``persistence_h`` between values one hour apart."""
    phi = persistence_h**dt_h
    z = rng.standard_normal(n) * sigma * np.sqrt(1.0 - phi * phi)
    out = np.empty(n)
    prev = rng.standard_normal() * sigma
    for i in range(n):  # n is the number of intervals of a day: a scalar recursion is fine
        prev = phi * prev + z[i]
        out[i] = prev
    return out


def daily_errors(
    starts: pd.DatetimeIndex, sigma: float, persistence_h: float, seed: int, stream: int
) -> FloatArray:
    """AR(1) errors at interval ``starts`` (UTC), drawn per calendar day (UTC) from the seed,
    the stream and the day itself — so an instant gets the same error whatever the run's start
    (a forecast is issued per day; the error restarts at midnight)."""
    dt_h = float((starts[1] - starts[0]) / pd.Timedelta(hours=1)) if len(starts) > 1 else 1.0
    per_day = max(1, round(24 / dt_h))
    day = (starts.asi8 // (86400 * 10**9)).astype(np.int64)
    slot = np.round(((starts.asi8 % (86400 * 10**9)) / 3.6e12) / dt_h).astype(np.int64)
    out = np.empty(len(starts))
    for d in np.unique(day):
        path = ar1(
            np.random.default_rng([seed, stream, int(d)]), per_day, sigma, persistence_h, dt_h
        )
        here = day == d
        out[here] = path[np.minimum(slot[here], per_day - 1)]
    return out


def day_ahead_weather(weather: Weather, fc: Forecast, seed: int) -> Weather:
    """The weather the day-ahead stage plans with (see the module docstring)."""
    starts = weather.intervals.starts
    dtemp = daily_errors(starts, fc.temperature_error_k, fc.error_persistence, seed, 1)
    rel = daily_errors(starts, fc.irradiance_error, fc.error_persistence, seed, 2)
    factor = np.clip(1.0 + rel, 0.0, None)
    return replace(
        weather,
        temp_air=weather.temp_air + dtemp,
        ghi=weather.ghi * factor,
        dni=weather.dni * factor,
        dhi=weather.dhi * factor,
    )


def real_time_prices(
    day_ahead: FloatArray, starts: pd.DatetimeIndex, fc: Forecast, seed: int
) -> FloatArray:
    """Real-time prices (currency/kWh) around a day-ahead price series at ``starts``."""
    err = daily_errors(starts, fc.real_time_price_error, fc.error_persistence, seed, 3)
    return np.asarray(day_ahead + err, dtype=np.float64)


def forecast_fleet(fleet: Fleet, fc: Forecast, seed: int, day: int, salt: int) -> Fleet:
    """``fleet`` as the day-ahead stage of ``day`` (days since 1970-01-01) sees it: its
    forecastable parameters perturbed (module docstring). ``salt`` tells fleets apart."""
    params = fleet.params
    names = {f.name for f in fields(params)}
    rng = np.random.default_rng([seed, 4, day, salt])
    update: dict[str, FloatArray] = {}
    for name in _RELATIVE:
        if name in names and fc.load_error > 0:
            s = np.log1p(fc.load_error**2) ** 0.5  # log-normal with mean 1, rel. std load_error
            v = np.asarray(getattr(params, name), dtype=float)
            update[name] = v * np.exp(s * rng.standard_normal(v.shape) - s * s / 2)
    for name in _HOURS:
        if name in names and fc.ev_arrival_error_h > 0:
            v = np.asarray(getattr(params, name), dtype=float)
            update[name] = v + fc.ev_arrival_error_h * rng.standard_normal(v.shape)
    return replace(fleet, params=replace(params, **update)) if update else fleet
