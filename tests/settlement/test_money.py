"""Money to the cent: rate designs, levies and VAT, periods, the largest remainder, and the
balance check failing on an imbalanced set of lines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from settlement_helpers import DT, NODES, T0, award_frame, meter_frame, small_tree, two_designs

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError, InvalidInputError
from transactive.nodes.tree import Kind, Tree, TreeBuilder
from transactive.settlement import (
    Levy,
    check_balance,
    dso_net_receipts,
    largest_remainder,
    participant_totals,
    period_of,
    revenue_requirement,
    settle,
)
from transactive.settlement.levies import vat_of

RATES = ("fixed", "volumetric", "demand")


def random_tree(homes: list[int]) -> Tree:
    """A TSO, one DSO per entry of ``homes`` with that many homes under one feeder."""
    b = TreeBuilder()
    b.add("tso", Kind.TSO, None, "tso")
    for a, n in enumerate(homes):
        b.add(f"dso:{a}", Kind.DSO, "tso", f"dso:{a}", area=a)
        b.add(f"feeder:{a}", Kind.FEEDER, f"dso:{a}", f"dso:{a}", area=a)
        for h in range(n):
            b.add(f"home:{a}/{h}", Kind.HOME, f"feeder:{a}", f"home:{a}/{h}", area=a)
    return b.build()


def records(
    tree: Tree, net: dict[str, np.ndarray], price: dict[str, np.ndarray], est: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Readings (net kWh per interval × metered node) and awards of a tariff design ``bau``
    and a two-settlement design ``mkt`` (day-ahead position = 0.8 × the reading)."""
    nodes = np.flatnonzero((tree.kind == Kind.HOME) | (tree.kind == Kind.DSO))
    n_t = net["bau"].shape[0]
    meters, awards = [], []
    for t in range(n_t):
        start = T0 + pd.Timedelta(hours=7 * t)  # spans days
        for design, stage in (("bau", "tariff"), ("mkt", "real-time")):
            q = net[design][t]
            ident = {
                "design": design,
                "market_id": "m",
                "stage": stage,
                "interval_start": start,
                "duration_h": DT,
                "participant_id": tree.owner[nodes],
                "resource_id": np.char.add("meter:", tree.id[nodes].astype(str)),
                "node_id": tree.id[nodes],
            }
            meters.append(
                meter_table(ident, q, np.where(est[t], "estimated", "measured").astype(object))
            )
            stages = [("tariff", q / DT, price["bau"][t])] if design == "bau" else [
                ("day-ahead", 0.8 * q / DT, price["da"][t]),
                ("real-time", q / DT, price["rt"][t]),
            ]  # fmt: skip
            for s, kw, p in stages:
                awards.append(award_table({**ident, "stage": s}, kw, p))
    return pd.concat(meters, ignore_index=True), pd.concat(awards, ignore_index=True)


def meter_table(ident: dict[str, object], q: np.ndarray, quality: np.ndarray) -> pd.DataFrame:
    from transactive.core.records import METER

    return METER.frame(
        {
            **ident,
            "import_kwh": np.clip(q, 0, None),
            "export_kwh": np.clip(-q, 0, None),
            "quality": quality,
        }
    )


