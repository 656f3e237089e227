"""Physical grid: real distribution feeders, the network model (graph, feeder sections,
LinDistFlow), AC power flow, limit checks and hosting capacity.

Injection sign convention: per-bus net load, P in kW and Q in kvar, positive =
consumption, negative = generation, arrays shaped time × bus (see :class:`Injections`).

The names below are imported on first use (PEP 562), so ``from transactive.grid import
load_feeder`` loads only the feeder registry: resolving a name or finding a cached feeder
imports neither pandapower, simbench nor power-grid-model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transactive.grid.hosting import HostingCapacity, hosting_capacity, worst_case_snapshot
    from transactive.grid.limits import Limits, check_limits, summarise_violations
    from transactive.grid.model import (
        Feeder,
        Injections,
        Profiles,
        Sections,
        Topology,
        base_injections,
        children,
        downstream,
        feeder_sections,
        parent,
        path_to_substation,
        profile_injections,
    )
    from transactive.grid.powerflow import PowerFlow, Screening, run_powerflow
    from transactive.grid.registry import available_feeders, cache_dir, load_feeder
    from transactive.grid.results import PowerFlowResult, PowerFlowSummary, SummaryOnlyError

_WHERE = {
    "available_feeders": "registry",
    "cache_dir": "registry",
    "load_feeder": "registry",
    "HostingCapacity": "hosting",
    "hosting_capacity": "hosting",
    "worst_case_snapshot": "hosting",
    "Limits": "limits",
    "check_limits": "limits",
    "summarise_violations": "limits",
    "Feeder": "model",
    "Injections": "model",
    "Profiles": "model",
    "Sections": "model",
    "Topology": "model",
    "base_injections": "model",
    "children": "model",
    "downstream": "model",
    "feeder_sections": "model",
    "parent": "model",
    "path_to_substation": "model",
    "profile_injections": "model",
    "PowerFlow": "powerflow",
    "Screening": "powerflow",
    "run_powerflow": "powerflow",
    "PowerFlowResult": "results",
    "PowerFlowSummary": "results",
    "SummaryOnlyError": "results",
}

__all__ = [
    "Feeder",
    "HostingCapacity",
    "Injections",
    "Limits",
    "PowerFlow",
    "PowerFlowResult",
    "PowerFlowSummary",
    "Profiles",
    "Screening",
    "Sections",
    "SummaryOnlyError",
    "Topology",
    "available_feeders",
    "base_injections",
    "cache_dir",
    "check_limits",
    "children",
    "downstream",
    "feeder_sections",
    "hosting_capacity",
    "load_feeder",
    "parent",
    "path_to_substation",
    "profile_injections",
    "run_powerflow",
    "summarise_violations",
    "worst_case_snapshot",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'transactive.grid' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"transactive.grid.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
