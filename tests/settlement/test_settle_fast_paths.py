"""The fast paths of settlement against independent formulations: the award lookup (dense key
table on the interval grid, hashing off it) against a pandas merge, the interval codes
against factorizing, per-code money sums against a groupby, the connection numbering
against factorizing, and joining tables column by column as they are consumed."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from settlement_helpers import NODES, T0, award_frame, meter_frame, small_tree

from transactive.core.records import SETTLEMENT
from transactive.errors import BalanceError
from transactive.settlement import settle
from transactive.settlement.totals import first_appearance, in_labels, net_matrix

S = sys.modules["transactive.settlement.settle"]
NT = sys.modules["transactive.settlement.network_tariff"]


def _records(
    starts: list[pd.Timestamp], rng: np.random.Generator, drop: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Readings of two designs at ``starts``; awards shuffled, a share ``drop`` of them gone."""
    meters, awards = [], []
    n = len(NODES)
    for start in starts:
        for design, stages in (("bau", ("tariff",)), ("mkt", ("day-ahead", "real-time"))):
            meters.append(meter_frame(design, stages[-1], rng.normal(0, 2, n), start))
            for stage in stages:
                q, p = rng.normal(0, 4, n), rng.uniform(0, 1, n)
                awards.append(award_frame(design, stage, q, p, start))
    a = pd.concat(awards, ignore_index=True)
    a = a.iloc[rng.permutation(len(a))[: round(len(a) * (1 - drop))]].reset_index(drop=True)
    return pd.concat(meters, ignore_index=True), a


def _merged(meter: pd.DataFrame, awards: pd.DataFrame, stage_is_da: bool) -> np.ndarray:
    """The reference: each reading's award row (−1: none) by a merge on the labels."""
    on = ["design", "node_id", "interval_start"]
    a = awards.assign(row=np.arange(len(awards)))
    a = a[(a["stage"] == "day-ahead") == stage_is_da]
    left = meter[on].astype({"design": str, "node_id": str})
    right = a[[*on, "row"]].astype({"design": str, "node_id": str})
    m = left.merge(right, on=on, how="left")
    return np.asarray(m["row"].fillna(-1).to_numpy(), dtype=np.int64)


@settings(max_examples=30, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 10_000), min_size=1, max_size=6, unique=True),
    unit=st.sampled_from(["15min", "1s", "1ns", "7min"]),
    drop=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_the_award_lookup_is_a_merge_on_design_node_and_interval(
    offsets: list[int], unit: str, drop: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    starts = [T0 + k * pd.Timedelta(unit) for k in offsets]
    meter, awards = _records(starts, rng, drop)
    da = (awards["stage"] == "day-ahead").to_numpy(dtype=bool)
    at_rt, at_da = S._lookup(meter, awards, [~da, da])
    np.testing.assert_array_equal(at_rt, _merged(meter, awards, False))
    np.testing.assert_array_equal(at_da, _merged(meter, awards, True))


def test_off_the_grid_and_sparse_keys_take_the_hashed_path_with_the_same_answer() -> None:
    rng = np.random.default_rng(1)
    starts = [T0, T0 + pd.Timedelta(days=3000), T0 + pd.Timedelta(seconds=1, microseconds=3)]
    meter, awards = _records(starts, rng, 0.2)
    da = (awards["stage"] == "day-ahead").to_numpy(dtype=bool)
    at_rt, at_da = S._lookup(meter, awards, [~da, da])
    np.testing.assert_array_equal(at_rt, _merged(meter, awards, False))
    np.testing.assert_array_equal(at_da, _merged(meter, awards, True))


@pytest.mark.parametrize("gap", [pd.Timedelta("15min"), pd.Timedelta(days=5000)])
def test_a_repeated_award_is_an_error_on_both_paths(gap: pd.Timedelta) -> None:
    rng = np.random.default_rng(2)
    meter, awards = _records([T0, T0 + gap], rng, 0.0)
    awards = pd.concat([awards, awards.iloc[[3]]], ignore_index=True)
    da = (awards["stage"] == "day-ahead").to_numpy(dtype=bool)
    with pytest.raises(BalanceError, match="more than one award"):
        S._lookup(meter, awards, [~da, da])


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.integers(0, 50), st.integers(-(2**20), 2**20)), min_size=0, max_size=40
    ),
    step=st.sampled_from([1, 900, 10**9, 900 * 10**9]),
    split=st.integers(0, 40),
)
def test_interval_codes_code_the_instants(values: list[int], step: int, split: int) -> None:
    ns = np.asarray(values, dtype=np.int64) * step
    parts = [ns[:split], ns[split:]]
    codes, n = S._time_codes(parts)
    code = np.concatenate(codes)
    if ns.size:
        assert 0 <= code.min() and code.max() < n
    ref, _ = pd.factorize(ns)  # the same instant ⇔ the same code
    for a, b in ((code, ref), (ref, code)):
        pairs = pd.DataFrame({"a": a, "b": b}).drop_duplicates()
        assert not pairs["a"].duplicated().any()


