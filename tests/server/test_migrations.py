"""The models and the Alembic migrations describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import inspect

from server.db import alembic_config, current_revision, get_db, upgrade
from server.models import Base


def test_models_and_migrations_agree(app: Flask) -> None:
    engine = get_db(app).engine
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    assert diffs == [], ("the models and server/migrations differ: add a revision with "
                         f"`alembic -c server/migrations/alembic.ini revision --autogenerate -m ...`: {diffs}")


def test_create_app_upgrades_to_head(app: Flask) -> None:
    engine = get_db(app).engine
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current_revision(engine) == head
    assert {"sites", "submissions", "incidents", "actions", "audit_events"} <= set(inspect(engine).get_table_names())
    upgrade(engine)  # a second start changes nothing
    assert current_revision(engine) == head


def test_contract_fields_are_columns(app: Flask) -> None:
    from workbook_templates.contract import ACTIONS, INCIDENTS

    columns = {c["name"] for c in inspect(get_db(app).engine).get_columns("incidents")}
    assert {f.name for f in INCIDENTS.input_fields} <= columns
    assert "risk_score" not in columns  # derived: worked out when read
    columns = {c["name"] for c in inspect(get_db(app).engine).get_columns("actions")}
    assert {f.name for f in ACTIONS.input_fields} <= columns
