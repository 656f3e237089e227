"""The Alembic migrations build exactly the schema of the models, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from transactive.service.db import make_engine, migrate
from transactive.service.models import Base


def test_migrations_match_the_models_and_rerun_cleanly(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        migrate(engine)  # idempotent: a restart on a migrated database changes nothing
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()
