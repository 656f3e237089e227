"""Physical grid: real distribution feeders, AC power-flow time series, limit checks and
hosting capacity.

Injection sign convention: per-bus net load, P in kW and Q in kvar, positive =
consumption, negative = generation, arrays shaped time × bus (see :class:`Injections`).
"""

from transactive.grid.feeders import available_feeders, cache_dir, load_feeder
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
from transactive.grid.results import PowerFlowResult, PowerFlowSummary, SummaryOnlyError

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
