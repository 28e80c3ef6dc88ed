"""Fixtures of the server tests: every test that takes ``app`` runs against SQLite and PostgreSQL.

- SQLite: the database file in a fresh instance folder under ``tmp_path``.
- PostgreSQL: a fresh, uniquely named database per test on the server of
  ``NEARMISS_TEST_POSTGRES_URL`` (``bash scripts/test.sh`` or ``source scripts/postgres.sh``
  sets it), made with CREATE DATABASE and dropped afterwards.

The environment (``NEARMISS_INSTANCE``, ``NEARMISS_DATABASE_URL``) is set for the test, so the
``nearmiss`` CLI run in a test (click's CliRunner) uses the same database as ``app``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text

from server import create_app, ingest
from server.db import get_db
from tests.conftest import DATA_END
from workbook_templates.builder import build_workbook
from workbook_templates.records import SiteRecords
from workbook_templates.synthetic import make_site

BACKENDS = ("sqlite", "postgresql")
POSTGRES_HELP = ("NEARMISS_TEST_POSTGRES_URL is not set: the server tests run against PostgreSQL too. "
                 "Run them with `bash scripts/test.sh`, or `source scripts/postgres.sh` first in this shell.")
ENV_VARS = ("NEARMISS_INSTANCE", "NEARMISS_DATABASE_URL", "NEARMISS_SECRET_KEY", "NEARMISS_MAX_UPLOAD_MB",
            "NEARMISS_SECURE_COOKIES", "NEARMISS_PARSE_ISOLATED", "NEARMISS_PARSE_TIMEOUT_S",
            "NEARMISS_PARSE_MEMORY_MB", "NEARMISS_PARSE_WORKERS", "NEARMISS_RETENTION_DAYS",
            "NEARMISS_TEST_PAUSE_INGEST")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fresh_parse: read every upload again (no reuse of earlier readings)")


_PARSED: dict[tuple, ingest.Parsed] = {}


@pytest.fixture(autouse=True)
def reuse_readings(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read and validate each distinct workbook once per test session (per xdist worker).

    The reader and validator (addin) take about half a second a workbook and are tested in
    their own suites; here the same few workbooks are sent in many tests.  The first upload of
    each runs the real path (in the worker process, as the server does); later ones reuse its
    result.  Refusals are never reused.  Mark a test ``fresh_parse`` to read every upload.
    """
    if request.node.get_closest_marker("fresh_parse"):
        return
    real = ingest.parse_upload

    def parse_once(data: bytes, *, name: str, today, isolation):  # noqa: ANN001, ANN202
        key = (hashlib.sha256(data).hexdigest(), name, today)
        if key not in _PARSED:
            _PARSED[key] = real(data, name=name, today=today, isolation=isolation)
        return copy.deepcopy(_PARSED[key])

    monkeypatch.setattr(ingest, "parse_upload", parse_once)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = os.environ.get("NEARMISS_TEST_POSTGRES_URL", "").strip()
    if not url:
        pytest.fail(POSTGRES_HELP, pytrace=False)
    return url


@pytest.fixture(scope="session")
def postgres_admin(postgres_admin_url: str):  # noqa: ANN201
    """An AUTOCOMMIT engine on the maintenance database, to CREATE and DROP test databases."""
    engine = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"cannot reach PostgreSQL at NEARMISS_TEST_POSTGRES_URL ({exc}). {POSTGRES_HELP}",
                    pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture(params=[pytest.param(b, marks=[pytest.mark.postgres] if b == "postgresql" else [], id=b)
                        for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> str:
    """The database of the test; PostgreSQL runs carry the ``postgres`` mark (``-m "not postgres"`` leaves them out)."""
    return request.param


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite (the instance folder's file), else the URL of a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield None
        return
    admin = request.getfixturevalue("postgres_admin")
    name = f"nearmiss_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin.url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    return tmp_path / "instance"


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch, instance: Path, database_url: str | None) -> None:
    """The environment a server process would have: this test's instance folder and database."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEARMISS_INSTANCE", str(instance))
    if database_url:
        monkeypatch.setenv("NEARMISS_DATABASE_URL", database_url)


@pytest.fixture
def make_app(server_env: None) -> Iterator[Callable[..., Flask]]:
    """Make apps on this test's database (``make_app(**test_config)``); their engines are closed after."""
    apps: list[Flask] = []

    def make(**test_config) -> Flask:  # noqa: ANN003
        app = create_app({"TESTING": True, **test_config})
        apps.append(app)
        return app

    yield make
    for app in apps:
        get_db(app).dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- workbooks -------------------------------------------------------------------------------------

class Workbooks:
    """Synthetic site workbooks, built once per test session (per xdist worker)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[tuple, tuple[Path, SiteRecords]] = {}

    def records(self, code: str = "OAK", seed: int = 1, **kwargs) -> SiteRecords:  # noqa: ANN003
        return self.get(code, seed, **kwargs)[1]

    def path(self, code: str = "OAK", seed: int = 1, **kwargs) -> Path:  # noqa: ANN003
        return self.get(code, seed, **kwargs)[0]

    def get(self, code: str = "OAK", seed: int = 1, *, edit: Callable[[SiteRecords], None] | None = None,
            tag: str = "", **kwargs) -> tuple[Path, SiteRecords]:  # noqa: ANN003
        key = (code, seed, tag, tuple(sorted(kwargs.items())))
        if key not in self._cache:
            kwargs.setdefault("months", 12)
            records = make_site(code, f"{code.title()} House", end=DATA_END, seed=seed, **kwargs)
            if edit is not None:
                edit(records)
            path = self.folder / f"{code}-{seed}-{tag or 'plain'}-{len(self._cache)}.xlsx"
            build_workbook(path, records)
            self._cache[key] = (path, records)
        return self._cache[key]


@pytest.fixture(scope="session")
def workbooks(tmp_path_factory: pytest.TempPathFactory) -> Workbooks:
    return Workbooks(tmp_path_factory.mktemp("workbooks"))
