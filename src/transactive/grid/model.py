"""Library-neutral network model of a distribution feeder and its graph helpers.

A :class:`Feeder` is plain tables (pandas DataFrames) and numpy arrays; no pandapower or
power-grid-model object is kept. Buses and branches are addressed by their *position*
(0..n-1); the ``name`` column carries the name from the source data.

Tables and units
----------------
``buses``        name, vn_kv (kV)
``branches``     name, kind ('line' | 'trafo' | 'switch'), from_bus, to_bus,
                 from_closed, to_closed (bool: the branch end is connected),
                 r_ohm, x_ohm (series impedance; trafos referred to the low-voltage side),
                 b_us (total line shunt susceptance, µS), g_us (total shunt conductance, µS),
                 vn_kv (voltage base of the impedance, kV), r_pu, x_pu (on ``base_kva``),
                 i_max_a (rated current at ``vn_kv``, A; NaN for switches),
                 rating_kva (√3·vn·i_max, kVA; NaN for switches)
``transformers`` nameplate of every 'trafo' branch, indexed by branch position:
                 sn_kva, vn_hv_kv, vn_lv_kv, vk_percent, vkr_percent, pfe_kw, i0_percent,
                 shift_degree, tap_side ('hv' | 'lv' | ''), tap_pos, tap_neutral, tap_min,
                 tap_max, tap_step_percent
``sources``      name, bus, vm_pu, va_degree (the slack: external grid behind the substation)
``loads``        name, bus, kind ('load' | 'storage'), p_kw, q_kvar (consumption +), profile
``sgens``        name, bus, kind (e.g. 'PV', 'Wind'), p_kw, q_kvar (generation +), sn_kva,
                 profile

Profiles (SimBench feeders) are per-element absolute time series at 15 minutes (UTC).

Injection sign convention (used by the whole ``grid`` package): per-bus **net load**,
P in kW and Q in kvar, positive = consumption, negative = generation, shape time × bus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import breadth_first_order, connected_components

from transactive.errors import InvalidInputError, NetworkTopologyError

__all__ = [
    "Feeder",
    "Injections",
    "Profiles",
    "Sections",
    "Topology",
    "base_injections",
    "children",
    "downstream",
    "feeder_sections",
    "parent",
    "path_to_substation",
    "profile_injections",
]


@dataclass(frozen=True)
class Profiles:
    """Per-element absolute time series (kW, kvar) at a fixed step, times in UTC.

    ``load_p_kw``/``load_q_kvar`` have shape time × len(feeder.loads) (consumption +);
    ``sgen_p_kw``/``sgen_q_kvar`` have shape time × len(feeder.sgens) (generation +).
    """

    time: pd.DatetimeIndex
    load_p_kw: np.ndarray
    load_q_kvar: np.ndarray
    sgen_p_kw: np.ndarray
    sgen_q_kvar: np.ndarray

    def __post_init__(self) -> None:
        t = len(self.time)
        for label in ("load_p_kw", "load_q_kvar", "sgen_p_kw", "sgen_q_kvar"):
            arr = getattr(self, label)
            if arr.ndim != 2 or arr.shape[0] != t:
                raise InvalidInputError(f"profile {label} has shape {arr.shape}, expected ({t}, n)")


@dataclass(frozen=True)
class Topology:
    """Radial structure of the energised network (positions of buses and branches).

    ``parent[b]`` is the upstream bus (-1 for a source bus or a de-energised bus),
    ``parent_branch[b]`` the branch to it, ``root[b]`` the source bus feeding b (-1 if
    de-energised), ``order`` the energised buses in breadth-first order from the sources.
    ``loop_branches`` are closed branches outside the spanning tree (empty when radial);
    ``tied_sources`` are source buses connected to another source (a loop via the grid);
    ``trafos_above[b]`` counts the transformers between b and its source.
    """

    parent: np.ndarray
    parent_branch: np.ndarray
    root: np.ndarray
    depth: np.ndarray
    order: np.ndarray
    energized: np.ndarray
    loop_branches: np.ndarray
    tied_sources: np.ndarray
    trafos_above: np.ndarray

    @property
    def is_radial(self) -> bool:
        """True when no closed branch closes a loop and no two sources are connected."""
        return self.loop_branches.size == 0 and self.tied_sources.size == 0


@dataclass(frozen=True)
class Feeder:
    """A distribution network: tables of buses, branches, transformers, sources and
    attached loads/DER, with optional yearly profiles. See the module docstring for units."""

    name: str
    buses: pd.DataFrame
    branches: pd.DataFrame
    transformers: pd.DataFrame
    sources: pd.DataFrame
    loads: pd.DataFrame
    sgens: pd.DataFrame
    profiles: Profiles | None = None
    base_kva: float = 1000.0
    f_hz: float = 50.0
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.buses)
        for table, cols in (
            ("branches", ("from_bus", "to_bus")),
            ("sources", ("bus",)),
            ("loads", ("bus",)),
            ("sgens", ("bus",)),
        ):
            df = getattr(self, table)
            for col in cols:
                vals = df[col].to_numpy()
                if vals.size and (vals.min() < 0 or vals.max() >= n):
                    raise InvalidInputError(f"feeder {self.name!r}: {table}.{col} out of range")
        if len(self.sources) == 0:
            raise NetworkTopologyError(f"feeder {self.name!r} has no source (slack bus)")

    # -- sizes and names ---------------------------------------------------------------
    @property
    def n_bus(self) -> int:
        """Number of buses."""
        return len(self.buses)

    @property
    def n_branch(self) -> int:
        """Number of branches (lines, transformers, switches)."""
        return len(self.branches)

    @property
    def bus_names(self) -> list[str]:
        """Bus names in position order."""
        return [str(x) for x in self.buses["name"]]

    @property
    def branch_names(self) -> list[str]:
        """Branch names in position order."""
        return [str(x) for x in self.branches["name"]]

    @cached_property
    def _bus_lookup(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.bus_names)}

    def bus_index(self, bus: int | str) -> int:
        """Position of a bus given its position or its name; raises NetworkTopologyError."""
        if isinstance(bus, (int, np.integer)) and not isinstance(bus, bool):
            if 0 <= int(bus) < self.n_bus:
                return int(bus)
            raise NetworkTopologyError(f"bus {bus} out of range 0..{self.n_bus - 1}")
        try:
            return self._bus_lookup[str(bus)]
        except KeyError:
            raise NetworkTopologyError(f"feeder {self.name!r} has no bus named {bus!r}") from None

    @property
    def source_buses(self) -> np.ndarray:
        """Positions of the slack (source) buses."""
        return self.sources["bus"].to_numpy(dtype=np.int64)

    @property
    def substation_transformers(self) -> np.ndarray:
        """Branch positions of the transformers fed from a source without another
        transformer in between (the substation transformers)."""
        br = self.branches
        topo = self.topology
        fb = br["from_bus"].to_numpy()
        ok = (br["kind"] == "trafo").to_numpy() & br["from_closed"].to_numpy(dtype=bool)
        ok &= topo.energized[fb] & (topo.trafos_above[fb] == 0)
        return np.flatnonzero(ok)

    @property
    def substation_rating_kva(self) -> float:
        """Total rating of the substation transformers (kVA); NaN if there are none."""
        idx = self.substation_transformers
        if idx.size == 0:
            return float("nan")
        return float(self.transformers.loc[idx, "sn_kva"].sum())

    # -- attachment matrices -----------------------------------------------------------
    @cached_property
    def load_incidence(self) -> sp.csr_matrix:
        """Sparse matrix (n_load × n_bus): 1 where a load is attached to a bus."""
        return _incidence(self.loads["bus"].to_numpy(dtype=np.int64), self.n_bus)

    @cached_property
    def sgen_incidence(self) -> sp.csr_matrix:
        """Sparse matrix (n_sgen × n_bus): 1 where a generator is attached to a bus."""
        return _incidence(self.sgens["bus"].to_numpy(dtype=np.int64), self.n_bus)

    # -- topology ----------------------------------------------------------------------
    @cached_property
    def topology(self) -> Topology:
        """Breadth-first spanning structure from the sources over closed branches."""
        return _build_topology(self)

    def require_radial(self) -> Topology:
        """The topology, or NetworkTopologyError naming a branch that closes a loop."""
        topo = self.topology
        if topo.tied_sources.size:
            names = [self.bus_names[i] for i in topo.tied_sources]
            raise NetworkTopologyError(
                f"feeder {self.name!r} is meshed: source buses {names} are connected to each other"
            )
        if not topo.is_radial:
            names = [self.branch_names[i] for i in topo.loop_branches[:5]]
            raise NetworkTopologyError(
                f"feeder {self.name!r} is meshed: {topo.loop_branches.size} closed branch(es) "
                f"close a loop, e.g. {names}; open a switch to operate it radially"
            )
        return topo


@dataclass(frozen=True)
class Injections:
    """Per-bus net load time series: ``p_kw``, ``q_kvar`` of shape time × bus
    (positive = consumption, negative = generation); ``time`` in UTC or None."""

    p_kw: np.ndarray
    q_kvar: np.ndarray
    time: pd.DatetimeIndex | None = None

    def __post_init__(self) -> None:
        p = np.atleast_2d(np.asarray(self.p_kw, dtype=np.float64))
        q = np.atleast_2d(np.asarray(self.q_kvar, dtype=np.float64))
        if p.shape != q.shape:
            raise InvalidInputError(f"injections: p_kw {p.shape} and q_kvar {q.shape} differ")
        if not (np.isfinite(p).all() and np.isfinite(q).all()):
            raise InvalidInputError("injections contain NaN or infinite values")
        if self.time is not None and len(self.time) != p.shape[0]:
            raise InvalidInputError(
                f"injections: {len(self.time)} time stamps for {p.shape[0]} steps"
            )
        object.__setattr__(self, "p_kw", p)
        object.__setattr__(self, "q_kvar", q)

    @property
    def n_step(self) -> int:
        """Number of time steps."""
        return int(self.p_kw.shape[0])

    @classmethod
    def from_frames(cls, feeder: Feeder, p_kw: pd.DataFrame, q_kvar: pd.DataFrame) -> Injections:
        """Build from DataFrames with bus names as columns (missing buses = 0 kW)."""
        n = feeder.n_bus
        arrays = []
        for label, df in (("p_kw", p_kw), ("q_kvar", q_kvar)):
            cols = [feeder.bus_index(str(c)) for c in df.columns]
            arr = np.zeros((len(df), n))
            arr[:, cols] = df.to_numpy(dtype=np.float64)
            if len(set(cols)) != len(cols):
                raise InvalidInputError(f"injections {label}: duplicate bus columns")
            arrays.append(arr)
        time = p_kw.index if isinstance(p_kw.index, pd.DatetimeIndex) else None
        return cls(arrays[0], arrays[1], time)


def base_injections(
    feeder: Feeder, load_factor: float = 1.0, sgen_factor: float = 1.0
) -> Injections:
    """One-step net-load injections from the base (nameplate) loads and generators."""
    p = feeder.loads["p_kw"].to_numpy() * load_factor @ feeder.load_incidence
    q = feeder.loads["q_kvar"].to_numpy() * load_factor @ feeder.load_incidence
    p = p - feeder.sgens["p_kw"].to_numpy() * sgen_factor @ feeder.sgen_incidence
    q = q - feeder.sgens["q_kvar"].to_numpy() * sgen_factor @ feeder.sgen_incidence
    return Injections(np.asarray(p)[None, :], np.asarray(q)[None, :])


def profile_injections(feeder: Feeder, start: int = 0, steps: int | None = None) -> Injections:
    """Per-bus net-load time series from the feeder's yearly profiles (kW, kvar, UTC)."""
    prof = feeder.profiles
    if prof is None:
        raise InvalidInputError(f"feeder {feeder.name!r} has no time-series profiles")
    stop = len(prof.time) if steps is None else start + steps
    if start < 0 or stop > len(prof.time) or stop <= start:
        raise InvalidInputError(
            f"profile window [{start}, {stop}) outside the {len(prof.time)} available steps"
        )
    sl = slice(start, stop)
    a_l, a_s = feeder.load_incidence, feeder.sgen_incidence
    p = (a_l.T @ prof.load_p_kw[sl].T).T - (a_s.T @ prof.sgen_p_kw[sl].T).T
    q = (a_l.T @ prof.load_q_kvar[sl].T).T - (a_s.T @ prof.sgen_q_kvar[sl].T).T
    return Injections(np.asarray(p), np.asarray(q), prof.time[sl])


