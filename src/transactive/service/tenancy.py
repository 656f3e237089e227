"""Row-level tenancy: which parties' rows a principal may read, and for whom it may act.

- participant: itself; aggregator: itself and its portfolio; DSO: every party of its area;
- TSO: no party's rows (substation aggregates only); auditor and admin: everything (read).

Every router that returns party rows filters with :func:`readable` and every write checks
:func:`may_act_for`; ``tests/service/test_tenancy.py`` proves it endpoint by endpoint.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, select, true
from sqlalchemy.orm import Session

from transactive.service.models import Party
from transactive.service.security import Principal

READ_ALL = frozenset({"auditor", "admin"})


def readable(p: Principal, party_column: Any) -> ColumnElement[bool]:
    """A WHERE clause limiting ``party_column`` (a party-id column) to what ``p`` may read."""
    if p.role in READ_ALL:
        return true()
    if p.role == "participant":
        return party_column == p.party_id
    if p.role == "aggregator":
        mine = select(Party.id).where(Party.aggregator_id == p.party_id)
        return (party_column == p.party_id) | party_column.in_(mine)
    if p.role == "dso":
        if p.area is None:
            return false()
        return party_column.in_(select(Party.id).where(Party.area == p.area))
    return false()  # tso: aggregates only


def may_read(db: Session, p: Principal, party_id: str) -> bool:
    """Whether ``p`` may read rows of ``party_id``."""
    if p.role in READ_ALL:
        return True
    if p.role == "participant":
        return party_id == p.party_id
    party = db.get(Party, party_id)
    if party is None:
        return False
    if p.role == "aggregator":
        return party.id == p.party_id or party.aggregator_id == p.party_id
    if p.role == "dso":
        return p.area is not None and party.area == p.area
    return False


def may_act_for(db: Session, p: Principal, party_id: str) -> bool:
    """Whether ``p`` may write (bid, register, post meter data) on behalf of ``party_id``."""
    if p.role == "participant":
        return party_id == p.party_id
    if p.role == "aggregator":
        if party_id == p.party_id:
            return True
        party = db.get(Party, party_id)
        return party is not None and party.aggregator_id == p.party_id
    return False
