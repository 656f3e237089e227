"""The one place where market designs are registered by name.

Names map to ``"module:Class"`` so the scenario can validate design names without importing
the engine; :func:`design_class` imports the class on first use. Adding a design is one class
and one entry here (or one :func:`register` call from your own code).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from transactive.errors import InvalidInputError

if TYPE_CHECKING:
    from transactive.designs.base import Design

_REGISTRY: dict[str, str | type[Design]] = {
    "bau-flat": "transactive.designs.tariff:FlatUncontrolled",
    "bau-tou": "transactive.designs.tariff:TouUncontrolled",
    "tou-responsive": "transactive.designs.tariff:TouResponsive",
    "grand-central": "transactive.designs.grand_central:GrandCentral",
    "total-dso": "transactive.designs.total_dso:TotalDso",
    "total-dso-diversified": "transactive.designs.total_dso:TotalDsoDiversified",
    "bau-p2p": "transactive.designs.p2p:P2PTariff",
}


def names() -> tuple[str, ...]:
    """Registered design names, in registration order."""
    return tuple(_REGISTRY)


def register(cls: type[Design]) -> type[Design]:
    """Register a design class under its ``name`` (usable as a class decorator)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise InvalidInputError(f"a design named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def design_class(name: str) -> type[Design]:
    """The class registered as ``name``."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise InvalidInputError(f"unknown design {name!r} (choose from {', '.join(_REGISTRY)})")
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = getattr(import_module(module), attr)
        assert not isinstance(entry, str)
        if entry.name != name:
            raise InvalidInputError(f"design {module}:{attr} is named {entry.name!r}, not {name!r}")
        _REGISTRY[name] = entry
    return entry
