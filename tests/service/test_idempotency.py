"""Idempotency-Key on bid POSTs, on SQLite and PostgreSQL: a retry gets the stored
response and writes nothing; a key reused for another request is a 422."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from test_bids import SID, T0, add_session, block

from conftest import Api, make_api
from transactive.service import journal
from transactive.service.config import ServiceConfig
from transactive.service.models import Bid, Idempotency


@pytest.fixture
def iapi(config: ServiceConfig) -> Iterator[Api]:
    for api in make_api(config.at(T0)):
        add_session(api, SID, T0 + timedelta(minutes=55))
        yield api


def count(api: Api) -> tuple[int, int]:
    with api.services.db.sessions() as s:
        return s.scalar(select(func.count()).select_from(Bid)) or 0, journal.tree_size(s)


def test_single_bid_retry_gets_the_same_response_and_writes_once(iapi: Api) -> None:
    h1 = iapi.party("h1", "participant", area="area")
    key = {"Idempotency-Key": "k-1"}
    first = iapi.client.post(f"/v1/sessions/{SID}/bids", headers={**h1, **key}, json=block("a"))
    again = iapi.client.post(f"/v1/sessions/{SID}/bids", headers={**h1, **key}, json=block("a"))
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert count(iapi) == (1, 1)
    other = iapi.client.post(
        f"/v1/sessions/{SID}/bids", headers={**h1, **key}, json=block("a", price=0.3)
    )
    assert other.status_code == 422 and other.json()["errors"][0]["loc"] == [
        "header",
        "Idempotency-Key",
    ]
    # without the key the same bid is a duplicate: 409
    assert iapi.post(f"/v1/sessions/{SID}/bids", h1, json=block("a")).status_code == 409
    # another client may use the same key for its own request
    h2 = iapi.party("h2", "participant", area="area")
    r = iapi.client.post(f"/v1/sessions/{SID}/bids", headers={**h2, **key}, json=block("a"))
    assert r.status_code == 201 and r.json()["party_id"] == "h2"
    with iapi.services.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Idempotency)) == 2


def test_batch_retry_and_key_limits(iapi: Api) -> None:
    h1 = iapi.party("h1", "participant", area="area")
    body = {"bids": [block(f"b{i}") for i in range(20)]}
    hdr = {**h1, "Idempotency-Key": "batch-1"}
    first = iapi.client.post(f"/v1/sessions/{SID}/bids/batch", headers=hdr, json=body)
    again = iapi.client.post(f"/v1/sessions/{SID}/bids/batch", headers=hdr, json=body)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert count(iapi) == (20, 20)
    body["bids"][0]["price"] = 0.25
    assert (
        iapi.client.post(f"/v1/sessions/{SID}/bids/batch", headers=hdr, json=body).status_code
        == 422
    )
    long = {**h1, "Idempotency-Key": "k" * 201}
    r = iapi.client.post(
        f"/v1/sessions/{SID}/bids/batch", headers=long, json={"bids": [block("z")]}
    )
    assert r.status_code == 422
    r = iapi.client.post(f"/v1/sessions/{SID}/bids", headers=long, json=block("z"))
    assert r.status_code == 422
    ok = {**h1, "Idempotency-Key": "k" * 200}
    assert (
        iapi.client.post(f"/v1/sessions/{SID}/bids", headers=ok, json=block("z")).status_code == 201
    )
    # a failed request stores nothing: the same key works once the problem is fixed
    fix = {**h1, "Idempotency-Key": "fix"}
    bad = iapi.client.post(f"/v1/sessions/{SID}/bids", headers=fix, json=block("y", price=9.0))
    assert bad.status_code == 422
    good = iapi.client.post(f"/v1/sessions/{SID}/bids", headers=fix, json=block("y"))
    assert good.status_code == 201


def test_concurrent_retries_with_one_key_write_one_bid(iapi: Api) -> None:
    h1 = iapi.party("h1", "participant", area="area")
    hdr = {**h1, "Idempotency-Key": "race"}

    def post(_: int) -> Any:
        return iapi.client.post(f"/v1/sessions/{SID}/bids", headers=hdr, json=block("r"))

    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(post, range(10)))
    assert {r.status_code for r in replies} == {201}
    assert len({r.content for r in replies}) == 1
    assert count(iapi) == (1, 1)


def test_idempotent_retry_after_gate_closure_returns_the_stored_answer(
    config: ServiceConfig,
) -> None:
    for api in make_api(config):  # the wall clock: the gate passes during the test
        h1 = api.party("h1", "participant", area="area")
        sid = "area:real-time:20990101T0000Z"
        gate = datetime.now(UTC) + timedelta(seconds=1)
        add_session(api, sid, gate)
        hdr = {**h1, "Idempotency-Key": "late-retry"}
        first = api.client.post(f"/v1/sessions/{sid}/bids", headers=hdr, json=block("a"))
        assert first.status_code == 201
        time.sleep(max(0.0, (gate - datetime.now(UTC)).total_seconds()) + 0.05)
        again = api.client.post(f"/v1/sessions/{sid}/bids", headers=hdr, json=block("a"))
        assert again.status_code == 201 and again.content == first.content
        fresh = api.post(f"/v1/sessions/{sid}/bids", h1, json=block("b"))
        assert fresh.status_code == 409
