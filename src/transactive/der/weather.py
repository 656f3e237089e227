"""Weather for device physics, from files shipped inside the installed ``pvlib`` package.

No downloads: pvlib ships typical-meteorological-year files in ``pvlib/data/``:

* ``"greensboro"`` (default) — ``723170TYA.CSV``, TMY3, Greensboro Piedmont Triad Intl.,
  NC, USA (36.10° N, 79.95° W, 273 m, UTC−5): a humid-subtropical site with both a heating
  and a cooling season, read with :func:`pvlib.iotools.read_tmy3`;
* ``"sand_point"`` — ``703165TY.csv``, TMY3, Sand Point, AK (cold, little sun);
* ``"miami"`` — ``12839.tm2``, TMY2, Miami, FL (hot; read with
  :func:`pvlib.iotools.read_tmy2`, units converted: temperature in 0.1 °C, wind 0.1 m/s).

Each file is one typical year of hourly GHI/DNI/DHI (W/m²), dry-bulb temperature (°C)
and wind speed (m/s). A TMY hourly value is the average over the hour *ending* at its
timestamp, so it is placed at the hour's midpoint and linearly interpolated (periodically
over the year) to the midpoint of each market interval. Any calendar year maps onto the
typical year by time of year (UTC). The solar position (apparent zenith, azimuth) is
computed with :func:`pvlib.solarposition.get_solarposition` for the real interval
midpoints, and DNI is zeroed when the sun is below the horizon.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import numpy as np
import pandas as pd
import pvlib

from transactive.core.time import Intervals
from transactive.der.base import FloatArray, WeatherSample
from transactive.errors import InvalidInputError

SITES: dict[str, tuple[str, str]] = {
    "greensboro": ("723170TYA.CSV", "tmy3"),
    "sand_point": ("703165TY.csv", "tmy3"),
    "miami": ("12839.tm2", "tmy2"),
}

_YEAR_S = 365 * 86400.0


@dataclass(frozen=True, slots=True)
class Site:
    """A weather station: name, latitude/longitude (degrees), altitude (m), UTC offset (h)."""

    name: str
    latitude: float
    longitude: float
    altitude: float
    tz_offset_h: float


@dataclass(frozen=True, slots=True)
class Weather:
    """Weather per market interval: arrays of length ``len(intervals)``.

    ghi, dni, dhi, dni_extra: W/m²; temp_air: °C; wind_speed: m/s; solar_zenith (apparent),
    solar_azimuth: degrees at interval midpoints.
    """

    site: Site
    intervals: Intervals
    ghi: FloatArray
    dni: FloatArray
    dhi: FloatArray
    temp_air: FloatArray
    wind_speed: FloatArray
    solar_zenith: FloatArray
    solar_azimuth: FloatArray
    dni_extra: FloatArray

    def __len__(self) -> int:
        return self.intervals.n

    def sample(self, i: int) -> WeatherSample:
        """The weather of interval ``i``."""
        return WeatherSample(
            ghi=float(self.ghi[i]),
            dni=float(self.dni[i]),
            dhi=float(self.dhi[i]),
            temp_air=float(self.temp_air[i]),
            wind_speed=float(self.wind_speed[i]),
            solar_zenith=float(self.solar_zenith[i]),
            solar_azimuth=float(self.solar_azimuth[i]),
            dni_extra=float(self.dni_extra[i]),
        )


def tmy_path(site: str) -> str:
    """Path of the pvlib-shipped TMY file of ``site``."""
    if site not in SITES:
        raise InvalidInputError(f"unknown weather site {site!r}; choose one of {sorted(SITES)}")
    return os.path.join(os.path.dirname(pvlib.__file__), "data", SITES[site][0])


@lru_cache(maxsize=8)
def load_tmy(site: str = "greensboro") -> tuple[pd.DataFrame, Site]:
    """The hourly typical year of ``site`` (UTC index, columns ghi, dni, dhi, temp_air,
    wind_speed) and its :class:`Site`. Cached in memory."""
    path = tmy_path(site)
    kind = SITES[site][1]
    if kind == "tmy3":
        data, meta = pvlib.iotools.read_tmy3(path, coerce_year=2001, map_variables=True)
        df = data[["ghi", "dni", "dhi", "temp_air", "wind_speed"]].astype(np.float64)
        tz = float(meta["TZ"])
    else:
        data, meta = pvlib.iotools.read_tmy2(path)
        df = pd.DataFrame(
            {
                "ghi": data["GHI"].to_numpy(np.float64),
                "dni": data["DNI"].to_numpy(np.float64),
                "dhi": data["DHI"].to_numpy(np.float64),
                "temp_air": data["DryBulb"].to_numpy(np.float64) / 10.0,
                "wind_speed": data["Wspd"].to_numpy(np.float64) / 10.0,
            },
            index=data.index,
        )
        tz = float(meta["TZ"])
    df = df.tz_convert("UTC")
    site_obj = Site(
        name=site,
        latitude=float(meta["latitude"]),
        longitude=float(meta["longitude"]),
        altitude=float(meta["altitude"]),
        tz_offset_h=tz,
    )
    return df, site_obj


def _seconds_of_year(times: pd.DatetimeIndex) -> FloatArray:
    """Seconds since 1 January 00:00 UTC of each time's year, wrapped to a 365-day year."""
    t = times.tz_convert("UTC")
    jan1 = pd.to_datetime(pd.DataFrame({"year": t.year, "month": 1, "day": 1}), utc=True).to_numpy()
    sec = (t.to_numpy() - jan1) / np.timedelta64(1, "s")
    out: FloatArray = np.mod(np.asarray(sec, dtype=np.float64), _YEAR_S)
    return out


