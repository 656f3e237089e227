"""`transactive settle` on a run's records, as a user runs it: the signed readings are
verified and settled again to the cent; a tampered reading is refused naming it; a lost
message is estimated, flagged and billed as estimated; bad directories exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from transactive.sim import runner
from transactive.sim.results import READINGS_FILE, RUN_FILE, write_tables
from transactive.sim.scenario import parse_scenario

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from test_runner import scenario

from cli_run import cli


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two local days (New York clock) of one tariff design and one market design."""
    tmp = tmp_path_factory.mktemp("records")
    raw: dict[str, Any] = scenario(
        tmp,
        start="2016-07-11T04:00:00Z",
        end="2016-07-13T04:00:00Z",
        market_interval_min=60,
        powerflow_interval_min=60,
        designs=["bau-flat", "total-dso"],
        homes_per_load=2,
    )
    out = tmp / "tables"
    write_tables(runner.run(parse_scenario(raw)), out)
    return out


def copy_of(records: Path, tmp_path: Path) -> Path:
    target = tmp_path / "records"
    target.mkdir()
    for f in records.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


def test_settle_verifies_and_matches_the_simulation_to_the_cent(
    records: Path, tmp_path: Path
) -> None:
    res = cli("settle", records, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # one JSON document, nothing else on stdout
    assert doc["matches_simulation"] is True
    assert {d["design"] for d in doc["designs"]} == {"bau-flat", "total-dso"}
    assert all(v["estimated"] == 0 and v["missing"] == 0 for v in doc["vee"])
    out = tmp_path / "settled"
    res = cli("settle", records, "--out", out, "--baseline", "high-4-of-5")
    assert res.returncode == 0, res.stderr
    text = ("settlement (", "records:", "equal to the simulator", "monitoring:", "report:")
    foreign = [
        line
        for line in res.stdout.splitlines()
        if line.strip() and line.strip()[0] not in "┏┃┡│└╇━" and not line.strip().startswith(text)
    ]
    assert foreign == []
    html = (out / "settlement.html").read_text(encoding="utf-8")
    assert "Balance per design" in html and "<b>high-4-of-5</b>" in html
    index = pd.read_csv(out / "invoices" / "index.csv")
    lines = pd.read_parquet(out / "settlement_lines.parquet")
    # an invoice nets what its participant pays and receives: together they net to zero,
    # and a home's total is the sum of its lines
    assert round(index["total"].sum() * 100) == 0
    homes = index[index["participant_id"].str.startswith("home")]
    paid = lines.groupby(["design", "participant_id"])["amount"].sum()
    assert len(homes) and all(
        round(r.total * 100) == paid[(r.design, r.participant_id)] for r in homes.itertuples()
    )


def test_a_tampered_reading_is_refused_and_nothing_is_written(
    records: Path, tmp_path: Path
) -> None:
    d = copy_of(records, tmp_path)
    lines = (d / READINGS_FILE).read_text(encoding="utf-8").splitlines()
    doc = json.loads(lines[2])
    reading = doc["message"]["readings"][5]
    reading["import_wh"] = reading["import_wh"] + 1000  # one more kWh, signature unchanged
    lines[2] = json.dumps(doc)
    (d / READINGS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "settled"
    res = cli("settle", d, "--out", out)
    assert res.returncode == 2, res.stderr
    assert "signature" in res.stderr and doc["message"]["meter_id"] in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()


def test_a_lost_message_is_estimated_flagged_and_billed_as_estimated(
    records: Path, tmp_path: Path
) -> None:
    d = copy_of(records, tmp_path)
    lines = (d / READINGS_FILE).read_text(encoding="utf-8").splitlines()
    docs = [json.loads(x) for x in lines]
    # the second day's message of one home meter in bau-flat
    lost = next(
        i
        for i, x in enumerate(docs)
        if x["design"] == "bau-flat"
        and x["message"]["meter_id"].startswith("meter:home")
        and x["message"]["readings"][0]["interval_start"] >= "2016-07-12T04:00:00Z"
    )
    meter_id = docs[lost]["message"]["meter_id"]
    del lines[lost]
    (d / READINGS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "settled"
    res = cli("settle", d, "--json", "--out", out)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    vee = {v["design"]: v for v in doc["vee"]}
    assert vee["bau-flat"]["estimated"] == 24 and vee["bau-flat"]["missing"] == 0
    assert vee["total-dso"]["estimated"] == 0
    assert doc["matches_simulation"] is False  # one day of one home is an estimate now
    settled = pd.read_parquet(out / "settlement_lines.parquet")
    mine = settled[(settled["resource_id"] == meter_id) & (settled["design"] == "bau-flat")]
    day2 = pd.to_datetime(mine["interval_start"], utc=True) >= pd.Timestamp("2016-07-12T04:00Z")
    energy = mine["charge"] == "energy"
    assert (mine.loc[day2 & energy, "quality"] == "estimated").all()
    assert (day2 & energy).sum() == 24
    assert (mine.loc[~day2 & energy, "quality"] == "measured").all()
    # the period's network charge rests on both days: the worst quality, estimated
    assert (mine.loc[mine["charge"] == "network", "quality"] == "estimated").all()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / RUN_FILE).unlink(), "no run.json"),
        (
            lambda d: (d / RUN_FILE).write_text(
                json.dumps({**json.loads((d / RUN_FILE).read_text()), "currency": "EURO"})
            ),
            "'currency'",
        ),
        (
            lambda d: (d / READINGS_FILE).write_text(
                (d / READINGS_FILE).read_text() + "not json\n"
            ),
            "line ",
        ),
        (lambda d: (d / "nodes.parquet").unlink() or (d / "nodes.csv").unlink(), "no nodes"),
    ],
    ids=["no-run-file", "bad-currency", "bad-readings-line", "no-nodes"],
)
def test_bad_records_directory_exits_2_naming_the_culprit(
    records: Path, tmp_path: Path, damage: Any, message: str
) -> None:
    d = copy_of(records, tmp_path)
    damage(d)
    res = cli("settle", d)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr


def test_unknown_baseline_is_refused_listing_the_known(records: Path) -> None:
    res = cli("settle", records, "--baseline", "yesterday")
    assert res.returncode == 2
    assert "caiso-10-of-10" in res.stderr