def award_table(ident: dict[str, object], kw: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    from transactive.core.records import AWARDS

    return AWARDS.frame({**ident, "quantity_kw": kw, "price": p, "status": "cleared"})


@settings(max_examples=30, deadline=None)
@given(
    homes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    n_t=st.integers(1, 5),
    rate=st.sampled_from(RATES),
    levy=st.floats(0, 0.3, allow_nan=False),
    vat=st.sampled_from([0.0, 7.0, 19.0, 20.5]),
    period=st.sampled_from(["whole", "day"]),
    data=st.data(),
)
def test_every_period_balances_to_the_cent_and_every_dso_recovers_its_requirement(
    homes: list[int],
    n_t: int,
    rate: str,
    levy: float,
    vat: float,
    period: str,
    data: st.DataObject,
) -> None:
    tree = random_tree(homes)
    n = int(((tree.kind == Kind.HOME) | (tree.kind == Kind.DSO)).sum())
    kwh = st.floats(-5, 5, allow_nan=False)
    pr = st.floats(-0.2, 1.0, allow_nan=False)
    net = {d: data.draw(arrays(float, (n_t, n), elements=kwh), label=d) for d in ("bau", "mkt")}
    price = {
        k: data.draw(arrays(float, (n_t, n), elements=pr), label=k) for k in ("bau", "da", "rt")
    }
    est = data.draw(arrays(bool, (n_t, n)), label="estimated")
    meter, awards = records(tree, net, price, est)
    levies = [Levy("grid", levy, payee="state")] if levy else []
    lines = settle(meter, awards, tree, "EUR", "bau", rate=rate, levies=levies,
                   vat_percent=vat, period=period)  # fmt: skip
    SETTLEMENT.check(lines)
    assert lines["amount"].dtype == np.int64
    # Zero sum per design and period, computed independently of check_balance.
    per = np.asarray(period_of(lines["interval_start"], period))
    for (_, _), g in lines.groupby([lines["design"].astype(str), per], observed=True):
        paid = g.groupby(g["participant_id"].astype(str))["amount"].sum()
        got = g.groupby(g["counterparty_id"].astype(str))["amount"].sum()
        assert int(paid.sum()) == int(got.sum())
    # Every DSO nets what it kept in bau, exactly, in both designs.
    energy = lines[lines["charge"].isin(["energy"]).to_numpy()]
    req = revenue_requirement(energy, tree, "bau")
    tariff = lines[lines["charge"].isin(["energy", "day_ahead", "real_time", "network"])]
    got_dso = dso_net_receipts(tariff, tree)
    for d in ("bau", "mkt"):
        np.testing.assert_array_equal(got_dso.loc[d].to_numpy(), req.to_numpy())
    # Each line rounded once: priced lines = rint(quantity × price × 100).
    priced = lines[lines["charge"].isin(["energy", "day_ahead", "real_time"]).to_numpy()]
    want = np.rint(priced["quantity_kwh"] * priced["price"] * 100).astype(np.int64)
    np.testing.assert_array_equal(priced["amount"], want)
    # Levies go to the state, per imported kWh of homes only; VAT is its percent of the
    # taxable lines per home and period, rounded once.
    lv = lines[lines["charge"] == "levy:grid"]
    assert set(lv["counterparty_id"].astype(str)) <= {"state"}
    assert lv["participant_id"].astype(str).str.startswith("home:").all()
    vat_lines = lines[lines["charge"] == "vat"]
    if vat:
        taxed = lines[lines["participant_id"].astype(str).str.startswith("home:").to_numpy()]
        taxed = taxed[(taxed["charge"] != "vat").to_numpy()]
        p2 = np.asarray(period_of(taxed["interval_start"], period))
        base = taxed.groupby(
            [taxed["design"].astype(str), p2, taxed["participant_id"].astype(str)]
        )["amount"].sum()
        vp = np.asarray(period_of(vat_lines["interval_start"], period))
        got_vat = vat_lines.groupby(
            [vat_lines["design"].astype(str), vp, vat_lines["participant_id"].astype(str)]
        )["amount"].sum()
        for k, b in base.items():
            assert got_vat[k] == round(b * vat / 100)  # Python rounds half to even
    else:
        assert vat_lines.empty
    # Quality: a network, levy or VAT line is estimated only if a reading of its home is.
    homes_est = set(meter[meter["quality"] == "estimated"]["participant_id"].astype(str))
    derived = lines[~lines["charge"].isin(["energy", "day_ahead", "real_time"]).to_numpy()]
    flagged = derived[(derived["quality"] == "estimated").to_numpy()]
    assert set(flagged["participant_id"].astype(str)) <= homes_est
    e = lines[lines["charge"].isin(["energy", "real_time"]).to_numpy()]
    assert (e["quality"] == "estimated").sum() == (meter["quality"] == "estimated").sum()


@settings(max_examples=60, deadline=None)
@given(
    totals=st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=4),
    data=st.data(),
)
def test_the_largest_remainder_splits_every_total_exactly(
    totals: list[int], data: st.DataObject
) -> None:
    counts = [data.draw(st.integers(1, 6)) for _ in totals]
    group = np.repeat(np.arange(len(totals)), counts)
    w = data.draw(arrays(float, group.size, elements=st.floats(0, 100, allow_nan=False)))
    got = largest_remainder(np.array(totals, dtype=np.int64), group, w)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(group, got.astype(float)), totals)
    # Each share is within one cent of its exact share (equal shares without weights).
    for g, total in enumerate(totals):
        wg = w[group == g]
        exact = total * wg / wg.sum() if wg.sum() > 0 else np.full(wg.size, total / wg.size)
        assert np.abs(got[group == g] - exact).max() < 1 + 1e-6 * abs(total)


