"""POST /v1/token (OAuth2 client credentials) and GET /v1/me."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from transactive.service.deps import DB, Caller, Svc
from transactive.service.identity import AuthError, authenticate
from transactive.service.problems import ERRORS

router = APIRouter(tags=["auth"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str


class OAuthError(BaseModel):
    """RFC 6749 §5.2 error response."""

    error: str
    error_description: str


class Me(BaseModel):
    client_id: str
    party_id: str
    role: str
    area: str | None
    scopes: list[str]


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    cid, sep, secret = raw.partition(":")
    return (cid, secret) if sep else None


@router.post(
    "/v1/token",
    response_model=TokenResponse,
    responses={400: {"model": OAuthError}, 401: {"model": OAuthError}},
    summary="Get an access token (OAuth2 client credentials)",
)
def token(
    svc: Svc,
    db: DB,
    grant_type: Annotated[str, Form(max_length=64)],
    client_id: Annotated[str | None, Form(max_length=200)] = None,
    client_secret: Annotated[str | None, Form(max_length=500)] = None,
    scope: Annotated[str | None, Form(max_length=1000)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> JSONResponse | TokenResponse:
    """Client id and secret in the form body or as HTTP Basic; ``scope`` narrows the grant."""
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "use grant_type=client_credentials")
    basic = _basic(authorization)
    if basic is not None:
        client_id, client_secret = basic
    if not client_id or client_secret is None:
        return _oauth_error(401, "invalid_client", "client_id and client_secret are required")
    now = datetime.now(UTC)  # tokens live in wall-clock time, even on an accelerated clock
    expires = now + timedelta(seconds=svc.config.token_ttl_s)
    try:
        p = authenticate(db, client_id, client_secret, scope, expires)
    except AuthError as exc:
        status = 400 if exc.error == "invalid_scope" else 401
        return _oauth_error(status, exc.error, exc.description)
    return TokenResponse(
        access_token=svc.signer.issue(p, now),
        expires_in=svc.config.token_ttl_s,
        scope=" ".join(sorted(p.scopes)),
    )


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="transactive"'} if status == 401 else None
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


@router.get("/v1/me", response_model=Me, responses=ERRORS, summary="Who am I")
def me(p: Caller) -> Me:
    return Me(
        client_id=p.client_id,
        party_id=p.party_id,
        role=p.role,
        area=p.area,
        scopes=sorted(p.scopes),
    )