def weather_for(intervals: Intervals, site: str = "greensboro") -> Weather:
    """The weather of every interval of ``intervals`` from the typical year of ``site``."""
    df, s = load_tmy(site)
    # An hourly TMY value averages the hour ending at its stamp: place it at the midpoint.
    src_t = _seconds_of_year(pd.DatetimeIndex(df.index) - pd.Timedelta(minutes=30))
    order = np.argsort(src_t, kind="stable")
    src_t = src_t[order]
    mid = intervals.starts + intervals.duration / 2
    dst_t = _seconds_of_year(pd.DatetimeIndex(mid))

    def interp(col: str) -> FloatArray:
        y = df[col].to_numpy(np.float64)[order]
        out: FloatArray = np.interp(dst_t, src_t, y, period=_YEAR_S)
        return out

    temp = interp("temp_air")
    sp = pvlib.solarposition.get_solarposition(
        mid, s.latitude, s.longitude, altitude=s.altitude, temperature=temp
    )
    zen = sp["apparent_zenith"].to_numpy(np.float64)
    az = sp["azimuth"].to_numpy(np.float64)
    up = zen < 90.0
    ghi = np.where(up, interp("ghi"), 0.0)
    dni = np.where(up, interp("dni"), 0.0)
    dhi = np.where(up, interp("dhi"), 0.0)
    dni_extra = np.asarray(pvlib.irradiance.get_extra_radiation(mid), dtype=np.float64)
    return Weather(
        site=s,
        intervals=intervals,
        ghi=ghi,
        dni=dni,
        dhi=dhi,
        temp_air=temp,
        wind_speed=interp("wind_speed"),
        solar_zenith=zen,
        solar_azimuth=az,
        dni_extra=dni_extra,
    )


def weather_between(
    start: str | pd.Timestamp,
    end: str | pd.Timestamp,
    step: timedelta = timedelta(minutes=15),
    site: str = "greensboro",
) -> Weather:
    """Shortcut: the weather of the intervals of length ``step`` covering ``[start, end)``."""
    return weather_for(Intervals.between(start, end, step), site)