# -- graph helpers (radial feeders) -------------------------------------------------------
def parent(feeder: Feeder, bus: int | str) -> int | None:
    """Upstream bus position of ``bus`` (None at a source bus). Needs a radial feeder."""
    topo = feeder.require_radial()
    b = _energized_bus(feeder, topo, bus)
    p = int(topo.parent[b])
    return None if p < 0 else p


def children(feeder: Feeder, bus: int | str) -> np.ndarray:
    """Positions of the buses directly downstream of ``bus``. Needs a radial feeder."""
    topo = feeder.require_radial()
    b = _energized_bus(feeder, topo, bus)
    return np.flatnonzero(topo.parent == b)


def path_to_substation(feeder: Feeder, bus: int | str) -> tuple[np.ndarray, np.ndarray]:
    """Buses (from ``bus`` up to its source bus) and the branches between them."""
    topo = feeder.require_radial()
    b = _energized_bus(feeder, topo, bus)
    buses, branches = [b], []
    for _ in range(int(topo.depth[b])):  # walk of length depth, not a loop over all buses
        branches.append(int(topo.parent_branch[b]))
        b = int(topo.parent[b])
        buses.append(b)
    return np.array(buses, dtype=np.int64), np.array(branches, dtype=np.int64)


def downstream(feeder: Feeder, bus: int | str) -> np.ndarray:
    """Positions of ``bus`` and every bus fed through it. Needs a radial feeder."""
    topo = feeder.require_radial()
    b = _energized_bus(feeder, topo, bus)
    inside = np.zeros(feeder.n_bus, dtype=bool)
    inside[b] = True
    for node in topo.order:  # BFS order: a parent is always visited before its children
        p = topo.parent[node]
        if p >= 0 and inside[p]:
            inside[node] = True
    return np.flatnonzero(inside)


