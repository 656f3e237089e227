"""`transactive capacity` as a user runs it (a subprocess): the example's decision and
figures, one JSON document whose money balances, and bad input naming file, key, line and
column with exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_run import cli

EXAMPLES = Path(__file__).parents[2] / "examples" / "capacity"
NEED, OFFERS = EXAMPLES / "need.toml", EXAMPLES / "offers.csv"


@pytest.fixture(scope="module")
def example_json() -> dict:
    res = cli("capacity", NEED, OFFERS, "--json")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    out: dict = json.loads(res.stdout)  # exactly one document
    return out


def test_example_reports_the_decision_with_its_figures() -> None:
    res = cli("capacity", NEED, OFFERS)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "need: 52.0 firm kW at LV4.101 trafo (400 kVA) in 66 windows" in out
    assert "disqualified: 10 kWh holds 3.33 kW over a 3 h event" in out
    assert "disqualified: allows 10 activations, the season needs 20" in out
    assert "upgrade: EUR 60,000, 40 years at 5.0% → EUR 3,497/yr, EUR 15.20/kW-yr" in out
    assert "defer: NPV EUR 4,249 over 3 years, under-delivery risk 2.1% (threshold 5.0%)" in out


def test_json_money_balances_and_the_decision_follows_from_the_figures(
    example_json: dict,
) -> None:
    d, c, up = example_json["decision"], example_json["clearing"], example_json["upgrade"]
    offers = example_json["offers"]
    paid = sum(o["payment"] for o in offers)
    assert paid == pytest.approx(c["payments"]) == pytest.approx(d["capacity_cost_per_year"])
    for o in offers:  # pay-as-bid: awarded kW × own price; nothing for the disqualified
        assert o["payment"] == pytest.approx(o["awarded_kw"] * o["price"])
        if not o["qualified"]:
            assert o["awarded_kw"] == 0 and o["reason"]
    firm = sum(o["firm_awarded_kw"] for o in offers)
    assert firm >= d["need_kw"] == 52.0
    r, k = up["discount_rate"], d["deferral_years"]
    a_k = sum((1 + r) ** -t for t in range(1, int(k) + 1))
    assert d["npv"] == pytest.approx((up["annualised_cost"] - paid) * a_k)
    assert d["action"] == "defer" and d["defer"] is True
    assert d["npv"] > 0 and d["under_delivery_risk"] <= d["risk_threshold"]
    assert example_json["need"]["first_window_utc"] == "2027-06-01T15:00:00+00:00"


def test_uniform_pricing_and_a_cheap_upgrade_build(tmp_path: Path) -> None:
    text = NEED.read_text().replace('pricing = "pay-as-bid"', 'pricing = "uniform"')
    text = text.replace("capex = 60000.0", "capex = 20000.0")
    need = tmp_path / "need.toml"
    need.write_text(text)
    res = cli("capacity", need, OFFERS, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    d, c = out["decision"], out["clearing"]
    assert c["pricing"] == "uniform" and c["uniform_price_per_firm_kw"] > 0
    for o in out["offers"]:
        assert o["payment"] >= o["awarded_kw"] * o["price"] - 1e-9  # at least the bid
    assert d["action"] == "build" and d["npv"] < 0
    text_run = cli("capacity", need, OFFERS)
    assert "build: NPV EUR -" in text_run.stdout


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("x,p,r,n,-5,10,,,0.9,no", "firm_kw", "-5 is not a kW > 0"),
        ("x,p,r,n,5,cheap,,,0.9,no", "price", "'cheap' is not a number"),
        ("x,p,r,n,5,10,,,1.3,no", "reliability", "1.3 is not in (0, 1]"),
        ("x,p,r,n,5,10,-3,,0.9,no", "energy_kwh", "-3 is not a kWh > 0"),
        ("x,p,r,n,5,10,,,0.9,maybe", "divisible", "'maybe' is not yes/no"),
        ("vppA-1,p,r,n,5,10,,,0.9,no", "offer_id", "duplicate offer id 'vppA-1'"),
    ],
)
def test_a_bad_offer_cell_names_line_and_column(
    tmp_path: Path, row: str, column: str, message: str
) -> None:
    text = OFFERS.read_text().rstrip("\n") + "\n" + row + "\n"
    bad = write(tmp_path, "offers.csv", text)
    line = len(text.splitlines())
    res = cli("capacity", NEED, bad)
    assert res.returncode == 2 and res.stdout == ""
    assert f"{bad}:{line}: column '{column}': {message}" in res.stderr


def test_bad_need_files_name_the_key(tmp_path: Path) -> None:
    text = NEED.read_text()
    cases = {
        "life_years = 40": ("life_years = -1", "'upgrade.life_years': input should be greater"),
        'timezone = "Europe/Berlin"': ('timezone = "Mars/Olympus"', "'season.timezone'"),
        "hours = [17, 20]": ("hours = [20, 17]", "'season': hours must satisfy"),
        "events = 20": ("events = 20\nfoo = 1", "'season.foo': unknown key"),
        "peak_kw = 452.0": ("need_kw = 3.0\npeak_kw = 452.0", "give either need_kw or both"),
    }
    for old, (new, message) in cases.items():
        bad = write(tmp_path, "need.toml", text.replace(old, new))
        res = cli("capacity", bad, OFFERS)
        assert res.returncode == 2, (old, res.stderr)
        assert f"{bad}: " in res.stderr and message in res.stderr, res.stderr
        assert res.stdout == ""


def test_missing_files_and_bad_files(tmp_path: Path) -> None:
    res = cli("capacity", tmp_path / "none.toml", OFFERS)
    assert res.returncode == 2 and "none.toml: no such need file" in res.stderr
    res = cli("capacity", NEED, tmp_path)
    assert res.returncode == 2 and "is a directory" in res.stderr
    res = cli("capacity", write(tmp_path, "n.toml", "element = [1"), OFFERS)
    assert res.returncode == 2 and "not valid TOML" in res.stderr
    header_only = write(tmp_path, "o.csv", "offer_id,provider,firm_kw,price,reliability\n")
    res = cli("capacity", NEED, header_only)
    assert res.returncode == 2 and "o.csv:1: no offers" in res.stderr
    unknown = write(tmp_path, "u.csv", "offer_id,provider,firm_kw,price,reliability,colour\n")
    res = cli("capacity", NEED, unknown)
    assert res.returncode == 2 and "column 'colour': unknown column" in res.stderr
    # Outputs nothing half written: a copy of the example still runs.
    shutil.copy(OFFERS, tmp_path / "ok.csv")
    assert cli("capacity", NEED, tmp_path / "ok.csv").returncode == 0
