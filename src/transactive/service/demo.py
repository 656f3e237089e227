"""The live demo: ``transactive serve --demo SCENARIO`` runs the market service on an
accelerated clock with the scenario's homes and aggregator as real HTTP clients.

The server runs in its own process (uvicorn; a temporary SQLite file or ``--db``); its
market clock runs ``speed`` market intervals per wall second. This process builds the
simulator's world (:func:`transactive.sim.world.build_world`: the homes, devices and
weather of ``transactive simulate``) and keeps only the devices of the first ``homes``
homes and the aggregator's devices at them (:func:`transactive.sim.world.select_homes`).

1. **Warm-up** (the scenario's ``warmup_days``): the devices run off the market at the
   price forecast, here, before the live day, as in the simulator (no money).
2. **Sign-in**: the parties (homes, the aggregator, the area's DSO, the TSO, an operator)
   and their OAuth2 clients are created as ``transactive admin create-client`` does; the
   server starts with its clock *held* just before the first gate closure; every client
   fetches its token, registers its meters (one per home, one per aggregator bus, each with
   an Ed25519 key) and bids for the first interval; then the clock is released.
3. **Live cycle**, every interval ``t``: the service's scheduler closes the gate and clears
   the session; each client reads its awards, runs its devices at them (``Fleet.respond``,
   ``Fleet.step``) and posts its bids for ``t + 1`` (one batch per party, before that gate
   closes); once ``t - 1`` has ended on the service's clock every meter posts its signed
   reading (Wh); every ``settle_h`` hours the operator runs settlement. A party whose bids
   reach a closed gate is *behind the clock*: said on stderr, its devices run that interval
   off the market at the forecast price, and the summary counts it.
4. **End**: the last readings and settlement; Σ invoices over every run must be 0 within
   half a cent (:data:`~transactive.service.settling.TOLERANCE`); the homes' kWh per day is
   compared with the region's typical household; inclusion proofs of a sample of session
   records and the consistency of the final signed head with the first one are verified.

Progress goes to stderr, one line per simulated hour; :func:`summary` is the only stdout
text (the CLI sends file descriptor 1 to stderr while the demo runs, so a C library's
prints cannot mix in).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from transactive.core.curves import select
from transactive.errors import InvalidInputError
from transactive.service.client import ApiError, Client, Retry, sign_reading, wait_until_up
from transactive.service.clock import Clock
from transactive.service.settling import TOLERANCE
from transactive.settlement import merkle

Log = Callable[[str], None]
T = TypeVar("T")
R = TypeVar("R")

#: Gate closure of the demo's real-time sessions, market seconds before the interval.
GATE_S = 300
#: Market intervals the service opens ahead of its clock.
SESSIONS_AHEAD = 6
#: Words of the service's 409 to a bid that came too late (the gate closed).
LATE = ("the gate closed", "takes no more bids")
#: Concurrent HTTP requests of the clients' bids and awards (more only queue for SQLite's
#: write lock).
WORKERS = 3
#: Typical household consumption per region, kWh/day: (low, high, source).
TYPICAL_KWH_DAY: dict[str, tuple[float, float, str]] = {
    "de": (8.0, 12.0, "BDEW 2019: average household 3500 kWh/a = 9.6 kWh/day"),
    "us": (20.0, 40.0, "EIA RECS 2020: average home 10,500 kWh/a = 29 kWh/day"),
}


@dataclass
class HeldClock(Clock):
    """A market clock held at ``start`` until :meth:`release`, then running like
    :class:`Clock` from ``start`` (the demo's clients sign in while it is held)."""

    held: bool = True

    def now(self) -> datetime:
        """Market time, UTC (``start`` while held)."""
        if self.held:
            assert self.start is not None
            return self.start.astimezone(UTC)
        return super().now()

    def release(self) -> None:
        """Start the clock now."""
        self._t0 = time.monotonic()
        self.held = False


@dataclass
class DemoResult:
    """What the demo did (the summary's figures)."""

    scenario: str = ""
    first: datetime | None = None
    intervals: int = 0
    interval_min: float = 15.0
    speed: float = 1.0
    homes: int = 0
    devices: int = 0
    sessions_cleared: int = 0
    bids: int = 0
    late_bids: int = 0
    late_intervals: int = 0
    readings: int = 0
    import_kwh: float = 0.0  # Σ over the homes' meters, kWh
    export_kwh: float = 0.0
    region: str = ""
    settlement_runs: int = 0
    invoices: int = 0
    balance: float | None = None  # Σ invoices over every run, currency
    lines_balance: float | None = None  # Σ settlement lines, currency
    currency: str = ""
    journal_size: int = 0
    proofs_checked: int = 0
    proofs_wanted: int = 0
    consistent: bool = False
    max_clear_lag_s: float = 0.0  # wall s from a gate closure to its session seen cleared
    min_slack_s: float = float("inf")  # wall s between the last bids in and their gate
    notes: list[str] = field(default_factory=list)

    def per_home_day(self, kwh: float) -> float:
        """``kwh`` (Σ over the homes) per home and simulated day."""
        days = self.intervals * self.interval_min / 1440
        return kwh / self.homes / days if self.homes and days else 0.0

    @property
    def kwh_home_day(self) -> float:
        """Net metered kWh per home and day (import − export)."""
        return self.per_home_day(self.import_kwh - self.export_kwh)

    @property
    def balanced(self) -> bool:
        """Σ invoices is 0 to the cent (and there was something to settle)."""
        return self.balance is not None and abs(self.balance) <= TOLERANCE

    @property
    def plausible(self) -> bool | None:
        """kWh/home/day within the region's typical band (None: no band known)."""
        band = TYPICAL_KWH_DAY.get(self.region)
        return None if band is None else band[0] <= self.kwh_home_day <= band[1]

    def failures(self) -> list[str]:
        """What did not work (empty: the demo passed its own checks)."""
        out = []
        if self.sessions_cleared != self.intervals:
            out.append(f"only {self.sessions_cleared} of {self.intervals} sessions cleared")
        if not self.balanced:
            out.append(f"settlement does not balance to the cent (Σ invoices {self.balance})")
        if not self.consistent:
            out.append("the journal did not verify")
        return out


def _party(i: int) -> str:
    return f"home-{i}"


def _iso(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _server(db_url: str, scenario: Path, held_at: datetime, speed_s: float, port: int) -> str:
    """The Python code the server process runs: the service on 127.0.0.1:``port``, its clock
    held at ``held_at`` until a line arrives on stdin, then running at ``speed_s`` market
    seconds per second; end of stdin (the demo process is gone) stops the server."""
    return (
        "import os, signal, sys, threading\n"
        "from datetime import datetime\n"
        "from pathlib import Path\n"
        "import uvicorn\n"
        "from transactive.service.app import build_services, create_app\n"
        "from transactive.service.config import ServiceConfig\n"
        "from transactive.service.demo import HeldClock\n"
        f"start = datetime.fromisoformat({held_at.isoformat()!r})\n"
        f"c = ServiceConfig(db_url={db_url!r}, scenario=Path({str(scenario)!r}),"
        f" clock_start=start, clock_speed={speed_s!r}, sessions_ahead={SESSIONS_AHEAD},"
        f" gate_closure_s={GATE_S})\n"
        "svc = build_services(c)\n"
        "app = create_app(c, svc)\n"
        f"clock = HeldClock(start, {speed_s!r})\n"
        "svc.clock = clock\n"
        "def control():\n"
        "    if sys.stdin.readline():\n"
        "        clock.release()\n"
        "        sys.stdin.read()\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=control, daemon=True).start()\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning',"
        " access_log=False)\n"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def stdout_to_stderr() -> Iterator[TextIO]:
    """Send file descriptor 1 to stderr for the block (a C library's prints, the server's
    and this process's, never reach stdout); yields a text stream on the real stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(sys.stderr.fileno(), 1)
    except (OSError, ValueError):  # no real file descriptors (embedded): nothing to do
        yield sys.stdout
        return
    out = os.fdopen(os.dup(saved), "w", encoding="utf-8")
    try:
        yield out
    finally:
        out.flush()
        out.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_demo(
    scenario_path: Path,
    *,
    db_url: str | None = None,
    speed: float = 1.0,
    hours: float = 24.0,
    homes: int = 20,
    settle_h: float = 1.0,
    log: Log | None = None,
    on_done: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Run the live demo for ``hours`` simulated hours from the scenario's ``start``
    (``speed`` market intervals per wall second) with the first ``homes`` homes of its first
    area as HTTP clients; returns the figures (see the module docstring). ``on_done`` is
    called with them while the service still runs (e.g. to keep serving)."""
    from sqlalchemy import func, select

    from transactive.service.db import open_database
    from transactive.service.identity import create_client, create_party
    from transactive.service.models import Party
    from transactive.sim.scenario import load_scenario
    from transactive.sim.world import build_world, select_homes

    say: Log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    sc = load_scenario(scenario_path)
    interval_s = round(sc.intervals.hours * 3600)
    w0 = sc.warmup_intervals
    available = sc.intervals.n - w0
    n_live = round(hours * 3600 / interval_s)
    if n_live < 1 or n_live > available:
        raise InvalidInputError(
            f"--hours {hours:g}: the scenario {scenario_path} covers "
            f"{available * interval_s / 3600:g} h ({sc.start:%Y-%m-%d %H:%M} to "
            f"{sc.end:%Y-%m-%d %H:%M} UTC) in {interval_s // 60}-minute intervals"
        )
    if settle_h * 3600 < interval_s:
        raise InvalidInputError(f"settle_h {settle_h:g}: shorter than one market interval")
    t_build = time.monotonic()
    world = build_world(sc)
    area = world.area_names[0]
    in_area = np.flatnonzero(world.home_area == 0)
    n_homes = min(homes, in_area.size)
    res = DemoResult(
        scenario=sc.name,
        interval_min=interval_s / 60,
        speed=speed,
        homes=n_homes,
        region=str(sc.region),
        currency=str(sc.market.currency),
    )
    if homes > in_area.size:
        res.notes.append(f"--homes {homes}: area {area!r} has {in_area.size} homes")
    if len(world.area_names) > 1:
        res.notes.append(f"the demo runs area {area!r} only")
    world = select_homes(world, in_area[:n_homes])
    res.devices = world.devices.n
    tmp = tempfile.TemporaryDirectory(prefix="transactive-demo-")
    url_db = db_url or f"sqlite:///{Path(tmp.name) / 'demo.db'}"
    first = sc.intervals.starts[w0].to_pydatetime().astimezone(UTC)
    res.first = first
    # held half an interval before the first gate: that session is open, the one before not
    held_at = first - timedelta(seconds=GATE_S + interval_s // 2)

    # --- parties, clients and keys (as `transactive admin create-client` does) -------------
    db = open_database(url_db)
    creds: dict[str, tuple[str, str]] = {}
    now = datetime.now(UTC)
    agg = sc.aggregator.name
    with db.sessions() as s:
        if s.scalar(select(func.count()).select_from(Party)):
            db.dispose()
            raise InvalidInputError(
                f"--db {db_url!r}: the database already holds parties; the demo needs an "
                "empty one (leave out --db for a temporary file)"
            )
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
    code = _server(url_db, scenario_path, held_at, speed * interval_s, port)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=os.environ.copy(), stdin=subprocess.PIPE,
        stdout=sys.stderr.fileno(),
    )  # fmt: skip
    try:
        fleets = _warm_up(world, w0)  # while the server starts
        wait_until_up(url, proc, timeout_s=120.0)
        say(
            f"demo: service on {url} ({url_db}); {n_homes} homes, {world.devices.n} devices, "
            f"{n_live} intervals from {first:%Y-%m-%d %H:%M}Z at {speed:g} interval(s)/s "
            f"(set-up {time.monotonic() - t_build:.1f} s)"
        )
        assert proc.stdin is not None
        driver = _Driver(world, fleets, url, creds, w0, n_live, settle_h, speed, res, say)
        driver.run(held_at, proc.stdin)
        if on_done is not None:
            on_done(res)
        return res
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the server stops at end of stdin
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        tmp.cleanup()


def _warm_up(world: Any, n: int) -> list[Any]:
    """The fleets after the scenario's warm-up: ``n`` intervals off the market, every device
    at the price forecast (the simulator's warm-up is excluded from the money too)."""
    from transactive.sim.runner import interval_contexts

    fleets = list(world.devices.fleets)
    for t in range(n):
        ctxs = _contexts(world, t, interval_contexts)
        new = []
        for f, c in zip(fleets, ctxs, strict=True):
            run = f.respond(c, f.bid(c), price=float(c.price_forecast[0]))
            new.append(f.step(run, c, cleared_price=np.full(f.n, float(c.price_forecast[0])))[0])
        fleets = new
    return fleets


def _contexts(world: Any, t: int, make: Callable[..., list[Any]]) -> list[Any]:
    sc = world.scenario
    return make(
        world,
        t,
        world.forecast[t : t + world.horizon],
        world.weather,
        np.ones(world.devices.n),
        float(sc.utc_offsets_h[t]),
    )


def _sleep_until(wall: float) -> None:
    """Sleep until time.monotonic() reaches ``wall``."""
    dt = wall - time.monotonic()
    if dt > 0:
        time.sleep(dt)


@dataclass(frozen=True)
class _Book:
    """The bids of one interval: the fleets' contexts, their curves (one per device, in
    device order) and the parties whose batch was accepted."""

    ctxs: list[Any]
    curves: Any
    accepted: set[str]


@dataclass
class _Step:
    """Figures of one live interval (aggregated per hour on stderr)."""

    bids: int = 0
    late: int = 0
    price: float = float("nan")
    lag_s: float = 0.0  # wall s from the gate closure to the session seen cleared
    slack_s: float = float("inf")  # wall s between the bids in and the gate closure
    home_kwh: float = 0.0
    agg_kwh: float = 0.0


class _Driver:
    """The clients' side of the demo (see the module docstring)."""

    def __init__(
        self,
        world: Any,
        fleets: list[Any],
        url: str,
        creds: dict[str, tuple[str, str]],
        w0: int,
        n_live: int,
        settle_h: float,
        speed: float,
        res: DemoResult,
        say: Log,
    ) -> None:
        from transactive.sim.runner import interval_contexts

        self.world, self.fleets, self.res, self.say = world, fleets, res, say
        self.make_ctx = interval_contexts
        sc, dev = world.scenario, world.devices
        self.sc, self.dev = sc, dev
        self.area = world.area_names[0]
        self.agg = sc.aggregator.name
        self.w0, self.n_live = w0, n_live
        self.interval_s = round(sc.intervals.hours * 3600)
        self.wall_s = 1.0 / speed  # wall seconds per interval
        self.speed_s = speed * self.interval_s  # market seconds per wall second
        self.settle_every = max(1, round(settle_h * 3600 / self.interval_s))
        retry = Retry(attempts=10, backoff_s=0.02, max_backoff_s=0.5)
        self.clients = {p: Client(url, *cs, retry=retry) for p, cs in creds.items()}
        self.op = self.clients["operator"]
        self.pool = ThreadPoolExecutor(max_workers=min(WORKERS, len(creds)))
        self.lane = ThreadPoolExecutor(max_workers=1)  # meter readings and settlement
        self.lane_jobs: list[Future[None]] = []
        self.lock = threading.Lock()  # self.steps: both threads
        feeder = world.feeders[0]
        held = dev.owner.astype(str) == f"agg:{self.agg}"
        self.bidder = np.where(held, self.agg, np.array([_party(h) for h in dev.home]))
        self.bus_name = np.array(feeder.bus_names, dtype=object)[dev.bus]
        # meters: one per home (its own devices), one per bus of the aggregator's devices
        self.meter_of = np.where(
            held,
            np.array([f"{self.agg}-meter-bus{b}" for b in dev.bus], dtype=object),
            np.array([f"meter-{h}" for h in dev.home], dtype=object),
        )
        meters: dict[str, tuple[str, str]] = {
            f"meter-{i}": (_party(i), feeder.bus_names[int(world.home_bus[i])])
            for i in range(res.homes)
        }
        for m, b in zip(self.meter_of[held], self.bus_name[held], strict=True):
            meters[str(m)] = (self.agg, str(b))
        self.meters = meters
        self.meter_names = sorted(meters)
        self.meter_pos = np.searchsorted(self.meter_names, self.meter_of.astype(str))
        self.keys = {m: Ed25519PrivateKey.generate() for m in meters}
        self.is_home_meter = np.array([meters[m][0] != self.agg for m in self.meter_names])
        self.steps: dict[int, _Step] = {}
        self.unread: list[tuple[int, Any]] = []  # (t, kWh per meter) not uploaded yet
        self.lines_total = 0.0
        self.run_ids: list[str] = []
        self.held_at = datetime.min.replace(tzinfo=UTC)
        self.t_go = 0.0

    # --- helpers ---------------------------------------------------------------------------
    def _all(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items`` concurrently (the parties' requests); raises the first error."""
        return list(self.pool.map(fn, items))

    def start(self, t: int) -> datetime:
        out: datetime = self.sc.intervals.starts[t].to_pydatetime().astimezone(UTC)
        return out

    def sid(self, t: int) -> str:
        return f"{self.area}:real-time:{self.start(t):%Y%m%dT%H%MZ}"

    def gate(self, t: int) -> float:
        """time.monotonic() when the gate of ``t`` closes on the service's clock (estimate)."""
        market = self.start(t) - timedelta(seconds=GATE_S)
        return self.t_go + (market - self.held_at).total_seconds() / self.speed_s

    def ends(self, t: int) -> float:
        """time.monotonic() when interval ``t`` ends on the service's clock (estimate)."""
        return self.gate(t) + (GATE_S + self.interval_s) / self.speed_s

    def step(self, t: int) -> _Step:
        with self.lock:
            return self.steps.setdefault(t, _Step())

    # --- the phases ------------------------------------------------------------------------
    def run(self, held_at: datetime, control: Any) -> None:
        """Sign-in, the live intervals, the end checks (see the module docstring)."""
        self.held_at = held_at
        w0, n = self.w0, self.n_live
        res = self.res
        self._all(lambda p: self.clients[p].access_token(), sorted(self.clients))
        self._all(self._register, self.meter_names)
        self._wait_status(self.sid(w0), {"open"}, 60.0)
        bids = self._bids(w0)
        control.write(b"go\n")
        control.flush()
        self.t_go = time.monotonic()
        self.say("demo: parties signed in, meters registered, first bids in: clock started")
        first_head: dict[str, Any] | None = None
        since = self.start(w0)  # start of the period not yet settled
        prev: Any = None  # energy per meter of the interval before (kWh)
        for k in range(n):
            t = w0 + k
            session = self._wait_cleared(t)
            if first_head is None:
                first_head = self.op.journal_head()
            energy = self._run_devices(t, bids, session)
            res.intervals += 1
            if k + 1 < n:  # the next interval's bids, before its gate
                bids = self._bids(t + 1)
            if k:
                since = self._after(t - 1, prev, since, last=False)
            prev = energy
        self._after(w0 + n - 1, prev, since, last=True)
        self._check_lane(wait=True)
        self.lane.shutdown()
        self._check_invoices()
        self._check_journal(first_head)
        for c in self.clients.values():
            c.close()
        self.pool.shutdown()

    def _after(self, t: int, energy: Any, since: datetime, last: bool) -> datetime:
        """Interval ``t`` is over: every ``settle_every`` intervals (and at the end) the
        meters upload the period's readings and the operator settles it, in the meter lane
        (a background thread, one request at a time, off the bids' critical path); the
        hour's line. Returns the start of the period not yet settled."""
        self._check_lane()
        self.unread.append((t, energy))
        end = self.start(t) + timedelta(seconds=self.interval_s)
        done = t + 1 - self.w0
        settle = last or done % self.settle_every == 0
        hourly = last or (end.minute == 0 and end.second == 0)
        if settle or hourly:
            read, self.unread = (self.unread, []) if settle else ([], self.unread)
            a = since
            self.lane_jobs.append(
                self.lane.submit(self._period, read, a, end, settle=settle, hourly=hourly)
            )
        return end if settle else since

    def _period(
        self, read: list[tuple[int, Any]], a: datetime, b: datetime, *, settle: bool, hourly: bool
    ) -> None:
        """The meter lane's job: upload ``read``, settle [a, b), print the hour's line."""
        settled = ""
        if settle:
            self._upload(read)
            total = self._settle(a, b)
            money = round(total, 2) + 0.0  # no "-0.00"
            settled = f"; settled {a:%H:%M}–{b:%H:%M}Z Σ {money:+.2f} {self.res.currency}"
        if hourly:
            self._progress(b, settled)

    def _check_lane(self, wait: bool = False) -> None:
        """Raise the first error of a finished meter-lane job (``wait``: wait for all)."""
        keep = []
        for f in self.lane_jobs:
            if wait or f.done():
                f.result()
            else:
                keep.append(f)
        self.lane_jobs = keep

    def _progress(self, end: datetime, settled: str) -> None:
        """The stderr line of the simulated hour (or part) ending at ``end``."""
        with self.lock:
            hour = [
                (t, self.steps.pop(t))
                for t in sorted(self.steps)
                if end - timedelta(hours=1) <= self.start(t) < end
            ]
        if not hour:
            return
        st = [x for _, x in hour]
        p = np.array([x.price for x in st])
        price = (
            f"{np.nanmean(p):.4f} ({np.nanmin(p):.4f}–{np.nanmax(p):.4f})"
            if np.isfinite(p).any()
            else "none"
        )
        slack = min(x.slack_s for x in st)
        self.say(
            f"demo: {self.start(hour[0][0]):%Y-%m-%d %H:%M}Z price {price} "
            f"{self.res.currency}/kWh, {sum(x.bids for x in st)} bids, late "
            f"{sum(x.late for x in st)}, homes {sum(x.home_kwh for x in st):+.1f} kWh, "
            f"{self.agg} {sum(x.agg_kwh for x in st):+.1f} kWh; cleared "
            f"≤ {max(x.lag_s for x in st):.2f} s after the gate, bids in {_slack(slack)}" + settled
        )

    def _register(self, meter: str) -> None:
        party, bus = self.meters[meter]
        pub = self.keys[meter].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        body = {"id": meter, "kind": "meter", "area": self.area, "bus": bus, "public_key": pub}
        self.clients[party].create_resource(body, key=f"resource:{meter}")

    def _bids(self, t: int) -> _Book:
        """Every party's bids for interval ``t`` (one curve per device), posted concurrently
        (one batch per party); parties whose batch reached a closed gate are behind the
        clock (said on stderr; their devices run ``t`` off the market)."""
        from transactive.core.curves import concat

        ctxs = _contexts(self.world, t, self.make_ctx)
        allc = concat([f.bid(c) for f, c in zip(self.fleets, ctxs, strict=True)])
        book: dict[str, list[dict[str, Any]]] = {}
        for d in range(self.dev.n):
            a, b = allc.offsets[d], allc.offsets[d + 1]
            pts = np.column_stack([allc.price[a:b], allc.quantity[a:b]]).tolist()
            book.setdefault(str(self.bidder[d]), []).append(
                {"bid_id": f"d{d}", "bus": str(self.bus_name[d]), "curve": {"points": pts}}
            )
        sid = self.sid(t)

        def post(party: str) -> bool:
            try:
                out = self.clients[party].bids(sid, book[party], key=f"{sid}:{party}")
            except ApiError as exc:
                if exc.status == 409 and any(x in str(exc) for x in LATE):
                    return False
                raise
            return int(out["accepted"]) == len(book[party])

        parties = sorted(book)
        ok = self._all(post, parties)
        st = self.step(t)
        if self.t_go:  # the first bids go in while the clock is held
            st.slack_s = self.gate(t) - time.monotonic()
            self.res.min_slack_s = min(self.res.min_slack_s, st.slack_s)
        accepted = {p for p, good in zip(parties, ok, strict=True) if good}
        late = [p for p in parties if p not in accepted]
        st.bids = sum(len(book[p]) for p in accepted)
        st.late = sum(len(book[p]) for p in late)
        self.res.bids += st.bids
        if late:
            self.res.late_bids += st.late
            self.res.late_intervals += 1
            self.say(
                f"demo: BEHIND THE CLOCK at {self.start(t):%H:%M}Z: the gate closed before "
                f"the bids of {len(late)} of {len(parties)} parties ({st.late} bids) were in; "
                "their devices run this interval off the market"
            )
        return _Book(ctxs, allc, accepted)

    def _wait_status(self, sid: str, want: set[str], timeout_s: float) -> dict[str, Any]:
        """Poll the session until its status is in ``want`` (404: not opened yet)."""
        t_end = time.monotonic() + timeout_s
        # every poll takes SQLite's write lock (BEGIN IMMEDIATE): not too often
        pause = min(0.03, self.wall_s / 15)
        while True:
            try:
                s = self.op.session(sid)
                if s["status"] in want:
                    return s
            except ApiError as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > t_end:
                raise RuntimeError(f"session {sid} did not reach {sorted(want)} in {timeout_s} s")
            time.sleep(pause)

    def _wait_cleared(self, t: int) -> dict[str, Any]:
        """Session ``t`` once cleared (or failed), polled from its gate closure on."""
        gate = self.gate(t)
        _sleep_until(gate + min(0.05, self.wall_s / 10))  # no clearing is that quick
        s = self._wait_status(self.sid(t), {"cleared", "failed"}, 120.0 + 10 * self.wall_s)
        st = self.step(t)
        st.lag_s = max(0.0, time.monotonic() - gate)
        self.res.max_clear_lag_s = max(self.res.max_clear_lag_s, st.lag_s)
        self.res.sessions_cleared += s["status"] == "cleared"
        if s.get("price") is not None:
            st.price = float(s["price"])
        return s

    def _run_devices(self, t: int, bids: _Book, session: dict[str, Any]) -> Any:
        """Read the awards of ``t`` and run every device at them (late parties' at the
        forecast price); returns the energy per meter over the interval (kWh, + import)."""
        dev, sid = self.dev, self.sid(t)
        award = np.zeros(dev.n)
        # a failed session awards nothing: every device runs it off the market
        parties = sorted(bids.accepted) if session["status"] == "cleared" else []
        rows = self._all(lambda p: self.clients[p].awards(sid), parties)
        for party, mine in zip(parties, rows, strict=True):
            for a in mine:
                if a["party_id"] == party:
                    d = int(str(a["bid_id"]).rsplit(":", 1)[-1].removeprefix("d"))
                    award[d] = float(a["award_kw"])
        on = np.isin(self.bidder, parties)
        power = np.zeros(dev.n)
        new = []
        for fleet, ctx, sl in zip(self.fleets, bids.ctxs, dev.slices, strict=True):
            cv = select(bids.curves, np.arange(sl.start, sl.stop))
            forecast = float(ctx.price_forecast[0])
            price = forecast if session.get("price") is None else float(session["price"])
            run = np.where(
                on[sl],
                fleet.respond(ctx, cv, award=award[sl]),
                fleet.respond(ctx, cv, price=forecast),
            )
            nf, rep = fleet.step(run, ctx, cleared_price=np.where(on[sl], price, forecast))
            new.append(nf)
            power[sl] = rep.power_kw
        self.fleets = new
        kwh = power * self.sc.intervals.hours
        energy = np.bincount(self.meter_pos, weights=kwh, minlength=len(self.meter_names))
        st = self.step(t)
        st.home_kwh = float(energy[self.is_home_meter].sum())
        st.agg_kwh = float(energy[~self.is_home_meter].sum())
        return energy

    def _upload(self, done: list[tuple[int, Any]]) -> None:
        """The signed readings (Wh) of the intervals ``done`` ((t, kWh per meter), oldest
        first): one request per party with all its meters' readings, once the last interval
        has ended on the service's clock (the client's estimate of that clock may run a
        little ahead: 'has not ended' is retried)."""
        if not done:
            return
        _sleep_until(self.ends(done[-1][0]))
        wh = np.rint(np.array([e for _, e in done]) * 1000).astype(np.int64)  # (T, meters)
        stamps = [_iso(self.start(t)) for t, _ in done]
        by_party: dict[str, list[int]] = {}
        for i, m in enumerate(self.meter_names):
            by_party.setdefault(self.meters[m][0], []).append(i)
        key0 = f"{done[0][0]}-{done[-1][0]}"

        def post(party: str) -> None:
            c, mine = self.clients[party], []
            for i in by_party[party]:
                m = self.meter_names[i]
                rows = [
                    sign_reading(
                        {
                            "resource_id": m,
                            "interval_start": stamp,
                            "duration_s": self.interval_s,
                            "import_wh": int(max(wh[j, i], 0)),
                            "export_wh": int(max(-wh[j, i], 0)),
                        },
                        self.keys[m],
                    )
                    for j, stamp in enumerate(stamps)
                ]
                mine.extend(rows)
            for _ in range(500):
                try:
                    c.meter_readings(mine, idempotency_key=f"{party}:{key0}")
                    return
                except ApiError as exc:
                    if exc.status != 422 or "has not ended" not in str(exc):
                        raise
                    time.sleep(0.01)
            raise RuntimeError(f"readings of {party}: the interval never ended on the service")

        for party in sorted(by_party):  # one at a time: the bids go first
            post(party)
        self.res.readings += wh.size
        home = wh[:, self.is_home_meter]
        self.res.import_kwh += float(np.clip(home, 0, None).sum()) / 1000
        self.res.export_kwh += float(np.clip(-home, 0, None).sum()) / 1000

    def _settle(self, a: datetime, b: datetime) -> float:
        """Settlement of [a, b) by the operator; returns Σ of its lines (currency)."""
        run = self.op.settlement_run(self.area, _iso(a), _iso(b))
        total, offset = 0.0, 0
        while True:
            lines = self.op.settlement_lines(str(run["id"]), offset=offset, limit=10_000)
            total += sum(float(x["amount"]) for x in lines)
            if len(lines) < 10_000:
                break
            offset += len(lines)
        self.lines_total += total
        self.run_ids.append(str(run["id"]))
        self.res.settlement_runs += 1
        return total

    def _check_invoices(self) -> None:
        """Σ of every run's invoices (cents summed exactly) and of their lines."""
        cents, count = 0, 0
        for rid in self.run_ids:
            offset = 0
            while True:
                inv = self.op.invoices(run_id=rid, offset=offset, limit=10_000)
                cents += sum(round(float(x["total"]) * 100) for x in inv)
                count += len(inv)
                if len(inv) < 10_000:
                    break
                offset += len(inv)
        self.res.invoices = count
        self.res.balance = cents / 100 if self.run_ids else None
        self.res.lines_balance = self.lines_total

    def _check_journal(self, first: dict[str, Any] | None) -> None:
        """Inclusion proofs of a sample of this demo's session records against the latest
        signed head, and its consistency with ``first`` (the head after the first
        clearing); a sample read across a new head is read again."""
        op, res = self.op, self.res
        ids = [self.sid(self.w0 + k) for k in range(self.n_live)]
        sample = ids[:: max(1, len(ids) // 8)]
        res.proofs_wanted = len(sample)
        for _ in range(10):
            head = op.journal_head()
            size, root = int(head["tree_size"]), bytes.fromhex(str(head["root_hash"]))
            recs = [op.journal_record(f"session:{s}") for s in sample]
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
        ok = res.proofs_checked == len(sample) > 0
        if first is not None:
            old = int(first["tree_size"])
            proof = [bytes.fromhex(p) for p in op.journal_consistency(old, size)["proof"]]
            old_root = bytes.fromhex(str(first["root_hash"]))
            ok = ok and merkle.verify_consistency(old, size, old_root, root, proof)
        res.consistent = ok


def summary(res: DemoResult) -> str:
    """The end-of-run summary (stdout)."""
    cur = res.currency
    imp, exp = res.per_home_day(res.import_kwh), res.per_home_day(res.export_kwh)
    band = TYPICAL_KWH_DAY.get(res.region)
    typical = (
        f"typical for region {res.region}: {band[0]:g}–{band[1]:g} ({band[2]}): "
        + ("plausible" if res.plausible else "OUTSIDE the typical range")
        if band
        else f"no typical range for region {res.region!r}"
    )
    bal = "n/a" if res.balance is None else f"{round(res.balance, 2) + 0.0:.2f}"
    first = f"{res.first:%Y-%m-%d %H:%M}Z" if res.first else "?"
    lines = [
        f"live demo {res.scenario}: {res.intervals} intervals of {res.interval_min:g} min "
        f"from {first} at {res.speed:g} interval(s)/s; {res.homes} homes, "
        f"{res.devices} devices",
        f"sessions cleared: {res.sessions_cleared}/{res.intervals}",
        f"bids accepted: {res.bids}; behind the clock: {res.late_intervals} interval(s), "
        f"{res.late_bids} late bids",
        f"timing: cleared ≤ {res.max_clear_lag_s:.2f} s after the gate; the next bids in "
        f"{_slack(res.min_slack_s)}",
        f"meter readings: {res.readings} signed",
        f"kWh/home/day: {imp - exp:.2f} net (import {imp:.2f}, export {exp:.2f}); {typical}",
        f"settlement runs: {res.settlement_runs}, invoices: {res.invoices}, "
        f"balance: {bal} {cur} (Σ invoices; Σ lines {res.lines_balance or 0.0:+.4f}) "
        + ("balanced to the cent" if res.balanced else "NOT BALANCED"),
        f"journal: {res.journal_size} records, {res.proofs_checked}/{res.proofs_wanted} "
        f"inclusion proofs verified, consistency "
        + ("verified" if res.consistent else "NOT verified"),
        *res.notes,
    ]
    if res.late_intervals:
        lines.append(
            f"the clients fell behind the clock in {res.late_intervals} interval(s): "
            "lower --speed or --homes on this machine"
        )
    return "\n".join(lines)


def _slack(s: float) -> str:
    """Wall seconds between bids and their gate, in words."""
    if not np.isfinite(s):
        return "before the clock started"
    if s >= 0:
        return f"≥ {s:.2f} s before their gate"
    return f"up to {-s:.2f} s after their gate (behind the clock)"
