"""Request limits: 413 for big bodies (with and without Content-Length), 429 per client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import Api, make_api
from transactive.service.config import Limits, ServiceConfig
from transactive.service.limits import TokenBuckets
from transactive.service.problems import MEDIA


def _api(db_url: str, **limits: float) -> Iterator[Api]:
    yield from make_api(ServiceConfig(db_url=db_url, scheduler=False, limits=Limits(**limits)))


@pytest.fixture
def small(db_url: str) -> Iterator[Api]:
    """Bodies up to 1024 bytes."""
    yield from _api(db_url, max_body_bytes=1024)


@pytest.fixture
def slow(db_url: str) -> Iterator[Api]:
    """A burst of 5 requests, then one per 1000 s."""
    yield from _api(db_url, requests_per_s=0.001, burst=5)


def _party(i: int, pad: int = 0) -> dict[str, str]:
    return {"id": f"p{i}", "name": "x" * (1 + pad), "role": "participant"}


def test_body_over_limit_with_length_is_413(small: Api) -> None:
    admin = small.party("root", "admin")
    r = small.post("/v1/parties", admin, json=_party(1, pad=2000))
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == MEDIA
    assert r.json()["status"] == 413 and "1024 bytes" in r.json()["detail"]
    ok = small.post("/v1/parties", admin, json=_party(2))
    assert ok.status_code == 201, ok.text


def test_chunked_body_over_limit_is_413(small: Api) -> None:
    admin = small.party("root", "admin")

    def chunks(n: int) -> Iterator[bytes]:
        yield b'{"id": "p3", "role": "participant", "name": "'
        for _ in range(n):
            yield b"y" * 100
        yield b'"}'

    r = small.client.post(
        "/v1/parties", headers={**admin, "Content-Type": "application/json"}, content=chunks(30)
    )
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == MEDIA
    small_body = small.client.post(
        "/v1/parties", headers={**admin, "Content-Type": "application/json"}, content=chunks(2)
    )
    assert small_body.status_code == 201, small_body.text


def test_bad_content_length_is_400(small: Api) -> None:
    admin = small.party("root", "admin")
    r = small.client.post("/v1/parties", headers={**admin, "Content-Length": "-5"}, content=b"")
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == MEDIA


def test_rate_limit_per_client_with_retry_after(slow: Api) -> None:
    # the address bucket pays for two sign-ins and each token's first (unverified) use
    a = slow.party("alice", "participant")
    b = slow.party("bob", "participant")
    assert slow.get("/v1/me", a).status_code == 200
    assert slow.get("/v1/me", b).status_code == 200
    for _ in range(5):
        assert slow.get("/v1/me", a).status_code == 200
    r = slow.get("/v1/me", a)
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == MEDIA
    retry = r.headers["retry-after"]
    assert retry.isdigit() and 1 <= int(retry) <= 1000
    assert slow.get("/v1/me", b).status_code == 200  # bob has his own bucket
    assert slow.client.get("/healthz").status_code == 200  # probes are never limited


def test_forged_tokens_share_the_address_bucket(slow: Api) -> None:
    codes = [
        slow.client.get("/v1/me", headers={"Authorization": f"Bearer forged{i}"}).status_code
        for i in range(7)
    ]
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429, 429]


def test_token_bucket_refills_at_rate() -> None:
    t = [0.0]
    tb = TokenBuckets(rate=2.0, burst=3, clock=lambda: t[0])
    assert [tb.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert tb.take("k") == pytest.approx(0.5)  # one token needs 0.5 s at 2/s
    t[0] = 0.5
    assert tb.take("k") == 0.0
    t[0] = 100.0  # refill caps at the burst
    assert [tb.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert tb.take("k") > 0.0
    assert tb.take("other") == 0.0


def test_token_bucket_forgets_oldest_clients() -> None:
    tb = TokenBuckets(rate=1e-9, burst=1, size=2, clock=lambda: 0.0)
    assert tb.take("a") == 0.0
    assert tb.take("b") == 0.0
    assert tb.take("c") == 0.0  # 'a' forgotten
    assert tb.take("c") > 0.0
    assert tb.take("a") == 0.0
