"""Feeder sections: the split of a network below its substation into feeder nodes, checked
against pandapower's own topology of the original networks."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandapower.topology as top
import pytest

from transactive.grid import Feeder, feeder_sections, load_feeder
from transactive.grid.feeders import feeder_from_pandapower, pandapower_net

LV_GRIDS = ["simbench:1-LV-semiurb4--0-sw", "simbench:1-LV-urban6--0-sw"]
MV_GRID = "simbench:1-MV-semiurb--0-sw"


def _check_structure(feeder: Feeder) -> None:
    """Every load bus lies in exactly one section or on the busbar a section hangs from;
    every section is a connected subtree entered only through its head bus."""
    sec = feeder_sections(feeder)
    topo = feeder.topology
    par = topo.parent
    assert sec.section_of_bus.shape == (feeder.n_bus,)
    assert sec.rating_kva.shape == sec.head_bus.shape == (sec.n,) and len(sec.name) == sec.n
    assert (sec.rating_kva > 0).all()
    np.testing.assert_array_equal(sec.section_of_bus[sec.head_bus], np.arange(sec.n))
    busbar = set(par[sec.head_bus].tolist())
    load_bus = np.unique(feeder.loads["bus"].to_numpy())
    outside = load_bus[sec.section_of_bus[load_bus] < 0]
    assert set(outside.tolist()) <= busbar, outside
    for s in range(sec.n):
        buses = sec.buses(s)
        inner = buses[buses != sec.head_bus[s]]
        assert (sec.section_of_bus[par[inner]] == s).all()  # parent inside: connected
        assert sec.section_of_bus[par[sec.head_bus[s]]] != s  # entered at its head


def _pp_busbar(net: object) -> tuple[set[int], set[int]]:
    """pandapower bus indices of the substation's secondary busbar (LV side of the in-service
    transformers, grown through closed bus-bus switches) and of the upstream side."""
    tr = net.trafo[net.trafo["in_service"]]  # type: ignore[attr-defined]
    busbar = set(tr["lv_bus"].tolist())
    sw = net.switch  # type: ignore[attr-defined]
    bb = sw[(sw["et"] == "b") & sw["closed"]]
    grew = True
    while grew:
        grew = False
        for a, b in zip(bb["bus"], bb["element"], strict=True):
            if (a in busbar) != (b in busbar):
                busbar |= {a, b}
                grew = True
    return busbar, set(tr["hv_bus"].tolist())


@pytest.mark.slow
@pytest.mark.parametrize("name", LV_GRIDS)
def test_lv_sections_are_the_outgoing_feeders_of_pandapower_topology(name: str) -> None:
    feeder = load_feeder(name)
    _check_structure(feeder)
    sec = feeder_sections(feeder)
    net = pandapower_net(name)
    graph = top.create_nxgraph(net, respect_switches=True, include_out_of_service=False)
    busbar, upstream = _pp_busbar(net)
    # outgoing branches: graph edges from the busbar to a bus that is not busbar or upstream
    outgoing = [(a, b) for a in busbar for b in graph.neighbors(a) if b not in busbar | upstream]
    graph.remove_nodes_from(busbar | upstream)
    feeders = [c for c in nx.connected_components(graph) if any(b in c for _, b in outgoing)]
    assert sec.n == len(feeders) == len(outgoing)
    pos = {idx: i for i, idx in enumerate(net.bus.index)}  # feeder bus positions
    ours = {frozenset(sec.buses(s).tolist()) for s in range(sec.n)}
    theirs = {frozenset(pos[b] for b in comp) for comp in feeders}
    assert ours == theirs
    # the rating of an LV feeder is its first cable's: √3 · 0.4 kV · max_i_ka
    assert sec.rating_kva.max() < 1000


@pytest.mark.slow
def test_mv_sections_are_the_outgoing_feeders() -> None:
    feeder = load_feeder(MV_GRID)
    _check_structure(feeder)
    sec = feeder_sections(feeder)
    net = pandapower_net(MV_GRID)
    graph = top.create_nxgraph(net, respect_switches=True, include_out_of_service=False)
    busbar, upstream = _pp_busbar(net)
    outgoing = [(a, b) for a in busbar for b in graph.neighbors(a) if b not in busbar | upstream]
    assert sec.n == len(outgoing) > 1
    assert np.isfinite(sec.rating_kva).all()


def test_lv_grids_below_an_mv_grid_are_one_section_each() -> None:
    """A network with MV/LV transformers below the substation: each transformer's LV side
    and everything below it is one section, rated at the transformer."""
    import pandapower as pp

    net = pp.create_empty_network()
    hv, mv = pp.create_bus(net, 110.0), pp.create_bus(net, 20.0)
    pp.create_ext_grid(net, hv)
    pp.create_transformer(net, hv, mv, "25 MVA 110/20 kV", name="HV/MV")
    mv_buses = [pp.create_bus(net, 20.0) for _ in range(3)]
    pp.create_line(net, mv, mv_buses[0], 1.0, "NA2XS2Y 1x185 RM/25 12/20 kV")
    pp.create_line(net, mv_buses[0], mv_buses[1], 1.0, "NA2XS2Y 1x185 RM/25 12/20 kV")
    pp.create_line(net, mv, mv_buses[2], 1.0, "NA2XS2Y 1x185 RM/25 12/20 kV")
    pp.create_load(net, mv_buses[0], 0.2)  # an MV load: in no LV section
    lv_heads = []
    for k, (at, kind) in enumerate(
        [(mv_buses[1], "0.4 MVA 20/0.4 kV"), (mv_buses[2], "0.63 MVA 20/0.4 kV")]
    ):
        lv = pp.create_bus(net, 0.4)
        lv_heads.append(lv)
        pp.create_transformer(net, at, lv, kind, name=f"MV/LV {k}")
        end = pp.create_bus(net, 0.4)
        pp.create_line(net, lv, end, 0.2, "NAYY 4x150 SE")
        pp.create_load(net, end, 0.01)
    feeder = feeder_from_pandapower(net, "mvlv")
    sec = feeder_sections(feeder)
    assert sec.n == 2 and sec.name == ["MV/LV 0", "MV/LV 1"]
    np.testing.assert_allclose(sec.rating_kva, [400.0, 630.0])
    np.testing.assert_array_equal(sec.head_bus, lv_heads)
    assert (sec.section_of_bus[[hv, mv, *mv_buses]] == -1).all()
    assert sec.section_of_bus.tolist().count(0) == 2 and sec.section_of_bus.tolist().count(1) == 2


def test_a_feeder_without_transformer_splits_at_the_source() -> None:
    feeder = load_feeder("pandapower:case33bw")
    _check_structure(feeder)
    sec = feeder_sections(feeder)
    src = int(feeder.source_buses[0])
    assert sec.n == int((feeder.topology.parent == src).sum())
    assert sec.section_of_bus[src] == -1
    assert (sec.section_of_bus[np.arange(feeder.n_bus) != src] >= 0).all()
