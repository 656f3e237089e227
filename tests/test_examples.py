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
    assert sc.intervals.n > 0 and sc.designs


@pytest.mark.slow
def test_three_area_example_runs_and_every_record_has_identity(tmp_path: Path) -> None:
    """The shipped multi-area example through `transactive simulate` as a user runs it:
    three DSO areas under one TSO, at least two feeder nodes each, and every row of every
    record table carries participant, resource, node, market and interval."""
    import subprocess
    import sys

    import pandas as pd

    from transactive.core.records import SCHEMAS

    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "transactive.cli", "simulate", str(EXAMPLES / "three-areas.toml"),
         "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    kpis = json.loads(res.stdout)["designs"]
    assert len(kpis) == 5
    awards = pd.read_parquet(out / "awards.parquet")
    nodes = awards.drop_duplicates("node_id")["node_id"].astype(str)
    areas = sorted(x for x in nodes if x.startswith("dso:"))
    assert areas == ["dso:rural", "dso:semiurb", "dso:urban"]
    for a in areas:
        feeders = [x for x in nodes if x.startswith(f"feeder:{a[4:]}/")]
        assert len(feeders) >= 2, a
    dso_awards = awards[awards["node_id"].astype(str).isin(areas)]
    assert set(dso_awards["market_id"].astype(str)) == {"tso"}  # one resource per substation
    for schema in SCHEMAS:
        table = pd.read_parquet(out / f"{schema.name}.parquet")
        assert len(table), schema.name
        for col in ("participant_id", "resource_id", "node_id", "market_id", "interval_start"):
            assert table[col].notna().all() and (table[col].astype(str) != "").all(), (
                schema.name,
                col,
            )


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
