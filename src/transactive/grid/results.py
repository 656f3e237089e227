"""Results of an AC power flow: the full time × element arrays (:class:`PowerFlowResult`) and
the lean summary (:class:`PowerFlowSummary`), with per-step and per-element extremes.

Units: kW, kvar, pu, %, degrees. No power-flow engine is imported here: the results are
plain arrays, read by :mod:`transactive.grid.limits` and made by
:mod:`transactive.grid.powerflow`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from transactive.errors import TransactiveError
from transactive.grid._steps import time_at
from transactive.grid.limits import Limits

__all__ = [
    "Extremes",
    "Keep",
    "PowerFlowResult",
    "PowerFlowSummary",
    "StepStats",
    "SummaryOnlyError",
]

Keep = Literal["full", "summary"]


class SummaryOnlyError(TransactiveError, AttributeError):
    """A time × element array asked of a result computed with ``keep="summary"``."""


def _arg_extreme(x: np.ndarray, axis: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """NaN-ignoring min (or max) of ``x`` along ``axis`` and the position of its first
    occurrence; where a slice is all NaN the value is ±inf (the fill) and the position −1."""
    nan = np.isnan(x)
    filled = np.where(nan, -np.inf if largest else np.inf, x)
    pos = np.argmax(filled, axis=axis) if largest else np.argmin(filled, axis=axis)
    value = np.take_along_axis(filled, np.expand_dims(pos, axis), axis).squeeze(axis)
    return value, np.where(nan.all(axis=axis), -1, pos)


def _names_at(names: Sequence[str], pos: np.ndarray) -> np.ndarray:
    """Element names at positions ``pos`` (None where ``pos`` is −1)."""
    return np.asarray([*names, None], dtype=object)[pos]


class _NotKept:
    """A full-result array that a summary result does not keep (raises on access)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> np.ndarray:
        raise _summary_only(self.name)


