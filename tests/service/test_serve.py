"""`transactive serve` as a process: health, quiet stdout, clean SIGTERM, exit 2 on bad input."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from transactive.service.client import wait_until_up
from transactive.service.clock import Clock

TRANSACTIVE = [sys.executable, "-m", "transactive.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRANSACTIVE, "serve", *args], capture_output=True, text=True, timeout=120, env=_env()
    )


def test_serve_health_quiet_stdout_and_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    proc = subprocess.Popen(
        [*TRANSACTIVE, "serve", "--db", db, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        body = wait_until_up(f"http://127.0.0.1:{port}", proc, timeout_s=90)
        assert body == {"status": "ok", "database": "sqlite"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert out == "", f"unexpected stdout: {out!r}"
    assert f"http://127.0.0.1:{port}" in err


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@localhost/x",
        "sqlite:////no/such/dir/x.db",
        "postgresql://nobody@127.0.0.1:1/x",
    ],
)
def test_bad_db_exits_2_naming_db(url: str) -> None:
    r = _run("--db", url, "--port", str(_free_port()))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--db" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""


def test_bad_scenario_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = not [valid toml\n")
    db = f"sqlite:///{tmp_path / 's.db'}"
    r = _run("--db", db, "--scenario", str(bad), "--port", str(_free_port()))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert "bad.toml" in r.stderr
    assert not (tmp_path / "s.db").exists()  # refused before any database I/O


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--clock-start", "tomorrow"], "--clock-start"),
        (["--clock-start", "2030-01-01T00:00"], "--clock-start"),  # no time zone
        (["--clock-speed", "60"], "--clock-speed"),  # without --clock-start
        (["--clock-epoch", "1700000000"], "--clock-epoch"),  # without --clock-start
        (["--clock-start", "2030-01-01T00:00Z", "--clock-speed", "0"], "--clock-speed"),
        (["--clock-start", "2030-01-01T00:00Z", "--clock-speed", "-3"], "--clock-speed"),
        (["--clock-start", "2030-01-01T00:00Z", "--clock-speed", "nan"], "--clock-speed"),
        (["--clock-start", "2030-01-01T00:00Z", "--clock-speed", "fast"], "--clock-speed"),
        (["--clock-start", "2030-01-01T00:00Z", "--clock-epoch", "inf"], "--clock-epoch"),
    ],
)
def test_bad_clock_option_exits_2_naming_it(tmp_path: Path, args: list[str], option: str) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    r = _run("--db", db, "--port", str(_free_port()), *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert option in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert not (tmp_path / "c.db").exists()  # refused before any database I/O


def _first_session(db_path: Path, proc: subprocess.Popen[str]) -> datetime:
    """The earliest interval start of the sessions the server's scheduler opened."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                with sqlite3.connect(db_path) as c:
                    row = c.execute("SELECT min(interval_start) FROM market_sessions").fetchone()
            except sqlite3.OperationalError:  # not migrated yet
                row = None
            if row and row[0]:
                return datetime.fromisoformat(str(row[0])).replace(tzinfo=UTC)
        time.sleep(0.2)
    raise AssertionError(f"no sessions opened; exit {proc.poll()}")


def test_clock_epoch_fixes_the_market_time(tmp_path: Path) -> None:
    """`--clock-start T --clock-epoch E`: market time is T at wall time E, in every process.
    E is 10 market hours ago (speed 2: 5 wall hours), so the first session the scheduler
    opens is about T + 10 h, never T (where a clock started at start-up would be)."""
    db_path = tmp_path / "clock.db"
    start = datetime(2030, 1, 1, tzinfo=UTC)
    epoch = time.time() - 5 * 3600
    args = ["--db", f"sqlite:///{db_path}", "--port", str(_free_port())]
    args += ["--clock-start", "2030-01-01T00:00Z", "--clock-speed", "2"]
    args += ["--clock-epoch", repr(epoch)]
    proc = subprocess.Popen(
        [*TRANSACTIVE, "serve", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        first = _first_session(db_path, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    market_now = start + timedelta(hours=10)
    # sessions open from the first interval whose gate (5 min before it) is still open
    assert market_now < first <= market_now + timedelta(minutes=30), first


def test_clocks_with_one_epoch_agree_whenever_they_are_built() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    epoch = time.time() - 100.0
    a = Clock(start, 60.0, epoch)
    time.sleep(0.05)
    b = Clock(start, 60.0, epoch)
    assert abs((b.now() - a.now()).total_seconds()) < 60.0 * 0.02  # read 1 ms apart or so
    assert abs((a.now() - start).total_seconds() - 6000.0) < 60.0 * 5  # 100 wall s x 60
    assert abs(a.wall_time(start) - epoch) < 1e-6
    fresh = Clock(start, 60.0)  # no epoch: starts at creation, every time
    assert (fresh.now() - start).total_seconds() < 60.0 * 5
    for bad in (dict(speed=0.0), dict(speed=float("inf")), dict(epoch=float("nan"))):
        with pytest.raises(ValueError):
            Clock(start, **bad)
    with pytest.raises(ValueError, match="epoch needs a start"):
        Clock(None, 1.0, epoch)


def test_wait_until_up_reports_an_exited_server_and_a_timeout(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*TRANSACTIVE, "serve", "--db", "mysql://root@localhost/x", "--port", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    with pytest.raises(RuntimeError, match=r"exited with code 2: .*--db"):
        wait_until_up(f"http://127.0.0.1:{_free_port()}", proc, timeout_s=90)
    with pytest.raises(RuntimeError, match=r"did not answer /healthz in 0\.3 s"):
        wait_until_up(f"http://127.0.0.1:{_free_port()}", timeout_s=0.3)


def test_serve_workers_share_the_port_and_stop_cleanly(tmp_path: Path) -> None:
    """`--workers 2` on PostgreSQL: two processes answer on one port, SIGTERM stops both
    (exit 0); on SQLite more than one worker is refused (exit 2, naming the option)."""
    refused = _run("--db", f"sqlite:///{tmp_path / 'w.db'}", "--workers", "2")
    assert refused.returncode == 2 and "--workers 2" in refused.stderr
    base = os.environ.get(
        "TRANSACTIVE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    schema = f"w_{uuid.uuid4().hex[:10]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    port = _free_port()
    db = f"{base}?options=-csearch_path%3D{schema}"
    proc = subprocess.Popen(
        [*TRANSACTIVE, "serve", "--db", db, "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 90
        answers = 0
        while time.monotonic() < deadline and proc.poll() is None and answers < 20:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    answers += r.status == 200 and b"postgresql" in r.read()
            except OSError:
                time.sleep(0.2)
        assert answers == 20, f"exit {proc.poll()}"
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(kids) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        with engine.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
    assert proc.returncode == 0, err
    assert out == ""
    assert all(not Path(f"/proc/{k}").exists() for k in kids)
