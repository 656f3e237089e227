"""The `transactive` command as a user runs it: every command as a subprocess, stdout that is
exactly one JSON document with --json and exactly the tables without it, bad input answered
with a message and exit code 2 (never a traceback), outputs that never delete user files,
and a start-up that loads nothing heavy before the arguments are checked."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from transactive.cli import CAP_HELP, FLOOR_HELP, app
from transactive.core.units import DEFAULT_CAP, DEFAULT_FLOOR
from transactive.sim.outputs import MARKER

EXAMPLES = Path(__file__).parents[1] / "examples"
NETWORK = ("pandapower:case33bw", EXAMPLES / "network-bids.csv")
SMALL_FEEDER = "pandapower:kerber_landnetz_kabel_1"  # 8 load points, 100 kVA
TINY = f"""\
name = "tiny"
region = "us"
feeder = "{SMALL_FEEDER}"
start = "2016-07-12T18:00:00Z"
end = "2016-07-12T19:00:00Z"
market_interval_min = 15
powerflow_interval_min = 15
designs = ["bau-flat", "total-dso"]
warmup_days = 0
seed = 1
homes_per_load = 1

[der]
penetration = {{ ev = 50, pv = 50 }}

[wholesale]
source = "prices"
prices = "prices.csv"
"""


def cli(
    *args: object, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `transactive ARGS` in a fresh interpreter (C libraries print to the real stdout)."""
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "transactive.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        preexec_fn=_limit_memory,
    )


