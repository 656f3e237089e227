"""Feeder model: validation, injections and radial graph helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from transactive.errors import InvalidInputError, NetworkTopologyError
from transactive.grid import (
    Feeder,
    Injections,
    base_injections,
    children,
    downstream,
    load_feeder,
    parent,
    path_to_substation,
    profile_injections,
)
from transactive.grid.feeders import feeder_from_pandapower, pandapower_net


def test_graph_helpers_on_a_radial_feeder() -> None:
    feeder = load_feeder("pandapower:cigre_mv")
    src = int(feeder.source_buses[0])
    assert parent(feeder, src) is None
    assert set(downstream(feeder, src)) == set(range(feeder.n_bus))
    br = feeder.branches
    for bus in range(feeder.n_bus):
        buses, branches = path_to_substation(feeder, bus)
        assert buses[0] == bus and buses[-1] == src
        ends = set(
            zip(br["from_bus"].to_numpy()[branches], br["to_bus"].to_numpy()[branches], strict=True)
        )
        hops = list(itertools.pairwise(buses.tolist()))
        assert ends <= set(hops) | {(b, a) for a, b in hops}
        for child in children(feeder, bus):
            assert parent(feeder, child) == bus
            assert set(downstream(feeder, child)) <= set(downstream(feeder, bus))


def test_path_by_bus_name_and_unknown_bus() -> None:
    feeder = load_feeder("pandapower:kerber_landnetz_kabel_1")
    name = feeder.bus_names[-1]
    buses, _ = path_to_substation(feeder, name)
    assert buses[0] == feeder.n_bus - 1
    with pytest.raises(NetworkTopologyError, match="no bus named 'nope'"):
        parent(feeder, "nope")


def test_meshed_feeder_is_reported_where_radiality_is_needed() -> None:
    net = pandapower_net("pandapower:cigre_mv")
    net.switch["closed"] = True  # close the ring switches
    feeder = feeder_from_pandapower(net, "cigre_mv_closed")
    assert not feeder.topology.is_radial
    with pytest.raises(NetworkTopologyError, match="meshed"):
        downstream(feeder, 1)


def test_isolated_bus_is_not_energized() -> None:
    net = pandapower_net("pandapower:kerber_landnetz_kabel_1")
    lonely = pp.create_bus(net, vn_kv=0.4, name="lonely")
    pp.create_load(net, lonely, p_mw=0.01)
    feeder = feeder_from_pandapower(net, "with-island")
    b = feeder.bus_index("lonely")
    assert not feeder.topology.energized[b]
    with pytest.raises(NetworkTopologyError, match="not connected"):
        parent(feeder, "lonely")


def test_feeder_without_source_is_rejected() -> None:
    feeder = load_feeder("pandapower:case33bw")
    with pytest.raises(NetworkTopologyError, match="no source"):
        Feeder(
            name="x",
            buses=feeder.buses,
            branches=feeder.branches,
            transformers=feeder.transformers,
            sources=feeder.sources.iloc[:0],
            loads=feeder.loads,
            sgens=feeder.sgens,
        )


def test_injections_validation() -> None:
    with pytest.raises(InvalidInputError, match="differ"):
        Injections(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(InvalidInputError, match="NaN"):
        Injections(np.array([[np.nan]]), np.zeros((1, 1)))


def test_injections_from_frames_by_bus_name() -> None:
    feeder = load_feeder("pandapower:case33bw")
    names = feeder.bus_names[3:5]
    p = pd.DataFrame([[10.0, -5.0]], columns=names)
    inj = Injections.from_frames(feeder, p, p * 0.1)
    assert inj.p_kw.shape == (1, feeder.n_bus)
    assert inj.p_kw[0, 3] == 10.0 and inj.p_kw[0, 4] == -5.0 and inj.p_kw.sum() == 5.0


def test_base_injections_sum_loads_minus_generation() -> None:
    feeder = load_feeder("pandapower:cigre_mv_pv_wind")
    inj = base_injections(feeder)
    expected = feeder.loads["p_kw"].sum() - feeder.sgens["p_kw"].sum()
    assert inj.p_kw.sum() == pytest.approx(expected)


def test_profile_injections_conserve_energy(simbench_feeder: Feeder) -> None:
    prof = simbench_feeder.profiles
    assert prof is not None
    inj = profile_injections(simbench_feeder, start=96, steps=96)
    want = prof.load_p_kw[96:192].sum(axis=1) - prof.sgen_p_kw[96:192].sum(axis=1)
    np.testing.assert_allclose(inj.p_kw.sum(axis=1), want, rtol=1e-12, atol=1e-9)
    assert inj.time is not None and inj.time[0] == prof.time[96]
    with pytest.raises(InvalidInputError, match="outside"):
        profile_injections(simbench_feeder, start=35136 - 10, steps=96)