@dataclass(frozen=True)
class StepStats:
    """Per-step extremes: lowest / highest bus voltage (pu) and highest branch loading (%),
    each with the bus / branch position where it occurs (−1: none; loading −inf then)."""

    vm_min_pu: np.ndarray
    vm_min_bus: np.ndarray
    vm_max_pu: np.ndarray
    vm_max_bus: np.ndarray
    max_loading_percent: np.ndarray
    max_loading_branch: np.ndarray

    @classmethod
    def of(cls, vm_pu: np.ndarray, loading_percent: np.ndarray) -> StepStats:
        """Statistics of time × bus voltages (pu) and time × branch loadings (%)."""
        vmin, imin = _arg_extreme(vm_pu, 1, largest=False)
        vmax, imax = _arg_extreme(vm_pu, 1, largest=True)
        lmax, ilmax = _arg_extreme(loading_percent, 1, largest=True)
        return cls(
            np.where(imin < 0, np.nan, vmin),
            imin,
            np.where(imax < 0, np.nan, vmax),
            imax,
            lmax,
            ilmax,
        )

    @classmethod
    def concat(cls, parts: Sequence[StepStats]) -> StepStats:
        """Statistics of consecutive chunks of steps joined in order."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _STEP_FIELDS))


_STEP_FIELDS = list(StepStats.__dataclass_fields__)


@dataclass(frozen=True)
class Extremes:
    """Per-element extremes over the period: lowest / highest voltage per bus (pu, NaN if
    never energised) and highest loading per branch (%, NaN if never defined), each with
    the step (position in ``time``) of its first occurrence (−1 if none)."""

    vm_min_pu: np.ndarray
    vm_min_step: np.ndarray
    vm_max_pu: np.ndarray
    vm_max_step: np.ndarray
    max_loading_percent: np.ndarray
    max_loading_step: np.ndarray


class _ExtremesAccumulator:
    """Running per-element extremes over chunks of steps fed in time order."""

    def __init__(self, n_bus: int, n_branch: int) -> None:
        self.vmin = np.full(n_bus, np.inf)
        self.vmax = np.full(n_bus, -np.inf)
        self.lmax = np.full(n_branch, -np.inf)
        self.imin = np.full(n_bus, -1)
        self.imax = np.full(n_bus, -1)
        self.ilmax = np.full(n_branch, -1)

    def add(self, first_step: int, vm_pu: np.ndarray, loading_percent: np.ndarray) -> None:
        """Fold in a chunk (time × bus pu, time × branch %) starting at ``first_step``."""
        for best, ibest, x, largest in (
            (self.vmin, self.imin, vm_pu, False),
            (self.vmax, self.imax, vm_pu, True),
            (self.lmax, self.ilmax, loading_percent, True),
        ):
            value, pos = _arg_extreme(x, 0, largest)
            better = (pos >= 0) & ((value > best) if largest else (value < best))
            best[better] = value[better]  # strict: ties keep the earlier step
            ibest[better] = pos[better] + first_step

    def result(self) -> Extremes:
        """The extremes so far."""
        return Extremes(
            np.where(self.imin < 0, np.nan, self.vmin),
            self.imin.copy(),
            np.where(self.imax < 0, np.nan, self.vmax),
            self.imax.copy(),
            np.where(self.ilmax < 0, np.nan, self.lmax),
            self.ilmax.copy(),
        )


class _ResultViews(ABC):
    """Tables shared by full and summary results (needs the attributes below)."""

    time: pd.Index
    bus_names: list[str]
    branch_names: list[str]
    source_p_kw: np.ndarray
    source_q_kvar: np.ndarray
    losses_kw: np.ndarray

    @abstractmethod
    def step_stats(self) -> StepStats:
        """Per-step extremes: min/max voltage and max loading with where they occur."""

    @abstractmethod
    def extremes(self) -> Extremes:
        """Per-element extremes over the whole period."""

    @property
    def n_step(self) -> int:
        """Number of time steps."""
        return len(self.time)

    @property
    def substation_p_kw(self) -> np.ndarray:
        """Active power imported at the substation(s) per step (kW, negative = export)."""
        return np.asarray(self.source_p_kw.sum(axis=1))

    @property
    def substation_q_kvar(self) -> np.ndarray:
        """Reactive power imported at the substation(s) per step (kvar)."""
        return np.asarray(self.source_q_kvar.sum(axis=1))

    def summary(self) -> pd.DataFrame:
        """Per-step summary: substation import (kW, kvar), losses (kW), min/max voltage
        (pu), maximum branch loading (%, −inf if no branch has one) and the bus / branch
        name where each extreme occurs."""
        st = self.step_stats()
        return pd.DataFrame(
            {
                "substation_p_kw": self.substation_p_kw,
                "substation_q_kvar": self.substation_q_kvar,
                "losses_kw": self.losses_kw,
                "vm_min_pu": st.vm_min_pu,
                "vm_max_pu": st.vm_max_pu,
                "max_loading_percent": st.max_loading_percent,
                "vm_min_bus": _names_at(self.bus_names, st.vm_min_bus),
                "vm_max_bus": _names_at(self.bus_names, st.vm_max_bus),
                "max_loading_branch": _names_at(self.branch_names, st.max_loading_branch),
            },
            index=self.time,
        )

    def bus_extremes(self) -> pd.DataFrame:
        """Per bus (row = bus position): lowest and highest voltage over the period (pu)
        and when each first occurs."""
        ex = self.extremes()
        return pd.DataFrame(
            {
                "bus": np.asarray(self.bus_names, dtype=object),
                "vm_min_pu": ex.vm_min_pu,
                "vm_min_time": time_at(self.time, ex.vm_min_step),
                "vm_max_pu": ex.vm_max_pu,
                "vm_max_time": time_at(self.time, ex.vm_max_step),
            }
        )

    def branch_extremes(self) -> pd.DataFrame:
        """Per branch (row = branch position): highest loading over the period (%) and
        when it first occurs."""
        ex = self.extremes()
        return pd.DataFrame(
            {
                "branch": np.asarray(self.branch_names, dtype=object),
                "max_loading_percent": ex.max_loading_percent,
                "max_loading_time": time_at(self.time, ex.max_loading_step),
            }
        )


@dataclass(frozen=True)
class PowerFlowResult(_ResultViews):
    """Time × element results of an AC power flow (kW, kvar, pu, %, degrees) —
    ``run_powerflow(..., keep="full")``.

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

    keep: ClassVar[Keep] = "full"

    @property
    def n_step(self) -> int:
        """Number of time steps."""
        return int(self.vm_pu.shape[0])

    def vm_frame(self) -> pd.DataFrame:
        """Bus voltages (pu) as a DataFrame, time × bus name."""
        return pd.DataFrame(self.vm_pu, index=self.time, columns=self.bus_names)

    def loading_frame(self) -> pd.DataFrame:
        """Branch loading (%) as a DataFrame, time × branch name."""
        return pd.DataFrame(self.loading_percent, index=self.time, columns=self.branch_names)

    def step_stats(self) -> StepStats:
        """Per-step voltage / loading extremes and where they occur."""
        return StepStats.of(self.vm_pu, self.loading_percent)

    def extremes(self) -> Extremes:
        """Per-element voltage / loading extremes over the period."""
        acc = _ExtremesAccumulator(len(self.bus_names), len(self.branch_names))
        acc.add(0, self.vm_pu, self.loading_percent)
        return acc.result()


