"""A typed HTTP client of the market service (httpx): :class:`Client` and :class:`AsyncClient`.

Both fetch an OAuth2 client-credentials token at first use and refresh it 60 s before it
expires (or after a 401). Every POST carries an ``Idempotency-Key`` (one per call, kept
across its retries), so a retry after a connection error, a 5xx or a 429 (waiting
``Retry-After`` seconds) never writes twice. Meter readings can be signed with an Ed25519
key: the signature (hex) covers the canonical JSON of the reading without its signature.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from transactive.service.journal import canonical

JSON = dict[str, Any]
#: Statuses retried with the same idempotency key.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: Refresh a token this many seconds before it expires.
REFRESH_MARGIN_S = 60.0


class ApiError(Exception):
    """A non-2xx answer: ``status`` and the problem document (RFC 9457) or body."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        detail = body.get("detail") if isinstance(body, dict) else body
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:  # name the culprits (field-level 422)
            detail = f"{detail}: " + "; ".join(
                f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}"
                for e in errors[:5]
                if isinstance(e, dict)
            )
        super().__init__(f"HTTP {status}: {detail}")


@dataclass(frozen=True)
class Retry:
    """Retry policy: ``attempts`` in all, exponential back-off from ``backoff_s`` (s) up to
    ``max_backoff_s``; a 429's ``Retry-After`` (s) is honoured up to ``max_backoff_s``."""

    attempts: int = 8
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if response is not None and "Retry-After" in response.headers:
            try:
                return min(float(response.headers["Retry-After"]), self.max_backoff_s)
            except ValueError:
                pass
        return float(min(self.backoff_s * 2**attempt, self.max_backoff_s))


def sign_reading(reading: Mapping[str, Any], key: Ed25519PrivateKey) -> JSON:
    """``reading`` with ``signature``: Ed25519 (hex) over its canonical JSON sans signature."""
    body = {k: v for k, v in reading.items() if k != "signature"}
    return {**body, "signature": key.sign(canonical(body)).hex()}


