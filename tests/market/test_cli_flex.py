"""`transactive flex` as a user runs it (a subprocess) on examples/flex/: the asks and the
commit as tables and as one JSON document, and bad files named by file, line and column
with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli_run import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flex"
FORECAST = EXAMPLES / "forecast.csv"
OFFERS = EXAMPLES / "offers.csv"
FEEDER = "simbench:1-LV-rural2--0-sw"
BAND = ("--v-min", "0.9", "--v-max", "1.1")


@pytest.fixture(scope="module")
def doc() -> dict[str, object]:
    r = cli("flex", FEEDER, FORECAST, OFFERS, "--json", *BAND)
    assert r.returncode == 0, r.stderr
    out: dict[str, object] = json.loads(r.stdout)  # one JSON document, nothing else
    return out


def test_json_names_the_asks_and_every_committed_offer(doc: dict[str, object]) -> None:
    assert doc["status"] == "committed"
    assert doc["violations_after"] == 0 and doc["violations_before"] == 7
    asks = doc["asks"]
    assert isinstance(asks, list)
    assert {a["resource_id"] for a in asks} == {
        "branch:LV2.101 Line 53", "branch:LV2.101 Line 66", "branch:LV2.101 Line 67",
        "branch:MV1.101-LV2.101-Trafo 1",
    }  # fmt: skip
    assert all(a["direction"] == "up" and a["kw"] > 0 for a in asks)
    offers = {o["offer_id"]: o for o in doc["offers"]}  # type: ignore[attr-defined]
    assert set(offers) == {"o1", "o2", "o3", "o4", "o5"}
    committed = {k for k, o in offers.items() if o["committed"]}
    assert committed and committed <= {"o1", "o4", "o5"}  # below the overloaded line
    assert not offers["o3"]["committed"]  # another branch: cannot relieve Line 53
    cost = sum(o["cost"] for o in offers.values())
    assert doc["cost"] == pytest.approx(cost)
    com = doc["commitments"]
    assert isinstance(com, list) and {c["resource_id"] for c in com} == committed
    paid = sum(c["committed_kw"] * (c["availability_price"] + 0.25 * c["price"]) for c in com)
    assert paid == pytest.approx(doc["cost"])
    assert 1 < float(doc["cost"]) < 20  # a few euros for ~35 kW over half an hour


def test_tables_show_the_commit_and_the_clean_verification() -> None:
    r = cli("flex", FEEDER, FORECAST, OFFERS, *BAND)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Flexibility asks" in out and "line_overload" in out
    assert "o1" in out and "o3 (not committed)" in out
    assert "violations after commit: 0" in out
    assert "status: committed" in out


def test_a_tight_band_without_enough_offers_is_infeasible(tmp_path: Path) -> None:
    few = tmp_path / "few.csv"
    lines = OFFERS.read_text().splitlines()
    few.write_text("\n".join([lines[0]] + [x for x in lines[1:] if x.startswith("o3,")]) + "\n")
    r = cli("flex", FEEDER, FORECAST, few, "--json", *BAND)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "infeasible" and doc["commitments"] == []
    assert {x["resource_id"] for x in doc["remaining"]} >= {"branch:LV2.101 Line 53"}


def test_partial_buys_the_reachable_relief(tmp_path: Path) -> None:
    few = tmp_path / "few.csv"
    lines = OFFERS.read_text().splitlines()
    few.write_text("\n".join([lines[0]] + [x for x in lines[1:] if x.startswith("o3,")]) + "\n")
    r = cli("flex", FEEDER, FORECAST, few, "--json", "--partial", *BAND)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "partial" and doc["cost"] > 0
    assert {c["resource_id"] for c in doc["commitments"]} == {"o3"}  # relieves the trafo
    assert {x["resource_id"] for x in doc["remaining"]} >= {"branch:LV2.101 Line 53"}
    assert "branch:MV1.101-LV2.101-Trafo 1" not in {x["resource_id"] for x in doc["remaining"]}
    ver = doc["verification"]
    assert 0 < doc["violations_after"] < doc["violations_before"]
    assert "MV1.101-LV2.101-Trafo 1" not in {v["element"] for v in ver}
    # every remaining violation was in the forecast and is not worse: reduced, none new
    assert all(v["magnitude"] <= v["forecast_magnitude"] + 1e-9 for v in ver)
    tables = cli("flex", FEEDER, FORECAST, few, "--partial", *BAND)
    assert tables.returncode == 0 and "status: partial" in tables.stdout


def _edit(tmp_path: Path, src: Path, line: int, old: str, new: str) -> Path:
    rows = src.read_text().splitlines()
    assert old in rows[line - 1]
    rows[line - 1] = rows[line - 1].replace(old, new, 1)
    out = tmp_path / src.name
    out.write_text("\n".join(rows) + "\n")
    return out


@pytest.mark.parametrize(
    ("which", "line", "old", "new", "column", "needle"),
    [
        ("offers", 3, "LV2.101 Bus 36", "LV2.101 Bus 999", "bus", "no such bus"),
        ("offers", 4, ",30,", ",-30,", "kw", "≥ 0"),
        ("offers", 5, "2016-01-11T16:30:00Z", "2016-01-12T16:30:00Z", "time", "not an interval"),
        ("offers", 5, ",true\n", ",false\n", "all_or_none", "differs"),
        ("offers", 2, "16:00:00Z", "16:00:00", "time", "no UTC offset"),
        ("forecast", 3, "LV2.101 Bus 53", "nowhere", "bus", "no bus 'nowhere'"),
        ("forecast", 2, ",0.334,", ",x,", "p_kw", "not a number"),
    ],
)
def test_bad_files_name_file_line_and_column(
    tmp_path: Path, which: str, line: int, old: str, new: str, column: str, needle: str
) -> None:
    src = OFFERS if which == "offers" else FORECAST
    if old.endswith("\n"):  # the last cell of the line
        rows = src.read_text().splitlines()
        assert rows[line - 1].endswith(old[:-1])
        rows[line - 1] = rows[line - 1][: -len(old) + 1] + new[:-1]
        bad = tmp_path / src.name
        bad.write_text("\n".join(rows) + "\n")
    else:
        bad = _edit(tmp_path, src, line, old, new)
    args = (bad, OFFERS) if which == "forecast" else (FORECAST, bad)
    r = cli("flex", FEEDER, *args, *BAND)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{bad}:{line}: column '{column}'" in r.stderr
    assert needle in r.stderr
    assert r.stdout == ""  # nothing half printed


def test_missing_file_and_unknown_column(tmp_path: Path) -> None:
    r = cli("flex", FEEDER, tmp_path / "nope.csv", OFFERS)
    assert r.returncode == 2 and "nope.csv" in r.stderr
    bad = tmp_path / "offers.csv"
    text = OFFERS.read_text().replace("all_or_none", "all_or_nothing", 1)
    bad.write_text(text)
    r = cli("flex", FEEDER, FORECAST, bad)
    assert r.returncode == 2
    assert f"{bad}:1" in r.stderr and "all_or_none" in r.stderr


PROBE = """
import json, sys
from transactive.cli import app
try:
    app(sys.argv[1:], prog_name="transactive")
except SystemExit as exc:
    code = exc.code
heavy = [m for m in ("numpy", "pandas", "scipy", "pandapower", "simbench") if m in sys.modules]
sys.stderr.write("\\n" + json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


@pytest.mark.parametrize(
    ("args", "code"),
    [(("flex", "--help"), 0), (("flex", FEEDER, "missing.csv", str(OFFERS)), 2)],
)
def test_help_and_a_missing_file_load_nothing_heavy(
    tmp_path: Path, args: tuple[str, ...], code: int
) -> None:
    res = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=tmp_path,
        timeout=120,
    )  # fmt: skip
    probe = json.loads(res.stderr.strip().splitlines()[-1])
    assert probe == {"code": code, "heavy": []}, res.stderr
