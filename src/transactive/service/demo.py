"""The live demo: ``transactive serve --demo SCENARIO`` runs the market service on an
accelerated clock with the scenario's homes and aggregator as real HTTP clients.

The server runs in its own process (uvicorn, SQLite temp file or ``--db``), its clock
``speed`` market intervals per wall second. This process builds the simulator's world
(:func:`transactive.sim.world.build_world`: the same homes, devices and weather as
``transactive simulate``), creates the parties (homes, the aggregator, the DSO, the TSO,
an operator) and one meter resource per home, then for every interval: each home (and the
aggregator for the devices it holds) posts one batch of its devices' bid curves before gate
closure, waits for the clearing, reads its awards, runs its devices at them
(``Fleet.respond`` / ``Fleet.step``) and posts its meter's signed reading (Wh). Every
``settle_h`` simulated hours the operator runs settlement; at the end it prints the
summary: sessions cleared, bids, kWh per home and day, the settlement balance and the
journal check (inclusion proofs of a sample of records and consistency with the first head).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from transactive.service.client import ApiError, Client, Retry
from transactive.settlement import merkle

Log = Callable[[str], None]
#: Wall seconds between the server's start and the first interval (sign-in, first bids).
LEAD_S = 10.0


@dataclass
class DemoResult:
    """What the demo did (the summary's figures)."""

    sessions_cleared: int = 0
    bids: int = 0
    late: int = 0
    intervals: int = 0
    homes: int = 0
    kwh_home_day: float = 0.0
    balance: float | None = None
    settlement_runs: int = 0
    journal_size: int = 0
    proofs_checked: int = 0
    consistent: bool = False
    notes: list[str] = field(default_factory=list)


def _party(i: int) -> str:
    return f"home-{i}"


def _server(db_url: str, scenario: Path, start: datetime, speed_s: float, port: int) -> str:
    """The Python code the server process runs (uvicorn on 127.0.0.1:``port``). The clock
    starts at ``start`` once the database is migrated and the app built, just before
    uvicorn serves, so a slow start-up does not eat the clients' lead."""
    return (
        "import uvicorn\n"
        "from datetime import datetime\n"
        "from pathlib import Path\n"
        "from transactive.service.app import build_services, create_app\n"
        "from transactive.service.clock import Clock\n"
        "from transactive.service.config import ServiceConfig\n"
        f"start = datetime.fromisoformat({start.isoformat()!r})\n"
        f"c = ServiceConfig(db_url={db_url!r}, scenario=Path({str(scenario)!r}),"
        f" clock_start=start, clock_speed={speed_s!r}, sessions_ahead=6)\n"
        "svc = build_services(c)\n"
        "app = create_app(c, svc)\n"
        f"svc.clock = Clock(start, {speed_s!r})\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning',"
        " access_log=False)\n"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    import httpx

    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start in time")


def run_demo(
    scenario_path: Path,
    *,
    db_url: str | None = None,
    speed: float = 1.0,
    hours: float = 24.0,
    homes: int = 20,
    settle_h: float = 1.0,
    log: Log | None = None,
) -> DemoResult:
    """Run the live demo for ``hours`` simulated hours (``speed`` intervals per wall second)
    with the first ``homes`` homes of the scenario as HTTP clients; returns the figures."""
    from transactive.service.db import open_database
    from transactive.service.identity import create_client, create_party
    from transactive.sim.scenario import load_scenario
    from transactive.sim.world import build_world

    say: Log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    sc = load_scenario(scenario_path)
    world = build_world(sc)
    interval_s = round(sc.intervals.hours * 3600)
    n_iv = min(sc.intervals.n, max(1, round(hours * 3600 / interval_s)))
    n_homes = min(homes, int(world.home_id.size))
    area = world.area_names[0]
    tmp = tempfile.TemporaryDirectory(prefix="transactive-demo-")
    url_db = db_url or f"sqlite:///{Path(tmp.name) / 'demo.db'}"
    start0 = sc.intervals.starts[0].to_pydatetime().astimezone(UTC)
    # the clients sign in and build their first bids while the first gates approach:
    # LEAD_S wall seconds of market time before the first interval
    lead = max(4, int(np.ceil(LEAD_S * speed)))
    clock_start = start0 - timedelta(seconds=lead * interval_s)

    # --- parties, clients and keys (as `transactive admin create-client` does) -------------
    db = open_database(url_db)
    creds: dict[str, tuple[str, str]] = {}
    now = datetime.now(UTC)
    agg = sc.aggregator.name
    with db.sessions() as s:
        for pid, role, ar, ag in [
            ("operator", "admin", None, None),
            (f"dso-{area}", "dso", area, None),
            ("tso", "tso", None, None),
            (agg, "aggregator", area, None),
            *[(_party(i), "participant", area, agg) for i in range(n_homes)],
        ]:
            create_party(s, party_id=pid, name=pid, role=role, area=ar, aggregator_id=ag, now=now)
            s.flush()
            c = create_client(s, pid, now)
            creds[pid] = (c.client_id, c.client_secret)
        s.commit()
    db.dispose()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    code = _server(url_db, scenario_path, clock_start, speed * interval_s, port)
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    try:
        _wait_up(url, proc)
        say(f"demo: service on {url} ({url_db}), {n_homes} homes, {n_iv} intervals")
        return _drive(world, url, creds, n_homes, n_iv, interval_s, settle_h, 1.0 / speed, say)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        tmp.cleanup()


def _post_reading(
    client: Client, reading: dict[str, Any], key: Ed25519PrivateKey, ikey: str, wall_s: float
) -> None:
    """Post one signed reading once its interval has ended on the service's clock (the
    meter reads at the interval's end; the client's clock is only near the server's)."""
    for _ in range(20):
        try:
            client.meter_readings([reading], key=key, idempotency_key=ikey)
            return
        except ApiError as exc:
            if exc.status != 422 or "has not ended" not in str(exc):
                raise
            time.sleep(wall_s / 4)
    raise RuntimeError(f"reading {reading['resource_id']}: its interval never ended")


def _drive(
    world: Any,
    url: str,
    creds: dict[str, tuple[str, str]],
    n_homes: int,
    n_iv: int,
    interval_s: int,
    settle_h: float,
    wall_interval_s: float,
    say: Log,
) -> DemoResult:
    """The clients' loop over the intervals (see the module docstring)."""
    from transactive.core.curves import concat
    from transactive.sim.runner import _contexts

    sc, dev = world.scenario, world.devices
    area = world.area_names[0]
    feeder = world.feeders[0]
    agg = sc.aggregator.name
    retry = Retry(attempts=10, backoff_s=0.05, max_backoff_s=1.0)
    clients = {p: Client(url, *cs, retry=retry) for p, cs in creds.items()}
    op = clients["operator"]
    res = DemoResult(homes=n_homes)
    # who bids each device: its home's party, or the aggregator; devices of homes beyond
    # n_homes stay off the market and follow the forecast price
    on_market = dev.home < n_homes
    bidder = np.where(
        dev.owner.astype(str) == f"agg:{agg}", agg, np.array([_party(h) for h in dev.home])
    )
    bus_name = np.array(feeder.bus_names, dtype=object)[dev.bus]
    keys = {i: Ed25519PrivateKey.generate() for i in range(n_homes)}
    metering = True
    for i in range(n_homes):
        pub = keys[i].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        bus = feeder.bus_names[int(world.home_bus[i])]
        body = {"id": f"meter-{i}", "kind": "meter", "area": area, "bus": bus, "public_key": pub}
        try:
            clients[_party(i)].create_resource(body, key=f"meter-{i}")
        except ApiError as exc:
            if exc.status in (404, 405):
                metering = False
                res.notes.append("meter/settlement API not in this build: no readings")
                break
            raise
    for c in clients.values():
        c.access_token()  # sign in before the first gate closure
    fleets = list(dev.fleets)
    first_head: dict[str, Any] | None = None
    dt_h = sc.intervals.hours
    energy = np.zeros(n_homes)  # kWh imported net per home
    settle_every = max(1, round(settle_h * 3600 / interval_s))
    # the service may have started slower than the clock runs: begin with the first
    # interval whose session still takes bids (earlier ones run off the market)
    t_first = _first_open(op, sc, sc.intervals.n) + 2  # two intervals to spare
    if t_first:
        res.notes.append(f"started late: the first {t_first} intervals ran off the market")
    period_start = sc.intervals.starts[t_first].to_pydatetime().astimezone(UTC)

    def after(t: int, start: datetime, home_kw: Any, since: datetime, last: bool) -> datetime:
        """Meter readings of interval ``t`` and, every ``settle_h``, a settlement run;
        returns the start of the period not yet settled."""
        if not metering:
            return since
        for i in range(n_homes):
            wh = round(float(home_kw[i]) * dt_h * 1000)
            reading = {
                "resource_id": f"meter-{i}",
                "interval_start": f"{start:%Y-%m-%dT%H:%M:%SZ}",
                "duration_s": interval_s,
                "import_wh": max(wh, 0),
                "export_wh": max(-wh, 0),
            }
            _post_reading(clients[_party(i)], reading, keys[i], f"m:{i}:{t}", wall_interval_s)
        end = start + timedelta(seconds=interval_s)
        if last or (t + 1 - t_first) % settle_every == 0:
            _settle(op, area, since, end, res, say)
            return end
        return since

    pending: tuple[int, datetime, Any] | None = None
    for t in range(sc.intervals.n):
        if res.intervals >= n_iv:
            break
        skip = t < t_first
        start = sc.intervals.starts[t].to_pydatetime().astimezone(UTC)
        sid = f"{area}:real-time:{start:%Y%m%dT%H%MZ}"
        ctxs = _contexts(
            world,
            t,
            world.forecast[t : t + world.horizon],
            world.weather,
            np.ones(dev.n),
            float(sc.utc_offsets_h[t]),
        )
        curves = [f.bid(c) for f, c in zip(fleets, ctxs, strict=True)]
        allc = concat(curves)
        book: dict[str, list[dict[str, Any]]] = {}
        for d in np.flatnonzero(on_market):
            a, b = allc.offsets[d], allc.offsets[d + 1]
            pts = np.column_stack([allc.price[a:b], allc.quantity[a:b]]).tolist()
            book.setdefault(str(bidder[d]), []).append(
                {"bid_id": f"d{d}", "bus": str(bus_name[d]), "curve": {"points": pts}}
            )
        if not skip:  # behind the clock (a slow step): catch up off the market
            got = _wait_status(op, sid, {"open", "closed", "cleared", "failed"}, interval_s)
            skip = got["status"] != "open"
            res.late += skip
        if skip:
            book = {}
        accepted: set[str] = set()
        for party, bids in book.items():
            try:
                out = clients[party].bids(sid, bids, key=f"{sid}:{party}")
                res.bids += int(out["accepted"])
                accepted.add(party)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                if not res.late:
                    say(f"demo: late for {sid}: {exc}")
                res.late += len(bids)
        if pending is not None:
            period_start = after(*pending, period_start, False)
            pending = None
        session = (
            {"status": "skipped", "price": None}
            if skip
            else _wait_status(op, sid, {"cleared", "failed"}, interval_s)
        )
        award = np.zeros(dev.n)
        price = float(session.get("price") or ctxs[0].price_forecast[0])
        for party in accepted:
            for a_ in clients[party].awards(sid):
                if a_["party_id"] == party:
                    award[int(str(a_["bid_id"]).rsplit(":d", 1)[1])] = a_["award_kw"]
        bid_now = on_market & np.isin(bidder, sorted(accepted))  # late: off the market
        power = np.zeros(dev.n)
        new = []
        for fleet, ctx, cv, sl in zip(fleets, ctxs, curves, dev.slices, strict=True):
            run_award = fleet.respond(ctx, cv, award=award[sl])
            run_price = fleet.respond(ctx, cv, price=float(ctx.price_forecast[0]))
            run = np.where(bid_now[sl], run_award, run_price)
            nf, rep = fleet.step(run, ctx, cleared_price=np.full(fleet.n, price))
            new.append(nf)
            power[sl] = rep.power_kw
        fleets = new
        home_kw = np.bincount(dev.home[on_market], weights=power[on_market], minlength=n_homes)
        if skip:
            continue
        energy += home_kw * dt_h
        res.sessions_cleared += session["status"] == "cleared"
        res.intervals += 1
        if first_head is None:
            first_head = op.journal_head()
        say(
            f"demo: {start:%Y-%m-%d %H:%M}Z {session['status']} price "
            f"{price:.4f}/kWh, {sum(map(len, book.values()))} bids, "
            f"homes {home_kw.sum():+.1f} kW"
        )
        pending = (t, start, home_kw)  # metered after the next interval's bids are in
    if pending is not None:
        period_start = after(*pending, period_start, True)
    days = res.intervals * dt_h / 24.0
    res.kwh_home_day = float(energy.mean() / days) if n_homes and days else 0.0
    _check_journal(op, first_head, res)
    for c in clients.values():
        c.close()
    return res


def _first_open(op: Client, sc: Any, n_iv: int) -> int:
    """Index of the first interval whose session is open (waiting for one to appear)."""
    t_end = time.monotonic() + 120.0
    starts = [x.to_pydatetime().astimezone(UTC) for x in sc.intervals.starts[:n_iv]]
    while time.monotonic() < t_end:
        open_ = op.sessions(status="open", stage="real-time", limit=10_000)
        firsts = [datetime.fromisoformat(str(s["interval_start"])) for s in open_]
        if firsts:
            first = min(firsts)
            if first > starts[-1]:
                raise RuntimeError("the service's clock ran past the scenario's intervals")
            return next(i for i, x in enumerate(starts) if x >= first)
        time.sleep(0.05)
    raise RuntimeError("no open session in 120 s")


def _wait_status(c: Client, sid: str, want: set[str], interval_s: int) -> dict[str, Any]:
    """Poll the session until its status is one of ``want`` (404: not yet opened)."""
    t_end = time.monotonic() + 120.0
    while True:
        try:
            s = c.session(sid)
            if s["status"] in want or (want == {"open"} and s["status"] != "open"):
                return s
        except ApiError as exc:
            if exc.status != 404:
                raise
        if time.monotonic() > t_end:
            raise RuntimeError(f"session {sid} did not reach {sorted(want)} in 120 s")
        time.sleep(0.2)


def _settle(op: Client, area: str, a: datetime, b: datetime, res: DemoResult, say: Log) -> None:
    """Run settlement of [a, b) and add its lines' money to the balance (must be 0)."""
    run = op.settlement_run(area, a.isoformat(), b.isoformat())
    total, offset = 0.0, 0
    while True:
        lines = op.settlement_lines(str(run["id"]), offset=offset, limit=10_000)
        total += sum(float(x["amount"]) for x in lines)
        if len(lines) < 10_000:
            break
        offset += len(lines)
    res.balance = (res.balance or 0.0) + total
    res.settlement_runs += 1
    say(f"demo: settlement {run['id']} {a:%H:%M}–{b:%H:%M}Z balance {total:+.2f}")


def _check_journal(op: Client, first: dict[str, Any] | None, res: DemoResult) -> None:
    """Verify inclusion proofs of a sample of session records against the latest signed
    head's root, and its consistency with ``first`` (the head after the first clearing).
    The scheduler keeps clearing while we read, so a sample read across a new head is
    read again."""
    sessions = op.sessions(status="cleared", limit=10_000)
    sample = sessions[:: max(1, len(sessions) // 8)]
    for _ in range(10):
        head = op.journal_head()
        size, root = int(head["tree_size"]), bytes.fromhex(str(head["root_hash"]))
        recs = [op.journal_record(f"session:{s['id']}") for s in sample]
        if all(int(r["tree_size"]) == size for r in recs) and op.journal_head() == head:
            break
    res.journal_size = size
    res.proofs_checked = sum(
        merkle.verify_inclusion(
            bytes.fromhex(str(r["leaf_hash"])),
            int(r["index"]),
            size,
            [bytes.fromhex(p) for p in r["proof"]],
            root,
        )
        for r in recs
    )
    if first is not None:
        old = int(first["tree_size"])
        proof = [bytes.fromhex(p) for p in op.journal_consistency(old, size)["proof"]]
        old_root = bytes.fromhex(str(first["root_hash"]))
        res.consistent = merkle.verify_consistency(old, size, old_root, root, proof)
    res.consistent = res.consistent and res.proofs_checked == len(sample) > 0


def summary(res: DemoResult) -> str:
    """The end-of-run summary (stdout)."""
    bal = "n/a" if res.balance is None else f"{abs(res.balance):.2f}"
    lines = [
        f"sessions cleared: {res.sessions_cleared}/{res.intervals}",
        f"bids accepted: {res.bids} (late bids or intervals off the market: {res.late})",
        f"homes: {res.homes}, kWh/home/day: {res.kwh_home_day:.2f}",
        f"settlement runs: {res.settlement_runs}, balance: {bal}",
        f"journal: {res.journal_size} records, {res.proofs_checked} inclusion proofs verified, "
        f"consistency {'verified' if res.consistent else 'NOT verified'}",
        *res.notes,
    ]
    return "\n".join(lines)
