"""Limit checks on power-flow results: voltage band, thermal loading, reverse power flow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from transactive.errors import InvalidInputError
from transactive.grid.model import Feeder
from transactive.grid.powerflow import PowerFlowResult, PowerFlowSummary

__all__ = [
    "VIOLATION_COLUMNS",
    "Limits",
    "check_limits",
    "excess",
    "finish_violations",
    "violation_rows",
]

VIOLATION_COLUMNS = ["time", "element", "element_type", "kind", "value", "limit", "magnitude"]


@dataclass(frozen=True)
class Limits:
    """Operating limits. Voltages in pu (default ANSI C84.1 range A, 0.95–1.05 pu),
    loadings in %, reverse flow in kW: the substation may export at most
    ``max_reverse_flow_kw`` (None disables the check). Source (slack) buses are not
    checked for voltage unless ``check_source_voltage`` is set."""

    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    max_line_loading_percent: float = 100.0
    max_trafo_loading_percent: float = 100.0
    max_reverse_flow_kw: float | None = 0.0
    check_source_voltage: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.v_min_pu < self.v_max_pu:
            raise InvalidInputError(
                f"voltage band must satisfy 0 < v_min_pu < v_max_pu, got "
                f"{self.v_min_pu}..{self.v_max_pu}"
            )
        for name in ("max_line_loading_percent", "max_trafo_loading_percent"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_reverse_flow_kw is not None and self.max_reverse_flow_kw < 0:
            raise InvalidInputError(
                f"max_reverse_flow_kw must be ≥ 0 or None, got {self.max_reverse_flow_kw}"
            )


@dataclass(frozen=True)
class Excess:
    """How far each monitored quantity is beyond its limit (≥ 0; 0 = within limits).

    ``undervoltage``/``overvoltage``: time × bus (pu), ``line``/``trafo``: time × branch (%),
    ``reverse``: time × source (kW)."""

    undervoltage: np.ndarray
    overvoltage: np.ndarray
    line: np.ndarray
    trafo: np.ndarray
    reverse: np.ndarray


def excess(
    feeder: Feeder,
    vm_pu: np.ndarray,
    loading_percent: np.ndarray,
    source_p_kw: np.ndarray,
    limits: Limits,
) -> Excess:
    """Vectorised limit excess for arrays shaped (scenario, element)."""
    monitored = feeder.topology.energized.copy()
    if not limits.check_source_voltage:
        monitored[feeder.source_buses] = False
    vm = np.where(monitored, vm_pu, np.nan)
    with np.errstate(invalid="ignore"):
        under = np.nan_to_num(np.maximum(limits.v_min_pu - vm, 0.0))
        over = np.nan_to_num(np.maximum(vm - limits.v_max_pu, 0.0))
        kind = feeder.branches["kind"].to_numpy()
        load = np.nan_to_num(loading_percent)
        line = np.where(kind == "line", np.maximum(load - limits.max_line_loading_percent, 0), 0)
        trafo = np.where(kind == "trafo", np.maximum(load - limits.max_trafo_loading_percent, 0), 0)
    if limits.max_reverse_flow_kw is None:
        reverse = np.zeros_like(source_p_kw)
    else:
        reverse = np.maximum(-source_p_kw - limits.max_reverse_flow_kw, 0.0)
    return Excess(under, over, line, trafo, reverse)


def check_limits(
    feeder: Feeder, result: PowerFlowResult | PowerFlowSummary, limits: Limits | None = None
) -> pd.DataFrame:
    """Violations as a tidy DataFrame with columns ``time``, ``element`` (name),
    ``element_type`` ('bus' | 'line' | 'trafo' | 'source'), ``kind`` ('undervoltage',
    'overvoltage', 'line_overload', 'trafo_overload', 'reverse_flow'), ``value`` (pu, %
    or exported kW), ``limit`` and ``magnitude`` (how far beyond the limit, same unit).

    A ``keep="summary"`` result carries the table computed chunk by chunk for the limits
    given to ``run_powerflow``; asking it for other limits raises InvalidInputError."""
    limits = limits or Limits()
    if isinstance(result, PowerFlowSummary):
        if limits != result.limits:
            raise InvalidInputError(
                f"this keep='summary' power-flow result holds the violations of {result.limits}, "
                f"not {limits}: pass limits= to run_powerflow, or run it with keep='full'"
            )
        return result.violations.copy()
    rows = violation_rows(
        feeder,
        result.time,
        result.vm_pu,
        result.loading_percent,
        result.source_p_kw,
        limits,
        result.bus_names,
        result.branch_names,
        result.source_names,
    )
    return finish_violations([rows])


def violation_rows(
    feeder: Feeder,
    time: pd.Index,
    vm_pu: np.ndarray,
    loading_percent: np.ndarray,
    source_p_kw: np.ndarray,
    limits: Limits,
    bus_names: Sequence[str],
    branch_names: Sequence[str],
    source_names: Sequence[str],
) -> pd.DataFrame:
    """Unsorted violation rows (columns as :func:`check_limits`) of one chunk of steps:
    ``time`` (steps), ``vm_pu`` time × bus (pu), ``loading_percent`` time × branch (%),
    ``source_p_kw`` time × source (kW imported). Join chunks with :func:`finish_violations`."""
    ex = excess(feeder, vm_pu, loading_percent, source_p_kw, limits)
    bus = np.asarray(bus_names, dtype=object)
    br = np.asarray(branch_names, dtype=object)
    src = np.asarray(source_names, dtype=object)
    rev_limit = limits.max_reverse_flow_kw if limits.max_reverse_flow_kw is not None else np.nan
    parts = [
        (ex.undervoltage, vm_pu, bus, "bus", "undervoltage", limits.v_min_pu),
        (ex.overvoltage, vm_pu, bus, "bus", "overvoltage", limits.v_max_pu),
        (ex.line, loading_percent, br, "line", "line_overload", limits.max_line_loading_percent),
        (
            ex.trafo,
            loading_percent,
            br,
            "trafo",
            "trafo_overload",
            limits.max_trafo_loading_percent,
        ),
        (ex.reverse, -source_p_kw, src, "source", "reverse_flow", rev_limit),
    ]
    frames = []
    for mag, value, names, etype, kind, limit in parts:
        t_idx, e_idx = np.nonzero(mag > 0)
        frames.append(
            pd.DataFrame(
                {
                    "time": time[t_idx],
                    "element": names[e_idx],
                    "element_type": etype,
                    "kind": kind,
                    "value": value[t_idx, e_idx],
                    "limit": float(limit),
                    "magnitude": mag[t_idx, e_idx],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def finish_violations(chunks: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Join :func:`violation_rows` of consecutive chunks into the :func:`check_limits`
    table, sorted by time, kind and element."""
    full = [c for c in chunks if not c.empty]
    if not full:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_TYPES.items()})
    out = full[0] if len(full) == 1 else pd.concat(full, ignore_index=True)
    return out.sort_values(["time", "kind", "element"], kind="stable", ignore_index=True)


_EMPTY_TYPES = {
    "time": "object",
    "element": "object",
    "element_type": "object",
    "kind": "object",
    "value": "float64",
    "limit": "float64",
    "magnitude": "float64",
}
