"""The simulator's capacity stage on a tiny scenario: the need from the business-as-usual
peak in the windows (recomputed here on the local clock), the aggregator's offers per bus
from its batteries, the decision and its KPIs on every design, the table written with the
results, and the section's bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_runner import scenario

import transactive.sim.runner as runner
from transactive.market.capacity import annuity_factor
from transactive.sim.results import SimResults, write_tables
from transactive.sim.scenario import ScenarioError, parse_scenario
from transactive.sim.world import build_world

DESIGNS = ["bau-flat", "total-dso"]
# 16:00–22:00 New York time (the `us` region's clock): the evening peak of the tiny run.
SECTION = {"element": "substation", "hours": [17.0, 21.0], "capex": 40_000.0,
           "price_per_kw": 20.0, "upgrade_kw": 60.0}  # fmt: skip


def raw(tmp: Path, **capacity: Any) -> dict[str, Any]:
    return scenario(
        tmp,
        designs=DESIGNS,
        der={"penetration": {"ev": 100, "hvac": 50, "battery": 100}},
        capacity={**SECTION, **capacity},
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimResults, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("cap")
    r = raw(tmp)
    return runner.run(parse_scenario(r)), r


def test_need_is_the_bau_peak_in_the_windows_over_the_rating(
    run: tuple[SimResults, dict[str, Any]],
) -> None:
    res, _ = run
    g = res.grid[res.grid["design"] == "bau-flat"]
    local = pd.DatetimeIndex(g["time"]).tz_convert("America/New_York")
    hour = local.hour + local.minute / 60
    inside = (hour >= 17) & (hour + 0.5 <= 21)  # 30-minute power-flow steps inside [17, 21)
    peak = float(g["substation_kw"][np.asarray(inside)].max())
    d = res.capacity[res.capacity["record"] == "decision"].iloc[0]
    assert d["peak_kw"] == pytest.approx(peak)
    assert d["rating_kw"] == 100.0  # kerber_landnetz_kabel_1: a 100 kVA transformer
    assert d["need_kw"] == pytest.approx(peak - 100.0) and d["need_kw"] > 0


def test_offers_are_the_aggregators_batteries_per_bus(
    run: tuple[SimResults, dict[str, Any]], tmp_path: Path
) -> None:
    res, r = run
    world = build_world(parse_scenario(r))
    dev = world.devices
    fleet = next(f for f in dev.fleets if f.kind == "battery")
    sl = dev.slices[dev.fleets.index(fleet)]
    p = fleet.params
    frame = (
        pd.DataFrame(
            {
                "bus": np.asarray(world.feeders[0].bus_names)[dev.bus[sl]],
                "power": p.discharge_kw,
                "energy": p.capacity_kwh * (p.soc_max - p.soc_min) * p.eta_discharge,
            }
        )
        .groupby("bus")[["power", "energy"]]
        .sum()
    )
    offers = res.capacity[res.capacity["record"] == "offer"].set_index("node")
    assert set(offers.index) == set(frame.index)
    np.testing.assert_allclose(offers["energy_kwh"], frame.loc[offers.index, "energy"])
    firm = np.minimum(frame["power"], frame["energy"] / 4.0)  # 4 h windows
    np.testing.assert_allclose(offers["firm_kw"], firm.loc[offers.index])
    assert (offers["provider"] == "agg:vpp").all() and offers["qualified"].all()
    assert offers["resource"].str.startswith("agg:vpp/area/").all()


def test_decision_figures_and_kpis_on_every_design(
    run: tuple[SimResults, dict[str, Any]],
) -> None:
    res, _ = run
    t = res.capacity
    offers, d = t[t["record"] == "offer"], t[t["record"] == "decision"].iloc[0]
    # Money: the payments are the awarded kW at the offered price, and add up.
    np.testing.assert_allclose(offers["payment"], offers["awarded_kw"] * 20.0)
    assert offers["payment"].sum() == pytest.approx(d["capacity_cost_per_year"])
    assert offers["firm_awarded_kw"].sum() >= d["need_kw"] - 1e-9
    a_k = annuity_factor(0.05, 3)
    annual = 40_000 * 0.05 / (1 - 1.05**-40)
    assert d["npv"] == pytest.approx((annual - d["capacity_cost_per_year"]) * a_k)
    assert d["action"] == "defer" and d["under_delivery_risk"] <= 0.05
    for design in DESIGNS:  # a pre-stage: the same value on every design
        assert res.kpis.loc["capacity_procured_kw", design] == pytest.approx(d["procured_kw"])
        assert res.kpis.loc["deferral_value_usd", design] == pytest.approx(
            annual - d["capacity_cost_per_year"]
        )


def test_the_table_is_written_with_the_results(
    run: tuple[SimResults, dict[str, Any]], tmp_path: Path
) -> None:
    res, _ = run
    written = write_tables(res, tmp_path / "out")
    assert tmp_path / "out" / "capacity.csv" in written
    back = pd.read_csv(tmp_path / "out" / "capacity.csv")
    assert list(back["record"]) == list(res.capacity["record"])


def test_nameplate_offers_fail_the_performance_test_and_a_cheap_upgrade_builds(
    tmp_path: Path,
) -> None:
    res = runner.run(parse_scenario(raw(tmp_path, offer_kw="nameplate", capex=2_000.0)))
    t = res.capacity
    offers = t[t["record"] == "offer"]
    assert not offers["qualified"].any()  # 1–3 h of energy cannot hold the power for 4 h
    assert offers["reason"].str.contains("over a 4 h event, not the").all()
    d = t[t["record"] == "decision"].iloc[0]
    assert d["action"] == "build"
    assert (res.kpis.loc["capacity_procured_kw"] == 0).all()
    assert (res.kpis.loc["deferral_value_usd"] == 0).all()


def test_without_the_section_the_table_is_empty_and_its_kpis_left_out(tmp_path: Path) -> None:
    r = scenario(tmp_path, designs=["bau-flat"], end="2016-07-12T22:00:00Z")
    res = runner.run(parse_scenario(r))
    assert res.capacity.empty
    assert "capacity_procured_kw" not in res.kpis.index
    assert "deferral_value_usd" not in res.kpis.index and "total_cost_usd" in res.kpis.index


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"capex": None}, "'capacity.capex': missing (required when `element` is set)"),
        ({"need_design": "bau-tou"}, "'capacity.need_design': 'bau-tou' is not one of"),
        ({"area": "north"}, "'capacity.area': 'north' is not an area"),
        ({"hours": [21.0, 17.0]}, "'capacity.hours': need 0 ≤ start < end ≤ 24"),
        ({"colour": 1}, "'capacity.colour': unknown key"),
    ],
)
def test_bad_section_names_the_key(tmp_path: Path, over: dict[str, Any], message: str) -> None:
    r = raw(tmp_path, **over)
    r["capacity"] = {k: v for k, v in r["capacity"].items() if v is not None}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(r, source="s.toml")
    assert message in str(err.value)


def test_a_season_whose_windows_miss_the_run_is_refused(tmp_path: Path) -> None:
    from transactive.errors import InvalidInputError

    r = raw(tmp_path, weekdays=["sat", "sun"])  # the run is a Tuesday
    with pytest.raises(InvalidInputError, match="no power-flow step of the run lies in the"):
        runner.run(parse_scenario(r))


def test_the_shipped_capacity_scenario_parses() -> None:
    from transactive.sim.scenario import load_scenario

    path = Path(__file__).parents[2] / "examples" / "capacity" / "winter-evenings.toml"
    sc = load_scenario(path)
    c = sc.capacity
    assert c.element == "substation" and c.capex == 45_000 and c.need_design is None
    assert sc.baseline == "bau-flat"  # the need comes from business as usual
