"""DWD test reference years (TRY2010): the shipped files parse, values land where the sun
says they belong, and the year's energy is that of the German climate."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pvlib
import pytest

from transactive.der.weather import (
    SITES,
    _try_placement,
    load_try,
    tmy_path,
    weather_between,
)
from transactive.errors import InvalidInputError

TRY_SITES = [s for s, (_, kind) in SITES.items() if kind == "try"]


def test_fifteen_regions_are_shipped_and_parse_with_their_header() -> None:
    assert TRY_SITES == [f"de-try-{r:02d}" for r in range(1, 16)]
    df, site = load_try("de-try-04")
    assert site.station == "Potsdam" and "Nordostdeutsches Tiefland" in site.name
    assert site.latitude == pytest.approx(52 + 23 / 60) and site.longitude == pytest.approx(
        13 + 4 / 60
    )
    assert site.altitude == 81.0 and site.tz_offset_h == 1.0
    assert len(df) == 8760
    # The first data row of the original file (pycity_base's leading copy of 31 Dec 24 h
    # is dropped): 1 Jan, hour 1, WG 5.7 m/s, t −2.6 °C, no sun.
    first = df.iloc[0]
    assert (first.MM, first.DD, first.HH, first.WG, first.t, first.B, first.D) == (
        1, 1, 1, 5.7, -2.6, 0, 0,
    )  # fmt: skip
    last = df.iloc[-1]
    assert (last.MM, last.DD, last.HH, last.t) == (12, 31, 24, -0.8)
    for s in TRY_SITES:
        d, st = load_try(s)
        assert len(d) == 8760 and st.station and 47 < st.latitude < 55 and 5 < st.longitude < 15


def test_the_shipped_file_is_the_original_text() -> None:
    with gzip.open(tmy_path("de-try-12"), "rt", encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("TRY12   Oberrheingraben und unteres Neckartal")
    assert "Station: Mannheim" in text and "Format: (i2,2x,i4" in text


def test_temperature_and_wind_are_the_observations_at_the_stamp() -> None:
    df, _ = load_try("de-try-04")
    row = df[(df.MM == 7) & (df.DD == 12) & (df.HH == 15)].iloc[0]  # 15:00 MEZ = 14:00 UTC
    # the interval midpoint is the stamp: interpolation returns the value itself
    w = weather_between(
        "2010-07-12T13:55Z", "2010-07-12T14:05Z", pd.Timedelta(minutes=10), site="de-try-04"
    )
    assert w.temp_air[0] == pytest.approx(row.t) and w.wind_speed[0] == pytest.approx(row.WG)


def test_computed_irradiance_is_centred_on_its_stamp() -> None:
    df, site = load_try("de-try-07")  # Kassel: radiation computed by DWD (IK = 9)
    assert (df.IK == 9).all()
    row = df[(df.MM == 6) & (df.DD == 21) & (df.HH == 13)].iloc[0]  # 13:00 MEZ = 12:00 UTC
    w = weather_between(
        "2010-06-21T11:55Z", "2010-06-21T12:05Z", pd.Timedelta(minutes=10), site="de-try-07"
    )
    assert w.ghi[0] == pytest.approx(row.B + row.D) and w.dhi[0] == pytest.approx(row.D)
    assert site.station == "Kassel"


@pytest.mark.parametrize("site", TRY_SITES)
def test_placed_daylight_is_symmetric_about_solar_noon(site: str) -> None:
    """The first and the last hour with sun, placed by the reader, sit as far after sunrise
    as before sunset (on average over the year): a placement off by half an hour in either
    direction would show as ±0.5 h."""
    df, s = load_try(site)
    t_irr, _ = _try_placement(df, s)
    g = (df.B + df.D).to_numpy().reshape(365, 24)
    mid_h = ((t_irr - pd.Timestamp("2010-01-01T00:00Z")) / pd.Timedelta(hours=1)).to_numpy()
    mid_h = mid_h.reshape(365, 24)
    days = pd.date_range("2010-01-01", periods=365, freq="D", tz="UTC")
    rs = pvlib.solarposition.sun_rise_set_transit_spa(days, s.latitude, s.longitude)
    base_h = np.arange(365) * 24.0
    sunrise = ((rs["sunrise"] - days).dt.total_seconds() / 3600).to_numpy() + base_h
    sunset = ((rs["sunset"] - days).dt.total_seconds() / 3600).to_numpy() + base_h
    lit = g > 0
    first = mid_h[np.arange(365), lit.argmax(axis=1)]
    last = mid_h[np.arange(365), 23 - lit[:, ::-1].argmax(axis=1)]
    asymmetry = np.mean(((first - sunrise) + (last - sunset)) / 2)
    assert abs(asymmetry) < 0.1, asymmetry


def test_potsdam_year_has_german_irradiance_and_consistent_components() -> None:
    w = weather_between("2010-01-01T00:00Z", "2011-01-01T00:00Z", site="de-try-04")
    ghi_kwh = w.ghi.sum() * 0.25 / 1000
    assert 1000 < ghi_kwh < 1100  # kWh/m² a year (Potsdam, DWD: ≈ 1050)
    df, _ = load_try("de-try-04")
    assert ghi_kwh == pytest.approx((df.B + df.D).sum() / 1000, rel=0.01)  # the file's own sum
    assert 8 < w.temp_air.mean() < 11 and w.temp_air.min() < -5 and w.temp_air.max() > 28
    assert np.all(w.dni <= w.dni_extra + 1e-9) and np.all(w.ghi >= 0) and np.all(w.dhi >= 0)
    # Closure where the DNI guard does not act: DNI·cos(zenith) + DHI = GHI.
    ok = w.solar_zenith < 85.0
    cosz = np.cos(np.radians(w.solar_zenith[ok]))
    np.testing.assert_allclose(w.dni[ok] * cosz + w.dhi[ok], w.ghi[ok], rtol=1e-9, atol=1e-6)
    assert np.all(w.ghi[w.solar_zenith >= 90] == 0)


def test_any_year_reads_the_typical_year_by_time_of_year() -> None:
    a = weather_between("2010-07-12T00:00Z", "2010-07-13T00:00Z", site="de-try-04")
    b = weather_between("2018-07-12T00:00Z", "2018-07-13T00:00Z", site="de-try-04")
    np.testing.assert_allclose(a.temp_air, b.temp_air)


def test_unknown_site_is_named() -> None:
    with pytest.raises(InvalidInputError, match="unknown weather site 'de-try-16'"):
        weather_between("2010-07-12T00:00Z", "2010-07-12T01:00Z", site="de-try-16")
    with pytest.raises(InvalidInputError, match="unknown TRY site 'greensboro'"):
        load_try("greensboro")
