"""The FastAPI application: ``create_app(config)`` wires database, keys, clock and routers.

Start-up migrates the database, loads (or creates) the service keys and starts the
background components (intake writer, gate-closure scheduler) registered in
:data:`COMPONENTS`; shutdown stops them in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from transactive import __version__
from transactive.service import openapi, problems, scheduler
from transactive.service.area import load_market
from transactive.service.clock import Clock
from transactive.service.config import ServiceConfig
from transactive.service.db import open_database
from transactive.service.deps import Services, _TokenCache
from transactive.service.intake import start_writer, stop_writer
from transactive.service.limits import LimitsMiddleware
from transactive.service.routers import area as area_router
from transactive.service.routers import auth, parties
from transactive.service.routers import bids as bids_router
from transactive.service.routers import journal as journal_router
from transactive.service.routers import meter as meter_router
from transactive.service.routers import resources as resources_router
from transactive.service.routers import sessions as sessions_router
from transactive.service.routers import settlement as settlement_router
from transactive.service.security import TokenSigner, service_key

#: (start, stop) pairs run in the lifespan; a start gets the Services and returns a handle.
Component = tuple[Callable[[Services], Awaitable[Any]], Callable[[Any], Awaitable[None]]]
COMPONENTS: list[Component] = []
COMPONENTS.append((start_writer, stop_writer))
COMPONENTS.append((scheduler.start, scheduler.stop))  # gate closures (config.scheduler)

DESCRIPTION = """A live transactive energy market: participants register resources, bid until
gate closure, read awards, prices and dispatch, post signed meter readings and are settled.
Authenticate with OAuth2 client credentials at `POST /v1/token`; errors are RFC 9457
problem documents."""


def build_services(config: ServiceConfig) -> Services:
    """Open the database (migrated) and load the keys: the state every request uses."""
    market = load_market(config.scenario)  # bad scenario: ScenarioError before any I/O
    db = open_database(config.db_url)
    with db.sessions() as s:
        jwt_key = service_key(s, "jwt")
        journal_key = service_key(s, "journal")
    clock = Clock(config.clock_start, config.clock_speed, config.clock_epoch)
    signer = TokenSigner(jwt_key, config.issuer, config.token_ttl_s)
    return Services(config, db, clock, signer, journal_key, market)


def create_app(config: ServiceConfig, services: Services | None = None) -> FastAPI:
    """The application for ``config`` (``services`` to share an already-open database)."""
    svc = services or build_services(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handles: list[tuple[Callable[[Any], Awaitable[None]], Any]] = []
        try:
            for start, stop in COMPONENTS:
                if svc.config.scheduler or getattr(start, "always", False):
                    handles.append((stop, await start(svc)))
            yield
        finally:
            for stop, handle in reversed(handles):
                await stop(handle)
            if services is None:
                svc.db.dispose()

    app = FastAPI(
        title="transactive market service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry hooks look providers up (environment reads) on
        # every request, ~10 % of the event loop's time at load; the service does not use them
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = svc
    app.state.token_cache = _TokenCache()
    problems.install(app)
    # inside the limits (added later = outer): rate and body-size limits still apply
    app.add_middleware(
        bids_router.SingleBidFastPath, services=svc, token_cache=app.state.token_cache
    )
    app.add_middleware(
        LimitsMiddleware, limits=svc.config.limits, token_cache=app.state.token_cache
    )
    openapi.install(app)
    app.include_router(auth.router)
    app.include_router(parties.router)
    app.include_router(bids_router.router)
    app.include_router(journal_router.router)
    app.include_router(sessions_router.router)
    app.include_router(area_router.router)
    app.include_router(resources_router.router)
    app.include_router(meter_router.router)
    app.include_router(settlement_router.router)

    @app.get("/healthz", tags=["meta"], summary="Liveness and database check")
    def healthz() -> dict[str, str]:
        with svc.db.engine.connect() as c:
            c.exec_driver_sql("SELECT 1")
        return {"status": "ok", "database": svc.db.engine.dialect.name}

    return app
