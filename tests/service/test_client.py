"""The typed client (transactive.service.client) against the in-process app, on SQLite and
PostgreSQL: token fetch and refresh, single and batch bids, retries that keep their
idempotency key through a lost response and a 503, and the async client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from test_bids import BUS, SID, T0, add_session

from conftest import Api, make_api
from transactive.service.client import ApiError, AsyncClient, Client, Retry, sign_reading
from transactive.service.config import ServiceConfig
from transactive.service.identity import create_client, create_party
from transactive.service.journal import canonical
from transactive.service.models import Bid

FAST = Retry(attempts=4, backoff_s=0.001, max_backoff_s=0.01)


@pytest.fixture
def capi(config: ServiceConfig) -> Iterator[Api]:
    for api in make_api(config.at(T0)):
        add_session(api, SID, T0 + timedelta(minutes=55))
        yield api


def credentials(api: Api, party_id: str) -> tuple[str, str]:
    now = datetime.now(UTC)
    with api.services.db.sessions() as s:
        create_party(
            s, party_id=party_id, name=party_id, role="participant", area="area",
            aggregator_id=None, now=now,
        )  # fmt: skip
        s.flush()
        c = create_client(s, party_id, now)
        s.commit()
    return c.client_id, c.client_secret


class Flaky(httpx.BaseTransport):
    """Forwards to the app; the first bid POST is processed but its answer is lost (a
    connection error), the second is answered 503 without reaching the app."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/bids") and request.method == "POST":
            self.keys.append(request.headers.get("Idempotency-Key"))
            if len(self.keys) == 1:
                self.inner.handle_request(request).read()
                raise httpx.ConnectError("connection reset", request=request)
            if len(self.keys) == 2:
                return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "x"})
        return self.inner.handle_request(request)


def test_token_bids_and_reads(capi: Api) -> None:
    cid, secret = credentials(capi, "h1")
    c = Client("http://testserver", cid, secret, http=capi.client, retry=FAST)
    first = c.access_token()
    assert c.access_token() == first  # cached
    c.token.expires = 0.0  # expired: the next call fetches a new one
    out = c.bid(SID, {"bid_id": "ev", "side": "buy", "price": 0.2, "quantity_kw": 3.0, "bus": BUS})
    assert out["id"] == f"{SID}:h1:ev" and c.token.valid()
    batch = c.bids(SID, [{"bid_id": f"b{i}", "curve": {"points": [[0.1, 2.0]]}} for i in range(3)])
    assert batch["accepted"] == 3 and batch["ids"][0] == f"{SID}:h1:b0"
    assert [b["bid_id"] for b in c.my_bids(SID)] == ["ev", "b0", "b1", "b2"]
    assert c.get_bid(f"{SID}:h1:ev")["quantity_kw"] == 3.0
    assert c.session(SID)["status"] == "open"
    rec = c.journal_record(f"bid:{SID}:h1:ev")
    assert rec["index"] == out["journal_index"] and c.journal_head()["tree_size"] == 4
    with pytest.raises(ApiError) as bad:
        c.bid(SID, {"bid_id": "x", "side": "buy", "quantity_kw": -1.0})
    assert bad.value.status == 422
    with pytest.raises(ApiError) as dup:
        c.bid(SID, {"bid_id": "ev", "side": "buy", "quantity_kw": 1.0})
    assert dup.value.status == 409


def test_retry_keeps_the_idempotency_key_and_writes_once(capi: Api) -> None:
    cid, secret = credentials(capi, "h1")
    flaky = Flaky(capi.client._transport)
    http = httpx.Client(transport=flaky, base_url="http://testserver")
    c = Client("http://testserver", cid, secret, http=http, retry=FAST)
    out = c.bid(SID, {"bid_id": "ev", "side": "sell", "price": 0.1, "quantity_kw": 2.0})
    assert len(flaky.keys) == 3 and len(set(flaky.keys)) == 1 and flaky.keys[0]
    assert out["id"] == f"{SID}:h1:ev"
    with capi.services.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Bid)) == 1


def test_retries_give_up_after_the_attempts() -> None:
    calls = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(down), base_url="http://x")
    with pytest.raises(httpx.ConnectError):
        Client("http://x", "id", "secret", http=http, retry=FAST).access_token()
    assert len(calls) == FAST.attempts


def test_signed_reading_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    reading = {"resource_id": "m1", "interval_start": "2026-07-01T12:00:00Z", "import_wh": 5.0}
    signed = sign_reading(reading, key)
    key.public_key().verify(bytes.fromhex(signed["signature"]), canonical(reading))
    assert {k: v for k, v in signed.items() if k != "signature"} == reading


def test_async_client(capi: Api) -> None:
    cid, secret = credentials(capi, "h2")
    app = capi.client.app

    async def run() -> tuple[dict[str, object], list[dict[str, object]], dict[str, object]]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        async with AsyncClient("http://testserver", cid, secret, http=http, retry=FAST) as c:
            batch = await c.bids(SID, [{"bid_id": "a", "side": "buy", "quantity_kw": 1.0}])
            sessions = await c.sessions(area="area")
            head = await c.journal_head()
        return batch, sessions, head

    batch, sessions, head = asyncio.run(run())
    assert batch["accepted"] == 1 and [s["id"] for s in sessions] == [SID]
    assert head["tree_size"] == 1
