"""Load benchmark of the market service: `transactive serve` on loopback, on SQLite and
PostgreSQL.

* single bids: ``--conns`` keep-alive connections posting one bid each (with an
  ``Idempotency-Key``, as :class:`transactive.service.client.AsyncClient` sends) for
  ``--seconds``: requests/s and latency p50/p95/p99 (ms); every answer must be a 201;
* batch intake: ``--batchers`` clients posting batches of ``--batch`` bids for
  ``--seconds`` / 4: bids/s (a 201 means committed and journaled);
* server RSS (MiB) sampled every second over the whole run (start / max / end);
* server CPU time per request / per bid (µs, user + system of the server process): less
  sensitive than the rates to other load on the machine.

The load generator is a lean HTTP/1.1 client on asyncio streams (uvloop when installed):
httpx costs ~0.5 ms of CPU per request, which on a 2-core machine would measure the
client, not the service. Clearing 100,000 bids at gate closure is measured by
benchmarks/service_clearing.py.

Usage: ``python benchmarks/service_load.py [--backend sqlite|postgresql|both]
[--seconds 60] [--workers N] [--json PATH] [--py-spy EXE]``; prints one table row per
backend (and the machine load from ``/proc/loadavg`` before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, text

from transactive.service.db import open_database
from transactive.service.identity import create_client, create_party

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
N_CLIENTS = 24  # the per-client rate limit (200 req/s) is spread over this many parties


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` and its children (MiB), from /proc."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = [int(k) for k in kids]
    return out + [g for k in out for g in _children(k)]


def cpu_s(pid: int) -> float:
    """CPU time (user + system, s) of ``pid`` and its children, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def measured(pid: int, phase: Any) -> dict[str, Any]:
    """Run ``phase`` (a coroutine) and add the server's and this process's CPU time."""
    s0, c0 = cpu_s(pid), sum(os.times()[:2])
    out = dict(asyncio.run(phase))
    out["server_cpu_s"] = cpu_s(pid) - s0
    out["client_cpu_s"] = sum(os.times()[:2]) - c0
    return out


def load_avg() -> str:
    """The 1/5/15-minute load averages (``uptime``'s figures)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def setup(db_url: str) -> list[tuple[str, str]]:
    """Create ``N_CLIENTS`` participants with one OAuth2 client each: (id, secret)."""
    db = open_database(db_url)
    now = datetime.now(UTC)
    out = []
    with db.sessions() as s:
        for i in range(N_CLIENTS):
            pid = f"load-{i}"
            create_party(s, party_id=pid, name=pid, role="participant", area=None,
                         aggregator_id=None, now=now)  # fmt: skip
            s.flush()
            c = create_client(s, pid, now)
            out.append((c.client_id, c.client_secret))
        s.commit()
    db.dispose()
    return out


def tokens(url: str, creds: list[tuple[str, str]]) -> list[str]:
    """One access token per client (POST /v1/token)."""
    out = []
    with httpx.Client(base_url=url, timeout=60) as h:
        for cid, secret in creds:
            form = {"grant_type": "client_credentials", "client_id": cid, "client_secret": secret}
            r = h.post("/v1/token", data=form)
            r.raise_for_status()
            out.append(str(r.json()["access_token"]))
    return out


class Conn:
    """One keep-alive HTTP/1.1 connection: ``post`` sends a JSON body, returns (status,
    body bytes)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self.reader is not None
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n".encode("latin-1")
            + body
        )
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


@dataclass
class Target:
    host: str
    port: int
    session_id: str
    tokens: list[str]


async def single(t: Target, conns: int, secs: float, tag: str = "s") -> dict[str, Any]:
    """``conns`` connections posting one bid per request for ``secs`` seconds."""
    lat: list[float] = []
    status: dict[int, int] = {}
    path = f"/v1/sessions/{t.session_id}/bids"
    t_end = time.perf_counter() + secs
    btag = tag.encode()

    async def worker(k: int) -> None:
        c = Conn(t.host, t.port)
        auth = {"Authorization": f"Bearer {t.tokens[k % len(t.tokens)]}"}
        i = 0
        try:
            while time.perf_counter() < t_end:
                body = b'{"bid_id":"%s%d-%d","side":"buy","price":0.2,"quantity_kw":1.0}' % (
                    btag,
                    k,
                    i,
                )
                t0 = time.perf_counter()
                code, _ = await c.post(path, body, {**auth, "Idempotency-Key": f"{tag}{k}-{i}"})
                if code == 201:
                    lat.append(time.perf_counter() - t0)
                status[code] = status.get(code, 0) + 1
                i += 1
        finally:
            await c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(conns)))
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1000

    def pct(q: float) -> float | None:
        return float(np.percentile(ms, q)) if ms.size else None

    return {
        "requests": len(lat),
        "non_201": {str(k): v for k, v in status.items() if k != 201},
        "req_per_s": len(lat) / wall,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "conns": conns,
    }


