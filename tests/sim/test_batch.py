"""Runs over random seeds and DER stages on a small feeder: the summary's statistics, paired
differences from the baseline, results independent of the number of worker processes, seeds
that really draw different devices, and the scenario keys ``seeds`` and ``baseline``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import transactive.sim.runner as runner
from transactive.errors import InvalidInputError, TransactiveError
from transactive.sim import batch
from transactive.sim.results import Comparison
from transactive.sim.scenario import STAGES, Scenario, ScenarioError, parse_scenario
from transactive.sim.world import build_world

DESIGNS = ["bau-flat", "tou-responsive", "total-dso"]


def raw_scenario(tmp_path: Path, **over: Any) -> dict[str, Any]:
    """An evening hour and a half on an 8-load-point feeder, 16 homes with EVs and heat pumps."""
    prices = tmp_path / "prices.csv"
    prices.write_text("start,price\n2016-07-01T00:00:00Z,40\n2016-07-12T19:00:00Z,90\n")
    raw: dict[str, Any] = {
        "name": "seeds",
        "feeder": "pandapower:kerber_landnetz_kabel_1",
        "start": "2016-07-12T18:00:00Z",
        "end": "2016-07-12T19:30:00Z",
        "market_interval_min": 15,
        "designs": DESIGNS,
        "warmup_days": 0,
        "region": "us",
        "seed": 5,
        "homes_per_load": 2,
        "der": {"penetration": {"ev": 50, "hvac": 50, "pv": 30, "battery": 20}},
        "wholesale": {"source": "prices", "prices": str(prices)},
    }
    raw.update(over)
    return raw


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return parse_scenario(raw_scenario(tmp_path_factory.mktemp("batch")))


@pytest.fixture(scope="module")
def three(scenario: Scenario) -> Comparison:
    return batch.compare(scenario, batch.seeds_for(scenario, 3), workers=1)


def test_seeds_are_the_scenarios_seed_and_the_next_ones(scenario: Scenario) -> None:
    assert batch.seeds_for(scenario, 3) == [5, 6, 7]
    assert batch.seeds_for(scenario, 1) == [scenario.seed]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidInputError, match="seeds"):
            batch.seeds_for(scenario, bad)  # type: ignore[arg-type]


def test_different_seeds_draw_different_devices(scenario: Scenario) -> None:
    a, b = (build_world(batch.with_seed(scenario, s)).devices for s in (5, 6))
    assert (a.n, tuple(a.id)) != (b.n, tuple(b.id))
    again = build_world(batch.with_seed(scenario, 5)).devices
    assert tuple(again.id) == tuple(a.id)  # the same seed, the same draw


def test_the_kpi_table_is_the_long_form_of_each_seeds_kpis(
    scenario: Scenario, three: Comparison
) -> None:
    k = three.kpis
    assert list(k.columns) == list(batch.KPI_COLUMNS)
    n_kpi = len(three.results.kpis)
    assert len(k) == 3 * n_kpi * len(DESIGNS)
    assert not k.duplicated(["seed", "design", "kpi"]).any()
    # The first seed's rows are exactly its full results' KPI table.
    first = k[k["seed"] == 5].pivot(index="kpi", columns="design", values="value")
    expected = three.results.kpis
    pd.testing.assert_frame_equal(
        first.loc[expected.index, list(expected.columns)], expected, check_names=False
    )
    # The seeds differ in what they measure, not only in their label.
    energy = k[(k["kpi"] == "energy_import_kwh") & (k["design"] == "bau-flat")]["value"]
    assert energy.nunique() == 3


def test_the_interval_contains_the_mean_and_differences_are_paired(three: Comparison) -> None:
    s = three.summary
    assert (s["n"] == 3).all()
    finite = np.isfinite(s["lo"])
    assert finite.all()
    assert (s["lo"] <= s["mean"] + 1e-12).all() and (s["mean"] <= s["hi"] + 1e-12).all()
    assert (s["diff_lo"] <= s["diff"] + 1e-12).all() and (s["diff"] <= s["diff_hi"] + 1e-12).all()
    base = s[s["design"] == three.baseline]
    assert three.baseline == "bau-flat"
    assert (base[["diff", "diff_lo", "diff_hi"]].to_numpy() == 0.0).all()
    assert not base["significant"].any()
    # The mean of the paired differences is the difference of the means.
    wide = s.pivot(index="kpi", columns="design", values="mean")
    diff = s.pivot(index="kpi", columns="design", values="diff")
    for d in DESIGNS:
        np.testing.assert_allclose(diff[d], wide[d] - wide["bau-flat"], rtol=1e-9, atol=1e-9)
    # Significant means: the interval of the difference excludes zero.
    sig = s[s["significant"]]
    assert ((sig["diff_lo"] > 0) | (sig["diff_hi"] < 0)).all()
    # Retail designs bill at a different price than the market design: some difference is
    # significant over three seeds.
    assert s["significant"].any()


def test_results_do_not_depend_on_the_number_of_workers(
    scenario: Scenario, three: Comparison
) -> None:
    calls: list[tuple[int, str, int, int]] = []
    two = batch.compare(
        scenario,
        batch.seeds_for(scenario, 3),
        workers=2,
        progress=lambda *a: calls.append(a),
    )
    pd.testing.assert_frame_equal(two.kpis, three.kpis)
    pd.testing.assert_frame_equal(two.summary, three.summary)
    pd.testing.assert_frame_equal(two.results.kpis, three.results.kpis)
    pd.testing.assert_frame_equal(two.results.dispatch, three.results.dispatch)
    assert two.baseline == three.baseline
    # Every seed and design reported its progress up to the last interval.
    n = scenario.intervals.n
    assert {(s, d) for s, d, done, total in calls if done == total == n} == {
        (s, d) for s in (5, 6, 7) for d in DESIGNS
    }


def test_more_seeds_extend_fewer(scenario: Scenario, three: Comparison) -> None:
    two = batch.compare(scenario, batch.seeds_for(scenario, 2), workers=2)
    pd.testing.assert_frame_equal(two.kpis, three.kpis[three.kpis["seed"] < 7])
    assert np.isfinite(two.summary["lo"]).all()  # two seeds: an interval


def test_one_seed_has_no_interval_and_nothing_significant(scenario: Scenario) -> None:
    one = batch.compare(scenario, [5], workers=2)
    s = one.summary
    assert (s["n"] == 1).all()
    assert s["lo"].isna().all() and s["hi"].isna().all() and not s["significant"].any()
    # With one seed the mean is the run's own value.
    mean = s.pivot(index="kpi", columns="design", values="mean")
    k = one.results.kpis
    pd.testing.assert_frame_equal(
        mean.loc[k.index, list(k.columns)], k, check_names=False, check_exact=True
    )


def test_the_baseline_is_the_scenarios_or_the_first_design_run(
    tmp_path: Path, scenario: Scenario
) -> None:
    named = parse_scenario(raw_scenario(tmp_path, baseline="total-dso"))
    assert named.baseline == "total-dso"
    assert scenario.baseline == "bau-flat"  # default: the first design
    assert batch.baseline_of(named) == "total-dso"
    assert batch.baseline_of(named, ["tou-responsive", "total-dso"]) == "total-dso"
    assert (
        batch.baseline_of(named, ["tou-responsive", "bau-flat"]) == "tou-responsive"
    )  # not run: the first run
    cmp = batch.compare(named, [5, 6], designs=["tou-responsive", "total-dso"])
    assert cmp.baseline == "total-dso" and list(cmp.results.designs) == [
        "tou-responsive",
        "total-dso",
    ]
    base = cmp.summary[cmp.summary["design"] == "total-dso"]
    assert (base["diff"] == 0.0).all() and not base["significant"].any()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"seeds": 0}, "'seeds': input should be greater than or equal to 1"),
        ({"seeds": 2.5}, "'seeds': input should be a valid integer"),
        ({"baseline": "grand-central"}, "'baseline': 'grand-central' is not one of `designs`"),
        ({"baseline": ""}, "'baseline': '' is not one of `designs`"),
    ],
)
def test_bad_seeds_or_baseline_name_the_key(
    tmp_path: Path, over: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(raw_scenario(tmp_path, **over), source="s.toml")


def test_the_scenarios_seeds_key_is_read(tmp_path: Path) -> None:
    assert parse_scenario(raw_scenario(tmp_path, seeds=4)).seeds == 4
    assert parse_scenario(raw_scenario(tmp_path)).seeds == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": []}, "at least one seed"),
        ({"seeds": [1, 1]}, "each seed once"),
        ({"seeds": [1], "workers": 0}, "workers"),
        ({"seeds": [-1]}, "seed: need a whole number ≥ 0"),
    ],
)
def test_bad_batch_arguments_are_refused(
    scenario: Scenario, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        batch.compare(scenario, **kwargs)


def test_a_failing_seed_fails_the_comparison_with_its_error(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runner.run

    def run(sc: Scenario, *args: Any, **kwargs: Any) -> Any:
        if sc.seed == 6:
            raise TransactiveError("power flow did not converge (seed 6)")
        return real(sc, *args, **kwargs)

    monkeypatch.setattr(runner, "run", run)  # forked workers inherit it
    for workers in (1, 2):
        with pytest.raises(TransactiveError, match=r"seed 6"):
            batch.compare(scenario, [5, 6], workers=workers)


def test_a_stage_replaces_the_preset_and_keeps_explicit_shares(tmp_path: Path) -> None:
    raw = raw_scenario(tmp_path, der={"stage": 1, "penetration": {"ev": 100}})
    for stage in STAGES:
        sc = parse_scenario(batch.stage_raw(raw, stage))
        assert sc.der.stage == stage
        assert sc.der.penetration == {**STAGES[stage], "ev": 100}
    assert raw["der"]["stage"] == 1  # the raw table itself is left alone


def test_a_sweep_tabulates_every_stage_and_design(tmp_path: Path) -> None:
    raw = raw_scenario(tmp_path, end="2016-07-12T19:00:00Z", designs=["bau-flat", "total-dso"])
    raw["der"] = {}
    scenarios = {s: parse_scenario(batch.stage_raw(raw, s)) for s in (1, 3)}
    table, long = batch.sweep(scenarios, 2, workers=2)
    assert list(table.columns) == list(batch.SWEEP_COLUMNS)
    assert set(table["stage"]) == {1, 3} and set(table["design"]) == {"bau-flat", "total-dso"}
    assert set(long["seed"]) == {5, 6}
    # More DER at stage 3: more PV export (PV 10 % of homes at stage 1, 60 % at stage 3).
    export = table[(table["kpi"] == "energy_export_kwh") & (table["design"] == "bau-flat")]
    by_stage = export.set_index("stage")["mean"]
    assert by_stage[3] > by_stage[1]
    with pytest.raises(InvalidInputError, match="stage: 7"):
        batch.sweep({7: scenarios[1]}, 1)


def test_main_kpis_are_those_present() -> None:
    assert batch.main_kpis(["peak_import_kw", "mean_bill_eur", "x"], "EUR") == [
        "peak_import_kw",
        "mean_bill_eur",
    ]
    assert batch.main_kpis(["x", "y"], "EUR") == ["x", "y"]


def test_an_interrupted_comparison_stops_its_workers(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    log = tmp_path / "finished.txt"
    real = runner.run

    def run(sc: Scenario, *args: Any, **kwargs: Any) -> Any:
        out = real(sc, *args, **kwargs)
        with log.open("a") as f:
            f.write(f"{sc.seed}\n")
        return out

    monkeypatch.setattr(runner, "run", run)  # forked workers inherit it

    class Stop(Exception):
        pass

    def progress(seed: int, design: str, done: int, total: int) -> None:
        raise Stop  # as Ctrl-C would, at the first report of the first interval

    with pytest.raises(Stop):
        batch.compare(scenario, [5, 6, 7], workers=2, progress=progress)
    for child in multiprocessing.active_children():  # reaps the ended workers
        child.join(timeout=30)
    assert multiprocessing.active_children() == []
    # The workers were stopped, not left to run the comparison to its end.
    finished = log.read_text().split() if log.exists() else []
    assert len(finished) < 3, finished


def test_a_scenario_file_loads_once_per_stage(tmp_path: Path) -> None:
    (tmp_path / "prices.csv").write_text("start,price\n2016-07-12T00:00:00Z,40\n")
    path = tmp_path / "stages.toml"
    path.write_text(
        'region = "us"\nfeeder = "pandapower:kerber_landnetz_kabel_1"\n'
        'start = "2016-07-12T18:00:00Z"\nend = "2016-07-12T19:00:00Z"\n'
        "[der]\nstage = 2\npenetration = { battery = 0 }\n"
        '[wholesale]\nsource = "prices"\nprices = "prices.csv"\n'
    )
    staged = batch.load_stages(path, [3, 1])
    assert list(staged) == [3, 1] and staged[1].name == "stages"
    assert staged[3].der.penetration == {**STAGES[3], "battery": 0}
    assert staged[1].der.penetration["pv"] == STAGES[1]["pv"]
    with pytest.raises(InvalidInputError, match="stage: 4 is not a DER stage"):
        batch.load_stages(path, [1, 4])
    path.write_text(path.read_text().replace("stage = 2", "stage = 2\ncolour = 1"))
    with pytest.raises(ScenarioError, match=r"'der\.colour': unknown key"):
        batch.load_stages(path, [1])
