"""Request limits as one pure ASGI middleware: body size (413) and per-client rate (429).

- Body size: a ``Content-Length`` above ``Limits.max_body_bytes`` is refused before the
  body is read; a chunked body (no length) is counted as it streams and refused as soon as
  it exceeds the limit.
- Rate: a token bucket per client, ``Limits.requests_per_s`` sustained with ``Limits.burst``
  on top. The client is the verified token's ``client_id`` when the bearer token is in the
  app's verified-token cache (so a forged token cannot mint fresh buckets), else the remote
  address. A refusal carries ``Retry-After`` (whole seconds, ≥ 1).

Both cost a dict lookup and a few float operations per request: no database, no crypto.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from transactive.service.config import Limits
from transactive.service.problems import problem_response

#: Paths never rate-limited (liveness probes must answer under load).
EXEMPT = frozenset({"/healthz"})


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")


class TokenBuckets:
    """Token buckets keyed by client: ``rate`` tokens/s refill up to ``burst`` tokens.

    At most ``size`` clients are remembered (least recently seen forgotten first; a
    forgotten client starts again with a full bucket).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._size = size
        self._clock = clock
        self._d: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, t)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if granted, else the wait until one is, s."""
        now = self._clock()
        with self._lock:
            tokens, t = self._d.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - t) * self.rate)
            if tokens >= 1.0:
                self._d[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._d[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if len(self._d) > self._size:
                self._d.popitem(last=False)
        return wait


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return bytes(v)
    return None


class LimitsMiddleware:
    """ASGI middleware enforcing :class:`transactive.service.config.Limits`."""

    def __init__(self, app: ASGIApp, limits: Limits, token_cache: Any = None) -> None:
        self.app = app
        self.max_body = limits.max_body_bytes
        self.buckets = TokenBuckets(limits.requests_per_s, limits.burst)
        self.token_cache = token_cache  # deps._TokenCache: .get(token) -> Principal | None

    def client_key(self, scope: Scope) -> str:
        """``client:<id>`` for a known verified token, else ``addr:<remote host>``."""
        auth = _header(scope, b"authorization")
        if auth is not None and self.token_cache is not None and auth[:7].lower() == b"bearer ":
            p = self.token_cache.get(auth[7:].strip().decode("latin-1"))
            if p is not None:
                return f"client:{p.client_id}"
        client = scope.get("client")
        return f"addr:{client[0] if client else 'unknown'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") not in EXEMPT:
            wait = self.buckets.take(self.client_key(scope))
            if wait > 0.0:
                retry = max(1, math.ceil(wait))
                r = problem_response(
                    429,
                    f"rate limit of {self.buckets.rate:g} requests/s exceeded; retry in {retry} s",
                    headers={"Retry-After": str(retry)},
                )
                await r(scope, receive, send)
                return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if n < 0:
                await problem_response(400, "invalid Content-Length header")(scope, receive, send)
                return
            if n > self.max_body:
                await _too_large(self.max_body, scope, receive, send)
                return
        await self._guarded(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a ``receive`` that counts body bytes against the limit."""
        seen = 0
        started = False
        limit = self.max_body

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(limit, scope, receive, send)


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    r = problem_response(413, f"the request body exceeds {limit} bytes")
    r.headers["Connection"] = "close"
    await r(scope, receive, send)