def wait_until_up(
    base_url: str,
    proc: subprocess.Popen[Any] | None = None,
    *,
    timeout_s: float = 60.0,
    poll_s: float = 0.05,
) -> JSON:
    """Poll ``GET {base_url}/healthz`` until it answers 200 (every ``poll_s`` s, at most
    ``timeout_s`` s) and return its body; RuntimeError if ``proc`` (the server process,
    when given) exits first (with the tail of its stderr, when piped) or time runs out."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr is not None else b""
            text = err.decode(errors="replace") if isinstance(err, bytes) else str(err)
            tail = f": {text.strip()[-2000:]}" if text.strip() else ""
            raise RuntimeError(f"the server exited with code {proc.returncode}{tail}")
        try:
            r = httpx.get(f"{base_url}/healthz", timeout=max(poll_s, 0.5))
            if r.status_code == 200:
                return dict(r.json())
        except httpx.TransportError:
            pass
        time.sleep(poll_s)
    raise RuntimeError(f"the server at {base_url} did not answer /healthz in {timeout_s} s")


def _body(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text


@dataclass
class _Token:
    value: str | None = None
    expires: float = 0.0  # time.monotonic() at expiry

    def valid(self) -> bool:
        return self.value is not None and time.monotonic() < self.expires - REFRESH_MARGIN_S

    def set(self, reply: Mapping[str, Any]) -> str:
        self.value = str(reply["access_token"])
        self.expires = time.monotonic() + float(reply["expires_in"])
        return self.value


@dataclass
class _Base:
    client_id: str
    client_secret: str
    retry: Retry = field(default_factory=Retry)
    token: _Token = field(default_factory=_Token)

    def _token_form(self) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

    @staticmethod
    def _check(r: httpx.Response) -> Any:
        if r.status_code >= 400:
            raise ApiError(r.status_code, _body(r))
        return _body(r)


class Client(_Base):
    """Synchronous client. ``http``: an httpx.Client (tests pass the app's TestClient)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        http: httpx.Client | None = None,
        retry: Retry | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(client_id, client_secret, retry or Retry())
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self, method: str, path: str, *, auth: bool = True, key: str | None = None, **kw: Any
    ) -> Any:
        """One call, retried on connection errors, 5xx and 429 with the same key."""
        headers: dict[str, str] = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Idempotency-Key"] = key
        last: Exception | None = None
        for attempt in range(self.retry.attempts):
            if auth:
                headers["Authorization"] = f"Bearer {self.access_token()}"
            try:
                r = self.http.request(method, path, headers=headers, **kw)
            except httpx.TransportError as exc:
                last = exc
                time.sleep(self.retry.delay(attempt, None))
                continue
            if r.status_code == 401 and auth and attempt == 0:
                self.token.value = None  # expired or revoked: fetch a new one once
                continue
            if r.status_code in RETRY_STATUS and attempt + 1 < self.retry.attempts:
                time.sleep(self.retry.delay(attempt, r))
                continue
            return self._check(r)
        raise last or ApiError(0, "no attempt made")

    def access_token(self) -> str:
        """A valid bearer token (fetched or refreshed as needed)."""
        if not self.token.valid():
            reply = self._send("POST", "/v1/token", auth=False, data=self._token_form())
            return self.token.set(reply)
        assert self.token.value is not None
        return self.token.value

    # --- market ---------------------------------------------------------------------------
    def sessions(self, **filters: Any) -> list[JSON]:
        """Sessions (filters: area, stage, status, offset, limit)."""
        return list(self._send("GET", "/v1/sessions", params=filters))

    def session(self, session_id: str) -> JSON:
        return dict(self._send("GET", f"/v1/sessions/{session_id}"))

    def bid(self, session_id: str, bid: Mapping[str, Any], *, key: str | None = None) -> JSON:
        """Post one bid (201 BidOut); ``key`` defaults to a fresh idempotency key."""
        k = key or uuid.uuid4().hex
        return dict(self._send("POST", f"/v1/sessions/{session_id}/bids", json=bid, key=k))

    def bids(
        self, session_id: str, bids: Sequence[Mapping[str, Any]], *, key: str | None = None
    ) -> JSON:
        """Post a batch (all or nothing) -> {accepted, ids, journal_first, journal_last}."""
        path = f"/v1/sessions/{session_id}/bids/batch"
        body = {"bids": list(bids)}
        return dict(self._send("POST", path, json=body, key=key or uuid.uuid4().hex))

    def my_bids(self, session_id: str, offset: int = 0, limit: int = 100) -> list[JSON]:
        params = {"offset": offset, "limit": limit}
        return list(self._send("GET", f"/v1/sessions/{session_id}/bids", params=params))

    def get_bid(self, bid_id: str) -> JSON:
        return dict(self._send("GET", f"/v1/bids/{bid_id}"))

    def awards(self, session_id: str, offset: int = 0, limit: int = 10_000) -> list[JSON]:
        params = {"offset": offset, "limit": limit}
        return list(self._send("GET", f"/v1/sessions/{session_id}/awards", params=params))

    def prices(self, session_id: str) -> JSON:
        return dict(self._send("GET", f"/v1/sessions/{session_id}/prices"))

    def clear(self, session_id: str) -> JSON:
        """Admin: run the clearing of a closed session now (idempotent)."""
        return dict(self._send("POST", f"/v1/sessions/{session_id}/clear"))

    # --- resources, meters, settlement ----------------------------------------------------
    def create_resource(self, resource: Mapping[str, Any], *, key: str | None = None) -> JSON:
        return dict(self._send("POST", "/v1/resources", json=resource, key=key))

    def meter_readings(
        self,
        readings: Iterable[Mapping[str, Any]],
        *,
        key: Ed25519PrivateKey | None = None,
        idempotency_key: str | None = None,
    ) -> JSON:
        """Post interval readings (Wh), signed with ``key`` when given."""
        rows = [sign_reading(r, key) if key is not None else dict(r) for r in readings]
        k = idempotency_key or uuid.uuid4().hex
        return dict(self._send("POST", "/v1/meter-readings", json={"readings": rows}, key=k))

    def settlement_run(self, area: str, period_start: str, period_end: str) -> JSON:
        body = {"area": area, "period_start": period_start, "period_end": period_end}
        return dict(self._send("POST", "/v1/settlement-runs", json=body, key=uuid.uuid4().hex))

    def settlement_lines(self, run_id: str, offset: int = 0, limit: int = 10_000) -> list[JSON]:
        params = {"offset": offset, "limit": limit}
        return list(self._send("GET", f"/v1/settlement-runs/{run_id}/lines", params=params))

    def invoices(
        self, *, run_id: str | None = None, offset: int = 0, limit: int = 10_000
    ) -> list[JSON]:
        """The invoices the caller may read (of one settlement run if ``run_id``)."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if run_id is not None:
            params["run_id"] = run_id
        return list(self._send("GET", "/v1/invoices", params=params))

    # --- journal --------------------------------------------------------------------------
    def journal_head(self) -> JSON:
        return dict(self._send("GET", "/v1/journal/head"))

    def journal_record(self, record_id: str) -> JSON:
        return dict(self._send("GET", f"/v1/journal/records/{record_id}"))

    def journal_consistency(self, first: int, second: int) -> JSON:
        params = {"first": first, "second": second}
        return dict(self._send("GET", "/v1/journal/consistency", params=params))


class AsyncClient(_Base):
    """Asynchronous client with the same calls as :class:`Client` (awaitable)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        http: httpx.AsyncClient | None = None,
        retry: Retry | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(client_id, client_secret, retry or Retry())
        self.http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout_s)
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(
        self, method: str, path: str, *, auth: bool = True, key: str | None = None, **kw: Any
    ) -> Any:
        headers: dict[str, str] = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Idempotency-Key"] = key
        last: Exception | None = None
        for attempt in range(self.retry.attempts):
            if auth:
                headers["Authorization"] = f"Bearer {await self.access_token()}"
            try:
                r = await self.http.request(method, path, headers=headers, **kw)
            except httpx.TransportError as exc:
                last = exc
                await asyncio.sleep(self.retry.delay(attempt, None))
                continue
            if r.status_code == 401 and auth and attempt == 0:
                self.token.value = None
                continue
            if r.status_code in RETRY_STATUS and attempt + 1 < self.retry.attempts:
                await asyncio.sleep(self.retry.delay(attempt, r))
                continue
            return self._check(r)
        raise last or ApiError(0, "no attempt made")

    async def access_token(self) -> str:
        async with self._lock:
            if not self.token.valid():
                reply = await self._send("POST", "/v1/token", auth=False, data=self._token_form())
                return self.token.set(reply)
            assert self.token.value is not None
            return self.token.value

    async def sessions(self, **filters: Any) -> list[JSON]:
        return list(await self._send("GET", "/v1/sessions", params=filters))

    async def session(self, session_id: str) -> JSON:
        return dict(await self._send("GET", f"/v1/sessions/{session_id}"))

    async def bid(self, session_id: str, bid: Mapping[str, Any], *, key: str | None = None) -> JSON:
        k = key or uuid.uuid4().hex
        return dict(await self._send("POST", f"/v1/sessions/{session_id}/bids", json=bid, key=k))

    async def bids(
        self, session_id: str, bids: Sequence[Mapping[str, Any]], *, key: str | None = None
    ) -> JSON:
        path = f"/v1/sessions/{session_id}/bids/batch"
        body = {"bids": list(bids)}
        return dict(await self._send("POST", path, json=body, key=key or uuid.uuid4().hex))

    async def awards(self, session_id: str, offset: int = 0, limit: int = 10_000) -> list[JSON]:
        params = {"offset": offset, "limit": limit}
        return list(await self._send("GET", f"/v1/sessions/{session_id}/awards", params=params))

    async def meter_readings(
        self,
        readings: Iterable[Mapping[str, Any]],
        *,
        key: Ed25519PrivateKey | None = None,
        idempotency_key: str | None = None,
    ) -> JSON:
        rows = [sign_reading(r, key) if key is not None else dict(r) for r in readings]
        k = idempotency_key or uuid.uuid4().hex
        return dict(await self._send("POST", "/v1/meter-readings", json={"readings": rows}, key=k))

    async def journal_head(self) -> JSON:
        return dict(await self._send("GET", "/v1/journal/head"))

    async def journal_record(self, record_id: str) -> JSON:
        return dict(await self._send("GET", f"/v1/journal/records/{record_id}"))
