"""AC power flow time series with power-grid-model batch calculations.

The :class:`Feeder` tables are converted to a power-grid-model input dataset (nodes, lines,
links, transformers, sources, one constant-power ``sym_load`` per bus that carries a
non-zero injection) and every time step is one scenario of a batch calculation. Units are
converted at this edge: the platform speaks kW/kvar, power-grid-model W/var/VA/V.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from power_grid_model import (
    BranchSide,
    ComponentType,
    DatasetType,
    LoadGenType,
    PowerGridModel,
    WindingType,
    initialize_array,
)
from power_grid_model.errors import PowerGridError

from transactive.errors import (
    BalanceError,
    InvalidInputError,
    PowerFlowError,
    UnsupportedComponentError,
)
from transactive.grid.model import Feeder, Injections

__all__ = ["PowerFlowResult", "run_powerflow"]

# Source short-circuit power (VA): large enough that the source behaves as an ideal
# voltage source like pandapower's ext_grid (drop across it < 1e-9 pu on these feeders).
SOURCE_SK_VA = 1e15
_BRANCH_ATTRS: list[str] = ["p_from", "q_from", "p_to", "q_to", "i_from", "i_to"]


@dataclass(frozen=True)
class PowerFlowResult:
    """Time × element results of an AC power flow (kW, kvar, pu, %, degrees).

    ``vm_pu``/``va_degree``: time × bus (NaN at buses not connected to a source);
    ``p_from_kw``, ``q_from_kvar``, ``p_to_kw``, ``q_to_kvar``: time × branch, power
    flowing *into* the branch at each end; ``loading_percent``: time × branch (current
    relative to rating; NaN for switches and for branches open at both ends);
    ``source_p_kw``/``source_q_kvar``: time ×
    source, power imported from the upstream grid (negative = export);
    ``losses_kw``: time, active losses in all branches."""

    feeder_name: str
    time: pd.Index
    bus_names: list[str]
    branch_names: list[str]
    source_names: list[str]
    vm_pu: np.ndarray
    va_degree: np.ndarray
    p_from_kw: np.ndarray
    q_from_kvar: np.ndarray
    p_to_kw: np.ndarray
    q_to_kvar: np.ndarray
    loading_percent: np.ndarray
    source_p_kw: np.ndarray
    source_q_kvar: np.ndarray
    losses_kw: np.ndarray

    @property
    def n_step(self) -> int:
        """Number of time steps."""
        return int(self.vm_pu.shape[0])

    @property
    def substation_p_kw(self) -> np.ndarray:
        """Active power imported at the substation(s) per step (kW, negative = export)."""
        return np.asarray(self.source_p_kw.sum(axis=1))

    @property
    def substation_q_kvar(self) -> np.ndarray:
        """Reactive power imported at the substation(s) per step (kvar)."""
        return np.asarray(self.source_q_kvar.sum(axis=1))

    def vm_frame(self) -> pd.DataFrame:
        """Bus voltages (pu) as a DataFrame, time × bus name."""
        return pd.DataFrame(self.vm_pu, index=self.time, columns=self.bus_names)

    def loading_frame(self) -> pd.DataFrame:
        """Branch loading (%) as a DataFrame, time × branch name."""
        return pd.DataFrame(self.loading_percent, index=self.time, columns=self.branch_names)

    def summary(self) -> pd.DataFrame:
        """Per-step summary: substation import (kW, kvar), losses (kW), min/max voltage
        (pu) and maximum branch loading (%)."""
        with np.errstate(all="ignore"):
            return pd.DataFrame(
                {
                    "substation_p_kw": self.substation_p_kw,
                    "substation_q_kvar": self.substation_q_kvar,
                    "losses_kw": self.losses_kw,
                    "vm_min_pu": np.nanmin(self.vm_pu, axis=1),
                    "vm_max_pu": np.nanmax(self.vm_pu, axis=1),
                    "max_loading_percent": np.nanmax(
                        np.where(np.isnan(self.loading_percent), -np.inf, self.loading_percent),
                        axis=1,
                    ),
                },
                index=self.time,
            )


# -- power-grid-model input ---------------------------------------------------------------
@dataclass(frozen=True)
class PgmNetwork:
    """A power-grid-model model of a feeder plus the id maps to read results back."""

    model: PowerGridModel
    load_ids: np.ndarray  # sym_load id per entry of load_buses
    load_buses: np.ndarray  # bus position of each sym_load
    line_pos: np.ndarray  # branch positions of lines / trafos / switches, in pgm order
    trafo_pos: np.ndarray
    switch_pos: np.ndarray
    trafo_u: np.ndarray  # (n_trafo, 2) rated voltages in V
    trafo_sn: np.ndarray  # rated power in VA
    line_i_n: np.ndarray  # rated current in A


def build_network(
    feeder: Feeder, load_buses: np.ndarray, p_kw: np.ndarray, q_kvar: np.ndarray
) -> PgmNetwork:
    """Build a power-grid-model model with one sym_load per bus in ``load_buses`` at the
    given base injections (net load, kW / kvar)."""
    br = feeder.branches
    kind = br["kind"].to_numpy()
    line_pos = np.flatnonzero(kind == "line")
    trafo_pos = np.flatnonzero(kind == "trafo")
    switch_pos = np.flatnonzero(kind == "switch")
    n = feeder.n_bus
    next_id = n
    data: dict[Any, np.ndarray] = {}

    node = initialize_array(DatasetType.input, ComponentType.node, n)
    node["id"] = np.arange(n)
    node["u_rated"] = feeder.buses["vn_kv"].to_numpy() * 1e3
    data[ComponentType.node] = node

    def branch_ends(arr: np.ndarray, pos: np.ndarray) -> None:
        arr["from_node"] = br["from_bus"].to_numpy()[pos]
        arr["to_node"] = br["to_bus"].to_numpy()[pos]
        arr["from_status"] = br["from_closed"].to_numpy(dtype=np.int8)[pos]
        arr["to_status"] = br["to_closed"].to_numpy(dtype=np.int8)[pos]

    line = initialize_array(DatasetType.input, ComponentType.line, line_pos.size)
    line["id"] = np.arange(next_id, next_id + line_pos.size)
    next_id += line_pos.size
    branch_ends(line, line_pos)
    b_s = br["b_us"].to_numpy()[line_pos] * 1e-6
    g_s = br["g_us"].to_numpy()[line_pos] * 1e-6
    if np.any((g_s != 0) & (b_s == 0)):
        raise UnsupportedComponentError(f"feeder {feeder.name!r}: line with conductance but no C")
    line["r1"] = br["r_ohm"].to_numpy()[line_pos]
    line["x1"] = br["x_ohm"].to_numpy()[line_pos]
    line["c1"] = b_s / (2 * np.pi * feeder.f_hz)
    line["tan1"] = np.divide(g_s, b_s, out=np.zeros_like(g_s), where=b_s != 0)
    line_i_n = br["i_max_a"].to_numpy()[line_pos]
    line["i_n"] = line_i_n
    data[ComponentType.line] = line

    link = initialize_array(DatasetType.input, ComponentType.link, switch_pos.size)
    link["id"] = np.arange(next_id, next_id + switch_pos.size)
    next_id += switch_pos.size
    branch_ends(link, switch_pos)
    data[ComponentType.link] = link

    tp = feeder.transformers.loc[trafo_pos]
    trafo = initialize_array(DatasetType.input, ComponentType.transformer, trafo_pos.size)
    trafo["id"] = np.arange(next_id, next_id + trafo_pos.size)
    next_id += trafo_pos.size
    branch_ends(trafo, trafo_pos)
    u1 = tp["vn_hv_kv"].to_numpy() * 1e3
    u2 = tp["vn_lv_kv"].to_numpy() * 1e3
    sn = tp["sn_kva"].to_numpy() * 1e3
    trafo["u1"], trafo["u2"], trafo["sn"] = u1, u2, sn
    trafo["uk"] = tp["vk_percent"].to_numpy() / 100
    trafo["pk"] = tp["vkr_percent"].to_numpy() / 100 * sn
    trafo["i0"] = tp["i0_percent"].to_numpy() / 100
    trafo["p0"] = tp["pfe_kw"].to_numpy() * 1e3
    clock = np.round(tp["shift_degree"].to_numpy() / 30).astype(np.int64) % 12
    odd = clock % 2 == 1
    trafo["clock"] = clock
    trafo["winding_from"] = np.where(odd, WindingType.delta, WindingType.wye_n)
    trafo["winding_to"] = WindingType.wye_n
    side = tp["tap_side"].to_numpy().astype(str)
    has_tap = np.isin(side, ["hv", "lv"])
    trafo["tap_side"] = np.where(side == "lv", BranchSide.to_side, BranchSide.from_side)
    pos = np.where(has_tap, tp["tap_pos"].to_numpy(), 0).astype(np.int64)
    nom = np.where(has_tap, tp["tap_neutral"].to_numpy(), 0).astype(np.int64)
    trafo["tap_pos"], trafo["tap_nom"] = pos, nom
    trafo["tap_min"] = np.minimum(np.where(has_tap, tp["tap_min"].to_numpy(), 0), pos)
    trafo["tap_max"] = np.maximum(np.where(has_tap, tp["tap_max"].to_numpy(), 0), pos)
    u_tap = np.where(side == "lv", u2, u1)
    trafo["tap_size"] = np.where(has_tap, tp["tap_step_percent"].to_numpy() / 100 * u_tap, 0.0)
    data[ComponentType.transformer] = trafo

    src = feeder.sources
    source = initialize_array(DatasetType.input, ComponentType.source, len(src))
    source["id"] = np.arange(next_id, next_id + len(src))
    next_id += len(src)
    source["node"] = src["bus"].to_numpy()
    source["status"] = 1
    source["u_ref"] = src["vm_pu"].to_numpy()
    source["u_ref_angle"] = np.deg2rad(src["va_degree"].to_numpy())
    source["sk"] = SOURCE_SK_VA
    data[ComponentType.source] = source

    load = initialize_array(DatasetType.input, ComponentType.sym_load, load_buses.size)
    load["id"] = np.arange(next_id, next_id + load_buses.size)
    load["node"] = load_buses
    load["status"] = 1
    load["type"] = LoadGenType.const_power
    load["p_specified"] = p_kw * 1e3
    load["q_specified"] = q_kvar * 1e3
    data[ComponentType.sym_load] = load
    try:
        model = PowerGridModel(data, system_frequency=feeder.f_hz)
    except PowerGridError as exc:
        raise PowerFlowError(
            f"feeder {feeder.name!r}: power-grid-model rejected it: {exc}"
        ) from exc
    return PgmNetwork(
        model=model,
        load_ids=load["id"].copy(),
        load_buses=load_buses,
        line_pos=line_pos,
        trafo_pos=trafo_pos,
        switch_pos=switch_pos,
        trafo_u=np.column_stack([u1, u2]),
        trafo_sn=sn,
        line_i_n=line_i_n,
    )


OUTPUT_ATTRS: dict[ComponentType, list[str] | set[str] | Any] = {
    ComponentType.node: ["u_pu", "u_angle"],
    ComponentType.line: _BRANCH_ATTRS,
    ComponentType.transformer: _BRANCH_ATTRS,
    ComponentType.link: ["p_from", "q_from", "p_to", "q_to"],
    ComponentType.source: ["p", "q"],
}


def calculate(
    net: PgmNetwork,
    update: dict[Any, Any],
    threads: int = 0,
    continue_on_error: bool = False,
) -> tuple[dict[Any, Any], np.ndarray]:
    """Run one power-grid-model batch; returns (output, failed-scenario mask)."""
    n_scen = _n_scenarios(update)
    failed = np.zeros(n_scen, dtype=bool)
    try:
        out = net.model.calculate_power_flow(
            update_data=update,
            output_component_types=OUTPUT_ATTRS,
            threading=threads,
            error_tolerance=1e-10,
            max_iterations=30,
            continue_on_batch_error=continue_on_error,
        )
    except PowerGridError as exc:
        raise PowerFlowError(f"power flow failed: {exc}") from exc
    err = net.model.batch_error
    if err is not None:
        failed[np.asarray(err.failed_scenarios, dtype=np.int64)] = True
    return out, failed


def _n_scenarios(update: dict[Any, Any]) -> int:
    comp = next(iter(update.values()))
    if isinstance(comp, dict) and "indptr" in comp:
        return int(comp["indptr"].size - 1)
    if isinstance(comp, dict):
        return int(next(iter(comp.values())).shape[0])
    return int(comp.shape[0])


def branch_arrays(net: PgmNetwork, out: dict[Any, Any], n_branch: int) -> dict[str, np.ndarray]:
    """Assemble branch results in feeder branch order (kW, kvar, %)."""
    steps = out[ComponentType.node]["u_pu"].shape[0]
    res = {k: np.zeros((steps, n_branch)) for k in ("p_from", "q_from", "p_to", "q_to")}
    loading = np.full((steps, n_branch), np.nan)
    for comp, pos in (
        (ComponentType.line, net.line_pos),
        (ComponentType.transformer, net.trafo_pos),
        (ComponentType.link, net.switch_pos),
    ):
        if pos.size == 0:
            continue
        for k in res:
            res[k][:, pos] = out[comp][k] * 1e-3
    if net.line_pos.size:
        o = out[ComponentType.line]
        with np.errstate(divide="ignore", invalid="ignore"):
            loading[:, net.line_pos] = np.maximum(o["i_from"], o["i_to"]) / net.line_i_n * 100
    if net.trafo_pos.size:
        o = out[ComponentType.transformer]
        s_from = o["i_from"] * net.trafo_u[:, 0]
        s_to = o["i_to"] * net.trafo_u[:, 1]
        loading[:, net.trafo_pos] = np.sqrt(3) * np.maximum(s_from, s_to) / net.trafo_sn * 100
    res["loading"] = loading
    return res


# -- public entry point -------------------------------------------------------------------
def run_powerflow(
    feeder: Feeder,
    injections: Injections,
    *,
    threads: int = 0,
    chunk_size: int = 4096,
    check_balance: bool = True,
) -> PowerFlowResult:
    """AC power flow for every time step of ``injections`` (per-bus net load, kW/kvar,
    + consumption, − generation, shape time × bus) on ``feeder``.

    Runs power-grid-model batch calculations (Newton-Raphson, ``threads`` worker threads,
    0 = all cores) in chunks of ``chunk_size`` steps. Raises PowerFlowError if a step
    does not converge and BalanceError if substation import ≠ load − generation + losses.
    """
    if injections.p_kw.shape[1] != feeder.n_bus:
        raise InvalidInputError(
            f"injections have {injections.p_kw.shape[1]} bus columns, feeder {feeder.name!r} "
            f"has {feeder.n_bus} buses"
        )
    if chunk_size < 1:
        raise InvalidInputError(f"chunk_size must be ≥ 1, got {chunk_size}")
    p, q = injections.p_kw, injections.q_kvar
    load_buses = np.flatnonzero(np.any(p != 0, axis=0) | np.any(q != 0, axis=0))
    if load_buses.size == 0:  # keep one (zero) load so every step is a batch scenario
        load_buses = feeder.source_buses[:1]
    net = build_network(feeder, load_buses, p[0, load_buses], q[0, load_buses])
    steps = injections.n_step
    nb, nbr, ns = feeder.n_bus, feeder.n_branch, len(feeder.sources)
    vm = np.empty((steps, nb))
    va = np.empty((steps, nb))
    flows = {k: np.empty((steps, nbr)) for k in ("p_from", "q_from", "p_to", "q_to", "loading")}
    sp_, sq_ = np.empty((steps, ns)), np.empty((steps, ns))
    for start in range(0, steps, chunk_size):  # chunks of thousands of steps, not per step
        sl = slice(start, min(start + chunk_size, steps))
        update: dict[Any, Any] = {
            ComponentType.sym_load: {
                "id": np.broadcast_to(net.load_ids, (sl.stop - sl.start, load_buses.size)),
                "p_specified": p[sl, load_buses] * 1e3,
                "q_specified": q[sl, load_buses] * 1e3,
            }
        }
        out, _ = calculate(net, update, threads=threads)
        vm[sl] = out[ComponentType.node]["u_pu"]
        va[sl] = np.rad2deg(out[ComponentType.node]["u_angle"])
        br = branch_arrays(net, out, nbr)
        for k in flows:
            flows[k][sl] = br[k]
        sp_[sl] = out[ComponentType.source]["p"] * 1e-3
        sq_[sl] = out[ComponentType.source]["q"] * 1e-3
    dead = ~feeder.topology.energized
    vm[:, dead] = np.nan
    va[:, dead] = np.nan
    out_of_operation = ~(feeder.branches["from_closed"] | feeder.branches["to_closed"]).to_numpy()
    flows["loading"][:, out_of_operation] = np.nan  # both ends open: no loading to report
    losses = (flows["p_from"] + flows["p_to"]).sum(axis=1)
    result = PowerFlowResult(
        feeder_name=feeder.name,
        time=injections.time if injections.time is not None else pd.RangeIndex(steps),
        bus_names=feeder.bus_names,
        branch_names=feeder.branch_names,
        source_names=[str(x) for x in feeder.sources["name"]],
        vm_pu=vm,
        va_degree=va,
        p_from_kw=flows["p_from"],
        q_from_kvar=flows["q_from"],
        p_to_kw=flows["p_to"],
        q_to_kvar=flows["q_to"],
        loading_percent=flows["loading"],
        source_p_kw=sp_,
        source_q_kvar=sq_,
        losses_kw=losses,
    )
    if check_balance:
        check_energy_balance(feeder, injections, result)
    return result


def check_energy_balance(
    feeder: Feeder, injections: Injections, result: PowerFlowResult, rtol: float = 1e-6
) -> None:
    """Raise BalanceError unless, every step, substation import = net load at energised
    buses + branch losses (kW), within ``rtol`` of the gross flow plus 1 W."""
    live = feeder.topology.energized
    net_load = injections.p_kw[:, live].sum(axis=1)
    gross = np.abs(injections.p_kw[:, live]).sum(axis=1) + np.abs(result.losses_kw)
    mismatch = result.substation_p_kw - net_load - result.losses_kw
    tol = rtol * gross + 1e-3
    bad = np.flatnonzero(np.abs(mismatch) > tol)
    if bad.size:
        i = int(bad[0])
        raise BalanceError(
            f"feeder {feeder.name!r}, step {i}: substation import {result.substation_p_kw[i]:.6f} "
            f"kW ≠ net load {net_load[i]:.6f} kW + losses {result.losses_kw[i]:.6f} kW "
            f"(mismatch {mismatch[i]:.3e} kW, {bad.size} step(s) affected)"
        )
