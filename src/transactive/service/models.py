"""The service's tables (SQLAlchemy 2.x). The schema is created by the Alembic migrations in
``migrations/`` (``tests/service/test_migrations.py`` checks they match these models).

Conventions: ids are text (readable, stable across databases), times are tz-aware UTC
(``UtcDateTime``), energy is integer Wh where it is metered and float kW where it is bid,
money is float in the scenario's currency, rounded to the cent only on invoices.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("participant", "aggregator", "dso", "tso", "auditor", "admin")
STAGES = ("day-ahead", "real-time", "flexibility")
SESSION_STATUS = ("open", "closed", "cleared", "failed")
JOB_STATUS = ("pending", "running", "done", "failed")


class UtcDateTime(TypeDecorator[datetime]):
    """A tz-aware UTC datetime on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


# --- identity -------------------------------------------------------------------------


class Party(Base):
    """A market party: a participant, an aggregator, the DSO, the TSO, an auditor, an admin."""

    __tablename__ = "parties"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    area: Mapped[str | None] = mapped_column(String(64))
    aggregator_id: Mapped[str | None] = mapped_column(ForeignKey("parties.id"))
    created_at: Mapped[datetime]


class Client(Base):
    """An OAuth2 client of a party; only the argon2 hash of its secret is stored."""

    __tablename__ = "clients"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    party_id: Mapped[str] = mapped_column(ForeignKey("parties.id"), index=True)
    scopes: Mapped[str] = mapped_column(String(500))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class SigningKey(Base):
    """The service's own Ed25519 keys: ``jwt`` (tokens) and ``journal`` (tree heads)."""

    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), index=True)
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Idempotency(Base):
    """A stored response per (client, Idempotency-Key): a retry gets the same answer."""

    __tablename__ = "idempotency"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


# --- resources ------------------------------------------------------------------------


class Resource(Base):
    """A device or meter of a party at a bus (and node) of a configured area."""

    __tablename__ = "resources"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    party_id: Mapped[str] = mapped_column(ForeignKey("parties.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    area: Mapped[str] = mapped_column(String(64))
    bus: Mapped[str] = mapped_column(String(100))
    node: Mapped[str | None] = mapped_column(String(100))
    public_key: Mapped[str | None] = mapped_column(String(200))
    capacity_kw: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]


# --- the market -----------------------------------------------------------------------


class MarketSession(Base):
    """One auction: an area, a stage and an interval, open for bids until gate closure."""

    __tablename__ = "market_sessions"
    __table_args__ = (UniqueConstraint("area", "stage", "interval_start"),)
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    area: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16))
    interval_start: Mapped[datetime] = mapped_column(index=True)
    duration_s: Mapped[int] = mapped_column(Integer)
    gate_closure: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    clearing: Mapped[str] = mapped_column(String(16))
    floor: Mapped[float] = mapped_column(Float)
    cap: Mapped[float] = mapped_column(Float)
    price: Mapped[float | None] = mapped_column(Float)
    quantity_kw: Mapped[float | None] = mapped_column(Float)
    result_status: Mapped[str | None] = mapped_column(String(16))
    n_bids: Mapped[int] = mapped_column(Integer, default=0)
    result_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    # cycle: the substation's side of a cleared session (currency/kWh, kW, currency)
    substation_price: Mapped[float | None] = mapped_column(Float)
    substation_import_kw: Mapped[float | None] = mapped_column(Float)
    merchandising_surplus: Mapped[float | None] = mapped_column(Float)


class Bid(Base):
    """An accepted bid: a block (side, price, quantity) or a curve (points, + buy / − sell).

    ``seq`` orders bids as they were committed; clearing reads them in that order, so a
    re-run clears the same book to the same result.
    """

    __tablename__ = "bids"
    __table_args__ = (
        UniqueConstraint("session_id", "party_id", "bid_id"),
        Index("ix_bids_session_seq", "session_id", "seq"),
    )
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(64), unique=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("market_sessions.id"))
    party_id: Mapped[str] = mapped_column(ForeignKey("parties.id"), index=True)
    bid_id: Mapped[str] = mapped_column(String(100))
    resource_id: Mapped[str | None] = mapped_column(ForeignKey("resources.id"))
    bus: Mapped[str | None] = mapped_column(String(100))
    side: Mapped[str | None] = mapped_column(String(4))
    price: Mapped[float | None] = mapped_column(Float)
    quantity_kw: Mapped[float | None] = mapped_column(Float)
    curve: Mapped[dict[str, Any] | None]
    price_taking: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    journal_index: Mapped[int | None] = mapped_column(BigInteger)


