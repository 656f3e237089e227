"""The architecture as the engine-tree issue states it, checked on the source: designs are
named only in their own modules and the registry, and the runner computes no money."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from transactive.designs.registry import design_class, names

SRC = Path(__file__).parents[1] / "src" / "transactive"


def string_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def test_no_design_name_outside_the_designs_and_the_registry() -> None:
    designs = set(names())
    for path in SRC.rglob("*.py"):
        if path.parent.name == "designs":
            continue
        found = designs & set(string_literals(path))
        assert not found, f"{path.relative_to(SRC)} names design(s) {sorted(found)}"


def test_every_registered_design_is_named_as_registered() -> None:
    for name in names():
        assert design_class(name).name == name


def test_the_runner_holds_no_money_arithmetic() -> None:
    text = (SRC / "sim" / "runner.py").read_text(encoding="utf-8")
    for word in ("network_charge", "amount", "revenue", "purchases", "_usd", "Rules"):
        assert not re.search(rf"\b{word}", text), word


def test_one_price_band_default() -> None:
    """One declaration of the default price band: the scenario's, the CLI's; devices get it
    from the market (no default of their own)."""
    import inspect

    import pytest

    from transactive.core.units import DEFAULT_CAP, DEFAULT_FLOOR
    from transactive.der import make_context
    from transactive.sim.scenario import Market

    assert (Market().floor, Market().cap) == (DEFAULT_FLOOR, DEFAULT_CAP)
    params = inspect.signature(make_context).parameters
    assert params["floor"].default is inspect.Parameter.empty
    assert params["cap"].default is inspect.Parameter.empty
    with pytest.raises(TypeError):
        make_context("2026-07-01T12:00Z", 0.25, [0.1])  # type: ignore[call-arg]
