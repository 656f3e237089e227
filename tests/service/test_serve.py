"""`transactive serve` as a process: health, quiet stdout, clean SIGTERM, exit 2 on bad input."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

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
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.2)
        assert body is not None, f"no /healthz answer; exit {proc.poll()}"
        assert b'"status":"ok"' in body and b"sqlite" in body
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