class Award(Base):
    """A cleared bid (``bid_seq``: its session and party are the bid's): kW awarded
    (+ bought, − sold), the price it clears at (currency/kWh), the payment (currency).

    Only the clearing writes awards, from the session's stored bids in the same
    transaction; an integer key and no foreign key or second index keep a 100,000-bid
    clearing's insert cheap (migration 0002). Read them joined to ``bids`` (indexed by
    session and by party).
    """

    __tablename__ = "awards"
    bid_seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    award_kw: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    amount: Mapped[float] = mapped_column(Float)


class BusPrice(Base):
    """The cleared price at each bus of a session (the DLMP under network clearing)."""

    __tablename__ = "bus_prices"
    session_id: Mapped[str] = mapped_column(ForeignKey("market_sessions.id"), primary_key=True)
    bus: Mapped[str] = mapped_column(String(100), primary_key=True)
    price: Mapped[float] = mapped_column(Float)
    net_kw: Mapped[float] = mapped_column(Float)


class Job(Base):
    """A persisted, idempotent job (gate-closure clearing, settlement): resumes on restart."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("kind", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    result_hash: Mapped[str | None] = mapped_column(String(64))


# --- the journal ----------------------------------------------------------------------


class JournalLeaf(Base):
    """One journal entry: the canonical JSON of a record and its RFC 6962 leaf hash."""

    __tablename__ = "journal_leaves"
    idx: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    party_id: Mapped[str | None] = mapped_column(String(64), index=True)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class TreeHead(Base):
    """A signed tree head (size, root, time, key id, Ed25519 signature)."""

    __tablename__ = "tree_heads"
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    timestamp: Mapped[str] = mapped_column(String(40))
    kid: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class JournalNode(Base):
    """A complete Merkle subtree of 2^level leaves (level ≥ 1), keyed by its in-order
    position ``index·2^(level+1) + 2^level − 1``; leaves themselves are in journal_leaves."""

    __tablename__ = "journal_nodes"
    node: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


# --- metering and settlement ------------------------------------------------------------


class MeterReading(Base):
    """One interval reading of a meter resource: Wh imported and exported.

    ``trust`` is ``signed`` when the meter's Ed25519 signature over the reading verified
    against the resource's public key, else ``unsigned`` (lower trust, flagged).
    """

    __tablename__ = "meter_readings"
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id"), primary_key=True)
    interval_start: Mapped[datetime] = mapped_column(primary_key=True)
    duration_s: Mapped[int] = mapped_column(Integer)
    party_id: Mapped[str] = mapped_column(ForeignKey("parties.id"), index=True)
    import_wh: Mapped[int] = mapped_column(BigInteger)
    export_wh: Mapped[int] = mapped_column(BigInteger)
    trust: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime]
    journal_index: Mapped[int | None] = mapped_column(BigInteger)


class SettlementRun(Base):
    """Settlement of one area and period; lines and invoices belong to it."""

    __tablename__ = "settlement_runs"
    __table_args__ = (UniqueConstraint("area", "period_start"),)
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    area: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime]


class SettlementLine(Base):
    """One line of money: a party, a kind (energy, imbalance, network, …), kWh and amount."""

    __tablename__ = "settlement_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("settlement_runs.id"), index=True)
    party_id: Mapped[str] = mapped_column(ForeignKey("parties.id"), index=True)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("market_sessions.id"))
    kind: Mapped[str] = mapped_column(String(32))
    kwh: Mapped[float] = mapped_column(Float)
    price: Mapped[float | None] = mapped_column(Float)
    amount: Mapped[float] = mapped_column(Float)


class Invoice(Base):
    """A party's invoice for a settlement run; ``document`` is its full JSON."""

    __tablename__ = "invoices"
    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("settlement_runs.id"), index=True)
    party_id: Mapped[str] = mapped_column(ForeignKey("parties.id"), index=True)
    total: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    document: Mapped[dict[str, Any]]
