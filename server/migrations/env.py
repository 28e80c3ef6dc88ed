"""Alembic environment of the nearmiss server.

Run by :func:`server.db.upgrade` with a live connection in ``config.attributes["connection"]``.
From a shell, ``NEARMISS_DATABASE_URL=... alembic -c server/migrations/alembic.ini upgrade head``
(or ``revision --autogenerate -m "..."`` after changing the models or the contract) uses the
URL of the environment, or the SQLite file of the instance folder.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from server.config import database_url, instance_path
from server.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or database_url(instance_path())
    engine = create_engine(url)
    with engine.begin() as connection:
        run_migrations(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("nearmiss migrations run online only: they need a database connection")
run_migrations_online()
