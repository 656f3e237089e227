"""Units at the edges. Inside the platform: power kW, energy kWh, price $/kWh, voltage pu.

Wholesale data often comes in $/MWh and grid libraries work in W or MW: convert once, where
the data enters, with these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # numpy only for the type: importing the constants stays cheap
    import numpy as np

T = TypeVar("T", float, "np.ndarray")

#: The project's default price floor and cap of a market, $/kWh (one declaration, used by
#: the scenario schema and the CLI).
DEFAULT_FLOOR: float = -0.1
DEFAULT_CAP: float = 2.0


def per_mwh_to_per_kwh(price: T) -> T:
    """$/MWh → $/kWh."""
    return price / 1000.0


def per_kwh_to_per_mwh(price: T) -> T:
    """$/kWh → $/MWh."""
    return price * 1000.0


def kw_to_kwh(power_kw: T, hours: float) -> T:
    """Energy (kWh) of a constant power (kW) held for ``hours``."""
    return power_kw * hours


def kw_to_mw(power_kw: T) -> T:
    """kW → MW."""
    return power_kw / 1000.0


def mw_to_kw(power_mw: T) -> T:
    """MW → kW."""
    return power_mw * 1000.0


def kw_to_w(power_kw: T) -> T:
    """kW → W."""
    return power_kw * 1000.0


def w_to_kw(power_w: T) -> T:
    """W → kW."""
    return power_w / 1000.0


#: The project's default price band, $/kWh: the floor (a negative price pays for taking
#: energy) and the cap (the value of lost load for price-taking demand). Scenario files,
#: the CLI and device defaults use these unless told otherwise.
DEFAULT_FLOOR = -0.1
DEFAULT_CAP = 2.0