def test_the_largest_remainder_gives_the_left_over_cents_to_the_largest_fractions() -> None:
    got = largest_remainder(np.array([100]), np.zeros(3, dtype=np.int64), np.array([1.0, 1, 1]))
    np.testing.assert_array_equal(got, [34, 33, 33])  # ties: the earlier row
    got = largest_remainder(np.array([10]), np.zeros(3, dtype=np.int64), np.array([1.0, 2, 7]))
    np.testing.assert_array_equal(got, [1, 2, 7])
    got = largest_remainder(np.array([-100]), np.zeros(3, dtype=np.int64), np.ones(3))
    np.testing.assert_array_equal(got, [-33, -33, -34])


@pytest.mark.parametrize("rate", RATES)
def test_each_rate_design_recovers_the_requirement_and_splits_it_as_designed(rate: str) -> None:
    meter, awards = two_designs()
    tree = small_tree()
    lines = settle(meter, awards, tree, "EUR", baseline="bau", rate=rate)
    net = lines[(lines["charge"] == "network") & (lines["design"] == "mkt")]
    by = net.set_index(net["participant_id"].astype(str))
    # R = 27 cents, the market design's margin 3: 24 cents to recover from the two homes;
    # home 0 imports 2.0 kWh at 8 kW peak, home 1 only exports.
    want = {"fixed": (12, 12), "volumetric": (24, 0), "demand": (24, 0)}[rate]
    assert (by.loc["home:a/0", "amount"], by.loc["home:a/1", "amount"]) == want
    assert dso_net_receipts(lines, tree)["dso:a"].to_dict() == {"bau": 27, "mkt": 27}
    if rate == "volumetric":
        assert by.loc["home:a/0", "quantity_kwh"] == 2.0
        assert by.loc["home:a/0", "price"] == pytest.approx(0.12)  # € per imported kWh


def test_volumetric_and_demand_split_in_proportion_to_imports_and_peaks() -> None:
    meter = pd.concat(
        [
            meter_frame("bau", "tariff", [5.0, 1.0, 3.0, 0.0]),
            meter_frame("bau", "tariff", [5.0, 2.0, 0.0, 0.0], T0 + pd.Timedelta("15min")),
            meter_frame("mkt", "tariff", [5.0, 1.0, 3.0, 0.0]),
            meter_frame("mkt", "tariff", [5.0, 2.0, 0.0, 0.0], T0 + pd.Timedelta("15min")),
        ],
        ignore_index=True,
    )
    awards = pd.concat(
        [
            award_frame(d, "tariff", [0, 0, 0, 0], p, t)
            for d, p in (("bau", [0.1, 0.5, 0.5, 0.5]), ("mkt", [0.1, 0.2, 0.2, 0.2]))
            for t in (T0, T0 + pd.Timedelta("15min"))
        ],
        ignore_index=True,
    )
    tree = small_tree()
    # bau: R = 0.5 × 6 − 0.1 × 10 = 2.00 €; mkt margin = 0.2 × 6 − 1.00 = 0.20 €: 180 cents.
    for rate, want in (("volumetric", (90, 90)), ("demand", (72, 108))):
        lines = settle(meter, awards, tree, "EUR", baseline="bau", rate=rate)
        net = lines[(lines["charge"] == "network") & (lines["design"] == "mkt")]
        by = net.set_index(net["participant_id"].astype(str))["amount"]
        assert (by["home:a/0"], by["home:a/1"]) == want, rate  # imports 3 : 3, peaks 8 : 12 kW


