"""The shipped examples stay valid: every scenario parses, the network bid file clears."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from transactive.cli import app
from transactive.sim.scenario import load_scenario

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_scenarios_parse(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.intervals.n > 0 and sc.paradigms


def test_network_example_prices_the_voltage_limit_at_the_feeder_end() -> None:
    res = CliRunner().invoke(
        app,
        [
            "clear-network",
            "pandapower:case33bw",
            str(EXAMPLES / "network-bids.csv"),
            "--wholesale-price",
            "0.05",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    first, evening = json.loads(res.stdout)["intervals"]
    assert first["status"] == evening["status"] == "optimal"
    # At 18:00 the load is 1.6× and the far end of the feeder sits at the 0.95 pu limit:
    # its DLMP carries a voltage component; the substation bus is at the wholesale price.
    assert evening["dlmp"]["0"]["total"] == pytest.approx(0.05)
    assert evening["dlmp"]["17"]["voltage"] > 0.1
    assert min(evening["voltage_pu"].values()) >= 0.95 - 1e-4
