"""Secrets, keys and tokens: argon2 hashes of client secrets, the service's Ed25519 keys
(kept in the database, created on first start), and signed JWT access tokens (EdDSA).

Secrets are never logged or stored in clear; a token carries the client, its party, role,
area and scopes, and expires after ``ServiceConfig.token_ttl_s``.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from transactive.service.models import SigningKey
from transactive.settlement.journal import key_id

_HASHER = PasswordHasher()
_ALG = "EdDSA"


def new_secret() -> str:
    """A fresh client secret (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The argon2id hash of ``secret``."""
    return _HASHER.hash(secret)


def secret_ok(secret: str, hashed: str) -> bool:
    """Whether ``secret`` matches the argon2 ``hashed`` value (constant time)."""
    try:
        return _HASHER.verify(hashed, secret)
    except (VerificationError, InvalidHashError):
        return False


def service_key(db: Session, purpose: str) -> Ed25519PrivateKey:
    """The service's Ed25519 key for ``purpose`` (``jwt`` or ``journal``), created once."""
    row = db.scalars(
        select(SigningKey).where(SigningKey.purpose == purpose).order_by(SigningKey.created_at)
    ).first()
    if row is not None:
        return Ed25519PrivateKey.from_private_bytes(row.private_key)
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    db.add(SigningKey(kid=key_id(key), purpose=purpose, private_key=raw, created_at=_now()))
    db.commit()
    return key


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the verified claims of an access token."""

    client_id: str
    party_id: str
    role: str
    area: str | None
    scopes: frozenset[str]
    expires: datetime


class TokenError(Exception):
    """A token that is missing, malformed, expired or not signed by this service."""


@dataclass(frozen=True)
class TokenSigner:
    """Issues and verifies the service's access tokens."""

    key: Ed25519PrivateKey
    issuer: str
    ttl_s: int

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.key.public_key()

    @property
    def kid(self) -> str:
        return key_id(self.key)

    def issue(self, principal: Principal, now: datetime) -> str:
        """A signed JWT for ``principal`` valid from ``now`` for ``ttl_s`` seconds."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": principal.client_id,
            "pty": principal.party_id,
            "role": principal.role,
            "area": principal.area,
            "scope": " ".join(sorted(principal.scopes)),
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.ttl_s)).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.key, algorithm=_ALG, headers={"kid": self.kid})

    def verify(self, token: str) -> Principal:
        """The principal of a valid token, or :class:`TokenError` saying why not."""
        try:
            c = jwt.decode(
                token,
                self.public_key,
                algorithms=[_ALG],
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the access token has expired") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid access token ({exc})") from None
        try:
            return Principal(
                client_id=str(c["sub"]),
                party_id=str(c["pty"]),
                role=str(c["role"]),
                area=c.get("area"),
                scopes=frozenset(str(c.get("scope", "")).split()),
                expires=datetime.fromtimestamp(int(c["exp"]), UTC),
            )
        except (KeyError, TypeError, ValueError):
            raise TokenError("invalid access token (missing claims)") from None
