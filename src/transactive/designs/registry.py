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


#: Suffixes of the flexibility variants of a design (:mod:`transactive.designs.flexibility`):
#: ``<design>+flex`` adds the DSO's day-ahead flexibility ask-bid-commit to ``<design>``,
#: ``<design>+flex-strategic`` the same with a strategic aggregator.
FLEX_SUFFIXES = ("+flex", "+flex-strategic")
#: Flexibility variants built so far (kept apart: :func:`names` lists registered designs only).
_VARIANTS: dict[str, type[Design]] = {}


def split_variant(name: str) -> tuple[str, str]:
    """``(inner, suffix)`` of a flexibility variant's name; ``(name, "")`` for any other."""
    for suffix in sorted(FLEX_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def is_design(name: str) -> bool:
    """Whether ``name`` is registered or a flexibility variant of a registered design."""
    inner, suffix = split_variant(name)
    return name in _REGISTRY or (bool(suffix) and inner in _REGISTRY and "+" not in inner)


def register(cls: type[Design]) -> type[Design]:
    """Register a design class under its ``name`` (usable as a class decorator)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise InvalidInputError(f"a design named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def design_class(name: str) -> type[Design]:
    """The class registered as ``name``."""
    entry = _REGISTRY.get(name)
    inner, suffix = split_variant(name)
    if entry is None and name in _VARIANTS:
        return _VARIANTS[name]
    if entry is None and suffix and inner in _REGISTRY and "+" not in inner:
        from transactive.designs.flexibility import variant

        entry = _VARIANTS[name] = variant(
            design_class(inner), strategic=suffix.endswith("-strategic")
        )
        return entry
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
