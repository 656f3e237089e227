"""Regions: the German bundle is consistent and derived as documented (SMARD conversion with
its daylight-saving hours, SimBench DER counts, BDEW/SMARD tariff), presets sit under the
user's keys, bad names are refused by key, and the provenance names every input."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from transactive.der import household
from transactive.sim import regions
from transactive.sim.scenario import STAGES, ScenarioError, parse_scenario

SMARD_DIR = Path(regions.__file__).parents[1] / "data" / "de" / "smard"


def base(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "r",
        "feeder": "pandapower:kerber_landnetz_kabel_1",
        "start": "2016-07-12T20:00:00Z",
        "end": "2016-07-13T02:00:00Z",
    }
    raw.update(over)
    return raw


def _smard(name: str = "smard-2018") -> pd.DataFrame:
    df = pd.read_csv(regions.shipped_prices(name), comment="#")
    df["start"] = pd.to_datetime(df["start"], utc=True)
    return df


def _convert_module() -> Any:
    spec = importlib.util.spec_from_file_location("smard_convert", SMARD_DIR / "convert.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- SMARD prices --------------------------------------------------------------------------


def test_smard_2018_is_a_gap_free_utc_year_with_its_dst_days() -> None:
    df = _smard()
    assert len(df) == 8760
    assert df["start"].iloc[0] == pd.Timestamp("2017-12-31T23:00Z")  # 1 Jan 00:00 CET
    assert (df["start"].diff().dropna() == pd.Timedelta(hours=1)).all()
    assert df["price"].mean() == pytest.approx(44.47, abs=0.01)  # €/MWh, 2018 base price
    local = df["start"].dt.tz_convert("Europe/Berlin")
    hours_per_day = local.dt.date.value_counts()
    assert hours_per_day[pd.Timestamp("2018-03-25").date()] == 23
    assert hours_per_day[pd.Timestamp("2018-10-28").date()] == 25
    # The autumn repeated hour keeps both prices, in order (CEST 02:00 then CET 02:00), and
    # the first DE-LU hour follows the last DE-AT-LU hour.
    price = df.set_index("start")["price"]
    assert price[pd.Timestamp("2018-10-28T00:00Z")] == 41.62
    assert price[pd.Timestamp("2018-10-28T01:00Z")] == 41.59
    assert price[pd.Timestamp("2018-09-30T21:00Z")] == 60.87  # DE-AT-LU, 30 Sep 23:00
    assert price[pd.Timestamp("2018-09-30T22:00Z")] == 59.53  # DE-LU, 1 Oct 00:00


def test_smard_2015_leaves_out_the_hours_without_a_german_price() -> None:
    df = _smard("smard-2015")
    assert len(df) == 8760 - 96 and df["start"].iloc[0] == pd.Timestamp("2015-01-04T23:00Z")
    assert df["price"].mean() == pytest.approx(31.83, abs=0.01)


def test_the_conversion_localises_the_dst_hours_and_picks_the_zone(tmp_path: Path) -> None:
    head = "Date;Time of day;Germany/Luxembourg[€/MWh];Germany/Austria/Luxembourg[€/MWh]\n"
    rows = [
        "Mar 25, 2018;1:00 AM;-;10",
        "Mar 25, 2018;3:00 AM;-;11",  # 02:00 does not exist
        "Oct 28, 2018;1:00 AM;20;-",
        "Oct 28, 2018;2:00 AM;21;-",  # CEST
        "Oct 28, 2018;2:00 AM;22;-",  # CET
        "Oct 28, 2018;3:00 AM;23;-",
    ]
    src = tmp_path / "smard.csv"
    src.write_text("\ufeff" + head + "\n".join(rows) + "\n", encoding="utf-8")
    mod = _convert_module()
    with pytest.raises(ValueError, match="not a gap-free hourly series"):
        mod.convert(src)  # March and October rows together leave a gap
    src.write_text(head + "\n".join(rows[2:]) + "\n", encoding="utf-8")
    out = mod.convert(src)
    assert out["start"].tolist() == [
        "2018-10-27T23:00:00Z",
        "2018-10-28T00:00:00Z",
        "2018-10-28T01:00:00Z",
        "2018-10-28T02:00:00Z",
    ]
    assert out["price"].tolist() == [20, 21, 22, 23]
    src.write_text(head + "\n".join(rows[:2]) + "\n", encoding="utf-8")
    out = mod.convert(src)
    assert out["start"].tolist() == ["2018-03-25T00:00:00Z", "2018-03-25T01:00:00Z"]
    src.write_text(head + "Jan 1, 2018;12:00 AM;1;2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: prices in both"):
        mod.convert(src)


def test_the_shipped_series_is_what_the_converter_writes(tmp_path: Path) -> None:
    """Reproducible: converting the shipped rows back through the writer gives the file."""
    mod = _convert_module()
    df = _smard()
    local = df["start"].dt.tz_convert("Europe/Berlin")
    src = tmp_path / "s.csv"
    lines = [
        f"{t.strftime('%b')} {t.day}, {t.year};{t.strftime('%I:%M %p').lstrip('0')};-;{p:.2f}"
        for t, p in zip(local, df["price"], strict=True)
    ]
    head = "Date;Time of day;Germany/Luxembourg[€/MWh];Germany/Austria/Luxembourg[€/MWh]\n"
    src.write_text(head + "\n".join(lines) + "\n", encoding="utf-8")
    dst = tmp_path / "out.csv"
    mod.main(str(src), str(dst))
    got = pd.read_csv(dst, comment="#")
    assert got["start"].tolist() == df["start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    np.testing.assert_allclose(got["price"], df["price"])


# --- derivations -----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", [0, 1, 2])
def test_device_shares_are_simbench_counts_per_household(scenario: int) -> None:
    counts = regions.simbench_der_counts(scenario)
    assert counts == regions.DE_COUNTS[scenario]
    shares = regions.DE_STAGES[scenario + 1]
    for kind in ("pv", "battery", "ev", "hvac"):
        assert shares[kind] == pytest.approx(100 * counts[kind] / counts["households"], abs=0.01)
    assert shares["water_heater"] == 0.0


def test_german_shares_grow_with_the_stage_and_stay_below_the_us_presets() -> None:
    s = regions.DE_STAGES
    for kind in ("pv", "battery", "ev", "hvac"):
        assert s[1][kind] <= s[2][kind] <= s[3][kind] <= STAGES[3][kind]
    assert s[1]["battery"] == s[1]["hvac"] == s[1]["ev"] == 0.0  # SimBench today: PV only


def test_the_tou_variant_is_the_smard_procurement_split_and_revenue_neutral() -> None:
    df = _smard()
    local = df["start"].dt.tz_convert("Europe/Berlin")
    hour = local.dt.hour.to_numpy()
    lo, hi = regions.DE_TOU["tou_peak_hours"]
    peak = (hour >= lo) & (hour < hi)
    p = household.Household().make_params(annual_kwh=[3500.0], profile=[0])  # H0-A
    t_h = df["start"].astype("int64").to_numpy() / 3.6e12
    offset = regions.utc_offsets_h(pd.DatetimeIndex(df["start"]), "Europe/Berlin")
    load = np.array([household.load_kw(p, t, 1.0, o)[0] for t, o in zip(t_h, offset, strict=True)])
    price = df["price"].to_numpy()
    p_peak = (price * load)[peak].sum() / load[peak].sum()
    p_off = (price * load)[~peak].sum() / load[~peak].sum()
    p_mean = (price * load).sum() / load.sum()
    flat, procurement = regions.DE_TOU["flat"], 0.0620
    assert regions.DE_TOU["tou_peak"] == pytest.approx(
        flat + procurement * (p_peak / p_mean - 1), abs=1e-4
    )
    assert regions.DE_TOU["tou_offpeak"] == pytest.approx(
        flat + procurement * (p_off / p_mean - 1), abs=1e-4
    )
    share = load[peak].sum() / load.sum()
    bill = share * regions.DE_TOU["tou_peak"] + (1 - share) * regions.DE_TOU["tou_offpeak"]
    assert bill == pytest.approx(flat, abs=2e-4)  # the H0 household pays the flat average


def test_utc_offsets_follow_daylight_saving() -> None:
    starts = pd.date_range("2018-03-25T00:00Z", periods=3, freq="1h")
    np.testing.assert_array_equal(regions.utc_offsets_h(starts, "Europe/Berlin"), [1, 2, 2])
    starts = pd.date_range("2018-10-28T00:00Z", periods=3, freq="1h")
    np.testing.assert_array_equal(regions.utc_offsets_h(starts, "Europe/Berlin"), [2, 1, 1])
    starts = pd.DatetimeIndex(["2018-01-15T12:00Z", "2018-07-15T12:00Z"])
    np.testing.assert_array_equal(regions.utc_offsets_h(starts, "America/New_York"), [-5, -4])


# --- presets ---------------------------------------------------------------------------------


def test_germany_is_the_default_and_consistent() -> None:
    sc = parse_scenario(base(der={"stage": 2}))
    assert (sc.region, sc.timezone, sc.weather_site) == ("de", "Europe/Berlin", "de-try-04")
    assert sc.market.currency == "EUR" and (sc.market.floor, sc.market.cap) == (-0.5, 3.0)
    assert (sc.grid.v_min_pu, sc.grid.v_max_pu) == (0.90, 1.10)
    assert sc.wholesale.source == "prices"
    assert sc.wholesale.prices == regions.shipped_prices("smard-2018")
    assert sc.tariff.flat == 0.2947 and sc.tariff.tou_peak_hours == (6, 22)
    assert sc.der.penetration == regions.DE_STAGES[2]
    np.testing.assert_array_equal(sc.utc_offsets_h, 2.0)  # July: CEST
    # Heat pumps heat only; a file can still give them cooling.
    from transactive.der.fleet import make_fleet

    hvac = make_fleet("hvac", 50, sc.der.config["hvac"], seed=1)
    assert not hvac.params.can_cool.any()
    cooling = parse_scenario(base(der={"config": {"hvac": {"can_cool": 1}}}))
    assert make_fleet("hvac", 50, cooling.der.config["hvac"], seed=1).params.can_cool.all()


def test_user_keys_win_over_the_region_preset() -> None:
    sc = parse_scenario(
        base(
            market={"cap": 1.0},
            grid={"v_max_pu": 1.05},
            tariff={"flat": 0.30},
            timezone="Europe/Vienna",
            weather_site="de-try-12",
            der={"stage": 3, "penetration": {"ev": 50}},
            wholesale={"source": "merit-order"},
        )
    )
    assert sc.market.cap == 1.0 and sc.market.floor == -0.5 and sc.market.currency == "EUR"
    assert sc.grid.v_max_pu == 1.05 and sc.grid.v_min_pu == 0.90
    assert sc.tariff.flat == 0.30 and sc.tariff.tou_peak == regions.DE_TOU["tou_peak"]
    assert sc.timezone == "Europe/Vienna" and sc.weather_site == "de-try-12"
    assert sc.der.penetration == {**regions.DE_STAGES[3], "ev": 50}
    assert sc.wholesale.source == "merit-order" and sc.wholesale.prices is None


def test_the_us_region_is_todays_behaviour(tmp_path: Path) -> None:
    sc = parse_scenario(base(region="us", der={"stage": 3}))
    assert (sc.timezone, sc.weather_site, sc.market.currency) == (
        "America/New_York", "greensboro", "USD",
    )  # fmt: skip
    assert (sc.grid.v_min_pu, sc.grid.v_max_pu) == (0.95, 1.05)
    assert sc.wholesale.source == "merit-order" and sc.der.penetration == STAGES[3]
    prices = tmp_path / "p.csv"
    prices.write_text("start,price\n2016-07-12T00:00:00Z,40\n")
    sc = parse_scenario(
        base(region="us", wholesale={"source": "prices", "prices": "p.csv"}), base_dir=tmp_path
    )
    assert sc.wholesale.prices == prices.resolve()


@pytest.mark.parametrize(
    ("over", "key", "reason"),
    [
        ({"region": "eu"}, "region", "input should be 'de' or 'us', got 'eu'"),
        ({"timezone": "Europe/Berlinn"}, "timezone", "unknown IANA time zone 'Europe/Berlinn'"),
        ({"timezone": "CEST"}, "timezone", "unknown IANA time zone 'CEST'"),
        ({"wholesale": {"prices": "smard-2016"}}, "wholesale.prices",
         "'smard-2016' is neither a shipped price series (smard-2018, smard-2015) nor a file"),
        ({"weather_site": "potsdam"}, "weather_site", "unknown weather site 'potsdam'"),
        ({"tariff": {"tz_offset_h": 1}}, "tariff.tz_offset_h", "replaced by the top-level key"),
    ],
)  # fmt: skip
def test_bad_region_names_are_refused_by_key(over: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(base(**over), source="s.toml")
    assert f"s.toml: '{key}': {reason}" in str(info.value)


# --- provenance ------------------------------------------------------------------------------


def test_provenance_names_every_input_of_the_german_default() -> None:
    raw = base(areas=[{"name": "a", "feeder": "simbench:1-LV-rural1--0-sw"}], der={"stage": 1})
    del raw["feeder"]
    sc = parse_scenario(raw)
    prov = regions.provenance(sc).set_index("what")
    assert list(prov.columns) == ["source", "licence", "year"]
    assert list(prov.index) == [
        "grid (a)", "household profiles", "weather", "wholesale prices", "device shares", "tariff",
    ]  # fmt: skip
    assert "SimBench 1-LV-rural1--0-sw" in prov.loc["grid (a)", "source"]
    assert "ODbL" in prov.loc["household profiles", "licence"]
    assert "TRY2010_04_Jahr.dat" in prov.loc["weather", "source"]
    assert "Deutscher Wetterdienst" in prov.loc["weather", "licence"]
    assert "SMARD" in prov.loc["wholesale prices", "source"]
    assert prov.loc["wholesale prices", "licence"].startswith("CC BY 4.0")
    assert prov.loc["wholesale prices", "year"] == "2018"
    assert "SimBench DER scenario 0" in prov.loc["device shares", "source"]
    assert "BDEW" in prov.loc["tariff", "source"] and prov.loc["tariff", "year"] == "2018"


def test_provenance_follows_what_the_user_chose(tmp_path: Path) -> None:
    prices = tmp_path / "p.csv"
    prices.write_text("start,price\n2016-07-12T00:00:00Z,40\n")
    sc = parse_scenario(
        base(region="us", wholesale={"source": "prices", "prices": "p.csv"},
             der={"penetration": {"pv": 20}}, tariff={"flat": 0.2}),
        base_dir=tmp_path,
    )  # fmt: skip
    prov = regions.provenance(sc).set_index("what")
    assert "pandapower network kerber_landnetz_kabel_1" in prov.loc["grid (area)", "source"]
    assert "723170TYA.CSV" in prov.loc["weather", "source"]
    assert prov.loc["wholesale prices", "licence"] == "user-supplied"
    assert str(prices.resolve()) in prov.loc["wholesale prices", "source"]
    assert prov.loc["device shares", "licence"] == "user-supplied"
    assert prov.loc["tariff", "licence"] == "user-supplied"
    merit = regions.provenance(parse_scenario(base(region="us"))).set_index("what")
    assert "merit order" in merit.loc["wholesale prices", "source"]
    assert "schema defaults" in merit.loc["tariff", "source"]


# --- the world of a German scenario ------------------------------------------------------------


def test_a_german_world_has_dwd_weather_smard_prices_and_a_berlin_tou() -> None:
    from transactive.sim.world import build_world

    sc = parse_scenario(
        base(start="2016-03-26T12:00:00Z", end="2016-03-27T12:00:00Z", designs=["tou-responsive"])
    )
    world = build_world(sc)
    assert world.weather.site.station == "Potsdam"
    # 2016 is read at the same week and weekday of the SMARD 2018 year (+104 weeks).
    df = _smard().set_index("start")["price"]
    t = sc.intervals.starts[0] + pd.Timedelta(weeks=104)
    assert world.forecast[0] == pytest.approx(df[t.floor("h")] / 1000)  # €/kWh
    # HT until 22:00 local on Saturday 26 March (CET: 21:00 UTC), from 06:00 local on Sunday
    # (CEST since 01:00 UTC: 04:00 UTC).
    starts = pd.DatetimeIndex(sc.intervals.starts)
    tou = pd.Series(world.tou[: sc.intervals.n], index=starts)
    assert tou[pd.Timestamp("2016-03-26T20:45Z")] == regions.DE_TOU["tou_peak"]
    assert tou[pd.Timestamp("2016-03-26T21:00Z")] == regions.DE_TOU["tou_offpeak"]
    assert tou[pd.Timestamp("2016-03-27T03:45Z")] == regions.DE_TOU["tou_offpeak"]
    assert tou[pd.Timestamp("2016-03-27T04:00Z")] == regions.DE_TOU["tou_peak"]