def test_levies_and_vat_by_hand() -> None:
    meter, awards = two_designs()
    lines = settle(meter, awards, small_tree(), "EUR", baseline="bau",
                   levies=[Levy("eeg", 0.0679, payee="state")], vat_percent=19.0)  # fmt: skip
    bau = lines[lines["design"] == "bau"]
    lv = bau[bau["charge"] == "levy:eeg"]
    # Only home 0 imports (2 kWh); the aggregator's sub-meter and the DSO pay no levy.
    assert lv["participant_id"].astype(str).tolist() == ["home:a/0"]
    assert int(lv["amount"].iloc[0]) == 14  # 2 × 6.79 ct = 13.58 → 14
    vat = bau[bau["charge"] == "vat"].set_index(bau[bau["charge"] == "vat"]["participant_id"])
    assert int(vat.loc["home:a/0", "amount"]) == 14  # 19 % of 60 + 0 + 14 = 14.06 → 14
    assert int(vat.loc["home:a/1", "amount"]) == -6  # 19 % of −30: a refund of 5.7 → 6
    assert set(vat["counterparty_id"].astype(str)) == {"state"}
    check_balance(lines, small_tree(), None, payees={"state"})
    with pytest.raises(BalanceError, match="'state' is not a participant"):
        check_balance(lines, small_tree(), None)


def test_vat_rounds_half_to_even_exactly() -> None:
    np.testing.assert_array_equal(vat_of(np.array([50, 150, 250, -50, 1]), 1.0), [0, 2, 2, 0, 0])
    np.testing.assert_array_equal(vat_of(np.array([250, 350]), 19.0), [48, 66])  # 47.5, 66.5


def test_a_hand_made_imbalance_raises() -> None:
    meter, awards = two_designs()
    tree = small_tree()
    lines = settle(meter, awards, tree, "EUR", baseline="bau")
    req = revenue_requirement(lines[lines["charge"] != "network"], tree, "bau")
    check_balance(lines, tree, req)
    bad = lines.copy()
    bad.loc[bad.index[0], "counterparty_id"] = np.nan  # paid to nobody
    with pytest.raises(BalanceError, match=r"payers pay (-?\d+) but the payees receive"):
        check_balance(bad, tree, req)
    bad = lines.copy()
    bad["amount"] = bad["amount"].astype(float)
    with pytest.raises(BalanceError, match="not integer minor units"):
        check_balance(bad, tree, req)
    bad = lines.copy()
    net = bad.index[(bad["charge"] == "network") & (bad["design"] == "mkt")]
    bad.loc[net[0], "amount"] += 1
    with pytest.raises(BalanceError, match="off by 1 minor units"):
        check_balance(bad, tree, req)


def test_periods_label_months_and_days_in_utc() -> None:
    s = pd.Series(pd.to_datetime(["2026-01-31T23:45Z", "2026-02-01T00:00Z"], utc=True))
    assert list(np.asarray(period_of(s, "day"))) == ["2026-01-31", "2026-02-01"]
    assert list(np.asarray(period_of(s, "month"))) == ["2026-01", "2026-02"]
    assert list(np.asarray(period_of(s, "whole"))) == ["all", "all"]
    with pytest.raises(InvalidInputError, match="'week'"):
        period_of(s, "week")


def test_a_levy_without_a_name_or_a_finite_rate_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="not finite"):
        Levy("x", float("nan"))
    with pytest.raises(InvalidInputError, match="only 'import'"):
        Levy("x", 0.1, on="export")


def test_participant_totals_are_integer_cents() -> None:
    meter, awards = two_designs()
    t = participant_totals(settle(meter, awards, small_tree(), "EUR", baseline="bau"))
    assert t["net"].dtype == np.int64 and int(t["net"].sum()) == 0
    assert len(NODES) == 4