def _energized_bus(feeder: Feeder, topo: Topology, bus: int | str) -> int:
    b = feeder.bus_index(bus)
    if not topo.energized[b]:
        raise NetworkTopologyError(
            f"bus {feeder.bus_names[b]!r} of feeder {feeder.name!r} is not connected to a source"
        )
    return b


def _incidence(bus: np.ndarray, n_bus: int) -> sp.csr_matrix:
    n = bus.size
    return sp.csr_matrix((np.ones(n), (np.arange(n), bus)), shape=(n, n_bus))


def _build_topology(feeder: Feeder) -> Topology:
    n = feeder.n_bus
    br = feeder.branches
    closed = (br["from_closed"] & br["to_closed"]).to_numpy(dtype=bool)
    idx = np.flatnonzero(closed)
    fb = br["from_bus"].to_numpy(dtype=np.int64)[idx]
    tb = br["to_bus"].to_numpy(dtype=np.int64)[idx]
    src = feeder.source_buses
    root_node = n  # virtual super-root joined to every source bus
    rows = np.concatenate([fb, tb, np.full(src.size, root_node), src])
    cols = np.concatenate([tb, fb, src, np.full(src.size, root_node)])
    graph = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n + 1, n + 1))
    order, preds = breadth_first_order(graph, root_node, directed=False)
    order = order[1:]
    energized = np.zeros(n, dtype=bool)
    energized[order] = True
    par = np.full(n, -1, dtype=np.int64)
    par[order] = preds[order]
    par[par == root_node] = -1
    # branch from each bus to its parent: first closed branch joining the pair
    key = np.minimum(fb, tb) * (n + 1) + np.maximum(fb, tb)
    child = order[par[order] >= 0]
    want = np.minimum(child, par[child]) * (n + 1) + np.maximum(child, par[child])
    sorter = np.argsort(key, kind="stable")
    pos = np.searchsorted(key, want, sorter=sorter)
    par_branch = np.full(n, -1, dtype=np.int64)
    par_branch[child] = idx[sorter[pos]]
    tree = np.zeros(len(br), dtype=bool)
    tree[par_branch[child]] = True
    in_energized = energized[br["from_bus"].to_numpy()] & energized[br["to_bus"].to_numpy()]
    loops = np.flatnonzero(closed & in_energized & ~tree)
    # two sources in one connected island also form a loop (through the upstream grid)
    _, labels = connected_components(graph[:n, :n], directed=False)
    _, inverse, counts = np.unique(labels[src], return_inverse=True, return_counts=True)
    shared = src[counts[inverse] > 1]
    root = np.full(n, -1, dtype=np.int64)
    root[src] = src
    depth = np.zeros(n, dtype=np.int64)
    trafos_above = np.zeros(n, dtype=np.int64)
    is_trafo = (br["kind"] == "trafo").to_numpy()
    for node in order:  # BFS order guarantees parents first (runs once per feeder)
        p = par[node]
        if p >= 0:
            root[node] = root[p]
            depth[node] = depth[p] + 1
            trafos_above[node] = trafos_above[p] + int(is_trafo[par_branch[node]])
    return Topology(par, par_branch, root, depth, order, energized, loops, shared, trafos_above)


