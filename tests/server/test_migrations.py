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


def test_0002_adds_file_removed_at_to_existing_submissions(app: Flask) -> None:
    """Upgrading a database of revision 0001 keeps its submissions and marks none as file-removed."""
    from alembic import command
    from sqlalchemy import text

    engine = get_db(app).engine

    def migrate(step, revision: str) -> None:  # noqa: ANN001
        with engine.begin() as connection:
            step(alembic_config(connection), revision)

    migrate(command.downgrade, "0001")
    assert current_revision(engine) == "0001"
    assert "file_removed_at" not in {c["name"] for c in inspect(engine).get_columns("submissions")}
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO areas (id, name, created_at) VALUES (1, 'North', CURRENT_TIMESTAMP)"))
        connection.execute(text("INSERT INTO sites (id, code, name, area_id, setting, created_at) "
                                "VALUES (1, 'OAK', 'Oakview', 1, 'care_home', CURRENT_TIMESTAMP)"))
        connection.execute(text(
            "INSERT INTO submissions (id, site_id, file_sha256, content_sha256, original_name, stored_name, size, "
            "received_at, is_current, superseded_at, n_incidents, n_actions, n_errors, n_warnings) VALUES "
            "(1, 1, 'a', 'b', 'oak.xlsx', 'x.xlsx', 10, CURRENT_TIMESTAMP, false, CURRENT_TIMESTAMP, 3, 1, 0, 0)"))
    migrate(command.upgrade, "head")
    assert current_revision(engine) == ScriptDirectory.from_config(alembic_config()).get_current_head()
    column = {c["name"]: c for c in inspect(engine).get_columns("submissions")}["file_removed_at"]
    assert column["nullable"] is True
    with engine.connect() as connection:
        assert connection.execute(text("SELECT id, n_incidents, file_removed_at FROM submissions")).all() == [(1, 3, None)]
    migrate(command.downgrade, "0001")  # and back, keeping the row
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM submissions")).scalar() == 1
    migrate(command.upgrade, "head")
