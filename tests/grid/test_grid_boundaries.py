"""Module boundaries: power-grid-model only in grid/powerflow.py, HiGHS only in the market LP,
no import cycle between the grid modules, network models in grid/ (not market/)."""

from __future__ import annotations

import ast
from pathlib import Path

import transactive

SRC = Path(transactive.__file__).parent


def _imports(path: Path) -> set[str]:
    """Top-level module names imported anywhere in a file (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _importers(prefix: str) -> set[str]:
    return {
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if any(m == prefix or m.startswith(prefix + ".") for m in _imports(p))
    }


def test_power_grid_model_only_in_powerflow() -> None:
    assert _importers("power_grid_model") == {"grid/powerflow.py"}


def test_highspy_only_in_the_market_lp() -> None:
    assert _importers("highspy") == {"market/_network_lp.py", "market/_flex_milp.py"}


def test_grid_modules_form_no_import_cycle() -> None:
    grid = {p.stem: _imports(p) for p in (SRC / "grid").glob("*.py")}
    deps = {
        mod: {m.rsplit(".", 1)[-1] for m in imps if m.startswith("transactive.grid.")}
        for mod, imps in grid.items()
    }

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for d in deps.get(start, set()):
            if d == target or (d not in seen and reaches(d, target, seen | {d})):
                return True
        return False

    cyclic = sorted(m for m in deps if reaches(m, m, {m}))
    assert cyclic == [], cyclic
    assert "powerflow" not in deps["limits"] and "results" not in deps["limits"]


def test_lindistflow_is_a_grid_model() -> None:
    assert (SRC / "grid" / "lindistflow.py").exists()
    assert not (SRC / "market" / "lindistflow.py").exists()
