"""VEE: plausibility flags, interpolation and like-day estimates with known answers, a
loop-based reference cross-check, estimates kept apart from measured values, audited edits."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transactive.errors import InvalidInputError
from transactive.settlement.meter_data import (
    IngestError,
    MarketGrid,
    MeterStore,
    Registry,
    ingest,
    make_message,
    meter_table,
    simulated_keys,
)
from transactive.settlement.vee import edit, estimate, like_day_source, local_slots, validate

TZ = "Europe/Berlin"
# Monday 2026-03-23 00:00 local, hourly for 10 local days; DST starts Sunday 2026-03-29
GRID = MarketGrid(pd.Timestamp("2026-03-22T23:00Z"), 60, 239)
H = pd.Timedelta(hours=1)
METERS = ("m1", "m2")
KEYS = simulated_keys(METERS, 5)
REG = Registry.from_keys(KEYS, {"m1": "p1", "m2": "p2"}, {"m1": "n1", "m2": "n2"}, max_kw=5.0)
LOCAL = GRID.starts.tz_convert(TZ)


def slots_at(day: str, hours: range) -> list[int]:
    """Grid slots of local ``day`` (YYYY-MM-DD) at the local hours given."""
    t = pd.DatetimeIndex([pd.Timestamp(f"{day} {h:02d}:00", tz=TZ) for h in hours])
    return [GRID.slot(x) for x in t]


def ramp(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Known series: import 100 + 3k Wh, export 2000 − 6k Wh (both exact when interpolated)."""
    return 100 + 3 * k, 2000 - 6 * k


def store_with(
    drop: dict[str, list[int]] | None = None,
    quality: dict[str, dict[int, str]] | None = None,
    values: dict[str, dict[int, int]] | None = None,
) -> MeterStore:
    """Both meters' ramps over the whole grid, without the ``drop`` slots; per-slot quality
    and import overrides."""
    store = MeterStore.for_registry(REG, GRID)
    msgs = []
    for m in METERS:
        k = np.setdiff1d(np.arange(GRID.n_intervals), (drop or {}).get(m, []))
        imp, exp = ramp(k)
        for s, v in (values or {}).get(m, {}).items():
            imp[k == s] = v
        q = np.array(["measured"] * len(k), dtype=object)
        for s, label in (quality or {}).get(m, {}).items():
            q[k == s] = label
        s = GRID.starts[k]
        msgs.append(
            make_message(KEYS[m], REG.participant_id[METERS.index(m)], s, s + H, imp, exp, q)
        )
    ingest(store, msgs, REG, GRID)
    return store


def reading(store: MeterStore, meter: str, slot: int) -> pd.Series:
    t = store.table()
    row = t[(t["meter_id"] == meter) & (t["interval_start"] == GRID.starts[slot])]
    assert len(row) == 1
    return row.iloc[0]


def test_local_slots_follow_the_local_clock() -> None:
    day, minute, kind = local_slots(GRID.starts, TZ)
    assert (minute == LOCAL.hour * 60).all()
    assert (kind == (LOCAL.dayofweek >= 5)).all()
    assert len(np.unique(day)) == 10
    assert np.bincount(day - day.min()).tolist() == [24] * 6 + [23] + [24] * 3  # DST day


def test_one_interval_gap_in_a_ramp_is_interpolated_exactly() -> None:
    store = store_with({"m1": [10], "m2": [50, 51]})
    est = estimate(store, REG, TZ)
    assert len(est.estimated) == 3 and est.missing.empty
    assert set(est.estimated["rule"]) == {"interpolated"}
    for meter, slot in (("m1", 10), ("m2", 50), ("m2", 51)):
        r = reading(store, meter, slot)
        imp, exp = ramp(np.array(slot))
        assert (r["import_wh"], r["export_wh"]) == (imp, exp)
        assert (r["quality"], r["rule"], r["message"]) == ("estimated", "interpolated", -1)


def test_interpolation_rounds_half_to_even() -> None:
    store = store_with({"m1": [31]}, values={"m1": {30: 101, 32: 102}})
    estimate(store, REG, TZ)
    assert reading(store, "m1", 31)["import_wh"] == 102  # (101 + 102) / 2 = 101.5 → 102
    store = store_with({"m1": [31]}, values={"m1": {30: 100, 32: 101}})
    estimate(store, REG, TZ)
    assert reading(store, "m1", 31)["import_wh"] == 100  # 100.5 → 100


