"""Gate-closure clearing of 100,000 bids in the live service, on SQLite and PostgreSQL.

For each backend (SQLite file in a temporary folder; PostgreSQL at
``postgresql+psycopg://postgres@127.0.0.1:5432/test`` in a fresh schema, dropped after) and
each clearing method (a day-ahead ``auction`` session, a real-time ``network`` session on
the default area's feeder with DLMPs) it stores N block bids (1,000 parties, 41 buses,
prices in cents, 5 % price-taking) straight into the bids table, then times
:func:`transactive.service.clearing.clear_session`: read the bids, clear, write the awards,
bus prices, the journal records (the session's and one per party) and a signed tree head in
one transaction; once with a cold read of all bids at gate closure, once with the bids read
ahead as the scheduler does (:mod:`transactive.service.book`). It then times a second call
(idempotent: returns the stored result). Target: ≤ 1 s per clearing.

    .venv/bin/python benchmarks/service_clearing.py [--bids 100000] [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

from transactive.service import book, clearing, journal
from transactive.service.app import build_services
from transactive.service.config import ServiceConfig
from transactive.service.deps import Services
from transactive.service.identity import create_party
from transactive.service.models import MarketSession, Party
from transactive.service.sessions import ensure_sessions

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
SPENT = [0.0]  # seconds inside journal.append during the timed clearing
_append = journal.append


def _timed_append(s: Any, entries: Any) -> list[int]:
    t = time.perf_counter()
    try:
        return _append(s, entries)
    finally:
        SPENT[0] += time.perf_counter() - t


journal.append = _timed_append  # type: ignore[assignment]


def populate(svc: Services, stage: str, n: int, rng: np.random.Generator, k: int = 0) -> str:
    """Open sessions before NOW, add parties once, store n bids in the ``k``-th session of
    ``stage`` whose gate has closed; returns its id."""
    with svc.db.sessions() as s:
        opened = NOW - timedelta(days=1) if stage == "day-ahead" else NOW - timedelta(hours=1)
        ensure_sessions(s, svc.market, svc.config, opened)
        s.commit()
        sid = sorted(
            m.id
            for m in s.query(MarketSession).filter(
                MarketSession.stage == stage, MarketSession.gate_closure <= NOW
            )
        )[k]
        area = next(iter(svc.market.areas))
        if s.get(Party, "bench0") is None:
            for i in range(1000):
                create_party(s, party_id=f"bench{i}", name=f"bench{i}", role="participant",
                             area=area, aggregator_id=None, now=NOW)  # fmt: skip
            s.commit()
        buses = sorted(svc.market.areas[area].buses)
        party = rng.integers(0, 1000, n)
        side = np.where(rng.random(n) < 0.5, "buy", "sell")
        price = np.round(rng.uniform(0.05, 0.45, n), 2)
        taking = rng.random(n) < 0.05
        qty = np.round(rng.uniform(0.1, 3.0, n), 3) / 10.0  # the feeder carries ~400 kVA
        bus = np.array(buses)[rng.integers(1, len(buses), n)]
        rows = [
            (
                f"{sid}:bench{p}:b{i}",
                sid,
                f"bench{p}",
                f"b{i}",
                sd,
                None if t else float(pr),
                float(q),
                str(b),
                bool(t),
                NOW,
            )
            for i, (p, sd, pr, t, q, b) in enumerate(
                zip(party, side, price, taking, qty, bus, strict=True)
            )
        ]
        cols = ("id", "session_id", "party_id", "bid_id", "side", "price", "quantity_kw", "bus",
                "price_taking", "created_at")  # fmt: skip
        conn = s.connection()
        if conn.dialect.name == "postgresql":
            raw = conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy(f"COPY bids ({', '.join(cols)}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
        else:
            stamp = NOW.replace(tzinfo=None).isoformat(" ")
            conn.exec_driver_sql(
                f"INSERT INTO bids ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [(*r[:-1], stamp) for r in rows],
            )
        s.commit()
    return sid


def run(url: str, name: str, n: int) -> None:
    cfg = ServiceConfig(db_url=url, scheduler=False, clock_start=NOW + timedelta(minutes=5),
                        stages=("real-time", "day-ahead"))  # fmt: skip
    svc = build_services(cfg)
    rng = np.random.default_rng(7)
    try:
        for stage in ("day-ahead", "real-time"):
            for ahead in (False, True):
                sid = populate(svc, stage, n, rng, k=int(ahead))
                with svc.db.sessions() as s:  # the phases on their own: read, engine
                    session = s.get(MarketSession, sid)
                    assert session is not None
                    r0 = time.perf_counter()
                    bids = book.read_bids(s, session, with_bus=session.clearing != "auction")
                    r1 = time.perf_counter()
                    if session.clearing == "auction":
                        clearing.clear_auction(svc, session, bids)
                    else:
                        clearing.clear_on_network(svc, session, bids)
                    r2 = time.perf_counter()
                    if ahead:  # as the scheduler does before gate closure
                        svc.books.prefetch(s, session)
                SPENT[0] = 0.0
                t0 = time.perf_counter()
                with svc.db.sessions() as s:
                    m = clearing.clear_session(s, svc, sid)
                t1 = time.perf_counter()
                with svc.db.sessions() as s:
                    again = clearing.clear_session(s, svc, sid)
                t2 = time.perf_counter()
                assert again.result_hash == m.result_hash
                how = "read ahead" if ahead else "cold read "
                print(
                    f"{name:10s} {m.clearing:8s} {m.n_bids:>8d} bids  {how}  clear "
                    f"{t1 - t0:6.3f} s  (read {r1 - r0:.3f}, engine {r2 - r1:.3f}, "
                    f"journal.append {SPENT[0]:.3f})  re-run {t2 - t1:6.3f} s  "
                    f"{m.result_status}  price {m.price}  traded {m.quantity_kw:.1f} kW",
                    flush=True,
                )
    finally:
        svc.db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bids", type=int, default=100_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = ap.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as d:
            run(f"sqlite:///{Path(d) / 'bench.db'}", "sqlite", args.bids)
    if args.backend in ("postgresql", "both"):
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            run(f"{PG}?options=-csearch_path%3D{schema}", "postgresql", args.bids)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
