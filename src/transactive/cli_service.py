"""`transactive serve` (the live market service) and `transactive admin` (its identities).

Like :mod:`transactive.cli`, only the standard library and typer load at start-up.
Exit codes: 0 done, 2 bad input (the message names the option or file), 1 a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from transactive.errors import InvalidInputError

DbOption = Annotated[
    str,
    typer.Option(
        "--db", help="Database URL: sqlite:///FILE (default) or postgresql://USER@HOST/DB."
    ),
]
DEFAULT_DB = "sqlite:///transactive.db"

admin_app = typer.Typer(
    help="Manage the service's parties and OAuth2 clients.", no_args_is_help=True
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def serve_cmd(
    db: DbOption = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(help="Interface to bind (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario TOML whose area the market serves.")
    ] = None,
    demo: Annotated[
        Path | None,
        typer.Option(help="Run a simulated area of HTTP clients on an accelerated clock."),
    ] = None,
    speed: Annotated[
        float, typer.Option(min=0.01, max=100.0, help="--demo: market intervals per second.")
    ] = 1.0,
    hours: Annotated[
        float, typer.Option(min=0.25, max=24.0 * 366, help="--demo: simulated hours.")
    ] = 24.0,
    homes: Annotated[
        int, typer.Option(min=1, max=10_000, help="--demo: homes that are HTTP clients.")
    ] = 20,
    exit_: Annotated[
        bool, typer.Option("--exit", help="--demo: stop after --hours (else keep serving).")
    ] = False,
    clock_start: Annotated[
        str | None,
        typer.Option(
            "--clock-start",
            help="Run the market on an accelerated clock from this time (ISO 8601 with a "
            "time zone, e.g. 2030-01-01T00:00Z); default: the wall clock.",
        ),
    ] = None,
    clock_speed: Annotated[
        float | None,
        typer.Option(
            "--clock-speed", help="--clock-start: market seconds per wall second (default 1)."
        ),
    ] = None,
    clock_epoch: Annotated[
        float | None,
        typer.Option(
            "--clock-epoch",
            help="--clock-start: the wall time (UNIX seconds) at which the market time is "
            "--clock-start (default: start-up). Fix it and a restarted service continues "
            "the same market time.",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes sharing the port (PostgreSQL only: SQLite has one writer).",
        ),
    ] = 1,
) -> None:
    """Start the market service (HTTP API; OpenAPI at /docs and /openapi.json)."""
    clock = _clock_options(clock_start, clock_speed, clock_epoch, demo is not None)
    if workers > 1 and (demo is not None or not db.startswith("postgres")):
        raise _fail(
            f"--workers {workers}: more than one process needs a PostgreSQL --db (SQLite has "
            "one writer; one process group-commits its bids)"
        )
    if demo is not None:
        _demo(demo, None if db == DEFAULT_DB else db, speed, hours, homes, exit_)
        return
    try:
        from transactive.service.config import ServiceConfig
        from transactive.service.db import normalise_url

        normalise_url(db)
        config = ServiceConfig(db_url=db, scenario=scenario, **clock)
        import uvicorn
        from sqlalchemy.exc import DBAPIError

        from transactive.service.app import create_app

        try:
            app = create_app(config)
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise _fail(f"--db {db!r}: cannot open the database ({reason})") from None
    except InvalidInputError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"transactive market service on http://{host}:{port}  (database: {db})", err=True)
    _quiet_stdout()
    if workers > 1:
        app.state.services.db.dispose()  # migrated, keys created: the children serve
        if config.clock_start is not None and config.clock_epoch is None:  # one market time
            config = config.model_copy(update={"clock_epoch": time.time()})
        raise typer.Exit(_serve_workers(config, host, port, workers))
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler it found at
    # start-up; with this one installed the process exits 0 after a clean shutdown.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _clock_options(
    start: str | None, speed: float | None, epoch: float | None, demo: bool
) -> dict[str, Any]:
    """The ServiceConfig clock fields of ``serve``'s --clock-* options; exit 2 naming the
    option on a bad value."""
    import math
    from datetime import UTC, datetime

    if start is None:
        if speed is not None:
            raise _fail(f"--clock-speed {speed}: needs --clock-start (the wall clock runs at 1)")
        if epoch is not None:
            raise _fail(f"--clock-epoch {epoch}: needs --clock-start")
        return {}
    if demo:
        raise _fail("--clock-start: not with --demo (the demo runs its own clock; see --speed)")
    try:
        when = datetime.fromisoformat(start)
    except ValueError:
        raise _fail(
            f"--clock-start {start!r}: not an ISO 8601 time (e.g. 2030-01-01T00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise _fail(f"--clock-start {start!r}: give a time zone (e.g. 2030-01-01T00:00Z)")
    out: dict[str, Any] = {"clock_start": when.astimezone(UTC)}
    if speed is not None:
        if not (math.isfinite(speed) and speed > 0):
            raise _fail(f"--clock-speed {speed}: must be a positive number (market s per wall s)")
        out["clock_speed"] = speed
    if epoch is not None:
        if not math.isfinite(epoch):
            raise _fail(f"--clock-epoch {epoch}: must be finite UNIX seconds")
        out["clock_epoch"] = epoch
    return out


def _serve_workers(config: object, host: str, port: int, n: int) -> int:
    """Serve from ``n`` forked processes on one listening socket; only the first runs the
    gate-closure scheduler. SIGTERM/SIGINT stop them all; returns 0 after a clean stop,
    1 if a worker failed."""
    import socket

    import uvicorn

    from transactive.service.app import create_app
    from transactive.service.config import ServiceConfig

    assert isinstance(config, ServiceConfig)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    children: list[int] = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:  # a worker: its own app, engine and intake writer
            code = 1
            try:
                signal.signal(signal.SIGTERM, lambda _sig, _frame: None)  # see serve_cmd
                cfg = config if i == 0 else config.model_copy(update={"scheduler": False})
                app = create_app(cfg)
                server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
                server.run(sockets=[sock])
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()
    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    alive = set(children)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        alive.discard(pid)
        if os.waitstatus_to_exitcode(status) != 0 or not stopping:
            failed = True  # a worker died on its own: stop the others
            if not stopping:
                stop(signal.SIGTERM, None)
    return 1 if failed else 0


def _quiet_stdout() -> None:
    """Send file descriptor 1 to stderr: a C library's (solver's) prints never reach stdout."""
    sys.stdout.flush()
    try:
        os.dup2(sys.stderr.fileno(), 1)
    except (OSError, ValueError):  # no real file descriptors (embedded): nothing to redirect
        pass


def _demo(
    scenario: Path, db: str | None, speed: float, hours: float, homes: int, exit_: bool
) -> None:
    """`serve --demo`: the live demo (transactive.service.demo); progress on stderr, the
    summary alone on stdout; exit 1 if the demo's own checks fail."""
    import time

    import httpx

    from transactive.service.client import ApiError
    from transactive.service.demo import DemoResult, run_demo, stdout_to_stderr, summary

    with stdout_to_stderr() as out:

        def done(res: DemoResult) -> None:
            print(summary(res), file=out, flush=True)
            if not exit_ and not res.failures():
                typer.echo("demo done; the service keeps running, Ctrl-C to stop", err=True)
                while True:
                    time.sleep(3600)

        try:
            res = run_demo(scenario, db_url=db, speed=speed, hours=hours, homes=homes, on_done=done)
        except InvalidInputError as exc:
            raise _fail(str(exc)) from None
        except (RuntimeError, ApiError, OSError, httpx.TransportError) as exc:  # service gone
            typer.echo(f"error: the demo stopped: {exc}", err=True)
            raise typer.Exit(1) from None
    failed = res.failures()
    if failed:
        typer.echo(f"error: the demo failed its checks: {'; '.join(failed)}", err=True)
        raise typer.Exit(1)


