"""The DSO's bid-blind curtailment: branch flows of a radial feeder, pro-rata cuts of the
devices below an overloaded branch, nothing moved when nothing is overloaded."""

from __future__ import annotations

import numpy as np

from transactive.grid.feeders import load_feeder
from transactive.grid.intervention import curtailer
from transactive.grid.limits import Limits
from transactive.grid.lindistflow import radial


def test_flows_are_the_sum_of_everything_below() -> None:
    feeder = load_feeder("pandapower:kerber_landnetz_kabel_1")
    cut = curtailer(feeder, Limits(), 0.0)
    net = radial(feeder)
    loads = feeder.loads["bus"].to_numpy(dtype=np.int64)
    kw = np.arange(1.0, loads.size + 1.0)
    f = cut.flows(loads, kw)
    roots = net.levels[0]
    assert f[roots].sum() == sum(kw)  # the source carries everything
    # Into every bus flows what its children take plus its own load.
    own = np.bincount(net.index[loads], weights=kw, minlength=net.n)
    children = np.bincount(net.parent[net.parent >= 0], weights=f[net.parent >= 0], minlength=net.n)
    np.testing.assert_allclose(f, own + children)


def test_curtailment_brings_every_branch_below_its_limit_pro_rata() -> None:
    feeder = load_feeder("pandapower:kerber_landnetz_kabel_1")
    cut = curtailer(feeder, Limits(), 0.1)
    loads = np.repeat(feeder.loads["bus"].to_numpy(dtype=np.int64), 4)
    fixed = np.full(loads.size, 1.0)
    flexible = np.full(loads.size, 11.0)  # an EV charging at 11 kW behind every load
    bus = np.concatenate([loads, loads])
    kw = np.concatenate([fixed, flexible])
    lo = np.concatenate([fixed, np.zeros(loads.size)])
    hi = kw.copy()
    before = cut.flows(bus, kw)
    assert (before > cut.limit_kw + 1e-9).any()
    after = cut.curtail(bus, kw, lo, hi)
    assert (cut.flows(bus, after) <= cut.limit_kw + 1e-6).all()
    np.testing.assert_allclose(after[: loads.size], fixed)  # fixed load is never touched
    assert (after >= lo - 1e-12).all() and (after <= hi + 1e-12).all()
    # Nothing overloaded → nothing moves.
    small = kw * 0.01
    np.testing.assert_array_equal(cut.curtail(bus, small, small * 0, small), small)
