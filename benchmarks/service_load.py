"""Load benchmark of the market service: `transactive serve` on loopback, an async httpx
load generator, on SQLite and PostgreSQL.

* single bids: ``--conns`` concurrent connections posting one bid each for ``--seconds``:
  requests/s and latency p50/p95/p99 (ms);
* batch intake: batches of ``--batch`` bids for ``--seconds`` / 4: bids/s;
* server RSS (MiB) sampled every second over the whole run (flat?).

Clearing 100,000 bids at gate closure is measured by benchmarks/service_clearing.py.
Usage: ``python benchmarks/service_load.py [--backend sqlite|postgresql|both] [--seconds 60]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, text

from transactive.service.client import AsyncClient, Retry
from transactive.service.db import open_database
from transactive.service.identity import create_client, create_party

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
N_CLIENTS = 24  # the per-client rate limit (200 req/s) is spread over this many parties


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def setup(db_url: str) -> list[tuple[str, str]]:
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


async def single(url: str, creds: list[tuple[str, str]], sid: str, conns: int, secs: float):
    limits = httpx.Limits(max_connections=conns)
    lat: list[float] = []
    errors = 0
    retry = Retry(attempts=1)
    cl = [AsyncClient(url, *c, retry=retry, http=httpx.AsyncClient(base_url=url, limits=limits))
          for c in creds]  # fmt: skip
    for c in cl:
        await c.access_token()
    t_end = time.perf_counter() + secs

    async def worker(k: int) -> None:
        nonlocal errors
        c = cl[k % len(cl)]
        i = 0
        while time.perf_counter() < t_end:
            body = {"bid_id": f"s{k}-{i}", "side": "buy", "price": 0.2, "quantity_kw": 1.0}
            t0 = time.perf_counter()
            try:
                await c.bid(sid, body)
                lat.append(time.perf_counter() - t0)
            except Exception:
                errors += 1
            i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(conns)))
    wall = time.perf_counter() - t0
    for c in cl:
        await c.aclose()
    ms = np.array(lat) * 1000
    return {
        "requests": len(lat), "errors": errors, "req_per_s": len(lat) / wall,
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else None,
        "p95_ms": float(np.percentile(ms, 95)) if ms.size else None,
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else None,
    }  # fmt: skip


async def batch(url: str, creds: list[tuple[str, str]], sid: str, size: int, secs: float):
    cl = [AsyncClient(url, *c, retry=Retry(attempts=1), timeout_s=120) for c in creds[:4]]
    n = 0
    t_end = time.perf_counter() + secs
    t0 = time.perf_counter()

    async def worker(k: int) -> None:
        nonlocal n
        j = 0
        while time.perf_counter() < t_end:
            tag = uuid.uuid4().hex[:8]
            bids = [{"bid_id": f"B{tag}-{i}", "side": "sell", "price": 0.05 + i % 9 * 0.01,
                     "quantity_kw": 2.0} for i in range(size)]  # fmt: skip
            out = await cl[k].bids(sid, bids)
            n += int(out["accepted"])
            j += 1

    await asyncio.gather(*(worker(k) for k in range(len(cl))))
    wall = time.perf_counter() - t0
    for c in cl:
        await c.aclose()
    return {"bids": n, "bids_per_s": n / wall, "batch": size}


def run(backend: str, secs: float, conns: int, size: int) -> dict[str, object]:
    tmp = tempfile.TemporaryDirectory()
    if backend == "sqlite":
        url_db = f"sqlite:///{tmp.name}/load.db"
    else:
        schema = f"load_{uuid.uuid4().hex[:8]}"
        eng = create_engine(PG, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        url_db = f"{PG}?options=-csearch_path%3D{schema}"
    creds = setup(url_db)
    port = 8765
    exe = Path(sys.executable).with_name("transactive")
    proc = subprocess.Popen([str(exe), "serve", "--db", url_db, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    rss: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            rss.append(rss_mib(proc.pid))

    threading.Thread(target=sample, daemon=True).start()
    try:
        admin = httpx.get(f"{url}/healthz")
        del admin
        tok = asyncio.run(_sessions(url, creds[0]))
        sid = max(tok, key=lambda x: str(x["gate_closure"]))["id"]
        one = asyncio.run(single(url, creds, sid, conns, secs))
        many = asyncio.run(batch(url, creds, sid, size, secs / 4))
    finally:
        done.set()
        proc.terminate()
        proc.wait(30)
    return {
        "backend": backend, "single": one, "batch": many,
        "rss_mib": {"first": rss[0] if rss else None, "max": max(rss) if rss else None,
                    "last": rss[-1] if rss else None,
                    "median": statistics.median(rss) if rss else None},
    }  # fmt: skip


async def _sessions(url: str, cred: tuple[str, str]) -> list[dict[str, object]]:
    async with AsyncClient(url, *cred) as c:
        return await c.sessions(status="open", limit=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--batch", type=int, default=5000)
    a = ap.parse_args()
    backends = ["sqlite", "postgresql"] if a.backend == "both" else [a.backend]
    for b in backends:
        print(json.dumps(run(b, a.seconds, a.conns, a.batch)), flush=True)


if __name__ == "__main__":
    main()