def test_long_gap_takes_yesterdays_value_on_a_weekday() -> None:
    gap = slots_at("2026-03-25", range(10, 14))  # Wednesday, 4 h > max_interpolate
    store = store_with({"m1": gap})
    est = estimate(store, REG, TZ)
    assert set(est.estimated["rule"]) == {"like-day"}
    source = slots_at("2026-03-24", range(10, 14))  # Tuesday, same local hours
    for g, s in zip(gap, source, strict=True):
        r = reading(store, "m1", g)
        assert r["import_wh"] == ramp(np.array(s))[0] and r["rule"] == "like-day"
    assert list(est.estimated["source_start"]) == list(GRID.starts[source])


def test_like_day_matches_local_clock_across_daylight_saving() -> None:
    gap = slots_at("2026-03-30", range(9, 13))  # Monday after DST: last weekday is Friday
    source = slots_at("2026-03-27", range(9, 13))
    assert GRID.starts[gap[0]].hour == 7 and GRID.starts[source[0]].hour == 8  # UTC differs
    store = store_with({"m2": gap})
    est = estimate(store, REG, TZ, max_interpolate=1)
    assert list(est.estimated["source_start"]) == list(GRID.starts[source])
    assert [reading(store, "m2", g)["export_wh"] for g in gap] == list(ramp(np.array(source))[1])


def test_weekend_days_substitute_weekend_days() -> None:
    sunday = slots_at("2026-03-29", range(14, 18))
    saturday = slots_at("2026-03-28", range(14, 18))
    store = store_with({"m1": sunday + saturday})
    est = estimate(store, REG, TZ)
    # Sunday takes Saturday's value, but Saturday was missing too and estimates are not sources:
    # there is no earlier weekend day in the period, so both stay missing
    assert est.estimated.empty
    assert sorted(est.missing["interval_start"]) == sorted(GRID.starts[sunday + saturday])
    store = store_with({"m1": sunday})
    estimate(store, REG, TZ)
    assert [reading(store, "m1", g)["import_wh"] for g in sunday] == list(
        ramp(np.array(saturday))[0]
    )


def test_like_day_skips_days_without_a_measured_value() -> None:
    gap = slots_at("2026-03-26", range(0, 5))  # Thursday
    tuesday = slots_at("2026-03-24", range(0, 5))
    wednesday = slots_at("2026-03-25", range(0, 5))
    store = store_with({"m1": gap}, quality={"m1": {s: "estimated" for s in wednesday}})
    estimate(store, REG, TZ)
    got = [reading(store, "m1", g)["import_wh"] for g in gap]
    assert got == list(ramp(np.array(tuesday))[0])  # Wednesday's were meter estimates


def test_gap_with_no_rule_stays_missing_and_is_reported() -> None:
    store = store_with({"m1": [0, 1, 2], "m2": list(range(GRID.n_intervals))[:-1]})
    n = len(store)
    est = estimate(store, REG, TZ)
    # m1: the first three hours of the period have no earlier neighbour and no earlier day;
    # m2: one reading only (the last) — nothing to interpolate, no earlier day measured
    assert len(est.missing) == 3 + GRID.n_intervals - 1
    assert set(est.missing["meter_id"]) == {"m1", "m2"}
    assert est.estimated.empty and len(store) == n


def test_short_gap_without_measured_neighbours_falls_back_to_like_day() -> None:
    wed = slots_at("2026-03-25", range(6, 7))
    nxt = wed[0] + 1
    store = store_with({"m1": wed}, quality={"m1": {nxt: "estimated"}})
    est = estimate(store, REG, TZ)
    (row,) = est.estimated.itertuples()
    assert row.rule == "like-day"
    assert row.import_wh == ramp(np.array(slots_at("2026-03-24", range(6, 7))))[0][0]


