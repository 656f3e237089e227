"""Database engines and migrations: SQLite (embedded, the default) or PostgreSQL by URL.

``open_database`` creates the engine, brings the schema to the newest Alembic revision and
returns a session factory. SQLite runs in WAL mode with ``synchronous=FULL``, so a commit
that returned survives ``kill -9`` and power loss; PostgreSQL is durable by default.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from transactive.errors import InvalidInputError

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """The URL with the driver this package ships (psycopg 3 for PostgreSQL)."""
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise InvalidInputError(f"--db {url!r}: not a database URL ({exc})") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.drivername not in ("sqlite", "postgresql+psycopg"):
        raise InvalidInputError(
            f"--db {url!r}: unsupported database '{u.drivername}' (use sqlite:///FILE or "
            "postgresql://USER@HOST/DB)"
        )
    return u.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url`` (see :func:`normalise_url`), tuned for the service. On SQLite
    every transaction takes the write lock at BEGIN (``BEGIN IMMEDIATE``), so writers queue
    instead of failing; ``read_only=True`` gives an engine whose transactions only read
    (deferred ``BEGIN``: a WAL snapshot that neither waits for nor blocks a writer)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        u = make_url(url)
        if u.database and u.database != ":memory:":
            parent = Path(u.database).expanduser().resolve().parent
            if not parent.is_dir():
                raise InvalidInputError(f"--db {url!r}: folder {parent} does not exist")
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        # SQLite's own transaction handling defers BEGIN; take the write lock at BEGIN so
        # that concurrent writers queue instead of failing with "database is locked".
        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        return engine
    return create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@dataclass(frozen=True)
class Database:
    """An open database: the engine and its session factories (``readers``: transactions
    that only read; on SQLite they take no write lock, elsewhere they are ``sessions``)."""

    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]

    def dispose(self) -> None:
        self.engine.dispose()
        reader = self.readers.kw.get("bind")
        if reader is not None and reader is not self.engine:
            reader.dispose()


def open_database(url: str, *, upgrade: bool = True) -> Database:
    """Open (and by default migrate) the database at ``url``."""
    engine = make_engine(url)
    if upgrade:
        migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    if engine.dialect.name != "sqlite":
        return Database(engine, sessions, sessions)
    reader = make_engine(url, read_only=True)
    return Database(engine, sessions, sessionmaker(reader, expire_on_commit=False))


def bulk_insert(
    s: Session,
    table: str,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    pg_types: Sequence[str] | None = None,
) -> None:
    """Insert ``rows`` of plain values (ints, floats, text, bytes, None) into ``table`` in the
    caller's transaction: ``COPY … FROM STDIN`` on PostgreSQL (binary, when the columns'
    ``pg_types`` are given: no text escaping of bytes), the driver's executemany on SQLite
    (SQLAlchemy's per-row parameter processing costs more than the insert itself)."""
    if not rows:
        return
    conn = s.connection()
    cols = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        binary = " (FORMAT BINARY)" if pg_types is not None else ""
        with _copying(conn, f"COPY {table} ({cols}) FROM STDIN{binary}") as cp:
            if pg_types is not None:
                cp.set_types(list(pg_types))
            for r in rows:
                cp.write_row(r)
        return
    marks = ", ".join("?" for _ in columns)
    conn.exec_driver_sql(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)


def bulk_insert_arrays(s: Session, table: str, columns: dict[str, NDArray[Any]]) -> None:
    """Insert the rows of equal-length int64 / float64 ``columns`` (NOT NULL, finite floats
    as the caller checks): PostgreSQL gets one binary ``COPY`` built by numpy (no Python
    object per value; columns ``bigint`` / ``double precision``), SQLite an executemany."""
    arrays = [np.asarray(a) for a in columns.values()]
    for name, a in zip(columns, arrays, strict=True):
        if a.dtype.kind not in "if" or a.dtype.itemsize != 8:
            raise TypeError(f"{table}.{name}: {a.dtype} is not int64/float64")
    n = arrays[0].size if arrays else 0
    if n == 0:
        return
    conn = s.connection()
    cols = ", ".join(columns)
    if conn.dialect.name != "postgresql":
        marks = ", ".join("?" for _ in columns)
        rows = list(zip(*(a.tolist() for a in arrays), strict=True))
        conn.exec_driver_sql(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
        return
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for j, a in enumerate(arrays):
        fields += [(f"len{j}", ">i4"), (f"v{j}", ">i8" if a.dtype.kind == "i" else ">f8")]
    rec = np.empty(n, dtype=np.dtype(fields))
    rec["n"] = len(arrays)
    for j, a in enumerate(arrays):
        rec[f"len{j}"] = 8
        rec[f"v{j}"] = a
    # PGCOPY header (signature, flags, header extension length), the tuples, the trailer.
    data = b"PGCOPY\n\xff\r\n\x00" + bytes(8) + rec.tobytes() + b"\xff\xff"
    with _copying(conn, f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(data)


@contextmanager
def _copying(conn: Any, stmt: str) -> Iterator[Any]:
    """A psycopg COPY of ``stmt`` on the connection's driver connection; a violated
    constraint raises SQLAlchemy's IntegrityError, as it does for an INSERT."""
    import psycopg

    raw: Any = conn.connection.driver_connection
    try:
        with raw.cursor() as cur, cur.copy(stmt) as cp:
            yield cp
    except psycopg.IntegrityError as exc:
        raise IntegrityError(stmt, None, exc) from exc
