"""Parties and their OAuth2 clients (service layer of ``transactive admin`` and /v1/token)."""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from transactive.errors import InvalidInputError
from transactive.service.models import ROLES, Client, Party
from transactive.service.security import Principal, hash_secret, new_secret, secret_ok

#: What each role may do; a token carries a subset (the ``scope`` asked for at /v1/token).
#: A participant's and an aggregator's scopes (an aggregator acts for its portfolio).
PARTICIPANT_SCOPES = frozenset(
    {
        "market:read",
        "market:bid",
        "resources:write",
        "meter:write",
        "settlement:read",
        "journal:read",
    }
)
SCOPES: dict[str, frozenset[str]] = {
    "participant": PARTICIPANT_SCOPES,
    "aggregator": PARTICIPANT_SCOPES,
    "dso": frozenset({"market:read", "settlement:read", "settlement:run", "journal:read"}),
    "tso": frozenset({"market:read"}),
    "auditor": frozenset({"market:read", "settlement:read", "journal:read"}),
    "admin": frozenset(
        {"admin", "market:read", "settlement:read", "settlement:run", "journal:read"}
    ),
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class NewClient:
    """A created client; ``client_secret`` is shown once and stored only as a hash."""

    client_id: str
    client_secret: str
    party_id: str
    role: str


def check_id(value: str, what: str) -> str:
    """``value`` if it is a valid id (letters, digits, ``._-``, ≤ 64), else an error."""
    if not _ID.match(value):
        raise InvalidInputError(
            f"{what} {value!r}: use 1–64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return value


def create_party(
    db: Session,
    *,
    party_id: str,
    name: str,
    role: str,
    area: str | None,
    aggregator_id: str | None,
    now: datetime,
) -> Party:
    """Add a party (not committed). Roles: :data:`transactive.service.models.ROLES`."""
    check_id(party_id, "party id")
    if role not in ROLES:
        raise InvalidInputError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if db.get(Party, party_id) is not None:
        raise InvalidInputError(f"party id {party_id!r}: already exists")
    if aggregator_id is not None:
        agg = db.get(Party, aggregator_id)
        if agg is None or agg.role != "aggregator":
            raise InvalidInputError(f"aggregator {aggregator_id!r}: no such aggregator")
        if role != "participant":
            raise InvalidInputError("only a participant can belong to an aggregator")
    if role in ("dso",) and area is None:
        raise InvalidInputError("a DSO needs its area (--area)")
    party = Party(
        id=party_id, name=name, role=role, area=area, aggregator_id=aggregator_id, created_at=now
    )
    db.add(party)
    return party


def new_credentials() -> tuple[str, str]:
    """A fresh client secret and its argon2 hash (~50 ms of CPU: call it outside a
    database transaction, then pass it to :func:`create_client`)."""
    secret = new_secret()
    return secret, hash_secret(secret)


def create_client(
    db: Session, party_id: str, now: datetime, credentials: tuple[str, str] | None = None
) -> NewClient:
    """Add an OAuth2 client for ``party_id`` (not committed) with a fresh secret.

    ``credentials`` (from :func:`new_credentials`) lets the caller hash the secret before
    its transaction starts; by default it is made here.
    """
    party = db.get(Party, party_id)
    if party is None:
        raise InvalidInputError(f"party {party_id!r}: no such party")
    secret, secret_hash = credentials or new_credentials()
    client_id = f"{party_id}-{uuid.uuid4().hex[:8]}"
    db.add(
        Client(
            client_id=client_id,
            secret_hash=secret_hash,
            party_id=party_id,
            scopes=" ".join(sorted(SCOPES[party.role])),
            disabled=False,
            created_at=now,
        )
    )
    return NewClient(client_id, secret, party_id, party.role)


class AuthError(Exception):
    """Client authentication failed (OAuth2 ``invalid_client`` / ``invalid_scope``)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def authenticate(
    db: Session, client_id: str, client_secret: str, scope: str | None, expires: datetime
) -> Principal:
    """The principal of a client whose secret matches; ``scope`` narrows its scopes."""
    client = db.get(Client, client_id)
    # Hash even for an unknown client, so timing does not reveal which ids exist.
    hashed = client.secret_hash if client is not None else _dummy_hash()
    ok = secret_ok(client_secret, hashed)
    if client is None or not ok or client.disabled:
        raise AuthError("invalid_client", "unknown client or wrong secret")
    party = db.get(Party, client.party_id)
    if party is None:
        raise AuthError("invalid_client", "the client's party no longer exists")
    allowed = frozenset(client.scopes.split())
    wanted = frozenset(scope.split()) if scope else allowed
    if not wanted <= allowed:
        extra = ", ".join(sorted(wanted - allowed))
        raise AuthError("invalid_scope", f"scope not granted to this client: {extra}")
    return Principal(client.client_id, party.id, party.role, party.area, wanted, expires)


def party_of(db: Session, party_id: str) -> Party | None:
    return db.get(Party, party_id)


def portfolio(db: Session, aggregator_id: str) -> list[str]:
    """Ids of the participants that belong to ``aggregator_id``."""
    return list(db.scalars(select(Party.id).where(Party.aggregator_id == aggregator_id)))


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown clients, made on first use (not at import)."""
    return hash_secret("not-a-real-secret")
