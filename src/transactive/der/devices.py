"""The registry of device types and the parameter reference.

:data:`DEVICE_TYPES` maps each kind (as used in scenarios and :func:`make_fleet`) to its
class; :func:`parameter_docs` renders every type's parameter declaration as Markdown.
"""

from __future__ import annotations

from typing import Any

from transactive.der.base import DeviceType
from transactive.der.battery import Battery
from transactive.der.ev import EV
from transactive.der.flexible import Curtailable, Shiftable
from transactive.der.household import Household
from transactive.der.hvac import HVAC
from transactive.der.params import param_table
from transactive.der.pv import PV
from transactive.der.water_heater import WaterHeater

#: Device kind → device class (each with ``KIND`` and ``PARAMS``).
DEVICE_TYPES: dict[str, type[DeviceType[Any, Any]]] = {
    cls.KIND: cls for cls in (PV, Battery, EV, HVAC, WaterHeater, Shiftable, Curtailable, Household)
}

#: Device kind → its config class (generated from ``PARAMS``).
CONFIGS: dict[str, type] = {k: cls.Config for k, cls in DEVICE_TYPES.items()}


def parameter_docs() -> str:
    """Markdown reference of every device type's parameters: one table per type with name,
    unit, default (in scenario syntax), bounds and meaning."""
    intro = (
        "Each parameter is a number (a constant) or a distribution the fleet is drawn "
        "from: `{ uniform = [lo, hi] }`, `{ normal = [mean, sd] }` (optionally "
        "`[mean, sd, low, high]`, clipped), `{ lognormal = [median, sigma] }` (likewise), "
        "`{ const = x }` or `{ choice = [[values], [probabilities]] }`. Bounds are "
        "intervals; every drawn value must lie inside them."
    )
    tables = [param_table(kind, cls.PARAMS) for kind, cls in DEVICE_TYPES.items()]
    return "\n\n".join([intro, *tables]) + "\n"
