"""`transactive p2p`: tables, JSON, the DSO's check on a feeder, bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_run import cli

EXAMPLE = Path(__file__).parents[2] / "examples" / "p2p" / "orders.csv"


def test_tables_of_the_example() -> None:
    r = cli("p2p", EXAMPLE, "--network-charge", "flat:0.01")
    assert r.returncode == 0, r.stderr
    assert "P2P trades" in r.stdout and "home-r16" in r.stdout and "home-r11" in r.stdout
    assert "traded 20.000 kWh" in r.stdout and "welfare 3.0000 EUR" in r.stdout
    assert "network 0.20 EUR" in r.stdout
    assert r.stderr == ""


def test_json_trades_balance_and_respect_limits() -> None:
    r = cli("p2p", EXAMPLE, "--network-charge", "flat:0.01", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["dso"] is None and doc["currency"] == "EUR"
    limits = {"home-r16": 0.24, "shop-c14": 0.26, "works-i2": 0.20, "home-r17": 0.22}
    for t in doc["trades"]:
        assert t["buyer_price"] <= limits[t["buyer"]] + 1e-9
        assert t["buyer_price"] == pytest.approx(t["price"] + 0.01)
        if t["buyer"] == "works-i2":
            assert t["seller"] == "home-r18"  # its named counterparty
        if t["buyer"] == "home-r16":
            assert t["seller"] in ("home-r11", "home-r15", "shop-c12")  # green sellers only
    paid = sum(t["kwh"] * t["price"] for t in doc["trades"])
    assert doc["energy_paid"] == pytest.approx(paid, abs=0.01)
    assert doc["network_paid"] == pytest.approx(0.01 * doc["traded_kwh"], abs=0.01)


def test_feeder_check_curtails_and_reports(tmp_path: Path) -> None:
    orders = tmp_path / "big.csv"
    orders.write_text(
        "order_id,participant,side,kwh,price,bus\n"
        "s1,p1,sell,150,0.05,Bus R18\ns2,p2,sell,60,0.06,Bus R15\n"
        "b1,p3,buy,120,0.30,Bus C14\nb2,p4,buy,80,0.25,Bus I2\nb3,p5,buy,40,0.20,Bus C20\n"
    )
    r = cli("p2p", orders, "--feeder", "pandapower:cigre_lv", "--network-charge",
            "distance:0.001", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    d = doc["dso"]
    assert d["feasible"] and d["violations"] == 0 and d["rounds"] >= 1
    assert d["curtailed"] + d["rejected"] >= 1 and d["curtailed_kwh"] > 0
    assert doc["welfare"] < doc["welfare_unconstrained"]
    assert any("voltage" in t["reason"] or "overload" in t["reason"] for t in doc["trades"])
    text = cli("p2p", orders, "--feeder", "pandapower:cigre_lv")
    assert text.returncode == 0 and "DSO check on pandapower:cigre_lv: feasible" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--network-charge", "zonal:1"), "expected flat:RATE or distance:RATE"),
        (("--network-charge", "distance:0.01"), "needs --feeder"),
        (("--duration-h", "0"), "--duration-h 0.0 is not > 0"),
        (("--feeder", "pandapower:nowhere"), "nowhere"),
    ],
)
def test_bad_options_exit_2(args: tuple[str, ...], message: str) -> None:
    r = cli("p2p", EXAMPLE, *args)
    assert r.returncode == 2 and message in r.stderr and r.stdout == ""


def test_bad_rows_name_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("order_id,participant,side,kwh,price\no1,p,buy,1,0.2\no2,q,sell,lots,0.1\n")
    r = cli("p2p", bad)
    assert r.returncode == 2 and r.stdout == ""
    assert "bad.csv:3: column 'kwh'" in r.stderr and "'lots'" in r.stderr
    r = cli("p2p", tmp_path / "missing.csv")
    assert r.returncode == 2 and "no such order file" in r.stderr
    wrong_bus = tmp_path / "bus.csv"
    wrong_bus.write_text("order_id,participant,side,kwh,price,bus\no1,p,buy,1,0.2,Bus Z\n")
    r = cli("p2p", wrong_bus, "--feeder", "pandapower:cigre_lv")
    assert r.returncode == 2 and "bus.csv:2: column 'bus': unknown bus 'Bus Z'" in r.stderr
