"""GET /healthz, and what create_app sets up."""

from __future__ import annotations

import stat
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine

from server.db import get_db


def test_healthz_ok(client: FlaskClient, backend: str) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": backend}


def test_healthz_503_when_database_unreachable(app: Flask) -> None:
    database = get_db(app)
    real = database.engine
    # Nothing listens on port 1: connecting fails at once.
    database.engine = create_engine("postgresql+psycopg://nobody:x@127.0.0.1:1/none",
                                    connect_args={"connect_timeout": 2})
    try:
        response = app.test_client().get("/healthz")
    finally:
        database.engine.dispose()
        database.engine = real
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_instance_folder_and_secret_key(app: Flask, instance: Path, backend: str) -> None:
    assert Path(app.instance_path) == instance.resolve()
    key_file = instance / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert app.config["SECRET_KEY"] == key_file.read_text().strip()
    assert (instance / "nearmiss.db").exists() == (backend == "sqlite")
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["SESSION_COOKIE_SECURE"] is False  # testing
    assert app.config["MAX_CONTENT_LENGTH"] == 20 * 1024 * 1024


def test_environment_settings(make_app, monkeypatch, instance: Path) -> None:  # noqa: ANN001
    monkeypatch.setenv("NEARMISS_SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("NEARMISS_SECURE_COOKIES", "1")
    monkeypatch.setenv("NEARMISS_MAX_UPLOAD_MB", "3")
    app = make_app()
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert not (instance / "secret_key").exists()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["MAX_CONTENT_LENGTH"] == 3 * 1024 * 1024


def test_sqlite_runs_in_wal_mode(app: Flask, backend: str) -> None:
    if backend != "sqlite":
        assert get_db(app).engine.dialect.name == "postgresql"
        return
    with get_db(app).engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_unknown_api_path_is_json(client: FlaskClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["status"] == 404
