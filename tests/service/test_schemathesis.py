"""Property-based API testing with schemathesis against the app's own OpenAPI document.

On each backend, every operation gets generated requests as an admin and as a
participant (≥ 1,000 requests in all), each checked for: no 5xx (not_a_server_error), a
body that matches the documented schema (response_schema_conformance) and a documented
status code (status_code_conformance).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from conftest import Api, make_api
from transactive.service.config import Limits, ServiceConfig
from transactive.service.models import MarketSession
from transactive.service.sessions import ensure_sessions

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
PER_OPERATION = 17  # examples per operation and role: 2 × 17 × ≥ 30 operations > 1,000
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture
def fuzz_api(db_url: str) -> Iterator[Api]:
    config = ServiceConfig(
        db_url=db_url,
        scheduler=False,
        clock_start=NOW,
        substation_kw=0.0,
        limits=Limits(requests_per_s=1e6, burst=1_000_000),
    )
    for api in make_api(config):
        with api.services.db.sessions() as s:
            ensure_sessions(s, api.services.market, api.services.config, NOW - timedelta(hours=1))
            s.commit()
        yield api


def test_generated_requests_conform(fuzz_api: Api) -> None:
    api = fuzz_api
    area = next(iter(api.services.market.areas))
    who = {
        "admin": api.party("root", "admin"),
        "participant": api.party("alice", "participant", area=area),
    }
    with api.services.db.sessions() as s:
        sid = s.scalars(select(MarketSession.id).order_by(MarketSession.interval_start)).first()
    assert sid is not None
    r = api.client.post(f"/v1/sessions/{sid}/clear", headers=who["admin"])
    assert r.status_code in (200, 409), r.text
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    count = 0
    failures: list[str] = []
    statuses: dict[int, int] = {}
    ops = [op.ok() for op in schema.get_all_operations()]
    assert len(ops) >= 20

    def fuzz(op: Any, role: str, headers: dict[str, str]) -> None:
        @given(case=op.as_strategy())
        @settings(
            max_examples=PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal count
            response = case.call(headers=headers)
            count += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # every failure is reported below
                failures.append(f"{role} {op.label}: {str(exc)[:800]}")

        run()

    for op in ops:
        for role, headers in who.items():
            fuzz(op, role, headers)
    assert not failures, "\n\n".join(failures)
    assert count >= 1000, count
    assert any(c < 300 for c in statuses) and any(400 <= c < 500 for c in statuses), statuses


def test_the_checks_can_fail(api: Api) -> None:
    """A response the document does not describe is reported (the checks above are live)."""
    doc = api.client.app.openapi()
    doc["paths"]["/v1/me"]["get"]["responses"].pop("401")
    schema = schemathesis.openapi.from_dict(doc)
    op = schema["/v1/me"]["GET"]
    case = op.Case()
    response = api.client.get("/v1/me")  # no token: 401, now undocumented
    assert response.status_code == 401
    with pytest.raises(BaseException) as info:  # schemathesis raises a FailureGroup
        case.validate_response(response, checks=CHECKS)
    parts = [info.value, *getattr(info.value, "exceptions", ())]
    assert any("Undocumented status code" in str(x) for x in parts), parts
