"""Resources: the devices and meters of a party at a bus of a configured area.

A resource has a kind (a device kind of :mod:`transactive.der` or ``meter``), a bus that
must exist in its area's feeder, and optionally the Ed25519 public key its meter signs
readings with (hex or base64 on input, stored as lowercase hex of the raw 32 bytes).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transactive.der.devices import DEVICE_TYPES
from transactive.service import tenancy
from transactive.service.area import Market
from transactive.service.models import Party, Resource
from transactive.service.problems import ApiError, FieldError
from transactive.service.security import Principal

#: Resource kinds: every device kind of the simulator, and a plain meter.
KINDS: tuple[str, ...] = ("meter", *sorted(DEVICE_TYPES))
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_HEX = re.compile(r"^[0-9a-fA-F]*$")


class ResourceIn(BaseModel):
    """A resource to register; ``party_id`` defaults to the caller."""

    id: str = Field(pattern=ID_PATTERN, description="Unique resource id.")
    party_id: str | None = Field(None, max_length=64, description="Owner (default: caller).")
    kind: str = Field(max_length=32, description=f"One of {', '.join(KINDS)}.")
    name: str = Field("", max_length=200)
    area: str = Field(min_length=1, max_length=64)
    bus: str = Field(min_length=1, max_length=100, description="A bus of the area's feeder.")
    node: str | None = Field(None, max_length=100)
    public_key: str | None = Field(
        None, max_length=200, description="Ed25519 public key (32 bytes, hex or base64)."
    )
    capacity_kw: float | None = Field(None, ge=0, le=1e9, allow_inf_nan=False)


class ResourceOut(BaseModel):
    """A registered resource; ``public_key`` is lowercase hex."""

    id: str
    party_id: str
    kind: str
    name: str
    area: str
    bus: str
    node: str | None
    public_key: str | None
    capacity_kw: float | None
    created_at: datetime


def decode_bytes(text: str, size: int) -> bytes | None:
    """``text`` as exactly ``size`` bytes: hex, or base64 (standard or URL-safe, padding
    optional); None if it is neither."""
    t = text.strip()
    if len(t) == 2 * size and _HEX.match(t):
        return bytes.fromhex(t)
    for alt in (b"+/", b"-_"):
        try:
            raw = base64.b64decode(t + "=" * (-len(t) % 4), altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == size:
            return raw
    return None


def parse_public_key(text: str) -> Ed25519PublicKey | None:
    """The Ed25519 public key in ``text`` (hex or base64 of its 32 raw bytes), or None."""
    raw = decode_bytes(text, 32)
    if raw is None:
        return None
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None


def out(r: Resource) -> ResourceOut:
    return ResourceOut(
        id=r.id,
        party_id=r.party_id,
        kind=r.kind,
        name=r.name,
        area=r.area,
        bus=r.bus,
        node=r.node,
        public_key=r.public_key,
        capacity_kw=r.capacity_kw,
        created_at=r.created_at,
    )


def register(
    s: Session, market: Market, p: Principal, body: ResourceIn, now: datetime
) -> ResourceOut:
    """Store a new resource (commits): 403 if ``p`` may not act for its party, 422 naming
    each bad field (kind, area, bus, public key), 409 if the id is taken."""
    party_id = body.party_id or p.party_id
    if not tenancy.may_act_for(s, p, party_id):
        raise ApiError(403, f"you may not register resources for party {party_id!r}")
    errors: list[FieldError] = []

    def bad(field: str, msg: str) -> None:
        errors.append(FieldError(loc=["body", field], msg=msg, type="value_error"))

    if body.kind not in KINDS:
        bad("kind", f"unknown kind {body.kind!r}; one of {', '.join(KINDS)}")
    area = market.areas.get(body.area)
    if area is None:
        bad("area", f"unknown area {body.area!r}; one of {', '.join(sorted(market.areas))}")
    elif body.bus not in area.buses:
        bad("bus", f"no bus {body.bus!r} in area {body.area!r}")
    key_hex: str | None = None
    if body.public_key is not None:
        key = parse_public_key(body.public_key)
        if key is None:
            bad("public_key", "not an Ed25519 public key (32 bytes, hex or base64)")
        else:
            key_hex = key.public_bytes_raw().hex()
    if errors:
        n = len(errors)
        raise ApiError(422, f"{n} invalid field{'s' if n != 1 else ''}", errors=errors)
    party = s.get(Party, party_id)
    if party is None:  # may_act_for only lets through parties that exist, or the caller
        raise ApiError(404, f"no party {party_id!r}")
    row = Resource(
        id=body.id,
        party_id=party_id,
        kind=body.kind,
        name=body.name or body.id,
        area=body.area,
        bus=body.bus,
        node=body.node,
        public_key=key_hex,
        capacity_kw=body.capacity_kw,
        created_at=now,
    )
    s.add(row)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        raise ApiError(409, f"resource {body.id!r} exists") from None
    return out(row)


def list_resources(
    s: Session,
    p: Principal,
    *,
    party_id: str | None,
    area: str | None,
    offset: int,
    limit: int,
) -> list[ResourceOut]:
    """The resources ``p`` may read (optionally of one party / area), by id."""
    q = select(Resource).where(tenancy.readable(p, Resource.party_id))
    if party_id is not None:
        q = q.where(Resource.party_id == party_id)
    if area is not None:
        q = q.where(Resource.area == area)
    rows = s.scalars(q.order_by(Resource.id).offset(offset).limit(limit)).all()
    return [out(r) for r in rows]


def get_resource(s: Session, p: Principal, resource_id: str) -> ResourceOut:
    """One resource; 404 when it does not exist or ``p`` may not read it."""
    r = s.get(Resource, resource_id)
    if r is None or not tenancy.may_read(s, p, r.party_id):
        raise ApiError(404, f"no resource {resource_id!r}")
    return out(r)