@admin_app.command("create-client")
def create_client_cmd(
    role: Annotated[str, typer.Option(help="participant, aggregator, dso, tso, auditor or admin.")],
    party: Annotated[str, typer.Option(help="Party id (created if it does not exist).")],
    name: Annotated[str | None, typer.Option(help="Party name (default: the id).")] = None,
    area: Annotated[str | None, typer.Option(help="The party's area (required for a DSO).")] = None,
    aggregator: Annotated[
        str | None, typer.Option(help="Aggregator whose portfolio a participant joins.")
    ] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Create a client (and its party); prints JSON with the secret, shown only once."""
    try:
        from datetime import UTC, datetime

        from transactive.service.db import open_database
        from transactive.service.identity import create_client, create_party
        from transactive.service.models import Party

        database = open_database(db)
        try:
            with database.sessions() as s:
                now = datetime.now(UTC)
                existing = s.get(Party, party)
                if existing is None:
                    create_party(
                        s,
                        party_id=party,
                        name=name or party,
                        role=role,
                        area=area,
                        aggregator_id=aggregator,
                        now=now,
                    )
                elif existing.role != role:
                    raise InvalidInputError(
                        f"--party {party!r}: exists with role {existing.role!r}, not {role!r}"
                    )
                c = create_client(s, party, now)
                s.commit()
        finally:
            database.dispose()
    except InvalidInputError as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        json.dumps(
            {
                "client_id": c.client_id,
                "client_secret": c.client_secret,
                "party_id": c.party_id,
                "role": c.role,
            }
        )
    )
