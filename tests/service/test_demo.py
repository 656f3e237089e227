"""`transactive serve --demo`: a whole simulated day end to end in a subprocess (the homes
bid over HTTP, every session clears, the meters post signed readings, settlement balances
to the cent, the journal verifies, stdout holds the summary alone); and the parts it
builds on: the selection of the client homes' devices and the held clock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from transactive.errors import InvalidInputError
from transactive.service.demo import HeldClock, run_demo
from transactive.sim.scenario import load_scenario
from transactive.sim.world import build_world, select_homes

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "examples" / "service-demo.toml"
SUMMARY = (
    "live demo ",
    "sessions cleared:",
    "bids accepted:",
    "timing:",
    "meter readings:",
    "kWh/home/day:",
    "settlement runs:",
    "journal:",
)


@pytest.mark.slow
def test_a_simulated_day_clears_every_session_and_balances_to_the_cent() -> None:
    exe = Path(sys.executable).with_name("transactive")
    cmd = [str(exe), "serve", "--demo", str(SCENARIO),
           "--hours", "24", "--speed", "2", "--homes", "5", "--exit"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert r.returncode == 0, r.stderr[-3000:]
    # stdout: the summary and nothing else (progress and any library's prints: stderr)
    lines = r.stdout.strip().splitlines()
    behind = "the clients fell behind the clock"  # a loaded machine: said, not failed
    assert [x for x in lines if not x.startswith((*SUMMARY, behind))] == [], r.stdout
    assert [p for p in SUMMARY if any(x.startswith(p) for x in lines)] == list(SUMMARY)
    assert "demo: service on http://127.0.0.1:" in r.stderr
    hourly = re.findall(r"demo: 2016-07-12 (\d\d):00Z price", r.stderr)
    assert hourly == [f"{h:02d}" for h in range(24)], r.stderr[-3000:]
    m = re.search(r"sessions cleared: (\d+)/(\d+)", r.stdout)
    assert m and m[1] == m[2] == "96", r.stdout
    bids = re.search(r"bids accepted: (\d+)", r.stdout)
    assert bids and int(bids[1]) > 0, r.stdout
    readings = re.search(r"meter readings: (\d+) signed", r.stdout)
    assert readings and int(readings[1]) >= 96 * 5, r.stdout
    kwh = re.search(r"kWh/home/day: (\S+) net", r.stdout)
    assert kwh and 4.0 <= float(kwh[1]) <= 16.0, r.stdout  # five German homes in July
    bal = re.search(r"settlement runs: (\d+), invoices: (\d+), balance: (\S+) EUR", r.stdout)
    assert bal and bal[1] == "24" and int(bal[2]) > 0 and bal[3] == "0.00", r.stdout
    assert "balanced to the cent" in r.stdout
    assert re.search(r"(\d+)/\1 inclusion proofs verified, consistency verified", r.stdout)


def test_select_homes_keeps_only_their_devices_with_their_state() -> None:
    world = build_world(load_scenario(SCENARIO))
    dev = world.devices
    with_battery = np.unique(dev.home[dev.kind == "battery"])
    homes = np.unique(np.concatenate([with_battery[:2], [0]]))
    sub = select_homes(world, homes)
    keep = np.isin(dev.home, homes)
    assert sub.devices.n == int(keep.sum()) > 0
    np.testing.assert_array_equal(sub.devices.id, dev.id[keep])
    np.testing.assert_array_equal(sub.devices.owner, dev.owner[keep])
    assert set(sub.devices.kind[sub.devices.owner == "agg:vpp"]) == {"battery"}
    assert sum(f.n for f in sub.devices.fleets) == sub.devices.n
    for f, sl in zip(sub.devices.fleets, sub.devices.slices, strict=True):
        assert f.n == sl.stop - sl.start
    # a kept battery keeps its parameters and state of charge
    b_old = next(f for f in dev.fleets if f.kind == "battery")
    b_new = next(f for f in sub.devices.fleets if f.kind == "battery")
    old_sl = dev.slices[[f.kind for f in dev.fleets].index("battery")]
    kept = np.flatnonzero(keep[old_sl])
    np.testing.assert_array_equal(b_new.params.capacity_kwh, b_old.params.capacity_kwh[kept])
    np.testing.assert_array_equal(b_new.state.soc, b_old.state.soc[kept])
    assert sub.plan.n_devices == sub.devices.n
    with pytest.raises(InvalidInputError, match="home indices"):
        select_homes(world, np.array([world.home_id.size]))


def test_held_clock_stands_still_until_released() -> None:
    start = datetime(2016, 7, 11, 23, 47, 30, tzinfo=UTC)
    clock = HeldClock(start, 900.0)
    time.sleep(0.05)
    assert clock.now() == start
    clock.release()
    time.sleep(0.05)
    assert start + timedelta(seconds=30) < clock.now() < start + timedelta(hours=1)


def test_more_hours_than_the_scenario_is_refused_naming_the_option() -> None:
    with pytest.raises(InvalidInputError, match=r"--hours 25: the scenario .* covers 24 h"):
        run_demo(SCENARIO, hours=25)


def test_a_database_that_holds_parties_is_refused(tmp_path: Path) -> None:
    from transactive.service.db import open_database
    from transactive.service.identity import create_party

    url = f"sqlite:///{tmp_path / 'used.db'}"
    db = open_database(url)
    with db.sessions() as s:
        now = datetime.now(UTC)
        create_party(s, party_id="x", name="x", role="tso", area=None, aggregator_id=None, now=now)
        s.commit()
    db.dispose()
    with pytest.raises(InvalidInputError, match=r"--db .*used\.db.*already holds parties"):
        run_demo(SCENARIO, db_url=url, hours=1)
