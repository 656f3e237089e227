"""Service test fixtures: every API test runs on SQLite and on PostgreSQL.

``db_url`` gives a fresh, empty database per test: a SQLite file in the test's folder, or
a new schema in PostgreSQL's ``test`` database (127.0.0.1:5432, trust auth), dropped after
the test. ``api`` is a :class:`Api`: the app under an in-process client plus helpers that
create parties and sign them in.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from transactive.service.app import build_services, create_app
from transactive.service.config import ServiceConfig
from transactive.service.deps import Services
from transactive.service.identity import create_client, create_party

PG_BASE = os.environ.get("TRANSACTIVE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_url(schema)
    finally:
        with engine.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@dataclass
class Api:
    """The service under test: ``client`` (httpx-style), ``services`` and sign-in helpers."""

    client: TestClient
    services: Services
    tokens: dict[str, str] = field(default_factory=dict)

    def party(
        self,
        party_id: str,
        role: str,
        *,
        area: str | None = None,
        aggregator_id: str | None = None,
    ) -> dict[str, str]:
        """Create ``party_id`` with one client and return Authorization headers for it."""
        now = datetime.now(UTC)
        with self.services.db.sessions() as s:
            create_party(
                s,
                party_id=party_id,
                name=party_id,
                role=role,
                area=area,
                aggregator_id=aggregator_id,
                now=now,
            )
            s.flush()
            c = create_client(s, party_id, now)
            s.commit()
        r = self.client.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": c.client_id,
                "client_secret": c.client_secret,
            },
        )
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        self.tokens[party_id] = token
        return {"Authorization": f"Bearer {token}"}

    def get(self, path: str, who: dict[str, str], **kw: Any) -> Any:
        return self.client.get(path, headers=who, **kw)

    def post(self, path: str, who: dict[str, str], **kw: Any) -> Any:
        return self.client.post(path, headers=who, **kw)


def make_api(config: ServiceConfig) -> Iterator[Api]:
    services = build_services(config)
    app = create_app(config, services)
    try:
        with TestClient(app, raise_server_exceptions=True) as client:
            yield Api(client, services)
    finally:
        services.db.dispose()


@pytest.fixture
def config(db_url: str) -> ServiceConfig:
    """The default configuration on the test's database, without the scheduler."""
    return ServiceConfig(db_url=db_url, scheduler=False)


@pytest.fixture
def api(config: ServiceConfig) -> Iterator[Api]:
    yield from make_api(config)
