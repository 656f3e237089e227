"""Parties and their clients: admins create them; everyone reads what tenancy allows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from transactive.errors import InvalidInputError
from transactive.service import tenancy
from transactive.service.deps import DB, Caller, Svc, require
from transactive.service.identity import create_client, create_party, new_credentials
from transactive.service.models import Party
from transactive.service.problems import ERRORS, ApiError
from transactive.service.security import Principal

router = APIRouter(tags=["parties"])
Role = Literal["participant", "aggregator", "dso", "tso", "auditor", "admin"]
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class PartyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Id
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: Role
    area: Id | None = None
    aggregator_id: Id | None = None


class PartyOut(BaseModel):
    id: str
    name: str
    role: str
    area: str | None
    aggregator_id: str | None
    created_at: datetime


class ClientOut(BaseModel):
    """A new client; the secret is shown only in this response."""

    client_id: str
    client_secret: str
    party_id: str
    role: str


def _out(p: Party) -> PartyOut:
    return PartyOut(
        id=p.id,
        name=p.name,
        role=p.role,
        area=p.area,
        aggregator_id=p.aggregator_id,
        created_at=p.created_at,
    )


Admin = Annotated[Principal, Depends(require("admin"))]


@router.post(
    "/v1/parties",
    response_model=PartyOut,
    status_code=201,
    responses={**ERRORS, 409: ERRORS[422]},
    summary="Create a party (admin)",
)
def post_party(body: PartyIn, db: DB, svc: Svc, _: Admin) -> PartyOut:
    if db.get(Party, body.id) is not None:
        raise ApiError(409, f"party {body.id!r} already exists")
    try:
        party = create_party(
            db,
            party_id=body.id,
            name=body.name,
            role=body.role,
            area=body.area,
            aggregator_id=body.aggregator_id,
            now=svc.now(),
        )
    except InvalidInputError as exc:
        raise ApiError(422, str(exc)) from None
    db.commit()
    return _out(party)


@router.post(
    "/v1/parties/{party_id}/clients",
    response_model=ClientOut,
    status_code=201,
    responses=ERRORS,
    summary="Create a client for a party (admin)",
)
def post_client(party_id: Id, db: DB, svc: Svc, _: Admin) -> ClientOut:
    credentials = new_credentials()  # argon2 before the transaction: no lock held while hashing
    if db.get(Party, party_id) is None:
        raise ApiError(404, f"party {party_id!r} not found")
    c = create_client(db, party_id, svc.now(), credentials)
    db.commit()
    return ClientOut(
        client_id=c.client_id, client_secret=c.client_secret, party_id=c.party_id, role=c.role
    )


@router.get(
    "/v1/parties", response_model=list[PartyOut], responses=ERRORS, summary="Parties you may see"
)
def list_parties(
    db: DB,
    p: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[PartyOut]:
    q = (
        select(Party)
        .where(tenancy.readable(p, Party.id))
        .order_by(Party.id)
        .limit(limit)
        .offset(offset)
    )
    return [_out(x) for x in db.scalars(q)]


@router.get(
    "/v1/parties/{party_id}", response_model=PartyOut, responses=ERRORS, summary="One party"
)
def get_party(party_id: Id, db: DB, p: Caller) -> PartyOut:
    party = db.get(Party, party_id)
    if party is None or not tenancy.may_read(db, p, party_id):
        raise ApiError(404, f"party {party_id!r} not found")
    return _out(party)