# -- feeder sections ----------------------------------------------------------------------
@dataclass(frozen=True)
class Sections:
    """A radial network split below its substation into feeder sections (feeder nodes).

    section_of_bus: per bus (position), its section (0..n−1), −1 for buses in no section (the
    substation busbar and above, de-energised buses; in a grid with MV/LV substations also
    the MV network between them); head_bus: per section, the bus it starts at (the LV side
    of its transformer, or the first bus of its outgoing feeder); rating_kva: per section,
    the rating of its transformer or first branch (kVA; inf when none is known); name: per
    section, the name of that transformer or branch."""

    section_of_bus: NDArray[np.int64]
    head_bus: NDArray[np.int64]
    rating_kva: NDArray[np.float64]
    name: list[str]

    @property
    def n(self) -> int:
        """Number of sections."""
        return int(self.head_bus.size)

    def buses(self, section: int) -> NDArray[np.int64]:
        """Bus positions of one section."""
        return np.flatnonzero(self.section_of_bus == section)


def feeder_sections(feeder: Feeder) -> Sections:
    """Split a feeder below its substation into sections along its radial structure (the
    breadth-first spanning tree from the sources: a closed branch that closes a loop, e.g. a
    closed tie switch between two MV feeders, is not followed, see ``Topology``).

    If the network has transformers other than the substation transformers (MV/LV
    substations below an MV grid), each such transformer's low-voltage side and everything
    below it is one section, rated at the transformer's ``sn_kva``. Otherwise each branch
    leaving the substation's secondary busbar (the low-voltage side of the substation
    transformers, or the source bus when there is none; busbar parts joined by bus-bus
    switches count as one busbar) starts one section: an outgoing LV or MV feeder, rated at
    that branch's thermal rating (√3 · vn · i_max, kVA; inf if unknown)."""
    topo = feeder.topology
    br = feeder.branches
    kind = br["kind"].to_numpy()
    n = feeder.n_bus
    # the branch into each energised non-source bus, and whether it is a transformer
    child = topo.order[topo.parent[topo.order] >= 0]
    into = topo.parent_branch[child]
    sub = set(feeder.substation_transformers.tolist())
    is_trafo = kind[into] == "trafo"
    other = is_trafo & ~np.isin(into, list(sub))
    if other.any():
        heads = child[other]
        head_branch = into[other]
        rating = feeder.transformers.loc[head_branch, "sn_kva"].to_numpy(dtype=np.float64)
    else:
        busbar = np.zeros(n, dtype=bool)
        sub_lv = child[np.isin(into, list(sub))] if sub else feeder.source_buses
        busbar[sub_lv] = True
        for b in topo.order:  # BFS: the busbar grows through bus-bus switches
            p = topo.parent[b]
            if p >= 0 and busbar[p] and kind[topo.parent_branch[b]] == "switch":
                busbar[b] = True
        starts = busbar[topo.parent[child]] & ~busbar[child]
        heads = child[starts]
        head_branch = into[starts]
        rating = br["rating_kva"].to_numpy(dtype=np.float64)[head_branch]
    rating = np.where(np.isfinite(rating) & (rating > 0), rating, np.inf)
    order = np.argsort(heads, kind="stable")  # sections numbered by head bus position
    heads, head_branch, rating = heads[order], head_branch[order], rating[order]
    section = np.full(n, -1, dtype=np.int64)
    section[heads] = np.arange(heads.size)
    for b in topo.order:  # parents first: a bus joins the section of its parent
        p = topo.parent[b]
        if section[b] < 0 and p >= 0:
            section[b] = section[p]
    names = [str(x) for x in br["name"].to_numpy()[head_branch]]
    return Sections(section, heads.astype(np.int64), rating, names)