def test_money_sums_per_code_are_a_groupby() -> None:
    tree = small_tree()
    rng = np.random.default_rng(3)
    meter, awards = _records([T0 + k * pd.Timedelta("15min") for k in range(5)], rng, 0.0)
    lines = settle(meter, awards, tree, "EUR", "bau")
    mask = rng.random(len(lines)) < 0.6
    labels = np.array(["dso:a", "home:a/1", "tso", "nobody"])
    got = net_matrix(lines, labels, mask)
    sel = lines[mask]
    want = pd.DataFrame(0, index=got.index, columns=got.columns, dtype=np.int64)
    for col, sign in (("participant_id", 1), ("counterparty_id", -1)):
        sums = sel.groupby([sel["design"].astype(str), sel[col].astype(str)])["amount"].sum()
        for (design, who), amount in sums.items():
            if who in want.columns:
                want.loc[design, who] += sign * int(amount)
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    assert list(got.index) == ["bau", "mkt"]


def test_connections_are_numbered_in_order_of_first_appearance() -> None:
    rng = np.random.default_rng(4)
    design, node = rng.integers(0, 3, 500), rng.integers(0, 40, 500)
    conn, first = NT._connections(design, node, 40)
    ref, uniq = pd.factorize(design * 40 + node)
    np.testing.assert_array_equal(conn, ref)
    np.testing.assert_array_equal(design[first] * 40 + node[first], uniq)


def test_consuming_concat_is_concat_and_empties_its_inputs() -> None:
    tree = small_tree()
    rng = np.random.default_rng(5)
    meter, awards = _records([T0, T0 + pd.Timedelta("15min")], rng, 0.0)
    lines = settle(meter, awards, tree, "EUR", "bau")
    a, b = lines.iloc[:7].copy(), lines.iloc[7:].copy()
    want = SETTLEMENT.concat([a, b])
    parts = [a.copy(), b.copy()]
    got = SETTLEMENT.concat(parts, consume=True)
    pd.testing.assert_frame_equal(got, want)
    assert all(p.shape[1] == 0 for p in parts)
    one = [lines.iloc[3:].copy()]
    pd.testing.assert_frame_equal(
        SETTLEMENT.concat(one, consume=True), SETTLEMENT.concat([lines.iloc[3:]])
    )
    assert one[0].shape[1] == 0


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(-2, 30), min_size=0, max_size=60),
    n_keys=st.sampled_from([31, 10**9]),  # a dense table, and the factorized path
)
def test_first_appearance_numbers_keys_as_factorize_does(keys: list[int], n_keys: int) -> None:
    key = np.asarray(keys, dtype=np.int64)
    number, first = first_appearance(key, n_keys)
    real = key[key >= 0]
    ref, uniq = pd.factorize(real)
    np.testing.assert_array_equal(number[key >= 0], ref)
    assert (number[key < 0] == -1).all()
    np.testing.assert_array_equal(key[first], uniq)
    assert all(int(np.flatnonzero(key == k)[0]) == r for k, r in zip(uniq, first, strict=True))


def test_in_labels_looks_up_categories_and_plain_labels_alike() -> None:
    col = pd.Series(["a", "b", None, "c", "a"], dtype="category")
    want = [True, False, False, True, True]
    assert in_labels(col, np.array(["c", "a", "z"])).tolist() == want
    assert in_labels(col.astype(object), np.array(["c", "a", "z"])).tolist() == want