async def batch(t: Target, batchers: int, size: int, secs: float) -> dict[str, Any]:
    """``batchers`` connections posting batches of ``size`` bids for ``secs`` seconds."""
    n = 0
    lat: list[float] = []
    status: dict[int, int] = {}
    path = f"/v1/sessions/{t.session_id}/bids/batch"
    t_end = time.perf_counter() + secs

    async def worker(k: int) -> None:
        nonlocal n
        c = Conn(t.host, t.port)
        auth = {"Authorization": f"Bearer {t.tokens[k % len(t.tokens)]}"}
        try:
            while time.perf_counter() < t_end:
                tag = uuid.uuid4().hex[:8]
                bids = [{"bid_id": f"B{tag}-{i}", "side": "sell", "price": 0.05 + i % 9 * 0.01,
                         "quantity_kw": 2.0} for i in range(size)]  # fmt: skip
                body = json.dumps({"bids": bids}, separators=(",", ":")).encode()
                t0 = time.perf_counter()
                code, data = await c.post(path, body, {**auth, "Idempotency-Key": tag})
                status[code] = status.get(code, 0) + 1
                if code == 201:
                    n += int(json.loads(data)["accepted"])
                    lat.append(time.perf_counter() - t0)
        finally:
            await c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(batchers)))
    wall = time.perf_counter() - t0
    return {
        "bids": n,
        "bids_per_s": n / wall,
        "batch": size,
        "batchers": batchers,
        "non_201": {str(k): v for k, v in status.items() if k != 201},
        "p50_ms": float(np.median(np.array(lat) * 1000)) if lat else None,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _open_session(url: str, token: str) -> str:
    """The open session with the latest gate closure (the longest to bid into)."""
    r = httpx.get(
        f"{url}/v1/sessions",
        params={"status": "open", "limit": 100},
        headers={"Authorization": f"Bearer {token}"},
    )
    r.raise_for_status()
    return str(max(r.json(), key=lambda x: str(x["gate_closure"]))["id"])


def run(backend: str, a: argparse.Namespace) -> dict[str, Any]:
    """Start a server on ``backend``, load it, stop it; the figures as a dict."""
    tmp = tempfile.TemporaryDirectory()
    schema = None
    if backend == "sqlite":
        url_db = f"sqlite:///{tmp.name}/load.db"
    else:
        schema = f"load_{uuid.uuid4().hex[:8]}"
        eng = create_engine(PG, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        url_db = f"{PG}?options=-csearch_path%3D{schema}"
    creds = setup(url_db)
    port = a.port or _free_port()
    exe = Path(sys.executable).with_name("transactive")
    cmd = [str(exe), "serve", "--db", url_db, "--port", str(port)]
    if a.workers:
        cmd += ["--workers", str(a.workers)]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    spy: subprocess.Popen[bytes] | None = None
    load_before = load_avg()
    try:
        t_start = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
            if time.monotonic() - t_start > 120:
                raise RuntimeError("the server did not answer /healthz within 120 s")
        rss: list[float] = [rss_mib(proc.pid)]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                rss.append(rss_mib(proc.pid))

        threading.Thread(target=sample, daemon=True).start()
        toks = tokens(url, creds)
        t = Target("127.0.0.1", port, _open_session(url, toks[0]), toks)
        if a.py_spy:
            out = Path(a.py_spy_out or ".") / f"profile-{backend}.txt"
            spy_cmd = [a.py_spy, "record", "--pid", str(proc.pid), "--subprocesses", "--gil",
                       "--format", "raw", "--rate", "200", "--output", str(out)]  # fmt: skip
            spy = subprocess.Popen(spy_cmd)
            time.sleep(1.0)
        one = many = None
        if a.only in ("both", "single"):
            asyncio.run(single(t, a.conns, 2.0, tag="warm"))  # warm-up: not measured
            i0 = len(rss)
            one = measured(proc.pid, single(t, a.conns, a.seconds))
            during = rss[i0:] or rss[-1:]
            k = max(1, len(during) // 6)  # first and last sixth (10 s of 60 s)
            first, last = statistics.median(during[:k]), statistics.median(during[-k:])
            one["rss_mib"] = {"first": first, "last": last, "max": max(during)}
            one["server_cpu_us_per_req"] = 1e6 * one["server_cpu_s"] / max(1, one["requests"])
        if a.only in ("both", "batch"):
            many = measured(proc.pid, batch(t, a.batchers, a.batch, a.seconds / 4))
            many["server_cpu_us_per_bid"] = 1e6 * many["server_cpu_s"] / max(1, many["bids"])
        done.set()
        rss.append(rss_mib(proc.pid))
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        proc.terminate()
        proc.wait(60)
        if schema is not None:
            with eng.connect() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            eng.dispose()
        tmp.cleanup()
    return {
        "backend": backend,
        "workers": a.workers or 1,
        "seconds": a.seconds,
        "load_before": load_before,
        "load_after": load_avg(),
        "single": one,
        "batch": many,
        "rss_mib": {"start": rss[0], "max": max(rss), "end": rss[-1],
                    "median": statistics.median(rss), "samples": len(rss)},
    }  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as a fixed-width table."""

    def f(x: float | None, p: int = 0) -> str:
        return "-" if x is None else f"{x:,.{p}f}"

    head = ("backend", "wrk", "req/s", "p50 ms", "p95 ms", "p99 ms", "srv µs/req", "bids/s",
            "srv µs/bid",
            "RSS start/max/end MiB", "single RSS first→last 10 s",
            "load before → after")  # fmt: skip
    out = [head]
    for r in rows:
        s, b, m = r["single"] or {}, r["batch"] or {}, r["rss_mib"]
        out.append(
            (
                r["backend"],
                str(r["workers"]),
                f(s.get("req_per_s")),
                f(s.get("p50_ms"), 1),
                f(s.get("p95_ms"), 1),
                f(s.get("p99_ms"), 1),
                f(s.get("server_cpu_us_per_req")),
                f(b.get("bids_per_s")),
                f(b.get("server_cpu_us_per_bid"), 1),
                f"{m['start']:.0f} / {m['max']:.0f} / {m['end']:.0f}",
                (f"{s['rss_mib']['first']:.0f} → {s['rss_mib']['last']:.0f}" if s else "-"),
                f"{r['load_before']} → {r['load_after']}",
            )
        )
    w = [max(len(row[i]) for row in out) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(row))
             for row in out]  # fmt: skip
    errs = [
        f"{r['backend']}: non-201 answers single {r['single']['non_201']} "
        f"batch {r['batch']['non_201']}"
        for r in rows
        if r["single"] and r["batch"] and (r["single"]["non_201"] or r["batch"]["non_201"])
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], *errs])


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    ap.add_argument("--seconds", type=float, default=60.0, help="single-bid phase, s")
    ap.add_argument("--conns", type=int, default=64, help="single-bid connections")
    ap.add_argument("--batch", type=int, default=5000, help="bids per batch")
    ap.add_argument("--batchers", type=int, default=4, help="concurrent batch clients")
    ap.add_argument("--workers", type=int, default=0, help="serve --workers N (0: default)")
    ap.add_argument("--only", default="both", choices=["single", "batch", "both"])
    ap.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--py-spy", default=None, help="py-spy executable: profile the server")
    ap.add_argument("--py-spy-out", default=None, help="folder for profile-BACKEND.txt")
    a = ap.parse_args()
    if a.py_spy and not shutil.which(a.py_spy):
        ap.error(f"--py-spy {a.py_spy!r}: not an executable")
    backends = ["sqlite", "postgresql"] if a.backend == "both" else [a.backend]
    rows = []
    for b in backends:
        rows.append(run(b, a))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\nservice_load: {os.cpu_count()} CPUs, {a.seconds:g} s single + "
          f"{a.seconds / 4:g} s batch per backend, {a.conns} connections\n")  # fmt: skip
    print(table(rows))
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    main()
