"""Market designs as protocols: one class per design, registered by name
(:mod:`transactive.designs.registry`), each implementing
:class:`~transactive.designs.base.Design`."""

from transactive.designs.registry import design_class, names, register

__all__ = ["design_class", "names", "register"]
