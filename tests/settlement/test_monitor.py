"""Monitoring of bad actors: honest populations raise no flag, each kind of bad actor is
flagged with the right participant, resource and interval, and the checks agree with
independent (loop) formulations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import transactive.sim.runner as runner
from transactive.core.records import METER
from transactive.errors import InvalidInputError
from transactive.nodes.tree import Kind, Tree, TreeBuilder
from transactive.settlement.monitor import (
    CHECKS,
    FLAG_COLUMNS,
    MonitorSettings,
    baseline_inflation,
    daily_load,
    feeder_consistency,
    losses_from_grid,
    monitor,
    physical_capability,
    repeated_non_delivery,
    report_tables,
)
from transactive.sim.results import SimResults
from transactive.sim.scenario import parse_scenario
from transactive.sim.world import World, build_world

T0 = pd.Timestamp("2026-01-05T00:00Z")
SEEDS = range(5)


# --- populations ----------------------------------------------------------------------------


def population(
    seed: int, n_meters: int = 40, n_days: int = 40, n_slots: int = 24
) -> tuple[np.ndarray, pd.DatetimeIndex, pd.DataFrame]:
    """Honest homes: a daily shape × a per-meter size × day-to-day weather × noise (kW)."""
    rng = np.random.default_rng(seed)
    shape = 1.0 + 0.6 * np.sin(np.linspace(0, 2 * np.pi, n_slots, endpoint=False) - 1.5)
    size = rng.uniform(0.4, 2.5, n_meters)
    weather = 1.0 + 0.08 * rng.standard_normal(n_days)  # common to everyone
    own = 1.0 + 0.06 * rng.standard_normal((n_meters, n_days))  # each home's own day
    noise = rng.lognormal(0.0, 0.25, (n_meters, n_days, n_slots))
    load = size[:, None, None] * weather[None, :, None] * own[:, :, None] * shape * noise
    days = pd.date_range("2026-01-01", periods=n_days, freq="D", tz="UTC")
    ids = [f"home:{i}" for i in range(n_meters)]
    meters = pd.DataFrame(
        {"participant_id": ids, "resource_id": [f"meter:{x}" for x in ids], "node_id": ids}
    )
    return load, days, meters


EVENTS = [20, 28, 36]  # day positions with an event


def before_event(event: int, k: int = 5) -> list[int]:
    """The k non-event days before event day ``event`` (independent: a plain loop)."""
    out, d = [], event - 1
    while len(out) < k:
        if d not in EVENTS:
            out.append(d)
        d -= 1
    return sorted(out)


def own_ratio(load: np.ndarray, days: pd.DatetimeIndex, m: int, event: int) -> float:
    """Mean load of the 5 window days over the 10 non-event days before them, by loop."""
    window = before_event(event, 5)
    ref = [d for d in before_event(event, 15) if d not in window]
    return float(load[m, window].mean() / load[m, ref].mean())


# --- 1. baseline inflation ------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_an_honest_population_inflates_nothing(seed: int) -> None:
    load, days, meters = population(seed)
    flags = baseline_inflation(load, days, days[EVENTS], meters=meters)
    assert list(flags.columns) == list(FLAG_COLUMNS)
    assert flags.empty


@pytest.mark.parametrize("seed", SEEDS)
def test_a_meter_inflating_its_load_before_an_event_is_flagged(seed: int) -> None:
    load, days, meters = population(seed)
    window = before_event(28)
    load[7][window] *= 1.4
    flags = baseline_inflation(load, days, days[EVENTS], meters=meters)
    assert len(flags) == 1
    row = flags.iloc[0]
    assert (row["check"], row["participant_id"], row["resource_id"]) == (
        "baseline_inflation",
        "home:7",
        "meter:home:7",
    )
    assert row["interval_start"] == days[window[0]]
    assert row["n_intervals"] == 5 * 24
    assert row["measure"] > 1.2 and row["threshold"] == 1.2
    assert f"{own_ratio(load, days, 7, 28):.2f}×" in row["detail"]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_cold_snap_raising_everyone_does_not_flag_but_an_inflator_within_it_does(
    seed: int,
) -> None:
    load, days, meters = population(seed)
    window = before_event(28)
    load[:, window] *= 1.3  # everyone
    assert baseline_inflation(load, days, days[EVENTS], meters=meters).empty
    load[3][window] *= 1.4
    flags = baseline_inflation(load, days, days[EVENTS], meters=meters)
    assert flags["resource_id"].tolist() == ["meter:home:3"]
    assert f"{own_ratio(load, days, 3, 28):.2f}×" in flags["detail"].iloc[0]
    assert 1.2 < flags["measure"].iloc[0] < 1.7  # ≈ 1.4 against the peers' 1.3


@settings(max_examples=25)
@given(st.floats(0.01, 100.0), st.integers(0, 3))
def test_flags_do_not_depend_on_the_unit_of_load(scale: float, seed: int) -> None:
    load, days, meters = population(seed, n_meters=20)
    load[2][before_event(28)] *= 1.5
    s = MonitorSettings(min_load_kw=0.0)
    a = baseline_inflation(load, days, days[EVENTS], meters=meters, settings=s)
    b = baseline_inflation(load * scale, days, days[EVENTS], meters=meters, settings=s)
    assert a["resource_id"].tolist() == b["resource_id"].tolist() == ["meter:home:2"]
    np.testing.assert_allclose(a["measure"], b["measure"], rtol=1e-9)


def test_peer_groups_are_compared_separately() -> None:
    load, days, meters = population(1)
    window = before_event(28)
    group = np.array(["north"] * 32 + ["south"] * 8)
    load[32:, window] *= 1.5  # a cold snap in the south only
    assert baseline_inflation(load, days, days[EVENTS], meters=meters, peer_group=group).empty
    flagged = baseline_inflation(load, days, days[EVENTS], meters=meters)  # one pool
    south = {f"home:{i}" for i in range(32, 40)}
    assert set(flagged["participant_id"]) <= south and len(flagged) >= 6  # pooled


def test_baseline_inflation_rejects_bad_input() -> None:
    load, days, meters = population(0)
    with pytest.raises(InvalidInputError, match="2027-01-01"):
        baseline_inflation(load, days, ["2027-01-01"], meters=meters)
    with pytest.raises(InvalidInputError, match="shape"):
        baseline_inflation(load[0], days, days[EVENTS])
    with pytest.raises(InvalidInputError, match="day_index"):
        baseline_inflation(load, days[:-1], days[EVENTS])
    with pytest.raises(InvalidInputError, match="one row per meter"):
        baseline_inflation(load, days, days[EVENTS], meters=meters.iloc[:3])


# --- 2. repeated non-delivery ---------------------------------------------------------------


def commitments_table(failures: dict[str, list[bool]], spacing_days: float = 2.0) -> pd.DataFrame:
    rows = []
    for p, fails in failures.items():
        for k, fail in enumerate(fails):
            rows.append(
                {
                    "design": "flex",
                    "participant_id": p,
                    "resource_id": f"battery:{p}",
                    "node_id": p,
                    "interval_start": T0 + pd.Timedelta(days=spacing_days * k, hours=17),
                    "duration_h": 2.0,
                    "committed_kwh": 10.0,
                    "delivered_kwh": 1.5 if fail else 9.6,
                }
            )
    return pd.DataFrame(rows)


def test_a_participant_failing_4_of_5_is_flagged_and_one_failing_1_of_5_is_not() -> None:
    c = commitments_table(
        {
            "home:bad": [False, True, True, True, True],
            "home:unlucky": [False, False, True, False, False],
            "home:good": [False] * 5,
        }
    )
    flags = repeated_non_delivery(c)
    assert flags["participant_id"].tolist() == ["home:bad"]
    row = flags.iloc[0]
    assert row["check"] == "non_delivery" and row["resource_id"] == "battery:home:bad"
    assert row["measure"] == 4 and row["threshold"] == 3 and row["n_intervals"] == 4
    assert row["interval_start"] == T0 + pd.Timedelta(days=2, hours=17)
    assert "failed 4 of 4 commitments" in row["detail"] and "6.0 of 40.0 kWh" in row["detail"]


def test_failures_spread_beyond_the_window_do_not_flag() -> None:
    c = commitments_table({"home:slow": [True, True, True, True]}, spacing_days=20.0)
    assert repeated_non_delivery(c).empty  # never 3 within 30 days
    assert len(repeated_non_delivery(c, window=pd.Timedelta(days=45))) == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_honest_participants_deliver_within_tolerance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = commitments_table({f"home:{i}": [False] * 12 for i in range(30)}, spacing_days=3.0)
    c["delivered_kwh"] = c["committed_kwh"] * rng.uniform(0.91, 1.1, len(c))
    assert repeated_non_delivery(c).empty


def brute_force(c: pd.DataFrame, tol: float, k: int, w: pd.Timedelta, share: float) -> set[str]:
    out = set()
    for p, g in c.groupby("participant_id"):
        t = g["interval_start"].tolist()
        fail = (g["delivered_kwh"] < g["committed_kwh"] * (1 - tol)).tolist()
        for i in range(len(t)):
            inside = [j for j in range(len(t)) if t[i] - w < t[j] <= t[i]]
            n_fail = sum(fail[j] for j in inside)
            if fail[i] and n_fail >= k and n_fail >= share * len(inside):
                out.add(str(p))
    return out


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 90), st.floats(0.0, 1.2)),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 4),
    st.sampled_from([0.0, 0.5, 0.8]),
)
def test_non_delivery_matches_a_brute_force_window_scan(
    events: list[tuple[int, int, float]], k: int, share: float
) -> None:
    seen: set[tuple[int, int]] = set()
    rows = []
    for p, day, frac in events:
        if (p, day) in seen:
            continue
        seen.add((p, day))
        rows.append(
            {
                "design": "flex",
                "participant_id": f"p{p}",
                "resource_id": f"r{p}",
                "node_id": f"n{p}",
                "interval_start": T0 + pd.Timedelta(days=day),
                "duration_h": 1.0,
                "committed_kwh": 4.0,
                "delivered_kwh": 4.0 * frac,
            }
        )
    c = pd.DataFrame(rows)
    w = pd.Timedelta(days=30)
    got = set(repeated_non_delivery(c, 0.1, k, w, share)["participant_id"].astype(str))
    assert got == brute_force(c, 0.1, k, w, share)


def test_non_delivery_rejects_bad_commitments() -> None:
    c = commitments_table({"home:x": [True, False]})
    c.loc[1, "committed_kwh"] = 0.0
    with pytest.raises(InvalidInputError, match="home:x"):
        repeated_non_delivery(c)
    with pytest.raises(InvalidInputError, match="delivered_kwh"):
        repeated_non_delivery(c.drop(columns="delivered_kwh"))


# --- 3. feeder consistency ------------------------------------------------------------------


def feeder_tree(n_homes: int) -> Tree:
    """TSO → DSO (substation meter) → feeder → homes and one aggregator portfolio."""
    b = TreeBuilder()
    b.add("tso", Kind.TSO, None, "tso")
    b.add("dso:a", Kind.DSO, "tso", "dso:a", area=0)
    b.add("feeder:a/1", Kind.FEEDER, "dso:a", "dso:a", area=0, bus=0)
    for h in range(n_homes):
        b.add(f"home:{h}", Kind.HOME, "feeder:a/1", f"home:{h}", area=0, bus=h + 1)
    b.add("agg:x/a", Kind.AGGREGATOR, "feeder:a/1", "agg:x", area=0, bus=1)
    return b.build()


def feeder_readings(
    seed: int, n_homes: int, hours: int = 24, loss_share: float = 0.03
) -> tuple[np.ndarray, np.ndarray]:
    """Hourly true net kWh (meters × hours) of the homes and the aggregator (PV export at
    midday) and the losses per hour (kWh, 1.8–3 % of the energy through the meters); the
    substation meter reads Σ true net + losses."""
    rng = np.random.default_rng(seed)
    n = n_homes + 1
    net = rng.uniform(0.3, 3.0, (n, hours)) - rng.uniform(0.0, 1.0, (n, hours)) * (
        np.arange(hours) % 24 >= 10
    ) * (np.arange(hours) % 24 <= 15)
    losses = loss_share * np.abs(net).sum(axis=0) * rng.uniform(0.6, 1.0, hours)
    return net, losses


def meter_table(tree: Tree, net: np.ndarray, substation: np.ndarray) -> pd.DataFrame:
    """METER records: one reading per meter (homes, aggregator, then the DSO) and hour."""
    nodes = [str(x) for x in tree.id if str(x).startswith(("home:", "agg:"))] + ["dso:a"]
    owner = {str(i): str(o) for i, o in zip(tree.id, tree.owner, strict=True)}
    kwh = np.vstack([net, substation[None, :]])
    m, h = kwh.shape
    node = np.repeat(np.array(nodes, dtype=object), h)
    return METER.frame(
        {
            "design": "bau",
            "market_id": "dso:a",
            "stage": "tariff",
            "interval_start": np.tile(pd.date_range(T0, periods=h, freq="h").values, m),
            "duration_h": 1.0,
            "participant_id": np.array([owner[x] for x in node], dtype=object),
            "resource_id": np.char.add("meter:", node.astype(str)),
            "node_id": node,
            "import_kwh": np.clip(kwh.ravel(), 0, None),
            "export_kwh": np.clip(-kwh.ravel(), 0, None),
            "quality": "measured",
        }
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_an_honest_feeder_is_consistent(seed: int) -> None:
    tree = feeder_tree(5)
    net, losses = feeder_readings(seed, 5)
    meter = meter_table(tree, net, net.sum(axis=0) + losses)
    assert feeder_consistency(meter, tree).empty
    loss = pd.DataFrame(
        {
            "design": "bau",
            "node_id": "dso:a",
            "interval_start": pd.date_range(T0, periods=24, freq="h"),
            "losses_kwh": losses,
        }
    )
    assert feeder_consistency(meter, tree, losses_kwh=loss).empty
    cap = {f"meter:{x}": 5.0 for x in tree.id if str(x).startswith(("home:", "agg:"))}
    assert physical_capability(meter, cap).empty


@pytest.mark.parametrize("seed", SEEDS)
def test_a_home_under_reporting_half_its_import_for_6_hours_is_one_feeder_flag(
    seed: int,
) -> None:
    tree = feeder_tree(5)
    net, losses = feeder_readings(seed, 5)
    substation = net.sum(axis=0) + losses
    reported = net.copy()
    hours = np.arange(17, 23)
    net[2, hours] = np.abs(net[2, hours]) + 2.0  # an evening load (kWh) …
    substation = net.sum(axis=0) + losses
    reported[2, hours] = 0.5 * net[2, hours]  # … of which the meter reports half
    meter = meter_table(tree, reported, substation)
    flags = feeder_consistency(meter, tree)
    assert len(flags) == 1
    row = flags.iloc[0]
    assert (row["check"], row["node_id"], row["resource_id"], row["participant_id"]) == (
        "feeder_consistency",
        "dso:a",
        "meter:dso:a",
        "dso:a",
    )
    assert row["n_intervals"] == 6
    assert row["interval_start"] == T0 + pd.Timedelta(hours=17)
    residual = float((substation - reported.sum(axis=0))[hours].sum())
    assert f"residual {residual:.2f} kWh" in row["detail"] and "under-report" in row["detail"]
    assert row["measure"] > row["threshold"] == 0.08


def test_theft_hidden_in_the_loss_band_of_a_large_feeder_is_found_with_the_losses() -> None:
    tree = feeder_tree(40)
    net, losses = feeder_readings(0, 40)
    hours = np.arange(17, 23)
    reported = net.copy()
    net[4, hours] = 3.0
    reported[4, hours] = 1.5
    substation = net.sum(axis=0) + losses
    meter = meter_table(tree, reported, substation)
    assert feeder_consistency(meter, tree).empty  # 1.5 kWh of ~70 kWh: inside the band
    loss = pd.DataFrame(
        {
            "design": "bau",
            "node_id": "dso:a",
            "interval_start": pd.date_range(T0, periods=24, freq="h"),
            "losses_kwh": losses,
        }
    )
    flags = feeder_consistency(meter, tree, losses_kwh=loss)
    assert len(flags) == 1 and flags["n_intervals"].iloc[0] == 6
    assert flags["measure"].iloc[0] == pytest.approx(6 * 1.5)
    assert "9.00 kWh unaccounted for" in flags["detail"].iloc[0]
    with pytest.raises(InvalidInputError, match="no finite losses"):
        feeder_consistency(meter, tree, losses_kwh=loss.iloc[:-1])


def test_over_reporting_meters_flag_below_the_band() -> None:
    tree = feeder_tree(5)
    net, losses = feeder_readings(2, 5)
    reported = net.copy()
    reported[0, 3:5] += 3.0  # a meter claims 3 kWh more than flowed, for 2 h
    meter = meter_table(tree, reported, net.sum(axis=0) + losses)
    flags = feeder_consistency(meter, tree)
    assert len(flags) == 1 and flags["n_intervals"].iloc[0] == 2
    assert flags["threshold"].iloc[0] == 0.0 and flags["measure"].iloc[0] < 0
    assert "below the loss band" in flags["detail"].iloc[0]


def test_nested_substation_meters_compare_each_with_the_meters_just_below() -> None:
    """A metered feeder head inside the area: the DSO meter is compared with the feeder
    meter (not with the homes again), the feeder meter with its homes."""
    tree = feeder_tree(5)
    net, losses = feeder_readings(1, 5)
    feeder = net.sum(axis=0) + losses
    dso = feeder + 0.01 * feeder  # the MV part's own losses
    meter = meter_table(tree, net, dso)
    extra = meter_table(tree, net, feeder)
    extra = extra[extra["node_id"] == "dso:a"].assign(
        node_id="feeder:a/1", resource_id="meter:feeder:a/1"
    )
    both = METER.concat([meter, METER.frame({c: extra[c].to_numpy() for c in METER.names})])
    assert feeder_consistency(both, tree).empty
    both.loc[both["resource_id"] == "meter:feeder:a/1", "import_kwh"] *= 0.5
    flags = feeder_consistency(both, tree)
    # Halving the feeder meter: the feeder looks over-reported below, the DSO under-reported.
    assert set(zip(flags["node_id"], flags["threshold"], strict=True)) == {
        ("feeder:a/1", 0.0),
        ("dso:a", 0.08),
    }


# --- 4. physical capability -----------------------------------------------------------------


def test_a_reading_of_three_times_capacity_is_flagged() -> None:
    tree = feeder_tree(3)
    net, losses = feeder_readings(0, 3)
    net = np.clip(net, 0.3, 3.0)
    meter = meter_table(tree, net, net.sum(axis=0) + losses)
    cap = {f"meter:home:{h}": 5.0 for h in range(3)} | {"meter:agg:x/a": 5.0}
    assert physical_capability(meter, cap).empty
    at = (meter["resource_id"] == "meter:home:1") & (
        meter["interval_start"] == T0 + pd.Timedelta(hours=9)
    )
    meter.loc[at, "import_kwh"] = 15.0
    flags = physical_capability(meter, cap)
    assert len(flags) == 1
    row = flags.iloc[0]
    assert (row["check"], row["resource_id"], row["participant_id"], row["n_intervals"]) == (
        "physical_capability",
        "meter:home:1",
        "home:1",
        1,
    )
    assert row["interval_start"] == T0 + pd.Timedelta(hours=9)
    assert row["measure"] == 15.0 and row["threshold"] == pytest.approx(5.5)
    assert "15.00 kW of import" in row["detail"] and "3.0×" in row["detail"]


def test_negative_and_non_finite_readings_are_invalid() -> None:
    tree = feeder_tree(3)
    net, losses = feeder_readings(0, 3)
    meter = meter_table(tree, net, net.sum(axis=0) + losses)
    home0 = meter["resource_id"] == "meter:home:0"
    meter.loc[
        home0 & meter["interval_start"].between(T0, T0 + pd.Timedelta(hours=2)), "import_kwh"
    ] = np.nan
    meter.loc[
        (meter["resource_id"] == "meter:home:2") & (meter["interval_start"] == T0), "export_kwh"
    ] = -0.7
    flags = physical_capability(meter, {})
    got = flags[["check", "resource_id", "n_intervals", "measure"]].astype(str).values.tolist()
    assert got == [
        ["invalid_reading", "meter:home:0", "3", "nan"],
        ["invalid_reading", "meter:home:2", "1", "-0.7"],
    ]
    assert "-0.700 kWh" in flags["detail"].iloc[1]
    # The feeder check does not judge intervals with an invalid reading.
    assert not (
        feeder_consistency(meter, tree)["interval_start"] <= T0 + pd.Timedelta(hours=2)
    ).any()


def test_bad_tables_and_settings_are_rejected() -> None:
    tree = feeder_tree(2)
    net, losses = feeder_readings(0, 2)
    meter = meter_table(tree, net, net.sum(axis=0) + losses)
    with pytest.raises(InvalidInputError, match="import_kwh"):
        monitor(meter.drop(columns="import_kwh"), tree)
    stray = meter.copy()
    stray["node_id"] = stray["node_id"].cat.rename_categories({"home:1": "home:99"})
    with pytest.raises(InvalidInputError, match="home:99"):
        feeder_consistency(stray, tree)
    with pytest.raises(InvalidInputError, match="loss band"):
        MonitorSettings(loss_band=(0.1, 0.0))
    with pytest.raises(InvalidInputError, match="tolerance"):
        MonitorSettings(tolerance=1.5)


def test_capacities_must_be_positive() -> None:
    tree = feeder_tree(2)
    net, losses = feeder_readings(0, 2)
    meter = meter_table(tree, net, net.sum(axis=0) + losses)
    with pytest.raises(InvalidInputError, match="meter:home:1"):
        physical_capability(meter, {"meter:home:0": 5.0, "meter:home:1": 0.0})


# --- monitor: every check, with coverage ----------------------------------------------------


def test_monitor_runs_what_has_input_and_says_what_did_not_run() -> None:
    tree = feeder_tree(5)
    net, losses = feeder_readings(0, 5)
    meter = meter_table(tree, net, net.sum(axis=0) + losses)
    result = monitor(meter, tree)
    assert result.flags.empty
    cov = result.coverage.set_index("check")
    assert list(cov.index) == list(CHECKS)
    assert cov.loc["non_delivery", "detail"] == "not run: no commitments"
    assert cov.loc["baseline_inflation", "status"] == "not run"
    assert cov.loc["physical_capability", "status"] == "not run"
    assert cov.loc["feeder_consistency", "status"] == "run"
    assert cov.loc["invalid_reading", "n_assessed"] == len(meter)
    assert "not run: no commitments" in report_tables(result)


def test_monitor_collects_every_kind_of_flag() -> None:
    tree = feeder_tree(5)
    net, losses = feeder_readings(0, 5, hours=24 * 21)
    net[4, 13 * 24 : 18 * 24] *= 1.4  # home:4 runs extra load on the 5 days before the event
    reported = net.copy()
    reported[1, 30:36] = 0.0  # theft for 6 h
    reported[3, 461] = 40.0  # impossible (after the event: outside every baseline window)
    meter = meter_table(tree, reported, net.sum(axis=0) + losses)
    cap = {f"meter:home:{h}": 6.0 for h in range(5)}
    c = commitments_table({"agg:x": [True, True, True, False]})
    result = monitor(
        meter,
        tree,
        event_days=["2026-01-23"],
        commitments=c,
        capacity_kw=cap,
        settings=MonitorSettings(window_days=5, reference_days=10),
    )
    got = {(str(r.check), str(r.resource_id)) for r in result.flags.itertuples()}
    assert got == {
        ("baseline_inflation", "meter:home:4"),
        ("non_delivery", "battery:agg:x"),
        ("feeder_consistency", "meter:dso:a"),  # home:1's theft and home:3's 40 kWh
        ("physical_capability", "meter:home:3"),
    }
    inflated = result.flags[result.flags["check"] == "baseline_inflation"].iloc[0]
    assert inflated["interval_start"] == T0 + pd.Timedelta(days=13)
    cov = result.coverage.set_index("check")
    assert cov.loc["physical_capability", "status"] == "partial"  # the aggregator has none
    assert cov.loc["baseline_inflation", "status"] in ("run", "partial")
    assert (
        cov["n_flagged"]
        == result.flags.groupby("check", observed=True).size().reindex(cov.index, fill_value=0)
    ).all()
    assert "| feeder_consistency |" in report_tables(result)


def test_daily_load_reshapes_readings_into_days_and_slots() -> None:
    tree = feeder_tree(2)
    net, losses = feeder_readings(0, 2, hours=48)
    meter = meter_table(tree, net, net.sum(axis=0) + losses)
    load, days, ids = daily_load(meter, tz="Europe/Berlin")
    assert load.shape == (4, 3, 24)  # 48 UTC hours span three Berlin days
    m = ids["resource_id"].tolist().index("meter:home:1")
    # 00:00 UTC is 01:00 in Berlin (winter): slot 1 of the first local day.
    assert load[m, 0, 1] == pytest.approx(net[1, 0])
    assert np.isnan(load[m, 0, 0])
    assert str(days[0]) == "2026-01-05 00:00:00+01:00"


def test_daily_load_gives_the_spring_forward_day_23_slots() -> None:
    tree = feeder_tree(1)
    net, losses = feeder_readings(0, 1, hours=71)  # 24 + 23 + 24 local hours
    meter = meter_table(tree, net, net.sum(axis=0) + losses)
    shift = pd.Timestamp("2026-03-27T23:00Z") - T0  # Berlin midnight before the 29 March change
    meter["interval_start"] = meter["interval_start"] + shift
    load, days, ids = daily_load(meter, tz="Europe/Berlin")
    assert [str(d.date()) for d in days] == ["2026-03-28", "2026-03-29", "2026-03-30"]
    finite = np.isfinite(load).sum(axis=2)
    assert finite.tolist() == [[24, 23, 24]] * 3  # home, aggregator, substation
    home = ids["resource_id"].tolist().index("meter:home:0")
    np.testing.assert_allclose(load[home, 1, :23], net[0, 24:47])  # 1-h readings: kW = kWh


# --- a real run: the runner's meters (substation = AC power flow) are consistent -----------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimResults, World]:
    prices = tmp_path_factory.mktemp("monitor") / "prices.csv"
    prices.write_text("start,price\n2016-07-01T00:00:00Z,40\n2016-07-12T22:00:00Z,90\n")
    sc = parse_scenario(
        {
            "name": "monitor",
            "feeder": "pandapower:kerber_landnetz_kabel_1",
            "start": "2016-07-12T18:00:00Z",
            "end": "2016-07-13T00:00:00Z",
            "market_interval_min": 15,
            "powerflow_interval_min": 30,
            "designs": ["bau-flat", "total-dso"],
            "seed": 5,
            "homes_per_load": 3,
            "der": {"penetration": {"ev": 60, "pv": 50, "battery": 30}},
            "aggregator": {"devices": ["battery"]},
            "wholesale": {"source": "prices", "prices": str(prices)},
        }
    )
    return runner.run(sc), build_world(sc)


def test_the_runners_meters_agree_with_its_power_flow(real_run: tuple[SimResults, World]) -> None:
    res, world = real_run
    tree = world.plan.tree
    assert feeder_consistency(res.meter, tree).empty
    # With the power flow's own losses (kW per step, spread over its market intervals).
    dso = {
        a: str(tree.id[(tree.kind == "dso") & (tree.area == i)][0])
        for i, a in enumerate(world.area_names)
    }
    grid = res.grid
    rows = []
    for k in range(2):  # two market intervals per 30-min power-flow step
        rows.append(
            pd.DataFrame(
                {
                    "design": grid["design"],
                    "node_id": grid["area"].map(dso),
                    "interval_start": pd.to_datetime(grid["time"], utc=True)
                    + pd.Timedelta(minutes=15 * k),
                    "losses_kwh": grid["losses_kw"] * 0.25,
                }
            )
        )
    loss = pd.concat(rows, ignore_index=True)
    assert feeder_consistency(res.meter, tree, losses_kwh=loss).empty
    helper = losses_from_grid(res.grid, res.meter, tree, world.area_names)
    both = loss.merge(helper, on=["design", "node_id", "interval_start"], validate="one_to_one")
    assert len(both) == len(loss) == len(helper)
    np.testing.assert_allclose(both["losses_kwh_x"], both["losses_kwh_y"], rtol=1e-12)
    cov = monitor(res.meter, tree, losses_kwh=loss).coverage.set_index("check")
    assert cov.loc["feeder_consistency", "status"] == "run"  # every interval assessed
    assert cov.loc["feeder_consistency", "n_assessed"] == 2 * 24 * 4 + 2 * 6 * 4
    with pytest.raises(InvalidInputError, match="two rows"):
        feeder_consistency(res.meter, tree, losses_kwh=pd.concat([loss, loss.iloc[:1]]))
    # The home that imports most from 20:00 to 22:00 stops reporting its import then.
    meter = res.meter.copy()
    t = meter["interval_start"]
    window = (t >= pd.Timestamp("2016-07-12T20:00Z")) & (t < pd.Timestamp("2016-07-12T22:00Z"))
    mine = meter["node_id"].astype(str).str.startswith("home:") & (meter["design"] == "bau-flat")
    victim = meter[mine & window].groupby("resource_id", observed=True)["import_kwh"].sum().idxmax()
    at = (meter["resource_id"] == victim) & (meter["design"] == "bau-flat") & window
    stolen = meter.loc[at, "import_kwh"].sum()
    meter.loc[at, "import_kwh"] = 0.0
    flags = feeder_consistency(meter, tree, losses_kwh=loss)
    assert set(flags["design"].astype(str)) == {"bau-flat"}
    assert len(flags) >= 1 and (flags["measure"] > 0).all()
    assert flags["interval_start"].min() >= pd.Timestamp("2016-07-12T20:00Z")
    end = flags["interval_start"] + pd.to_timedelta(flags["n_intervals"] * 15, unit="min")
    assert end.max() <= pd.Timestamp("2016-07-12T22:00Z")
    assert flags["measure"].sum() <= stolen + 1e-6
