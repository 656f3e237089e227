"""Weather for device physics, from typical years shipped with the software (no downloads).

**Germany** — the DWD test reference years 2010 (TRY2010, "mittleres Jahr", reference period
1988–2007), one per climate region, shipped in ``transactive/data/de/try2010/`` (source,
licence and derivation in its ``SOURCES.md``): sites ``"de-try-01"`` … ``"de-try-15"``
(region name, station, latitude/longitude/altitude read from the file header). Columns
used: B (direct horizontal) and D (diffuse horizontal irradiance, W/m²), t (air
temperature at 2 m, °C), WG (wind speed at 10 m, m/s); hour stamps HH = 1 … 24 in MEZ
(UTC+1 all year, no daylight saving). Placement of each hourly value (the file header
does not say; measured against the sun's position, see ``SOURCES.md``):

* irradiance *measured* at the station (flag IK = 1): the mean of the hour ending at the
  stamp in true solar time (wahre Ortszeit, as DWD records radiation), placed at that
  hour's midpoint converted to UTC with the station's longitude and the equation of time;
* irradiance *computed* by DWD (IK = 9, e.g. from cloud cover): centred on the stamp (MEZ);
* temperature and wind: the observation at the stamp (MEZ).

GHI = B + D; DNI = B / cos(zenith), with cos(zenith) floored at cos 87° and DNI capped at
the extraterrestrial irradiance (B near the horizon is small, so the guard moves little
energy); DHI = D.

**USA and others** — pvlib ships typical-meteorological-year files in ``pvlib/data/``:

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
midpoints, and DNI is zeroed when the sun is below the horizon. The TRY values are
interpolated the same way from their own placement.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd
import pvlib

from transactive.core.time import Intervals
from transactive.der.base import FloatArray, WeatherSample
from transactive.der.sites import SITES
from transactive.errors import InvalidInputError

#: cos(zenith) floor of the DNI = B / cos(zenith) conversion (cos 87°).
_COS_ZENITH_MIN = float(np.cos(np.radians(87.0)))

_YEAR_S = 365 * 86400.0


@dataclass(frozen=True, slots=True)
class Site:
    """A weather station: name, latitude/longitude (degrees), altitude (m), UTC offset (h)
    of the file's clock; ``station``: the station's own name (TRY: e.g. "Potsdam")."""

    name: str
    latitude: float
    longitude: float
    altitude: float
    tz_offset_h: float
    station: str = ""


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
    """Path of the shipped typical-year file of ``site`` (pvlib's, or the package's TRY)."""
    if site not in SITES:
        raise InvalidInputError(f"unknown weather site {site!r}; choose one of {sorted(SITES)}")
    name, kind = SITES[site]
    if kind == "try":
        return str(resources.files("transactive") / "data" / "de" / "try2010" / name)
    return os.path.join(os.path.dirname(pvlib.__file__), "data", name)


#: Columns of a TRY2010 data row (after the ``***`` line).
TRY_COLUMNS = ("RG", "IS", "MM", "DD", "HH", "N", "WR", "WG", "t", "p", "x", "RF", "W", "B",
               "D", "IK", "A", "E", "IL")  # fmt: skip


def _dms(text: str, path: str, what: str) -> float:
    m = re.search(r"(\d+)°(\d+)'", text)
    if m is None:
        raise InvalidInputError(f"{path}: line 3: cannot read the {what} from {text!r}")
    return int(m[1]) + int(m[2]) / 60.0


@lru_cache(maxsize=16)
def load_try(site: str) -> tuple[pd.DataFrame, Site]:
    """The DWD test reference year of ``site`` (``"de-try-NN"``): a frame of the 8760 hourly
    rows in file order (columns of :data:`TRY_COLUMNS`, stamps MEZ), and its :class:`Site`
    (name, station, latitude/longitude/altitude from the header). Cached in memory.

    The shipped files (from ``pycity_base``) repeat the year's last row (31 Dec, hour 24) as
    their first row; that copy is dropped."""
    if site not in SITES or SITES[site][1] != "try":
        raise InvalidInputError(
            f"unknown TRY site {site!r}; choose one of "
            + ", ".join(k for k, v in SITES.items() if v[1] == "try")
        )
    path = tmy_path(site)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    try:
        first = lines.index("***") + 1
    except ValueError:
        raise InvalidInputError(f"{path}: no '***' line before the data") from None
    station = re.search(r"Station:\s*(.*?)\s+WMO", lines[1])
    where = lines[2]
    lat = _dms(where.split("<- B.")[0], path, "latitude")
    lon = _dms(where.split("<- B.")[1], path, "longitude")
    alt = re.search(r"(\d+)\s+Meter", where)
    if station is None or alt is None or "N" not in where or "O" not in where:
        raise InvalidInputError(f"{path}: lines 2-3: cannot read the station and its position")
    rows = [ln.split() for ln in lines[first:] if ln.strip()]
    bad = [i for i, r in enumerate(rows) if len(r) != len(TRY_COLUMNS)]
    if bad:
        raise InvalidInputError(
            f"{path}: line {first + bad[0] + 1}: expected {len(TRY_COLUMNS)} columns"
        )
    df = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=list(TRY_COLUMNS))
    if len(df) == 8761 and tuple(df.loc[0, ["MM", "DD", "HH"]]) == (12, 31, 24):
        df = df.iloc[1:].reset_index(drop=True)
    if len(df) != 8760 or tuple(df.loc[0, ["MM", "DD", "HH"]]) != (1, 1, 1):
        raise InvalidInputError(f"{path}: expected 8760 hourly rows from 1 Jan hour 1")
    title = lines[0].split("(")[0].split(maxsplit=1)
    region = title[1].strip() if len(title) > 1 else site
    return df, Site(
        name=f"{site} ({region})",
        latitude=lat,
        longitude=lon,
        altitude=float(alt[1]),
        tz_offset_h=1.0,
        station=station[1].strip(),
    )


def _try_placement(df: pd.DataFrame, s: Site) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """UTC instants the TRY rows stand for: (irradiance, temperature and wind); see the
    module docstring. The reference year is laid on the non-leap year 2010."""
    stamp = pd.DatetimeIndex(
        pd.Timestamp("2010-01-01T00:00Z") + pd.to_timedelta(np.arange(1, 8761), unit="h")
    ) - pd.Timedelta(hours=s.tz_offset_h)
    # Measured (IK = 1): the hour ending at HH true solar time; WOZ = UTC + lon/15 + EoT.
    doy = np.asarray(stamp.dayofyear, dtype=np.float64)
    eot_h = np.asarray(pvlib.solarposition.equation_of_time_spencer71(doy)) / 60.0
    woz_mid = stamp + pd.Timedelta(hours=s.tz_offset_h) - pd.Timedelta(minutes=30)
    measured = pd.DatetimeIndex(woz_mid) - pd.to_timedelta(s.longitude / 15.0 + eot_h, unit="h")
    computed = stamp  # IK = 9: centred on the stamp
    is_measured = (df["IK"] == 1).to_numpy()
    irr = pd.DatetimeIndex(np.where(is_measured, measured.to_numpy(), computed.to_numpy()))
    return irr.tz_convert("UTC"), stamp


@lru_cache(maxsize=8)
def load_tmy(site: str = "greensboro") -> tuple[pd.DataFrame, Site]:
    """The hourly typical year of a pvlib TMY ``site`` (UTC index, columns ghi, dni, dhi,
    temp_air, wind_speed) and its :class:`Site`. Cached in memory. TRY sites:
    :func:`load_try`."""
    path = tmy_path(site)
    kind = SITES[site][1]
    if kind == "try":
        raise InvalidInputError(f"{site!r} is a DWD test reference year: read it with load_try")
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
    """The weather of every interval of ``intervals`` from the typical year of ``site``
    (any of :data:`SITES`; the scenario's region names it)."""
    if site not in SITES:
        raise InvalidInputError(f"unknown weather site {site!r}; choose one of {sorted(SITES)}")
    mid = intervals.starts + intervals.duration / 2
    dst_t = _seconds_of_year(pd.DatetimeIndex(mid))

    def interp(times: pd.DatetimeIndex, y: FloatArray) -> FloatArray:
        src_t = _seconds_of_year(times)
        order = np.argsort(src_t, kind="stable")
        out: FloatArray = np.interp(dst_t, src_t[order], y[order], period=_YEAR_S)
        return out

    if SITES[site][1] == "try":
        raw, s = load_try(site)
        t_irr, t_met = _try_placement(raw, s)
        bhi = interp(t_irr, raw["B"].to_numpy(np.float64))
        dhi_src = interp(t_irr, raw["D"].to_numpy(np.float64))
        temp = interp(t_met, raw["t"].to_numpy(np.float64))
        wind = interp(t_met, raw["WG"].to_numpy(np.float64))
    else:
        df, s = load_tmy(site)
        # An hourly TMY value averages the hour ending at its stamp: place it at the midpoint.
        t_mid = pd.DatetimeIndex(df.index) - pd.Timedelta(minutes=30)
        temp = interp(t_mid, df["temp_air"].to_numpy(np.float64))
        wind = interp(t_mid, df["wind_speed"].to_numpy(np.float64))
    sp = pvlib.solarposition.get_solarposition(
        mid, s.latitude, s.longitude, altitude=s.altitude, temperature=temp
    )
    zen = sp["apparent_zenith"].to_numpy(np.float64)
    az = sp["azimuth"].to_numpy(np.float64)
    up = zen < 90.0
    dni_extra = np.asarray(pvlib.irradiance.get_extra_radiation(mid), dtype=np.float64)
    if SITES[site][1] == "try":
        cosz = np.maximum(np.cos(np.radians(zen)), _COS_ZENITH_MIN)
        ghi = np.where(up, bhi + dhi_src, 0.0)
        dni = np.where(up, np.minimum(bhi / cosz, dni_extra), 0.0)
        dhi = np.where(up, dhi_src, 0.0)
    else:
        ghi = np.where(up, interp(t_mid, df["ghi"].to_numpy(np.float64)), 0.0)
        dni = np.where(up, interp(t_mid, df["dni"].to_numpy(np.float64)), 0.0)
        dhi = np.where(up, interp(t_mid, df["dhi"].to_numpy(np.float64)), 0.0)
    return Weather(
        site=s,
        intervals=intervals,
        ghi=ghi,
        dni=dni,
        dhi=dhi,
        temp_air=temp,
        wind_speed=wind,
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
