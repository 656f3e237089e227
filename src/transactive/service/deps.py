"""FastAPI dependencies: the services container, a database session, the caller."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from transactive.service.area import Market
from transactive.service.book import BookCache
from transactive.service.clock import Clock
from transactive.service.config import ServiceConfig
from transactive.service.db import Database
from transactive.service.problems import ApiError
from transactive.service.security import Principal, TokenError, TokenSigner


@dataclass
class Services:
    """Everything a request may use; built once by :func:`transactive.service.app.create_app`."""

    config: ServiceConfig
    db: Database
    clock: Clock
    signer: TokenSigner
    journal_key: Ed25519PrivateKey
    market: Market
    books: BookCache = field(default_factory=BookCache)  # bids read ahead of gate closure
    extras: dict[str, Any] = field(default_factory=dict)  # components started by the app

    def now(self) -> datetime:
        return self.clock.now()


async def services(request: Request) -> Services:
    """The app's services (``async``: no thread-pool hop for a dict lookup)."""
    svc: Services = request.app.state.services
    return svc


def db_session(request: Request, svc: Annotated[Services, Depends(services)]) -> Iterator[Session]:
    """The request's database session: a read-only one for GET and HEAD (on SQLite it takes
    no write lock, so reads never queue behind bid writes); a GET that must write opens a
    write session of its own."""
    factory = svc.db.readers if request.method in ("GET", "HEAD") else svc.db.sessions
    with factory() as s:
        yield s


class _TokenCache:
    """Verified tokens (a signature check costs ~60 µs; a dict lookup ~0.1 µs)."""

    def __init__(self, size: int = 50_000) -> None:
        self._d: OrderedDict[str, Principal] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, token: str) -> Principal | None:
        with self._lock:
            return self._d.get(token)

    def put(self, token: str, p: Principal) -> None:
        with self._lock:
            self._d[token] = p
            if len(self._d) > self._size:
                self._d.popitem(last=False)


_bearer = HTTPBearer(auto_error=False, description="An access token from POST /v1/token.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="transactive"'}


async def principal(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified caller, or 401 (``async``: a cached token costs a dict lookup, not a
    thread-pool hop; a new one an Ed25519 verification, ~60 µs, on the event loop)."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise ApiError(
            401, "send 'Authorization: Bearer <token>' (POST /v1/token)", headers=_CHALLENGE
        )
    cache: _TokenCache = request.app.state.token_cache
    token = creds.credentials
    p = cache.get(token)
    if p is None:
        try:
            p = svc.signer.verify(token)
        except TokenError as exc:
            raise ApiError(401, str(exc), headers=_CHALLENGE) from None
        cache.put(token, p)
    if p.expires <= datetime.now(UTC):
        raise ApiError(401, "the access token has expired", headers=_CHALLENGE)
    request.state.client_id = p.client_id
    return p


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold ``scope`` (else 403)."""

    async def dep(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if scope not in p.scopes:
            raise ApiError(403, f"this token lacks the scope '{scope}' (role {p.role})")
        return p

    dep.__name__ = f"require_{scope.replace(':', '_')}"
    return dep


DB = Annotated[Session, Depends(db_session)]
Svc = Annotated[Services, Depends(services)]
Caller = Annotated[Principal, Depends(principal)]
