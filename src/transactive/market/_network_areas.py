"""The areas fed by different sources of :mod:`transactive.market.network`: each source's
part of a clearing problem as a problem of its own, on a feeder of its own.

Internal to :mod:`transactive.market.network`, which clears the areas in parallel and merges
their results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from transactive.grid.lindistflow import radial
from transactive.grid.model import Feeder
from transactive.market._network_problem import Problem, Storage

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Area:
    """Where a source's area sits in the whole feeder."""

    bus: IntArray  # feeder bus position of each bus of the area's feeder
    branch: IntArray  # feeder branch position of each branch of the area's feeder
    source: int  # row in feeder.sources
    bids: IntArray  # the area's bids (positions in the book)
    devices: IntArray  # the area's storage devices


def sub_problem(prob: Problem, r: int) -> tuple[Problem, Area]:
    """The part of ``prob`` below the ``r``-th source, on a feeder of its own."""
    net = prob.net
    feeder = net.feeder
    in_area = net.root_pos == r
    buses = np.sort(net.bus[in_area])
    bmap = np.full(feeder.n_bus, -1, dtype=np.int64)
    bmap[buses] = np.arange(buses.size)
    br = feeder.branches
    fb = br["from_bus"].to_numpy(dtype=np.int64)
    tb = br["to_bus"].to_numpy(dtype=np.int64)
    keep = np.flatnonzero((bmap[fb] >= 0) & (bmap[tb] >= 0))
    branches = br.iloc[keep].reset_index(drop=True)
    branches["from_bus"] = bmap[fb[keep]]
    branches["to_bus"] = bmap[tb[keep]]
    is_trafo = (br["kind"].to_numpy() == "trafo")[keep]
    transformers = feeder.transformers.loc[keep[is_trafo]].copy()
    transformers.index = pd.Index(np.flatnonzero(is_trafo))
    src_row = int(net.source_row[net.roots[r]])
    sources = feeder.sources.iloc[[src_row]].reset_index(drop=True)
    sources["bus"] = bmap[sources["bus"].to_numpy(dtype=np.int64)]

    def attached(df: pd.DataFrame) -> pd.DataFrame:
        pos = bmap[df["bus"].to_numpy(dtype=np.int64)]
        out = df[pos >= 0].reset_index(drop=True)
        out["bus"] = pos[pos >= 0]
        return out

    sub_feeder = Feeder(
        name=f"{feeder.name}[{sources['name'].iloc[0]}]",
        buses=feeder.buses.iloc[buses].reset_index(drop=True),
        branches=branches,
        transformers=transformers,
        sources=sources,
        loads=attached(feeder.loads),
        sgens=attached(feeder.sgens),
        base_kva=feeder.base_kva,
        f_hz=feeder.f_hz,
    )
    sub = radial(sub_feeder)
    e_map = np.full(net.n, -1, dtype=np.int64)  # whole-feeder e → area e
    e_area = np.flatnonzero(in_area)
    e_map[e_area] = sub.index[bmap[net.bus[e_area]]]
    cols_e = e_area[np.argsort(e_map[e_area])]  # whole-feeder e in area e order

    bids = np.flatnonzero(net.root_pos[prob.bid_e] == r)
    bid_new = np.full(prob.n_bids, -1, dtype=np.int64)
    bid_new[bids] = np.arange(bids.size)
    segs = np.flatnonzero(bid_new[prob.seg_bid] >= 0)
    st = prob.storage
    devices = np.zeros(0, dtype=np.int64)
    sub_st = None
    if st is not None:
        devices = np.flatnonzero(net.root_pos[st.e] == r)
        sub_st = Storage(
            e=e_map[st.e[devices]],
            ch_max=st.ch_max[:, devices],
            dis_max=st.dis_max[:, devices],
            cap=st.cap[devices],
            soc0=st.soc0[devices],
            soc_min=st.soc_min[devices],
            eta_c=st.eta_c[devices],
            eta_d=st.eta_d[devices],
            target=st.target[:, devices],
            cost=st.cost[devices],
        )
    sub_prob = replace(
        prob,
        net=sub,
        n_bids=int(bids.size),
        bid_e=e_map[prob.bid_e[bids]],
        bid_base=prob.bid_base[bids],
        bid_tan=prob.bid_tan[bids],
        bid_iv=prob.bid_iv[bids],
        seg_bid=bid_new[prob.seg_bid[segs]],
        seg_price=prob.seg_price[segs],
        seg_ub=prob.seg_ub[segs],
        fixed_p=prob.fixed_p[:, cols_e],
        fixed_q=prob.fixed_q[:, cols_e],
        storage=sub_st,
    )
    return sub_prob, Area(buses, keep, src_row, bids, devices)