def test_estimates_are_never_reported_as_measured() -> None:
    gap = {"m1": [10, 40, 41, 42, 43, 100], "m2": [5]}
    store = store_with(gap)
    measured_before = meter_table(store, REG, "d", "mk", "real-time")
    estimate(store, REG, TZ)
    after = meter_table(store, REG, "d", "mk", "real-time")
    is_est = after["quality"] == "estimated"
    assert is_est.sum() == 7
    est_slots = {(m, GRID.starts[s]) for m, slots in gap.items() for s in slots}
    got = set(
        zip(after.loc[is_est, "resource_id"], after.loc[is_est, "interval_start"], strict=True)
    )
    assert got == est_slots
    measured = after[~is_est].reset_index(drop=True)
    pd.testing.assert_frame_equal(measured, measured_before, check_categorical=False)
    again = estimate(store, REG, TZ)  # nothing is missing any more
    assert again.estimated.empty and again.missing.empty


def test_a_later_measured_reading_replaces_an_estimate_and_is_audited() -> None:
    store = store_with({"m1": [10, 11]})
    estimate(store, REG, TZ)
    before = reading(store, "m1", 10)
    s = GRID.starts[[10]]
    late = make_message(KEYS["m1"], "p1", s, s + H, [777], [1], "measured")
    report = ingest(store, [late], REG, GRID)
    assert report.replaced_estimates == 1
    r = reading(store, "m1", 10)
    assert (r["import_wh"], r["quality"], r["rule"]) == (777, "measured", "meter")
    assert store.messages[r["message"]].message() == late
    (entry,) = store.audit
    assert entry.action == "measured-replaces-estimate"
    assert entry.old == (before["import_wh"], before["export_wh"], "estimated", "interpolated")
    assert entry.new == (777, 1, "measured", "meter")
    # a meter-side estimate does not replace a VEE estimate, and a measured one is final
    s11 = GRID.starts[[11]]
    for msg in (
        make_message(KEYS["m1"], "p1", s11, s11 + H, [5], [0], "estimated"),
        make_message(KEYS["m1"], "p1", s, s + H, [778], [0], "measured"),
    ):
        with pytest.raises(IngestError, match="already stored"):
            ingest(store, [msg], REG, GRID)


def test_implausible_readings_are_flagged_not_fixed_and_not_used() -> None:
    k = slots_at("2026-03-24", range(10, 11))[0]  # Tuesday 10:00 local
    store = store_with({"m1": [k + 1]}, values={"m1": {k: 5001}})  # 5 kW × 1 h = 5000 Wh
    flags = validate(store, REG)
    assert len(flags) == 1
    f = flags.iloc[0]
    assert (f["meter_id"], f["interval_start"], f["flag"]) == ("m1", GRID.starts[k], "implausible")
    assert (f["import_wh"], f["limit_wh"]) == (5001, 5000.0)
    assert reading(store, "m1", k)["import_wh"] == 5001
    est = estimate(store, REG, TZ)
    assert list(est.estimated["rule"]) == ["like-day"]  # the neighbour is not a source
    assert reading(store, "m1", k + 1)["import_wh"] == ramp(np.array(k + 1 - 24))[0]
    assert validate(store_with(), REG).empty


