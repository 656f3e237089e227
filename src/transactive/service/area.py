"""The area(s) the live market serves, loaded from the same scenario files as the simulator.

A scenario's ``[[areas]]`` become the service's areas: each with its feeder (for network
clearing and bus checks), its bus names and the scenario's market rules (price floor and
cap, currency, interval, time zone). Without ``--scenario`` the service serves
``transactive/data/service/default-area.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transactive.grid.model import Feeder
    from transactive.sim.scenario import Scenario

DEFAULT_SCENARIO = "default-area.toml"


@dataclass(frozen=True)
class MarketArea:
    """One DSO area of the live market."""

    name: str
    feeder_name: str

    @cached_property
    def feeder(self) -> Feeder:
        """The area's network (loaded once, on first use)."""
        from transactive.grid import load_feeder

        return load_feeder(self.feeder_name)

    @cached_property
    def buses(self) -> frozenset[str]:
        return frozenset(self.feeder.bus_names)


@dataclass(frozen=True)
class Market:
    """The market the service runs: its areas and the scenario's rules."""

    scenario: Scenario
    areas: dict[str, MarketArea]

    @property
    def floor(self) -> float:
        return float(self.scenario.market.floor)

    @property
    def cap(self) -> float:
        return float(self.scenario.market.cap)

    @property
    def currency(self) -> str:
        return str(self.scenario.market.currency)

    @property
    def interval_s(self) -> int:
        return int(self.scenario.market_interval_min) * 60

    @property
    def timezone(self) -> str:
        return str(self.scenario.timezone)


def default_scenario_path() -> Path:
    return Path(str(resources.files("transactive.data") / "service" / DEFAULT_SCENARIO))


def load_market(path: Path | None) -> Market:
    """The market of the scenario at ``path`` (default: the built-in area); ScenarioError
    (an InvalidInputError naming file and key) on a bad file."""
    from transactive.sim.scenario import load_scenario

    scenario = load_scenario(path or default_scenario_path())
    areas = {a.name: MarketArea(a.name, a.feeder) for a in scenario.areas}
    return Market(scenario, areas)
