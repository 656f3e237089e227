"""Vectorised DER fleets: device physics, smart-inverter functions, bidding strategies and
uncontrolled (business-as-usual) modes.

Each device type is a class (:class:`PV`, :class:`Battery`, :class:`EV`, :class:`HVAC`,
:class:`WaterHeater`, :class:`Shiftable`, :class:`Curtailable`, :class:`Household`) that
declares its parameters once (``PARAMS``) and implements one interface
(:class:`DeviceType`); a fleet of ``N`` devices is held as arrays. One market interval::

    from transactive.der import make_fleet, make_context, weather_between

    fleet = make_fleet("battery", 1000, seed=1)
    ctx = make_context("2024-07-01T12:00Z", 0.25, price_forecast, floor=0.0, cap=1.0)
    curves = fleet.bid(ctx)                         # Curves, one per device
    power = fleet.respond(ctx, curves, price=0.08)  # kW, honours the award within limits
    fleet, report = fleet.step(power, ctx, cleared_price=0.08)

Sign convention: kW, + consumption (buy), − production (sell); kvar + absorbed; $/kWh;
UTC; °C; kWh.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transactive.der.base import (
        Context,
        DeviceType,
        Dist,
        EnergyReport,
        WeatherSample,
        choice,
        const,
        lognormal,
        make_context,
        normal,
        uniform,
    )
    from transactive.der.battery import Battery
    from transactive.der.devices import CONFIGS, DEVICE_TYPES, parameter_docs
    from transactive.der.ev import EV
    from transactive.der.fleet import Fleet, Population, make_fleet, make_population
    from transactive.der.flexible import Curtailable, Shiftable
    from transactive.der.household import Household
    from transactive.der.hvac import HVAC
    from transactive.der.params import DeviceConfig, Param, parse_config
    from transactive.der.pv import PV
    from transactive.der.water_heater import WaterHeater
    from transactive.der.weather import Weather, load_tmy, weather_between, weather_for

_WHERE: dict[str, str] = {
    "Battery": "transactive.der.battery",
    "CONFIGS": "transactive.der.devices",
    "Context": "transactive.der.base",
    "Curtailable": "transactive.der.flexible",
    "DEVICE_TYPES": "transactive.der.devices",
    "DeviceConfig": "transactive.der.params",
    "DeviceType": "transactive.der.base",
    "Dist": "transactive.der.base",
    "EV": "transactive.der.ev",
    "EnergyReport": "transactive.der.base",
    "Fleet": "transactive.der.fleet",
    "HVAC": "transactive.der.hvac",
    "Household": "transactive.der.household",
    "PV": "transactive.der.pv",
    "Param": "transactive.der.params",
    "Population": "transactive.der.fleet",
    "Shiftable": "transactive.der.flexible",
    "WaterHeater": "transactive.der.water_heater",
    "Weather": "transactive.der.weather",
    "WeatherSample": "transactive.der.base",
    "choice": "transactive.der.base",
    "const": "transactive.der.base",
    "load_tmy": "transactive.der.weather",
    "lognormal": "transactive.der.base",
    "make_context": "transactive.der.base",
    "make_fleet": "transactive.der.fleet",
    "make_population": "transactive.der.fleet",
    "normal": "transactive.der.base",
    "parameter_docs": "transactive.der.devices",
    "parse_config": "transactive.der.params",
    "uniform": "transactive.der.base",
    "weather_between": "transactive.der.weather",
    "weather_for": "transactive.der.weather",
}


def __getattr__(name: str) -> Any:
    """Load names on first use (PEP 562): parsing a scenario's device tables must not import
    pvlib, pandas or the device physics."""
    if name not in _WHERE:
        raise AttributeError(f"module 'transactive.der' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)


__all__ = [
    "CONFIGS",
    "DEVICE_TYPES",
    "EV",
    "HVAC",
    "PV",
    "Battery",
    "Context",
    "Curtailable",
    "DeviceConfig",
    "DeviceType",
    "Dist",
    "EnergyReport",
    "Fleet",
    "Household",
    "Param",
    "Population",
    "Shiftable",
    "WaterHeater",
    "Weather",
    "WeatherSample",
    "choice",
    "const",
    "load_tmy",
    "lognormal",
    "make_context",
    "make_fleet",
    "make_population",
    "normal",
    "parameter_docs",
    "parse_config",
    "uniform",
    "weather_between",
    "weather_for",
]
