"""Hosting capacity: how much PV (or EV charging load) each bus can take before the
first new limit violation, under a worst-case snapshot, with batched AC power flows.

All candidate buses are bisected *at once*: every bisection round is a single batch of
what-if power flows (:meth:`~transactive.grid.powerflow.PowerFlow.screen_changes`) in which
scenario k adds the trial size of bus k (a sparse update of one load). A size is
infeasible when it creates a violation, or worsens one already present in the snapshot,
or the power flow does not converge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError
from transactive.grid.limits import Excess, Limits, check_limits, excess
from transactive.grid.model import Feeder, Injections, base_injections
from transactive.grid.powerflow import PowerFlow, Screening

__all__ = ["HostingCapacity", "hosting_capacity", "worst_case_snapshot"]

Der = Literal["pv", "ev"]
# tolerance for "worse than in the snapshot": pu for voltage, % for loading, kW for reverse flow
_WORSE_TOL = {
    "undervoltage": 1e-7,
    "overvoltage": 1e-7,
    "line": 1e-5,
    "trafo": 1e-5,
    "reverse": 1e-4,
}
_KIND_NAMES = {
    "undervoltage": "undervoltage",
    "overvoltage": "overvoltage",
    "line": "line_overload",
    "trafo": "trafo_overload",
    "reverse": "reverse_flow",
}
MIN_LOAD_FACTOR = 0.25  # minimum load as a fraction of the base load when there is no profile


@dataclass(frozen=True)
class HostingCapacity:
    """Hosting capacity of a feeder for one DER type (kW).

    ``per_bus``: one row per candidate bus: bus (name), vn_kv, hosting_kw, capped (True if
    the search bound ``max_kw`` was reached without violation), limit (kind of the first
    violation just above hosting_kw) and limit_element.
    ``feeder_min_kw``: the smallest per-bus figure (safe at any single bus);
    ``feeder_uniform_kw``: the largest total that can be spread evenly over all candidate
    buses at once; ``snapshot_violations``: violations already present in the snapshot."""

    feeder_name: str
    der: str
    per_bus: pd.DataFrame
    feeder_min_kw: float
    feeder_uniform_kw: float
    max_kw: float
    tol_kw: float
    snapshot_violations: pd.DataFrame


def worst_case_snapshot(feeder: Feeder, der: Der = "pv") -> Injections:
    """One-step worst-case net-load injections (kW, kvar) for a DER type.

    PV: minimum load with maximum generation: each load at its yearly minimum and each
    generator at its yearly maximum when the feeder has profiles, otherwise loads at
    ``MIN_LOAD_FACTOR`` × base and generators at nameplate. EV: peak load (yearly
    maximum, or the base load) with no generation."""
    _check_der(der)
    prof = feeder.profiles
    if prof is None:
        if der == "pv":
            return base_injections(feeder, load_factor=MIN_LOAD_FACTOR, sgen_factor=1.0)
        return base_injections(feeder, load_factor=1.0, sgen_factor=0.0)
    pick = np.min if der == "pv" else np.max
    load_p = pick(prof.load_p_kw, axis=0)
    base_p = feeder.loads["p_kw"].to_numpy()
    ratio = np.divide(
        feeder.loads["q_kvar"].to_numpy(), base_p, out=np.zeros_like(base_p), where=base_p != 0
    )
    p = load_p @ feeder.load_incidence
    q = (load_p * ratio) @ feeder.load_incidence
    if der == "pv":
        p = p - np.max(prof.sgen_p_kw, axis=0) @ feeder.sgen_incidence
        q = q - np.max(prof.sgen_q_kvar, axis=0) @ feeder.sgen_incidence
    return Injections(np.asarray(p)[None, :], np.asarray(q)[None, :])


def hosting_capacity(
    feeder: Feeder,
    der: Der = "pv",
    *,
    limits: Limits,
    power_factor: float = 1.0,
    tol_kw: float = 1.0,
    max_kw: float | None = None,
    buses: list[int] | list[str] | None = None,
    snapshot: Injections | None = None,
    threads: int = 0,
) -> HostingCapacity:
    """Per-bus and feeder-level hosting capacity (kW) of ``der`` ('pv' adds generation,
    'ev' adds charging load) at ``power_factor`` (PV absorbs, EV draws reactive power).

    ``limits`` decide what is a violation, e.g. ``Limits(max_reverse_flow_kw=None)``
    allows export at the substation. ``tol_kw`` is the bisection resolution; ``max_kw``
    the search bound (default 2 × max(substation rating, total base load, 100 kW));
    ``snapshot`` overrides :func:`worst_case_snapshot`."""
    _check_der(der)
    if not 0 < power_factor <= 1:
        raise InvalidInputError(f"power_factor must be in (0, 1], got {power_factor}")
    if tol_kw <= 0:
        raise InvalidInputError(f"tol_kw must be > 0, got {tol_kw}")
    snap = snapshot if snapshot is not None else worst_case_snapshot(feeder, der)
    if snap.n_step != 1 or snap.p_kw.shape[1] != feeder.n_bus:
        raise InvalidInputError(f"snapshot must have shape (1, {feeder.n_bus}) (one step)")
    if max_kw is None:
        rating = feeder.substation_rating_kva
        total = float(np.abs(feeder.loads["p_kw"]).sum())
        max_kw = 2.0 * max(rating if np.isfinite(rating) else 0.0, total, 100.0)
    if max_kw <= 0:
        raise InvalidInputError(f"max_kw must be > 0, got {max_kw}")
    cand = _candidates(feeder, buses)
    sign = -1.0 if der == "pv" else 1.0  # net-load convention: PV lowers, EV raises the load
    q_per_p = np.tan(np.arccos(power_factor))  # PV absorbs (+ load), EV draws (+ load)
    p0, q0 = snap.p_kw[0], snap.q_kvar[0]
    pf = PowerFlow(feeder, base=snap)
    snapshot_result = pf.run(snap, threads=threads)
    base = excess(
        feeder,
        snapshot_result.vm_pu,
        snapshot_result.loading_percent,
        snapshot_result.source_p_kw,
        limits,
    )
    search = _Search(feeder, pf, limits, base, p0, q0, sign, q_per_p, threads)

    lo = np.zeros(cand.size)
    hi = np.full(cand.size, float(max_kw))
    capped = ~search.single(cand, hi)[0]
    lo[capped] = hi[capped]
    active = ~capped
    while active.any() and np.max(hi[active] - lo[active]) > tol_kw:
        mid = 0.5 * (lo[active] + hi[active])
        bad = search.single(cand[active], mid)[0]
        idx = np.flatnonzero(active)
        hi[idx[bad]] = mid[bad]
        lo[idx[~bad]] = mid[~bad]
    kind = np.full(cand.size, "", dtype=object)
    element = np.full(cand.size, "", dtype=object)
    if (~capped).any():
        _, k, e = search.single(cand[~capped], hi[~capped])
        kind[~capped], element[~capped] = k, e
    per_bus = pd.DataFrame(
        {
            "bus": np.asarray(feeder.bus_names, dtype=object)[cand],
            "vn_kv": feeder.buses["vn_kv"].to_numpy()[cand],
            "hosting_kw": lo,
            "capped": capped,
            "limit": kind,
            "limit_element": element,
        }
    )
    uniform = search.uniform(cand, float(max_kw) * cand.size, tol_kw)
    return HostingCapacity(
        feeder_name=feeder.name,
        der=der,
        per_bus=per_bus,
        feeder_min_kw=float(lo.min()),
        feeder_uniform_kw=uniform,
        max_kw=float(max_kw),
        tol_kw=tol_kw,
        snapshot_violations=check_limits(feeder, snapshot_result, limits),
    )


def _check_der(der: str) -> None:
    if der not in ("pv", "ev"):
        raise InvalidInputError(f"unknown DER type {der!r}: use 'pv' or 'ev'")


def _candidates(feeder: Feeder, buses: list[int] | list[str] | None) -> np.ndarray:
    topo = feeder.topology
    if buses is None:
        ok = topo.energized.copy()
        ok[feeder.source_buses] = False
        cand = np.flatnonzero(ok)
    else:
        cand = np.array([feeder.bus_index(b) for b in buses], dtype=np.int64)
        dead = cand[~topo.energized[cand]]
        if dead.size:
            raise InvalidInputError(
                f"buses {[feeder.bus_names[i] for i in dead]} are not connected to a source"
            )
    if cand.size == 0:
        raise InvalidInputError(f"feeder {feeder.name!r} has no candidate bus")
    return cand


@dataclass(frozen=True)
class _Search:
    feeder: Feeder
    pf: PowerFlow
    limits: Limits
    base: Excess
    p0: np.ndarray
    q0: np.ndarray
    sign: float
    q_per_p: float
    threads: int

    def single(
        self, buses: np.ndarray, size_kw: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scenario k adds size_kw[k] at buses[k]; returns (infeasible, kind, element)."""
        p = self.p0[buses] + self.sign * size_kw
        q = self.q0[buses] + self.q_per_p * size_kw
        return self._evaluate(self.pf.screen_changes(buses, p, q, threads=self.threads))

    def uniform(self, cand: np.ndarray, max_total_kw: float, tol_kw: float) -> float:
        """Largest total (kW) spread evenly over ``cand`` without a new violation;
        16 trial totals per batch, so every round narrows the bracket 17-fold."""
        lo, hi = 0.0, max_total_kw
        n = self.feeder.n_bus
        while hi - lo > tol_kw:
            totals = np.linspace(lo, hi, 18)[1:-1]
            add = np.zeros((totals.size, n))
            add[:, cand] = totals[:, None] / cand.size
            p = self.p0 + self.sign * add
            q = self.q0 + self.q_per_p * add
            screening = self.pf.screen(p, q, threads=self.threads)
            bad = np.flatnonzero(self._evaluate(screening)[0])
            if bad.size == 0:  # every trial total is feasible
                lo = float(totals[-1])
                continue
            first = int(bad[0])
            hi = float(totals[first])
            lo = float(totals[first - 1]) if first > 0 else lo
        return float(lo)

    def _evaluate(self, sc: Screening) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        failed = ~sc.converged
        ex = excess(self.feeder, sc.vm_pu, sc.loading_percent, sc.source_p_kw, self.limits)
        names = {
            "undervoltage": self.feeder.bus_names,
            "overvoltage": self.feeder.bus_names,
            "line": self.feeder.branch_names,
            "trafo": self.feeder.branch_names,
            "reverse": [str(x) for x in self.feeder.sources["name"]],
        }
        bad = failed.copy()
        kind = np.where(failed, "no_convergence", "").astype(object)
        element = np.full(failed.size, "", dtype=object)
        for key, tol in _WORSE_TOL.items():
            worse = getattr(ex, key) - getattr(self.base, key) > tol
            hit = worse.any(axis=1) & ~bad
            if hit.any():
                first = np.argmax(worse, axis=1)
                kind[hit] = _KIND_NAMES[key]
                element[hit] = np.asarray(names[key], dtype=object)[first[hit]]
            bad |= hit
        return bad, kind, element