def _summary_only(name: str) -> SummaryOnlyError:
    return SummaryOnlyError(
        f"{name} is not kept by run_powerflow(..., keep='summary'), which holds per-step "
        f"summaries, per-element extremes and limit violations only; run it with "
        f"keep='full' for time × element arrays"
    )


@dataclass(frozen=True)
class PowerFlowSummary(_ResultViews):
    """Lean AC power-flow result — ``run_powerflow(..., keep="summary")``.

    Holds only what is small: ``source_p_kw``/``source_q_kvar`` (time × source, kW/kvar
    imported), ``losses_kw`` (time), per-step voltage/loading extremes (``stats``),
    per-element extremes over the period (``element_extremes``) and, for ``limits``, the
    per-element ``violation_summary`` (one row per violated (element, kind): steps, hours,
    first/last/worst time, worst value and magnitude — the table
    :func:`~transactive.grid.limits.summarise_violations` makes of the full result's
    :func:`~transactive.grid.check_limits` rows). The time × element arrays (``vm_pu``,
    ``loading_percent``, …) and the per-step ``violations`` raise
    :class:`SummaryOnlyError`."""

    feeder_name: str
    time: pd.Index
    bus_names: list[str]
    branch_names: list[str]
    source_names: list[str]
    source_p_kw: np.ndarray
    source_q_kvar: np.ndarray
    losses_kw: np.ndarray
    stats: StepStats
    element_extremes: Extremes
    violation_summary: pd.DataFrame
    limits: Limits

    keep: ClassVar[Keep] = "summary"

    def step_stats(self) -> StepStats:
        """Per-step voltage / loading extremes and where they occur."""
        return self.stats

    def extremes(self) -> Extremes:
        """Per-element voltage / loading extremes over the period."""
        return self.element_extremes

    @property
    def violations(self) -> pd.DataFrame:
        """Not kept: raises SummaryOnlyError (per-element: ``violation_summary``)."""
        raise SummaryOnlyError(
            "per-step violation rows are not kept by run_powerflow(..., keep='summary'): "
            "use violation_summary (one row per violated element and kind), or run it with "
            "keep='full' and call check_limits for per-step rows"
        )

    # Full-result arrays a summary does not keep: reading one raises SummaryOnlyError.
    vm_pu = _NotKept()
    va_degree = _NotKept()
    p_from_kw = _NotKept()
    q_from_kvar = _NotKept()
    p_to_kw = _NotKept()
    q_to_kvar = _NotKept()
    loading_percent = _NotKept()

    def vm_frame(self) -> pd.DataFrame:
        """Not kept: raises SummaryOnlyError."""
        raise _summary_only("vm_frame()")

    def loading_frame(self) -> pd.DataFrame:
        """Not kept: raises SummaryOnlyError."""
        raise _summary_only("loading_frame()")
