"""kill -9 during bid intake and gate-closure clearing (issue 13, item 5).

``transactive serve`` runs in a subprocess (SQLite file, PostgreSQL schema) on an
accelerated market clock fixed to wall time (``--clock-start/--clock-speed/--clock-epoch``:
one 15-minute interval per ``PERIOD_S`` wall seconds, in every process), so a restarted
server continues the same market time. Two clients post bids with idempotency keys,
retried through the restarts, into the earliest session whose gate is still open: one
posts batches (about 2,000 bids per session, one interval ahead, varied buses and prices,
so a clearing takes a noticeable time), one single bids and curves. Meanwhile the server is
SIGKILLed ``KILLS`` times: half the kills a random few ms after a clearing job of a session
with bids started in the current process (the ``jobs`` row is ``running`` with a new
attempt: its gate passed, or it is the re-run after the previous kill), the others a random
few ms after the clients made progress. The jobs table is read right after each kill (the
state the dead process left) to count the kills that interrupted a running clearing.
Run time is mostly the 21 server start-ups (~4 s each on a quiet machine).

After the last restart the clients stop and every session with bids is cleared; then:

* every acknowledged bid is stored exactly once with the id it was acknowledged with, no
  other bid is stored (a retry refused after its gate closed wrote nothing);
* the journal's record ids are unique and are exactly the bids, plus one session record and
  one awards record per party of every cleared session; each bid's ``journal_index`` is its leaf;
* each session's ``result_hash``, awards and bus prices equal an uninterrupted clearing of
  the same bids: the session and its bids copied into a fresh SQLite database with the
  default configuration, cleared there by :func:`transactive.service.clearing.clear_session`;
* the signed tree head covers every leaf, its signature verifies and its root is the
  Merkle root recomputed in memory from the leaf bodies;
* at least ``KILLS // 4`` kills interrupted a running clearing (and the jobs' attempts show
  the re-runs), at least ``KILLS // 4`` had a bid request in flight.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, func, insert, select, text

from transactive.service.app import build_services
from transactive.service.area import load_market
from transactive.service.clearing import clear_session
from transactive.service.client import ApiError, Client, Retry, wait_until_up
from transactive.service.clock import Clock
from transactive.service.config import ServiceConfig
from transactive.service.db import normalise_url, open_database
from transactive.service.identity import create_client, create_party
from transactive.service.models import Award, Base, Bid, BusPrice, Job, JournalLeaf, MarketSession
from transactive.service.sessions import session_id
from transactive.settlement import merkle
from transactive.settlement.journal import SignedTreeHead, load_public_key

TABLES = Base.metadata.tables
KILLS = int(os.environ.get("TRANSACTIVE_CRASH_KILLS", "20"))
#: Wall seconds per 15-minute market interval (gate closure: 5 market minutes before).
PERIOD_S = 8.0
INTERVAL_S = 900
SPEED = INTERVAL_S / PERIOD_S
START = datetime(2030, 1, 1, tzinfo=UTC)
#: Batch bids per session (the batch client then waits for the next session).
BATCH_BIDS = 2000
BATCH = 1000
#: A client bids into the first session whose gate is at least this far ahead, wall s (the
#: batch client one period more: its retries get in before the gate after a restart).
MARGIN_S = 0.5
#: Most kills per session while its clearing runs (then it may finish).
KILLS_PER_CLEARING = 2
#: What a 409 for a closed gate says (intake.open_session).
GATE_SHUT = ("the gate closed at", "it takes no more bids")


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """`transactive serve` on ``db_url`` with the test's fixed clock, restartable."""

    db_url: str
    port: int
    epoch: float
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = Path(sys.executable).with_name("transactive")
        cmd = [str(exe), "serve", "--db", self.db_url, "--port", str(self.port)]
        cmd += ["--clock-start", START.isoformat(), "--clock-speed", repr(SPEED)]
        cmd += ["--clock-epoch", repr(self.epoch)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def up(self) -> None:
        wait_until_up(self.url, self.proc, timeout_s=120.0)

    def reap(self) -> None:
        """Kill the server if it still runs (the test failed half-way)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


def gate_wall(k: int, epoch: float) -> float:
    """UNIX time at which the gate of interval ``k`` (START + k intervals) closes."""
    return epoch + (k * INTERVAL_S - 300) / SPEED


@dataclass
class Bidder:
    """A client thread posting bids into the earliest session whose gate is open."""

    client: Client
    epoch: float
    area: str
    make: Callable[[int, random.Random], tuple[list[dict[str, Any]], bool]]
    per_session: int | None  # most bids per session (None: no limit)
    seed: int
    lead_s: float = MARGIN_S  # bid into the first session whose gate is this far ahead
    acked: dict[str, str] = field(default_factory=dict)  # "session|bid_id" -> public id
    refused: set[str] = field(default_factory=set)  # gate closed before a retry got in
    per: dict[str, int] = field(default_factory=dict)  # acked bids per session
    errors: list[BaseException] = field(default_factory=list)
    in_flight: bool = False
    answers: int = 0  # requests answered (acknowledged or refused)
    stop: threading.Event = field(default_factory=threading.Event)

    def target(self) -> str | None:
        now = time.time()
        k = int((now - self.epoch) * SPEED // INTERVAL_S)
        while gate_wall(k, self.epoch) < now + self.lead_s:
            k += 1
        sid = session_id(self.area, "real-time", START + timedelta(seconds=k * INTERVAL_S))
        if self.per_session is not None and self.per.get(sid, 0) >= self.per_session:
            return None
        return sid

    def run(self) -> None:
        rng = random.Random(self.seed)
        i = 0
        try:
            while not self.stop.is_set():
                sid = self.target()
                if sid is None:
                    time.sleep(0.05)
                    continue
                bodies, batch = self.make(i, rng)
                key = f"k{i}"
                self.in_flight = True
                try:
                    if batch:
                        ids = self.client.bids(sid, bodies, key=key)["ids"]
                    else:
                        ids = [self.client.bid(sid, bodies[0], key=key)["id"]]
                except ApiError as exc:  # only a closed gate may refuse a bid here
                    if exc.status != 409 or not any(w in str(exc) for w in GATE_SHUT):
                        raise
                    self.refused.update(f"{sid}|{b['bid_id']}" for b in bodies)
                else:
                    for b, pid in zip(bodies, ids, strict=True):
                        self.acked[f"{sid}|{b['bid_id']}"] = pid
                    self.per[sid] = self.per.get(sid, 0) + len(ids)
                finally:
                    self.in_flight = False
                self.answers += 1
                i += 1
        except (ApiError, httpx.HTTPError) as exc:  # pragma: no cover - reported by the test
            self.errors.append(exc)


def batch_bids(buses: list[str]) -> Callable[[int, random.Random], tuple[list[Any], bool]]:
    def make(i: int, rng: random.Random) -> tuple[list[dict[str, Any]], bool]:
        return [
            {
                "bid_id": f"a{i}-{j}",
                "side": rng.choice(("buy", "sell")),
                "price": round(rng.uniform(0.05, 0.60), 3),
                "quantity_kw": round(rng.uniform(0.5, 6.0), 3),
                "bus": rng.choice(buses),
            }
            for j in range(BATCH)
        ], True

    return make


def single_bids(buses: list[str]) -> Callable[[int, random.Random], tuple[list[Any], bool]]:
    def make(i: int, rng: random.Random) -> tuple[list[dict[str, Any]], bool]:
        body: dict[str, Any] = {"bid_id": f"s{i}", "bus": rng.choice(buses)}
        if i % 10 == 0:  # a curve: buys 4 kW below 0.2, down to selling 2 kW above 0.5
            body["curve"] = {"points": [[0.2, 4.0], [0.35, 1.0], [0.5, -2.0]]}
        else:
            body |= {"side": "buy" if i % 3 else "sell", "quantity_kw": 1.0 + i % 5}
            body["price"] = None if i % 7 == 0 else 0.1 + i % 9 * 0.04  # some price-taking
        return [body], False

    return make


def _reader(db_url: str) -> Engine:
    """A plain engine for the test's reads (no BEGIN IMMEDIATE: never blocks the server)."""
    return create_engine(normalise_url(db_url), pool_size=2)


def _busy_clearings(r: Engine, clock: Clock) -> dict[str, tuple[str, int]]:
    """Sessions with bids whose gate has passed on ``clock`` and that are not cleared:
    id -> (clearing job status, or "due" before the job exists; attempts)."""
    q = (
        select(MarketSession.id, MarketSession.gate_closure, Job.status, Job.attempts)
        .outerjoin(Job, (Job.kind == "clear") & (Job.key == MarketSession.id))
        .where(
            MarketSession.status != "cleared",
            select(Bid.seq).where(Bid.session_id == MarketSession.id).exists(),
        )
    )
    now = clock.now()
    with r.connect() as c:
        return {
            sid: (status or "due", int(attempts or 0))
            for sid, gate, status, attempts in c.execute(q)
            if gate <= now
        }


def _credentials(db_url: str, party: str) -> tuple[str, str]:
    db = open_database(db_url)  # migrated here, so the server's starts only open it
    try:
        with db.sessions() as s:
            create_party(s, party_id=party, name=party, role="participant", area=None,
                         aggregator_id=None, now=datetime.now(UTC))  # fmt: skip
            s.flush()
            c = create_client(s, party, datetime.now(UTC))
            s.commit()
        return c.client_id, c.client_secret
    finally:
        db.dispose()


def reference_clearing(db_url: str, sids: list[str], ref_path: Path) -> dict[str, Any]:
    """Each session of ``sids`` with its bids copied into a fresh SQLite database (default
    configuration, like the server's) and cleared there without interruption; returns
    per session (result_hash, price, quantity, status, awards by bid id, bus prices)."""
    src = open_database(db_url, upgrade=False)
    ref_url = f"sqlite:///{ref_path}"
    svc = build_services(ServiceConfig(db_url=ref_url, scheduler=False))
    out: dict[str, Any] = {}
    try:
        with src.sessions() as s, svc.db.sessions() as r:
            parties = sorted(set(s.scalars(select(Bid.party_id).distinct())))
            for p in parties:
                create_party(r, party_id=p, name=p, role="participant", area=None,
                             aggregator_id=None, now=datetime.now(UTC))  # fmt: skip
            r.flush()
            for sid in sids:
                row = dict(s.execute(select(MarketSession.__table__).where(
                    MarketSession.id == sid)).mappings().one())  # fmt: skip
                fresh = {"status": "closed", "price": None, "quantity_kw": None,
                         "result_status": None, "n_bids": 0, "result_hash": None,
                         "cleared_at": None, "substation_price": None,
                         "substation_import_kw": None, "merchandising_surplus": None}  # fmt: skip
                r.execute(insert(TABLES["market_sessions"]), [row | fresh])
                bids = s.execute(
                    select(Bid.__table__).where(Bid.session_id == sid).order_by(Bid.seq)
                ).mappings()
                r.execute(insert(TABLES["bids"]), [dict(b) for b in bids])
            r.commit()
        for sid in sids:
            with svc.db.sessions() as r:
                done = clear_session(r, svc, sid)
                out[sid] = result_of(r, sid) | {"hash": done.result_hash}
    finally:
        svc.db.dispose()
        src.dispose()
    return out


def result_of(s: Any, sid: str) -> dict[str, Any]:
    """A cleared session's outcome as stored: price, quantity, status, awards, bus prices."""
    ms = s.get(MarketSession, sid)
    awards = {
        bid_id: (kw, price, amount)
        for bid_id, kw, price, amount in s.execute(
            select(Bid.id, Award.award_kw, Award.price, Award.amount)
            .join(Award, Award.bid_seq == Bid.seq)
            .where(Bid.session_id == sid)
        )
    }
    buses = {
        b: (p, kw)
        for b, p, kw in s.execute(
            select(BusPrice.bus, BusPrice.price, BusPrice.net_kw).where(BusPrice.session_id == sid)
        )
    }
    return {"price": ms.price, "quantity_kw": ms.quantity_kw, "status": ms.result_status,
            "n_bids": ms.n_bids, "awards": awards, "buses": buses}  # fmt: skip


@pytest.mark.slow
def test_sigkill_during_intake_and_clearing_loses_duplicates_and_changes_nothing(
    db_url: str, tmp_path: Path
) -> None:
    t_test = time.monotonic()
    market = load_market(None)
    assert market.interval_s == INTERVAL_S
    (area,) = market.areas
    buses = sorted(market.areas[area].buses)
    server = Server(db_url, _port(), epoch=time.time())
    try:
        _run(server, db_url, area, buses, tmp_path, t_test)
    finally:
        server.reap()


def _run(
    server: Server, db_url: str, area: str, buses: list[str], tmp_path: Path, t_test: float
) -> None:
    batch_id, batch_secret = _credentials(db_url, "h1")
    single_id, single_secret = _credentials(db_url, "h2")
    server.start()
    server.up()
    retry = Retry(attempts=5000, backoff_s=0.02, max_backoff_s=0.2)

    def client(cid: str, secret: str) -> Client:
        return Client(server.url, cid, secret, retry=retry, timeout_s=10.0)

    bidders = [
        Bidder(client(batch_id, batch_secret), server.epoch, area, batch_bids(buses),
               BATCH_BIDS, 1, PERIOD_S + MARGIN_S),
        Bidder(client(single_id, single_secret), server.epoch, area, single_bids(buses),
               None, 2),
    ]  # fmt: skip
    threads = [threading.Thread(target=b.run) for b in bidders]
    for t in threads:
        t.start()
    reader = _reader(db_url)
    clock = Clock(START, SPEED, server.epoch)  # the server's market clock
    rng = random.Random(13)
    kills: list[dict[str, Any]] = []
    clearing_kills: dict[str, int] = {}
    last: dict[str, tuple[str, int]] = {}  # jobs as the current server process found them

    def acked() -> int:
        return sum(len(b.acked) for b in bidders)

    batch, single = bidders

    try:
        for _ in range(KILLS):
            # half the kills a random few ms after a clearing of a session with bids started
            # in this process (a new attempt of its job: the gate passed, or a re-run after
            # the last kill), the others once the clients made progress (a random number of
            # single-bid answers and a batch, if one is due), a random few ms into the next
            # requests; whichever comes first while both kinds are wanted
            n_clear = sum(1 for k in kills if k["mode"] == "clearing")
            want_clear = n_clear < KILLS // 2
            want_intake = len(kills) - n_clear < KILLS - KILLS // 2
            target = single.answers + rng.randint(1, 25)
            batches = batch.answers + (batch.target() is not None)
            mode = "timeout"
            t_end = time.monotonic() + 60
            while time.monotonic() < t_end:
                if want_clear:
                    started = [
                        k for k, (st, a) in _busy_clearings(reader, clock).items()
                        if st == "running" and a > last.get(k, ("", 0))[1]
                        and clearing_kills.get(k, 0) < KILLS_PER_CLEARING
                    ]  # fmt: skip
                    if started:
                        mode = "clearing"
                        time.sleep(rng.uniform(0.0, 0.02))
                        break
                if want_intake and single.answers >= target and batch.answers >= batches:
                    mode = "intake"
                    time.sleep(rng.uniform(0.0, 0.05))
                    break
                time.sleep(0.01)
            in_flight = any(b.in_flight for b in bidders)
            server.kill()
            state = _busy_clearings(reader, clock)  # frozen: nobody writes until the restart
            # running with a new attempt: this process was clearing it when it died
            running = sorted(
                k for k, (st, a) in state.items() if st == "running" and a > last.get(k, ("", 0))[1]
            )
            last = state
            for k in running:
                clearing_kills[k] = clearing_kills.get(k, 0) + 1
            kills.append({"mode": mode, "in_flight": in_flight, "running": running,
                          "pending": sorted(set(state) - set(running)),
                          "t": round(time.monotonic() - t_test, 1)})  # fmt: skip
            server.start()
        server.up()
        time.sleep(rng.uniform(0.2, 0.5))  # a little more intake on the last server
    finally:
        for b in bidders:
            b.stop.set()
        for t in threads:
            t.join(60)
    t_kills = time.monotonic() - t_test
    try:
        for b in bidders:
            assert not b.errors, b.errors
        # wait for every session with bids to be cleared (the last gate is <= PERIOD_S away)
        t_end = time.monotonic() + 120
        q = text(
            "SELECT status FROM market_sessions WHERE status <> 'cleared' AND EXISTS "
            "(SELECT 1 FROM bids WHERE session_id = market_sessions.id)"
        )
        while time.monotonic() < t_end:
            with reader.connect() as c:
                left = list(c.execute(q).scalars())
            if not left or "failed" in left:
                break
            time.sleep(0.1)
        head_doc = bidders[1].client.journal_head()  # signs the whole tree
    finally:
        for b in bidders:
            b.client.close()
        code = server.stop()
        reader.dispose()
    assert code == 0, "the last server did not shut down cleanly"

    during_clearing = sum(1 for k in kills if k["running"])
    during_intake = sum(1 for k in kills if k["in_flight"])
    print(f"\n{KILLS} kills in {t_kills:.0f} s: {during_clearing} interrupted a running "
          f"clearing, {sum(1 for k in kills if k['pending'])} due or pending, "
          f"{during_intake} with a bid in flight; {acked()} bids acknowledged, "
          f"{sum(len(b.refused) for b in bidders)} refused after their gate")  # fmt: skip
    sizes = [batch.per.get(x, 0) + single.per.get(x, 0) for x in batch.per.keys() | single.per]
    print(f"acknowledged bids per session: {sorted(sizes)}")
    print(
        "kills (s, mode, interrupted):", [(k["t"], k["mode"][0], len(k["running"])) for k in kills]
    )
    assert during_clearing >= KILLS // 4, kills
    assert during_intake >= KILLS // 4, kills

    db = open_database(db_url, upgrade=False)
    try:
        with db.sessions() as s:
            rows = s.execute(select(Bid.session_id, Bid.bid_id, Bid.id, Bid.party_id)).all()
            stored = {f"{sid}|{bid}": pid for sid, bid, pid, _ in rows}
            acked_all = {k: v for b in bidders for k, v in b.acked.items()}
            refused = {k for b in bidders for k in b.refused}
            # every acknowledged bid stored once, with its id; nothing else stored
            assert len(stored) == len(rows) == len({r[2] for r in rows})
            assert stored == acked_all
            assert not refused & set(stored)
            sessions = {m.id: m for m in s.scalars(select(MarketSession))}
            with_bids = sorted({r[0] for r in rows})
            assert with_bids
            jobs = {j.key: j for j in s.scalars(select(Job).where(Job.kind == "clear"))}
            not_cleared = {
                x: (sessions[x].status, jobs[x].status, jobs[x].attempts, jobs[x].error)
                for x in with_bids
                if sessions[x].status != "cleared"
            }
            assert not not_cleared, not_cleared
            assert not [m.id for m in sessions.values() if m.status == "failed"]
            # the journal: unique record ids, exactly the expected records
            leaves = s.execute(
                select(JournalLeaf.idx, JournalLeaf.record_id, JournalLeaf.body).order_by(
                    JournalLeaf.idx
                )
            ).all()
            ids = [x[1] for x in leaves]
            assert len(ids) == len(set(ids))
            assert [x[0] for x in leaves] == list(range(len(leaves)))
            cleared = [x for x, m in sessions.items() if m.status == "cleared"]
            expected = {f"bid:{pid}" for pid in stored.values()}
            expected |= {f"session:{x}" for x in cleared}
            expected |= {f"awards:{sid}:{party}" for sid, _, _, party in rows}
            assert set(ids) == expected
            index = {rid: i for i, rid, _ in leaves}
            bad = [
                pid
                for pid, ji in s.execute(select(Bid.id, Bid.journal_index))
                if index[f"bid:{pid}"] != ji
            ]
            assert not bad
            # clearing jobs: done once each, re-run after every interrupted attempt
            assert all(jobs[x].status == "done" for x in cleared)
            assert all(jobs[x].result_hash == sessions[x].result_hash for x in cleared)
            reruns = sum(jobs[x].attempts - 1 for x in with_bids)
            assert reruns >= during_clearing
            got = {x: result_of(s, x) | {"hash": sessions[x].result_hash} for x in with_bids}
            n_bids = s.scalar(select(func.count()).select_from(Bid))
    finally:
        db.dispose()
    assert n_bids == len(stored)

    # results equal an uninterrupted clearing of the same bids
    ref = reference_clearing(db_url, with_bids, tmp_path / "reference.db")
    for x in with_bids:
        assert got[x]["n_bids"] == len(got[x]["awards"]) > 0
        assert got[x] == ref[x], x

    # the signed tree head: every leaf, a valid signature, the root recomputed in memory
    sth = SignedTreeHead(
        head_doc["tree_size"],
        bytes.fromhex(head_doc["root_hash"]),
        head_doc["timestamp"],
        head_doc["kid"],
        bytes.fromhex(head_doc["signature"]),
    )
    assert sth.tree_size == len(leaves)
    assert sth.signature_ok(load_public_key(head_doc["public_key"]))
    assert sth.root_hash == merkle.root(merkle.leaf_hashes(bytes(x[2]) for x in leaves))
    print(f"{len(with_bids)} sessions with bids cleared and equal to the reference; "
          f"{len(leaves)} journal leaves; {time.monotonic() - t_test:.0f} s in all")  # fmt: skip