def _limit_memory() -> None:
    """At most 6 GiB of address space: a runaway input fails instead of swapping."""
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def one_json_document(res: subprocess.CompletedProcess[str]) -> Any:
    """The whole stdout parsed as JSON: a solver banner or any other foreign line fails."""
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def foreign_lines(stdout: str, text: list[str]) -> list[str]:
    """Lines that are neither part of a table (borders, cells) nor one of the expected
    ``text`` lines (titles, summaries; matched at their start)."""
    table = "┏┃┡│└╇┗┣━"
    return [
        line
        for line in stdout.splitlines()
        if line.strip()
        and line.strip()[0] not in table
        and not any(line.strip().startswith(t) for t in text)
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scenario that simulates in seconds: 1 hour, 8 homes, two designs."""
    d = tmp_path_factory.mktemp("tiny")
    (d / "prices.csv").write_text("start,price\n2016-07-12T00:00:00Z,40\n")
    (d / "tiny.toml").write_text(TINY)
    return d / "tiny.toml"


# --- --json: exactly one JSON document on stdout, for every command -------------------------


def test_clear_json_is_one_document_with_owners() -> None:
    out = one_json_document(cli("clear", EXAMPLES / "bids.csv", "--json"))
    first = out["intervals"][0]
    assert first["status"] == "cleared" and first["price"] == pytest.approx(0.18)
    assert first["owners"]["h01-ev"] == "house-01" and first["awards"]["h01-ev"] == 7.2
    assert first["owners"]["grid-tier1"] == "wholesale"
    assert set(first["owners"]) == set(first["awards"]) == set(first["payments"])


def test_clear_network_json_is_one_document() -> None:
    # Strict on purpose: HiGHS printing its banner to stdout breaks this until the banner is
    # switched off where the solver is created (market/_network_lp.py).
    out = one_json_document(cli("clear-network", *NETWORK, "--json"))
    assert [r["status"] for r in out["intervals"]] == ["optimal", "optimal"]
    first = out["intervals"][0]
    assert set(first["owners"]) == set(first["awards"]) and first["owners"]["load-1"] == "load-1"


def test_simulate_json_is_one_document(tiny: Path) -> None:
    out = one_json_document(cli("simulate", tiny, "--json"))
    assert set(out["designs"]) == {"bau-flat", "total-dso"}
    assert "peak_import_kw" in out["designs"]["total-dso"]


def test_simulate_over_seeds_json_has_the_summary_and_the_tables(
    tiny: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "tables"
    out = one_json_document(cli("simulate", tiny, "--seeds", "2", "--json", "--out", out_dir))
    assert out["seeds"] == [1, 2] and out["baseline_design"] == "bau-flat"
    rows = out["summary"]
    assert {r["design"] for r in rows} == {"bau-flat", "total-dso"}
    assert set(rows[0]) == {
        "kpi", "design", "n", "mean", "lo", "hi", "diff", "diff_lo", "diff_hi", "significant"
    }  # fmt: skip
    for r in rows:
        if r["n"] < 2:  # a KPI undefined in a seed (e.g. a ratio of a zero mean): no interval
            assert r["lo"] is None and r["significant"] is False
            continue
        assert r["n"] == 2
        assert r["lo"] <= r["mean"] <= r["hi"]  # two seeds: a finite interval
        if r["design"] == "bau-flat":
            assert r["diff"] == 0.0 and r["significant"] is False
    peak = {r["design"]: r["mean"] for r in rows if r["kpi"] == "peak_import_kw"}
    assert out["designs"]["total-dso"]["peak_import_kw"] == peak["total-dso"]
    import pandas as pd

    by_seed = pd.read_csv(out_dir / "kpis_by_seed.csv")
    assert list(by_seed.columns) == ["seed", "design", "kpi", "value"]
    assert set(by_seed["seed"]) == {1, 2}
    summary = pd.read_parquet(out_dir / "summary.parquet")
    assert len(summary) == len(rows)
    assert (out_dir / "kpis.csv").is_file()  # the first seed's tables as before


def test_the_scenarios_seeds_key_and_the_option_that_overrides_it(
    tiny: Path, tmp_path: Path
) -> None:
    (tmp_path / "prices.csv").write_text((tiny.parent / "prices.csv").read_text())
    path = tmp_path / "two.toml"
    path.write_text(TINY.replace("seed = 1", 'seed = 4\nseeds = 2\nbaseline = "total-dso"'))
    out = one_json_document(cli("simulate", path, "--json", "--workers", "1"))
    assert out["seeds"] == [4, 5] and out["baseline_design"] == "total-dso"
    out = one_json_document(cli("simulate", path, "--json", "--seeds", "1"))
    assert out["seeds"] == [4] and all(r["lo"] is None for r in out["summary"])


def test_sweep_json_has_a_row_per_stage_design_and_kpi(tiny: Path) -> None:
    out = one_json_document(cli("sweep", tiny, "--stage", "1", "--stage", "3", "--json"))
    assert out["stages"] == [1, 3] and out["seeds"] == [1]
    rows = out["rows"]
    assert {(r["stage"], r["design"]) for r in rows} == {
        (s, d) for s in (1, 3) for d in ("bau-flat", "total-dso")
    }
    kpis = {r["kpi"] for r in rows}
    assert len(rows) == 4 * len(kpis) and "peak_import_kw" in kpis


def test_hosting_capacity_json_is_one_document() -> None:
    out = one_json_document(cli("hosting-capacity", SMALL_FEEDER, "--json"))
    assert out["feeder"] == SMALL_FEEDER and out["per_bus"]
    assert {"bus", "hosting_kw", "limit"} <= set(out["per_bus"][0])


# --- human output: the tables and nothing else ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "headings", "text"),
    [
        (
            ("clear", EXAMPLES / "bids.csv"),
            ["price $/kWh", "quantity kW", "status", "bid_id", "owner", "award kW"],
            ["Clearing (uniform price, pay-as-clear)", "Awards (kW, + bought, − sold)"],
        ),
        (
            ("clear-network", *NETWORK),
            ["status", "import kW", "DLMP min", "bus", "congestion", "V pu"],
            [
                "Network-constrained clearing (DLMP, $/kWh)",
                "largest LinDistFlow-vs-AC voltage difference:",
                "DLMP by bus ($/kWh) and voltage (pu)",
            ],
        ),
        (
            ("hosting-capacity", SMALL_FEEDER),
            ["bus", "kV", "hosting kW", "limited by"],
            [f"PV hosting capacity — {SMALL_FEEDER}", "feeder: "],
        ),
    ],
    ids=["clear", "clear-network", "hosting-capacity"],
)
def test_tables_and_nothing_else(args: tuple, headings: list[str], text: list[str]) -> None:
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    for h in headings:
        assert h in res.stdout
    assert foreign_lines(res.stdout, text) == []


def test_simulate_prints_the_kpi_table_and_nothing_else(tiny: Path, tmp_path: Path) -> None:
    res = cli("simulate", tiny, "--report", tmp_path / "report")
    assert res.returncode == 0, res.stderr
    for h in ("KPI", "bau-flat", "total-dso", "peak_import_kw", "total_cost_usd"):
        assert h in res.stdout
    text = [f"tiny on area={SMALL_FEEDER}: KPIs by design", f"report: {tmp_path / 'report'}"]
    assert foreign_lines(res.stdout, text) == []
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "One seed: no confidence interval can be given" in page  # one run, no interval
    assert "<th>bau-flat</th><th>total-dso</th>" in page  # compared with the first design


def test_simulate_over_seeds_prints_intervals_and_nothing_else(tiny: Path) -> None:
    res = cli("simulate", tiny, "--seeds", "3")
    assert res.returncode == 0, res.stderr
    for h in ("KPI", "bau-flat (baseline)", "total-dso", "peak_import_kw", "total_cost_usd"):
        assert h in res.stdout
    cells = [c.strip() for line in res.stdout.splitlines() for c in line.split("│")[2:-1]]
    assert cells and all("[" in c and c.rstrip("*").endswith("]") for c in cells), cells
    # The tiny scenario's retail and market prices differ on every seed: marked significant.
    price = next(line for line in res.stdout.splitlines() if "mean_price_usd_per_kwh" in line)
    assert price.split("│")[3].strip().endswith("*")
    text = [
        f"tiny on area={SMALL_FEEDER}: KPIs by design, mean [95 % CI] over 3 seeds",
        "* differs from bau-flat: the paired 95 % confidence interval",
        "the difference over 3 seeds excludes 0",  # the footnote's wrapped end, if wrapped
    ]
    assert foreign_lines(res.stdout, text) == []


def test_sweep_prints_the_main_kpis_and_writes_all(tiny: Path, tmp_path: Path) -> None:
    res = cli("sweep", tiny, "--stage", "2", "--seeds", "2", "--out", tmp_path / "sweep")
    assert res.returncode == 0, res.stderr
    for h in ("stage", "diff_lo", "peak_import_kw", "mean_bill_usd"):
        assert h in res.stdout
    assert "worst_v_max_pu" not in res.stdout  # not a main KPI: only in the table written
    text = ["tiny: designs across DER stages", "seeds and the difference from", "* significant"]
    assert foreign_lines(res.stdout, text) == []
    import pandas as pd

    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(table.columns[:4]) == ["stage", "kpi", "design", "n"]
    assert set(table["stage"]) == {2} and "worst_v_max_pu" in set(table["kpi"])
    assert set(pd.read_parquet(tmp_path / "sweep" / "kpis_by_seed.parquet")["seed"]) == {1, 2}


# --- newcomer mistakes: a message and exit code 2, never a traceback -------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("clear", "{dir}"), "is a directory, not a bid file"),
        (("clear-network", NETWORK[0], "{dir}"), "is a directory, not a bid file"),
        (("simulate", "{dir}"), "is a directory, not a scenario file"),
        (("clear", "{dir}/missing.csv"), "no such bid file"),
        (("simulate", "{dir}/missing.toml"), "no such scenario file"),
        (("clear", EXAMPLES / "bids.csv", "--floor", "3", "--cap", "1"), "--floor < --cap"),
        (("hosting-capacity", SMALL_FEEDER, "--der", "wind"), "--der must be 'pv' or 'ev'"),
        (("simulate", "{tiny}", "--seeds", "0"), "--seeds: need at least 1"),
        (("simulate", "{tiny}", "--workers", "0"), "--workers: need at least 1"),
        (("sweep", "{tiny}", "--stage", "7"), "--stage: 7 is not a DER stage"),
        (("sweep", "{tiny}", "--stage", "1", "--stage", "1"), "--stage: each stage once"),
        (("sweep", "{tiny}", "--stage", "1", "--seeds", "0"), "--seeds: need at least 1"),
    ],
)
def test_bad_input_is_a_message_and_exit_2(
    tiny: Path, tmp_path: Path, args: tuple, message: str
) -> None:
    res = cli(*(str(a).format(dir=tmp_path, tiny=tiny) for a in args))
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_too_many_homes_per_load_is_refused_by_key(tiny: Path, tmp_path: Path) -> None:
    # The scenario schema bounds homes_per_load; until it does, this run fails otherwise.
    (tmp_path / "prices.csv").write_text((tiny.parent / "prices.csv").read_text())
    path = tmp_path / "huge.toml"
    path.write_text(TINY.replace("homes_per_load = 1", "homes_per_load = 100000"))
    res = cli("simulate", path, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "homes_per_load" in res.stderr and "Traceback" not in res.stderr


def test_a_huge_buy_bid_trades_against_a_small_sell(tmp_path: Path) -> None:
    path = tmp_path / "bids.csv"
    path.write_text("bid_id,side,price,quantity\nhuge,buy,0.3,1e12\ns1,sell,0.1,500\n")
    r = one_json_document(cli("clear", path, "--json"))["intervals"][0]
    # Demand exceeds supply below 0.3 $/kWh and is 0 above: the price is the buyer's 0.3.
    assert r["status"] == "cleared" and r["price"] == pytest.approx(0.3)
    assert r["quantity"] == pytest.approx(500.0, rel=1e-12)
    assert r["seller_surplus"] == pytest.approx(100.0)  # (0.3 − 0.1) × 500 $/h


def test_an_unlimited_sell_bid_clears(tmp_path: Path) -> None:
    path = tmp_path / "bids.csv"
    path.write_text("bid_id,side,price,quantity\ngrid,sell,0.05,1e9\nload,buy,0.3,0.7\n")
    r = one_json_document(cli("clear", path, "--json"))["intervals"][0]
    assert r["status"] == "cleared" and r["price"] == pytest.approx(0.05)
    assert r["awards"] == pytest.approx({"grid": -0.7, "load": 0.7}, rel=1e-15)


def test_the_price_band_defaults_are_the_project_defaults(tmp_path: Path) -> None:
    assert f"default: {DEFAULT_FLOOR}," in FLOOR_HELP and f"default: {DEFAULT_CAP}," in CAP_HELP
    path = tmp_path / "bids.csv"
    path.write_text(f"bid_id,side,price,quantity\na,buy,{DEFAULT_CAP + 0.5},1\n")
    res = CliRunner().invoke(app, ["clear", str(path)])
    assert res.exit_code == 2
    assert f"outside [{DEFAULT_FLOOR}, {DEFAULT_CAP}]" in res.stderr


# --- outputs: checked before the run, never deleting user files ------------------------------


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a simulation starts (the outputs must be refused before)."""
    import transactive.sim.runner as runner

    def run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the simulation ran before the output path was checked")

    monkeypatch.setattr(runner, "run", run)


@pytest.mark.usefixtures("no_run")
def test_out_onto_a_directory_with_user_files_refuses_and_keeps_them(
    tiny: Path, tmp_path: Path
) -> None:
    shipped = tmp_path / "examples"
    shipped.mkdir()
    (shipped / "summer-day.toml").write_text("mine")
    for option in ("--out", "--report"):
        res = CliRunner().invoke(app, ["simulate", str(tiny), option, str(shipped)])
        assert res.exit_code == 2 and "not a previous transactive output" in res.stderr
    assert [p.name for p in shipped.iterdir()] == ["summer-day.toml"]
    assert (shipped / "summer-day.toml").read_text() == "mine"


@pytest.mark.usefixtures("no_run")
def test_out_dot_refuses(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["simulate", str(tiny), "--out", "."])
    assert res.exit_code == 2 and "current directory" in res.stderr
    (tmp_path / "work.txt").write_text("mine")
    res = CliRunner().invoke(app, ["simulate", str(tiny), "--report", "."])
    assert res.exit_code == 2 and (tmp_path / "work.txt").read_text() == "mine"


@pytest.mark.usefixtures("no_run")
def test_an_unwritable_parent_fails_before_the_run(tiny: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        place = Path("/sys")  # root ignores permissions; a read-only kernel file system
    else:
        place = tmp_path / "ro"
        place.mkdir(mode=0o500)
    res = CliRunner().invoke(app, ["simulate", str(tiny), "--out", str(place / "results")])
    assert res.exit_code == 2 and "cannot write there" in res.stderr


@pytest.mark.usefixtures("no_run")
def test_out_and_report_are_separate_outputs(tiny: Path, tmp_path: Path) -> None:
    for out, report in (("r", "r"), ("r/tables", "r"), ("r", "r/sub")):
        args = ["simulate", str(tiny), "--out", str(tmp_path / out), "--report"]
        res = CliRunner().invoke(app, [*args, str(tmp_path / report)])
        assert res.exit_code == 2 and "different directories" in res.stderr


def test_rerunning_onto_a_previous_output_replaces_it(tiny: Path, tmp_path: Path) -> None:
    args = ["simulate", str(tiny), "--json", "--out", str(tmp_path / "tables")]
    args += ["--report", str(tmp_path / "report")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    for d in (tmp_path / "tables", tmp_path / "report"):
        assert (d / MARKER).is_file()
    listed = json.loads((tmp_path / "report" / MARKER).read_text())["files"]
    assert "index.html" in listed and "tables/kpis.parquet" in listed
    (tmp_path / "tables" / "kpis.csv").write_text("stale")  # one of ours: may be replaced
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "tables" / "kpis.csv").read_text() != "stale"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "tables"]  # no leftovers


# --- start-up: nothing heavy before the arguments are checked --------------------------------

HEAVY = ("numpy", "pandas", "scipy", "plotly", "pandapower", "simbench", "pvlib", "pyarrow")
PROBE = """
import json, sys
from transactive.cli import app
try:
    app(sys.argv[1:], prog_name="transactive")
except SystemExit as exc:
    code = exc.code
heavy = [m for m in {heavy!r} if m in sys.modules]
sys.stderr.write("\\n" + json.dumps({{"code": code, "heavy": heavy}}) + "\\n")
"""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--help",), 0),
        (("clear", "--help"), 0),
        (("simulate", "--help"), 0),
        (("clear", "missing.csv"), 2),
        (("clear", "{dir}"), 2),
        (("clear-network", NETWORK[0], "{dir}"), 2),
        (("clear", "x.csv", "--floor", "1", "--cap", "0"), 2),
        (("simulate", "missing.toml"), 2),
        (("simulate", "{dir}"), 2),
        (("simulate", "{tiny}", "--out", "."), 2),
        (("simulate", "{tiny}", "--out", "{dir}"), 2),
        (("simulate", "{tiny}", "--out", "/sys/transactive-out"), 2),
        (("simulate", "{tiny}", "--seeds", "0"), 2),
        (("sweep", "--help"), 0),
        (("sweep", "{tiny}", "--stage", "7"), 2),
        (("sweep", "{tiny}", "--stage", "1", "--out", "{dir}"), 2),
    ],
)
def test_help_and_bad_arguments_load_nothing_heavy(
    tiny: Path, tmp_path: Path, args: tuple, code: int
) -> None:
    (tmp_path / "user.txt").write_text("mine")  # {dir} is not empty: not an output
    (tmp_path / "x.csv").write_text("bid_id,side,price,quantity\n")
    argv = [str(a).format(dir=tmp_path, tiny=tiny) for a in args]
    res = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    probe = json.loads(res.stderr.strip().splitlines()[-1])
    assert probe == {"code": code, "heavy": []}, res.stderr


def test_bad_scenario_is_refused_before_the_simulator_loads(tmp_path: Path) -> None:
    # Validation needs numpy (device parameters) but not pandas, scipy, pvlib or the grid.
    bad = tmp_path / "bad.toml"
    bad.write_text('feeder = "simbench:1-LV-semiurb4--0-sw"\ncolour = "red"\n')
    res = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY[1:]), "simulate", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    probe = json.loads(res.stderr.strip().splitlines()[-1])
    assert probe == {"code": 2, "heavy": []}, res.stderr
    assert "'colour': unknown key" in res.stderr
