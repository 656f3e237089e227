"""A simulation's report carries its journal and settlement report: `journal verify` passes
on it, fails on a copy with one edited byte naming the record, and a participant checks its
own records from a proof file with the operator's public key alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from cli_run import cli

SCENARIO = """\
name = "journal"
region = "us"
feeder = "pandapower:kerber_landnetz_kabel_1"
start = "2016-07-11T04:00:00Z"
end = "2016-07-13T04:00:00Z"
market_interval_min = 60
powerflow_interval_min = 60
designs = ["bau-flat", "total-dso"]
warmup_days = 0
seed = 1
homes_per_load = 1

[der]
penetration = { ev = 50, pv = 50 }

[wholesale]
source = "prices"
prices = "prices.csv"
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("journal")
    (d / "prices.csv").write_text("start,price\n2016-07-01T00:00:00Z,40\n")
    (d / "s.toml").write_text(SCENARIO)
    res = cli("simulate", "s.toml", "--report", "rep", cwd=d)
    assert res.returncode == 0, res.stderr
    return d / "rep"


def test_the_report_holds_the_journal_and_the_settlement_report(report: Path) -> None:
    index = (report / "index.html").read_text(encoding="utf-8")
    assert 'href="settlement/settlement.html"' in index
    html = (report / "settlement" / "settlement.html").read_text(encoding="utf-8")
    assert "equal to the simulator&#x27;s own settlement, to the cent" in html
    assert "journal.sqlite" in html and (report / "settlement" / "invoices" / "index.html").exists()
    res = cli("journal", "verify", report / "journal.sqlite", "--key", report / "operator.pub")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("verified:")


def test_one_edited_byte_fails_naming_the_record(report: Path, tmp_path: Path) -> None:
    data = bytearray((report / "journal.sqlite").read_bytes())
    at = data.find(b'"import_wh":') + len(b'"import_wh":')
    data[at] = ord("7") if data[at] != ord("7") else ord("6")  # one digit of one reading
    copy = tmp_path / "journal.sqlite"
    copy.write_bytes(bytes(data))
    res = cli("journal", "verify", copy, "--key", report / "operator.pub")
    assert res.returncode == 1
    assert "TAMPERED" in res.stdout and "meter_reading/" in res.stdout


def test_a_participant_verifies_its_own_records_from_a_proof(report: Path, tmp_path: Path) -> None:
    shown = cli("journal", "show", report / "journal.sqlite", "--kind", "settlement", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = [r["record"] for r in json.loads(shown.stdout)["records"]]
    home = next(r["participant_id"] for r in rows if str(r["participant_id"]).startswith("home"))
    proof = tmp_path / "proof.json"
    res = cli("journal", "prove", report / "journal.sqlite", "--participant", home, "--out", proof)
    assert res.returncode == 0, res.stderr
    text = proof.read_text(encoding="utf-8")
    # no other home appears (its own lines name its DSO as counterparty, nobody else)
    others = {r["participant_id"] for r in rows if r["participant_id"].startswith("home")} - {home}
    assert others and not any(f'"{o}"' in text for o in others)  # only hashes of theirs
    res = cli("journal", "verify", proof, "--key", report / "operator.pub")
    assert res.returncode == 0, res.stdout + res.stderr