def test_edit_is_reasoned_and_audited() -> None:
    store = store_with({"m2": [7]})
    old = reading(store, "m1", 3)
    entry = edit(store, "m1", GRID.starts[3], 42, 0, "meter swap: register read by technician")
    assert entry.old == (old["import_wh"], old["export_wh"], "measured", "meter")
    assert entry.new == (42, 0, "estimated", "edited") and store.audit == [entry]
    r = reading(store, "m1", 3)
    assert (r["import_wh"], r["quality"], r["rule"]) == (42, "estimated", "edited")
    assert r["message"] == old["message"]  # the signed original stays linked
    added = edit(store, "m2", "2026-03-23T06:00Z", 1, 2, "customer read")
    assert added.old is None and reading(store, "m2", 7)["rule"] == "edited"
    for args, match in (
        (("m1", GRID.starts[3], 1, 1, " "), "reason"),
        (("m1", GRID.starts[3], -1, 1, "x"), "import_wh"),
        (("m1", GRID.starts[3], 1, 1.5, "x"), "export_wh"),
        (("m9", GRID.starts[3], 1, 1, "x"), "not registered"),
        (("m1", "2026-03-23T06:30Z", 1, 1, "x"), "not the start"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            edit(store, *args)  # type: ignore[arg-type]
    assert len(store.audit) == 2


# --- cross-check against a loop-based reading of the rules ------------------------------


@functools.cache
def earlier_same_slots(grid: MarketGrid) -> list[list[int]]:
    """Per interval: the intervals on earlier local days at the same clock time and day type."""
    day, minute, kind = local_slots(grid.starts, TZ)
    return [
        [j for j in range(k) if day[j] < day[k] and minute[j] == minute[k] and kind[j] == kind[k]]
        for k in range(grid.n_intervals)
    ]


def reference(
    grid: MarketGrid, present: np.ndarray, usable: np.ndarray, imp: np.ndarray, max_interp: int
) -> dict[tuple[int, int], tuple[str, int]]:
    """The documented rules, written out per meter and interval with plain loops."""
    n_m, n = present.shape
    same_slot = earlier_same_slots(grid)
    out = {}
    for m in range(n_m):
        for k in range(n):
            if present[m, k]:
                continue
            a = k
            while a >= 0 and not present[m, a]:
                a -= 1
            b = k
            while b < n and not present[m, b]:
                b += 1
            if a >= 0 and b < n and b - a - 1 <= max_interp and usable[m, a] and usable[m, b]:
                v = imp[m, a] + (imp[m, b] - imp[m, a]) * (k - a) / (b - a)
                out[(m, k)] = ("interpolated", int(np.rint(v)))
                continue
            cands = [j for j in same_slot[k] if usable[m, j]]
            if cands:
                out[(m, k)] = ("like-day", int(imp[m, max(cands)]))
    return out


# spring (DST starts) hourly, and autumn at 30 min over the night the clock goes back
GRIDS = (GRID, MarketGrid(pd.Timestamp("2026-10-18T22:00Z"), 30, 8 * 48))


@pytest.mark.parametrize("grid", GRIDS, ids=["spring-1h", "autumn-30min"])
@given(
    seed=st.integers(0, 2**32 - 1),
    p_missing=st.floats(0.0, 0.9),
    max_interp=st.integers(0, 3),
)
def test_estimates_match_a_loop_reference(
    grid: MarketGrid, seed: int, p_missing: float, max_interp: int
) -> None:
    rng = np.random.default_rng(seed)
    n = grid.n_intervals
    present = rng.random((2, n)) >= p_missing
    meter_est = present & (rng.random((2, n)) < 0.1)
    imp = rng.integers(0, 2500, size=(2, n))  # ≤ 5 kW × 30 min: all plausible
    store = MeterStore.for_registry(REG, grid)
    msgs = []
    dt = pd.Timedelta(minutes=grid.interval_min)
    for m in range(2):
        k = np.flatnonzero(present[m])
        if not len(k):
            continue
        s = grid.starts[k]
        q = np.where(meter_est[m, k], "estimated", "measured")
        msgs.append(make_message(KEYS[METERS[m]], f"p{m + 1}", s, s + dt, imp[m, k], 0 * k, q))
    ingest(store, msgs, REG, grid)
    est = estimate(store, REG, TZ, max_interpolate=max_interp)
    got = {
        (METERS.index(r.meter_id), grid.slot(r.interval_start)): (r.rule, r.import_wh)
        for r in est.estimated.itertuples()
    }
    want = reference(grid, present, present & ~meter_est, imp, max_interp)
    assert got == want
    assert len(est.missing) == (~present).sum() - len(want)


def test_like_day_source_on_a_hand_example() -> None:
    measured = np.ones((1, GRID.n_intervals), bool)
    src = like_day_source(measured, GRID.starts, TZ)[0]
    tue_9 = slots_at("2026-03-24", range(9, 10))[0]
    mon_9 = slots_at("2026-03-23", range(9, 10))[0]
    assert src[tue_9] == mon_9
    assert (src[:24] == -1).all()  # the first Monday has no earlier weekday
    sat = slots_at("2026-03-28", range(0, 24))
    assert (src[sat] == -1).all()  # nor the first Saturday an earlier weekend day
