"""Vectorised DER fleets: device physics, smart-inverter functions and bidding strategies.

Each device type is a fleet of ``N`` devices held as arrays (module per type: :mod:`.pv`,
:mod:`.battery`, :mod:`.ev`, :mod:`.hvac`, :mod:`.water_heater`, :mod:`.flexible`,
:mod:`.household`). One market interval::

    from transactive.der import make_fleet, make_context, weather_between

    fleet = make_fleet("battery", 1000, seed=1)
    ctx = make_context("2024-07-01T12:00Z", 0.25, price_forecast)
    curves = fleet.bid(ctx)                         # Curves, one per device
    power = fleet.respond(ctx, curves, price=0.08)  # kW, honours the award within limits
    fleet, report = fleet.step(power, ctx, cleared_price=0.08)

Sign convention: kW, + consumption (buy), − production (sell); $/kWh; UTC; °C; kWh.
"""

from transactive.der.base import (
    Context,
    DeviceModel,
    Dist,
    EnergyReport,
    WeatherSample,
    choice,
    const,
    lognormal,
    make_context,
    normal,
    respond,
    uniform,
)
from transactive.der.fleet import (
    CONFIGS,
    REGISTRY,
    BatteryConfig,
    CurtailableConfig,
    EVConfig,
    Fleet,
    HouseholdConfig,
    HVACConfig,
    Population,
    PVConfig,
    ShiftableConfig,
    WaterHeaterConfig,
    make_fleet,
    make_population,
)
from transactive.der.weather import Weather, load_tmy, weather_between, weather_for

__all__ = [
    "CONFIGS",
    "REGISTRY",
    "BatteryConfig",
    "Context",
    "CurtailableConfig",
    "DeviceModel",
    "Dist",
    "EVConfig",
    "EnergyReport",
    "Fleet",
    "HVACConfig",
    "HouseholdConfig",
    "PVConfig",
    "Population",
    "ShiftableConfig",
    "WaterHeaterConfig",
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
    "respond",
    "uniform",
    "weather_between",
    "weather_for",
]
